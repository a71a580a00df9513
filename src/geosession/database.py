"""SpatialDatabase: owns the engines and session factories, and their lifecycle.

Every way of getting a session here ends it deterministically: the connection goes back
to the pool rolled back if it was still in a transaction, so no backend is left idle in
transaction and no connection is left checked out, whatever the caller's code raised.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, Unpack

from sqlalchemy import URL, Connection, Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from sqlalchemy.util import ThreadLocalRegistry

from geosession.diagnose.activity import LockWait, SessionActivity, lock_waits, session_activity
from geosession.diagnose.doctor import DoctorReport, run_doctor
from geosession.diagnose.explain import PlanReport, explain_statement
from geosession.engine import build_async_engine, build_engine
from geosession.errors import (
    ConfigurationError,
    LockTimeout,
    PoolExhausted,
    QueryTimeout,
)
from geosession.event_loops import LoopClaim, connected, connected_once
from geosession.forks import cut_off, keep_inherited, on_fork
from geosession.ingest.report import IngestReport
from geosession.observe.instances import count_database, forget_database
from geosession.observe.metrics import DatabaseMetrics
from geosession.observe.pool import PoolStats
from geosession.observe.waits import note_waiting_on_itself, pool_exhausted
from geosession.read import (
    AsyncGeometryStream,
    ExportResult,
    GeometryStream,
    ReadOptions,
    async_geojson_chunks,
    export,
    geojson_chunks,
    tell_if_held,
)
from geosession.replicas import READ_ONLY, ReadAfter, Replicas
from geosession.retry import RetryOptions, Transactional, arun_transaction, run_transaction
from geosession.retry import watch_long_transactions as _watch_long_transactions
from geosession.scopes import async_scope, scope
from geosession.settings import DatabaseSettings, local_settings, set_local

if TYPE_CHECKING:
    from geosession.ingest.options import IngestArguments
    from geosession.ingest.pipeline import Ingest
    from geosession.read.arrow import ArrowStream

ISOLATION_LEVELS = ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")
T = TypeVar("T")


class SpatialDatabase:
    """Tuned engines and always-closing sessions for one PostGIS database.

    ``SpatialDatabase(url, **settings)`` or ``SpatialDatabase.from_env()``; use it as a
    context manager, or call :meth:`dispose` at shutdown.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        settings: DatabaseSettings | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = _merge_settings(url, settings, overrides)
        self._engine = build_engine(self.settings)
        self.metrics = DatabaseMetrics.attach(
            self._engine,
            max_overflow=self.settings.max_overflow,
            leak_threshold=self.settings.leak_threshold,
            slow_query_threshold=self.settings.slow_query_threshold,
        )
        """Pool counters and holders, slow statements, ingest totals (pool event listeners)."""
        self._sessions = sessionmaker(bind=self._engine, autoflush=False, expire_on_commit=False)
        _watch_long_transactions(self._sessions, self.settings.long_transaction_warning)
        self.metrics.slow_queries.watch_flushes(self._sessions)
        self.scoped = scoped_session(self._sessions)
        """Thread-local session registry; call ``db.scoped.remove()`` when a request ends."""
        self._async_engine: AsyncEngine | None = None
        self._unpooled_async_engine: AsyncEngine | None = None  # for loops beside the pool's
        self._ingest_engine: Engine | None = None
        self._async_sessions = async_sessionmaker(
            autoflush=False,
            expire_on_commit=False,
            sync_session_class=self._sessions.class_,  # shares the session guards
        )
        self._engines_lock = threading.Lock()  # the engines made on first use
        self._loop = LoopClaim()  # the event loop the async pools serve
        self._replicas = Replicas(
            self.settings,
            on_engine=self.metrics.attach_replica,
            exhausted=self._pool_exhausted,
            primary=lambda: self._engine,
            async_primary=lambda: self.async_engine,
        )
        self._replicas.watch_writes(self._engine)
        on_fork(self._renew_after_fork)
        self._counted_as = self.settings.safe_url()  # read once: a password file may go
        count_database(self, self._counted_as, self.settings.pool_size + self.settings.max_overflow)

    @classmethod
    def from_env(cls, **overrides: Any) -> SpatialDatabase:
        """Settings from ``GEOSESSION_*`` variables and secrets; else the embedded cluster."""
        settings = DatabaseSettings(**overrides)
        if settings.configured:
            return cls(settings=settings)
        from geosession.local import running_url

        url = running_url()
        if url is None:
            raise ConfigurationError(
                "No database configured: set GEOSESSION_DATABASE_URL (or GEOSESSION_HOST and "
                "GEOSESSION_DATABASE), or start the embedded PostGIS with `geosession local start`"
            )
        return cls(url, settings=settings)

    @property
    def engine(self) -> Engine:
        """The sync Engine (psycopg 3 unless ``driver`` says psycopg2)."""
        return self._engine

    @property
    def async_engine(self) -> AsyncEngine:
        """The AsyncEngine (asyncpg unless ``async_driver`` says psycopg), made on first use.

        Its pools serve one event loop at a time: a loop that follows one that ended
        (another ``asyncio.run``) gets them afresh, and a loop running beside it in another
        thread gets an engine without a pool (see ``event_loops``).
        """
        return self._async_engine_here()[0]

    def _async_engine_here(self) -> tuple[AsyncEngine, bool]:
        """The async engine for the running loop, and whether it is the pooled one."""
        with self._engines_lock:
            claim = self._loop.claim()
            if claim == "taken over":  # a loop that ended used the pools: pools afresh
                for async_engine in self._async_engines():
                    async_engine.sync_engine.dispose()
            elif claim == "elsewhere":
                if self._unpooled_async_engine is None:
                    self._unpooled_async_engine = self._new_async_engine(pooled=False)
                return self._unpooled_async_engine, False
            if self._async_engine is None:
                self._async_engine = self._new_async_engine(pooled=True)
            return self._async_engine, True

    def _new_async_engine(self, *, pooled: bool) -> AsyncEngine:
        engine = build_async_engine(self.settings, pooled=pooled)
        attach = self.metrics.attach_async if pooled else self.metrics.attach_unpooled
        attach(engine.sync_engine)
        self._replicas.watch_writes(engine.sync_engine)
        return engine

    @scope("db.session()")
    def session(
        self, *, replica: bool = False, settings: Mapping[str, object] | None = None
    ) -> Iterator[Session]:
        """A Session that is always closed; an exception rolls it back and is re-raised.

        Nothing is committed for you: call ``s.commit()``, or use :meth:`transaction`.
        ``replica=True`` reads on a streaming replica (``replica_urls``; the primary when
        none answers), read only. ``settings`` (``{"app.tenant": "7"}``) are set with SET
        LOCAL at the start of every transaction the session begins.
        """
        local = local_settings(settings)
        if not replica:
            with self._translated(), self._sessions() as session:
                yield _setting_each_transaction(session, local)
            return
        with (
            self._checkout(replica=True, after=self._replicas.read_after()) as connection,
            self._sessions(bind=connection) as session,
        ):
            yield _setting_each_transaction(session, local)

    @scope("db.transaction()")
    def transaction(
        self,
        *,
        isolation: str | None = None,
        statement_timeout: str | int | None = None,
        lock_timeout: str | int | None = None,
        settings: Mapping[str, object] | None = None,
        read_only: bool = False,
        replica: bool = False,
    ) -> Iterator[Session]:
        """One explicit transaction: committed when the block ends, rolled back on error.

        ``statement_timeout``, ``lock_timeout`` and ``settings`` (any others by name:
        ``{"search_path": "tenant_7, public", "app.tenant": "7"}``) apply with SET LOCAL,
        so they end with the transaction and never reach the next user of the pooled
        connection. ``replica=True``: on a replica, as :meth:`session` says.
        """
        options = _transaction_options(isolation, read_only)
        local = local_settings(
            settings, statement_timeout=statement_timeout, lock_timeout=lock_timeout
        )
        with self.session(replica=replica, settings=local) as session, session.begin():
            session.connection(execution_options=options)  # begun: the settings are set
            yield session

    def get_session(self) -> Iterator[Session]:
        """Generator dependency for FastAPI ``Depends``: yields a session, closes it after."""
        with self.session() as session:
            yield session

    async def async_get_session(self) -> AsyncIterator[AsyncSession]:
        """The async twin of :meth:`get_session`, for ``async def`` endpoints:
        ``Depends(db.async_get_session)`` yields an async session, closed after."""
        async with self.async_session() as session:
            yield session

    @async_scope("db.async_session()")
    async def async_session(
        self, *, replica: bool = False, settings: Mapping[str, object] | None = None
    ) -> AsyncIterator[AsyncSession]:
        """The async twin of :meth:`session`: always closed, rolled back on error."""
        local = local_settings(settings)
        if replica:
            async with (
                self._async_checkout(replica=True, after=self._replicas.read_after()) as connection,
                self._async_sessions(bind=connection) as session,
            ):
                _setting_each_transaction(session.sync_session, local)
                yield session
            return
        engine, pooled = self._async_engine_here()
        if not pooled:
            await connected_once(engine)
        try:
            async with self._async_sessions(bind=engine) as session:
                _setting_each_transaction(session.sync_session, local)
                yield session
        except sa_exc.TimeoutError as error:
            raise self._pool_exhausted(engine.sync_engine) from error
        except (LockTimeout, QueryTimeout) as error:  # its session closed: what is held now
            note_waiting_on_itself(error, self.metrics.monitor_of(engine.sync_engine))
            raise

    @async_scope("db.async_transaction()")
    async def async_transaction(
        self,
        *,
        isolation: str | None = None,
        statement_timeout: str | int | None = None,
        lock_timeout: str | int | None = None,
        settings: Mapping[str, object] | None = None,
        read_only: bool = False,
        replica: bool = False,
    ) -> AsyncIterator[AsyncSession]:
        """The async twin of :meth:`transaction`."""
        options = _transaction_options(isolation, read_only)
        local = local_settings(
            settings, statement_timeout=statement_timeout, lock_timeout=lock_timeout
        )
        async with self.async_session(replica=replica, settings=local) as session, session.begin():
            await session.connection(execution_options=options)  # begun: the settings are set
            yield session

    def run_transaction(self, fn: Callable[[Session], T], **options: Unpack[RetryOptions]) -> T:
        """Runs ``fn(session)`` in a transaction, rerun on transient failures; its result.

        Each attempt is a :meth:`transaction` (``isolation``, ``read_only``,
        ``statement_timeout``, ``lock_timeout``) committed when ``fn`` returns. After a
        serialization failure, a deadlock, or a connection lost before COMMIT was sent, the
        attempt is rolled back and the whole of ``fn`` reruns on a fresh connection after a
        random wait (exponential backoff with full jitter, ``backoff=(first, largest)``
        seconds), up to ``attempts`` (default 5) in all; after ``LockTimeout`` too with
        ``retry_lock_timeout=True``. Other errors are raised at once; when attempts run out
        the last error is raised with the count in its message. ``fn`` may run more than
        once: keep effects outside the database (HTTP calls, messages) out of it.

        A connection lost while COMMIT is in flight raises ``CommitOutcomeUnknown``: the
        server may have committed just before the answer was lost, and a rerun would then
        apply the work twice. Pass ``idempotent=True`` when a rerun is harmless (upserts,
        writes keyed by unique values) to rerun in that case as well.
        """
        return run_transaction(self, fn, options)

    async def async_run_transaction(
        self, fn: Callable[[AsyncSession], Awaitable[T]], **options: Unpack[RetryOptions]
    ) -> T:
        """The async twin of :meth:`run_transaction`: ``await fn(session)`` per attempt."""
        return await arun_transaction(self, fn, options)

    def transactional(self, **options: Unpack[RetryOptions]) -> Transactional:
        """Decorator: ``@db.transactional(isolation="SERIALIZABLE") def f(session, ...)``.

        Calling ``f(...)`` runs it in :meth:`run_transaction` (an ``async def`` in
        :meth:`async_run_transaction`) with a session as its first argument.
        """
        return Transactional(self, options)

    def ingest(
        self,
        target: Any,
        source: Any,
        *,
        chunk_size: int | str = "auto",
        on_invalid: str = "quarantine",
        on_conflict: str = "error",
        ingest_id: str | None = None,
        srid: int | None = None,
        workers: int | str = "auto",
        defer_indexes: str | bool = "auto",
        progress: bool = False,
        flush_interval: float | None = None,
        wkt_column: str | None = None,
        layer: str | None = None,
        encoding: str | None = None,
        where: str | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        rename: Mapping[str, str] | None = None,
        xy_columns: tuple[str, str] | tuple[str, str, str] | None = None,
        extra_fields: str = "error",
        create: bool = False,
        reproject: bool | int = False,
        dry_run: bool = False,
        settings: Mapping[str, object] | None = None,
    ) -> IngestReport:
        """Loads rows by binary COPY in chunks that each commit with a ledger entry.

        ``source``: an iterable of dicts, tuples or mapped instances, a (Geo)DataFrame,
        Arrow data (a pyarrow Table or RecordBatchReader, anything with
        ``__arrow_c_stream__``) or a file's path.

        Rerunning with the same ``ingest_id`` resumes after the committed chunks (a file's
        load without one is named by the file, table and filters, so rerunning it resumes;
        other sources get a new id each run; a second run of an id while one runs is
        refused with LockTimeout); bad
        geometries go to ``<table>_rejected`` (``on_invalid="quarantine"``), are raised,
        repaired or skipped. ``flush_interval`` (seconds) writes the rows of a source that
        trickles once they have waited that long, instead of when a chunk is full.
        ``wkt_column`` names a CSV's geometry column when its header does not say wkt,
        geometry, geom, the_geom or the target's geometry column; ``layer`` the layer of a
        file that has several (a GeoPackage); ``encoding`` the text encoding of a Shapefile
        or CSV file that is not UTF-8 (a Shapefile's .cpg file names it, if it has one);
        ``where`` (an OGR SQL condition on its fields) and ``bbox`` (minx, miny, maxx, maxy
        in its CRS) load only some of a vector file's features; ``rename`` maps a file's
        field names to columns (a Shapefile's ``{"classifica": "classification_code"}``);
        ``xy_columns`` names the coordinate columns (x, y, and z for a column with Z) of a
        source without geometries (a CSV without a WKT column, a DataFrame, Arrow data, a
        Parquet file, a spreadsheet, dict rows without the geometry column), when their
        names (longitude/latitude, lon/lat, x/y; z, elevation, altitude) do not say them.
        ``extra_fields="ignore"`` loads the fields the table has and leaves the others out
        (listed in ``report.fields_left_out``), values for generated columns included,
        instead of refusing the source.
        ``dry_run=True`` loads every chunk as a load would, then rolls it back: the report
        says what would be inserted and rejected (the server's refusals included), and
        nothing is kept (no rows, rejects or ledger entries).
        ``settings`` are set on the ingest's connections while it holds them (a role, a
        row-level security key: ``{"role": "tenant_writer", "app.tenant": "7"}``).
        ``create=True`` creates
        a table that does not exist: from its definition for a mapped class or Table, else
        from a file's or DataFrame's fields. ``reproject=True`` transforms geometries of
        another SRID (a file's or GeoDataFrame's CRS, an EWKB's SRID, ``srid``, GeoJSON's
        4326) into the column's with PROJ instead of refusing them; ``reproject=4326``
        into SRID 4326, which ``create=True`` gives the table's geometry columns (as ogr2ogr's
        ``-t_srs``). See the README section "Bulk ingest"."""
        options: IngestArguments = {
            "chunk_size": chunk_size,
            "on_invalid": on_invalid,
            "on_conflict": on_conflict,
            "ingest_id": ingest_id,
            "srid": srid,
            "workers": workers,
            "defer_indexes": defer_indexes,
            "progress": progress,
            "flush_interval": flush_interval,
            "wkt_column": wkt_column,
            "layer": layer,
            "encoding": encoding,
            "where": where,
            "bbox": bbox,
            "rename": rename,
            "xy_columns": xy_columns,
            "extra_fields": extra_fields,
            "create": create,
            "reproject": reproject,
            "dry_run": dry_run,
            "settings": settings,
        }
        from geosession.ingest.termination import sigterm_stops_the_load

        with self._translated(), sigterm_stops_the_load():
            report = self._ingest_job(target, source, options).run()
        self.metrics.ingest.record(report)  # totals for the Prometheus exporter
        if report.inserted:
            self._replicas.mark_written()  # its own connections: no engine event sees them
        return report

    async def async_ingest(
        self, target: Any, source: Any, **options: Unpack[IngestArguments]
    ) -> IngestReport:
        """The async twin of :meth:`ingest`, with the same options; ``source`` may also be
        an async iterable (an async generator of dicts, tuples or mapped instances).

        The pipeline runs on a thread of its own with the sync engine's psycopg connections,
        so the event loop never blocks. Cancelling the task stops the ingest as Ctrl-C
        does: committed chunks stay, the same ``ingest_id`` resumes, and the
        CancelledError carries ``ingest_report``.
        """
        from geosession.ingest.aio import AsyncRows, run_awaited
        from geosession.ingest.termination import sigterm_stops_the_awaited_load

        rows = AsyncRows.of(source, asyncio.get_running_loop(), options.get("flush_interval"))
        try:
            with self._translated():
                stop = rows.stop if isinstance(rows, AsyncRows) else None
                job = await asyncio.to_thread(self._ingest_job, target, rows, options, stop)
                with sigterm_stops_the_awaited_load(job.cancel):
                    report = await run_awaited(job, rows)
        finally:
            if isinstance(rows, AsyncRows):
                await rows.aclose()
        self.metrics.ingest.record(report)
        if report.inserted:
            self._replicas.mark_written()
        return report

    def _ingest_job(
        self,
        target: Any,
        source: Any,
        options: IngestArguments,
        stop_source: Callable[[], None] | None = None,
    ) -> Ingest:
        """An ingest ready to run (its target resolved: this queries the server)."""
        from geosession.ingest.options import IngestOptions, ingest_settings
        from geosession.ingest.pipeline import Ingest

        local = ingest_settings(options.get("settings"), pgbouncer=self.settings.pgbouncer)
        arguments = {**options, "settings": local}
        settings = IngestOptions(**arguments)  # type: ignore[arg-type]  # checked by Ingest
        server = self.settings.server_options()  # the timeouts as the server has them
        return Ingest(
            self._copy_engine(),
            target,
            source,
            settings,
            server.get("statement_timeout"),
            stop_source,
            lock_timeout=server.get("lock_timeout"),
            pgbouncer=self.settings.pgbouncer,
        )

    def _copy_engine(self) -> Engine:
        """The ingest's engine: binary COPY is psycopg 3's, so where the sync engine is
        psycopg2's, a pool of psycopg 3 connections with the same settings, made on first use."""
        if self.settings.driver == "psycopg":
            return self._engine
        with self._engines_lock:
            if self._ingest_engine is None:
                self._ingest_engine = build_engine(
                    self.settings.model_copy(update={"driver": "psycopg"})
                )
                self.metrics.attach_ingest(self._ingest_engine)
            return self._ingest_engine

    def pool_stats(self, *, async_pool: bool = False) -> PoolStats:
        """The sync (or async) pool: connections lent and idle, waits, longest holders."""
        monitor = self.metrics.async_pool if async_pool else self.metrics.pool
        if monitor is None:  # the async engine is made on first use, of this size
            return PoolStats(size=self.settings.pool_size, checked_out=0, checked_in=0, overflow=0)
        return monitor.stats()

    def write_position(self) -> str:
        """The primary's WAL position now (``pg_current_wal_lsn()``), past every write
        committed so far: hand it to a client (a cookie, a header) after it wrote, and read
        its next request's replica reads in ``with db.reads_after(position):`` so they see
        the write."""
        with self._translated():
            return self._replicas.position()

    async def async_write_position(self) -> str:
        """The async twin of :meth:`write_position`, on :attr:`async_engine`."""
        try:
            return await self._replicas.async_position()
        except sa_exc.TimeoutError as error:
            raise self._pool_exhausted(self._async_engine_here()[0].sync_engine) from error

    def reads_after(self, position: str | None) -> AbstractContextManager[None]:
        """Within the block, replica reads (sync and async, and streams made there) go to
        a replica that has replayed ``position`` (from :meth:`write_position`), else to the
        primary; None changes nothing (a client with no cookie)."""
        return self._replicas.reads_after(position)

    def replica_pool_stats(self) -> list[PoolStats]:
        """The pools of the replica engines made so far (``replica=True`` reads), in the
        order they were made: connections lent and idle, waits, longest holders."""
        return [monitor.stats() for monitor in self.metrics.replica_pools]

    def explain(
        self,
        statement: Any,
        *,
        params: Mapping[str, Any] | None = None,
        analyze: bool = False,
        buffers: bool = True,
        statement_timeout: str | int | None = None,
        settings: Mapping[str, object] | None = None,
    ) -> PlanReport:
        """The server's plan for ``statement``, whether it uses a spatial index, and advice.

        ``params`` gives SQL text's ``:name`` placeholders their values, as in stream().
        ``analyze=True`` executes the statement (actual rows, times, buffers) inside a
        transaction that is always rolled back, so INSERT/UPDATE/DELETE change nothing;
        ``statement_timeout`` (SET LOCAL) lets a slow one run longer than the database's;
        ``settings`` (SET LOCAL too) plans it as the application runs it: a tenant's
        search_path, a row-level security key.
        """
        local = local_settings(settings, statement_timeout=statement_timeout)
        with self.session() as session:
            connection = session.connection(
                execution_options=_transaction_options(None, not analyze)
            )
            if local:
                connection.execute(*set_local(local))
            try:
                return explain_statement(
                    connection, statement, params=params, analyze=analyze, buffers=buffers
                )
            finally:
                session.rollback()  # ANALYZE executes the statement: never keep its effects

    def activity(
        self, *, all_databases: bool = False, long_running: float = 60.0
    ) -> list[SessionActivity]:
        """This database's server sessions (pg_stat_activity), except the one asking."""
        with self.session() as session:
            connection = session.connection(execution_options={"postgresql_readonly": True})
            return session_activity(
                connection, all_databases=all_databases, long_running=long_running
            )

    def locks(self, *, all_databases: bool = False) -> list[LockWait]:
        """Sessions waiting for a lock, with the pids (and queries) blocking them."""
        with self.session() as session:
            connection = session.connection(execution_options={"postgresql_readonly": True})
            return lock_waits(connection, all_databases=all_databases)

    def doctor(self, *, schemas: list[str] | None = None) -> DoctorReport:
        """Checks the server, settings, spatial indexes and sessions; see ``geosession doctor``."""
        return run_doctor(self._engine, self.settings, schemas=schemas)

    # -- streaming reads and exports (geosession.read) -------------------------------

    def stream(
        self,
        statement: Any,
        *,
        params: Mapping[str, Any] | None = None,
        replica: bool = False,
        **options: Any,
    ) -> GeometryStream:
        """Iterate ``statement``'s rows in bounded memory: a server-side cursor, or keyset
        pages with ``pages_by=``. Options: geometry, output, batch_size, geometry_column,
        pages_by, bbox, bbox_srid, precision, statement_timeout, settings (README:
        "Streaming reads and GeoJSON export").
        ``replica=True`` reads on a replica, as :meth:`session` says."""
        read = ReadOptions.build(**options)
        return GeometryStream(self._checkouts(replica=replica), statement, read, params)

    def stream_frames(
        self,
        statement: Any,
        *,
        params: Mapping[str, Any] | None = None,
        replica: bool = False,
        **options: Any,
    ) -> Iterator[Any]:
        """GeoDataFrame chunks of ``statement``'s rows (needs the ``geo`` extra)."""
        from geosession.read.frames import frames

        return frames(self._row_stream(statement, params, replica=replica, options=options))

    def stream_arrow(
        self,
        statement: Any,
        *,
        params: Mapping[str, Any] | None = None,
        replica: bool = False,
        **options: Any,
    ) -> ArrowStream:
        """``statement``'s rows as Arrow record batches (needs the ``geo`` extra), geometries
        as GeoArrow WKB with their CRS, for DuckDB, polars or pyarrow; ``close()`` it (or
        use ``with``) to release its connection before the last batch."""
        from geosession.read.arrow import arrow_stream

        return arrow_stream(self._row_stream(statement, params, replica=replica, options=options))

    def _row_stream(
        self,
        statement: Any,
        params: Mapping[str, Any] | None,
        *,
        replica: bool,
        options: Mapping[str, Any],
    ) -> GeometryStream:
        """A stream of plain rows (geometries as EWKB), for frames and Arrow batches."""
        read = ReadOptions.build(**{**options, "output": "row"})
        return GeometryStream(self._checkouts(replica=replica), statement, read, params)

    def export_geojson(
        self,
        statement: Any,
        dest: Any,
        *,
        newline_delimited: bool = False,
        precision: int | None = None,
        **options: Any,
    ) -> ExportResult:
        """Write an RFC 7946 FeatureCollection (or GeoJSON Lines) to a path or binary file."""
        kind = "geojsonl" if newline_delimited else "geojson"
        return self.export(statement, dest, format=kind, precision=precision, **options)

    def export(
        self,
        statement: Any,
        dest: Any,
        *,
        format: str | None = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None = None,
        progress: bool | Callable[[int], None] = False,
        spatial_index: bool = True,
        coordinates: bool = False,
        replica: bool = False,
        **options: Any,
    ) -> ExportResult:
        """Write ``statement``'s rows as geojson, geojsonl, gpkg, fgb, shp (Shapefile, one zip
        for a ``.shp.zip`` path), parquet (GeoParquet), arrow (Arrow IPC: Feather) or csv
        (WKT), by default the format ``dest``'s suffix names: complete, or no file.
        ``layer`` names a GeoPackage layer: added to an existing file, whose other layers
        stay. ``progress=True`` shows a bar on stderr; a function is called with the
        features written so far.
        ``spatial_index=False`` writes a GeoPackage, FlatGeobuf or Shapefile without one
        (FlatGeobuf's is built in memory: about 160 MB per million features). The result's
        ``renamed`` lists the columns a Shapefile's 10-byte field names shortened.
        ``coordinates=True`` writes a CSV's points as ``longitude`` and ``latitude`` (a
        geographic CRS) or ``x`` and ``y`` columns instead of WKT."""
        read = ReadOptions.build(**options)
        return export(
            self._checkouts(replica=replica),
            statement,
            dest,
            format=format,
            options=read,
            params=params,
            progress=progress,
            layer=layer,
            spatial_index=spatial_index,
            coordinates=coordinates,
        )

    def iter_geojson(
        self,
        statement: Any,
        *,
        newline_delimited: bool = False,
        params: Mapping[str, Any] | None = None,
        replica: bool = False,
        pages_by: str | None = "auto",
        **options: Any,
    ) -> Iterator[bytes]:
        """GeoJSON bytes chunk by chunk, for streaming HTTP responses: in keyset pages, so
        a slow client holds no connection, by ``pages_by`` (by default the primary key of a
        table's name or of a select of one table's rows; else a cursor, with a warning)."""
        read = ReadOptions.build(pages_by=pages_by, **options).for_features()
        stream = GeometryStream(self._checkouts(replica=replica), statement, read, params)
        tell_if_held(stream.options, "iter_geojson")
        return geojson_chunks(stream.batches(), newline_delimited=newline_delimited)

    def async_iter_geojson(
        self,
        statement: Any,
        *,
        newline_delimited: bool = False,
        params: Mapping[str, Any] | None = None,
        replica: bool = False,
        pages_by: str | None = "auto",
        **options: Any,
    ) -> AsyncIterator[bytes]:
        """The async twin of :meth:`iter_geojson`, on :attr:`async_engine`, for async
        endpoints (``StreamingResponse(db.async_iter_geojson(...))``)."""
        read = ReadOptions.build(pages_by=pages_by, **options).for_features()
        checkout = self._async_checkouts(replica=replica)
        stream = AsyncGeometryStream(checkout, statement, read, params)
        tell_if_held(stream.options, "async_iter_geojson")
        return async_geojson_chunks(stream.batches(), newline_delimited=newline_delimited)

    def async_stream(
        self,
        statement: Any,
        *,
        params: Mapping[str, Any] | None = None,
        replica: bool = False,
        **options: Any,
    ) -> AsyncGeometryStream:
        """The async twin of :meth:`stream`, on :attr:`async_engine`."""
        read = ReadOptions.build(**options)
        checkout = self._async_checkouts(replica=replica)
        return AsyncGeometryStream(checkout, statement, read, params)

    def _checkouts(self, *, replica: bool) -> Callable[[], AbstractContextManager[Connection]]:
        """Checkouts for a stream, which reads later (a web response's generator) in
        another context: the writes of this one travel with it (read your writes)."""
        after = self._replicas.read_after()
        return functools.partial(self._checkout, replica=replica, after=after)

    def _async_checkouts(
        self, *, replica: bool
    ) -> Callable[[], AbstractAsyncContextManager[AsyncConnection]]:
        after = self._replicas.read_after()
        return functools.partial(self._async_checkout, replica=replica, after=after)

    @contextmanager
    def _checkout(
        self, *, replica: bool = False, after: ReadAfter | None = None
    ) -> Iterator[Connection]:
        """A pooled connection; pool exhaustion becomes PoolExhausted. ``replica``: a
        read-only one to a replica, else to the primary; one that has replayed
        ``after``'s writes (those of the context that asked for the read)."""
        with self._translated():
            connection = self._replicas.connect(after or ReadAfter(None)) if replica else None
            if connection is None:
                connection = self._engine.connect()
                if replica:
                    connection.execution_options(**READ_ONLY)
            with connection:
                yield connection

    @asynccontextmanager
    async def _async_checkout(
        self, *, replica: bool = False, after: ReadAfter | None = None
    ) -> AsyncIterator[AsyncConnection]:
        engine, pooled = self._async_engine_here()
        try:
            connection = (
                await self._replicas.async_connect(after or ReadAfter(None), pooled=pooled)
                if replica
                else None
            )
            if connection is None:
                connection = await connected(engine, pooled=pooled)
                if replica:
                    await connection.execution_options(**READ_ONLY)
            try:
                yield connection
            finally:
                await connection.close()
        except sa_exc.TimeoutError as error:
            raise self._pool_exhausted(engine.sync_engine) from error

    def dispose(self) -> None:
        """Closes every pooled connection of the sync engine (call at shutdown)."""
        forget_database(self, self._counted_as)
        self.scoped.remove()
        self.metrics.close()
        for engine in self._sync_engines():
            engine.dispose()
        for async_engine in self._async_engines():
            async_engine.sync_engine.dispose(close=False)  # closing needs the event loop

    def _renew_after_fork(self) -> None:
        """In a forked child: pools of its own; the parent's connections are never used
        here, nor its threads' scoped sessions (see ``forks``)."""
        self._engines_lock = threading.Lock()  # another thread may have held it at the fork
        self._loop.forget()
        for record in self.metrics.lent():  # sessions open in the parent at the fork
            cut_off(record.dbapi_connection)
        keep_inherited(self.scoped.registry)
        self.scoped.registry = ThreadLocalRegistry(self._sessions)
        async_engines = [async_engine.sync_engine for async_engine in self._async_engines()]
        for engine in [*self._sync_engines(), *async_engines]:
            keep_inherited(engine.pool)
            engine.dispose(close=False)
        self.metrics.restart_after_fork()

    def _sync_engines(self) -> list[Engine]:
        """The sync engines made so far: the primary's, the ingest's own, the replicas'."""
        ingest = [self._ingest_engine] if self._ingest_engine is not None else []
        return [self._engine, *ingest, *self._replicas.engines()]

    def _async_engines(self) -> list[AsyncEngine]:
        """The async engines made so far: the primary's and the replicas'."""
        made = [self._async_engine, self._unpooled_async_engine, *self._replicas.async_engines()]
        return [engine for engine in made if engine is not None]

    async def adispose(self) -> None:
        """Closes the async engine's connections too (they need the event loop)."""
        for async_engine in self._async_engines():
            await async_engine.dispose()
        self.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.adispose()

    def __repr__(self) -> str:
        return f"SpatialDatabase({self.settings.safe_url()!r})"

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sa_exc.TimeoutError as error:
            raise self._pool_exhausted(self._engine) from error
        except (LockTimeout, QueryTimeout) as error:
            note_waiting_on_itself(error, self.metrics.monitor_of(self._engine))
            raise

    def _pool_exhausted(self, engine: Engine) -> PoolExhausted:
        return pool_exhausted(self.settings, engine, self.metrics.monitor_of(engine))


