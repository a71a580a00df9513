"""Ingest under real faults: terminated backends, timeouts, a restarted server, a killed process.

Each test checks the exact row count and a checksum of the stored geometries against the
source, and (through the autouse fixture) that no connection or transaction is left over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, make_url, text

from geosession import (
    AccessDenied,
    ConfigurationError,
    ConnectionFailed,
    DatabaseError,
    LockTimeout,
    SpatialDatabase,
)
from geosession.ingest import connections, pipeline
from geosession.local import LocalCluster
from tests.faults import helpers
from tests.faults.helpers import record_dropped_gist, wait_until
from tests.test_ingest import (
    TABLE,
    create_table,
    half_loaded,
    rows,
    run_lock_holders,
    source_checksum,
    table_state,
)


@pytest.fixture
def table(db: SpatialDatabase) -> Iterator[str]:
    create_table(db)
    yield TABLE
    with db.transaction() as s:
        s.execute(text(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_rejected"))


def terminate(
    admin: psycopg.Connection[Any], application: str, query: str = "%", running_for: float = 0
) -> int:
    """Terminates the application's backends running a statement (``query``: LIKE) for
    ``running_for`` seconds or more."""
    found = admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = %s AND state = 'active' AND query LIKE %s "
        "AND now() - query_start >= make_interval(secs => %s)",
        (application, query, running_for),
    ).fetchone()
    return int(found[0]) if found else 0


@contextlib.contextmanager
def terminating(
    admin: psycopg.Connection[Any],
    application: str,
    *,
    times: int,
    query: str = "%",
    pause: float = 0.0,
    running_for: float = 0,
) -> Iterator[list[int]]:
    """Terminates the application's matching backends from a thread, up to ``times``
    (``pause`` after each); yields the kills so far. ``running_for``: only statements
    running that long (a watchdog's rule)."""
    kills: list[int] = []
    done = threading.Event()

    def killer() -> None:
        while not done.is_set() and len(kills) < times:
            if killed := terminate(admin, application, query, running_for):
                kills.extend([1] * killed)
                time.sleep(pause)
            time.sleep(0.01)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        yield kills
    finally:
        done.set()
        thread.join()


def victim(make_db: Callable[..., SpatialDatabase], application: str) -> SpatialDatabase:
    """A database whose engine has connected once: the terminating thread then kills
    connections the load is working on, not the engine's first while SQLAlchemy
    initializes it (retried too, but not the fault these tests are about)."""
    db = make_db(application_name=application)
    with db.session() as s:
        s.execute(text("SELECT 1"))
    return db


def waited_out(attempt: int) -> float:
    """Stands in for the restart backoff where none may be waited: the server answered."""
    raise AssertionError(
        f"the load waited a backoff (attempt {attempt}) for a server that answered"
    )


def test_a_connection_lost_before_it_goes_back_to_the_pool_logs_no_error(
    db: SpatialDatabase, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A step's read leaves its transaction open, and its backend is terminated before the
    connection goes back: the pool's rollback of it logged "Exception during reset or
    similar" at ERROR with a traceback. The ingest ends the transaction itself, and
    discards a connection where that fails."""
    ingest_connections = connections.Connections(db.engine, 2, on_retry=lambda: None)

    def read_then_lose(conn: psycopg.Connection[Any]) -> int:
        pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(
            lambda: (
                not admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
            )
        )
        return pid

    with caplog.at_level("DEBUG", logger="sqlalchemy.pool"):
        ingest_connections.retrying(read_then_lose)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with db.session() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1  # the pool's next one works


@pytest.mark.parametrize("workers", [1, 2])
def test_backends_terminated_during_one_ingest(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    table: str,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    """The chunks are written again at once: the ledger, asked whether a lost one
    committed, answered, so the server is up (backoffs of up to 5 s each slowed a load
    whose backends were terminated every 0.05-0.2 s to 100 rows/s)."""
    monkeypatch.setattr(pipeline, "restart_backoff", waited_out)
    db = victim(make_db, "ingest-victim")
    with terminating(admin, "ingest-victim", times=3, pause=0.3) as kills:
        report = db.ingest(
            table, rows(150_000), chunk_size=5_000, defer_indexes=False, workers=workers
        )
    assert len(kills) >= 2, "the test must terminate backends mid-ingest"
    assert report.retries >= 1 and report.inserted == 150_000 and report.workers == workers
    assert table_state(db) == (150_000, 150_000, source_checksum(150_000))


def test_a_copy_whose_backend_dies_while_the_client_writes_is_retried_without_psycopgs_warning(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    table: str,
    caplog: pytest.LogCaptureFixture,
    row_trigger: Callable[[str, str, str], None],
) -> None:
    """The first row's trigger sleeps, so the server stops reading and the client's write
    of a chunk larger than the socket's buffers waits; the backend is then terminated. The
    write fails, then psycopg's end of the COPY, which it logs ("error ignored terminating
    <psycopg.Copy [BAD]>"): for the ingest's COPYs, retried, that warning is dropped."""
    row_trigger(
        table,
        "BEFORE INSERT",
        "IF NEW.id = 1 AND NOT EXISTS (SELECT FROM pg_stat_activity"
        " WHERE query = 'SELECT ''stalled once''') THEN PERFORM pg_sleep(30); END IF;",
    )
    marker = psycopg.connect(admin.info.dsn, password=admin.info.password, autocommit=True)
    loads: list[Any] = []
    try:
        with caplog.at_level("WARNING", logger="psycopg"):
            load = threading.Thread(
                target=lambda: loads.append(db.ingest(table, rows(50_000), chunk_size=50_000))
            )
            load.start()
            [pid] = wait_until(lambda: sleeping_backends(admin), timeout=30)
            wait_until(lambda: client_write_waits(admin, pid), timeout=30)
            marker.execute("SELECT 'stalled once'")  # held as its last query: no more sleeps
            terminate_backend(admin, pid)
            load.join(timeout=60)
    finally:
        marker.close()
    assert loads and loads[0].retries == 1 and loads[0].inserted == 50_000
    assert not [r for r in caplog.records if "error ignored terminating" in r.getMessage()]
    assert table_state(db) == (50_000, 50_000, source_checksum(50_000))


def sleeping_backends(admin: psycopg.Connection[Any]) -> list[int]:
    found = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE 'COPY%%'"
    )
    return [int(pid) for (pid,) in found.fetchall()]


def client_write_waits(admin: psycopg.Connection[Any], pid: int) -> bool:
    """Whether the client's socket to the backend holds more than a megabyte it could not
    send yet (Linux's /proc/net/tcp: the client's port, its send queue)."""
    found = admin.execute("SELECT client_port FROM pg_stat_activity WHERE pid = %s", (pid,))
    port = f":{found.fetchone()[0]:04X}"  # type: ignore[index]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, queues = line.split()[1], line.split()[4]
        if local.endswith(port):
            return int(queues.split(":")[0], 16) > 1_000_000
    return False


def test_backends_terminated_while_a_load_merges_its_ledger_entries(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Entries merged every few chunks while two writers commit and backends die: a
    chunk whose commit went unanswered is still found by its own entry, and the load
    ends with every row once and one entry."""
    from geosession.ingest import ledger_merges

    monkeypatch.setattr(ledger_merges, "MERGE_EVERY", 3)
    db = victim(make_db, "merge-victim")
    with terminating(admin, "merge-victim", times=4, pause=0.2) as kills:
        report = db.ingest(
            table, rows(90_000), chunk_size=3_000, defer_indexes=False, workers=2, ingest_id="m"
        )
    assert len(kills) >= 2, "the test must terminate backends mid-ingest"
    assert report.retries >= 1 and report.inserted == 90_000
    assert table_state(db) == (90_000, 90_000, source_checksum(90_000))
    entries = admin.execute(
        "SELECT first_row, last_row, rows_inserted FROM geosession_ingest_ledger "
        "WHERE ingest_id = 'm'"
    ).fetchall()
    assert entries == [(1, 90_000, 90_000)]


@pytest.mark.parametrize("on_conflict", ["error", "update"])  # blocks, and rows by key
def test_backends_terminated_in_the_servers_row_by_row_loop(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    table: str,
    on_conflict: str,
) -> None:
    """The loop that finds the rows the server refuses is one statement of the chunk's
    transaction: its backend terminated, the chunk is retried whole, every good row stored
    once and every bad one quarantined once."""
    db = make_db(application_name="ingest-loop-victim")
    with db.transaction() as s:
        s.execute(text(f"ALTER TABLE {table} ADD CHECK (value >= 0)"))
    source = [{**row, "value": -1.0} if row["id"] % 50 == 0 else row for row in rows(30_000)]
    loop = "DO $geosession_ingest$%"
    with terminating(admin, "ingest-loop-victim", times=2, query=loop) as kills:
        report = db.ingest(table, source, chunk_size=10_000, on_conflict=on_conflict)
    assert kills, "the test must terminate the loop's backend"
    bad = list(range(50, 30_001, 50))
    assert report.retries >= 1 and report.inserted == 30_000 - len(bad)
    assert [r.row for r in report.rejected] == bad
    good = [row for row in source if row["value"] >= 0]
    with db.session() as s:
        stored = s.execute(text(f"SELECT count(*), count(DISTINCT id), sum(id) FROM {table}"))
        assert tuple(stored.one()) == (len(good), len(good), sum(r["id"] for r in good))
        quarantined = s.execute(text(f"SELECT source_row FROM {table}_rejected ORDER BY 1"))
        assert quarantined.scalars().all() == bad


def test_a_stream_arrow_source_that_loses_its_connection_stops_the_load_which_resumes(
    db: SpatialDatabase,
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    table: str,
) -> None:
    """Rows copied by db.stream_arrow: the source's backend terminated after its first
    batch is a ConnectionFailed (through the Arrow C stream interface it was an
    ArrowInvalid holding its text); that batch commits, and a new stream with the same
    ingest_id loads the rest, every row once."""
    admin.execute("DROP TABLE IF EXISTS stream_source")
    admin.execute(f"CREATE TABLE stream_source (LIKE {TABLE} INCLUDING ALL)")
    try:
        db.ingest("stream_source", rows(6_000), progress=False)
        source = make_db(application_name="stream-victim")
        ordered = "SELECT * FROM stream_source ORDER BY id"
        with source.stream_arrow(ordered, batch_size=500) as arrow:  # the first batch is read
            assert helpers.terminate(admin, "stream-victim") == 1
            with pytest.raises(ConnectionFailed) as lost:
                db.ingest(table, arrow, ingest_id="arrow-copy", chunk_size=2_000)
        assert lost.value.ingest_report.inserted == 500  # type: ignore[attr-defined]
        assert "Raised by the source the ingest reads, not its target" in str(lost.value)
        with source.stream_arrow(ordered, batch_size=500) as arrow:
            resumed = db.ingest(table, arrow, ingest_id="arrow-copy", chunk_size=2_000)
        assert (resumed.already_committed, resumed.inserted) == (500, 5_500)
        assert table_state(db) == (6_000, 6_000, source_checksum(6_000))
        assert source.pool_stats().checked_out == 0
    finally:
        admin.execute("DROP TABLE IF EXISTS stream_source, stream_source_rejected")


def test_oversized_chunk_hits_statement_timeout_and_shrinks(
    make_db: Callable[..., SpatialDatabase], table: str
) -> None:
    db = make_db(statement_timeout="250ms")
    report = db.ingest(table, rows(60_000), chunk_size=50_000, defer_indexes=False)
    assert report.chunk_size_min < 50_000
    assert report.chunks > 1 and report.inserted == 60_000
    # checked without the 250 ms limit: the checksum query over 60,000 rows may take longer
    assert table_state(make_db()) == (60_000, 60_000, source_checksum(60_000))


def test_a_watchdog_that_terminates_long_statements_makes_the_chunks_smaller(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    table: str,
    monkeypatch: pytest.MonkeyPatch,
    row_trigger: Callable[[str, str, str], None],
) -> None:
    """A monitoring job that terminates statements running past 0.4 s, and a trigger that
    makes each row take 0.1 ms or more (1 ms of sleep every tenth): a 10,000-row chunk
    (1.1 s) is terminated on every attempt, and failed the load after its retries. Lost
    twice running, it is written in halves, each at once: the server answered."""
    monkeypatch.setattr(pipeline, "restart_backoff", waited_out)
    row_trigger(table, "BEFORE INSERT", "IF NEW.id % 10 = 0 THEN PERFORM pg_sleep(0.001); END IF;")
    db = victim(make_db, "ingest-watched")
    with terminating(admin, "ingest-watched", times=100, running_for=0.4) as kills:
        report = db.ingest(table, rows(10_000), chunk_size=10_000, defer_indexes=False)
    assert len(kills) >= 2 and report.retries == len(kills)
    assert report.inserted == 10_000 and report.chunk_size_min < 5_000
    assert table_state(db) == (10_000, 10_000, source_checksum(10_000))


def test_a_lock_held_on_the_table_is_waited_for_whole_and_named(
    make_db: Callable[..., SpatialDatabase],
    table: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CREATE INDEX (SHARE lock) or a migration holding the table: waiting for it until
    statement_timeout halved the chunks down to single rows, each waiting again, then
    failed saying to make the statement cheaper. Each chunk waits half the
    statement_timeout for a lock, then again whole, naming who holds it."""
    db = make_db(statement_timeout="1s")
    conninfo = make_url(database_url).set(drivername="postgresql")
    url = conninfo.render_as_string(hide_password=False)
    with psycopg.connect(url, application_name="migration") as holder:
        holder.execute(f"LOCK TABLE {TABLE} IN SHARE MODE")
        release = threading.Timer(3.0, holder.rollback)
        release.start()
        with caplog.at_level("WARNING", logger="geosession.ingest.pipeline"):
            report = db.ingest(table, rows(20_000), chunk_size=5_000, defer_indexes=False)
        release.join()
        assert report.inserted == 20_000 and report.retries >= 2
        assert report.chunk_size_min == 5_000  # not halved: the size was not the cause
        assert re.search(
            r"locked by pid \d+ \(migration, idle in transaction, ShareLock", caplog.text
        )
        holder.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")  # one that stays
        monkeypatch.setattr(pipeline, "restart_backoff", lambda attempt: 0.0)  # 10 waits of 0.5 s
        with pytest.raises(LockTimeout) as info:
            db.ingest(table, rows(10, start=20_001))
        holder.rollback()
    assert "waited 0.5 s for a lock before its first chunk (lock_timeout)" in str(info.value)
    assert "(migration, idle in transaction, AccessExclusiveLock held for" in str(info.value)
    assert table_state(make_db()) == (20_000, 20_000, source_checksum(20_000))


def test_a_load_that_cannot_connect_fails_at_once_saying_why(
    make_db: Callable[..., SpatialDatabase], database_url: str
) -> None:
    """The load's first connection was retried for half a minute, as a lost one is, then
    failed as a DatabaseError with the driver's words: an unknown database (no retry can
    mend it) and a server that is not there (before the load began) fail as a session's
    would."""
    url = make_url(database_url)
    missing = make_db(url.set(database="no_such_database").render_as_string(False))
    started = time.monotonic()
    with pytest.raises(AccessDenied, match='database "no_such_database" does not exist'):
        missing.ingest(TABLE, rows(10))
    nowhere = make_db(url.set(port=1).render_as_string(False), connect_timeout=2)
    with pytest.raises(ConnectionFailed, match="Could not connect to PostgreSQL at .*:1/"):
        nowhere.ingest(TABLE, rows(10))
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("before", ["connect", "first_connect"])
def test_a_first_connection_the_server_ends_while_it_opens_is_retried(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], table: str, before: str
) -> None:
    """A backend terminated before SQLAlchemy has initialized the engine on it (a
    failover at the start of a load): the server answered, so the load retries. Before
    the dialect's first statement, or before geosession's look for PostGIS, which had
    taken the server's error for a connection that cannot say, and the dialect's
    statement then failed as "the connection is closed", which failed the load."""
    name = f"first-{uuid.uuid4().hex[:8]}"
    db = make_db(application_name=name)  # its engine has never connected
    kills: list[int] = []

    def terminate_first(dbapi_connection: Any, record: Any) -> None:
        if not kills:
            kills.append(terminate_backend(admin, dbapi_connection.info.backend_pid))

    event.listen(db.engine.pool, before, terminate_first, insert=True)
    report = db.ingest(table, rows(2_000), defer_indexes=False)
    assert kills == [1]
    assert report.retries == 1 and report.inserted == 2_000
    assert table_state(db) == (2_000, 2_000, source_checksum(2_000))


def test_a_table_create_true_makes_is_made_again_when_its_connection_is_lost(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any]
) -> None:
    """create=True made its table in transactions of the engine's own, outside the load's
    retries: a backend terminated there (a failover as a load starts) failed the load.
    Its steps run again on a fresh connection now, as the load's own do."""
    admin.execute("DROP TABLE IF EXISTS made_again, made_again_rejected")
    admin.execute("CREATE SEQUENCE made_again_once")  # outlives the rolled-back CREATE
    admin.execute(
        "CREATE FUNCTION made_again_slow() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN "
        "IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() "
        "WHERE object_identity = 'public.made_again') AND nextval('made_again_once') = 1 "
        "THEN PERFORM pg_sleep(10); END IF; END$$"
    )
    admin.execute(
        "CREATE EVENT TRIGGER made_again_slow ON ddl_command_end "
        "WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION made_again_slow()"
    )
    sleeping = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE wait_event = 'PgSleep' AND query LIKE 'CREATE TABLE%'"
    )
    killer = threading.Thread(target=wait_until, args=(lambda: stored_count(admin, sleeping),))
    killer.start()
    try:
        db = make_db(application_name="made-again")
        report = db.ingest("made_again", rows(2_000), create=True)
        killer.join()
        assert report.created and report.retries >= 1 and report.inserted == 2_000
        assert stored(admin, "made_again") == 2_000
    finally:
        killer.join()
        admin.execute("DROP EVENT TRIGGER IF EXISTS made_again_slow")
        admin.execute("DROP FUNCTION IF EXISTS made_again_slow()")
        admin.execute("DROP SEQUENCE IF EXISTS made_again_once")
        admin.execute("DROP TABLE IF EXISTS made_again, made_again_rejected")


