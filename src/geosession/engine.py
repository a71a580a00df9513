"""Engines per driver, each leaving the server in the same state.

libpq drivers (psycopg 3, psycopg2) take server settings as ``-c name=value`` in the
``options`` startup parameter; asyncpg takes a ``server_settings`` dict. Both are set at
connection start-up so every pooled connection is configured before its first query,
with no extra round trip. Parameters are hidden from logs and error messages.

Behind PgBouncer in transaction pooling (``pgbouncer=True``) neither works: PgBouncer
refuses startup options, and each transaction may run on another server connection. The
settings are then set with ``set_config(..., is_local => true)`` as each transaction
begins (one statement, on SQLAlchemy's connections and on the raw psycopg connections
the ingest uses alike), and nothing is prepared on the server: psycopg never prepares,
and asyncpg's statements get names of their own, uncached, as SQLAlchemy's asyncpg
dialect documents for PgBouncer.
"""

from __future__ import annotations

import functools
import inspect
import ssl
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import URL, Connection, Engine, create_engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from geosession.engine_errors import install_error_translation
from geosession.errors import ConfigurationError
from geosession.event_loops import keep_to_own_loops
from geosession.geoalchemy_srids import compile_srids_each_time
from geosession.session_state import guard_session_state
from geosession.settings import DatabaseSettings, SSLMode, duration_ms

_COMMAND_TIMEOUT_MARGIN_S = 30

compile_srids_each_time()  # before any statement is built with geosession's engines


def build_engine(settings: DatabaseSettings) -> Engine:
    """A pooled Engine for the sync driver (psycopg 3 or psycopg2)."""
    engine = create_engine(
        _engine_url(settings, settings.driver),
        connect_args=libpq_connect_args(settings, settings.driver),
        **_pool_arguments(settings),
    )
    if settings.pgbouncer:
        _set_per_transaction(engine, settings, raw_psycopg=settings.driver == "psycopg")
    if settings.driver == "psycopg2":
        event.listen(engine, "connect", _bytea_as_bytes)
    install_error_translation(engine, idle_in_transaction_timeout=_idle_timeout_s(settings))
    guard_session_state(engine, pgbouncer=settings.pgbouncer)
    return engine


def _bytea_as_bytes(dbapi_connection: Any, record: Any) -> None:
    """psycopg2 reads bytea as memoryview, psycopg 3 and asyncpg as bytes: every driver
    gives bytes then (streams hand the driver's values on: a row's EWKB, a bytea column).
    SQLAlchemy's own LargeBinary made bytes of either already."""
    import psycopg2.extensions

    for caster in _bytes_casters():
        psycopg2.extensions.register_type(caster, dbapi_connection)


@functools.cache
def _bytes_casters() -> tuple[Any, Any]:
    """psycopg2 typecasters of bytea and bytea[] to bytes."""
    import psycopg2
    import psycopg2.extensions

    binary = psycopg2.BINARY

    def as_bytes(value: str | None, cursor: Any) -> bytes | None:
        view = binary(value, cursor)
        return None if view is None else bytes(view)

    caster = psycopg2.extensions.new_type(binary.values, "GEOSESSION_BYTEA", as_bytes)
    arrays = psycopg2.extensions.new_array_type((1001,), "GEOSESSION_BYTEA_ARRAY", caster)
    return caster, arrays


def build_async_engine(settings: DatabaseSettings, *, pooled: bool = True) -> AsyncEngine:
    """An AsyncEngine for the async driver (asyncpg or psycopg 3): pooled, or with a
    connection of its own for each checkout (for loops beside the pooled one's, see
    ``event_loops``)."""
    driver = settings.async_driver
    connect_args = (
        asyncpg_connect_args(settings)
        if driver == "asyncpg"
        else libpq_connect_args(settings, driver)
    )
    engine = create_async_engine(
        _engine_url(settings, driver),
        connect_args=connect_args,
        **(_pool_arguments(settings) if pooled else _unpooled_arguments(settings)),
    )
    if settings.pgbouncer:
        _set_per_transaction(engine.sync_engine, settings, raw_psycopg=False)
    install_error_translation(
        engine.sync_engine, idle_in_transaction_timeout=_idle_timeout_s(settings)
    )
    guard_session_state(engine.sync_engine, pgbouncer=settings.pgbouncer)
    keep_to_own_loops(engine.sync_engine)
    return engine


