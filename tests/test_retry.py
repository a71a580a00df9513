"""run_transaction: the pure policy, what runs once, and many writers under SERIALIZABLE."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import random
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from geosession import (
    CommitOutcomeUnknown,
    ConfigurationError,
    ConnectionFailed,
    DatabaseError,
    DeadlockDetected,
    IdleInTransactionTimeout,
    IntegrityViolation,
    InvalidGeometry,
    LockTimeout,
    PoolExhausted,
    QueryTimeout,
    RetryPolicy,
    SchemaChanged,
    SerializationConflict,
    SpatialDatabase,
)
from tests.faults.helpers import DRIVERS, database_for, run_tx

# -- the policy: pure, so tested without a database ------------------------------------


def test_delay_is_full_jitter_under_a_doubling_cap() -> None:
    policy = RetryPolicy(attempts=10, base=0.1, cap=1.0)
    rng = random.Random(7)
    for attempt, bound in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(2000)]
        assert 0 <= min(delays) < bound * 0.05  # spread from zero ...
        assert bound * 0.95 < max(delays) <= bound  # ... to the bound
    assert policy.delay(3, random.Random(1)) == policy.delay(3, random.Random(1))


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (SerializationConflict("x", sqlstate="40001"), True),
        (DeadlockDetected("x", sqlstate="40P01"), True),
        (ConnectionFailed("x"), True),
        (ConnectionFailed("too many clients", sqlstate="53300"), True),
        (SchemaChanged("x"), True),
        (LockTimeout("x"), False),
        (CommitOutcomeUnknown("x"), False),
        (PoolExhausted("x"), False),
        (IdleInTransactionTimeout("x"), False),
        (QueryTimeout("x"), False),
        (IntegrityViolation("x"), False),
        (InvalidGeometry("x"), False),
        (DatabaseError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_what_is_retried(error: BaseException, retried: bool) -> None:
    policy = RetryPolicy(attempts=3)
    assert policy.should_retry(error, 1) is retried
    assert policy.should_retry(error, 3) is False  # the last attempt is the last


def test_lock_timeouts_and_lost_commits_are_retried_only_when_asked() -> None:
    assert RetryPolicy(retry_lock_timeout=True).should_retry(LockTimeout("x"), 1)
    assert RetryPolicy(idempotent=True).should_retry(CommitOutcomeUnknown("x"), 1)
    assert not RetryPolicy(idempotent=True).should_retry(LockTimeout("x"), 1)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"attempts": 0}, "attempts=0"),
        ({"backoff": (2.0, 1.0)}, "backoff=(2.0, 1.0)"),
        ({"backoff": (-1.0, 1.0)}, "backoff=(-1.0, 1.0)"),
        ({"atempts": 3}, "takes no option atempts (did you mean attempts"),
    ],
)
def test_invalid_options_are_named(db: SpatialDatabase, options: Any, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named.replace("(", r"\(").replace(")", r"\)")):
        db.run_transaction(lambda s: None, **options)
    with pytest.raises(ConfigurationError):
        db.transactional(**options)
    if "atempts" in options:  # each names the method the option was given to
        with pytest.raises(ConfigurationError, match="^transactional takes no option"):
            db.transactional(**options)

        async def given() -> None:
            async def work(s: Any) -> None:
                return None

            await db.async_run_transaction(work, **options)

        with pytest.raises(ConfigurationError, match="^async_run_transaction takes no option"):
            asyncio.run(given())


# -- on the server ---------------------------------------------------------------------


@pytest.fixture
def points(admin: psycopg.Connection[Any]) -> Iterator[str]:
    admin.execute("CREATE TABLE points (id int PRIMARY KEY, geom geometry(Point, 4326))")
    yield "points"
    admin.execute("DROP TABLE points")


NON_TRANSIENT: list[tuple[str, type[Exception], str]] = [
    ("INSERT INTO points VALUES (1, NULL), (1, NULL)", IntegrityViolation, "points_pkey"),
    ("SELECT 'POLYGON((0 0, 1 1'::geometry", InvalidGeometry, "parse error"),
    ("SELECT ST_GeomFromText('POLYGON((0 0,1 1,1 0))')", InvalidGeometry, "more points"),
    ("SELECT ST_Transform('SRID=4326;POINT(0 0)'::geometry, 999999)", DatabaseError, "SRID"),
    ("SELEC 1", DatabaseError, "syntax error"),
]


@pytest.mark.parametrize("driver", DRIVERS)
def test_errors_that_are_not_transient_run_once(
    make_db: Callable[..., SpatialDatabase], points: str, driver: str
) -> None:
    db = database_for(make_db, driver)
    calls: list[str] = []

    def once(s: Session, sql: str) -> None:
        calls.append(sql)
        s.execute(text(sql))

    for sql, error, message in NON_TRANSIENT:
        with pytest.raises(error, match=message) as info:
            run_tx(db, driver, functools.partial(once, sql=sql), isolation="SERIALIZABLE")
        assert "run_transaction" not in str(info.value)

    def python_error(s: Session) -> None:
        calls.append("python")
        raise ValueError("not a database error")

    with pytest.raises(ValueError):
        run_tx(db, driver, python_error)
    assert calls == [sql for sql, _, _ in NON_TRANSIENT] + ["python"]  # each ran once


def test_attempts_that_run_out_raise_the_last_error_with_the_count(
    db: SpatialDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def always_conflicts(s: Session) -> None:
        calls.append(1)
        s.execute(text("SELECT 1"))
        raise SerializationConflict(f"conflict {len(calls)}", sqlstate="40001")

    with (
        caplog.at_level(logging.INFO, logger="geosession.retry"),
        pytest.raises(SerializationConflict) as info,
    ):
        db.run_transaction(always_conflicts, attempts=3, backoff=(0.001, 0.002))
    assert len(calls) == 3
    assert (
        str(info.value) == "conflict 3 [run_transaction gave up after 3 attempts: raise attempts=]"
    )
    retries = [r.getMessage() for r in caplog.records if "rerunning in" in r.getMessage()]
    assert len(retries) == 2
    assert (
        "always_conflicts: attempt 1 of 3 failed with SerializationConflict (40001)" in (retries[0])
    )


def test_run_transaction_commits_and_returns(db: SpatialDatabase, points: str) -> None:
    def insert(s: Session) -> int:
        s.execute(text("INSERT INTO points VALUES (1, 'SRID=4326;POINT(1 2)')"))
        return 1

    assert db.run_transaction(insert, isolation="SERIALIZABLE", read_only=False) == 1
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM points")).scalar() == 1
    with pytest.raises(DatabaseError, match="read-only"):
        db.run_transaction(insert, read_only=True)


def test_work_that_would_run_after_the_transaction_is_refused_and_rolled_back(
    db: SpatialDatabase, points: str
) -> None:
    """An async fn given to run_transaction returned an unawaited coroutine (an empty
    commit and a RuntimeWarning); a generator's body ran after the commit, if ever; a
    sync fn given to async_run_transaction failed with "can't be used in 'await'"."""

    async def insert_async(s: AsyncSession) -> None:
        await s.execute(text("INSERT INTO points VALUES (1, 'SRID=4326;POINT(1 2)')"))

    def insert_lazily(s: Session) -> Iterator[int]:
        s.execute(text("INSERT INTO points VALUES (2, 'SRID=4326;POINT(1 2)')"))
        yield 2

    def count(s: Session) -> int:
        return 3

    def transfer(s: Session) -> int:  # the README's, given to the async twin
        moved = s.execute(text("UPDATE points SET geom = geom WHERE id = 1"))
        return moved.rowcount  # type: ignore[attr-defined]  # a coroutine's, here

    with pytest.raises(ConfigurationError, match="insert_async, which is async.*async_run"):
        db.run_transaction(insert_async)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="insert_lazily returned a generator"):
        db.run_transaction(insert_lazily)

    async def sync_given_to_async() -> None:
        try:
            with pytest.raises(ConfigurationError, match="needs an async function.*count"):
                await db.async_run_transaction(count)  # type: ignore[arg-type]
            used = "needs an async function (async def fn(session), awaiting each call of "
            with warnings.catch_warnings():  # the coroutine transfer made and dropped
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    await db.async_run_transaction(transfer)  # type: ignore[arg-type]
                except ConfigurationError as error:
                    assert used in str(error) and "transfer is sync: it used" in str(error)
                else:
                    pytest.fail("a sync transfer was taken")
                gc.collect()  # it is dropped here, its warning ignored
        finally:
            await db.adispose()

    asyncio.run(sync_given_to_async())
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM points")).scalar() == 0  # none of it ran


def test_transactional_decorator(db: SpatialDatabase, points: str) -> None:
    calls: list[int] = []

    @db.transactional(isolation="SERIALIZABLE", attempts=3, backoff=(0.001, 0.002))
    def add_point(session: Session, point_id: int, *, x: float) -> int:
        """Adds one point."""
        calls.append(1)
        session.execute(
            text("INSERT INTO points VALUES (:id, ST_SetSRID(ST_MakePoint(:x, 0), 4326))"),
            {"id": point_id, "x": x},
        )
        if len(calls) == 1:
            raise DeadlockDetected("first attempt loses", sqlstate="40P01")
        return point_id

    assert add_point(5, x=1.5) == 5 and len(calls) == 2
    assert add_point.__name__ == "add_point" and add_point.__doc__ == "Adds one point."

    @db.transactional()
    async def count_points(session: AsyncSession, minimum_id: int) -> int:
        result = await session.execute(
            text("SELECT count(*) FROM points WHERE id >= :id"), {"id": minimum_id}
        )
        return int(result.scalar_one())

    async def run() -> int:
        try:
            return await count_points(1)
        finally:
            await db.adispose()

    assert asyncio.run(run()) == 1


# -- the conflict test: many writers, overlapping boxes, SERIALIZABLE -----------------

GRID = 4  # GRID x GRID cells of CELL x CELL units
CELL = 10.0
BOX = 14.0


@pytest.fixture
def cells(admin: psycopg.Connection[Any]) -> Iterator[str]:
    admin.execute(
        "CREATE TABLE cells (id int PRIMARY KEY, geom geometry(Polygon, 3857) NOT NULL, "
        "n int NOT NULL DEFAULT 0)"
    )
    admin.execute("CREATE INDEX ON cells USING gist (geom)")
    admin.execute(
        "INSERT INTO cells (id, geom) SELECT i * %s + j, "
        "ST_MakeEnvelope(i * %s, j * %s, (i + 1) * %s, (j + 1) * %s, 3857) "
        "FROM generate_series(0, %s) i, generate_series(0, %s) j",
        (GRID, CELL, CELL, CELL, CELL, GRID - 1, GRID - 1),
    )
    yield "cells"
    admin.execute("DROP TABLE cells")


def boxes(seed: int, count: int) -> list[tuple[float, float, float, float]]:
    rng = random.Random(seed)
    span = GRID * CELL - BOX
    corners = [(rng.uniform(0, span), rng.uniform(0, span)) for _ in range(count)]
    return [(x, y, x + BOX, y + BOX) for x, y in corners]


def serial_result(all_boxes: list[tuple[float, float, float, float]]) -> dict[int, int]:
    """What running every increment one after the other gives: hits per cell."""
    counts = {}
    for i in range(GRID):
        for j in range(GRID):
            x0, y0, x1, y1 = i * CELL, j * CELL, (i + 1) * CELL, (j + 1) * CELL
            counts[i * GRID + j] = sum(
                1 for a, b, c, d in all_boxes if a <= x1 and c >= x0 and b <= y1 and d >= y0
            )
    return counts


SELECT_HITS = text(
    "SELECT id, n FROM cells WHERE geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 3857) ORDER BY id"
)
UPDATE_CELL = text("UPDATE cells SET n = :n WHERE id = :id")


def increment(s: Session, box: tuple[float, float, float, float]) -> int:
    """Read, then write each hit cell's counter plus one: lost updates unless serializable."""
    hits = s.execute(SELECT_HITS, dict(zip(("x0", "y0", "x1", "y1"), box, strict=True))).all()
    for cell_id, n in hits:
        s.execute(UPDATE_CELL, {"id": cell_id, "n": n + 1})
    return len(hits)


