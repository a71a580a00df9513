"""Pool metrics, leak detection, slow statements and the Prometheus exporter, on the real server."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import shapely
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from geosession import (
    ConfigurationError,
    DatabaseError,
    PoolExhausted,
    QueryTimeout,
    SpatialDatabase,
)
from geosession.models import geometry_column
from geosession.observe.leaks import capture_stack
from geosession.observe.prometheus import register

MakeDb = Callable[..., SpatialDatabase]


def _line_above() -> int:
    """The line number just above the caller's line."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno - 1


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_pool_stats_during_and_after_a_session(db: SpatialDatabase) -> None:
    before = db.pool_stats()
    assert before.checked_out == 0 and before.long_holders == ()
    with db.session() as s:
        s.execute(text("SELECT 1"))
        time.sleep(0.05)
        during = db.pool_stats()
        assert during.checked_out == 1
        assert during.checkouts == before.checkouts + 1
        assert during.longest_hold_s >= 0.05
        assert "1 checked out" in str(during)
    after = db.pool_stats()
    assert after.checked_out == 0 and after.checked_in >= 1
    assert after.longest_hold_s == 0.0
    assert after.connects >= 1 and after.waits == 0 and after.timeouts == 0
    values = after.as_dict()
    assert values["checkouts"] == during.checkouts and values["long_holders"] == 0
    assert all(isinstance(v, int | float) for v in values.values())
    assert {"size", "checked_out", "checked_in", "overflow", "wait_p95_ms"} <= values.keys()


def test_overflow_counts_connections_beyond_pool_size_and_is_never_negative(
    make_db: MakeDb,
) -> None:
    """SQLAlchemy's own count starts at -pool_size: dashboards showed -9 with nothing in
    overflow."""
    db = make_db(pool_size=2, max_overflow=2)
    with contextlib.ExitStack() as held:
        assert db.pool_stats().overflow == 0
        sessions = [held.enter_context(db.session()) for _ in range(3)]
        for s in sessions:
            s.execute(text("SELECT 1"))
        stats = db.pool_stats()
        assert (stats.checked_out, stats.overflow, stats.as_dict()["overflow"]) == (3, 1, 1)
        assert "overflow 1" in str(stats)
    after = db.pool_stats()  # the third was closed as it came back to a full pool
    assert (after.checked_in, after.overflow) == (2, 0)


def test_a_connection_held_past_the_threshold_is_reported_with_this_file_and_line(
    make_db: MakeDb, caplog: pytest.LogCaptureFixture
) -> None:
    db = make_db(leak_threshold=0.2, pool_size=2)
    caplog.set_level(logging.WARNING, logger="geosession.pool")
    with db.session() as s:
        s.execute(text("SELECT 1"))  # the checkout happens here
        line = _line_above()
        # nothing calls into geosession while we wait: the watchdog thread must notice
        _wait_for(lambda: "not returned yet" in caplog.text)
        assert f'File "{__file__}", line {line}, in test_a_connection_held' in caplog.text
        assert "sqlalchemy" not in caplog.text.split("checked out (most recent call last)")[1]
        holders = db.pool_stats().long_holders
        assert len(holders) == 1 and holders[0].age > 0.2
        name = "test_a_connection_held_past_the_threshold_is_reported_with_this_file_and_line"
        assert holders[0].where == f"{__file__}:{line} in {name}"
        assert f'File "{__file__}", line {line}' in holders[0].format_stack()
    assert "was returned after" in caplog.text
    assert db.pool_stats().long_holders == ()


