"""Through a real PgBouncer in transaction and in session pooling (pgbouncer=True): the
settings hold in every transaction and leak into no other client's, nothing prepared on one
server connection is looked for on another, and sessions, streams, exports and the ingest
work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import shapely
from sqlalchemy import make_url, text

from geosession import ConnectionFailed, QueryTimeout, SpatialDatabase
from tests.faults.helpers import free_port, libpq_url, wait_until

POOL_SIZES = {"transaction": 2, "session": 20}
"""Server connections PgBouncer keeps per database and user. In transaction pooling fewer
than our clients, so their transactions take turns on the same server connections; in
session pooling each client connection holds one while it is open (pooled ones too)."""


@pytest.fixture(scope="module", params=list(POOL_SIZES))
def pgbouncer_url(database_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The test database through a PgBouncer of this module, in each pooling mode."""
    with _pgbouncer(database_url, request.param, POOL_SIZES[request.param]) as url:
        yield url


@contextlib.contextmanager
def _pgbouncer(database_url: str, mode: str, pool_size: int, more: str = "") -> Iterator[str]:
    """A PgBouncer in front of the test database's server, pooling ``pool_size`` server
    connections per database and user; ``more``: lines of its own for pgbouncer.ini."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    assert Path(binary).is_file(), "PgBouncer is missing: make setup installs it"
    server = make_url(database_url)
    home = Path(tempfile.mkdtemp(prefix="geosession-pgbouncer-"))
    port = free_port()
    (home / "users.txt").write_text(f'"{server.username}" ""\n')
    (home / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={server.host} port={server.port}\n\n[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n"
        f"auth_file = {home / 'users.txt'}\npool_mode = {mode}\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = 200\n"
        f"logfile = {home / 'pgbouncer.log'}\nunix_socket_dir =\n{more}"
    )
    command = [binary, str(home / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(home, "postgres")
        for path in home.iterdir():
            shutil.chown(path, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = server.set(port=port, host="127.0.0.1").render_as_string(hide_password=False)
    try:
        _wait_for(url, process, home)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def _wait_for(url: str, process: subprocess.Popen[bytes], home: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            psycopg.connect(libpq_url(url), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            log = (home / "pgbouncer.log").read_text() if (home / "pgbouncer.log").exists() else ""
            assert process.poll() is None, f"PgBouncer stopped: {log[-2000:]}"
            assert time.monotonic() < deadline, f"PgBouncer did not start: {log[-2000:]}"
            time.sleep(0.1)


@pytest.fixture
def bounced(make_db: Callable[..., SpatialDatabase], pgbouncer_url: str) -> SpatialDatabase:
    return make_db(
        pgbouncer_url + "?options=-c%20work_mem%3D7MB",
        pgbouncer=True,
        statement_timeout="3s",
        server_settings={"search_path": "public, pg_catalog"},
        pool_size=3,
    )


SHOWN = "SELECT current_setting('statement_timeout'), current_setting('work_mem'), " + (
    "current_setting('search_path')"
)
EXPECTED = ("3s", "7MB", "public, pg_catalog")


def test_without_pgbouncer_mode_the_error_says_to_set_it(
    make_db: Callable[..., SpatialDatabase], pgbouncer_url: str
) -> None:
    db = make_db(pgbouncer_url)
    with (
        pytest.raises(ConnectionFailed, match=r"That is PgBouncer.*pgbouncer=True") as refused,
        db.session() as s,
    ):
        s.execute(text("SELECT 1"))
    assert not refused.value.transient  # a setting to change: run_transaction reruns nothing


def test_pgbouncers_query_wait_timeout_says_its_pool_was_busy(
    make_db: Callable[..., SpatialDatabase], database_url: str
) -> None:
    """It read as a lost connection; PgBouncer's pool of server connections was busy."""
    with _pgbouncer(database_url, "transaction", 1, "query_wait_timeout = 1\n") as url:
        db = make_db(url, pgbouncer=True, pool_size=2)
        with psycopg.connect(libpq_url(url)) as holder:
            holder.execute("SELECT 1")  # in a transaction: PgBouncer's one server connection
            with pytest.raises(ConnectionFailed) as waited, db.session() as s:
                s.execute(text("SELECT 1"))
            holder.rollback()
        message = str(waited.value)
        assert "PgBouncer found no free server connection for this client within its" in message
        assert "default_pool_size" in message and "was lost" not in message
        assert waited.value.transient
        with db.session() as s:  # the pool's connection PgBouncer closed is not lent again
            assert s.execute(text("SELECT 2")).scalar() == 2


