"""Reads on a real streaming replica (pg_basebackup of the test server, in hot standby):
replica=True sessions, transactions, streams and exports read there, read only; writes
stay on the primary; a replica that is down is passed over for the primary and used
again once it is back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import shapely
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import make_url, text
from typer.testing import CliRunner

from geosession import (
    ConfigurationError,
    ConnectionFailed,
    DatabaseError,
    PoolExhausted,
    SpatialDatabase,
)
from geosession.cli import app
from geosession.observe.prometheus import register
from tests.faults.helpers import Standby, free_port, libpq_url, wait_until


@pytest.fixture(scope="module")
def standby(database_url: str) -> Iterator[Standby]:
    replica = Standby(database_url)
    replica.start()
    yield replica
    replica.stop()
    shutil.rmtree(replica.home, ignore_errors=True)


@pytest.fixture
def routed(make_db: Callable[..., SpatialDatabase], standby: Standby) -> Iterator[SpatialDatabase]:
    db = make_db(replica_urls=[standby.url], statement_timeout="4s")
    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS replicated"))
        s.execute(text("CREATE TABLE replicated (id int PRIMARY KEY, geom geometry(Point, 4326))"))
        made = s.execute(text("SELECT 'replicated'::regclass::oid")).scalar()
    with psycopg.connect(libpq_url(standby.url), autocommit=True) as on_standby:
        replayed = "SELECT to_regclass('replicated')::oid"  # this table, not one dropped since
        wait_until(lambda: on_standby.execute(replayed).fetchone() == (made,), timeout=20)
    yield db
    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS replicated"))
    stats = db.replica_pool_stats()
    assert not any(pool.checked_out for pool in stats), stats


IN_RECOVERY = text("SELECT pg_is_in_recovery(), current_setting('statement_timeout')")


def _replicated(db: SpatialDatabase, rows: int) -> bool:
    """Whether the standby has the rows: a read there (not on the primary, where a context
    that wrote reads until a replica has its writes) sees them."""
    return _reads_on(db) == (True, rows)


def test_replica_sessions_read_on_the_standby_and_writes_stay_on_the_primary(
    routed: SpatialDatabase,
) -> None:
    points = [{"id": n, "geom": shapely.Point(n, n)} for n in range(1, 101)]
    assert routed.ingest("replicated", points, progress=False, on_invalid="skip").inserted == 100
    wait_until(lambda: _replicated(routed, 100))
    with routed.session(replica=True) as s:
        assert s.execute(IN_RECOVERY).one() == (True, "4s")  # the settings, there too
        assert [pool.checked_out for pool in routed.replica_pool_stats()] == [1]
        assert routed.pool_stats().checked_out == 0
    registry = CollectorRegistry()
    register(routed, registry, database="testdb")
    scraped = generate_latest(registry).decode()
    assert 'geosession_pool_checked_out{database="testdb",pool="replica0"} 0.0' in scraped
    with routed.transaction(replica=True, statement_timeout="9s") as s:
        assert s.execute(text("SHOW statement_timeout")).scalar() == "9s"
        assert s.execute(text("SELECT max(id) FROM replicated")).scalar() == 100
    with routed.session() as s:
        assert s.execute(IN_RECOVERY).one() == (False, "4s")
    assert routed.run_transaction(lambda s: s.execute(IN_RECOVERY).one(), replica=True) == (
        True,
        "4s",
    )
    with (
        pytest.raises(DatabaseError, match="read-only transaction"),
        routed.transaction(replica=True) as s,
    ):
        s.execute(text("DELETE FROM replicated"))
    query = text("SELECT id, geom FROM replicated ORDER BY id")
    assert sum(1 for _row in routed.stream(query, replica=True, batch_size=30)) == 100
    pages = routed.stream(text("SELECT id, geom FROM replicated"), replica=True, pages_by="id")
    assert [row.id for row in pages] == list(range(1, 101))


def test_cli_export_reads_on_the_replica(
    routed: SpatialDatabase,
    standby: Standby,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with routed.transaction() as s:
        s.execute(text("INSERT INTO replicated VALUES (7, ST_Point(7, 7, 4326))"))
    wait_until(lambda: _replicated(routed, 1))
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    monkeypatch.setenv("GEOSESSION_REPLICA_URLS", json.dumps([standby.url]))
    monkeypatch.setenv("GEOSESSION_APPLICATION_NAME", "exported-on-replica")
    out = tmp_path / "r.geojson"
    with psycopg.connect(libpq_url(standby.url), autocommit=True) as on_standby:
        on_standby.execute("SELECT pg_wal_replay_pause()")  # the replica stays behind
        try:
            with routed.transaction() as s:
                s.execute(text("INSERT INTO replicated VALUES (8, ST_Point(8, 8, 4326))"))
            runner = CliRunner()
            exported = runner.invoke(app, ["export", "replicated", str(out), "--replica"])
            assert exported.exit_code == 0, exported.output
            assert "Exported 1 feature " in exported.output
            assert json.loads(out.read_text())["features"][0]["properties"] == {"id": 7}
            on_primary = runner.invoke(app, ["export", "replicated", str(out)])
            assert "Exported 2 features" in on_primary.output
            assert "No replica is configured" not in exported.output
            monkeypatch.delenv("GEOSESSION_REPLICA_URLS")  # asked for one, none to ask
            unrouted = runner.invoke(app, ["export", "replicated", str(out), "--replica"])
            assert "No replica is configured (GEOSESSION_REPLICA_URLS is empty)" in (
                unrouted.output
            )
            assert "Exported 2 features" in unrouted.output
        finally:
            on_standby.execute("SELECT pg_wal_replay_resume()")


def test_async_replica_sessions_and_streams(routed: SpatialDatabase) -> None:
    with routed.transaction() as s:
        s.execute(text("INSERT INTO replicated VALUES (1, ST_Point(1, 1, 4326))"))
    wait_until(lambda: _replicated(routed, 1))

    async def read() -> tuple[object, int]:
        async with routed.async_transaction(replica=True) as s:
            shown = (await s.execute(IN_RECOVERY)).one()
        rows = 0
        async for _row in routed.async_stream(text("SELECT * FROM replicated"), replica=True):
            rows += 1
        await routed.adispose()
        return tuple(shown), rows

    assert asyncio.run(read()) == ((True, "4s"), 1)


def test_async_replica_reads_from_a_loop_beside_the_pooled_one(routed: SpatialDatabase) -> None:
    """A loop of another thread while the pooled loop runs reads on the standby too,
    through connections of its own (see test_event_loops)."""
    with routed.transaction() as s:
        s.execute(text("INSERT INTO replicated VALUES (1, ST_Point(1, 1, 4326))"))
    wait_until(lambda: _replicated(routed, 1))
    inside, leave = threading.Event(), threading.Event()

    async def hold_the_loop() -> None:
        async with routed.async_session(replica=True) as s:
            await s.execute(text("SELECT 1"))
        inside.set()
        while not leave.is_set():
            await asyncio.sleep(0.01)
        await routed.adispose()

    async def read_beside() -> tuple[object, int]:
        async with routed.async_transaction(replica=True) as s:
            shown = (await s.execute(IN_RECOVERY)).one()
        rows = [row async for row in routed.async_stream("SELECT * FROM replicated", replica=True)]
        return tuple(shown), len(rows)

    other = threading.Thread(target=asyncio.run, args=(hold_the_loop(),))
    other.start()
    try:
        assert inside.wait(10)
        assert asyncio.run(read_beside()) == ((True, "4s"), 1)
    finally:
        leave.set()
        other.join()


def test_a_standby_that_is_down_is_passed_over_for_the_primary(
    routed: SpatialDatabase, standby: Standby, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with routed.session(replica=True) as s:
        assert s.execute(IN_RECOVERY).scalar() is True
    checked = {check.name: check for check in routed.doctor().checks}["replicas"]
    assert checked.status == "ok", checked.detail
    name = f"127.0.0.1:{standby.port}/{make_url(standby.url).database}"
    assert re.fullmatch(rf"{re.escape(name)} streaming, \d+\.\d s behind", checked.detail)
    standby.stop()
    try:
        checked = {check.name: check for check in routed.doctor().checks}["replicas"]
        assert checked.status == "fail" and "cannot be reached" in checked.detail
        with caplog.at_level("WARNING", logger="geosession.replicas"):
            for _ in range(3):  # the first finds it down; the others do not try it
                with routed.session(replica=True) as s:
                    assert s.execute(IN_RECOVERY).scalar() is False
            with routed.session(replica=True) as s:
                assert s.execute(IN_RECOVERY).scalar() is False  # the primary stood in
                with pytest.raises(DatabaseError, match="read-only transaction"):
                    s.execute(text("DELETE FROM replicated"))
            result = routed.export(
                text("SELECT * FROM replicated"), tmp_path / "r.geojson", replica=True
            )
        assert result.features == 0
        assert caplog.text.count("cannot be reached") == 1 and "127.0.0.1" in caplog.text
    finally:
        standby.start()
    wait_until(lambda: _in_recovery(routed), timeout=20)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2", "asyncpg"])
def test_a_libpq_host_list_reaches_the_server_that_takes_writes(
    make_db: Callable[..., SpatialDatabase], standby: Standby, database_url: str, driver: str
) -> None:
    """postgresql://standby,down,primary/db?target_session_attrs=read-write: libpq's (and
    asyncpg's) failover; the replica URL does not take the list or its target."""
    primary = make_url(database_url)
    hosts = f"127.0.0.1:{standby.port},127.0.0.1:{free_port()},127.0.0.1:{primary.port}"
    secret = f":{quote(str(primary.password), safe='')}" if primary.password else ""
    url = f"postgresql://{primary.username}{secret}@{hosts}/{primary.database}"
    url += "?target_session_attrs=read-write"
    sync_driver = {} if driver == "asyncpg" else {"driver": driver}
    db = make_db(url, replica_urls=[standby.url], connect_timeout=3, **sync_driver)
    if driver == "asyncpg":

        async def both() -> tuple[bool, bool]:
            async with db.async_session() as s:
                written = (await s.execute(IN_RECOVERY)).scalar()
            async with db.async_session(replica=True) as s:
                replica = (await s.execute(IN_RECOVERY)).scalar()
            await db.adispose()
            return bool(written), bool(replica)

        assert asyncio.run(both()) == (False, True)
        return
    with db.session() as s:
        assert s.execute(IN_RECOVERY).scalar() is False  # the standby and the dead port passed
    with db.session(replica=True) as s:
        assert s.execute(IN_RECOVERY).scalar() is True
    connection = {check.name: check for check in db.doctor().checks}["connection"]
    assert f" on 127.0.0.1:{primary.port} " in connection.detail  # the host that answered
    with db.transaction() as s:
        s.execute(text("CREATE TABLE hosts_listed (id int, geom geometry(Point, 4326))"))
    try:
        report = db.ingest("hosts_listed", [{"id": 1, "geom": "POINT(1 2)"}], progress=False)
        assert report.inserted == 1
    finally:
        with db.transaction() as s:
            s.execute(text("DROP TABLE hosts_listed, hosts_listed_rejected"))
    down = make_db(url.replace(f"127.0.0.1:{primary.port}", "127.0.0.1:1"), **sync_driver)
    with pytest.raises(ConnectionFailed) as failed, down.session() as s:
        s.execute(text("SELECT 1"))
    assert f"127.0.0.1:{standby.port}," in str(failed.value)  # every host named


