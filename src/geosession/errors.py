"""One exception hierarchy for everything a geosession user can run into.

Every class says whether retrying the whole unit of work is safe (``transient``), keeps
the driver's error as ``__cause__`` and carries a message that says what happened,
where, and what to do. Errors from psycopg, psycopg2 and asyncpg are classified by
SQLSTATE in one table (``_BY_SQLSTATE``), by PostGIS's message where PostGIS reuses a
generic code (:mod:`geosession.postgis_errors`), and by the driver's disconnect signal
where there is no code at all.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine, Sequence
from sqlalchemy import exc as sa_exc


class GeoSessionError(Exception):
    """Root of every error geosession raises."""

    transient: bool = False
    """True when rerunning the whole unit of work on a fresh connection may succeed."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate

    def reword(self, message: str) -> None:
        """Says ``message`` instead, in str() too: a caller adds where it happened and how
        to go on."""
        self.message = message
        self.args = (message,)


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


class ExportFailed(GeoSessionError):
    """GDAL could not write an export's file (a value or name the format cannot hold, or
    the file system failed); the file is left as it was."""


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


class SchemaChanged(DatabaseError):
    """A statement the connection prepared before a table it reads changed (a migration
    while the application ran): the server refused its cached plan."""

    transient = True


class IdleInTransactionTimeout(ConnectionFailed):
    """The server ended a session left idle inside a transaction for too long."""


class InvalidGeometry(DatabaseError):
    """A geometry is unparsable, empty, of the wrong type or dimension, or invalid; or a read
    met one shapely cannot hold (a curve, a TIN)."""


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
    position: int | None = None
    """Where in the statement the server found the error (1-based character)."""


@dataclass(frozen=True)
class PostGISPlace:
    """Where a database has the postgis extension, as an engine read it when it first
    connected (:mod:`geosession.engine_errors`): errors that could mean PostGIS is missing
    are then told apart from a function called with arguments it does not take."""

    schema: str | None
    """The extension's schema; None where the database has no PostGIS."""


_ADVICE_RETRY = "retrying the whole transaction is safe; db.run_transaction does it for you"
FUNCTION_ARGUMENTS_ADVICE = (
    "check the function's name and the number and types of its arguments, by which "
    "PostgreSQL chooses it: a cast may be missing (::geometry, ::geography, ::text)"
)