def stored_count(admin: psycopg.Connection[Any], query: str) -> int:
    found = admin.execute(query).fetchone()
    return int(found[0]) if found else 0


def terminate_backend(admin: psycopg.Connection[Any], pid: int) -> int:
    found = admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
    return int(bool(found and found[0]))


def stored(admin: psycopg.Connection[Any], table: str) -> int:
    found = admin.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(found[0]) if found else 0


@pytest.mark.parametrize(
    ("alter", "changed"),
    [
        ("ALTER COLUMN value TYPE real", "value was double precision, is real now"),
        ("ALTER COLUMN value TYPE bigint", "value was double precision, is bigint now"),
        ("DROP COLUMN name", "name was text, renamed or dropped"),
        ("RENAME COLUMN name TO title", "name was text, renamed or dropped"),
    ],
    ids=["refused in every row", "read as another type", "dropped", "renamed"],
)
def test_a_table_altered_during_the_load_stops_it_and_a_rerun_resumes(
    db: SpatialDatabase, admin: psycopg.Connection[Any], table: str, alter: str, changed: str
) -> None:
    """Binary COPY sends each column as the type the load read: after another session's
    ALTER TABLE a float8 sent for a real was refused in every row (each set aside on the
    server one COPY at a time), and one sent for a bigint stored its bits as a number.
    The next chunk stops the load, naming the change; a rerun reads the table anew."""

    def altering() -> Iterator[dict[str, Any]]:
        for row in rows(20_000):
            if row["id"] == 8_001:  # once chunks committed; waits for those in flight
                wait_until(lambda: stored(admin, table) >= 4_000)
                admin.execute(f"ALTER TABLE {table} {alter}")
            yield row

    with pytest.raises(ConfigurationError) as stopped:
        db.ingest(table, altering(), chunk_size=2_000, workers=1, ingest_id="altered")
    assert f'"public"."{table}" was altered by another session while the load ran' in str(
        stopped.value
    )
    assert f"({changed}), so source rows " in str(stopped.value)
    inserted = stopped.value.ingest_report.inserted  # type: ignore[attr-defined]
    assert 0 < inserted < 20_000
    report = db.ingest(
        table, rows(20_000), chunk_size=2_000, ingest_id="altered", extra_fields="ignore"
    )
    assert (report.already_committed, report.inserted) == (inserted, 20_000 - inserted)
    assert not report.rejected
    assert table_state(db) == (20_000, 20_000, source_checksum(20_000))
    if "value" in alter:
        with db.session() as s:
            assert s.execute(text(f"SELECT count(*) FROM {table} WHERE value <> id")).scalar() == 0


