"""A COMMIT after a failed statement is refused, not turned into a silent rollback.

After a statement fails, PostgreSQL aborts the transaction: whatever follows is refused,
and a COMMIT is answered as a ROLLBACK, which no driver reports as an error. Code that
catches the error and goes on (a "best effort" insert in ``try``/``except``) then saw its
transaction "committed" with nothing in it, and ``run_transaction`` neither raised nor
reran after a serialization failure caught so (increments lost under load). The
engine's ``commit`` event now raises instead, with the failed statement's own error (its
class, so that ``run_transaction`` reruns a serialization failure as any other).

psycopg and psycopg2 say whether their transaction failed; asyncpg keeps it to itself,
so for it a server error seen in the transaction (``handle_error``) stands for it until
the transaction, or the savepoint it came in, is rolled back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc

from geosession.engine_errors import connection_info
from geosession.errors import DatabaseError, GeoSessionError

_FAILED = "geosession.failed_statement"
_IN_ERROR = 3
"""libpq's PQTRANS_INERROR, as psycopg (TransactionStatus) and psycopg2 number it."""


def refuse_commits_after_failures(engine: Engine) -> None:
    """Installs the check on ``engine`` (after its error translation: the error kept is
    geosession's)."""
    event.listen(engine, "handle_error", _remember)
    for forgets in ("begin", "rollback", "rollback_savepoint"):
        event.listen(engine, forgets, _forget)
    event.listen(engine, "commit", _refuse)


def _remember(context: Any) -> None:
    error = getattr(context, "chained_exception", None) or context.sqlalchemy_exception
    connection = context.connection
    if context.is_pre_ping or context.is_disconnect or connection is None:
        return
    autocommit = connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    if isinstance(error, GeoSessionError) and error.sqlstate and not autocommit:
        connection_info(connection)[_FAILED] = error


def _forget(conn: Connection, *_: Any) -> None:
    connection_info(conn).pop(_FAILED, None)


def _refuse(conn: Connection) -> None:
    failed = connection_info(conn).pop(_FAILED, None)
    status = _status(conn)
    if status is None and failed is None:  # asyncpg, and no server error seen
        return
    if status is not None and status != _IN_ERROR:
        return
    raise _refusal(failed) from failed


def _refusal(failed: GeoSessionError | None) -> GeoSessionError:
    """The failed statement's error, said to have ended the transaction (nothing is
    committed); its class and SQLSTATE kept."""
    what = f"({failed.message.rstrip('.')})" if failed is not None else "(its error was not seen)"
    message = (
        "Nothing was committed: a statement of this transaction failed and its error was "
        f"caught and passed over {what}, so PostgreSQL would have answered COMMIT with a "
        "ROLLBACK. Let the error end the transaction, or run the statement that may fail "
        "in a savepoint (with s.begin_nested(): ...), whose rollback keeps the rest"
    )
    if failed is None:
        return DatabaseError(message, sqlstate="25P02")
    refusal = type(failed)(message, sqlstate=failed.sqlstate)
    refusal.transient = failed.transient
    return refusal


def _status(conn: Connection) -> int | None:
    """The driver's transaction status (libpq's numbers), where it tells it."""
    try:
        driver = conn.connection.driver_connection
    except (sa_exc.SQLAlchemyError, AttributeError):
        return None
    info = getattr(driver, "info", None)  # psycopg 3, sync or async
    if info is not None and hasattr(info, "transaction_status"):
        return int(info.transaction_status)
    status = getattr(driver, "get_transaction_status", None)  # psycopg2
    return int(status()) if callable(status) else None