def _in_recovery(db: SpatialDatabase) -> bool:
    with db.session(replica=True) as s:
        return bool(s.execute(IN_RECOVERY).scalar())


def test_without_replicas_replica_reads_are_read_only_on_the_primary(db: SpatialDatabase) -> None:
    with db.session(replica=True) as s:
        assert s.execute(IN_RECOVERY).scalar() is False
        with pytest.raises(DatabaseError, match="read-only transaction"):
            s.execute(text("CREATE TABLE never_made (id int)"))
    with db.session() as s:  # the pooled connection is read-write again
        s.execute(text("CREATE TEMP TABLE made_here (id int)"))


def test_a_replica_too_far_behind_is_passed_over(
    make_db: Callable[..., SpatialDatabase],
    routed: SpatialDatabase,
    standby: Standby,
    caplog: pytest.LogCaptureFixture,
) -> None:
    strict = make_db(replica_urls=[standby.url], replica_max_lag=0.5)
    with routed.transaction() as s:
        s.execute(text("INSERT INTO replicated VALUES (1, ST_Point(1, 1, 4326))"))
    wait_until(lambda: _replicated(strict, 1))
    with psycopg.connect(libpq_url(standby.url), autocommit=True) as on_standby:
        on_standby.execute("SELECT pg_wal_replay_pause()")
        try:
            with routed.transaction() as s:
                s.execute(text("INSERT INTO replicated VALUES (2, ST_Point(2, 2, 4326))"))
            time.sleep(1.2)  # past the lag allowed, and past the last time it was asked
            with caplog.at_level("WARNING", logger="geosession.replicas"):
                assert _reads_on(strict) == (False, 2)  # the primary stood in
            assert "s behind (replica_max_lag is 0.5 s)" in caplog.text
            time.sleep(1.1)  # asked again, by the async engine this time

            async def in_recovery() -> object:
                async with strict.async_session(replica=True) as s:
                    found = (await s.execute(IN_RECOVERY)).scalar()
                await strict.adispose()
                return found

            assert asyncio.run(in_recovery()) is False
            lenient = make_db(replica_urls=[standby.url])  # no limit, and it wrote nothing
            with lenient.session(replica=True) as s:  # so the replica, behind
                assert s.execute(text("SELECT count(*) FROM replicated")).scalar() == 1
        finally:
            on_standby.execute("SELECT pg_wal_replay_resume()")
    wait_until(lambda: _in_recovery(strict), timeout=10)