def stored(admin: psycopg.Connection[Any]) -> dict[int, int]:
    return dict(admin.execute("SELECT id, n FROM cells").fetchall())


def test_many_writers_under_serializable_end_with_the_serial_result(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], cells: str
) -> None:
    workers, per_worker = 8, 15
    db = make_db(pool_size=workers, max_overflow=0)
    attempts = [0] * workers
    work = {w: boxes(seed=w, count=per_worker) for w in range(workers)}

    def worker(w: int) -> None:
        def counted(s: Session, box: tuple[float, float, float, float]) -> int:
            attempts[w] += 1
            return increment(s, box)

        for box in work[w]:
            db.run_transaction(
                lambda s, box=box: counted(s, box),  # type: ignore[misc]
                isolation="SERIALIZABLE",
                attempts=50,
                backoff=(0.005, 0.2),
            )

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(worker, w) for w in range(workers)]:
            future.result()  # no failure in any worker
    assert stored(admin) == serial_result([b for w in work.values() for b in w])
    assert sum(attempts) > workers * per_worker  # there were conflicts, and they were rerun


def test_many_async_writers_under_serializable_on_asyncpg(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], cells: str
) -> None:
    workers, per_worker = 6, 10
    db = make_db(pool_size=workers, max_overflow=0)
    work = {w: boxes(seed=100 + w, count=per_worker) for w in range(workers)}

    async def worker(w: int) -> None:
        for box in work[w]:
            await db.async_run_transaction(
                lambda s, box=box: s.run_sync(increment, box),  # type: ignore[misc]
                isolation="SERIALIZABLE",
                attempts=50,
                backoff=(0.005, 0.2),
            )

    async def run() -> None:
        try:
            await asyncio.gather(*(worker(w) for w in range(workers)))
        finally:
            await db.adispose()

    asyncio.run(run())
    assert stored(admin) == serial_result([b for w in work.values() for b in w])


