"""The ingest pipeline: read, validate and encode on threads of their own
(:mod:`.chunk_reader`), COPY in others.

Bounded queues between the stages keep memory flat (each waits when the next falls
behind) while reading, validation, encoding and the server's work overlap. Each chunk
is written with retries on a fresh connection; before a retry the ledger says whether
the chunk already committed, so a lost connection never duplicates or loses a row.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Engine

from geosession.errors import (
    ConfigurationError,
    GeoSessionError,
    LockTimeout,
)
from geosession.ingest import collector, ledger
from geosession.ingest.chunk_reader import ChunkReader
from geosession.ingest.chunking import ChunkSizer, make_sizer
from geosession.ingest.compressed import Unpacked
from geosession.ingest.connections import Connections, connection_lost
from geosession.ingest.copy import Chunk, write_chunk
from geosession.ingest.create import create_target
from geosession.ingest.crs import refuse_unknown_srids
from geosession.ingest.defaults import column_defaults
from geosession.ingest.identity import default_ingest_id
from geosession.ingest.indexes import rebuild_deferred
from geosession.ingest.iterables import attribute_columns
from geosession.ingest.ledger_merges import MergePoints, merge_entries
from geosession.ingest.locks import blocked, lock_holders, lock_wait_ms
from geosession.ingest.options import IngestOptions
from geosession.ingest.planning import Planner
from geosession.ingest.privileges import require_privileges
from geosession.ingest.progress import Progress
from geosession.ingest.quarantine import ensure_quarantine
from geosession.ingest.report import IngestReport
from geosession.ingest.row_estimate import rows_counted
from geosession.ingest.run_lock import RunLock, one_run_at_a_time
from geosession.ingest.sequences import advance_sequences
from geosession.ingest.sources import opened, source_length
from geosession.ingest.stages import put_until
from geosession.ingest.target import Target, resolve_target
from geosession.ingest.validate import (
    Reject,
)
from geosession.ingest.write_plan import WritePlan
from geosession.retry import restart_backoff

_LOOK_EVERY = 0.5
"""Seconds between the waiting thread's looks at the run lock while chunks load."""
_TIMEOUT = "57014"
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout
log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised by :meth:`Ingest.run` after :meth:`Ingest.cancel`; async_ingest turns it
    back into the task's CancelledError, so it never reaches users."""


