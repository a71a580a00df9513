"""Backends terminated mid-query and mid-COMMIT, and a COMMIT whose answer never arrives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from geosession import CommitOutcomeUnknown, ConnectionFailed, IntegrityViolation, SpatialDatabase
from tests.faults.helpers import (
    DRIVERS,
    database_for,
    run_sql,
    run_tx,
    terminate,
    terminate_when,
)
from tests.faults.proxy import tcp_proxy

COMMIT_MARKERS = {"psycopg": b"COMMIT\x00", "psycopg2": b"COMMIT\x00", "asyncpg": b"COMMIT;\x00"}


@pytest.mark.parametrize("driver", DRIVERS)
def test_backend_terminated_mid_query_reruns_the_function(
    make_db: Callable[..., SpatialDatabase], admin_url: str, driver: str
) -> None:
    name = f"mid-query-{driver}"
    db = database_for(make_db, driver, application_name=name)
    calls: list[int] = []

    def work(s: Session) -> Any:
        calls.append(1)
        if len(calls) == 1:
            killer = terminate_when(admin_url, name, "wait_event = 'PgSleep'")
            try:
                s.execute(text("SELECT pg_sleep(10)"))
            finally:
                killer.join()
        return s.execute(text("SELECT 42")).scalar()

    assert run_tx(db, driver, work) == 42
    assert len(calls) == 2


@pytest.mark.parametrize("driver", DRIVERS)
def test_pool_recovers_silently_when_every_backend_is_terminated(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], driver: str
) -> None:
    name = f"terminated-pool-{driver}"
    db = database_for(make_db, driver, application_name=name, pool_size=3)

    def sync_round() -> list[Any]:
        sessions = [db.session() for _ in range(3)]
        try:
            return [h.__enter__().execute(text("SELECT 1")).scalar() for h in sessions]
        finally:
            for h in sessions:
                h.__exit__(None, None, None)

    if driver != "asyncpg":
        assert sync_round() == [1, 1, 1]  # three pooled connections
        assert terminate(admin, name) == 3
        assert sync_round() == [1, 1, 1]  # pre-ping replaced every one of them
        return

    async def one() -> Any:
        async with db.async_session() as s:
            return (await s.execute(text("SELECT 1"))).scalar()

    async def scenario() -> None:
        try:
            assert list(await asyncio.gather(one(), one(), one())) == [1, 1, 1]
            assert await asyncio.to_thread(terminate, admin, name) == 3
            assert list(await asyncio.gather(one(), one(), one())) == [1, 1, 1]
        finally:
            await db.adispose()

    asyncio.run(scenario())


@pytest.fixture
def slow_commit(admin: psycopg.Connection[Any]) -> Iterator[str]:
    """A table whose rows with ``sleepy`` make COMMIT sleep (a deferred constraint trigger)."""
    admin.execute(
        """
        CREATE TABLE slow_commit (id int PRIMARY KEY, sleepy boolean NOT NULL);
        CREATE FUNCTION slow_commit_sleep() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.sleepy THEN PERFORM pg_sleep(10); END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER slow_commit_at_commit AFTER INSERT ON slow_commit
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit_sleep();
        """
    )
    yield "slow_commit"
    admin.execute("DROP TABLE slow_commit; DROP FUNCTION slow_commit_sleep()")


def ids_in(admin: psycopg.Connection[Any], table: str) -> list[int]:
    return [row[0] for row in admin.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


@pytest.mark.parametrize("driver", DRIVERS)
def test_backend_terminated_during_commit_is_commit_outcome_unknown(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    admin_url: str,
    slow_commit: str,
    driver: str,
) -> None:
    name = f"mid-commit-{driver}"
    db = database_for(make_db, driver, application_name=name)
    calls: list[int] = []

    def insert(s: Session) -> None:
        calls.append(1)
        s.execute(text("INSERT INTO slow_commit VALUES (1, true)"))

    killer = terminate_when(admin_url, name, "left(query, 6) = 'COMMIT' AND wait_event = 'PgSleep'")
    with pytest.raises(CommitOutcomeUnknown) as info:
        run_tx(db, driver, insert)
    killer.join()
    assert len(calls) == 1  # never rerun: the work may have been committed
    message = str(info.value)
    rerun = "async_run_transaction" if driver == "asyncpg" else "run_transaction"
    assert "may or may not" in message and f" {rerun}(..., idempotent=True)" in message
    assert not info.value.transient and isinstance(info.value, ConnectionFailed)
    assert ids_in(admin, slow_commit) == []  # this time the server died before committing


@pytest.mark.parametrize("driver", DRIVERS)
def test_idempotent_work_is_rerun_after_a_lost_commit(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    admin_url: str,
    slow_commit: str,
    driver: str,
) -> None:
    name = f"mid-commit-idempotent-{driver}"
    db = database_for(make_db, driver, application_name=name)
    calls: list[int] = []

    def upsert(s: Session) -> None:
        calls.append(1)
        s.execute(
            text("INSERT INTO slow_commit VALUES (1, :sleepy) ON CONFLICT (id) DO NOTHING"),
            {"sleepy": len(calls) == 1},
        )

    killer = terminate_when(admin_url, name, "left(query, 6) = 'COMMIT' AND wait_event = 'PgSleep'")
    run_tx(db, driver, upsert, idempotent=True)
    killer.join()
    assert len(calls) == 2
    assert ids_in(admin, slow_commit) == [1]


@pytest.fixture
def committed(admin: psycopg.Connection[Any]) -> Iterator[str]:
    admin.execute("CREATE TABLE committed_rows (id int PRIMARY KEY)")
    yield "committed_rows"
    admin.execute("DROP TABLE committed_rows")


@pytest.mark.parametrize("driver", DRIVERS)
def test_backend_terminated_before_commit_is_sent(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    committed: str,
    driver: str,
) -> None:
    """The backend is terminated while the work sits idle in its transaction (a failover
    during a call to another service). asyncpg learns of it and refuses to send COMMIT:
    nothing was committed, so the work runs again (it was CommitOutcomeUnknown, never
    rerun). psycopg and psycopg2 send COMMIT and read the server's FATAL as its answer,
    which a backend ended just after committing gives too: that stays unknown."""
    name = f"before-commit-{driver}"
    db = database_for(make_db, driver, application_name=name)
    calls: list[int] = []
    insert = text(f"INSERT INTO {committed} VALUES (:n)")

    def work(s: Session) -> None:
        calls.append(1)
        s.execute(insert, {"n": len(calls)})
        if len(calls) == 1:
            terminate(admin, name)

    async def async_work(s: Any) -> None:
        calls.append(1)
        await s.execute(insert, {"n": len(calls)})
        if len(calls) == 1:
            terminate(admin, name)
            await asyncio.sleep(0.3)  # the loop's turn: asyncpg sees the connection go

    if driver == "asyncpg":

        async def run() -> None:
            try:
                await db.async_run_transaction(async_work)
            finally:
                await db.adispose()

        asyncio.run(run())
        assert len(calls) == 2 and ids_in(admin, committed) == [2]
    else:
        with pytest.raises(CommitOutcomeUnknown):
            run_tx(db, driver, work)
        assert len(calls) == 1 and ids_in(admin, committed) == []
    assert db.pool_stats().checked_out == 0


@pytest.mark.parametrize("driver", DRIVERS)
def test_commit_that_applied_but_whose_answer_was_lost(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    database_url: str,
    committed: str,
    driver: str,
) -> None:
    """Why CommitOutcomeUnknown exists: the row is there although the caller got an error."""
    url = make_url(database_url)
    with tcp_proxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        db = database_for(make_db, driver, url=proxied)
        assert run_sql(db, driver, "SELECT 1") == 1
        calls: list[int] = []

        def insert(s: Session) -> None:
            calls.append(1)
            s.execute(text("INSERT INTO committed_rows VALUES (7)"))

        proxy.cut_after(COMMIT_MARKERS[driver], delay=0.3)
        with pytest.raises(CommitOutcomeUnknown, match="may or may not have been committed"):
            run_tx(db, driver, insert)
        assert proxy.cuts == 1 and len(calls) == 1
        assert ids_in(admin, committed) == [7]  # it was committed: a rerun would duplicate it
        assert run_sql(db, driver, "SELECT 2") == 2  # and the pool carries on


def test_a_plain_session_commit_is_watched_too(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    database_url: str,
    committed: str,
) -> None:
    url = make_url(database_url)
    with tcp_proxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        db = make_db(url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
        proxy.cut_after(COMMIT_MARKERS["psycopg"])
        with pytest.raises(CommitOutcomeUnknown), db.session() as s:
            s.execute(text("INSERT INTO committed_rows VALUES (8)"))
            s.commit()
    assert ids_in(admin, committed) == [8]


def test_a_socket_that_failed_under_psycopg_is_a_lost_connection(
    make_db: Callable[..., SpatialDatabase], committed: str
) -> None:
    """psycopg says "connection socket closed" when waiting on its socket fails (a reset
    seen as the socket closes, here the socket closed under it), without marking the
    connection broken, by which SQLAlchemy judges: a COMMIT so lost was a plain
    DatabaseError instead of CommitOutcomeUnknown, and the dead connection went back to
    the pool."""
    import os

    db = make_db(pool_size=1, max_overflow=0)
    with pytest.raises(CommitOutcomeUnknown), db.session() as s:
        s.execute(text("INSERT INTO committed_rows VALUES (9)"))
        os.close(s.connection().connection.dbapi_connection.pgconn.socket)
        s.commit()
    assert db.pool_stats().invalidations == 1  # dropped, not pooled
    with pytest.raises(ConnectionFailed, match="connection socket closed"), db.session() as s:
        s.execute(text("SELECT 1"))
        os.close(s.connection().connection.dbapi_connection.pgconn.socket)
        s.execute(text("SELECT 2"))
    with db.session() as s:
        assert s.execute(text("SELECT 3")).scalar_one() == 3


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_error_the_server_answers_to_commit_keeps_its_class(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], driver: str
) -> None:
    admin.execute(
        "CREATE TABLE deferred_unique (id int, CONSTRAINT deferred_unique_id "
        "UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    try:
        db = database_for(make_db, driver)
        calls: list[int] = []

        def duplicate(s: Session) -> None:
            calls.append(1)
            s.execute(text("INSERT INTO deferred_unique VALUES (1), (1)"))  # checked at COMMIT

        with pytest.raises(IntegrityViolation, match="deferred_unique_id"):
            run_tx(db, driver, duplicate)
        assert len(calls) == 1
    finally:
        admin.execute("DROP TABLE deferred_unique")


@pytest.mark.parametrize("driver", DRIVERS)
def test_backend_terminated_before_the_engines_first_statements_says_the_server_ended_it(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], driver: str
) -> None:
    """Terminated by another session before any statement of the engine's first connection
    (a failover as the application starts): the look for PostGIS took the server's error
    for a connection that cannot say, and the dialect's next statement failed as "the
    connection is closed" (asyncpg's raw InterfaceError); asyncpg's own words were then
    read as a server out of reach. psycopg and asyncpg say the server ended it now;
    psycopg2, with libpq's words alone ("server closed the connection unexpectedly"),
    that the connection was lost (it had opened)."""
    db = database_for(make_db, driver)
    terminated: list[int] = []

    def terminate_first(dbapi_connection: Any, _record: Any) -> None:
        if not terminated:
            raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
            pid = raw.get_server_pid() if driver == "asyncpg" else raw.info.backend_pid
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            terminated.append(pid)

    engine = db.async_engine.sync_engine if driver == "asyncpg" else db.engine
    event.listen(engine.pool, "first_connect", terminate_first, insert=True)
    with pytest.raises(ConnectionFailed) as lost:
        run_sql(db, driver, "SELECT 1")
    if driver == "psycopg2":
        assert "server closed the connection unexpectedly" in str(lost.value)
        assert "The connection was lost" in str(lost.value)
    else:
        assert "terminating connection due to administrator command" in str(lost.value)
        assert "The server ended the connection" in str(lost.value)
    assert run_sql(db, driver, "SELECT 1") == 1


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_backend_lost_during_the_engines_first_connect_is_connection_failed(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """SQLAlchemy's first connection of an engine runs the dialect's set-up queries; a
    backend terminated then is a ConnectionFailed, and the next connection works."""
    db = make_db(driver=driver)
    terminated: list[bool] = []

    def terminate_first(dbapi_connection: Any, _record: Any) -> None:
        if not terminated:
            terminated.append(True)
            cursor = dbapi_connection.cursor()
            with contextlib.suppress(Exception):  # the backend goes away while answering
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    event.listen(db.engine.pool, "first_connect", terminate_first, insert=True)
    with pytest.raises(ConnectionFailed), db.session() as s:
        s.execute(text("SELECT 1"))
    with db.session() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1
