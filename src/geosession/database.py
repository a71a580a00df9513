"""SpatialDatabase: owns the engines and session factories, and their lifecycle.

Every way of getting a session here ends it deterministically: the connection goes back
to the pool rolled back if it was still in a transaction, so no backend is left idle in
transaction and no connection is left checked out, whatever the caller's code raised.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from geosession.diagnose.explain import PlanReport, explain_statement
from geosession.engine import build_async_engine, build_engine
from geosession.errors import ConfigurationError, PoolExhausted, endpoint_of
from geosession.ingest.report import IngestReport
from geosession.observe.pool import PoolStats, pool_stats
from geosession.settings import DatabaseSettings, check_duration

ISOLATION_LEVELS = ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")


class SpatialDatabase:
    """Tuned engines and always-closing sessions for one PostGIS database.

    ``SpatialDatabase(url, **settings)`` or ``SpatialDatabase.from_env()``; use it as a
    context manager, or call :meth:`dispose` at shutdown.
    """

    def __init__(
        self, url: str | None = None, *, settings: DatabaseSettings | None = None, **overrides: Any
    ) -> None:
        self.settings = _merge_settings(url, settings, overrides)
        self._engine = build_engine(self.settings)
        self._sessions = sessionmaker(bind=self._engine, autoflush=False, expire_on_commit=False)
        self.scoped = scoped_session(self._sessions)
        """Thread-local session registry; call ``db.scoped.remove()`` when a request ends."""
        self._async_engine: AsyncEngine | None = None
        self._async_sessions: async_sessionmaker[AsyncSession] | None = None
        self._async_lock = threading.Lock()

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
        """The AsyncEngine (asyncpg unless ``async_driver`` says psycopg), made on first use."""
        with self._async_lock:
            if self._async_engine is None:
                self._async_engine = build_async_engine(self.settings)
                self._async_sessions = async_sessionmaker(
                    self._async_engine, autoflush=False, expire_on_commit=False
                )
            return self._async_engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A Session that is always closed; an exception rolls it back and is re-raised.

        Nothing is committed for you: call ``s.commit()``, or use :meth:`transaction`.
        """
        with self._translated(), self._sessions() as session:
            yield session

    @contextmanager
    def transaction(
        self,
        *,
        isolation: str | None = None,
        statement_timeout: str | int | None = None,
        lock_timeout: str | int | None = None,
        read_only: bool = False,
    ) -> Iterator[Session]:
        """One explicit transaction: committed when the block ends, rolled back on error.

        ``statement_timeout`` and ``lock_timeout`` apply with SET LOCAL, so they end with
        the transaction and never reach the next user of the pooled connection.
        """
        options = _transaction_options(isolation, read_only)
        settings = _local_settings(statement_timeout=statement_timeout, lock_timeout=lock_timeout)
        with self.session() as session, session.begin():
            session.connection(execution_options=options)
            if settings:
                session.execute(*_set_local(settings))
            yield session

    def get_session(self) -> Iterator[Session]:
        """Generator dependency for FastAPI ``Depends``: yields a session, closes it after."""
        with self.session() as session:
            yield session

    @asynccontextmanager
    async def async_session(self) -> AsyncIterator[AsyncSession]:
        """The async twin of :meth:`session`: always closed, rolled back on error."""
        self.async_engine  # noqa: B018 - creates the engine and session factory on first use
        assert self._async_sessions is not None
        try:
            async with self._async_sessions() as session:
                yield session
        except sa_exc.TimeoutError as error:
            raise self._pool_exhausted(self.async_engine.sync_engine) from error

    @asynccontextmanager
    async def async_transaction(
        self,
        *,
        isolation: str | None = None,
        statement_timeout: str | int | None = None,
        lock_timeout: str | int | None = None,
        read_only: bool = False,
    ) -> AsyncIterator[AsyncSession]:
        """The async twin of :meth:`transaction`."""
        options = _transaction_options(isolation, read_only)
        settings = _local_settings(statement_timeout=statement_timeout, lock_timeout=lock_timeout)
        async with self.async_session() as session, session.begin():
            await session.connection(execution_options=options)
            if settings:
                await session.execute(*_set_local(settings))
            yield session

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
        workers: int = 1,
        defer_indexes: str | bool = "auto",
        progress: bool = False,
    ) -> IngestReport:
        """Loads rows by binary COPY in chunks that each commit with a ledger entry.

        Rerunning with the same ``ingest_id`` resumes after the committed chunks; bad
        geometries go to ``<table>_rejected`` (``on_invalid="quarantine"``), are raised,
        repaired or skipped. See the README section "Bulk ingest".
        """
        from geosession.ingest.pipeline import Ingest, IngestOptions

        options = IngestOptions(
            chunk_size=chunk_size,
            on_invalid=on_invalid,  # type: ignore[arg-type]
            on_conflict=on_conflict,  # type: ignore[arg-type]
            ingest_id=ingest_id,
            srid=srid,
            workers=workers,
            defer_indexes=defer_indexes,  # type: ignore[arg-type]
            progress=progress,
        )
        with self._translated():
            return Ingest(self._engine, target, source, options, self.settings.statement_timeout).run()

    def pool_stats(self) -> PoolStats:
        """How many connections the sync pool holds, lends and has lent beyond its size."""
        return pool_stats(self._engine)

    def explain(self, statement: Any, *, analyze: bool = False) -> PlanReport:
        """The server's plan for ``statement`` and whether it uses a spatial index."""
        with self.session() as session:
            connection = session.connection(
                execution_options=_transaction_options(None, not analyze)
            )
            try:
                return explain_statement(connection, statement, analyze=analyze)
            finally:
                session.rollback()  # ANALYZE executes the statement: never keep its effects

    def dispose(self) -> None:
        """Closes every pooled connection of the sync engine (call at shutdown)."""
        self.scoped.remove()
        self._engine.dispose()
        if self._async_engine is not None:
            self._async_engine.sync_engine.dispose(close=False)

    async def adispose(self) -> None:
        """Closes the async engine's connections too (they need the event loop)."""
        if self._async_engine is not None:
            await self._async_engine.dispose()
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

    def _pool_exhausted(self, engine: Engine) -> PoolExhausted:
        s = self.settings
        return PoolExhausted(
            f"No pooled connection became free within pool_timeout={s.pool_timeout:g}s: all "
            f"{s.pool_size} connections of the pool (pool_size={s.pool_size}) and "
            f"{s.max_overflow} overflow (max_overflow={s.max_overflow}) are checked out "
            f"(on {endpoint_of(engine)}). Close sessions promptly (`with db.session()`), keep "
            "slow work outside them, or raise pool_size / max_overflow"
        )


def _merge_settings(
    url: str | None, settings: DatabaseSettings | None, overrides: dict[str, Any]
) -> DatabaseSettings:
    if url is not None:
        overrides = {"database_url": url, **overrides}
    if settings is None:
        return DatabaseSettings(**overrides)
    if not overrides:
        return settings
    return DatabaseSettings(**{**settings.model_dump(exclude_unset=True), **overrides})


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


def _local_settings(**values: str | int | None) -> dict[str, str]:
    return {
        name: check_duration(name, value) for name, value in values.items() if value is not None
    }


def _set_local(settings: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """One round trip of ``set_config(name, value, is_local => true)`` for every setting."""
    calls = ", ".join(f"set_config('{name}', :{name}, true)" for name in settings)
    return text(f"SELECT {calls}"), settings
