"""One exception hierarchy for everything a geosession user can run into.

Every class says whether retrying the whole unit of work is safe (``transient``), keeps
the driver's error as ``__cause__`` and carries a message that says what happened,
where, and what to do. Errors from psycopg, psycopg2 and asyncpg are classified by
SQLSTATE in one table (``_BY_SQLSTATE``), by PostGIS's message where PostGIS reuses a
generic code, and by the driver's disconnect signal where there is no code at all.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext


class GeoSessionError(Exception):
    """Root of every error geosession raises."""

    transient: bool = False
    """True when rerunning the whole unit of work on a fresh connection may succeed."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


class ConfigurationError(GeoSessionError):
    """A setting is missing or invalid, or the environment lacks something required."""


class PostGISNotInstalled(ConfigurationError):
    """The database has no ``postgis`` extension."""


class DatabaseError(GeoSessionError):
    """The server rejected a statement for a reason no narrower class describes."""


class IntegrityViolation(DatabaseError):
    """A constraint (primary key, unique, foreign key, not-null, check) was violated."""


class ConnectionFailed(DatabaseError):
    """The server could not be reached, or the connection was lost."""

    transient = True


class AccessDenied(ConnectionFailed):
    """The server refused the login (bad password, unknown role or database)."""

    transient = False


class CommitOutcomeUnknown(ConnectionFailed):
    """The connection was lost while COMMIT was in flight: it may or may not have applied."""

    transient = False


class PoolExhausted(GeoSessionError):
    """No pooled connection became free within ``pool_timeout``."""

    transient = True


class QueryTimeout(DatabaseError):
    """A statement ran longer than ``statement_timeout`` (or was cancelled)."""


class LockTimeout(DatabaseError):
    """A lock could not be acquired within ``lock_timeout`` (or NOWAIT)."""

    transient = True


class SerializationConflict(DatabaseError):
    """A SERIALIZABLE or REPEATABLE READ transaction conflicted with a concurrent one."""

    transient = True


class DeadlockDetected(DatabaseError):
    """The server broke a deadlock by aborting this transaction."""

    transient = True


class IdleInTransactionTimeout(ConnectionFailed):
    """The server ended a session left idle inside a transaction for too long."""


class InvalidGeometry(DatabaseError):
    """A geometry is unparsable, empty, of the wrong type or dimension, or invalid."""


class SRIDMismatch(InvalidGeometry):
    """A geometry's SRID differs from the SRID of the column it is written to."""

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        column: str | None = None,
        geometry_srid: int | None = None,
        column_srid: int | None = None,
    ) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.column = column
        self.geometry_srid = geometry_srid
        self.column_srid = column_srid


@dataclass(frozen=True)
class Diagnostics:
    """What the server said about an error, read the same way from every driver."""

    sqlstate: str | None
    message: str
    detail: str | None = None
    hint: str | None = None
    table: str | None = None
    column: str | None = None
    constraint: str | None = None


_ADVICE_RETRY = "retrying the whole transaction is safe; db.run_transaction does it for you"

_BY_SQLSTATE: dict[str, tuple[type[GeoSessionError], str]] = {
    "40001": (SerializationConflict, _ADVICE_RETRY),
    "40P01": (DeadlockDetected, _ADVICE_RETRY + "; taking locks in a consistent order avoids it"),
    "57014": (
        QueryTimeout,
        "raise statement_timeout for this work (db.transaction(statement_timeout=...)) or make "
        "the statement cheaper (db.explain shows whether the spatial index is used)",
    ),
    "55P03": (
        LockTimeout,
        "another transaction holds the lock; retry later, or find it with db.activity()",
    ),
    "25P03": (
        IdleInTransactionTimeout,
        "the transaction was left open longer than idle_in_transaction_session_timeout while "
        "the program did other work; commit or roll back promptly, and keep slow work (HTTP "
        "calls, file I/O) outside transactions (a slow consumer of db.stream: pages_by=)",
    ),
    "53300": (
        ConnectionFailed,
        "the server has no connection slots left: lower pool_size + max_overflow across your "
        "processes, or raise max_connections, or put PgBouncer in front",
    ),
    "28P01": (AccessDenied, "check the user name and the password (or password_file)"),
    "28000": (AccessDenied, "check pg_hba.conf and the user name"),
    "3D000": (AccessDenied, "create the database, or fix the database name in the settings"),
    "42501": (DatabaseError, "grant the privilege to this role, or connect as another"),
}
_BY_SQLSTATE_CLASS: dict[str, tuple[type[GeoSessionError], str]] = {
    "08": (ConnectionFailed, "the connection was lost; " + _ADVICE_RETRY),
    "57": (ConnectionFailed, "the server ended the connection; " + _ADVICE_RETRY),
    "23": (IntegrityViolation, "fix the data, or choose on_conflict= where the API offers it"),
}