def _merge_settings(
    url: str | URL | None, settings: DatabaseSettings | None, overrides: dict[str, Any]
) -> DatabaseSettings:
    if url is not None:
        overrides = {"database_url": url, **overrides}
    if settings is None:
        return DatabaseSettings(**overrides)
    if not overrides:
        return settings
    return DatabaseSettings(**{**settings.model_dump(exclude_unset=True), **overrides})


def _setting_each_transaction(session: Session, settings: Mapping[str, str]) -> Session:
    """``session``, each of whose transactions begins by setting ``settings`` (SET LOCAL:
    they end with it, and never reach the next user of the pooled connection)."""
    if settings:
        statement, values = set_local(settings)

        def begun(session: Session, transaction: Any, connection: Connection) -> None:
            connection.execute(statement, values)

        event.listen(session, "after_begin", begun)
    return session


def _transaction_options(isolation: str | None, read_only: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if isolation is not None:
        level = " ".join(isolation.replace("_", " ").upper().split())
        if level not in ISOLATION_LEVELS:
            raise ConfigurationError(
                f"isolation={isolation!r} is not an isolation level; use one of "
                + ", ".join(repr(name) for name in ISOLATION_LEVELS)
            )
        options["isolation_level"] = level
    if read_only:
        options["postgresql_readonly"] = True
    return options
