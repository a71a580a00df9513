"""One run of an ingest id at a time.

Two runs of one id at once (the same command started twice, a cron job that overlaps its
last run) cut their chunks differently: the ledger refuses a chunk over rows the other
run committed, so one of them stops at its first such chunk, often the long-running
earlier one. Instead each run holds a session advisory lock on its id for as long as it
runs, and a second run is refused before it reads a row, naming the holder.

The lock lives on a connection of its own taken out of the pool: it takes no room the
writers need, and it ends with its server session, so a process that died without
releasing it holds nothing once its connection is gone. Behind PgBouncer in transaction
pooling (``pgbouncer=True``) a session lock would stay on a server connection that other
clients go on to use, so none is taken there; there, and after the lock's connection was
lost mid-run (a terminated backend, a restart), the ledger's check keeps every row once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from geosession.errors import LockTimeout
from geosession.ingest.connections import Connections

_KEEP_IDLE = (
    "SELECT set_config('idle_session_timeout', '0', false) "
    "WHERE current_setting('idle_session_timeout', true) IS NOT NULL"
)
"""The lock's connection idles for the whole load: a server that ends idle sessions
(PostgreSQL 14's idle_session_timeout) would end the lock with it."""

_NAMED = (
    "SELECT set_config('application_name', concat_ws(' ', "
    "nullif(current_setting('application_name'), ''), 'ingest', %(id)s::text), false)"
)
"""The lock's connection is named after the load (``geosession ingest nightly``), so that
pg_stat_activity, ``geosession activity`` and a refused run's error show which loads run;
the server cuts the name at 63 bytes."""

_TAKE = "SELECT pg_try_advisory_lock(hashtext('geosession ingest'), hashtext(%(id)s))"
"""A pair of 32-bit keys: a space of its own, apart from the single 64-bit keys that
applications and the ledger's turns take."""

_HOLDER = """
    SELECT a.pid, a.usename, a.application_name, host(a.client_addr),
           extract(epoch FROM now() - a.backend_start)::int
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = hashtext('geosession ingest')::oid AND l.objid = hashtext(%(id)s)::oid
"""

_GRACE = 1.0
"""Seconds a refused run tries again for (every _PAUSE): a process killed a moment ago
holds its lock until its backend has seen the connection close (a rerun at once after a
crash), which must not be taken for a run going on."""
_PAUSE = 0.1


@contextlib.contextmanager
def one_run_at_a_time(
    connections: Connections, ingest_id: str, table: str, *, locked: bool
) -> Iterator[None]:
    """Holds ``ingest_id``'s run lock while the body runs (nothing when not ``locked``:
    a dry run, or behind PgBouncer); raises LockTimeout if another run holds it."""
    if not locked:
        yield
        return
    holder = connections.kept(lambda conn: _take(conn, ingest_id, table))
    try:
        yield
    finally:
        holder.close()  # its session ends, and the lock with it


def _take(conn: psycopg.Connection[Any], ingest_id: str, table: str) -> None:
    conn.execute(_KEEP_IDLE)
    conn.execute(_NAMED, {"id": ingest_id})
    deadline = time.monotonic() + _GRACE
    while not _fetched(conn, _TAKE, ingest_id)[0][0]:
        if time.monotonic() >= deadline:
            found = _fetched(conn, _HOLDER, ingest_id)
            raise _running(ingest_id, table, found[0] if found else None)
        time.sleep(_PAUSE)


def _fetched(conn: psycopg.Connection[Any], query: str, ingest_id: str) -> list[Any]:
    """Rows of ``query``, its transaction ended: the lock's connection idles, never in
    a transaction (a session lock outlives it)."""
    rows = conn.execute(query, {"id": ingest_id}).fetchall()
    conn.commit()
    return rows


def _running(ingest_id: str, table: str, holder: tuple[Any, ...] | None) -> LockTimeout:
    """The refusal of a second run, with who holds the lock and how to go on."""
    if holder is None:
        who, end = "another session (not seen in pg_stat_activity)", ""
    else:
        pid = holder[0]
        who = f"the session of pid {pid} ({_described(holder)})"
        end = (
            "; if that run's process is gone but its connection lingers (until TCP "
            f"keepalives end it), end it with SELECT pg_terminate_backend({pid})"
        )
    return LockTimeout(
        f"Ingest {ingest_id} into {table} is already running: {who} holds its run lock. "
        "Two runs of one ingest id at once would stop each other, so this one loaded "
        "nothing. Run it again once that run has ended: it resumes after every committed "
        f"row{end}",
        sqlstate="55P03",
    )


def _described(holder: tuple[Any, ...]) -> str:
    """What pg_stat_activity shows of the holder (less for another role's session,
    without pg_read_all_stats)."""
    _, user, application, address, age = holder
    parts = [f"user {user}" if user else None]
    parts.append(f"application {application!r}" if application else None)
    parts.append(f"from {address}" if address else None)
    parts.append(f"connected {age} s ago" if age is not None else None)
    return ", ".join(part for part in parts if part) or "details hidden from this role"