def test_a_replica_cut_off_from_the_primary_is_passed_over(
    make_db: Callable[..., SpatialDatabase],
    routed: SpatialDatabase,
    standby: Standby,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without WAL from the primary a standby has replayed all it has, so its lag reads 0
    however old its data: with replica_max_lag it is passed over all the same."""
    strict = make_db(replica_urls=[standby.url], replica_max_lag=30)
    with psycopg.connect(libpq_url(standby.url), autocommit=True) as on_standby:
        (conninfo,) = on_standby.execute("SHOW primary_conninfo").fetchone()  # type: ignore[misc]
        on_standby.execute("ALTER SYSTEM SET primary_conninfo = ''")  # as if the link broke
        on_standby.execute("SELECT pg_reload_conf()")
        try:
            receiving = "SELECT count(*) FROM pg_stat_wal_receiver"
            wait_until(lambda: on_standby.execute(receiving).fetchone() == (0,), timeout=15)
            with routed.transaction() as s:
                s.execute(text("INSERT INTO replicated VALUES (3, ST_Point(3, 3, 4326))"))
            with caplog.at_level("WARNING", logger="geosession.replicas"):
                assert _reads_on(strict) == (False, 1)  # the primary stood in
            assert "receives no WAL from the primary, so its data may be of any age" in caplog.text
            lenient = make_db(replica_urls=[standby.url])  # no limit, and it wrote nothing
            assert _reads_on(lenient) == (True, 0)  # so the replica, stale
        finally:
            on_standby.execute(f"ALTER SYSTEM SET primary_conninfo = {_literal(conninfo)}")
            on_standby.execute("SELECT pg_reload_conf()")
    wait_until(lambda: _replicated(routed, 1), timeout=15)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def test_a_context_that_wrote_reads_its_writes_and_others_read_the_replica(
    make_db: Callable[..., SpatialDatabase], routed: SpatialDatabase, standby: Standby
) -> None:
    """While the standby's replay is paused: the thread that wrote reads on the primary
    (its write is there), another thread and an asyncio task that wrote nothing read on the
    replica; once the replica has replayed the write, the writer reads there again."""
    with psycopg.connect(libpq_url(standby.url), autocommit=True) as on_standby:
        on_standby.execute("SELECT pg_wal_replay_pause()")
        try:
            with routed.transaction() as s:
                s.execute(text("INSERT INTO replicated VALUES (4, ST_Point(4, 4, 4326))"))
            with routed.session(replica=True) as s:
                assert s.execute(IN_RECOVERY).scalar() is False  # the primary: the row is there
                assert s.execute(text("SELECT count(*) FROM replicated")).scalar() == 1
            assert _elsewhere(lambda: _reads_on(routed)) == (True, 0)  # a thread that did not write
            made_here = routed.stream(text("SELECT id, geom FROM replicated"), replica=True)
            read_there = _elsewhere(lambda: (False, sum(1 for _row in made_here)))
            assert read_there == (False, 1)  # a stream made here and read elsewhere (a web
            # response's generator) reads after the writes of where it was made

            assert _elsewhere(lambda: asyncio.run(_async_reads_on(routed))) == (True, 0)
            wrote = "INSERT INTO replicated VALUES (7, NULL)"  # in the task that reads
            assert _elsewhere(lambda: asyncio.run(_async_reads_on(routed, wrote))) == (False, 2)
            blind = make_db(replica_urls=[standby.url], read_your_writes=False)
            with blind.transaction() as s:
                s.execute(text("INSERT INTO replicated VALUES (5, ST_Point(5, 5, 4326))"))
            assert _reads_on(blind) == (True, 0)  # asked not to: the stale replica
        finally:
            on_standby.execute("SELECT pg_wal_replay_resume()")
    wait_until(lambda: _elsewhere(lambda: _reads_on(routed)) == (True, 3), timeout=15)
    assert _reads_on(routed) == (True, 3)  # the writer, on the replica that has its write
    points = [{"id": 6, "geom": shapely.Point(6, 6)}]
    on_standby_paused = psycopg.connect(libpq_url(standby.url), autocommit=True)
    try:
        on_standby_paused.execute("SELECT pg_wal_replay_pause()")
        assert routed.ingest("replicated", points, progress=False).inserted == 1
        assert _reads_on(routed) == (False, 4)  # an ingest is a write too
    finally:
        on_standby_paused.execute("SELECT pg_wal_replay_resume()")
        on_standby_paused.close()


def test_a_write_position_carries_read_your_writes_to_another_request(
    routed: SpatialDatabase, standby: Standby
) -> None:
    """A client that wrote gets the position (a cookie); its next request, another thread,
    reads after it: on the primary while the replica has not replayed it, then there."""
    with psycopg.connect(libpq_url(standby.url), autocommit=True) as on_standby:
        on_standby.execute("SELECT pg_wal_replay_pause()")
        try:
            with routed.transaction() as s:
                s.execute(text("INSERT INTO replicated VALUES (8, NULL)"))
            position = routed.write_position()
            assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", asyncio.run(_async_position(routed)))

            def next_request() -> tuple[bool, int]:
                with routed.reads_after(position):
                    return _reads_on(routed)

            assert _elsewhere(next_request) == (False, 1)
            assert _elsewhere(lambda: _reads_on(routed)) == (True, 0)  # without it: stale
        finally:
            on_standby.execute("SELECT pg_wal_replay_resume()")
    wait_until(lambda: _elsewhere(next_request) == (True, 1), timeout=15)
    with pytest.raises(ConfigurationError, match="is not a WAL position"):
        routed.reads_after("'; DROP TABLE replicated; --").__enter__()


def _reads_on(db: SpatialDatabase) -> tuple[bool, int]:
    """Whether a replica read landed on a standby, and how many rows it saw."""
    with db.session(replica=True) as s:
        found = s.execute(IN_RECOVERY).scalar()
        return bool(found), int(s.execute(text("SELECT count(*) FROM replicated")).scalar() or 0)


async def _async_position(db: SpatialDatabase) -> str:
    try:
        return await db.async_write_position()
    finally:
        await db.adispose()


async def _async_reads_on(db: SpatialDatabase, write: str | None = None) -> tuple[bool, int]:
    """:func:`_reads_on` in an asyncio task, which first runs ``write`` on the primary."""
    try:
        if write is not None:
            async with db.async_transaction() as s:
                await s.execute(text(write))
        async with db.async_session(replica=True) as s:
            found = (await s.execute(IN_RECOVERY)).scalar()
            rows = (await s.execute(text("SELECT count(*) FROM replicated"))).scalar()
            return bool(found), int(rows or 0)
    finally:
        await db.adispose()


def _elsewhere(work: Callable[[], tuple[bool, int]]) -> tuple[bool, int]:
    """``work()`` on a thread of its own: a context that wrote nothing."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


def test_the_doctor_says_when_a_replica_url_is_not_a_standby(
    make_db: Callable[..., SpatialDatabase], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With replica_max_lag reads pass over a server that is no standby (a promoted
    replica, the primary listed), whose lag cannot be told: it read as current."""
    db = make_db(replica_urls=[database_url])  # the primary itself, by mistake
    checked = {check.name: check for check in db.doctor().checks}["replicas"]
    assert checked.status == "fail" and "is not a standby" in checked.detail
    assert checked.fix.startswith("take a primary out of replica_urls (reads pass over it with")
    assert "start" not in checked.fix and "cannot be reached" not in checked.fix
    assert "replicas" not in {check.name for check in make_db().doctor().checks}
    strict = make_db(replica_urls=[database_url], replica_max_lag=30)
    checkouts = db.pool_stats().checkouts
    with caplog.at_level("WARNING", logger="geosession.replicas"):
        with db.session(replica=True) as s:  # no limit: read there, unasked
            s.execute(text("SELECT 1"))
        assert "no standby" not in caplog.text
        with strict.session(replica=True) as s:
            s.execute(text("SELECT 1"))
    assert "is no standby (pg_is_in_recovery() is false: a promoted replica" in caplog.text
    assert strict.pool_stats().checkouts == 1  # the read went to the primary's pool
    assert db.pool_stats().checkouts == checkouts  # without the limit: the replica pool's


def test_a_busy_replica_pool_is_pool_exhausted_naming_the_replica(
    make_db: Callable[..., SpatialDatabase], standby: Standby
) -> None:
    """A replica whose pool lends nothing within pool_timeout is not passed over (its
    reads would all move to the primary): the error names it and its holder."""
    db = make_db(replica_urls=[standby.url], pool_size=1, max_overflow=0, pool_timeout=0.3)
    with db.session(replica=True) as held:
        held.execute(text("SELECT 1"))
        with (
            pytest.raises(PoolExhausted, match=f"on 127.0.0.1:{standby.port}/"),
            db.session(replica=True) as s,
        ):
            s.execute(text("SELECT 1"))
    with db.session(replica=True) as s:
        assert s.execute(IN_RECOVERY).scalar() is True