_SRID_MISMATCH = re.compile(r"Geometry SRID \((-?\d+)\) does not match column SRID \((-?\d+)\)")
_INVALID_GEOMETRY = re.compile(
    r"does not match column type|has Z dimension|has M dimension|parse error|invalid geometry"
    r"|Invalid endian|Unknown WKB type|requires more points|must have at least|Invalid hex"
    r"|TopologyException|not closed|GEOS\w+\(\)|lwgeom",
    re.IGNORECASE,
)
_POSTGIS_MISSING = re.compile(
    r'type "(geometry|geography|box2d|raster)" does not exist|function st_\w+\(.*\) does not exist',
    re.IGNORECASE,
)
_INSERT_TABLE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|COPY)\s+([\w.\"]+)", re.IGNORECASE)


_LIBPQ_CONNECT_FAILURES = (  # libpq reports login failures without a SQLSTATE
    (re.compile(r'database "[^"]*" does not exist'), "3D000"),
    (re.compile(r"password authentication failed|role \"[^\"]*\" does not exist"), "28P01"),
    (re.compile(r"no pg_hba\.conf entry"), "28000"),
    (re.compile(r"too many (clients|connections)|remaining connection slots"), "53300"),
    (re.compile(r"the database system is (starting up|shutting down|in recovery)"), "57P03"),
)


def _inferred_sqlstate(message: str) -> str | None:
    return next(
        (code for pattern, code in _LIBPQ_CONNECT_FAILURES if pattern.search(message)), None
    )


def diagnostics(error: BaseException) -> Diagnostics | None:
    """Reads SQLSTATE and fields from a psycopg, psycopg2 or asyncpg error (or None)."""
    if isinstance(error, sa_exc.DBAPIError):
        error = error.orig if error.orig is not None else error
    native = error.__cause__ if type(error).__module__.startswith("sqlalchemy") else error
    native = native if native is not None else error
    diag = getattr(native, "diag", None)
    if diag is not None:  # psycopg 3 and psycopg2
        sqlstate = getattr(native, "sqlstate", None) or getattr(native, "pgcode", None)
        return Diagnostics(
            sqlstate=sqlstate,
            message=diag.message_primary or _first_line(native),
            detail=diag.message_detail,
            hint=diag.message_hint,
            table=diag.table_name,
            column=diag.column_name,
            constraint=diag.constraint_name,
        )
    sqlstate = getattr(native, "sqlstate", None)
    return Diagnostics(
        sqlstate=sqlstate,
        message=getattr(native, "message", None) or _first_line(native),
        detail=getattr(native, "detail", None),
        hint=getattr(native, "hint", None),
        table=getattr(native, "table_name", None),
        column=getattr(native, "column_name", None),
        constraint=getattr(native, "constraint_name", None),
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def classify(diag: Diagnostics, *, is_disconnect: bool) -> tuple[type[GeoSessionError], str]:
    """The error class and the advice for what the server (or the driver) reported."""
    state = diag.sqlstate or ""
    if _SRID_MISMATCH.search(diag.message):
        return SRIDMismatch, "transform the geometry (ST_Transform / shapely) or fix its SRID"
    if state in ("22023", "XX000", "22P02", "22000") and _INVALID_GEOMETRY.search(diag.message):
        return InvalidGeometry, "fix or drop the geometry; shapely.make_valid repairs many"
    if state in ("42704", "42883") and _POSTGIS_MISSING.search(diag.message):
        return PostGISNotInstalled, (
            "PostGIS is not installed in this database: connect as its owner or a superuser "
            "and run CREATE EXTENSION postgis;"
        )
    if state in _BY_SQLSTATE:
        return _BY_SQLSTATE[state]
    if state[:2] in _BY_SQLSTATE_CLASS:
        return _BY_SQLSTATE_CLASS[state[:2]]
    if is_disconnect:
        return ConnectionFailed, "the connection was lost; " + _ADVICE_RETRY
    return DatabaseError, "see the server's message above"


def translate(
    error: BaseException,
    *,
    endpoint: str,
    is_disconnect: bool = False,
    connecting: bool = False,
    statement: Any = None,
) -> GeoSessionError:
    """The geosession error for a driver error; the caller chains the original."""
    diag = diagnostics(error) or Diagnostics(sqlstate=None, message=_first_line(error))
    if connecting and diag.sqlstate is None:
        diag = replace(diag, sqlstate=_inferred_sqlstate(str(error)))
    if connecting and (diag.sqlstate is None or diag.sqlstate.startswith("08")):
        return ConnectionFailed(
            f"Could not connect to PostgreSQL at {endpoint}: {diag.message}. Check that the "
            "server is running and reachable, and host, port and connect_timeout in the settings",
            sqlstate=diag.sqlstate,
        )
    cls, advice = classify(diag, is_disconnect=is_disconnect)
    if cls is SRIDMismatch:
        return _srid_mismatch(diag, endpoint, statement, advice)
    where = _where(diag, endpoint, statement)
    return cls(
        f"{diag.message}{_detail(diag)} ({where}). {advice[:1].upper()}{advice[1:]}",
        sqlstate=diag.sqlstate,
    )


def _detail(diag: Diagnostics) -> str:
    parts = [
        f"{label}: {value}"
        for label, value in (("detail", diag.detail), ("hint", diag.hint))
        if value
    ]
    return f" [{'; '.join(parts)}]" if parts else ""


def _where(diag: Diagnostics, endpoint: str, statement: Any) -> str:
    table = diag.table or _statement_table(statement)
    parts = [f"on {endpoint}"]
    if table:
        parts.append(f"table {table}")
    if diag.column:
        parts.append(f"column {diag.column}")
    if diag.constraint:
        parts.append(f"constraint {diag.constraint}")
    return ", ".join(parts)


def _statement_table(statement: Any) -> str | None:
    table = getattr(statement, "table", None)
    if table is not None and hasattr(table, "fullname"):
        return str(table.fullname)
    match = _INSERT_TABLE.match(statement) if isinstance(statement, str) else None
    return match.group(1) if match else None


def _srid_mismatch(diag: Diagnostics, endpoint: str, statement: Any, advice: str) -> SRIDMismatch:
    match = _SRID_MISMATCH.search(diag.message)
    assert match is not None
    geometry_srid, column_srid = int(match.group(1)), int(match.group(2))
    table = _statement_table(statement)
    column = _geometry_column_with_srid(statement, column_srid)
    column_name = f"{table}.{column}" if table and column else column or "the geometry column"
    if not column and table:
        column_name = f"a geometry column of {table}"
    return SRIDMismatch(
        f"Geometry SRID {geometry_srid} does not match SRID {column_srid} of {column_name} "
        f"(on {endpoint}). {advice[:1].upper()}{advice[1:]}",
        sqlstate=diag.sqlstate,
        column=column,
        geometry_srid=geometry_srid,
        column_srid=column_srid,
    )


def _geometry_column_with_srid(statement: Any, srid: int) -> str | None:
    """Names the target column when the statement's table has one geometry column of that SRID."""
    table = getattr(statement, "table", None)
    columns = getattr(table, "columns", ())
    matches = [c.name for c in columns if getattr(c.type, "srid", None) == srid]
    return matches[0] if len(matches) == 1 else None


def endpoint_of(engine: Engine | None) -> str:
    """``host:port`` of an engine's server, for messages (never the password)."""
    if engine is None:
        return "the database server"
    url = engine.url
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}".rstrip("/")


def install_error_translation(
    engine: Engine, *, idle_in_transaction_timeout: float | None = None
) -> None:
    """Makes every driver error raised through ``engine`` a geosession error.

    ``idle_in_transaction_timeout`` (seconds) is the server's setting: it tells a session
    the server ended for idling apart from other connection losses (see below).
    """
    event.listen(engine, "handle_error", _on_handle_error)
    event.listen(engine, "do_connect", _connect_translated(engine))
    _watch_connection_losses(engine, idle_in_transaction_timeout)


def _connect_translated(engine: Engine) -> Any:
    """asyncpg raises plain OSError / TimeoutError when it cannot connect; name the server."""

    def do_connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except (OSError, TimeoutError) as error:
            reason = _first_line(error) if str(error) else "no answer within connect_timeout"
            raise translate(
                ConnectionError(reason), endpoint=endpoint_of(engine), connecting=True
            ) from error

    return do_connect


def _on_handle_error(context: ExceptionContext) -> GeoSessionError | None:
    if context.is_pre_ping or not isinstance(context.sqlalchemy_exception, sa_exc.DBAPIError):
        return (
            None  # pre-ping decides about reconnecting itself; non-driver errors stay as they are
        )
    compiled = getattr(context.execution_context, "compiled", None)
    statement = getattr(compiled, "statement", None)  # Insert/Update know their table
    if getattr(statement, "table", None) is None:
        statement = None
    return translate(
        context.original_exception,
        endpoint=endpoint_of(context.engine),
        is_disconnect=context.is_disconnect,
        connecting=context.connection is None and context.statement is None,
        statement=context.statement if statement is None else statement,
    )


# What a lost connection means. COMMIT goes out right after the ``commit`` event: losing
# the connection before its answer leaves the outcome unknown (CommitOutcomeUnknown).
# psycopg2 and asyncpg lose the server's 25P03 message when it closes the socket first,
# so a loss after the connection sat idle in a transaction for longer than the server's
# idle_in_transaction_session_timeout is named for what it must have been.
_COMMITTING = "geosession.committing"
_LAST_DONE = "geosession.last_statement_done"
_IDLE_GAP = "geosession.idle_before_operation"


def _watch_connection_losses(engine: Engine, idle_timeout: float | None) -> None:
    event.listen(engine, "begin", _on_begin)
    event.listen(engine, "rollback", _on_rollback)
    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "before_cursor_execute", _before_statement)
    event.listen(engine, "after_cursor_execute", _after_statement)
    event.listen(engine, "handle_error", partial(_refine_loss, idle_timeout=idle_timeout))
    if engine.dialect.driver == "asyncpg":
        engine.dialect.do_ping = _ping_within_command_timeout(engine.dialect.do_ping)  # type: ignore[method-assign]