_PRIVILEGE = "42501"
_ABORTED = "25P02"  # in_failed_sql_transaction
"""insufficient_privilege: a privilege not granted, a policy's refusal, not the owner."""
_SEQUENCE_REFUSED = re.compile(r"permission denied for sequence (.+)")
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")
_BY_SQLSTATE: dict[str, tuple[type[GeoSessionError], str]] = {
    _ABORTED: (
        DatabaseError,
        "an earlier statement of this transaction failed (its error was raised then, and "
        "caught and passed over), so the server refuses the rest: roll back (leave the "
        "with block) and run the work again; to go on after a statement that may fail, "
        "run that one in a savepoint (with s.begin_nested(): ...)",
    ),
    "40001": (SerializationConflict, _ADVICE_RETRY),
    "40P01": (DeadlockDetected, _ADVICE_RETRY + "; taking locks in a consistent order avoids it"),
    "57014": (
        QueryTimeout,
        "raise statement_timeout for this work (the statement_timeout= of db.transaction, "
        "db.stream, db.export or db.explain; --statement-timeout of export and explain) or "
        "make the statement cheaper (db.explain shows whether the spatial index is used)",
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
    "57P03": (
        ConnectionFailed,
        "the server takes no connections until it is ready (it is starting up, shutting "
        "down or recovering; a standby without hot_standby never is): try again in a "
        "moment (an ingest retries for a while by itself)",
    ),
    "22001": (
        DatabaseError,
        "the text is longer than its column takes (varchar(n), char(n)): widen the column "
        "(ALTER TABLE ... ALTER COLUMN ... TYPE text) or shorten the value",
    ),
    "22003": (
        DatabaseError,
        "the number is beyond what its type holds: give the column a wider type (bigint, "
        "numeric, double precision), or check the value",
    ),
    "22012": (DatabaseError, "guard the divisor: x / NULLIF(y, 0) gives NULL instead"),
    "22P02": (
        DatabaseError,
        "the text is no value of that type: check the value, and the column or cast it goes to",
    ),
    **dict.fromkeys(
        ("22007", "22008"),
        (
            DatabaseError,
            "check the date or time: ISO 8601 (2024-03-31, 2024-03-31T14:05:00Z) reads the "
            "same under every DateStyle",
        ),
    ),
    "53100": (
        DatabaseError,
        "the server's disk (or the tablespace's) is full: free space there, or move the "
        "table to another tablespace (ALTER TABLE ... SET TABLESPACE), then run it again",
    ),
    "53200": (
        DatabaseError,
        "the server ran out of memory: lower work_mem (maintenance_work_mem for an index "
        "build) for this work, do it in smaller parts, or give the server more memory",
    ),
    "28P01": (AccessDenied, "check the user name and the password (or password_file)"),
    "28000": (AccessDenied, "check pg_hba.conf and the user name"),
    "3D000": (AccessDenied, "create the database, or fix the database name in the settings"),
    _PRIVILEGE: (DatabaseError, "grant the privilege to this role, or connect as another"),
    "23505": (
        IntegrityViolation,
        "the key is taken: fix the data, or skip or update such rows (db.ingest's "
        "on_conflict='ignore' or 'update'; INSERT ... ON CONFLICT in SQL)",
    ),
    "23503": (
        IntegrityViolation,
        "the referenced row is missing (or still referenced, for a delete): write the rows "
        "it refers to first, or fix the reference",
    ),
    "23502": (IntegrityViolation, "give the column a value, or the table a DEFAULT for it"),
    "23514": (IntegrityViolation, "fix the data to meet the named CHECK constraint"),
    "23P01": (
        IntegrityViolation,
        "the row conflicts with one already there under the exclusion constraint (say, "
        "overlapping geometries): fix the data, or skip such rows (db.ingest's "
        "on_conflict='ignore'; INSERT ... ON CONFLICT DO NOTHING in SQL)",
    ),
    "25006": (
        DatabaseError,
        "this transaction only reads: it was opened with read_only=True or replica=True "
        "(a replica is a hot standby), or the server sets default_transaction_read_only; "
        "write in db.transaction() on the primary",
    ),
    "42P01": (
        DatabaseError,
        "check the table's name and schema: unquoted names are lower-cased (a table made as "
        '"Parcels" is written in double quotes), and search_path decides the schema of an '
        "unqualified name",
    ),
    "42703": (
        DatabaseError,
        'check the column\'s name: unquoted names are lower-cased ("Name" keeps its case in '
        "double quotes)",
    ),
    "42601": (DatabaseError, "fix the SQL where the server points"),
    "42P02": (
        DatabaseError,
        "write placeholders as :name in SQL text and pass their values (params=, or "
        "--param NAME=VALUE on the command line); $1 and %s are the driver's, not SQLAlchemy's",
    ),
    "42883": (DatabaseError, FUNCTION_ARGUMENTS_ADVICE),
}
_BY_SQLSTATE_AND_MESSAGE: tuple[tuple[str, str, type[GeoSessionError], str], ...] = (
    (
        "42704",
        "unrecognized configuration parameter",
        DatabaseError,
        "the server has no setting of that name: check its spelling (SHOW ALL lists the "
        "server's); an extension's (postgis.gdal_enabled_drivers) exists once the extension "
        "is loaded, and one of the application's own needs a dot (app.tenant)",
    ),
    (
        "54000",
        "index row size",
        DatabaseError,
        "a value is too large for a B-tree index entry (about a third of a page): index a "
        "hash of it instead (an expression index on md5(column), or USING hash), or leave "
        "the column out of the index",
    ),
    (
        "08P01",
        "query_wait_timeout",  # PgBouncer's words, as it closes the client's connection
        ConnectionFailed,
        "PgBouncer found no free server connection for this client within its "
        "query_wait_timeout: its pool for this database and user (default_pool_size) was "
        "busy all that time, and it closed the connection. Shorten the transactions that "
        "hold them, or raise default_pool_size (within the server's max_connections) or "
        "query_wait_timeout in pgbouncer.ini; " + _ADVICE_RETRY,
    ),
    (
        "57014",
        "user request",  # not statement_timeout
        QueryTimeout,
        "the statement was cancelled: by pg_cancel_backend from another session, or by the "
        "client itself (Ctrl-C); run it again if that was not meant",
    ),
    (
        "28000",
        "no encryption",
        AccessDenied,
        "the server takes this user only over TLS: set sslmode (require, or verify-full "
        "with sslrootcert to check whose server it is)",
    ),
    (
        _PRIVILEGE,
        "row-level security policy",
        DatabaseError,
        "the table's row-level security policies do not let this role write that row (a "
        "policy's WITH CHECK): check the row's values, and the settings the policies read "
        "for the transaction (db.transaction(settings={'app.tenant': ...}))",
    ),
    (
        _PRIVILEGE,
        "must be owner of",
        DatabaseError,
        "only the object's owner (or a member of the role that owns it, or a superuser) may "
        "do that: run it as that role, or have the owner run it",
    ),
    (
        "0A000",
        "cached plan must not change result type",
        SchemaChanged,
        "a table the statement reads changed since this connection prepared it (a column "
        "added, dropped or retyped while the application ran; asyncpg prepares every "
        "statement); its prepared statements are dropped now, so running it again works: "
        + _ADVICE_RETRY,
    ),
)
"""Codes that mean different things by their message: (SQLSTATE, a fragment of the
message, class, advice)."""
_BY_SQLSTATE_CLASS: dict[str, tuple[type[GeoSessionError], str]] = {
    "08": (ConnectionFailed, "the connection was lost; " + _ADVICE_RETRY),
    "57": (ConnectionFailed, "the server ended the connection; " + _ADVICE_RETRY),
    "23": (IntegrityViolation, "fix the data to meet the named constraint"),
    "22": (DatabaseError, "a value does not fit its type or the operation: check the value"),
}

PLACEHOLDERS = re.compile(r"%\(|%s|\$\d")
"""Placeholders: where they are, the server's text differs from ours, and so its positions."""
_SHOWN = 40
"""Characters of the statement shown from where the server found the error."""
_BEYOND_DATETIME = re.compile(
    r"^(date|timestamp) too (large|small) \((after|before) year|^time not supported by Python"
)
"""psycopg 3's words for a date or time out of Python's range (infinity included)."""
_UNSENDABLE = re.compile(
    r"(?:cannot|can't) adapt type '(?P<psycopg>\w+)'"  # psycopg, psycopg2
    r"|query argument (?P<arg>\$\d+): .*\(expected \w+, got (?P<asyncpg>\w+)\)"  # asyncpg
)
HSTORE_DICT_ADVICE = (
    "a Python dict parameter was sent as hstore (SQLAlchemy does so where the database has "
    "the hstore extension), and hstore holds text only: give the parameter a type, "
    "bindparam(name, value, type_=JSONB) for JSON, or text values"
)
_HSTORE_DICT = re.compile(r"function hstore\(text\[\], (?!text\[\])[\w ]+\[\]\) does not exist")
"""A dict of other than text values that SQLAlchemy's psycopg dialects sent as hstore."""
_MISSING_RELATION = re.compile(r'relation "([^"]+)" does not exist')
_INSERT_TABLE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|COPY)\s+([\w.\"]+)", re.IGNORECASE)


_LIBPQ_CONNECT_FAILURES = (  # libpq reports login failures without a SQLSTATE
    (re.compile(r'database "[^"]*" does not exist'), "3D000"),
    (re.compile(r"password authentication failed|role \"[^\"]*\" does not exist"), "28P01"),
    (re.compile(r"no pg_hba\.conf entry|pg_hba\.conf rejects connection"), "28000"),
    (re.compile(r"certificate authentication failed|requires a valid client certificate"), "28000"),
    (re.compile(r"too many (clients|connections)|remaining connection slots"), "53300"),
    (  # a restart, a crash's recovery, a standby without hot_standby
        re.compile(
            r"the database system is (starting up|shutting down|in recovery"
            r"|not (yet )?accepting connections)"
        ),
        "57P03",
    ),
)


_LIBPQ_REFUSED = re.compile(
    r'invalid (?:connection option|port number|integer value|[\w ]+ value)\b|missing "=" after'
    r"|invalid URI|bad value for \w+:"
)
"""libpq's words for a connection setting it refuses, before it tries any server."""


_SERVER_ENDED_IT = re.compile(
    r"terminating connection (?:due to (administrator command)|because of crash)"
)
"""The server's words on ending a connection, which asyncpg passes on in an error of its
own (08003, "connection was closed in the middle of operation: ..."): the server's doing
(57P01/57P02), not a server out of reach nor a network's loss."""
_LOST_STATES = (None, "08003", "08006")
"""A lost connection's states (or none), where those words say the server ended it."""


_TLS_REFUSED = re.compile(
    r"certificate verify failed|does not match host name|hostname mismatch", re.IGNORECASE
)
"""The client refused the server's certificate (libpq's words, or Python's ssl module's)."""


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
            message=diag.message_primary or first_line(native),
            detail=diag.message_detail,
            hint=diag.message_hint,
            table=diag.table_name,
            column=diag.column_name,
            constraint=diag.constraint_name,
            position=_position(diag.statement_position),
        )
    sqlstate = getattr(native, "sqlstate", None)
    return Diagnostics(
        sqlstate=sqlstate,
        message=getattr(native, "message", None) or first_line(native),
        detail=getattr(native, "detail", None),
        hint=getattr(native, "hint", None),
        table=getattr(native, "table_name", None),
        column=getattr(native, "column_name", None),
        constraint=getattr(native, "constraint_name", None),
        position=_position(getattr(native, "position", None)),
    )


