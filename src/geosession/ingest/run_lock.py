"""One run of an ingest id at a time.

Two runs of one id at once (the same command started twice, a cron job that overlaps its
last run) cut their chunks differently: the ledger refuses a chunk over rows the other
run committed, so one of them stops at its first such chunk, often the long-running
earlier one. Instead each run holds a session advisory lock on its id for as long as it
runs, and a second run is refused before it reads a row, naming the holder.

The lock lives on a connection of its own taken out of the pool: it takes no room the
writers need, and it ends with its server session, so a process that died without
releasing it holds nothing once its connection is gone; a run whose lock went with its
connection (a terminated backend, a restart) takes it again. Behind PgBouncer in
transaction pooling (``pgbouncer=True``) a session lock would stay on a server
connection that other clients go on to use, so none is taken there; there, and where
another run took a lost lock first, the ledger's check keeps every row once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from geosession.errors import GeoSessionError, LockTimeout
from geosession.ingest.connections import Connections

log = logging.getLogger(__name__)

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


_CHECK_EVERY = 2.0
"""Seconds between looks at whether the lock's connection is still there while the load
runs, and between tries to take the lock again once it was lost."""


class RunLock:
    """An ingest id's run lock, held on a connection of its own while the load runs."""

    def __init__(self, connections: Connections, ingest_id: str, table: str) -> None:
        self.connections, self.ingest_id, self.table = connections, ingest_id, table
        self.holder: psycopg.Connection[Any] | None = None
        self.checked = time.monotonic()
        self.gone_to_another = False

    def take(self) -> None:
        """Takes the lock, or raises LockTimeout naming the run that holds it."""
        self.holder = self.connections.kept(self._take)

    def keep(self) -> None:
        """Takes the lock again where its connection was lost (a restarted server, a
        terminated backend), looked at every _CHECK_EVERY seconds while chunks load and
        deferred indexes are rebuilt: unheld, it would let a second run in. Where a
        second run took it meanwhile, both go on (the ledger keeps every row once) and a
        warning says so."""
        if self.gone_to_another or time.monotonic() - self.checked < _CHECK_EVERY:
            return
        try:
            if self.holder is None or not _answers(self.holder):
                self._take_again()
        finally:
            self.checked = time.monotonic()

    def _take_again(self) -> None:
        """One try on a new connection; a server not back yet is tried at the next look."""
        self.release()
        try:
            self.holder = self.connections.kept(self._take, retried=False)
        except LockTimeout as error:
            self.gone_to_another = True
            log.warning(
                "ingest %s lost its run lock with its connection, and another run took it "
                "before it could take it again: both go on, and the first to commit rows "
                "the other committed stops (no row is loaded twice). %s",
                self.ingest_id,
                error,
            )
        except (GeoSessionError, psycopg.Error):
            pass

    def release(self) -> None:
        """Closes the lock's connection: its session ends, and the lock with it."""
        if self.holder is not None:
            self.holder.close()
            self.holder = None

    def _take(self, conn: psycopg.Connection[Any]) -> None:
        conn.rollback()  # nothing open (a pre-ping's), so that autocommit may be set
        conn.autocommit = True  # idle, never in a transaction: a session lock outlives them
        conn.execute(_KEEP_IDLE)
        conn.execute(_NAMED, {"id": self.ingest_id})
        deadline = time.monotonic() + _GRACE
        while not _fetched(conn, _TAKE, self.ingest_id)[0][0]:
            if time.monotonic() >= deadline:
                found = _fetched(conn, _HOLDER, self.ingest_id)
                raise _running(self.ingest_id, self.table, found[0] if found else None)
            time.sleep(_PAUSE)


class _Unlocked(RunLock):
    """No run lock: a dry run, or a load behind PgBouncer."""

    def take(self) -> None:
        pass

    def keep(self) -> None:
        pass


@contextlib.contextmanager
def one_run_at_a_time(
    connections: Connections, ingest_id: str, table: str, *, locked: bool
) -> Iterator[RunLock]:
    """Holds ``ingest_id``'s run lock while the body runs (none when not ``locked``: a
    dry run, or behind PgBouncer); raises LockTimeout if another run holds it."""
    lock = (RunLock if locked else _Unlocked)(connections, ingest_id, table)
    lock.take()
    try:
        yield lock
    finally:
        lock.release()


def _answers(conn: psycopg.Connection[Any]) -> bool:
    """Whether the lock's connection still answers (its session, and the lock, live)."""
    try:
        conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _fetched(conn: psycopg.Connection[Any], query: str, ingest_id: str) -> list[Any]:
    return conn.execute(query, {"id": ingest_id}).fetchall()


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
