"""The engine listeners that make every driver error a geosession error.

``handle_error`` translates what the driver raised (``errors.translate``); ``do_connect``
names the server when asyncpg cannot reach it. A lost connection is then told apart by
what the session was doing: a COMMIT in flight (the outcome is unknown), a transaction
left idle past the server's idle_in_transaction_session_timeout, or an asyncpg
command_timeout. Everything else about errors (the hierarchy, SQLSTATE classification,
messages) is in ``errors``.
"""

from __future__ import annotations

import contextlib
import re
import time
from functools import partial
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, TextClause, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.sql import visitors

from geosession.errors import (
    HSTORE_DICT_ADVICE,
    PLACEHOLDERS,
    AccessDenied,
    CommitOutcomeUnknown,
    ConnectionFailed,
    DatabaseError,
    GeoSessionError,
    IdleInTransactionTimeout,
    PostGISPlace,
    advice_for,
    capitalized,
    diagnostics,
    endpoint_of,
    first_line,
    translate,
)
from geosession.forks import was_cut_off


def install_error_translation(
    engine: Engine, *, idle_in_transaction_timeout: float | None = None
) -> None:
    """Makes every driver error raised through ``engine`` a geosession error.

    ``idle_in_transaction_timeout`` (seconds) is the server's setting: it tells a session
    the server ended for idling apart from other connection losses (see below).
    """
    event.listen(engine, "handle_error", _on_handle_error)
    event.listen(engine, "do_connect", _connect_translated(engine))
    event.listen(engine, "first_connect", partial(_find_postgis, engine))
    _watch_connection_losses(engine, idle_in_transaction_timeout)
    from geosession.failed_commits import refuse_commits_after_failures  # it reads our info

    refuse_commits_after_failures(engine)


_POSTGIS_SCHEMA = (
    "SELECT n.nspname::text FROM pg_extension e "
    "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'postgis'"
)
_postgis_places: WeakKeyDictionary[Engine, PostGISPlace] = WeakKeyDictionary()
"""Where each engine's database has PostGIS (:class:`~geosession.errors.PostGISPlace`)."""


def postgis_place(engine: Engine) -> PostGISPlace | None:
    """Where the engine's database has PostGIS, once the engine has connected."""
    return _postgis_places.get(engine)


def translate_for(
    engine: Engine, error: BaseException, *, connecting: bool = False, lost: bool = False
) -> GeoSessionError:
    """:func:`~geosession.errors.translate` for an error of a connection of ``engine``'s
    pool used directly (the ingest's psycopg connections): its server and PostGIS named.
    ``connecting``: the pool could not open one (its driver's error, as the pool gives it);
    ``lost``: the dialect judged the connection lost."""
    return translate(
        error,
        endpoint=endpoint_of(engine),
        postgis=postgis_place(engine),
        connecting=connecting,
        role=engine.url.username,
        is_disconnect=lost,
    )


def _find_postgis(engine: Engine, dbapi_connection: Any, record: Any) -> None:
    """Reads where the database has PostGIS, once, on the engine's first connection (its
    transaction rolled back); when that fails, errors keep their general advice. A
    connection the server ended meanwhile fails with the server's words, as a lost
    connection (it had opened: not a server out of reach): taken for one that cannot
    say, it went on to fail at the dialect's first statement as "the connection is
    closed", which no retry took for the server's doing."""
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_POSTGIS_SCHEMA)
            found = cursor.fetchone()
        finally:
            cursor.close()
        dbapi_connection.rollback()
    except Exception as error:
        if _disconnected(engine, error, dbapi_connection):
            raise translate_for(engine, error, lost=True) from error
        with contextlib.suppress(Exception):
            dbapi_connection.rollback()
        return  # a connection that cannot say is used all the same
    _postgis_places[engine] = PostGISPlace(found[0] if found else None)


def _disconnected(engine: Engine, error: Any, dbapi_connection: Any) -> bool:
    """Whether the driver's ``error`` ended the connection, as the dialect judges it."""
    dialect = engine.dialect
    return isinstance(error, dialect.loaded_dbapi.Error) and dialect.is_disconnect(
        error, dbapi_connection, None
    )