def test_every_transaction_has_the_settings_and_no_other_client_gets_them(
    bounced: SpatialDatabase, pgbouncer_url: str
) -> None:
    """Ten times the same statements (psycopg prepares a statement at its fifth run), the
    transactions moved between server connections by a client that holds one in every
    other turn; a bare client sees none of the settings."""
    with bounced.session() as session, psycopg.connect(libpq_url(pgbouncer_url)) as holder:
        for number in range(10):
            if number % 2:
                holder.execute("SELECT 1")  # holds a server connection until its commit
            assert session.execute(text(SHOWN)).one() == EXPECTED
            assert session.execute(text("SELECT :n + 1"), {"n": number}).scalar() == number + 1
            session.commit()
            holder.commit()
            with psycopg.connect(libpq_url(pgbouncer_url), autocommit=True) as bare:
                assert bare.execute("SHOW statement_timeout").fetchone() == ("0",)
    with bounced.transaction() as s:
        assert s.execute(text(SHOWN)).one() == EXPECTED
    with pytest.raises(QueryTimeout), bounced.transaction() as s:
        s.execute(text("SELECT pg_sleep(5)"))
    with bounced.transaction(statement_timeout="10s") as s:  # SET LOCAL after the settings
        assert s.execute(text("SHOW statement_timeout")).scalar() == "10s"