def test_a_table_changed_under_a_prepared_statement_is_schema_changed_and_rerun(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any]
) -> None:
    """asyncpg prepares every statement: after a migration added a column, a statement the
    connection had prepared failed with a DatabaseError saying only "see the server's
    message", and run_transaction gave up at once; it is SchemaChanged now, and rerun."""
    db = make_db(pool_size=1, max_overflow=0)
    admin.execute(
        "DROP TABLE IF EXISTS migrated; CREATE TABLE migrated (id int, a int); "
        "INSERT INTO migrated VALUES (1, 2)"
    )
    read = text("SELECT * FROM migrated")

    async def run() -> tuple[SchemaChanged, list[Any]]:
        try:
            async with db.async_session() as session:
                await session.execute(read)
            admin.execute("ALTER TABLE migrated ADD COLUMN b int")
            with pytest.raises(SchemaChanged) as caught:
                async with db.async_session() as session:
                    await session.execute(read)
            async with db.async_session() as session:
                await session.execute(read)  # prepared again: works
            admin.execute("ALTER TABLE migrated ADD COLUMN c int")

            async def fn(session: AsyncSession) -> list[Any]:
                return list((await session.execute(read)).all())

            return caught.value, await db.async_run_transaction(fn)
        finally:
            await db.adispose()
            admin.execute("DROP TABLE migrated")

    error, rows = asyncio.run(run())
    assert error.transient and "cached plan must not change result type" in str(error)
    assert "running it again works" in str(error)
    assert rows == [(1, 2, None, None)]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_commit_after_a_caught_statement_error_is_refused_and_reruns_when_transient(
    make_db: Callable[..., SpatialDatabase], points: str, driver: str
) -> None:
    """PostgreSQL answers COMMIT in a failed transaction with a ROLLBACK, which no driver
    reports: fn catching an error went on and run_transaction "committed" nothing without
    a word, and a serialization failure caught so was never rerun (increments lost)."""
    db = database_for(make_db, driver)
    insert = text("INSERT INTO points VALUES (:id, NULL)")
    attempts: list[int] = []

    def best_effort(s: Session) -> str:
        s.execute(insert, {"id": 1})
        with contextlib.suppress(IntegrityViolation):
            s.execute(insert, {"id": 1})  # the duplicate fails, and is passed over
        return "placed"

    def in_a_savepoint(s: Session) -> str:
        s.execute(insert, {"id": 2})
        with contextlib.suppress(IntegrityViolation), s.begin_nested():
            s.execute(insert, {"id": 2})
        return "placed"

    def conflict_caught_once(s: Session) -> str:
        attempts.append(1)
        s.execute(insert, {"id": 3})
        if len(attempts) == 1:
            with contextlib.suppress(SerializationConflict):
                s.execute(text("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$"))
        return "placed"

    with pytest.raises(IntegrityViolation) as refused:
        run_tx(db, driver, best_effort)
    assert str(refused.value).startswith("Nothing was committed: a statement of this")
    assert "duplicate key value" in str(refused.value) and "s.begin_nested()" in str(refused.value)
    assert run_tx(db, driver, in_a_savepoint) == "placed"  # its rollback keeps the rest
    assert run_tx(db, driver, conflict_caught_once, backoff=(0.001, 0.002)) == "placed"
    assert len(attempts) == 2  # the refusal is a SerializationConflict: rerun
    with db.session() as s:
        assert s.execute(text("SELECT id FROM points ORDER BY id")).scalars().all() == [2, 3]
    if driver != "asyncpg":
        refused_at_exit = pytest.raises(IntegrityViolation, match="Nothing was committed")
        with refused_at_exit, db.transaction() as s:
            s.execute(insert, {"id": 4})
            with contextlib.suppress(IntegrityViolation):
                s.execute(insert, {"id": 4})
        assert db.pool_stats().checked_out == 0


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_rerun_that_gave_up_names_its_runner_and_no_longer_advises_it(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """The async give-up said "run_transaction gave up", and both kept the error's own
    advice to rerun: "db.run_transaction does it for you"."""
    db = database_for(make_db, driver)

    def conflicts(s: Session) -> None:
        s.execute(text("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$"))

    with pytest.raises(SerializationConflict) as gave_up:
        run_tx(db, driver, conflicts, attempts=2, backoff=(0.001, 0.002))
    runner = "async_run_transaction" if driver == "asyncpg" else "run_transaction"
    assert str(gave_up.value).endswith(f"[{runner} gave up after 2 attempts: raise attempts=]")
    assert "does it for you" not in str(gave_up.value)