class _Stop:
    """Queue sentinel: no more chunks (with the reader's error, if it failed)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Ingest:
    """One run of an ingest; :meth:`run` returns its report."""

    def __init__(
        self,
        engine: Engine,
        target: Any,
        source: Any,
        options: IngestOptions,
        statement_timeout: str | None,
        stop_source: Callable[[], None] | None = None,
        lock_timeout: str | None = None,
        *,
        pgbouncer: bool = False,
    ) -> None:
        """``stop_source`` ends a source that may be waiting for its next row (an async
        one) when reading stops early, so that the reading threads can end; behind
        PgBouncer (``pgbouncer``) no run lock is taken (:mod:`.run_lock`)."""
        options.check()
        self.locks_run = not (pgbouncer or options.dry_run)
        self.unpacked = Unpacked(source, progress=options.progress, layer=options.layer)
        try:
            self._set_up(engine, target, options, statement_timeout, stop_source, lock_timeout)
        except BaseException as error:
            self.unpacked.close()
            self.unpacked.name_in(error)
            raise

    def _set_up(
        self,
        engine: Engine,
        target: Any,
        options: IngestOptions,
        statement_timeout: str | None,
        stop_source: Callable[[], None] | None,
        lock_timeout: str | None,
    ) -> None:
        source = self.unpacked.source
        self.lock_wait_ms = lock_wait_ms(statement_timeout, lock_timeout)
        self.engine, self.source, self.options = (
            engine,
            opened(self.unpacked.readable, options.file_read),
            options,
        )
        self.stop_source = stop_source
        self.sizer: ChunkSizer = make_sizer(options.chunk_size, statement_timeout)
        self.report = IngestReport("", str(target), dry_run=options.dry_run)
        self.workers = options.workers if isinstance(options.workers, int) else 1
        self.queue: queue.Queue[Chunk | _Stop]  # made by _load, once workers is known
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.committed = ledger.CommittedRows()
        self.merge_points = MergePoints()
        self.planner: Planner  # made by run, once the ledger says what was committed
        self.connections = Connections(
            engine, options.max_retries, on_retry=self._count_retry, settings=options.settings
        )
        self.typed_from = 0  # the first rows of a generator create=True typed the table from
        self.rows_typed: int | None = None  # the source's rows, if typing it counted them
        self.connections.retrying(lambda conn: refuse_unknown_srids(conn.cursor(), options))
        if options.create:
            made = create_target(
                engine, target, self.source, options, self.report, self.connections
            )
            self.report.created, self.source, self.typed_from, self.rows_typed = made
        self.target: Target = self.connections.retrying(
            lambda conn: resolve_target(conn.cursor(), target)
        )
        self.report.target = self.target.quoted
        _check_reproject_srid(self.target, options.reproject_srid)
        self.ingest_id = self.report.ingest_id = options.ingest_id or default_ingest_id(
            source, self.target.quoted, options.layer, options.where, options.bbox
        )
        self.attributes = attribute_columns(target)  # dict rows may use attribute names
        self.defaults = column_defaults(target, self.target)  # mapped_column(default=...)
        self.sql_defaults = self.defaults.sql_without_table_default(self.target)  # refused now
        self.failure: BaseException | None = None
        self.cancelled = False
        self.started_empty = False  # set by _prepare
        self.run_lock: RunLock  # taken by _run

    def cancel(self) -> None:
        """Stops the ingest from another thread, as Ctrl-C does: the chunks being written
        commit or roll back, no other starts, and :meth:`run` raises :class:`Cancelled`."""
        self.cancelled = True
        self.stop.set()

    def run(self) -> IngestReport:
        """Loads the source; restores deferred indexes whatever happens."""
        started = time.perf_counter()
        try:
            with collector.paused():  # millions of short-lived geometries: no collections
                self._run()
        finally:
            self.report.duration = time.perf_counter() - started
            self.unpacked.close()
        return self.report

    def _run(self) -> None:
        """The load, whose error carries the report of how far it got."""
        try:
            if self.cancelled:  # before it started: nothing to prepare or undo
                raise Cancelled(f"ingest {self.ingest_id} was cancelled before it started")
            with one_run_at_a_time(
                self.connections, self.ingest_id, self.target.quoted, locked=self.locks_run
            ) as self.run_lock:
                self._prepare_and_load()
        except BaseException as error:
            self.unpacked.name_in(error)
            error.ingest_report = self.report  # type: ignore[attr-defined]  # how far it got
            if isinstance(error, ConfigurationError) and self.report.inserted:
                error.reword(f"{error.message}. {self._resumes()}")  # the rows before stay
            self.report.error = str(error) or type(error).__name__
            raise

    def _prepare_and_load(self) -> None:
        """The load, with what comes before it and the table's upkeep after it."""
        deferred = self._prepare()
        self.planner = Planner(self._base_plan(), self.connections)
        with Progress(
            self.options.progress,
            source_length(self.source, self.options.layer, filtered=self.options.filtered)
            or self.rows_typed,
            self.report,
        ) as bar:
            if not self.options.filtered:
                bar.total_from(rows_counted(self.source, self.options.layer))
            try:
                self._load(bar)
            except BaseException:
                if not self.options.dry_run:
                    with contextlib.suppress(Exception):  # the server may be gone
                        self._finish_indexes(bar, analyze=False, stoppable=False)
                    with contextlib.suppress(Exception):
                        self._advance_sequences()  # the committed chunks' ids
                raise
            self.report.completed = True
            bar.completed()
            if not self.options.dry_run:
                self._finish_indexes(bar, analyze=deferred)
                self._advance_sequences()
                self._merge_ledger_entries()

    def _resumes(self) -> str:
        """How to go on after a source row stopped the load."""
        if self.options.dry_run:
            return f"{self.report.inserted:,} rows before it would have loaded"
        return (
            f"{self.report.inserted:,} rows before it stay committed: rerunning with the same "
            f"ingest id ({self.ingest_id}) resumes after them"
        )

    def _require_write_privileges(self, cursor: psycopg.Cursor[Any]) -> None:
        """INSERT on the target, checked up front; on_conflict='update' also needs UPDATE.
        A load through the staging table (on_conflict, row-level security) needs SELECT:
        the stage is made from the table's columns, and ON CONFLICT (key) reads the key."""
        staged = self.options.on_conflict != "error" or self.target.row_security
        wanted: tuple[str, ...] = ("SELECT",) if staged else ()
        wanted += ("INSERT", "UPDATE") if self.options.on_conflict == "update" else ("INSERT",)
        table = self.target.quoted
        require_privileges(
            cursor,
            {table: wanted},
            needed=f"the ingest writes into {table}",
            grant=f"GRANT {', '.join(wanted)} ON {table} TO {{role}};",
        )

    def _prepare(self) -> bool:
        """Privileges, ledger and quarantine tables, resume state, and index deferral (one
        transaction); a dry run only reads."""

        def prepare(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction(), conn.cursor() as cursor:
                if self.lock_wait_ms:
                    cursor.execute(f"SET LOCAL lock_timeout = {self.lock_wait_ms}")
                self._require_write_privileges(cursor)
                deferred = False
                if self.options.dry_run:  # no ledger, rejects table or deferred index
                    self.started_empty = ledger.is_empty(cursor, self.target)
                else:
                    deferred = self._prepare_records(cursor)
                if self.options.workers == "auto":
                    self.workers = self._auto_workers(cursor)  # after the deferred are gone
                return deferred

        for attempt in range(self.options.max_retries + 1):
            try:
                return self.connections.retrying(prepare)
            except LockTimeout as error:
                if attempt == self.options.max_retries or self.cancelled:
                    raise self._blocked("before its first chunk") from error
                self._wait_for_lock(attempt)
        raise AssertionError("unreachable")

    def _prepare_records(self, cursor: psycopg.Cursor[Any]) -> bool:
        """The ledger and rejects tables, the rows earlier runs of the id committed, and
        the indexes deferred for a load into an empty table (True if any)."""
        ledger.ensure_ledger(cursor)
        if self.options.on_invalid == "quarantine":
            self.report.rejects_kept_in = ensure_quarantine(cursor, self.target)
        self.committed = ledger.committed_rows(cursor, self.ingest_id, self.target)
        if self.committed:
            forgotten = ledger.forget_if_emptied(cursor, self.ingest_id, self.target)
            if forgotten:
                self.report.reloaded = forgotten
                self.committed = ledger.CommittedRows()
        self.report.already_committed = len(self.committed)
        self.started_empty = self._started_empty(cursor)
        return self._maybe_defer(cursor)

    def _base_plan(self) -> WritePlan:
        """The plan of every chunk, but for the columns (:mod:`.planning`)."""
        return WritePlan(
            self.target,
            (),
            (),
            self.ingest_id,
            self.options.on_conflict,
            self.options.on_invalid == "quarantine",
            self.started_empty,
            self.committed,
            python_defaulted=frozenset(self.defaults.python),
            sql_defaults=self.sql_defaults,
            lock_wait_ms=self.lock_wait_ms,
            dry_run=self.options.dry_run,
        )

    def _started_empty(self, cursor: Any) -> bool:
        """Whether the table was empty when this ingest id first started: as the ledger
        recorded it for a resumed load, else whether it is empty now."""
        if self.committed:
            return self.committed.started_empty
        return ledger.is_empty(cursor, self.target)

    def _maybe_defer(self, cursor: Any) -> bool:
        wanted = self.options.defer_indexes
        owner = ledger.owner_unless_owned(cursor, self.target) if wanted else None
        if wanted == "auto":
            wanted = self.started_empty and not self.committed and owner is None
        elif wanted and owner is not None:
            raise ConfigurationError(
                f"defer_indexes=True drops the indexes of {self.target.quoted} for the load "
                f"and rebuilds them after it, which only its owner ({owner}) may do: leave "
                "defer_indexes at 'auto' (or False) to load with them, or load as the owner"
            )
        if wanted:
            self.report.deferred_indexes = ledger.defer_indexes(cursor, self.target, self.ingest_id)
        return bool(wanted)

    def _auto_workers(self, cursor: Any) -> int:
        """Two COPY connections while the server maintains secondary (GiST) indexes during
        the load: then it, not the client, is the bottleneck, and a second backend adds
        about a tenth. One when there are none, or none left after deferring them; and
        one under on_conflict "update" or "ignore", whose rows of a key that comes again
        in a later chunk must apply in the source's order (two writers commit chunks in
        either order, a retried one after those behind it)."""
        if self.options.on_conflict in ("update", "ignore"):
            return 1
        return 2 if ledger.maintains_secondary_indexes(cursor, self.target) else 1

    def _finish_indexes(self, bar: Progress, *, analyze: bool, stoppable: bool = True) -> None:
        """Rebuilds the deferred indexes (then ANALYZE when ``analyze``). After a failed or
        stopped load the rebuild is not ``stoppable`` by cancel(): the table gets its
        indexes back before the error is raised. The rebuilds' watch looks after the run
        lock meanwhile, as the wait for the writers does."""

        def stopped() -> Cancelled | None:
            self.run_lock.keep()
            if not (stoppable and self.cancelled):
                return None
            return Cancelled(
                f"ingest {self.ingest_id} was cancelled while rebuilding indexes: they stay "
                "recorded, and the next ingest into the table rebuilds them"
            )

        rebuild_deferred(
            self.connections, self.target, bar, self.report, analyze=analyze, stopped=stopped
        )

    def _advance_sequences(self) -> None:
        """Sequences of the columns the load wrote, past the values it loaded."""
        plan = self.planner.plan
        if plan is None:
            return
        try:
            self.connections.retrying(
                lambda conn: advance_sequences(conn, self.target, plan.columns)
            )
        except GeoSessionError as error:
            error.reword(
                f"{self.target.quoted} is loaded, but moving its sequences past the ids the "
                f"load wrote failed: {error.message}. Rerunning with the same ingest id "
                f"({self.ingest_id}) loads no row again and moves them"
            )
            raise

    def _merge_ledger_entries(self, through: int | None = None) -> None:
        """The id's entries merged where their rows meet (:mod:`.ledger_merges`), those
        ending by row ``through`` (all: None). Failing, they stay as they were, with a
        warning: the rows are loaded either way."""

        def merge(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cursor:
                merge_entries(cursor, self.ingest_id, through)

        try:
            self.connections.retrying(merge)
        except GeoSessionError as error:
            log.warning(
                "ingest %s: its ledger entries were not merged (%s); they stay one per "
                "chunk until a later merge of the id",
                self.ingest_id,
                error,
            )

    def _load(self, bar: Progress) -> None:
        """Reads and writes on threads of their own while this thread waits, so that Ctrl-C
        (or SIGTERM made one) lands here and every chunk in flight ends whole, committed
        and counted, or rolled back."""
        self.queue = queue.Queue(maxsize=self.workers)  # one chunk waits for each writer
        self.report.workers = self.workers
        reader = threading.Thread(target=self._read, name="geosession-ingest-reader", daemon=True)
        ended: list[BaseException | None] = []
        writers = [
            threading.Thread(
                target=lambda: ended.append(self._write_all(bar)),
                daemon=True,
                name=f"geosession-ingest-writer-{n}",
            )
            for n in range(self.workers)
        ]
        reader.start()
        for writer in writers:
            writer.start()
        try:
            for writer in writers:
                while writer.is_alive():
                    writer.join(_LOOK_EVERY)
                    self.run_lock.keep()
        finally:
            self.stop.set()  # Ctrl-C: writers finish the chunk in flight, then stop
            self._drain()
            reader.join()
            for writer in writers:
                writer.join()
        error = next((e for e in ended if e is not None), None)
        if error is not None:
            raise error
        if self.failure is not None:
            raise self.failure
        if self.cancelled:
            raise Cancelled(f"ingest {self.ingest_id} was cancelled")

    def _drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()

    # -- reading ----------------------------------------------------------------------

    def _read(self) -> None:
        try:
            reader = ChunkReader(
                source=self.source,
                target=self.target,
                options=self.options,
                planner=self.planner,
                sizer=self.sizer,
                committed=self.committed,
                report=self.report,
                report_lock=self.lock,
                defaults=self.defaults,
                attributes=self.attributes,
                started_empty=self.started_empty,
                ingest_id=self.ingest_id,
                stopped=self.stop.is_set,
                stop_source=self.stop_source,
                typed_from=self.typed_from,
            )
            with contextlib.closing(reader.chunks()) as chunks:  # joins its threads at once
                for chunk in chunks:
                    if not self._put(chunk):
                        return
            error = None
        except BaseException as exc:  # handed to the writers, raised in the caller's thread
            error = exc
        for _ in range(self.workers):
            self._put(_Stop(error))

    def _put(self, item: Chunk | _Stop) -> bool:
        return put_until(self.queue, item, self.stop.is_set)

    # -- writing ----------------------------------------------------------------------

    def _write_all(self, bar: Progress) -> BaseException | None:
        """Writes chunks until the reader is done, something failed or it was cancelled."""
        while not self.cancelled:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return None
                continue
            if isinstance(item, _Stop):
                return item.error
            self.merge_points.taken(item)
            try:
                self._write_with_retries(item)
                bar.advance(item.last_row - item.first_row + 1)
            except BaseException as error:
                self.failure = self.failure or error
                self.stop.set()
                return None
            through = self.merge_points.answered(item)
            if through is not None and not self.options.dry_run:
                self._merge_ledger_entries(through)
        return None

    def _write_with_retries(self, chunk: Chunk, first_attempt: int = 0) -> None:
        """Writes ``chunk``, again after a lost connection (the ledger says first whether
        it committed anyway). Lost twice running, it is written in halves, which share
        what is left of its attempts: a watchdog that terminates statements running past
        some seconds would end every attempt of a chunk that takes longer, and a smaller
        one gets through (after a restart, automatic chunk sizes grow again as chunks
        finish; a chunk_size given stays halved for the rest of the load)."""
        for attempt in range(first_attempt, self.options.max_retries + 1):
            started = time.perf_counter()
            try:
                with self.connections.connection() as conn:
                    result = write_chunk(conn, chunk)
            except psycopg.Error as error:
                state = error.sqlstate or ""
                if state == _LOCK_NOT_AVAILABLE:  # not the chunk's size: wait, whole
                    self._lock_waited(chunk, error, attempt)
                    continue
                if state == _TIMEOUT and len(chunk) > 1:
                    self._write_halves(chunk, 0)
                    return
                if self._lost(chunk, error, attempt):
                    return  # it committed after all
                if attempt > first_attempt and len(chunk) > 1:
                    self._write_halves(chunk, attempt + 1)
                    return
                continue
            self.sizer.observe(len(chunk), time.perf_counter() - started)
            self._record(chunk, result.inserted, result.rejects)
            return

    def _write_halves(self, chunk: Chunk, first_attempt: int, *, shrink: bool = True) -> None:
        """``chunk`` in two, and the chunks after it smaller too (``shrink``). A half
        larger than the size, which a half before it shrank again, is cut again before
        it is sent, rather than fail as that one did."""
        if shrink:
            self.sizer.shrink()
        for half in chunk.split(len(chunk) // 2):
            if len(half) > self.sizer.size:
                self._write_halves(half, first_attempt, shrink=False)
            else:
                self._write_with_retries(half, first_attempt)

    def _lost(self, chunk: Chunk, error: psycopg.Error, attempt: int) -> bool:
        """After ``error`` ended ``attempt`` at the chunk: True when it committed all the
        same (the ledger says so), else False: write it again. Raises the error where it
        is no lost connection, the attempts are used up or the load was cancelled (a rerun
        with the same ingest_id writes what did not commit). No backoff before the next
        attempt: asking the ledger waited out a server that was down (a restart), and it
        answered; backoffs of 0.4-5 s after every terminated backend slowed a load whose
        backends were terminated every 0.05-0.2 s to 100 rows/s."""
        if not connection_lost(error) or attempt == self.options.max_retries:
            raise self._translated(error, chunk) from error
        self._count_retry()
        if self._landed(chunk):
            return True
        if self.cancelled:
            raise error
        return False

    def _lock_waited(self, chunk: Chunk, error: psycopg.Error, attempt: int) -> None:
        """After a lock wait ended ``attempt``: waits to try again, or raises LockTimeout."""
        if attempt == self.options.max_retries or self.cancelled:
            raise self._blocked(f"at source rows {chunk.first_row}-{chunk.last_row}") from error
        self._wait_for_lock(attempt)

    def _wait_for_lock(self, attempt: int) -> None:
        """After a lock wait reached lock_timeout: say who holds it, pause, try again."""
        self._count_retry()
        log.warning("ingest %s waits: %s", self.ingest_id, self._holders())
        time.sleep(restart_backoff(attempt))

    def _holders(self) -> str:
        return self.connections.retrying(lambda conn: lock_holders(conn, self.target))

    def _blocked(self, where: str) -> LockTimeout:
        return blocked(self.ingest_id, self.lock_wait_ms, where, self._holders())

    def _landed(self, chunk: Chunk) -> bool:
        """After a lost connection: did the chunk commit anyway? The ledger knows (a dry
        run's never does)."""
        if self.options.dry_run:
            return False

        def ask(conn: psycopg.Connection[Any]) -> int | None:
            with conn.cursor() as cursor:
                span = (chunk.first_row, chunk.last_row)
                return ledger.chunk_inserted(cursor, self.ingest_id, span, chunk.checksum)

        try:
            inserted = self.connections.retrying(ask)
        except GeoSessionError as error:  # the server gone for longer than the retries
            error.reword(f"{error.message}. {self._stopped_at(chunk)}")
            raise
        if inserted is None:
            return False
        self._record(chunk, inserted, chunk.rejects)
        return True

    def _record(self, chunk: Chunk, inserted: int, rejects: list[Reject]) -> None:
        with self.lock:
            self.report.inserted += inserted
            self.report.rejected.extend(rejects)
            self.report.chunks += 1
            self.report.count_chunk_size(len(chunk) + len(chunk.rejects))
            unwritten = len(chunk) - inserted - (len(rejects) - len(chunk.rejects))
            if self.options.on_conflict == "ignore":
                self.report.conflicts += unwritten
            elif self.options.on_conflict == "update":
                self.report.superseded += unwritten
            else:
                self.report.discarded += unwritten

    def _count_retry(self) -> None:
        with self.lock:
            self.report.retries += 1

    def _translated(self, error: psycopg.Error, chunk: Chunk) -> GeoSessionError:
        translated = self.connections.translated(error)
        translated.reword(f"{translated.message}. {self._stopped_at(chunk)}")
        return translated

    def _stopped_at(self, chunk: Chunk) -> str:
        """Where the load stopped, and how to go on."""
        return (
            f"Ingest {self.ingest_id} stopped at source rows {chunk.first_row}-"
            f"{chunk.last_row}; committed chunks stay, and rerunning with the same "
            "ingest_id resumes after them"
        )


def _check_reproject_srid(target: Target, wanted: int | None) -> None:
    """reproject=<srid> transforms into that SRID: a geometry column of another is refused
    (a table create=True made has it; an existing one may not)."""
    others = [
        f"{column.name} (SRID {column.geometry.srid})"
        for column in target.geometry_columns
        if wanted is not None and column.geometry is not None and column.geometry.srid != wanted
    ]
    if others:
        raise ConfigurationError(
            f"reproject={wanted} transforms geometries into SRID {wanted}, and {target.quoted} "
            f"has {', '.join(others)}: pass reproject=True (CLI: --reproject) to transform "
            "into each column's own SRID, or load into a table whose columns have this one"
        )