def test_session_advisory_locks_are_not_looked_up_behind_pgbouncer(
    bounced: SpatialDatabase, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Without PgBouncer a checkout that took a session advisory lock has its locks
    counted and released as it returns; in transaction pooling that would run on whichever
    server session PgBouncer hands out (another client's), so behind it nothing is done."""
    caplog.set_level(logging.WARNING, logger="geosession.pool")
    try:
        with bounced.session() as s:
            s.execute(text("SELECT pg_advisory_lock(7101)"))
        assert "advisory lock" not in caplog.text
        with bounced.transaction() as s:  # the transaction's own lock works as anywhere
            assert s.execute(text("SELECT pg_try_advisory_xact_lock(7102)")).scalar() is True
    finally:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND objid = 7101"
        )


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_async_sessions_and_streams_through_pgbouncer(
    make_db: Callable[..., SpatialDatabase], pgbouncer_url: str, driver: str
) -> None:
    db = make_db(pgbouncer_url, pgbouncer=True, statement_timeout="3s", async_driver=driver)

    async def work(holder: psycopg.Connection[Any]) -> int:
        for number in range(10):
            if number % 2:
                holder.execute("SELECT 1")  # moves the next transaction to another server
            async with db.async_transaction() as s:
                shown = await s.execute(text("SELECT current_setting('statement_timeout')"))
                assert shown.scalar() == "3s"
                found = await s.execute(text("SELECT :n * 2"), {"n": number})
                assert found.scalar() == number * 2
            holder.commit()
        rows = 0
        query = text("SELECT n, ST_Point(n, n, 4326) AS geom FROM generate_series(1, 2500) n")
        async for _row in db.async_stream(query, batch_size=1000):
            rows += 1
        await db.async_engine.dispose()
        return rows

    with psycopg.connect(libpq_url(pgbouncer_url)) as holder:
        assert asyncio.run(work(holder)) == 2500


def test_ingest_stream_and_export_through_pgbouncer(
    bounced: SpatialDatabase, tmp_path: Path
) -> None:
    """The ingest's own transactions (raw psycopg) get the settings too; two COPY workers
    and the ledger work over transaction pooling; every row lands once, and the rows the
    server refuses are found by its row-by-row loop there too."""
    with bounced.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS bounced_points, bounced_points_rejected"))
        s.execute(
            text(
                "CREATE TABLE bounced_points (id int PRIMARY KEY, geom geometry(Point, 4326) "
                "CHECK (ST_X(geom) <> 777 AND ST_X(geom) > -995))"
            )
        )
        s.execute(text("CREATE INDEX ON bounced_points USING gist (geom)"))
    try:
        raw = bounced.engine.raw_connection()
        try:
            with raw.driver_connection.transaction():  # type: ignore[union-attr]
                shown = raw.driver_connection.execute(SHOWN).fetchone()  # type: ignore[union-attr]
            assert shown == EXPECTED
        finally:
            raw.close()
        rows = ({"id": n, "geom": shapely.Point(n, n)} for n in range(1, 30_001))
        report = bounced.ingest("bounced_points", rows, chunk_size=2000, workers=2)
        assert (report.inserted, report.chunks) == (29_999, 15)
        assert [r.row for r in report.rejected] == [777]
        again = bounced.ingest("bounced_points", [], ingest_id=report.ingest_id, progress=False)
        assert again.inserted == 0
        moved = [{"id": n, "geom": shapely.Point(-n, -n)} for n in range(1, 1001)]
        updated = bounced.ingest("bounced_points", moved, on_conflict="update", chunk_size=500)
        assert updated.inserted == 994  # through a staging table of each chunk's transaction
        assert [r.row for r in updated.rejected] == list(range(995, 1001))
        with bounced.session() as s:
            assert (
                s.execute(text("SELECT count(*) FROM bounced_points WHERE ST_X(geom) < 0")).scalar()
                == 994
            )
        query = text("SELECT id, geom FROM bounced_points ORDER BY id")
        assert sum(1 for _row in bounced.stream(query, batch_size=5000)) == 30_000
        result = bounced.export(query, tmp_path / "points.gpkg")
        assert result.features == 30_000
    finally:
        with bounced.transaction() as s:
            s.execute(text("DROP TABLE IF EXISTS bounced_points, bounced_points_rejected"))


def test_a_server_connection_lost_in_a_copy_through_pgbouncer_is_retried(
    bounced: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """When the server's backend dies during a COPY, PgBouncer answers its end with an
    error and closes: psycopg raised ValueError ('too many values to unpack') there, which
    no retry caught, and the load stopped with it. The chunk is written again now."""
    with bounced.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS bounced_copy, bounced_copy_rejected"))
        s.execute(text("CREATE TABLE bounced_copy (id int PRIMARY KEY, name text)"))
        s.execute(text("DROP SEQUENCE IF EXISTS bounced_once"))
        s.execute(text("CREATE SEQUENCE bounced_once"))  # outlives the rolled-back chunk
        s.execute(
            text(
                "CREATE FUNCTION bounced_slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
                "IF NEW.name = 'slow' AND nextval('bounced_once') = 1 THEN "
                "PERFORM pg_sleep(10); END IF; RETURN NEW; END$$"
            )
        )
        s.execute(
            text(
                "CREATE TRIGGER slow BEFORE INSERT ON bounced_copy "
                "FOR EACH ROW EXECUTE FUNCTION bounced_slow()"
            )
        )
    sleeping = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE wait_event = 'PgSleep' AND query LIKE 'COPY%'"
    )
    killer = threading.Thread(
        target=wait_until, args=(lambda: admin.execute(sleeping).fetchone()[0],)
    )
    killer.start()
    try:
        rows = [{"id": n, "name": "slow" if n == 3 else "x"} for n in range(1, 11)]
        report = bounced.ingest("bounced_copy", rows, chunk_size=5, workers=1)
        killer.join()
        assert (report.inserted, report.retries) == (10, 1)
        with bounced.session() as s:
            counted = s.execute(text("SELECT count(*), count(DISTINCT id) FROM bounced_copy"))
            assert counted.one() == (10, 10)
    finally:
        killer.join()
        with bounced.transaction() as s:
            s.execute(text("DROP TABLE IF EXISTS bounced_copy, bounced_copy_rejected"))
            s.execute(text("DROP FUNCTION IF EXISTS bounced_slow()"))
            s.execute(text("DROP SEQUENCE IF EXISTS bounced_once"))


def test_the_doctor_checks_through_pgbouncer(bounced: SpatialDatabase) -> None:
    """Each check in its own transaction, the settings set in each; the pool is measured
    against PgBouncer's limits, not the server's max_connections."""
    checks = {check.name: check for check in bounced.doctor().checks}
    assert checks["statement_timeout"].detail == "3s"
    pool = checks["pool size"]
    assert pool.status == "ok" and "max_client_conn" in pool.detail
    assert "max_connections" not in pool.detail


def test_create_looks_up_a_crs_with_the_settings_behind_pgbouncer_too(
    make_db: Callable[..., SpatialDatabase], postgis_elsewhere: str
) -> None:
    """create=True's lookup of an ESRI CRS's SRID ran autocommitted: behind PgBouncer the
    settings (set per transaction) were not there, so a spatial_ref_sys off the bare
    search_path was "not installed" though server_settings put it there."""
    import geopandas as gpd

    frame = gpd.GeoDataFrame(
        {"name": ["a", "b"]}, geometry=[shapely.Point(0, 0), shapely.Point(1e5, 1e5)]
    ).set_crs("ESRI:102003")
    path_with_gis = {"search_path": "public, gis"}
    direct = make_db(postgis_elsewhere, server_settings=path_with_gis)
    assert direct.ingest("albers", frame, create=True, progress=False).inserted == 2
    with _pgbouncer(postgis_elsewhere, "transaction", 2) as url:
        bounced = make_db(url, pgbouncer=True, server_settings=path_with_gis)
        report = bounced.ingest("albers_bounced", frame, create=True, progress=False)
        assert report.inserted == 2
        with bounced.session() as s:
            srid = "SELECT gis.Find_SRID('public', 'albers_bounced', 'geometry')"
            assert s.execute(text(srid)).scalar() == 102003