def test_pool_exhausted_names_the_longest_holders(make_db: MakeDb) -> None:
    db = make_db(pool_size=1, max_overflow=0, pool_timeout=0.3, leak_threshold=60)
    with db.session() as holder:
        holder.execute(text("SELECT 1"))
        line = _line_above()
        with pytest.raises(PoolExhausted) as caught, db.session() as s:
            s.execute(text("SELECT 2"))
    assert "Held longest: " in str(caught.value)
    assert f"{__file__}:{line} in test_pool_exhausted_names_the_longest_holders" in str(
        caught.value
    )
    assert "This thread already holds 1 of them and waits for one more" in str(caught.value)
    stats = db.pool_stats()
    assert stats.timeouts == 1 and stats.waits == 1 and stats.wait_max_ms >= 250


def test_a_connection_held_by_another_thread_is_not_called_nesting(make_db: MakeDb) -> None:
    db = make_db(pool_size=1, max_overflow=0, pool_timeout=0.3)
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.session() as s:
            s.execute(text("SELECT 1"))
            taken.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(5)
        with pytest.raises(PoolExhausted) as caught, db.session() as s:
            s.execute(text("SELECT 2"))
        assert "This thread" not in str(caught.value)
    finally:
        release.set()
        holder.join()


def test_waits_are_counted_and_timed(make_db: MakeDb) -> None:
    db = make_db(pool_size=1, max_overflow=0, pool_timeout=5)
    taken = threading.Event()

    def hold() -> None:
        with db.session() as s:
            s.execute(text("SELECT 1"))
            taken.set()
            time.sleep(0.3)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(5)
    assert "; the longest held now for " in str(db.pool_stats())
    with db.session() as s:
        s.execute(text("SELECT 1"))
    thread.join()
    stats = db.pool_stats()
    assert stats.waits == 1 and stats.timeouts == 0
    assert 150 <= stats.wait_p50_ms == stats.wait_p95_ms == stats.wait_max_ms < 5000
    assert "1 waited" in str(stats) and "held now" not in str(stats)  # none lent now


def test_invalidations_and_new_connections_are_counted(db: SpatialDatabase) -> None:
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        connection.invalidate()
    with db.session() as s:
        s.execute(text("SELECT 1"))
    stats = db.pool_stats()
    assert stats.invalidations == 1 and stats.connects == 2 and stats.checkouts == 2


def test_async_pool_holders_have_the_awaiting_coroutine_in_their_stack(make_db: MakeDb) -> None:
    db = make_db(leak_threshold=0.05)

    async def main() -> str:
        try:
            async with db.async_session() as s:
                await s.execute(text("SELECT 1"))
                line = _line_above()
                await asyncio.sleep(0.1)
                holders = db.pool_stats(async_pool=True).long_holders
                assert len(holders) == 1
                assert holders[0].where == f"{__file__}:{line} in main"
                return str(db.pool_stats(async_pool=True))
        finally:
            await db.async_engine.dispose()

    assert "1 checked out" in asyncio.run(main())
    assert db.pool_stats(async_pool=True).checked_out == 0


def test_async_pool_exhausted_names_the_pool_size_and_the_holder(make_db: MakeDb) -> None:
    db = make_db(pool_size=1, max_overflow=0, pool_timeout=0.3, leak_threshold=60)
    assert db.pool_stats(async_pool=True).size == 1  # before the async pool is made (was 0)

    async def main() -> tuple[str, int]:
        try:
            async with db.async_session() as holder:
                await holder.execute(text("SELECT 1"))
                line = _line_above()
                with pytest.raises(PoolExhausted) as caught:
                    async with db.async_session() as s:
                        await s.execute(text("SELECT 2"))
            return str(caught.value), line
        finally:
            await db.async_engine.dispose()

    message, line = asyncio.run(main())
    assert "pool_size=1" in message and "Held longest: " in message
    assert "This task already holds 1 of them and waits for one more" in message
    assert "(`async with db.async_session()`)" in message and "`with db.session()`" not in message
    assert f"{__file__}:{line} in main" in message
    assert db.pool_stats(async_pool=True).timeouts == 1