def _engine_url(settings: DatabaseSettings, driver: str) -> URL:
    """The URL for ``driver`` without the query parameters given to it otherwise: asyncpg
    takes no libpq ones (they are server_settings), and behind PgBouncer the URL's options
    are set per transaction (with SQLAlchemy's asyncpg statement cache off)."""
    url = settings.url(driver)
    if driver == "asyncpg":
        url = url.difference_update_query(_LIBPQ_SESSION_PARAMETERS)
        _refuse_unknown_to_asyncpg(url)
        if settings.pgbouncer:
            url = url.update_query_dict({"prepared_statement_cache_size": "0"})
    elif settings.pgbouncer:
        url = url.difference_update_query(("options",))
    return url


def _set_per_transaction(engine: Engine, settings: DatabaseSettings, *, raw_psycopg: bool) -> None:
    """Server settings at the start of every transaction (PgBouncer mode): SQLAlchemy's,
    and with ``raw_psycopg`` those of psycopg's own ``transaction()`` blocks (the ingest)."""
    settings_by_name = settings.server_options()
    if not settings_by_name:
        return
    params: dict[str, str] = {}
    for number, (name, value) in enumerate(settings_by_name.items()):
        params |= {f"n{number}": name, f"v{number}": value}
    statement = text(_set_config_sql(len(settings_by_name), ":{}"))

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.execute(statement, params)

    if raw_psycopg:
        raw = _set_config_sql(len(settings_by_name), "%({})s")

        @event.listens_for(engine, "do_connect")
        def _connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> PgBouncerConnection:
            connection = PgBouncerConnection.connect(*cargs, **cparams)
            connection.per_transaction = (raw, params)
            return connection


def _set_config_sql(count: int, placeholder: str) -> str:
    """``SELECT set_config(name, value, true), ...`` with the driver's placeholders."""
    calls = (
        f"set_config({placeholder.format(f'n{n}')}, {placeholder.format(f'v{n}')}, true)"
        for n in range(count)
    )
    return "SELECT " + ", ".join(calls)


class PgBouncerConnection(psycopg.Connection[Any]):
    """A psycopg connection whose outermost ``transaction()`` blocks begin by setting the
    server settings (PgBouncer mode): the ingest runs each chunk in such a block. While
    ``implicit_settings`` is on (the ingest holds it), a statement that begins a
    transaction of psycopg's own (its implicit BEGIN: the target's lookup, the checks
    before the load) is preceded by them too; SQLAlchemy's transactions get them from
    its begin event instead, so they are not set twice."""

    per_transaction: tuple[str, dict[str, str]] | None = None
    implicit_settings = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = _SettingsFirstCursor

    @contextmanager
    def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> Iterator[psycopg.Transaction]:
        outermost = self.info.transaction_status == TransactionStatus.IDLE
        with super().transaction(savepoint_name, force_rollback) as transaction:
            if outermost and self.per_transaction is not None:
                psycopg.Cursor(self).execute(*self.per_transaction)
            yield transaction

    def settings_first(self) -> None:
        """The settings, where the next statement would begin a transaction."""
        idle = self.info.transaction_status == TransactionStatus.IDLE
        if self.implicit_settings and idle and not self.autocommit and self.per_transaction:
            psycopg.Cursor(self).execute(*self.per_transaction)