def _ping_within_command_timeout(ping: Any) -> Any:
    """Pre-ping treats a pooled asyncpg connection that does not answer as dead.

    asyncpg raises a bare TimeoutError, which SQLAlchemy's pre-ping would pass to the
    caller; reporting the connection dead makes the pool replace it instead.
    """

    def do_ping(dbapi_connection: Any) -> bool:
        try:
            return bool(ping(dbapi_connection))
        except TimeoutError:
            return False

    return do_ping


def _on_begin(conn: Connection) -> None:
    info = _connection_info(conn)
    for key in (_COMMITTING, _LAST_DONE, _IDLE_GAP):
        info.pop(key, None)


def _on_rollback(conn: Connection) -> None:
    _connection_info(conn).pop(_COMMITTING, None)


def _on_commit(conn: Connection) -> None:
    info = _connection_info(conn)
    _note_idle_gap(info)
    info[_COMMITTING] = True


def _before_statement(conn: Connection, *_: Any) -> None:
    _note_idle_gap(_connection_info(conn))


def _after_statement(conn: Connection, *_: Any) -> None:
    _connection_info(conn)[_LAST_DONE] = time.monotonic()


def _note_idle_gap(info: dict[Any, Any]) -> None:
    last_done = info.get(_LAST_DONE)
    info[_IDLE_GAP] = time.monotonic() - last_done if last_done is not None else 0.0