def test_a_table_replaced_during_the_load_stops_it(
    db: SpatialDatabase, admin: psycopg.Connection[Any], table: str
) -> None:
    """Dropped and made again: the rows committed went with the old table, so the error is
    not a ConfigurationError (whose message says they stay), and a rerun starts over."""

    def replacing() -> Iterator[dict[str, Any]]:
        for row in rows(10_000):
            if row["id"] == 4_001:
                wait_until(lambda: stored(admin, table) >= 2_000)
                admin.execute(f"DROP TABLE {table}")
                create_table(db)
            yield row

    with pytest.raises(DatabaseError) as stopped:
        db.ingest(table, replacing(), chunk_size=1_000, workers=1, ingest_id="replaced")
    assert not isinstance(stopped.value, ConfigurationError)
    assert "was dropped or replaced by another session while the load ran" in str(stopped.value)
    report = db.ingest(table, rows(10_000), chunk_size=1_000, ingest_id="replaced")
    assert (report.already_committed, report.inserted) == (0, 10_000)
    assert table_state(db) == (10_000, 10_000, source_checksum(10_000))


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A private server this module may restart without disturbing other tests."""
    home = Path(
        tempfile.mkdtemp(prefix="geosession-faults-", dir="/var/lib" if os.geteuid() == 0 else None)
    )
    cluster = LocalCluster(home)
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(home, ignore_errors=True)


def test_a_run_whose_lock_connection_is_terminated_takes_it_again(
    db: SpatialDatabase,
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    table: str,
) -> None:
    """The run lock's backend terminated mid-load (its session, and the lock, end): the
    load goes on, takes the lock again on a new connection within seconds, so a second
    run is still refused, and loads every row once."""
    with ThreadPoolExecutor(1) as pool:
        load, go_on = half_loaded(pool, db, 30_000, "lock-lost")
        (holder,) = run_lock_holders(admin, "lock-lost")
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (holder,))
        (again,) = wait_until(lambda: run_lock_holders(admin, "lock-lost"))
        assert again != holder
        with pytest.raises(LockTimeout, match=f"pid {again} "):
            make_db(pool_size=2).ingest(table, rows(30_000), ingest_id="lock-lost")
        go_on.set()
        report = load.result()
    assert report.inserted == 30_000 and report.retries == 0
    assert table_state(db) == (30_000, 30_000, source_checksum(30_000))
    assert run_lock_holders(admin, "lock-lost") == []


def test_a_run_lock_lost_while_indexes_are_rebuilt_is_taken_again(
    db: SpatialDatabase, database_url: str, admin: psycopg.Connection[Any], table: str
) -> None:
    """The rebuild of an index deferred for the load waits for a session's lock on the
    table; the run lock's backend is terminated meanwhile, and taken again."""
    with psycopg.connect(database_url) as blocker, ThreadPoolExecutor(1) as pool:
        load, go_on = half_loaded(pool, db, 20_000, "rebuilding")  # its GiST index dropped
        blocker.execute(f"LOCK TABLE {TABLE} IN ROW EXCLUSIVE MODE")  # COPY goes on
        go_on.set()
        rebuild_waits = (
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%CREATE INDEX%'"
        )
        wait_until(lambda: admin.execute(rebuild_waits).fetchone(), timeout=30)
        (holder,) = run_lock_holders(admin, "rebuilding")
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (holder,))
        (again,) = wait_until(lambda: run_lock_holders(admin, "rebuilding"))
        assert again != holder
        blocker.rollback()
        report = load.result()
    assert report.deferred_indexes and report.inserted == 20_000
    assert table_state(db) == (20_000, 20_000, source_checksum(20_000))