def test_a_write_position_waiting_for_a_busy_pool_is_pool_exhausted(make_db: MakeDb) -> None:
    """write_position and its async twin raised SQLAlchemy's TimeoutError, not the
    PoolExhausted a web application maps to 503."""
    db = make_db(pool_size=1, max_overflow=0, pool_timeout=0.3)
    with db.session() as s:
        s.execute(text("SELECT 1"))
        with pytest.raises(PoolExhausted, match="pool_size=1"):
            db.write_position()

    async def main() -> None:
        try:
            async with db.async_session() as held:
                await held.execute(text("SELECT 1"))
                with pytest.raises(PoolExhausted, match="async with db.async_session"):
                    await db.async_write_position()
        finally:
            await db.async_engine.dispose()

    asyncio.run(main())
    assert db.write_position()  # the pool free again


def test_stack_capture_skips_library_frames() -> None:
    frames = capture_stack()
    assert frames[-1][0] == __file__ and frames[-1][2] == "test_stack_capture_skips_library_frames"
    assert not any("/sqlalchemy/" in f or "/geosession/" in f for f, _, _ in frames)


def test_stack_capture_skips_code_sqlalchemy_generated_from_source() -> None:
    """SQLAlchemy 2.0 execs its decorator wrappers (file "<string>") in the decorated
    function's module globals; code a user execs is theirs and stays on the stack."""
    source = "def wrapper(capture):\n    return capture()\n"
    generated: dict[str, Any] = {"__name__": "sqlalchemy.orm.session"}
    users: dict[str, Any] = {"__name__": "__main__"}
    exec(source, generated)
    exec(source, users)
    assert all(name != "wrapper" for _, _, name in generated["wrapper"](capture_stack))
    assert users["wrapper"](capture_stack)[-1] == ("<string>", 2, "wrapper")


def test_slow_statements_are_logged_without_parameters(
    make_db: MakeDb, caplog: pytest.LogCaptureFixture
) -> None:
    db = make_db(slow_query_threshold=0.05)
    caplog.set_level(logging.WARNING, logger="geosession.slow")
    with db.session() as s:
        s.execute(text("SELECT pg_sleep(0.1), :secret"), {"secret": "hunter2"})
        s.execute(text("SELECT 1"))
    assert db.metrics.slow_queries.count == 1
    assert "Slow statement" in caplog.text and "pg_sleep" in caplog.text
    assert "hunter2" not in caplog.text
    caplog.clear()
    failing = "SELECT 1 / (count(*) - count(*)) FROM (SELECT pg_sleep(0.1)) s"  # slow, then fails
    with pytest.raises(DatabaseError), db.session() as s:
        s.execute(text(failing))
    with pytest.raises(QueryTimeout), db.transaction(statement_timeout="60ms") as s:
        s.execute(text("SELECT pg_sleep(1)"))
    with db.session() as s, contextlib.suppress(DatabaseError):  # fast and failing: not slow
        s.execute(text("SELECT 1 / 0"))
    assert db.metrics.slow_queries.count == 3  # were never counted nor logged
    assert "failed (DivisionByZero), on" in caplog.text and "failed (QueryCanceled)" in caplog.text
    assert "SELECT 1 / 0" not in caplog.text


class FlushBase(DeclarativeBase):
    pass


class FlushedLot(FlushBase):
    __tablename__ = "observe_flushed_lots"
    id: Mapped[int] = mapped_column(primary_key=True)
    geom: Mapped[Any] = geometry_column("POLYGON", 4326, spatial_index=False)