def _refine_loss(context: ExceptionContext, *, idle_timeout: float | None) -> Any:
    if context.is_pre_ping or context.connection is None:
        return None
    info = _connection_info(context.connection)
    committing = info.pop(_COMMITTING, False)
    error = getattr(context, "chained_exception", None)  # set once a handler returned one
    if error is None and _is_command_timeout(context):
        context.is_disconnect = True  # the connection is out of step: drop it
        error = _command_timeout_error(context)
    if not isinstance(error, ConnectionFailed) or isinstance(
        error, AccessDenied | IdleInTransactionTimeout
    ):
        return error
    idle = info.get(_IDLE_GAP, 0.0)
    idled_out = bool(idle_timeout) and idle >= (idle_timeout or 0) and not _autocommit(context)
    said = f"on {endpoint_of(context.engine)}; the driver said: "
    said += _first_line(context.original_exception)
    if committing:
        return _commit_outcome_unknown(error, said, idle if idled_out else None)
    if idled_out:
        return IdleInTransactionTimeout(
            f"The server ended the session: it sat idle in a transaction for {idle:.1f}s, "
            f"longer than idle_in_transaction_session_timeout={idle_timeout:g}s ({said}). "
            + _BY_SQLSTATE["25P03"][1][:1].upper()
            + _BY_SQLSTATE["25P03"][1][1:],
            sqlstate="25P03",
        )
    return error