class _SettingsFirstCursor(psycopg.Cursor[Any]):
    """A cursor whose statements follow the settings where they begin a transaction."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self.connection, PgBouncerConnection):
            self.connection.settings_first()
        return super().execute(*args, **kwargs)


def _unpooled_arguments(settings: DatabaseSettings) -> dict[str, Any]:
    """An engine without a pool (a connection per checkout) that hides parameters and
    echoes as the pooled ones do: a bind error printed them, a token among them."""
    return {"poolclass": NullPool, "hide_parameters": True, "echo": settings.echo}


def _pool_arguments(settings: DatabaseSettings) -> dict[str, Any]:
    return {
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.pool_timeout,
        "pool_recycle": settings.pool_recycle,
        "pool_pre_ping": settings.pool_pre_ping,
        "pool_use_lifo": True,  # idle surplus connections age out instead of being cycled
        "pool_reset_on_return": "rollback",
        "hide_parameters": True,
        "echo": settings.echo,
    }


def libpq_connect_args(settings: DatabaseSettings, driver: str) -> dict[str, Any]:
    """Keyword arguments for psycopg / psycopg2 connect(): startup options and TLS (in
    PgBouncer mode no options, and psycopg prepares no statement)."""
    args: dict[str, Any] = {
        "application_name": settings.application_name,
        "connect_timeout": settings.connect_timeout,
        "keepalives": 1,  # a peer that vanished is detected instead of awaited forever
        "keepalives_idle": settings.keepalives_idle,
        "keepalives_interval": settings.keepalives_interval,
        "keepalives_count": settings.keepalives_count,
        "tcp_user_timeout": round(settings.tcp_user_timeout * 1000),
        "options": " ".join(
            f"-c {name}={_escape_option(value)}"
            for name, value in settings.server_options().items()
        ),
    }
    for name in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        value = getattr(settings, name)
        if value is not None:
            args[name] = str(value)
    if settings.pgbouncer:
        del args["options"]
        if driver == "psycopg":
            args["prepare_threshold"] = None
    return _with_url_parameters(args, settings.url().query)


def _with_url_parameters(args: dict[str, Any], query: Mapping[str, Any]) -> dict[str, Any]:
    """connect_args replace the URL's query parameters of the same name: a parameter the
    URL names is left to the URL, except ``options``, which ``server_options()`` already
    holds after geosession's own."""
    return {name: value for name, value in args.items() if name == "options" or name not in query}


def _escape_option(value: str) -> str:
    """libpq splits ``options`` on spaces; a backslash keeps one inside a value."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def asyncpg_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect(): server_settings, timeout and TLS."""
    query = settings.url().query
    args: dict[str, Any] = {
        "server_settings": {
            **settings.server_options(),
            "application_name": query.get("application_name", settings.application_name),
        },
        "timeout": _url_connect_timeout(query) or settings.connect_timeout,
    }
    command_timeout = asyncpg_command_timeout(settings)
    if command_timeout is not None:
        args["command_timeout"] = command_timeout
    if settings.pgbouncer:  # settings per transaction; statements named uniquely, uncached
        args["server_settings"] = {"application_name": args["server_settings"]["application_name"]}
        args["statement_cache_size"] = 0
        args["prepared_statement_name_func"] = _statement_name
    tls = _asyncpg_ssl(_with_url_tls(settings, query))
    if tls is not None:
        args["ssl"] = tls
    return args


_SQLALCHEMY_ASYNCPG_ARGS = ("prepared_statement_cache_size", "prepared_statement_name_func")


def _refuse_unknown_to_asyncpg(url: URL) -> None:
    """URL query parameters asyncpg.connect() would refuse with a TypeError at the first
    connection (libpq's others, a server setting), refused as the engine is made."""
    import asyncpg

    known = {*inspect.signature(asyncpg.connect).parameters, *_SQLALCHEMY_ASYNCPG_ARGS}
    unknown = sorted(name for name in url.query if name not in known)
    if unknown:
        raise ConfigurationError(
            f"The URL's {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} no "
            "setting of asyncpg, the async driver: server settings go in server_settings "
            '(GEOSESSION_SERVER_SETTINGS=\'{"statement_timeout": "30s"}\', say), or in '
            "the URL as options=-c name=value; or use async_driver='psycopg', which reads "
            "libpq's parameters"
        )