def test_a_run_whose_lock_another_run_took_meanwhile_goes_on_saying_so(
    db: SpatialDatabase,
    database_url: str,
    admin: psycopg.Connection[Any],
    table: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its lock lost, a run finds it taken by another before it could take it again: it
    warns, goes on (the ledger keeps every row once) and stops looking."""
    take = "SELECT pg_try_advisory_lock(hashtext('geosession ingest'), hashtext('lock-taken'))"
    with (
        ThreadPoolExecutor(1) as pool,
        caplog.at_level(logging.WARNING, "geosession"),
        psycopg.connect(database_url, autocommit=True) as other,
    ):
        load, go_on = half_loaded(pool, db, 20_000, "lock-taken")
        taken = False
        while not taken:  # the run looks again every 2 s: rarely, it takes the lock first
            (holder,) = wait_until(lambda: run_lock_holders(admin, "lock-taken"))
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (holder,))
            taken = other.execute(take).fetchone()[0]  # type: ignore[index]
        wait_until(lambda: "another run took it" in caplog.text)
        other.close()
        go_on.set()
        assert load.result().inserted == 20_000
    assert caplog.text.count("lost its run lock with its connection") == 1
    assert table_state(db) == (20_000, 20_000, source_checksum(20_000))


def test_server_restarted_mid_ingest(
    own_cluster: LocalCluster, make_db: Callable[..., SpatialDatabase]
) -> None:
    db = make_db(own_cluster.url(), application_name="ingest-restart")
    create_table(db)
    restarted = threading.Event()

    def restart_when_loading() -> None:
        with db.session() as s:
            while s.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar_one() < 20_000:
                s.rollback()
                time.sleep(0.05)
        own_cluster.restart("immediate")
        restarted.set()

    thread = threading.Thread(target=restart_when_loading)
    thread.start()
    try:
        report = db.ingest(TABLE, rows(120_000), chunk_size=5_000, defer_indexes=False)
    finally:
        thread.join()
    assert restarted.is_set() and report.retries >= 1
    assert table_state(db) == (120_000, 120_000, source_checksum(120_000))


def test_a_server_down_for_longer_than_the_retries_fails_the_load_saying_how_to_resume(
    own_cluster: LocalCluster,
    make_db: Callable[..., SpatialDatabase],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server stops mid-load and stays down (no backoff here, so the retries run out at
    once): the error says where the load stopped and how to go on, also where it was the
    ledger's question whether the lost chunk committed that failed last (which said only
    "retrying the whole transaction is safe"). The rerun, the server back, resumes."""
    monkeypatch.setattr(connections, "restart_backoff", lambda attempt: 0.0)
    db = make_db(own_cluster.url())
    create_table(db)

    def stop_when_loading() -> None:
        with db.session() as s:
            while s.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar_one() < 20_000:
                s.rollback()
                time.sleep(0.05)
        own_cluster.stop()

    thread = threading.Thread(target=stop_when_loading)
    thread.start()
    try:
        with pytest.raises(ConnectionFailed) as info:
            db.ingest(TABLE, rows(120_000), chunk_size=5_000, ingest_id="down", progress=False)
    finally:
        thread.join()
        own_cluster.start()
    assert re.search(r"Ingest down stopped at source rows \d+-\d+; committed", str(info.value))
    assert "rerunning with the same ingest_id resumes after them" in str(info.value)
    report = db.ingest(TABLE, rows(120_000), chunk_size=5_000, ingest_id="down", progress=False)
    assert report.already_committed >= 20_000
    assert table_state(db) == (120_000, 120_000, source_checksum(120_000))


def test_a_load_started_while_the_server_shuts_down_for_a_restart_waits_for_it(
    own_cluster: LocalCluster, make_db: Callable[..., SpatialDatabase]
) -> None:
    """A server shutting down or starting up refuses connections with SQLSTATE 57P03
    (libpq gives its words alone): a load whose first connection met that failed at once,
    as if no server were there. It waits for the server now, through its refusals while
    it is down, as a load that had connected does; a session is told what happened."""
    setup = make_db(own_cluster.url())
    create_table(setup)
    setup.dispose()  # a smart shutdown waits for every session, pooled ones too
    conninfo = own_cluster.url().replace("postgresql+psycopg://", "postgresql://")
    held = psycopg.connect(conninfo)  # the shutdown waits for it to end
    restart = threading.Thread(target=own_cluster.restart, args=("smart",))
    restart.start()
    try:
        wait_until(lambda: not _connects(conninfo))
        session_db = make_db(own_cluster.url())
        refused = pytest.raises(ConnectionFailed, match="takes no connections until it is")
        with refused as told, session_db.session() as s:
            s.execute(text("SELECT 1"))
        assert told.value.sqlstate == "57P03" and told.value.transient
        threading.Timer(1.0, held.close).start()  # then the server stops and starts again
        db = make_db(own_cluster.url(), application_name="ingest-smart-restart")
        report = db.ingest(TABLE, rows(10_000), chunk_size=5_000, defer_indexes=False)
    finally:
        held.close()  # else a failure above leaves the shutdown waiting for it
        restart.join()
    assert report.retries >= 1 and report.inserted == 10_000
    assert table_state(db) == (10_000, 10_000, source_checksum(10_000))


def _connects(conninfo: str) -> bool:
    try:
        psycopg.connect(conninfo).close()
    except psycopg.OperationalError:
        return False
    return True


KILLABLE = textwrap.dedent(
    """
    import sys
    import time
    from geosession import SpatialDatabase
    from tests.test_ingest import rows
    db = SpatialDatabase(sys.argv[1])
    def slow():
        for n, row in enumerate(rows(40_000), 1):
            if n % 2_000 == 0:
                print(n, flush=True)
                time.sleep(0.05)  # so that a kill lands mid-ingest
            yield row
    db.ingest("ingest_parcels", slow(), chunk_size=2_000, ingest_id="killed", defer_indexes=False)
    print("finished", flush=True)
    """
)


def run_script(script: str, database_url: str) -> subprocess.Popen[str]:
    """A Python process running ``script`` against the test database; its stdout piped."""
    return subprocess.Popen(
        [sys.executable, "-c", script, database_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )


def committed_rows(db: SpatialDatabase) -> int:
    with db.session() as s:
        return int(s.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar_one())


def test_killed_process_resumes_with_the_same_ingest_id(
    db: SpatialDatabase, database_url: str, table: str
) -> None:
    process = run_script(KILLABLE, database_url)
    assert process.stdout is not None
    for line in process.stdout:
        if int(line.split()[0]) >= 16_000:
            break
    wait_until(lambda: committed_rows(db) > 0)  # the source runs a few batches ahead
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    committed = table_state(db)[0]
    assert 0 < committed < 40_000
    report = db.ingest(table, rows(40_000), chunk_size=2_000, ingest_id="killed")
    assert report.already_committed == committed
    assert report.inserted == 40_000 - committed
    assert table_state(db) == (40_000, 40_000, source_checksum(40_000))


ASYNC_KILLABLE = textwrap.dedent(
    """
    import asyncio
    import sys
    from geosession import SpatialDatabase
    from tests.test_ingest import rows
    db = SpatialDatabase(sys.argv[1])
    async def slow():
        for n, row in enumerate(rows(40_000), 1):
            if n % 2_000 == 0:
                print(n, flush=True)
                await asyncio.sleep(0.05)  # so that the signal lands mid-ingest
            yield row
    asyncio.run(db.async_ingest("ingest_parcels", slow(), chunk_size=2_000, ingest_id="killed"))
    print("finished", flush=True)
    """
)


@pytest.mark.parametrize(
    "script",
    [KILLABLE.replace(", defer_indexes=False", ""), ASYNC_KILLABLE],  # empty: GiST deferred
    ids=["ingest", "async_ingest under asyncio.run"],
)
def test_sigterm_to_a_script_rebuilds_the_deferred_index_then_ends_the_process(
    db: SpatialDatabase, database_url: str, table: str, script: str
) -> None:
    """A script's load into an empty table gets SIGTERM (its default action): the chunks
    in flight end, the GiST index dropped for the load is built again, and the process
    then ends by SIGTERM as it would have; the same ingest_id resumes."""
    process = run_script(script, database_url)
    assert process.stdout is not None
    for line in process.stdout:
        if int(line.split()[0]) >= 16_000:
            break
    wait_until(lambda: committed_rows(db) > 0)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGTERM
    with db.session() as s:
        indexes = s.execute(text(f"SELECT indexdef FROM pg_indexes WHERE tablename = '{table}'"))
        assert any("USING gist (geom)" in row[0] for row in indexes)
    committed = table_state(db)[0]
    assert 0 < committed < 40_000
    report = db.ingest(table, rows(40_000), chunk_size=2_000, ingest_id="killed")
    assert (report.already_committed, report.inserted) == (committed, 40_000 - committed)
    assert table_state(db) == (40_000, 40_000, source_checksum(40_000))


def test_sigterm_stops_the_command_line_load_as_ctrl_c_does(
    db: SpatialDatabase, database_url: str, table: str, tmp_path: Path
) -> None:
    """A container stopping or a service manager sends SIGTERM: the chunks in flight end,
    the GiST index deferred for the empty table is rebuilt, the command says how far it got
    and how to resume (exit status 143), and the same command again loads the rest once."""
    source = tmp_path / "parcels.csv"
    with source.open("w") as f:
        f.write("id,name,value,wkt\n")
        f.writelines(
            f'{r["id"]},{r["name"]},{r["value"]},"{r["geom"].wkt}"\n' for r in rows(150_000)
        )
    command = [str(Path(sys.executable).parent / "geosession"), "ingest", str(source), table]
    env = {**os.environ, "GEOSESSION_DATABASE_URL": database_url}
    load = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    wait_until(lambda: committed_rows(db) > 0, timeout=30)
    load.send_signal(signal.SIGTERM)
    assert load.wait(timeout=60) == 143
    assert load.stderr is not None
    said = load.stderr.read().decode()
    committed = committed_rows(db)
    assert 0 < committed < 150_000, "the load ended before the signal"
    assert f"Stopped: {committed:,} rows of {source} committed by this run" in said, said
    assert "the same command again resumes after them" in said
    with db.session() as s:
        indexes = s.execute(text(f"SELECT indexdef FROM pg_indexes WHERE tablename = '{table}'"))
        assert any("USING gist (geom)" in row[0] for row in indexes)  # rebuilt before exiting
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "already committed (resumed)" in again.stdout
    assert table_state(db) == (150_000, 150_000, source_checksum(150_000))


QUIET_FEED = textwrap.dedent(
    """
    import sys
    import threading
    from geosession import SpatialDatabase
    from tests.test_ingest import rows
    db = SpatialDatabase(sys.argv[1])
    def quiet_after_3000():
        yield from rows(1_000)  # the chunk committed before Ctrl-C
        yield from rows(2_000, start=1_001, seed=1)
        print("quiet", flush=True)
        threading.Event().wait()  # a feed whose next row does not come
    try:
        db.ingest("ingest_parcels", quiet_after_3000(), chunk_size=1_000, progress=False)
    except KeyboardInterrupt as interrupt:
        print("interrupted", interrupt.ingest_report.inserted, flush=True)
    """
)


def test_ctrl_c_stops_an_ingest_whose_source_is_quiet(
    db: SpatialDatabase, database_url: str, table: str
) -> None:
    """Without flush_interval the reading thread waits inside the source; Ctrl-C must
    not wait for the source's next row (it used to hang until that row came)."""
    process = run_script(QUIET_FEED, database_url)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "quiet"
        wait_until(lambda: committed_rows(db) == 1_000)  # the first full chunk
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        output, _ = process.communicate(timeout=20)
        assert time.monotonic() - started < 10, "Ctrl-C waited for the source's next row"
    finally:
        process.kill()
    assert output.split() == ["interrupted", "1000"]
    assert table_state(db) == (1_000, 1_000, source_checksum(1_000))


REBUILD = textwrap.dedent(
    """
    import sys
    from geosession import SpatialDatabase
    db = SpatialDatabase(sys.argv[1])
    try:
        db.ingest("ingest_parcels", [], progress=False)  # rebuilds the recorded index
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """
)


def test_ctrl_c_cancels_index_rebuilds_which_stay_recorded(
    db: SpatialDatabase, database_url: str, table: str, admin: psycopg.Connection[Any]
) -> None:
    """The rebuild is held on a lock, so only cancelling it on the server can end it."""
    with rebuild_held_on_a_lock(db, database_url, table):
        process = run_script(REBUILD, database_url)
        try:
            wait_until(lambda: waiting_builds(admin), timeout=20)
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=20)
        finally:
            process.kill()
        assert not waiting_builds(admin)  # cancelled while the lock was still held
    assert output.split() == ["interrupted"]
    assert index_state(db) == (False, [f"{TABLE}_geom_idx"])
    rebuilt = db.ingest(table, [])  # the next run rebuilds it, and its report says so
    assert rebuilt.deferred_indexes == [f"{TABLE}_geom_idx"]
    assert index_state(db) == (True, [])


def test_an_index_rebuild_whose_backend_is_terminated_is_retried(
    db: SpatialDatabase, database_url: str, table: str, admin: psycopg.Connection[Any]
) -> None:
    """The rebuild waits on a lock; its backend is killed, and the retry builds it."""
    with rebuild_held_on_a_lock(db, database_url, table) as holder:
        reports: list[Any] = []
        rebuild = threading.Thread(target=lambda: reports.append(db.ingest(table, [])))
        rebuild.start()
        first = wait_until(lambda: waiting_builds(admin), timeout=20)
        admin.execute("SELECT pg_terminate_backend(%s)", (first[0],))
        wait_until(lambda: waiting_builds(admin) not in ([], first), timeout=20)  # the retry
        holder.rollback()  # the lock goes: the rebuild runs
        rebuild.join(timeout=30)
    assert reports and reports[0].retries == 1
    assert index_state(db) == (True, [])


def test_an_analyze_whose_backend_dies_every_time_warns_and_the_load_completes(
    db: SpatialDatabase,
    table: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ANALYZE evaluates an expression index's function on its sample rows: this one
    terminates its own backend there (not while the COPY or the rebuild runs it), on every
    retry. The rows and indexes are all in, so the load completes with a warning. The
    first retry runs at once (the ANALYZE had connected: the server was up), the others
    after the backoff (a proxy takes connections while the server behind it is down)."""
    breaker = f"{TABLE}_analyze_breaker"
    waits: list[int] = []
    monkeypatch.setattr(connections, "restart_backoff", lambda n: waits.append(n) or 0.0)
    with db.transaction() as s:
        s.execute(
            text(
                f"CREATE FUNCTION {breaker}(n int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$"
                " BEGIN IF current_query() ILIKE 'ANALYZE%' THEN"
                " PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN n; END $$"
            )
        )
        s.execute(text(f"CREATE INDEX {TABLE}_breaker_idx ON {TABLE} (({breaker}(id)))"))
    try:
        with caplog.at_level("WARNING", logger="geosession.ingest.indexes"):
            report = db.ingest(table, rows(2_000), progress=False)
    finally:
        with db.transaction() as s:
            s.execute(text(f"DROP INDEX IF EXISTS {TABLE}_breaker_idx"))
            s.execute(text(f"DROP FUNCTION IF EXISTS {breaker}"))
    assert report.completed and report.inserted == 2_000 and report.retries == 10
    assert waits == list(range(1, 10))
    assert f"{TABLE}_breaker_idx" in report.deferred_indexes  # rebuilt, then ANALYZE
    [warning] = [r.getMessage() for r in caplog.records if "ANALYZE" in r.getMessage()]
    assert "statistics were not refreshed" in warning
    assert f'run ANALYZE "public"."{TABLE}"' in warning
    assert table_state(db) == (2_000, 2_000, source_checksum(2_000))


def test_cancelling_an_async_ingest_cancels_its_index_rebuilds(
    db: SpatialDatabase, database_url: str, table: str, admin: psycopg.Connection[Any]
) -> None:
    async def cancel_while_rebuilding() -> None:
        task = asyncio.create_task(db.async_ingest(table, []))
        await asyncio.to_thread(wait_until, lambda: waiting_builds(admin), 20)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        assert done, "cancelling waited for the rebuild"
        with pytest.raises(asyncio.CancelledError):
            await task

    with rebuild_held_on_a_lock(db, database_url, table):
        asyncio.run(cancel_while_rebuilding())
        assert not waiting_builds(admin)  # cancelled on the server, the lock still held
    assert index_state(db) == (False, [f"{TABLE}_geom_idx"])


@contextlib.contextmanager
def rebuild_held_on_a_lock(
    db: SpatialDatabase, database_url: str, table: str
) -> Iterator[psycopg.Connection[Any]]:
    """100 rows with the GiST index dropped and recorded, as a killed load leaves them, and
    a lock that makes its CREATE INDEX wait until the block ends or the holder rolls back."""
    db.ingest(table, rows(100))
    with db.transaction() as s:
        record_dropped_gist(s, TABLE)
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as holder:
        holder.execute(f"LOCK TABLE {TABLE} IN ROW EXCLUSIVE MODE")
        yield holder


def index_state(db: SpatialDatabase) -> tuple[bool, list[str]]:
    """Whether the GiST index is there, and the indexes recorded as deferred."""
    with db.session() as s:
        built = s.execute(text(f"SELECT to_regclass('{TABLE}_geom_idx')")).scalar_one()
        recorded = s.execute(text("SELECT index_name FROM geosession_ingest_deferred_index"))
        return built is not None, list(recorded.scalars())


def waiting_builds(admin: psycopg.Connection[Any]) -> list[int]:
    """Backends whose CREATE INDEX waits for a lock."""
    found = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'CREATE INDEX%%'"
    )
    return [int(pid) for (pid,) in found.fetchall()]


def test_a_file_cut_short_is_refused_where_it_ends_and_resumes_once_repaired(
    db: SpatialDatabase, table: str, database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """GDAL's "Unexpected I/O failure" came as a bare OSError traceback; the command now
    also says which id resumes, since its default id changes with the file."""
    import geopandas
    from typer.testing import CliRunner

    from geosession.cli import app

    create_table(db)
    polygons = list(rows(150_000))
    frame = geopandas.GeoDataFrame(polygons, geometry="geom", crs=4326)
    whole = tmp_path / "whole.fgb"
    frame.to_file(whole, SPATIAL_INDEX="NO")
    cut = tmp_path / "parcels.fgb"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    result = CliRunner().invoke(app, ["ingest", str(cut), table])
    message = " ".join(str(result.exception).split())
    assert result.exit_code != 0 and "cannot read" in message and "past its feature" in message
    committed = table_state(db)[0]
    assert 0 < committed < 150_000
    ingest_id = message.partition("--ingest-id ")[2]
    assert f"{committed:,} rows of {cut} committed before this (ingest id {ingest_id})" in message
    shutil.copyfile(whole, cut)  # the file fetched again: another size and time
    resumed = CliRunner().invoke(app, ["ingest", str(cut), table, "--ingest-id", ingest_id])
    assert resumed.exit_code == 0, resumed.output
    assert table_state(db) == (150_000, 150_000, source_checksum(150_000))
