"""Rebuilding the indexes a load into an empty table deferred, then ANALYZE.

The rebuilds run two at a time, each in a transaction of its own, so one that fails stays
recorded for the next run and undoes no other; the server's progress of each is shown on
the bar; Ctrl-C, or cancelling an async ingest, cancels the builds on the server.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import psycopg

from geosession.errors import GeoSessionError, diagnostics
from geosession.ingest import ledger
from geosession.ingest.connections import WITHOUT_STATEMENT_TIMEOUT, Connections
from geosession.ingest.progress import Progress
from geosession.ingest.report import IngestReport
from geosession.ingest.target import Target

log = logging.getLogger(__name__)

_REBUILDERS = 2
"""Deferred indexes rebuilt at once: a GiST build runs on one core (PostgreSQL 15), so a
second build alongside it uses the other (GiST and two B-trees on 1M rows: 2.5 -> 1.9 s)."""
_WATCH_INTERVAL = 0.25
"""Seconds between looks at the server's progress of index builds after a load."""
_POLL = 0.1
"""Seconds between looks at whether the ingest was cancelled, while builds run."""

Stopped = Callable[[], BaseException | None]
"""The error to stop the rebuilds with (the ingest was cancelled), or None to go on."""


def rebuild_deferred(
    connections: Connections,
    target: Target,
    bar: Progress,
    report: IngestReport,
    *,
    analyze: bool,
    stopped: Stopped,
) -> None:
    """Rebuilds every index recorded as deferred for ``target``, then ANALYZE if asked; the
    time it took goes to ``report.rebuild_seconds``."""
    started = time.perf_counter()
    indexes = connections.retrying(lambda conn: _deferred(conn, target))
    watched = bar.enabled and bool(indexes or analyze)
    try:
        with _BuildWatch(connections, target, bar, enabled=watched) as watch:
            _rebuild_all(connections, target, indexes, watch, stopped)
            rebuilt = [name for name, _ in indexes]  # an earlier, killed run's included
            report.deferred_indexes = list(dict.fromkeys([*report.deferred_indexes, *rebuilt]))
            if analyze:
                _refresh_statistics(connections, target)
    finally:
        if indexes or analyze:
            report.rebuild_seconds = time.perf_counter() - started


def _deferred(conn: psycopg.Connection[Any], target: Target) -> list[tuple[str, str]]:
    with conn.transaction(), conn.cursor() as cursor:
        return ledger.deferred_indexes(cursor, target)


def _refresh_statistics(connections: Connections, target: Target) -> None:
    """ANALYZE, for the planner's sake only: where it fails (its connections lost past the
    retries, a lock it waited for too long), a warning says so, not an error for a load
    whose rows and indexes are all in."""

    def analyze(conn: psycopg.Connection[Any]) -> None:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute(WITHOUT_STATEMENT_TIMEOUT)
            cursor.execute(f"ANALYZE {target.quoted}")

    try:
        connections.retrying(analyze)
    except GeoSessionError as error:
        found = diagnostics(error.__cause__ or error)  # the server's words, not the advice
        log.warning(
            "%s is loaded and indexed, but its planner statistics were not refreshed "
            "(ANALYZE failed: %s): run ANALYZE %s before querying it (autovacuum does in time)",
            target.quoted,
            found.message if found else error.message,
            target.quoted,
        )


def _rebuild_all(
    connections: Connections,
    target: Target,
    indexes: list[tuple[str, str]],
    watch: _BuildWatch,
    stopped: Stopped,
) -> None:
    if not indexes:  # the common case: nothing was deferred
        return
    building: dict[str, psycopg.Connection[Any]] = {}

    def rebuild(name: str, definition: str) -> None:
        def step(conn: psycopg.Connection[Any]) -> None:
            building[name] = conn
            watch.building(conn.info.backend_pid, name)
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(WITHOUT_STATEMENT_TIMEOUT)
                ledger.restore_index(cursor, target, name, definition)

        try:
            connections.retrying(step)
        except GeoSessionError as error:
            raise type(error)(
                f"Rebuilding index {name} of {target.quoted} after the load failed: "
                f"{error.message}. The index stays recorded in {ledger.DEFERRED}: once that "
                f"is dealt with (the data, a lock, the server), the next ingest into the "
                f"table rebuilds it (or run: {definition})",
                sqlstate=error.sqlstate,
            ) from error
        finally:
            building.pop(name, None)

    pool = ThreadPoolExecutor(_REBUILDERS, "geosession-ingest-index")
    builds = [pool.submit(rebuild, name, definition) for name, definition in indexes]
    try:
        while wait(builds, timeout=_POLL).not_done:
            error = stopped()
            if error is not None:
                raise error
    except BaseException:  # the server stops building; the next run restores
        for conn in list(building.values()):
            conn.cancel_safe()
        raise
    finally:
        pool.shutdown(cancel_futures=True)
    for build in builds:
        build.result()  # the first failure, once every build has ended


class _BuildWatch:
    """Shows the server's progress of the index builds and ANALYZE after a load.

    It borrows its connection only after the builds have theirs, so with a pool of one
    it waits for them instead of holding them up; being cosmetic, it ends quietly on any
    error. Non-concurrent builds do not name their index to the progress view, so each
    rebuild says which backend builds which index.
    """

    def __init__(
        self, connections: Connections, target: Target, bar: Progress, *, enabled: bool
    ) -> None:
        self.connections, self.target, self.bar, self.enabled = connections, target, bar, enabled
        self.indexes: dict[int, str] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="geosession-ingest-watch")

    def building(self, backend: int, index: str) -> None:
        self.indexes[backend] = index

    def __enter__(self) -> _BuildWatch:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.done.set()
            self.thread.join()
            self.bar.builds_done()

    def _watch(self) -> None:
        if self.done.wait(_WATCH_INTERVAL):
            return
        with contextlib.suppress(Exception), self.connections.connection() as conn:
            while not self.done.is_set():
                with conn.transaction(), conn.cursor() as cursor:
                    builds = ledger.build_progress(cursor, self.target.oid)
                self.bar.show_builds([(self._label(i, k), p, d, t) for i, k, p, d, t in builds])
                self.done.wait(_WATCH_INTERVAL)

    def _label(self, backend: int, kind: str) -> str:
        if kind == "index":
            return f"index {self.indexes.get(backend, '…')}"
        return f"analyze {self.target.name}"