def _connect_translated(engine: Engine) -> Any:
    """asyncpg raises plain OSError / TimeoutError when it cannot connect; name the server.
    SQLAlchemy 2.0's asyncpg dialect also passes on the server's refusals (a password, a
    database, too many connections) as asyncpg's own errors, which no handle_error sees."""

    def do_connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except (OSError, TimeoutError) as error:
            reason = first_line(error) if str(error) else "no answer within connect_timeout"
            raise translate(
                ConnectionError(reason), endpoint=endpoint_of(engine), connecting=True
            ) from error
        except Exception as error:
            if not _asyncpg_server_error(error):
                raise
            raise translate(error, endpoint=endpoint_of(engine), connecting=True) from error

    return do_connect


def _asyncpg_server_error(error: Exception) -> bool:
    """An asyncpg error carrying the server's SQLSTATE, not one SQLAlchemy wrapped."""
    return type(error).__module__.startswith("asyncpg.") and bool(getattr(error, "sqlstate", None))


def _on_handle_error(context: ExceptionContext) -> GeoSessionError | None:
    if isinstance(context.original_exception, GeoSessionError):
        error = context.original_exception
        if context.execution_context is None and context.statement:  # a bind processor's
            error.reword(f"{error.message}; in {shortened(context.statement)}")  # (models)
        return error  # as it is, not wrapped in a StatementError
    if _raised_in_hstore_dumper(context.original_exception):
        return DatabaseError(
            f"A Python dict parameter could not be sent (to {endpoint_of(context.engine)}): "
            f"{context.original_exception}. {capitalized(HSTORE_DICT_ADVICE)}"
        )
    if context.is_pre_ping or not isinstance(context.sqlalchemy_exception, sa_exc.DBAPIError):
        return (
            None  # pre-ping decides about reconnecting itself; non-driver errors stay as they are
        )
    compiled = getattr(context.execution_context, "compiled", None)
    statement = getattr(compiled, "statement", None)  # Insert/Update know their table
    sql, start = context.statement, 0
    prefix = getattr(statement, "sql_prefix", None)  # db.explain's EXPLAIN (...) wrapper
    if isinstance(prefix, str) and sql is not None and sql.startswith(prefix):
        sql, start = sql[len(prefix) :], len(prefix)
    elif statement is not None and sql is not None:
        sql, start = _typed_part(statement, sql, context.original_exception) or (sql, 0)
    if getattr(statement, "table", None) is None:
        statement = None
    if not context.is_disconnect and _driver_lost(context):
        context.is_disconnect = True  # the pool then drops it, as it drops any lost one
    return translate(
        context.original_exception,
        endpoint=endpoint_of(context.engine),
        is_disconnect=context.is_disconnect,
        connecting=context.connection is None and context.statement is None,
        statement=sql if statement is None else statement,
        statement_start=start,
        postgis=postgis_place(context.engine) if context.engine else None,
        role=context.engine.url.username if context.engine else None,
    )


def _driver_lost(context: ExceptionContext) -> bool:
    """Whether the driver says its connection is lost where SQLAlchemy does not see it:
    psycopg's "connection socket closed" (its socket failed under it: psycopg leaves
    ``broken`` unset, by which SQLAlchemy judges), psycopg's ``broken``, psycopg2's
    ``closed`` of 2, asyncpg's ``is_closed()``; SQLAlchemy's async adapters wrap the
    driver's connection."""
    error = context.original_exception
    if type(error).__module__.split(".")[0] == "psycopg" and str(error) == _SOCKET_CLOSED:
        return True
    try:
        dbapi = context.connection.connection.dbapi_connection if context.connection else None
    except Exception:  # an invalidated or closed connection: nothing to ask
        return False
    driver = getattr(dbapi, "_connection", dbapi)
    closed = getattr(driver, "closed", False)
    is_closed = getattr(driver, "is_closed", None)
    return (
        getattr(driver, "broken", False) is True
        or (type(closed) is int and closed == 2)
        or (callable(is_closed) and is_closed() is True)
    )


_SOCKET_CLOSED = "connection socket closed"
"""psycopg's OperationalError when waiting on its socket failed (closed, reset)."""


def shortened(sql: str, limit: int = 100) -> str:
    """A statement on one line, cut to ``limit`` characters: where an error happened."""
    line = " ".join(sql.split())
    return line if len(line) <= limit else f"{line[: limit - 3]}..."


