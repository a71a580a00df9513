"""Session lifecycle: always closed, explicit transactions, SET LOCAL that never leaks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import shapely
from geoalchemy2.shape import from_shape
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from geosession import ConfigurationError, DatabaseError, SpatialDatabase


@pytest.fixture
def notes(db: SpatialDatabase) -> Iterator[str]:
    with db.transaction() as s:
        s.execute(text("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)"))
    yield "notes"
    with db.transaction() as s:
        s.execute(text("DROP TABLE notes"))


DRIVERS = ["psycopg", "psycopg2", "asyncpg", "psycopg async"]
"""The sync drivers, and the async ones (whose tests use the async sessions)."""


def one_connection(make_db: Callable[..., SpatialDatabase], driver: str) -> SpatialDatabase:
    """A database whose pool holds one connection, on ``driver`` (one of DRIVERS)."""
    return make_db(
        pool_size=1,
        max_overflow=0,
        driver="psycopg2" if driver == "psycopg2" else "psycopg",
        async_driver="psycopg" if driver == "psycopg async" else "asyncpg",
    )


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


def test_transaction_settings_by_name_are_local_to_each_transaction(
    make_db: Callable[..., SpatialDatabase],
) -> None:
    """settings= sets any setting for the transaction alone (a tenant's search_path, a
    row-level security key), in transaction(), run_transaction() and their async twins."""
    db = make_db(pool_size=1, max_overflow=0, statement_timeout="30s")
    shown = text(
        "SELECT pg_backend_pid(), current_setting('search_path'), "
        "current_setting('app.tenant', true), current_setting('enable_seqscan'), "
        "current_setting('statement_timeout')"
    )
    tenant = {"search_path": "pg_catalog, public", "app.tenant": 7, "enable_seqscan": False}
    with db.transaction(settings=tenant, statement_timeout="9s") as s:
        pid, *inside = s.execute(shown).one()
    assert inside == ["pg_catalog, public", "7", "off", "9s"]
    with db.session() as s:
        after = s.execute(shown).one()
    assert after[0] == pid and after[1] == '"$user", public' and after[3:] == ("on", "30s")
    assert not after[2]  # '' once the session has met the setting, else NULL
    ran = db.run_transaction(lambda s: s.execute(shown).one(), settings={"app.tenant": "x"})
    assert ran[0] == pid and ran[2] == "x"

    async def in_async() -> list[object]:
        try:
            async with db.async_transaction(settings={"app.tenant": "a"}) as session:
                first = (await session.execute(shown)).one()[2]

            async def read(session: Any) -> object:
                return (await session.execute(shown)).one()[2]

            second = await db.async_run_transaction(read, settings={"app.tenant": "b"})
            async with db.async_session() as session:
                third = (await session.execute(shown)).one()[2]
            return [first, second, third]
        finally:
            await db.adispose()

    assert asyncio.run(in_async()) == ["a", "b", ""]
    refused = [
        ({"bad name": 1}, "'bad name' is not a PostgreSQL setting name"),
        ({"Statement_Timeout": "1s"}, "Statement_Timeout is given twice"),
        ({"app.tenant": None}, "app.tenant has no value"),
        ({"lock_timeout": "5"}, "lock_timeout: '5' has no unit"),  # 5 ms, meant as seconds
        ({"idle_session_timeout": 60}, "idle_session_timeout: 60 has no unit"),
    ]
    for settings, message in refused:
        with (
            pytest.raises(ConfigurationError, match=message),
            db.transaction(settings=settings, statement_timeout="2s"),
        ):
            pass
    misspelt = {"statment_timeout": "1s"}
    with (
        pytest.raises(DatabaseError, match="no setting of that name: check its spelling"),
        db.transaction(settings=misspelt),
    ):
        pass
    assert db.pool_stats().checked_out == 0


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_sessions_settings_begin_each_of_its_transactions(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """A request's session that commits more than once (a tenant's writes, then its
    reads) had its tenant only in an explicit db.transaction: session(settings=...) sets
    them with SET LOCAL at the start of each transaction it begins."""
    db = one_connection(make_db, driver)
    shown = text("SELECT current_setting('app.tenant', true), current_setting('search_path')")
    tenant = {"app.tenant": "7", "search_path": "pg_catalog, public"}

    async def run_async() -> list[tuple[object, ...]]:
        try:
            async with db.async_session(settings=tenant) as session:
                first = tuple((await session.execute(shown)).one())
                await session.commit()
                second = tuple((await session.execute(shown)).one())
            async with db.async_session() as session:
                after = tuple((await session.execute(shown)).one())
            return [first, second, after]
        finally:
            await db.adispose()

    def run() -> list[tuple[object, ...]]:
        if "async" in driver:
            return asyncio.run(run_async())
        with db.session(settings=tenant) as session:
            first = tuple(session.execute(shown).one())
            session.commit()
            with session.begin_nested():  # a savepoint: within the same transaction
                second = tuple(session.execute(shown).one())
        with db.session() as session:
            after = tuple(session.execute(shown).one())
        return [first, second, after]

    first, second, after = run()
    assert first == second == ("7", "pg_catalog, public")  # the second transaction's too
    assert after[0] in ("", None) and after[1] != "pg_catalog, public"  # never the next's
    refused = pytest.raises(ConfigurationError, match="'bad name' is not a PostgreSQL setting")
    with refused, db.session(settings={"bad name": 1}):
        pass


@pytest.mark.parametrize("driver", DRIVERS)
def test_settings_changed_for_the_whole_session_never_reach_the_next_user(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture, driver: str
) -> None:
    """SET without LOCAL (a tenant's search_path, SET ROLE, an RLS key by set_config(...,
    false)) outlives the checkout: the next request ran with the previous one's settings
    on the same pooled connection. Such a connection is now replaced, with a warning."""
    db = one_connection(make_db, driver)
    state = text(
        "SELECT pg_backend_pid(), current_setting('search_path'), "
        "current_setting('app.tenant', true), current_user, current_setting('work_mem')"
    )
    changes = [
        "SET search_path = pg_catalog, public",
        "SELECT set_config('app.tenant', '7', false)",
        "SET ROLE pg_monitor",
        "SET work_mem = '1MB'",
        "SET work_mem TO DEFAULT",  # undone
    ]
    undone = ["SET ROLE pg_monitor", "RESET ROLE", "SET LOCAL search_path = pg_catalog"]

    async def run_async(statements: list[str]) -> list[tuple[object, ...]]:
        states = []
        try:
            for work in (statements, []):
                async with db.async_transaction() as session:
                    states.append(tuple((await session.execute(state)).one()))
                    for statement in work:
                        await session.execute(text(statement))
            return states
        finally:
            await db.adispose()

    def run(statements: list[str]) -> list[tuple[object, ...]]:
        if "async" in driver:
            return asyncio.run(run_async(statements))
        states = []
        for work in (statements, []):
            with db.transaction() as session:
                states.append(tuple(session.execute(state).one()))
                for statement in work:
                    session.execute(text(statement))
        return states

    caplog.set_level(logging.WARNING, logger="geosession.pool")
    before, after = run(changes)
    assert before[1:] == after[1:] and before[1] != "pg_catalog, public"
    assert after[0] != before[0]  # a new server session
    (warning,) = [r.getMessage() for r in caplog.records if "came back with" in r.getMessage()]
    assert f"search_path (set at {__file__}:" in warning and "app.tenant (set at" in warning
    assert "role (set at" in warning and "work_mem" not in warning
    assert "db.transaction(settings={'search_path': ...})" in warning
    first, second = run(undone)
    assert first == second  # the same session: nothing outlived the checkout
    assert db.metrics.session_state["settings"] == 1  # connections replaced


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_session_setting_is_seen_however_the_statement_spells_it(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """An RLS key set for the session reached the next user where the statement was
    SQLAlchemy's func.set_config (its three arguments bound), a SET after a comment or
    after another statement of the same text, or a name cast to text."""
    db = one_connection(make_db, driver)
    tenant = text("SELECT current_setting('app.tenant', true)")
    spellings: list[Any] = [
        select(func.set_config("app.tenant", "7", False)),
        text("-- the tenant\nSET app.tenant = 7"),
        text("/* the tenant */ SET app.tenant = 7"),
        text("SELECT set_config('app.tenant'::text, '7', false)"),
    ]
    kept: list[Any] = [select(func.set_config("app.tenant", "7", True))]
    if "async" not in driver and driver != "asyncpg":  # one statement per execute there
        spellings.append(text("SELECT 1; SET app.tenant = 7"))
        kept.append(text("SELECT 1; SELECT 2"))

    async def run_async(statement: Any) -> Any:
        try:
            async with db.async_transaction() as session:
                await session.execute(statement)
            async with db.async_session() as session:
                return (await session.execute(tenant)).scalar()
        finally:
            await db.adispose()

    def next_user_sees(statement: Any) -> Any:
        if "async" in driver or driver == "asyncpg":
            return asyncio.run(run_async(statement))
        with db.transaction() as session:
            session.execute(statement)
        with db.session() as session:
            return session.execute(tenant).scalar()

    assert [next_user_sees(statement) for statement in spellings] == [None] * len(spellings)
    assert db.metrics.session_state["settings"] == len(spellings)  # each one replaced
    assert {next_user_sees(statement) for statement in kept} == {""}  # LOCAL: defined, kept
    assert db.metrics.session_state["settings"] == len(spellings)  # nothing more replaced


SHOWN = text("SELECT pg_backend_pid(), current_setting('search_path')")


def run_checkouts(
    db: SpatialDatabase, driver: str, checkouts: list[tuple[list[str], str]]
) -> list[tuple[Any, ...]]:
    """Each checkout's server pid and search_path before its statements, then its
    statements and its end ("close", "commit", "savepoint rolled back" or "savepoint
    released"), errors suppressed; then the pid and path of one more checkout."""
    if "async" in driver:
        return asyncio.run(_checkouts_async(db, checkouts))
    seen = []
    for work, end in checkouts:
        with contextlib.suppress(DatabaseError), db.session() as session:
            seen.append(tuple(session.execute(SHOWN).one()))
            nested = session.begin_nested() if "savepoint" in end else None
            for statement in work:
                session.execute(text(statement))
            if nested is not None:
                nested.rollback() if "rolled" in end else nested.commit()
            if nested is not None or end == "commit":
                session.commit()
    with db.session() as session:
        seen.append(tuple(session.execute(SHOWN).one()))
    return seen


async def _checkouts_async(
    db: SpatialDatabase, checkouts: list[tuple[list[str], str]]
) -> list[tuple[Any, ...]]:
    seen = []
    try:
        for work, end in checkouts:
            with contextlib.suppress(DatabaseError):
                async with db.async_session() as session:
                    seen.append(tuple((await session.execute(SHOWN)).one()))
                    nested = await session.begin_nested() if "savepoint" in end else None
                    for statement in work:
                        await session.execute(text(statement))
                    if nested is not None:
                        await (nested.rollback() if "rolled" in end else nested.commit())
                    if nested is not None or end == "commit":
                        await session.commit()
        async with db.async_session() as session:
            seen.append(tuple((await session.execute(SHOWN)).one()))
        return seen
    finally:
        await db.adispose()


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_set_its_transaction_rolled_back_is_undone_and_keeps_the_connection(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture, driver: str
) -> None:
    """PostgreSQL undoes a SET whose transaction rolls back (a session closed without a
    commit, a failed SET, a rollback to a savepoint before it): such a checkout was told
    it had changed the setting for the whole session, and its connection was replaced.
    Only a SET that commits (here inside a released savepoint) outlives it."""
    db = one_connection(make_db, driver)
    checkouts: list[tuple[list[str], str]] = [  # statements, then commit, savepoint or not
        (["SET search_path = pg_catalog, public"], "close"),
        (["SET work_mem = 'lots'"], "close"),  # fails
        (["SET search_path = pg_catalog, public"], "savepoint rolled back"),
        (["SAVEPOINT s", "SET search_path = pg_catalog", "ROLLBACK TO SAVEPOINT s"], "close"),
        (  # the savepoint stays after a rollback to it: a second one undoes the second SET
            [
                "SAVEPOINT s",
                "SET search_path = x",
                "ROLLBACK TO s",
                "SET search_path = y",
                "ROLLBACK TO SAVEPOINT s",
                "COMMIT",
            ],
            "close",
        ),
        (["SET search_path = pg_catalog", "ROLLBACK", "SELECT 1"], "close"),
        (["SET search_path = pg_catalog, public"], "savepoint released"),
        (["SET search_path = pg_catalog", "COMMIT"], "close"),  # committed in SQL
    ]

    caplog.set_level(logging.WARNING, logger="geosession.pool")
    seen = run_checkouts(db, driver, checkouts)
    pids = [pid for pid, _ in seen]
    assert len(set(pids[:7])) == 1  # kept until the released savepoint's SET committed
    assert pids[7] != pids[0] and pids[8] != pids[7]  # each committed SET: replaced
    assert {path for _, path in seen} == {'"$user", public'}
    (warning,) = [r.getMessage() for r in caplog.records if "came back with" in r.getMessage()]
    assert warning.count("search_path (set at") == 1  # once a place: both SETs are sent there
    assert db.metrics.session_state["settings"] == 2


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_set_whose_commit_failed_keeps_the_connection(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture, driver: str
) -> None:
    """A COMMIT that fails (a deferred constraint's violation) rolls its transaction back,
    SET included; the guard counted the SET at SQLAlchemy's commit event, which comes
    before the COMMIT is sent, and replaced the connection with a false warning. A COMMIT
    sent as SQL fails the same way; a SET committed after them is still seen."""
    db = one_connection(make_db, driver)
    twice = "INSERT INTO public.guard_deferred VALUES (1), (1)"
    tenant = "SET search_path = pg_catalog, public"
    checkouts = [
        ([tenant, twice], "commit"),
        ([tenant, twice, "COMMIT"], "close"),
        ([tenant], "commit"),
    ]
    with db.transaction() as session:
        session.execute(text("DROP TABLE IF EXISTS public.guard_deferred"))
        session.execute(
            text("CREATE TABLE public.guard_deferred (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
        )
    caplog.set_level(logging.WARNING, logger="geosession.pool")
    seen = run_checkouts(db, driver, checkouts)
    pids = [pid for pid, _ in seen]
    assert pids[0] == pids[1] == pids[2]  # each failed COMMIT undid its SET: kept
    assert pids[3] != pids[2]  # the committed one: replaced
    assert {path for _, path in seen} == {'"$user", public'}
    warned = [r.getMessage() for r in caplog.records if "came back with" in r.getMessage()]
    assert len(warned) == 1 and db.metrics.session_state["settings"] == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_session_advisory_locks_never_stay_with_a_pooled_connection(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture, driver: str
) -> None:
    """pg_advisory_lock holds until it is released or the server session ends: a pooled
    connection returned holding one kept it, and no one could release it (another
    worker's pg_try_advisory_lock failed for as long as the pool lived)."""
    db = one_connection(make_db, driver)
    other = make_db(pool_size=1, max_overflow=0)
    statements = [
        ["SELECT pg_advisory_lock(7001), pg_try_advisory_lock(7002)"],  # left held
        ["SELECT pg_advisory_lock(7003)", "SELECT 1 / 0"],  # held, the transaction failed
        ["SELECT pg_advisory_lock(7004)", "SELECT pg_advisory_unlock(7004)"],  # released
        ["SELECT pg_advisory_xact_lock(7005)"],  # the transaction's own
    ]

    async def run_async(work: list[str]) -> None:
        try:
            async with db.async_session() as session:
                for statement in work:
                    await session.execute(text(statement))
        finally:
            await db.adispose()

    def run(work: list[str]) -> None:
        try:
            if "async" in driver:
                asyncio.run(run_async(work))
                return
            with db.session() as session:
                for statement in work:
                    session.execute(text(statement))
        except DatabaseError as error:
            assert "division by zero" in str(error)

    caplog.set_level(logging.WARNING, logger="geosession.pool")
    for work in statements:
        run(work)
    with other.session() as session:
        taken = session.execute(
            text("SELECT pg_try_advisory_lock(k) FROM unnest(ARRAY[7001, 7002, 7003, 7004]) k")
        )
        assert taken.scalars().all() == [True] * 4  # none is held any more
        session.execute(text("SELECT pg_advisory_unlock_all()"))
    (warning,) = [r.getMessage() for r in caplog.records if "advisory lock" in r.getMessage()]
    assert "holding 2 advisory locks, the first taken at " + __file__ in warning  # once a place
    assert "pg_advisory_xact_lock" in warning
    assert db.metrics.session_state["advisory_locks"] == 3  # released: two, then one


@pytest.mark.parametrize("driver", DRIVERS)
def test_temporary_tables_never_reach_the_next_user_of_a_pooled_connection(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture, driver: str
) -> None:
    """A temporary table made without ON COMMIT DROP lasts as long as the server session:
    the next request on the pooled connection read its rows (CREATE TEMP TABLE IF NOT
    EXISTS), or failed to make its own ("already exists")."""
    db = one_connection(make_db, driver)
    shown = text(
        "SELECT pg_backend_pid(), (SELECT count(*) FROM pg_class "
        "WHERE relnamespace = pg_my_temp_schema() AND relkind = 'r')"
    )
    checkouts = [
        [
            "CREATE TEMP TABLE scratch (id int)",
            "INSERT INTO scratch VALUES (1)",
            'CREATE TEMPORARY TABLE IF NOT EXISTS "Tenant ""7""" (id int)',
            "CREATE TEMP TABLE dropped_at_commit (id int) ON COMMIT DROP",
        ],
        ["CREATE TEMP TABLE IF NOT EXISTS scratch (id int)", "SELECT count(*) FROM scratch"],
        ["CREATE TEMP TABLE failed (id int)", "SELECT 1 / 0"],  # rolled back: nothing left
    ]

    async def run_async() -> list[Any]:
        seen = []
        try:
            for work in checkouts:
                try:
                    async with db.async_session() as session:
                        seen.append(tuple((await session.execute(shown)).one()))
                        for statement in work:
                            result = await session.execute(text(statement))
                            seen.append(result.all() if result.returns_rows else [])
                        await session.commit()
                except DatabaseError:
                    pass
            async with db.async_session() as session:
                seen.append(tuple((await session.execute(shown)).one()))
            return seen
        finally:
            await db.adispose()

    def run() -> list[Any]:
        if "async" in driver:
            return asyncio.run(run_async())
        seen = []
        for work in checkouts:
            with contextlib.suppress(DatabaseError), db.session() as session:
                seen.append(tuple(session.execute(shown).one()))
                for statement in work:
                    result = session.execute(text(statement))
                    seen.append(result.all() if result.returns_rows else [])
                session.commit()
        with db.session() as session:
            seen.append(tuple(session.execute(shown).one()))
        return seen

    caplog.set_level(logging.WARNING, logger="geosession.pool")
    seen = run()
    pids = {row[0] for row in seen if isinstance(row, tuple)}
    assert len(pids) == 1  # the same connection throughout: nothing was replaced
    assert [row[1] for row in seen if isinstance(row, tuple)] == [0, 0, 0, 0]
    assert [(0,)] in seen  # the second checkout's scratch was its own, empty
    (told,) = [r.getMessage() for r in caplog.records if "temporary table" in r.getMessage()]
    assert "temporary tables scratch (made at " in told  # once a table and place
    assert 'Tenant "7" (made at ' in told and "dropped_at_commit" not in told
    assert "ON COMMIT DROP" in told


@pytest.mark.parametrize("driver", DRIVERS)
def test_listens_prepared_statements_held_cursors_and_temporary_objects_are_undone(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture, driver: str
) -> None:
    """LISTEN, PREPARE, DECLARE ... WITH HOLD, temporary sequences and views, SELECT ...
    INTO TEMP: each outlived the checkout on the pooled connection (the next user was sent
    the channel's notifications, or failed to make its own: "already exists")."""
    db = one_connection(make_db, driver)
    shown = text(
        "SELECT pg_backend_pid(), (SELECT count(*) FROM pg_class "
        "WHERE relnamespace = pg_my_temp_schema()), (SELECT count(*) FROM "
        "pg_listening_channels()), (SELECT count(*) FROM pg_prepared_statements WHERE "
        "from_sql), (SELECT count(*) FROM pg_cursors WHERE is_holdable)"
    )
    made = [
        "LISTEN jobs",
        'PREPARE "Nearby" (int) AS SELECT $1 + 1',
        "DECLARE held NO SCROLL CURSOR WITH HOLD FOR SELECT generate_series(1, 3)",
        "CREATE TEMP SEQUENCE tickets",
        "SELECT 1 AS id INTO TEMP TABLE picked",
        "CREATE TEMP VIEW picked_view AS SELECT id FROM picked",
        "DECLARE gone NO SCROLL CURSOR FOR SELECT 1",  # without HOLD: the transaction's
    ]
    checkouts = [made, made[:-1], []]  # the same names again: none of them already exists

    async def run_async() -> list[tuple[Any, ...]]:
        seen = []
        try:
            for work in checkouts:
                async with db.async_session() as session:
                    seen.append(tuple((await session.execute(shown)).one()))
                    for statement in work:
                        await session.execute(text(statement))
                    await session.commit()
            return seen
        finally:
            await db.adispose()

    def run() -> list[tuple[Any, ...]]:
        if "async" in driver:
            return asyncio.run(run_async())
        seen = []
        for work in checkouts:
            with db.session() as session:
                seen.append(tuple(session.execute(shown).one()))
                for statement in work:
                    session.execute(text(statement))
                session.commit()
        return seen

    caplog.set_level(logging.WARNING, logger="geosession.pool")
    seen = run()
    assert len({row[0] for row in seen}) == 1  # the same connection throughout
    assert [row[1:] for row in seen] == [(0, 0, 0, 0)] * 3
    told = [r.getMessage() for r in caplog.records if "came back with" in r.getMessage()]
    assert len(told) == 6  # once a kind and place
    for kind, name in [
        ("cursor", "held"),
        ("temporary view", "picked_view"),
        ("temporary table", "picked"),
        ("temporary sequence", "tickets"),
        ("LISTEN channel", "jobs"),
        ("prepared statement", "Nearby"),
    ]:
        assert any(f"with {kind} {name} (made at {__file__}:" in m for m in told), kind
    assert all("gone" not in m for m in told)
    undone = {kind: count for kind, count in db.metrics.session_state.items() if count}
    assert undone == {
        "held_cursors": 2,
        "temporary_views": 2,
        "temporary_tables": 2,
        "temporary_sequences": 2,
        "listen_channels": 2,
        "prepared_statements": 2,
    }  # two checkouts left each


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


def test_geoalchemy_wkb_elements_keep_their_own_srid_from_query_to_query(
    db: SpatialDatabase,
) -> None:
    """GeoAlchemy2 writes a WKB element's SRID into the SQL, which SQLAlchemy would cache
    under a key without it: the second query of the same shape ran in the first's SRID."""
    point = shapely.Point(1, 2)
    with db.session() as s:
        for srid, shown in (
            (3857, "SRID=3857;"),
            (4326, "SRID=4326;"),
            (-1, ""),
            (2154, "SRID=2154;"),
        ):
            ewkt = s.execute(select(func.ST_AsEWKT(from_shape(point, srid)))).scalar_one()
            assert ewkt == f"{shown}POINT(1 2)"


def test_geoalchemy_srids_are_right_for_statements_compiled_before_geosession_was_imported(
    database_url: str,
) -> None:
    url = make_url(database_url).set(drivername="postgresql+psycopg").render_as_string(False)
    program = f"""
import shapely
from geoalchemy2.shape import from_shape
from sqlalchemy import create_engine, func, select

engine = create_engine({url!r})
with engine.connect() as connection:
    def ewkt(srid):
        query = select(func.ST_AsEWKT(from_shape(shapely.Point(1, 2), srid)))
        return connection.execute(query).scalar_one()

    print(ewkt(3857))
    import geosession
    print(ewkt(4326))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["SRID=3857;POINT(1", "2)", "SRID=4326;POINT(1", "2)"]


def test_a_session_used_without_with_says_to_write_with(db: SpatialDatabase) -> None:
    """SQLAlchemy's sessionmaker() gives a Session; db.session() gives the block that
    holds one, and says so instead of Python's "'_GeneratorContextManager' object has no
    attribute 'execute'". Nothing is checked out by the mistake."""
    with pytest.raises(AttributeError, match=r"write `with db.session\(\) as s:` and call s.exe"):
        db.session().execute(text("SELECT 1"))
    with pytest.raises(AttributeError, match=r"`with db.transaction\(\) as s:` and call s.add"):
        db.transaction(statement_timeout="1s").add(object())

    async def misuse() -> None:
        with pytest.raises(AttributeError, match=r"`async with db.async_session\(\) as s:`"):
            await db.async_session().execute(text("SELECT 1"))
        with pytest.raises(AttributeError, match=r"`async with db.async_transaction\(\) as s"):
            db.async_transaction().add(object())
        sync_in_async = r"in async code write `async with db.async_session\(\) as s:`"
        with pytest.raises(TypeError, match=sync_in_async):  # "does not support the
            async with db.session():  # asynchronous context manager protocol"
                pass
        async with db.async_transaction() as session:
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
        await db.adispose()

    asyncio.run(misuse())
    sync_twin = r"or `with db.transaction\(\) as s:` in sync code"
    with pytest.raises(TypeError, match=sync_twin), db.async_transaction():
        pass
    with db.session() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1
    assert db.pool_stats().checked_out == 0