def _connection_info(conn: Connection) -> dict[Any, Any]:
    """The pooled connection's info dict; a throwaway one once the connection is gone, or
    during the engine's first connect (its ad-hoc connection has no info)."""
    if conn.invalidated or conn.closed:
        return {}
    try:
        return conn.info
    except (sa_exc.SQLAlchemyError, NotImplementedError):
        return {}


def _autocommit(context: ExceptionContext) -> bool:
    dbapi = getattr(getattr(context.connection, "connection", None), "dbapi_connection", None)
    return bool(getattr(dbapi, "autocommit", False))


def _is_command_timeout(context: ExceptionContext) -> bool:
    """asyncpg raises a bare TimeoutError when command_timeout passes without an answer."""
    return isinstance(context.original_exception, TimeoutError) and (
        context.dialect.driver == "asyncpg"
    )


def _command_timeout_error(context: ExceptionContext) -> ConnectionFailed:
    return ConnectionFailed(
        f"No answer from the server within command_timeout ({endpoint_of(context.engine)}): "
        "the network or the server does not respond, so the connection was dropped. "
        "Retrying the whole transaction on a fresh connection is safe (db.run_transaction "
        "does it); if the statement is merely slow, raise command_timeout above "
        "statement_timeout"
    )


def _commit_outcome_unknown(
    error: ConnectionFailed, said: str, idle: float | None
) -> CommitOutcomeUnknown:
    likely = (
        f" It had been idle for {idle:.1f}s, longer than idle_in_transaction_session_timeout, "
        "so the server most likely ended it before COMMIT arrived."
        if idle is not None
        else ""
    )
    return CommitOutcomeUnknown(
        f"The connection was lost while COMMIT was in flight: the transaction may or may not "
        f"have been committed ({said}).{likely} Check whether its effects are in "
        "the database before running it again; work that is safe to repeat (upserts, "
        "unique keys) can say so with run_transaction(..., idempotent=True)",
        sqlstate=error.sqlstate,
    )


__all__ = [
    "AccessDenied",
    "CommitOutcomeUnknown",
    "ConfigurationError",
    "ConnectionFailed",
    "DatabaseError",
    "DeadlockDetected",
    "GeoSessionError",
    "IdleInTransactionTimeout",
    "IntegrityViolation",
    "InvalidGeometry",
    "LockTimeout",
    "PoolExhausted",
    "PostGISNotInstalled",
    "QueryTimeout",
    "SRIDMismatch",
    "SerializationConflict",
]