def _position(value: Any) -> int | None:
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its class name when it has none)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def advice_for(sqlstate: str) -> str:
    """What to do about an error of this SQLSTATE, as a sentence."""
    return capitalized(_BY_SQLSTATE[sqlstate][1])


def without_retry_advice(message: str) -> str:
    """``message`` without the advice to retry the transaction, for work that cannot be
    retried that way (a cursor's read) or that retried itself already."""
    for advice in ("; " + _ADVICE_RETRY, ". " + capitalized(_ADVICE_RETRY)):
        message = message.replace(advice, "")
    return message


def refuse_unknown_options(given: Iterable[str], known: Collection[str], call: str) -> None:
    """Raises ConfigurationError for keywords that are no option of ``call``, naming the
    option each resembles and the options there are."""
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    named = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(known), n=1)
        named.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise ConfigurationError(
        f"{call} takes no option {', '.join(named)}; its options are {', '.join(known)}"
    )


def capitalized(advice: str) -> str:
    """Advice as a sentence of its own."""
    return advice[:1].upper() + advice[1:]


def classify(
    diag: Diagnostics,
    *,
    is_disconnect: bool,
    postgis: PostGISPlace | None = None,
    role: str | None = None,
) -> tuple[type[GeoSessionError], str]:
    """The error class and the advice for what the server (or the driver) reported;
    ``postgis``: where the database has PostGIS, if known; ``role``: the user connected."""
    from geosession import postgis_errors  # it raises these errors: imported late

    state = diag.sqlstate or ""
    srid_advice = postgis_errors.srid_advice(diag.message)
    if srid_advice is not None:
        return srid_advice
    geometry_advice = postgis_errors.geometry_advice(state, diag.message)
    if geometry_advice is not None:
        return InvalidGeometry, geometry_advice
    missing = _missing_type_advice(diag.message, postgis) if state in _MISSING_STATES else None
    if missing is not None:
        return missing
    coded = _by_sqlstate(state, diag.message, role)
    if coded is not None:
        return coded
    if is_disconnect:
        return ConnectionFailed, "the connection was lost; " + _ADVICE_RETRY
    if not state:  # the driver refused the call, or its result: nothing from the server
        return DatabaseError, _driver_advice(diag.message)
    return DatabaseError, "see the server's message above"


