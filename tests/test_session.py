"""Session lifecycle: always closed, explicit transactions, SET LOCAL that never leaks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from geosession import ConfigurationError, DatabaseError, SpatialDatabase


@pytest.fixture
def notes(db: SpatialDatabase) -> Iterator[str]:
    with db.transaction() as s:
        s.execute(text("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)"))
    yield "notes"
    with db.transaction() as s:
        s.execute(text("DROP TABLE notes"))


def count(db: SpatialDatabase) -> int:
    with db.session() as s:
        return int(s.execute(text("SELECT count(*) FROM notes")).scalar_one())


def test_session_closes_and_rolls_back_on_error(db: SpatialDatabase, notes: str) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        s.execute(text("INSERT INTO notes (body) VALUES ('lost')"))
        assert db.pool_stats().checked_out == 1
        raise RuntimeError("boom")
    assert db.pool_stats().checked_out == 0
    assert count(db) == 0


def test_session_commits_only_when_asked(db: SpatialDatabase, notes: str) -> None:
    with db.session() as s:
        s.execute(text("INSERT INTO notes (body) VALUES ('uncommitted')"))
    with db.session() as s:
        s.execute(text("INSERT INTO notes (body) VALUES ('kept')"))
        s.commit()
    assert count(db) == 1


def test_transaction_commits_at_exit_and_rolls_back_on_error(
    db: SpatialDatabase, notes: str
) -> None:
    with db.transaction() as s:
        s.execute(text("INSERT INTO notes (body) VALUES ('one')"))
    with pytest.raises(ValueError), db.transaction() as s:
        s.execute(text("INSERT INTO notes (body) VALUES ('two')"))
        raise ValueError("abort")
    assert count(db) == 1


def test_set_local_settings_never_leak_to_the_next_user(
    make_db: Callable[..., SpatialDatabase],
) -> None:
    db = make_db(pool_size=1, max_overflow=0, statement_timeout="30s")
    with db.transaction(statement_timeout="5min", lock_timeout="2s") as s:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar()
        assert s.execute(text("SHOW statement_timeout")).scalar() == "5min"
        assert s.execute(text("SHOW lock_timeout")).scalar() == "2s"
    with db.session() as s:
        assert s.execute(text("SELECT pg_backend_pid()")).scalar() == pid  # same connection
        assert s.execute(text("SHOW statement_timeout")).scalar() == "30s"
        assert s.execute(text("SHOW lock_timeout")).scalar() == "0"


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("SERIALIZABLE", "serializable"),
        ("repeatable_read", "repeatable read"),
        ("read committed", "read committed"),
    ],
)
def test_isolation_levels(db: SpatialDatabase, given: str, shown: str) -> None:
    with db.transaction(isolation=given) as s:
        assert s.execute(text("SHOW transaction_isolation")).scalar() == shown
    with db.session() as s:  # the level is reset when the connection returns to the pool
        assert s.execute(text("SHOW transaction_isolation")).scalar() == "read committed"


@pytest.mark.parametrize("bad", ["SNAPSHOT", "AUTOCOMMIT", "serial"])
def test_isolation_names_are_validated(db: SpatialDatabase, bad: str) -> None:
    with pytest.raises(ConfigurationError, match="REPEATABLE READ"), db.transaction(isolation=bad):
        pass


def test_invalid_local_duration_names_the_argument(db: SpatialDatabase) -> None:
    with pytest.raises(ConfigurationError, match="statement_timeout"):
        db.transaction(statement_timeout="soon").__enter__()
    with pytest.raises(ConfigurationError, match="lock_timeout: 5 has no unit: write '5s'"):
        db.transaction(lock_timeout=5).__enter__()


def test_read_only_transaction_refuses_writes(db: SpatialDatabase, notes: str) -> None:
    refused = pytest.raises(DatabaseError, match="read-only.*write in db.transaction")
    with refused, db.transaction(read_only=True) as s:
        s.execute(text("INSERT INTO notes (body) VALUES ('no')"))
    assert count(db) == 0


def test_scoped_sessions_are_per_thread(db: SpatialDatabase) -> None:
    main = db.scoped()
    assert db.scoped() is main
    seen: list[Session] = []
    thread = threading.Thread(target=lambda: (seen.append(db.scoped()), db.scoped.remove()))
    thread.start()
    thread.join()
    assert seen[0] is not main
    main.execute(text("SELECT 1"))
    db.scoped.remove()
    assert db.scoped() is not main
    db.scoped.remove()


def test_get_session_dependency_closes_in_finally(db: SpatialDatabase) -> None:
    dependency = db.get_session()
    session = next(dependency)
    session.execute(text("SELECT 1"))
    assert db.pool_stats().checked_out == 1
    with pytest.raises(StopIteration):
        next(dependency)  # what FastAPI does after the response
    assert db.pool_stats().checked_out == 0
    dependency = db.get_session()
    next(dependency).execute(text("SELECT 1"))
    with pytest.raises(KeyError):
        dependency.throw(KeyError("handler failed"))
    assert db.pool_stats().checked_out == 0


def test_database_as_context_manager_disposes(database_url: str) -> None:
    with SpatialDatabase(database_url) as db, db.session() as s:
        s.execute(text("SELECT 1"))
    assert db.pool_stats().checked_in == 0


def test_async_transaction_and_rollback(db: SpatialDatabase, notes: str) -> None:
    async def work() -> None:
        try:
            async with db.async_transaction(statement_timeout="1min") as s:
                await s.execute(text("INSERT INTO notes (body) VALUES ('async')"))
                assert (await s.execute(text("SHOW statement_timeout"))).scalar() == "1min"
            with pytest.raises(RuntimeError):
                async with db.async_session() as s:
                    await s.execute(text("INSERT INTO notes (body) VALUES ('lost')"))
                    raise RuntimeError
            assert db.async_engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await db.adispose()

    asyncio.run(work())
    assert count(db) == 1