def test_slow_orm_flushes_are_logged_with_their_objects_and_the_code_that_flushed(
    make_db: MakeDb, caplog: pytest.LogCaptureFixture
) -> None:
    """A flush of thousands of objects is slow in statements none of which is slow: the
    statement log said nothing of it."""
    db = make_db(slow_query_threshold=0.02)
    FlushBase.metadata.drop_all(db.engine)
    FlushBase.metadata.create_all(db.engine)
    caplog.set_level(logging.WARNING, logger="geosession.slow")
    try:
        with db.transaction() as s:
            s.add_all(FlushedLot(id=n, geom=shapely.box(n, 0, n + 1, 1)) for n in range(3_000))
        line = inspect.currentframe().f_lineno - 2  # type: ignore[union-attr]
        (flush,) = [r.getMessage() for r in caplog.records if "Slow flush" in r.getMessage()]
        assert "of 3,000 objects (FlushedLot: 3,000 new) on " in flush
        assert f"from {__file__}:{line} in test_slow_orm_flushes" in flush
        assert "through db.ingest (binary COPY)" in flush
        assert db.metrics.slow_queries.flushes == 1

        async def changed_async() -> None:
            try:
                async with db.async_transaction() as session:
                    lots = await session.scalars(select(FlushedLot).where(FlushedLot.id < 2_000))
                    for lot in lots:
                        lot.geom = shapely.box(0, 0, 2, 2)
                    session.add(FlushedLot(id=-2, geom=shapely.box(0, 0, 1, 1)))
                    await session.flush()
            finally:
                await db.adispose()

        asyncio.run(changed_async())
        flushes = [r.getMessage() for r in caplog.records if "Slow flush" in r.getMessage()]
        assert len(flushes) == 2 == db.metrics.slow_queries.flushes
        assert "of 2,001 objects (FlushedLot: 1 new, 2,000 changed) on " in flushes[1]
        assert "in changed_async" in flushes[1] and "db.ingest" not in flushes[1]
        registry = CollectorRegistry()
        register(db, registry, database="flushes")
        output = generate_latest(registry).decode()
        assert 'geosession_slow_flushes_total{database="flushes"} 2.0' in output
    finally:
        FlushBase.metadata.drop_all(db.engine)


def test_prometheus_exporter_output(make_db: MakeDb) -> None:
    db = make_db(pool_size=3, max_overflow=1)
    registry = CollectorRegistry()
    register(db, registry, database="testdb")
    with db.transaction() as s:
        s.execute(text("SELECT 1"))
        s.execute(text("CREATE TEMP TABLE left_behind (id int)"))  # dropped as it returns
    db.metrics.ingest.add(rows=5, batches=1, seconds=0.5)
    output = generate_latest(registry).decode()
    labels = 'database="testdb",pool="sync"'
    assert f"geosession_pool_size{{{labels}}} 3.0" in output
    assert f"geosession_pool_checked_out{{{labels}}} 0.0" in output
    assert f"geosession_pool_checkouts_total{{{labels}}} 1.0" in output
    assert f"geosession_pool_overflow{{{labels}}} 0.0" in output  # SQLAlchemy's count: -2
    assert 'geosession_session_state_total{database="testdb",kind="temporary_tables"} 1.0' in output
    assert 'geosession_session_state_total{database="testdb",kind="settings"} 0.0' in output
    assert f"geosession_pool_waits_total{{{labels}}} 0.0" in output
    assert "# TYPE geosession_pool_checkout_wait_seconds histogram" in output
    assert (
        'geosession_pool_checkout_wait_seconds_bucket{database="testdb",le="+Inf",pool="sync"} 1.0'
        in output
    )
    assert f"geosession_pool_checkout_wait_seconds_count{{{labels}}} 1.0" in output
    assert 'geosession_ingest_rows_total{database="testdb"} 5.0' in output
    assert 'geosession_slow_queries_total{database="testdb"} 0.0' in output
    assert 'pool="async"' not in output
    db.async_engine  # noqa: B018 - the async pool appears once the async engine exists
    assert 'geosession_pool_size{database="testdb",pool="async"} 3.0' in (
        generate_latest(registry).decode()
    )