def _url_connect_timeout(query: Mapping[str, Any]) -> int | None:
    """The URL's connect_timeout (libpq's, in seconds), which asyncpg takes as timeout."""
    given = query.get("connect_timeout")
    if given is None:
        return None
    try:
        return max(int(str(given)), 1)
    except ValueError:
        raise ConfigurationError(
            f"connect_timeout={given!r} in the URL is not valid: use whole seconds, e.g. 10"
        ) from None


def _with_url_tls(settings: DatabaseSettings, query: Mapping[str, Any]) -> DatabaseSettings:
    """``settings`` with the URL's sslmode and certificates (a provider's URL ends in
    ?sslmode=require), which asyncpg takes as its ``ssl``: the URL's win, as libpq's
    parameters in the URL do for the other drivers (:func:`_with_url_parameters`)."""
    given = {name: str(query[name]) for name in _LIBPQ_TLS if name in query}
    if not given:
        return settings
    mode = given.get("sslmode")
    if mode is not None and mode not in get_args(SSLMode):
        raise ConfigurationError(
            f"sslmode={mode!r} in the URL is not valid: use one of {', '.join(get_args(SSLMode))}"
        )
    files = {name: Path(value) for name, value in given.items() if name != "sslmode"}
    return settings.model_copy(update={**given, **files})


def _statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4()}__"


_LIBPQ_TLS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
_LIBPQ_SESSION_PARAMETERS = ("options", "application_name", "connect_timeout", *_LIBPQ_TLS)
"""URL query parameters libpq reads and asyncpg does not: given as server_settings, its
timeout and its ssl instead."""


def _asyncpg_ssl(settings: DatabaseSettings) -> ssl.SSLContext | str | None:
    """asyncpg takes libpq's sslmode names, or an SSLContext when certificates are given."""
    if not (settings.sslrootcert or settings.sslcert):
        return settings.sslmode
    try:
        context = ssl.create_default_context(
            cafile=str(settings.sslrootcert) if settings.sslrootcert else None
        )
        context.check_hostname = settings.sslmode == "verify-full"
        if settings.sslmode not in ("verify-ca", "verify-full"):
            context.verify_mode = ssl.CERT_NONE
        if settings.sslcert:
            context.load_cert_chain(
                str(settings.sslcert), str(settings.sslkey) if settings.sslkey else None
            )
    except (OSError, ssl.SSLError) as error:  # a file missing, unreadable, or no certificate
        files = ", ".join(
            f"{name}={value}"
            for name in ("sslrootcert", "sslcert", "sslkey")
            if (value := getattr(settings, name))
        )
        raise ConfigurationError(
            f"The TLS files for asyncpg could not be read ({files}): {error}. Check the paths "
            "and that they hold PEM certificates (and the key for sslcert)"
        ) from error
    return context


def asyncpg_command_timeout(settings: DatabaseSettings) -> float | None:
    """Seconds asyncpg waits for any answer: the setting, else statement_timeout + 30 s.

    asyncpg has no TCP keepalives; this client-side deadline is what bounds a hung
    network or server. It stays above statement_timeout so a slow statement still ends
    with the server's QueryTimeout, not with a dropped connection.
    """
    if settings.command_timeout is not None:
        return settings.command_timeout or None
    statement_ms = duration_ms(settings.server_options().get("statement_timeout", "0"))
    return statement_ms / 1000 + _COMMAND_TIMEOUT_MARGIN_S if statement_ms else None


def _idle_timeout_s(settings: DatabaseSettings) -> float | None:
    idle = settings.server_options().get("idle_in_transaction_session_timeout", "0")
    return duration_ms(idle) / 1000 or None