def _typed_part(statement: Any, sql: str, error: BaseException) -> tuple[str, int] | None:
    """The SQL a person typed (a ``text()`` without parameters: a stream's or an export's
    query, its ``where``) that the statement run wraps, and where it starts, when the
    server's error points into it or just past it: that position then counts from its
    first character (a syntax error in ``SELECT * FROM parcels WHERE`` is at its end, not
    at the wrapper's ")"). None when no such part is found before any placeholder."""
    diag = diagnostics(error)
    position = diag.position if diag is not None else None
    if position is None or isinstance(statement, TextClause):
        return None
    for element in visitors.iterate(statement):
        if not isinstance(element, TextClause) or element._bindparams:
            continue
        typed = element.text.replace("\\:", ":")
        sent = typed if typed in sql else typed.replace("%", "%%")  # pyformat's escape
        start = sql.find(sent)
        if start < 0 or PLACEHOLDERS.search(sql, 0, start) or sql.count(sent) > 1:
            continue
        after = sql[start + len(sent) :]
        end = start + len(typed) + len(after) - len(after.lstrip()) + 1  # the next token
        if start < position <= end:
            return typed, start
    return None


def _raised_in_hstore_dumper(error: BaseException) -> bool:
    """psycopg (3) sends a dict as hstore where the database has the extension, and its
    dumper fails on a value that is not text (AttributeError: 'int' object has no
    attribute 'encode'): the same mistake psycopg2 leaves to the server to report."""
    if not isinstance(error, AttributeError | TypeError):
        return False
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = traceback.tb_frame.f_globals.get("__name__") if traceback is not None else None
    return module == "psycopg.types.hstore"


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
    info = connection_info(conn)
    for key in (_COMMITTING, _LAST_DONE, _IDLE_GAP):
        info.pop(key, None)


def _on_rollback(conn: Connection) -> None:
    connection_info(conn).pop(_COMMITTING, None)


def _on_commit(conn: Connection) -> None:
    info = connection_info(conn)
    _note_idle_gap(info)
    info[_COMMITTING] = True


def _before_statement(conn: Connection, *_: Any) -> None:
    _note_idle_gap(connection_info(conn))


def _after_statement(conn: Connection, *_: Any) -> None:
    connection_info(conn)[_LAST_DONE] = time.monotonic()


def _note_idle_gap(info: dict[Any, Any]) -> None:
    last_done = info.get(_LAST_DONE)
    info[_IDLE_GAP] = time.monotonic() - last_done if last_done is not None else 0.0


def _refine_loss(context: ExceptionContext, *, idle_timeout: float | None) -> Any:
    if context.is_pre_ping or context.connection is None:
        return None
    info = connection_info(context.connection)
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
    said += first_line(context.original_exception)
    dbapi = getattr(getattr(context.connection, "connection", None), "dbapi_connection", None)
    if was_cut_off(dbapi):  # nothing it sent reached the server, a COMMIT included
        return ConnectionFailed(
            "This session's connection belongs to the process this one was forked from: "
            f"it was open at the fork, and a forked process cannot use it ({said}). Open "
            "sessions in the child (db.session() connects afresh there)",
            sqlstate=error.sqlstate,
        )
    if committing and not _NEVER_SENT.search(said):
        rerun = "async_run_transaction" if context.dialect.is_async else "run_transaction"
        return _commit_outcome_unknown(error, said, idle if idled_out else None, rerun)
    if idled_out:
        return IdleInTransactionTimeout(
            f"The server ended the session: it sat idle in a transaction for {idle:.1f}s, "
            f"longer than idle_in_transaction_session_timeout={idle_timeout:g}s ({said}). "
            + advice_for("25P03"),
            sqlstate="25P03",
        )
    return error


def connection_info(conn: Connection) -> dict[Any, Any]:
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


_NEVER_SENT = re.compile(
    r"cannot call [\w.]+\(\): the underlying connection is closed|the connection is closed$"
)
"""The driver's refusal to send anything, a COMMIT included, on a connection it already
knew was lost (asyncpg's, psycopg's): nothing was committed, so the loss is an ordinary
one, which a rerun may repeat."""


def _commit_outcome_unknown(
    error: ConnectionFailed, said: str, idle: float | None, rerun: str
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
        f"unique keys) can say so with {rerun}(..., idempotent=True)",
        sqlstate=error.sqlstate,
    )