def test_several_databases_share_a_registry_and_one_registered_twice_counts_once(
    make_db: MakeDb,
) -> None:
    """A second register() raised prometheus_client's DuplicateTimeseries, so a process
    could export one database only, and registering it again (an app's reload) failed."""
    orders, shapes = make_db(pool_size=2), make_db(pool_size=4)
    registry = CollectorRegistry()
    first = register(orders, registry, database="orders")
    assert register(shapes, registry, database="shapes") is first
    assert register(orders, registry, database="orders") is first  # changes nothing
    output = generate_latest(registry).decode()
    assert 'geosession_pool_size{database="orders",pool="sync"} 2.0' in output
    assert 'geosession_pool_size{database="shapes",pool="sync"} 4.0' in output
    assert output.count('geosession_pool_size{database="orders"') == 1
    with pytest.raises(ConfigurationError, match="another SpatialDatabase already reports as"):
        register(make_db(), registry, database="orders")
    with pytest.raises(ConfigurationError, match="already reports as database='shapes'"):
        register(shapes, registry, database="elsewhere")


def test_dispose_stops_the_leak_watchdog(make_db: MakeDb) -> None:
    db = make_db(leak_threshold=0.1)
    with db.session() as s:
        s.execute(text("SELECT 1"))

    def watchdogs() -> int:
        return sum(t.name == "geosession-leak-watchdog" for t in threading.enumerate())

    assert watchdogs() >= 1
    before = watchdogs()
    db.dispose()
    _wait_for(lambda: watchdogs() == before - 1)


def test_ingest_totals_reach_the_exporter(make_db: MakeDb, admin: psycopg.Connection[Any]) -> None:
    table = f"observe_ingest_{os.getpid()}"
    admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, geom geometry(Point, 4326))")
    try:
        db = make_db()
        registry = CollectorRegistry()
        register(db, registry, database="testdb")
        source = [{"id": i, "geom": f"SRID=4326;POINT({i} {i})"} for i in range(1, 101)]
        source.append({"id": 101, "geom": "not a geometry"})
        report = db.ingest(table, source, chunk_size=50)
        assert report.inserted == 100 and len(report.rejected) == 1
        output = generate_latest(registry).decode()
        assert 'geosession_ingest_rows_total{database="testdb"} 100.0' in output
        assert 'geosession_ingest_quarantined_total{database="testdb"} 1.0' in output
        assert f'geosession_ingest_batches_total{{database="testdb"}} {report.chunks}.0' in output
    finally:
        admin.execute(f"DROP TABLE IF EXISTS {table}, {table}_rejected")
        admin.execute("DROP TABLE IF EXISTS geosession_ingest_ledger")


def test_many_live_databases_of_one_url_are_named_once(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture
) -> None:
    """A SpatialDatabase per request keeps its pool until the garbage collector finds it;
    ten alive at once for one URL make one warning naming where the last was made."""
    with caplog.at_level("WARNING", logger="geosession.pool"):
        made = [make_db(pool_size=2, max_overflow=1) for _ in range(9)]
        assert "SpatialDatabase objects" not in caplog.text
        made.append(make_db(pool_size=2, max_overflow=1))
        warned = [r.getMessage() for r in caplog.records if "SpatialDatabase" in r.getMessage()]
        assert len(warned) == 1 and warned[0].startswith("10 SpatialDatabase objects for ")
        assert "made at " in warned[0] and "conftest.py:" in warned[0]  # make_db's caller
        assert "(up to 3 connections each)" in warned[0]
        made.append(make_db())  # said once
        for db in made[:5]:
            db.dispose()  # disposed ones do not count; below ten, the next ten warn again
        made += [make_db() for _ in range(4)]
        warned = [r.getMessage() for r in caplog.records if "SpatialDatabase" in r.getMessage()]
        assert len(warned) == 2 and warned[1].startswith("10 SpatialDatabase objects")
        secret = [make_db("postgresql://alice:s3cret-pw@127.0.0.1:1/gis") for _ in range(10)]
        assert "alice:***@127.0.0.1:1/gis" in caplog.text and "s3cret-pw" not in caplog.text
        assert len(secret) == 10