def _by_sqlstate(
    state: str, message: str, role: str | None
) -> tuple[type[GeoSessionError], str] | None:
    """The class and advice the SQLSTATE gives (with the message, for codes of several
    meanings), if any."""
    for code, fragment, kind, advice in _BY_SQLSTATE_AND_MESSAGE:
        if state == code and fragment in message:
            return kind, advice
    if state == _PRIVILEGE and role:
        return DatabaseError, _privilege_advice(message, role)
    return _BY_SQLSTATE.get(state) or _BY_SQLSTATE_CLASS.get(state[:2])


def _privilege_advice(message: str, role: str) -> str:
    """What to grant ``role``: USAGE where a sequence refused it (nextval, a serial
    column's default), which the server's message does not say."""
    to = f"role {role}, the user this database connects as (or to the role a SET ROLE took)"
    sequence = _SEQUENCE_REFUSED.search(message)
    if sequence is None:
        return f"grant the privilege to {to}, or connect as another"
    return (
        f"grant USAGE on the sequence to {to}: GRANT USAGE ON SEQUENCE "
        f"{_sql_name(sequence[1].strip())} TO {_sql_name(role)}; or connect as another"
    )


def _sql_name(name: str) -> str:
    """``name`` as SQL writes it: bare where that reads back the same, else quoted."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _driver_advice(message: str) -> str:
    if _BEYOND_DATETIME.search(message):
        return (
            "the result holds a date or time Python's datetime cannot: PostgreSQL's infinity "
            "or -infinity, a year before 1 or after 9999, or 24:00:00 (psycopg 3 reads none; "
            "psycopg2 and asyncpg read infinity as datetime.max). Query the column as text "
            "(col::text), or leave those values out in SQL (WHERE isfinite(col))"
        )
    return "see the driver's message above"


_MISSING_STATES = ("42704", "42883", "42P01")
"""undefined_object (a type), undefined_function, undefined_table."""


def _missing_type_advice(
    message: str, postgis: PostGISPlace | None
) -> tuple[type[GeoSessionError], str] | None:
    """A type or function the server lacks: PostGIS's, or hstore() of a dict that
    SQLAlchemy sent as hstore."""
    from geosession import postgis_errors  # it raises these errors: imported late

    found = postgis_errors.missing_advice(message, postgis)
    if found is not None:
        return found
    if _HSTORE_DICT.search(message):
        return DatabaseError, HSTORE_DICT_ADVICE
    return None


def translate(
    error: BaseException,
    *,
    endpoint: str,
    is_disconnect: bool = False,
    connecting: bool = False,
    statement: Any = None,
    statement_start: int = 0,
    postgis: PostGISPlace | None = None,
    role: str | None = None,
) -> GeoSessionError:
    """The geosession error for a driver error; the caller chains the original.

    ``statement_start``: characters that geosession put before the caller's ``statement``
    in the SQL it ran (``db.explain``'s ``EXPLAIN (...)``), so that a position the server
    reports counts from the caller's first character. ``role``: the user the database
    connects as, named in the advice for a privilege not granted.
    """
    diag = diagnostics(error) or Diagnostics(sqlstate=None, message=first_line(error))
    if statement_start and diag.position:
        position = diag.position - statement_start
        diag = replace(diag, position=position if position > 0 else None)
        if _past_the_end(diag, statement) and diag.message.startswith("syntax error at or near"):
            diag = replace(diag, message="syntax error at end of input")  # the wrapper's token
    if connecting and diag.sqlstate is None:
        diag = replace(diag, sqlstate=_inferred_sqlstate(str(error)))
    if diag.sqlstate in _LOST_STATES and (ended := _SERVER_ENDED_IT.search(diag.message)):
        diag = replace(diag, sqlstate="57P01" if ended.group(1) else "57P02")
    failed = _connect_failure(diag, endpoint) if connecting else None
    if failed is not None:
        return failed
    unsendable = _UNSENDABLE.search(diag.message)  # the driver's own words, not the server's
    if unsendable is not None:
        return _unsendable(unsendable, endpoint)
    cls, advice = classify(diag, is_disconnect=is_disconnect, postgis=postgis, role=role)
    if diag.sqlstate == "42P01":
        advice = _missing_sequence_advice(diag.message, statement) or advice
    if cls is SRIDMismatch:
        from geosession import postgis_errors  # it raises these errors: imported late

        table = _statement_table(statement)
        mismatch = postgis_errors.srid_mismatch(diag, endpoint, statement, table, advice)
        if mismatch is not None:
            return mismatch
    where = _where(diag, endpoint, statement)
    return cls(
        f"{diag.message}{_detail(diag)} ({where}). {advice[:1].upper()}{advice[1:]}",
        sqlstate=diag.sqlstate,
    )


def _connect_failure(diag: Diagnostics, endpoint: str) -> GeoSessionError | None:
    """The error for a connection that did not open, where its words say why (PgBouncer's
    refusal of settings, a certificate, a setting libpq refuses, a server out of reach);
    None for the server's own refusals (a login, a database), classified as any error."""
    if "unsupported startup parameter" in diag.message:
        refused = ConnectionFailed(
            f"Could not connect to {endpoint}: {diag.message}. That is PgBouncer, which "
            "refuses server settings at start-up: set pgbouncer=True (GEOSESSION_PGBOUNCER="
            "true) so that they are set in each transaction instead",
            sqlstate=diag.sqlstate,
        )
        refused.transient = False  # a setting to change: trying again fails the same way
        return refused
    if _TLS_REFUSED.search(diag.message):
        refused = ConnectionFailed(
            f"Could not connect to PostgreSQL at {endpoint}: {diag.message}. The server's "
            "certificate did not pass the check sslmode asks for: sslrootcert must hold the "
            "authority that signed it, and with verify-full it must name the host connected to",
            sqlstate=diag.sqlstate,
        )
        refused.transient = False  # the same certificate fails the same check again
        return refused
    if diag.sqlstate is None and _LIBPQ_REFUSED.search(diag.message):
        return _refused_setting(diag.message, endpoint)
    if diag.sqlstate is None or diag.sqlstate.startswith("08"):
        return ConnectionFailed(
            f"Could not connect to PostgreSQL at {endpoint}: {diag.message}. Check that the "
            "server is running and reachable, and host, port and connect_timeout in the settings",
            sqlstate=diag.sqlstate,
        )
    return None


def _refused_setting(message: str, endpoint: str) -> ConfigurationError:
    """libpq refused a connection setting before it tried the server: no retry can help."""
    option = re.search(r'connection option "([^"]+)"', message)
    server_side = (
        f". {option.group(1)} is no libpq setting: a server setting goes in server_settings "
        "(GEOSESSION_SERVER_SETTINGS='{\"" + option.group(1) + "\": ...}'), or in the URL "
        f"as options=-c {option.group(1)}=..."
        if option and "integer value" not in message
        else ""
    )
    refused = message.removeprefix("connection is bad: ")
    return ConfigurationError(
        f"Could not connect to {endpoint}: {refused}: the URL (GEOSESSION_DATABASE_URL) or "
        f"the connection settings give libpq a value it refuses; fix it there{server_side}"
    )


def _unsendable(match: re.Match[str], endpoint: str) -> DatabaseError:
    """The driver could not encode a parameter: nothing reached the server."""
    from geosession.geometry import TYPE_NAMES  # geometry raises errors: imported late

    kind = match.group("psycopg") or match.group("asyncpg")
    argument = f" ({match.group('arg')})" if match.group("arg") else ""
    if kind in TYPE_NAMES:
        return DatabaseError(
            f"A shapely {kind} cannot be sent as a query parameter{argument} (to {endpoint}): "
            "drivers send no shapely objects. Wrap it: geosession.geometry.to_element(shape, "
            "srid=...) for a func argument or a column GeoAlchemy2 declared "
            "(to_geography_element for a geography column; a geosession.models."
            "geometry_column takes shapely as it is); in text() SQL pass to_element(shape, "
            "srid=...).desc, hex EWKB that PostGIS reads wherever a geometry is expected"
        )
    if kind in ("WKBElement", "WKTElement"):
        return DatabaseError(
            f"A GeoAlchemy2 {kind} cannot be sent as a query parameter{argument} (to "
            f"{endpoint}): in text() SQL the parameter has no type to convert it. Pass "
            "element.desc (its hex EWKB or WKT), or declare the parameter: "
            "text(...).bindparams(bindparam(name, type_=Geometry(srid=...)))"
        )
    return DatabaseError(
        f"A Python {kind} cannot be sent as a query parameter{argument} (to {endpoint}): the "
        "driver has no conversion for it. Convert the value, or give the parameter a "
        "SQLAlchemy type: bindparam(name, value, type_=JSONB) for a dict or list of JSON"
    )


def _detail(diag: Diagnostics) -> str:
    from geosession.geometry import hex_as_wkt  # geometry raises errors: imported late

    parts = [
        f"{label}: {hex_as_wkt(value) if label == 'detail' else value}"
        for label, value in (("detail", diag.detail), ("hint", diag.hint))
        if value
    ]
    return f" [{'; '.join(parts)}]" if parts else ""


def _past_the_end(diag: Diagnostics, statement: Any) -> bool:
    """Whether the server points past the caller's statement: at what geosession wrote
    after it (a stream's closing parenthesis), the statement having ended too soon."""
    if not diag.position or not isinstance(statement, str):
        return False
    return not statement[diag.position - 1 :].strip()


def _where(diag: Diagnostics, endpoint: str, statement: Any) -> str:
    named = diag.sqlstate != _ABORTED  # refused for an earlier statement, not this one's table
    table = diag.table or (_statement_table(statement) if named else None)
    parts = [f"on {endpoint}"]
    if table:
        parts.append(f"table {table}")
    if diag.column:
        parts.append(f"column {diag.column}")
    if diag.constraint:
        parts.append(f"constraint {diag.constraint}")
    if diag.position and isinstance(statement, str) and not PLACEHOLDERS.search(statement):
        rest = statement[diag.position - 1 :].strip()
        if not _past_the_end(diag, statement):
            parts.append(f"at character {diag.position}: {rest.splitlines()[0][:_SHOWN]!r}")
        else:  # "syntax error at end of input", or the wrapper's next token after it
            whole = statement.strip()
            shown = whole if len(whole) <= _SHOWN else "..." + whole[-_SHOWN:].lstrip()
            parts.append(f"at the end of {shown!r}")
    return ", ".join(parts)


def _missing_sequence_advice(message: str, statement: Any) -> str | None:
    """A nextval() of a sequence that is not there reads as a missing table: the advice
    for the sequence (a SQLAlchemy Sequence default whose CREATE SEQUENCE never ran)."""
    missing = _MISSING_RELATION.search(message)
    if missing is None:
        return None
    name = missing.group(1)
    if isinstance(statement, str):
        nextval = r"nextval\(\s*'[^']*" + re.escape(name)
        drawn = re.search(nextval, statement, re.IGNORECASE) is not None
    else:  # an Insert, whose SQL is not at hand: its table's Sequence defaults
        columns = getattr(getattr(statement, "table", None), "columns", ())
        defaults = (column.default for column in columns)
        drawn = any(
            isinstance(default, Sequence)
            and name in (default.name, f"{default.schema}.{default.name}")
            for default in defaults
        )
    if not drawn:
        return None
    return (
        f"the sequence {name}, which nextval() draws from (a column default such as "
        f"SQLAlchemy's Sequence({name!r})), does not exist: create it (CREATE SEQUENCE "
        f"{name}; metadata.create_all makes a model's sequences with its tables), or "
        "correct its name and schema"
    )


def _statement_table(statement: Any) -> str | None:
    table = getattr(statement, "table", None)
    if table is not None and hasattr(table, "fullname"):
        return str(table.fullname)
    match = _INSERT_TABLE.match(statement) if isinstance(statement, str) else None
    return match.group(1) if match else None


def endpoint_of(engine: Engine | None) -> str:
    """``host:port`` of an engine's server, for messages (never the password)."""
    if engine is None:
        return "the database server"
    url = engine.url
    hosts = url.query.get("host") if url.host is None else None  # several: libpq tries each
    if hosts:
        server = ",".join(hosts) if isinstance(hosts, tuple) else hosts
    else:
        server = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"{server}/{url.database or ''}".rstrip("/")


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
