"""Run the same work on psycopg, psycopg2 and asyncpg; wait for and cause faults."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from geosession import SpatialDatabase
from geosession.local import _find_binaries

DRIVERS = ["psycopg", "psycopg2", "asyncpg"]
T = TypeVar("T")


def database_for(
    make_db: Callable[..., SpatialDatabase], driver: str, **settings: Any
) -> SpatialDatabase:
    """A SpatialDatabase whose sessions (sync or async, as the test uses) run on ``driver``."""
    if driver == "asyncpg":
        return make_db(async_driver="asyncpg", **settings)
    return make_db(driver=driver, **settings)


def run_tx(db: SpatialDatabase, driver: str, fn: Callable[[Session], T], **options: Any) -> T:
    """``db.run_transaction(fn)``; on asyncpg ``async_run_transaction`` running ``fn`` there.

    ``AsyncSession.run_sync`` hands ``fn`` the sync Session whose statements go through
    asyncpg, so one test body serves all three drivers.
    """
    if driver != "asyncpg":
        return db.run_transaction(fn, **options)

    async def run() -> T:
        try:
            return await db.async_run_transaction(lambda s: s.run_sync(fn), **options)
        finally:
            await db.adispose()

    return asyncio.run(run())


def run_sql(db: SpatialDatabase, driver: str, sql: str) -> Any:
    """One statement in a session of its own on ``driver``; its first value."""
    if driver != "asyncpg":
        with db.session() as s:
            return s.execute(text(sql)).scalar()

    async def run() -> Any:
        try:
            async with db.async_session() as s:
                return (await s.execute(text(sql))).scalar()
        finally:
            await db.adispose()

    return asyncio.run(run())


def stream_ids(
    db: SpatialDatabase,
    driver: str,
    query: str,
    after_first: Callable[[], None] = lambda: None,
    **options: Any,
) -> list[int]:
    """The first column of ``db.stream(query, **options)`` (``async_stream`` on asyncpg),
    calling ``after_first`` once the first row is in."""
    if driver != "asyncpg":
        ids = []
        for row in db.stream(query, **options):
            ids.append(row[0])
            if len(ids) == 1:
                after_first()
        return ids

    async def run() -> list[int]:
        ids = []
        try:
            async for row in db.async_stream(query, **options):
                ids.append(row[0])
                if len(ids) == 1:
                    await asyncio.to_thread(after_first)
            return ids
        finally:
            await db.adispose()

    return asyncio.run(run())


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Polls ``predicate`` until it returns something true; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting after {timeout}s")


def terminate(admin: psycopg.Connection[Any], application_name: str) -> int:
    """Terminates every backend of ``application_name``; how many there were."""
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
        "AND datname = current_database()",
        (application_name,),
    ).fetchall()
    return len(rows)


class Terminator(threading.Thread):
    """Terminates the backend of ``application_name`` once ``condition`` holds for it.

    ``condition`` is SQL over pg_stat_activity, e.g. ``wait_event = 'PgSleep'``. ``join()``
    re-raises what went wrong in the thread, such as never finding the backend.
    """

    def __init__(self, admin_url: str, application_name: str, condition: str) -> None:
        super().__init__(daemon=True)
        self.admin_url, self.application_name, self.condition = (
            admin_url,
            application_name,
            condition,
        )
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                query += "AND application_name = %s AND "
                pid = wait_until(
                    lambda: conn.execute(
                        query + self.condition, (self.application_name,)
                    ).fetchone()
                )[0]
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        except BaseException as error:  # handed to join()
            self.error = error

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def terminate_when(admin_url: str, application_name: str, condition: str) -> Terminator:
    """A started :class:`Terminator`."""
    terminator = Terminator(admin_url, application_name, condition)
    terminator.start()
    return terminator


def libpq_url(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def record_dropped_gist(session: Session, table: str, *made_for: Any) -> None:
    """Drops ``table``'s GiST index (``<table>_geom_idx``, in public) and records it as
    deferred, as a killed load leaves it; ``made_for``: the record's target OID and
    database, for a ledger that has those columns."""
    index = f"{table}_geom_idx"
    session.execute(text(f"DROP INDEX {index}"))
    definition = f"CREATE INDEX {index} ON public.{table} USING gist (geom)"
    values = [f'"public"."{table}"', index, definition, "killed", *made_for]
    marks = ", ".join(f":v{i}" for i in range(len(values)))
    session.execute(
        text(f"INSERT INTO geosession_ingest_deferred_index VALUES ({marks})"),
        {f"v{i}": value for i, value in enumerate(values)},
    )


def failed_concurrent_index(
    admin: psycopg.Connection[Any], database_url: str, table: str, index: str
) -> None:
    """Leaves ``index`` (GiST on ``table``'s geom) INVALID as a failed CREATE INDEX
    CONCURRENTLY does: another transaction holds a write lock on the table, and the build
    gives up waiting for it (lock_timeout)."""
    with psycopg.connect(libpq_url(database_url)) as writer:
        writer.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")  # an open writer
        admin.execute("SET lock_timeout = '200ms'")
        try:
            admin.execute(f"CREATE INDEX CONCURRENTLY {index} ON {table} USING gist (geom)")
        except psycopg.errors.LockNotAvailable:
            pass
        else:
            raise AssertionError("CREATE INDEX CONCURRENTLY did not wait for the writer")
        finally:
            admin.execute("RESET lock_timeout")
            writer.rollback()
    schema = table.rpartition(".")[0]
    valid = admin.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
        (f"{schema}.{index}" if schema else index,),
    ).fetchone()
    assert valid == (False,), f"{index} is not an INVALID index: {valid}"


def free_port() -> int:
    """A TCP port nothing listens on now, for a server a test starts (PgBouncer, a standby)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL's tools refuse to run as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Standby:
    """A hot standby of a server (``primary_url``), streaming from it."""

    def __init__(self, primary_url: str) -> None:
        self.tools = _find_binaries()
        self.home = Path(tempfile.mkdtemp(prefix="geosession-standby-"))
        self.data = self.home / "data"
        primary = make_url(primary_url)
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres")
        self._run(
            self.tools.tool("pg_basebackup"),
            *("-h", str(primary.host), "-p", str(primary.port), "-U", str(primary.username)),
            *("-D", str(self.data), "-R", "-X", "stream", "-c", "fast"),
        )
        self.url = primary.set(host="127.0.0.1", port=self.port).render_as_string(
            hide_password=False
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c hot_standby=on"
        self._run(
            self.tools.tool("pg_ctl"),
            *("-D", str(self.data), "-o", options, "-l", str(self.home / "log"), "-w", "start"),
        )

    def promote(self) -> None:
        """Makes it a primary that takes writes (as a failover does)."""
        self._run(self.tools.tool("pg_ctl"), "-D", str(self.data), "-w", "promote")

    def stop(self) -> None:
        self._run(self.tools.tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def _run(self, *command: str) -> None:
        done = subprocess.run(_as_postgres(list(command)), capture_output=True, text=True)
        assert done.returncode == 0, f"{command[0]} failed: {done.stderr[-2000:]}"
