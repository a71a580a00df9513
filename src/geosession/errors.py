"""One exception hierarchy for everything a geosession user can run into.

Every class says whether retrying the whole unit of work is safe (``transient``), keeps
the driver's error as ``__cause__`` and carries a message that says what happened,
where, and what to do. Errors from psycopg, psycopg2 and asyncpg are classified by
SQLSTATE in one table (``_BY_SQLSTATE``), by PostGIS's message where PostGIS reuses a
generic code, and by the driver's disconnect signal where there is no code at all.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine
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

_BY_SQLSTATE: dict[str, tuple[type[GeoSessionError], str]] = {
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
    "28P01": (AccessDenied, "check the user name and the password (or password_file)"),
    "28000": (AccessDenied, "check pg_hba.conf and the user name"),
    "3D000": (AccessDenied, "create the database, or fix the database name in the settings"),
    "42501": (DatabaseError, "grant the privilege to this role, or connect as another"),
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
    "42883": (
        DatabaseError,
        "check the function's name and the number and types of its arguments, by which "
        "PostgreSQL chooses it: a cast may be missing (::geometry, ::geography, ::text)",
    ),
}
_BY_SQLSTATE_AND_MESSAGE: tuple[tuple[str, str, type[GeoSessionError], str], ...] = (
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
}

PLACEHOLDERS = re.compile(r"%\(|%s|\$\d")
"""Placeholders: where they are, the server's text differs from ours, and so its positions."""
_SHOWN = 40
"""Characters of the statement shown from where the server found the error."""
_SRID_MISMATCH = re.compile(r"Geometry SRID \((-?\d+)\) does not match column SRID \((-?\d+)\)")
_MIXED_SRIDS = re.compile(
    r"(?:(\w+): )?Operation on mixed SRID geometries(?: \(\w+, (-?\d+)\) != \(\w+, (-?\d+)\))?"
)
_UNKNOWN_SRID = re.compile(r"Cannot find SRID \((-?\d+)\) in spatial_ref_sys")
_TRANSFORM_SRID_ZERO = re.compile(r"Input geometry has unknown \(0\) SRID")
_GEOGRAPHY_NOT_LONLAT = re.compile(r"Only lon/lat coordinate systems are supported in geography")
_PROJ_REFUSED = re.compile(
    r"transform: (?:Invalid coordinate|Point outside of projection domain"
    r"|latitude or longitude exceeded limits|couldn't project point)",
    re.IGNORECASE,
)
_INVALID_GEOMETRY = re.compile(
    r"does not match column type|has Z dimension|has M dimension|parse error|invalid geometry"
    r"|Invalid endian|Unknown WKB type|requires more points|must have at least|Invalid hex"
    r"|TopologyException|not closed|non-closed|GEOS\w+\(\)|lwgeom|GeoJSON|must have type POINT"
    r"|WKB structure",
    re.IGNORECASE,
)
_UNREADABLE_GEOMETRY = re.compile(
    r"parse error|Invalid hex|Invalid endian|Unknown WKB type|GeoJSON|WKB structure",
    re.IGNORECASE,
)
_NOT_FOR_GEOGRAPHY = re.compile(
    r"function (st_\w+)\([^)]*\bgeography\b[^)]*\) does not exist", re.IGNORECASE
)
_ON_GEOGRAPHY = {
    "st_contains": "ST_Covers(a, b) says what ST_Contains(a, b) would; or ",
    "st_within": "ST_CoveredBy(a, b) says what ST_Within(a, b) would; or ",
}
"""The geography function that answers what a geometry-only predicate asks."""
_GEOGRAPHY_FORMS = frozenset(
    [
        "st_area",
        "st_asbinary",
        "st_asewkt",
        "st_asgeojson",
        "st_asgml",
        "st_askml",
        "st_assvg",
        "st_astext",
        "st_azimuth",
        "st_buffer",
        "st_centroid",
        "st_coveredby",
        "st_covers",
        "st_distance",
        "st_dwithin",
        "st_intersection",
        "st_intersects",
        "st_length",
        "st_perimeter",
        "st_project",
        "st_segmentize",
        "st_summary",
    ]
)
"""Functions PostGIS (3.0 on) has for geography: given one, other arguments were wrong."""
_DIMENSION_REFUSED = re.compile(
    r"has [ZM] dimension but column does not|Column has [ZM] dimension but geometry does not",
    re.IGNORECASE,
)
_TOO_FEW_POINTS = re.compile(r"requires more points|must have at least", re.IGNORECASE)
_CURVES_REFUSED = re.compile(
    r"\b(?:CircularString|CompoundCurve|CurvePolygon|MultiCurve|MultiSurface)\b"
    r"|lwgeom_get_basic_type: Invalid type \((?:8|9|10|11|12)\)",
    re.IGNORECASE,
)
"""A PostGIS function that takes no curves refusing one (ST_AsGeoJSON, ST_Simplify,
ST_AsMVTGeom...): its message names the type, or its number."""
_POSTGIS_TYPE_MISSING = re.compile(
    r'type "(geometry|geography|box2d|raster)" does not exist'
    r'|relation "(geometry_columns|geography_columns|spatial_ref_sys)" does not exist'
)
"""PostGIS's types and tables, which a session finds on its search_path, or not at all."""
_POSTGIS_MISSING = re.compile(  # a call with a geometry argument: PostGIS is there
    rf"{_POSTGIS_TYPE_MISSING.pattern}"
    r"|function st_\w+\((?![^)]*\b(?:geometry|geography|box2d|box3d|raster)\b)[^)]*\)"
    r" does not exist",
    re.IGNORECASE,
)
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
_INSERT_TABLE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|COPY)\s+([\w.\"]+)", re.IGNORECASE)


_LIBPQ_CONNECT_FAILURES = (  # libpq reports login failures without a SQLSTATE
    (re.compile(r'database "[^"]*" does not exist'), "3D000"),
    (re.compile(r"password authentication failed|role \"[^\"]*\" does not exist"), "28P01"),
    (re.compile(r"no pg_hba\.conf entry|pg_hba\.conf rejects connection"), "28000"),
    (re.compile(r"certificate authentication failed|requires a valid client certificate"), "28000"),
    (re.compile(r"too many (clients|connections)|remaining connection slots"), "53300"),
    (re.compile(r"the database system is (starting up|shutting down|in recovery)"), "57P03"),
)


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
    diag: Diagnostics, *, is_disconnect: bool, postgis: PostGISPlace | None = None
) -> tuple[type[GeoSessionError], str]:
    """The error class and the advice for what the server (or the driver) reported;
    ``postgis``: where the database has PostGIS, if known."""
    state = diag.sqlstate or ""
    srid_advice = _srid_advice(diag.message)
    if srid_advice is not None:
        return srid_advice
    if state in ("22023", "XX000", "22P02", "22000") and _INVALID_GEOMETRY.search(diag.message):
        return InvalidGeometry, _invalid_geometry_advice(diag.message)
    missing = _missing_type_advice(diag.message, postgis) if state in _MISSING_STATES else None
    if missing is not None:
        return missing
    for code, fragment, kind, advice in _BY_SQLSTATE_AND_MESSAGE:
        if state == code and fragment in diag.message:
            return kind, advice
    if state in _BY_SQLSTATE:
        return _BY_SQLSTATE[state]
    if state[:2] in _BY_SQLSTATE_CLASS:
        return _BY_SQLSTATE_CLASS[state[:2]]
    if is_disconnect:
        return ConnectionFailed, "the connection was lost; " + _ADVICE_RETRY
    if not state:  # the driver refused the call, or its result: nothing from the server
        return DatabaseError, _driver_advice(diag.message)
    return DatabaseError, "see the server's message above"


def _driver_advice(message: str) -> str:
    if _BEYOND_DATETIME.search(message):
        return (
            "the result holds a date or time Python's datetime cannot: PostgreSQL's infinity "
            "or -infinity, a year before 1 or after 9999, or 24:00:00 (psycopg 3 reads none; "
            "psycopg2 and asyncpg read infinity as datetime.max). Query the column as text "
            "(col::text), or leave those values out in SQL (WHERE isfinite(col))"
        )
    return "see the driver's message above"


def _invalid_geometry_advice(message: str) -> str:
    """What to do about a geometry PostGIS refused, by what its message names."""
    return next(
        (advice for pattern, advice in _GEOMETRY_ADVICE if pattern.search(message)),
        "fix or drop the geometry; shapely.make_valid repairs many",
    )


_GEOMETRY_ADVICE: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        _CURVES_REFUSED,
        "this function takes no curves (CircularString arcs): straighten them in the "
        "query first, ST_CurveToLine(geom)",
    ),
    (
        re.compile("non-closed rings"),
        "close each polygon ring: its last point must be the same as its first "
        "(POLYGON((0 0, 1 0, 1 1, 0 0)))",
    ),
    (
        _UNREADABLE_GEOMETRY,
        "the server could not read the geometry's text or bytes: check the WKT, WKB or "
        "GeoJSON where the message points (a POINT takes two or three numbers; "
        "ST_GeomFromGeoJSON takes a geometry object, not a Feature)",
    ),
    (
        re.compile("does not match column type"),
        "the geometry's type is not one the column takes: ST_Multi(geom) makes a Point a "
        "MultiPoint (and a Polygon a MultiPolygon), ST_CollectionExtract(geom, 3) takes a "
        "collection's polygons; or load it into a column of its type",
    ),
    (
        _DIMENSION_REFUSED,
        "the geometry's dimensions are not the column's: ST_Force2D(geom) drops Z and M, "
        "ST_Force3D(geom) adds Z (0); or make the column take them, geometry(PointZ, <srid>)",
    ),
    (
        re.compile("must have type POINT"),
        "ST_X, ST_Y and ST_Z take points only: give them a point of the geometry, "
        "ST_X(ST_Centroid(geom)) or ST_X(ST_StartPoint(line))",
    ),
    (
        _TOO_FEW_POINTS,
        "a line needs two points and a polygon ring four, its last the same as its first: "
        "fix or drop the geometry",
    ),
)
"""The first that matches a message says what to do; otherwise it is an invalid geometry."""


_MISSING_STATES = ("42704", "42883", "42P01")
"""undefined_object (a type), undefined_function, undefined_table."""


def _missing_type_advice(
    message: str, postgis: PostGISPlace | None
) -> tuple[type[GeoSessionError], str] | None:
    """A type or function the server lacks: PostGIS's, or hstore() of a dict that
    SQLAlchemy sent as hstore."""
    if _POSTGIS_MISSING.search(message):
        return _postgis_missing(message, postgis)
    if geography := _NOT_FOR_GEOGRAPHY.search(message):
        function = geography.group(1).lower()
        if function in _GEOGRAPHY_FORMS:
            return DatabaseError, (
                f"PostGIS has {function} for geography, but no form of it takes these "
                f"arguments: check their number and types (psql's \\df {function} lists "
                "its forms)"
            )
        instead = _ON_GEOGRAPHY.get(function, "")
        return DatabaseError, (
            f"PostGIS has no {function} for geography, which takes fewer functions than "
            "geometry (ST_Intersects, ST_DWithin, ST_Covers, ST_CoveredBy, ST_Distance, "
            f"ST_Area, ST_Length, ST_Buffer ...): {instead}cast to geometry (col::geometry) "
            "where planar degrees are right"
        )
    if _HSTORE_DICT.search(message):
        return DatabaseError, HSTORE_DICT_ADVICE
    return None


INSTALL_POSTGIS = "connect as its owner or a superuser and run CREATE EXTENSION postgis;"


def postgis_off_search_path(schema: str) -> str:
    """What to do when PostGIS is installed in ``schema`` and a session cannot find it."""
    return (
        f"PostGIS is installed in schema {schema}, which must be on the search_path "
        f'(ALTER DATABASE ... SET search_path = "$user", public, {schema}), or its names '
        f"qualified ({schema}.geometry)"
    )


def _postgis_missing(
    message: str, postgis: PostGISPlace | None
) -> tuple[type[GeoSessionError], str]:
    """A PostGIS type, or an ST_ function of no spatial argument, that the server cannot
    find: PostGIS is not installed, unless the engine found it when it first connected;
    then it is out of the search_path, or no form of the function takes those arguments
    (ST_X(1.5), ST_MakeEnvelope(0, 0, 1): the server's message is the same)."""
    if postgis is None or postgis.schema is None:
        return PostGISNotInstalled, f"PostGIS is not installed in this database: {INSTALL_POSTGIS}"
    outside = postgis_off_search_path(postgis.schema)
    if _POSTGIS_TYPE_MISSING.search(message):
        return ConfigurationError, outside
    _, arguments = _BY_SQLSTATE["42883"]
    return DatabaseError, arguments + ("" if postgis.schema == "public" else f"; {outside}")


def _srid_advice(message: str) -> tuple[type[GeoSessionError], str] | None:
    """PostGIS's words for a geometry written into a column of another SRID, two SRIDs in
    one operation, an SRID it does not know, and a transform of a geometry without one."""
    if _SRID_MISMATCH.search(message):
        return SRIDMismatch, "transform the geometry (ST_Transform / shapely) or fix its SRID"
    mixed = _MIXED_SRIDS.search(message)
    if mixed is not None:
        function, first, second = mixed.groups()
        srids = f"SRID {first} and SRID {second}" if first else "different SRIDs"
        return SRIDMismatch, (
            f"geometries of {srids} met in {function or 'one operation'}: transform one side "
            "into the other's SRID (ST_Transform(geom, <srid>)), choosing the side that is "
            "not an indexed column, so that its spatial index can still be used; write a "
            "literal in the column's SRID ('SRID=<srid>;POINT(...)')"
        )
    unknown = _UNKNOWN_SRID.search(message)
    if unknown is not None:
        return DatabaseError, (
            f"SRID {unknown.group(1)} is not in this database's spatial_ref_sys, so PostGIS "
            "cannot place it: check the number (spatial_ref_sys lists the EPSG codes it "
            "knows), or add the CRS's row to spatial_ref_sys"
        )
    if _TRANSFORM_SRID_ZERO.search(message):
        return SRIDMismatch, (
            "the geometry has SRID 0 (none said), so there is nothing to transform from: say "
            "which it is first, ST_Transform(ST_SetSRID(geom, <its srid>), <target srid>), or "
            "fix the column (SELECT UpdateGeometrySRID(...))"
        )
    if "could not parse proj string" in message:
        return DatabaseError, (
            "ST_Transform takes the SRID of a spatial_ref_sys row (an integer: 3857), or a "
            "CRS PROJ can read; 'EPSG:<code>' text works only where PROJ's database has it"
        )
    if _PROJ_REFUSED.search(message):
        return DatabaseError, (
            "PROJ could not transform a coordinate: one beyond the range of the geometry's "
            "SRID (metres labelled 4326: compare ST_Extent(geom) with the SRID's bounds), or "
            "outside what the target projection maps (a UTM zone far from the point)"
        )
    if _GEOGRAPHY_NOT_LONLAT.search(message):
        return SRIDMismatch, (
            "a geometry of a projected SRID met a geography (a geography column, or a cast to "
            "geography), which holds longitudes and latitudes only: transform it first, "
            "ST_Transform(geom, 4326)::geography"
        )
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
) -> GeoSessionError:
    """The geosession error for a driver error; the caller chains the original.

    ``statement_start``: characters that geosession put before the caller's ``statement``
    in the SQL it ran (``db.explain``'s ``EXPLAIN (...)``), so that a position the server
    reports counts from the caller's first character.
    """
    diag = diagnostics(error) or Diagnostics(sqlstate=None, message=first_line(error))
    if statement_start and diag.position:
        position = diag.position - statement_start
        diag = replace(diag, position=position if position > 0 else None)
    if connecting and diag.sqlstate is None:
        diag = replace(diag, sqlstate=_inferred_sqlstate(str(error)))
    if connecting and "unsupported startup parameter" in diag.message:
        return ConnectionFailed(
            f"Could not connect to {endpoint}: {diag.message}. That is PgBouncer, which "
            "refuses server settings at start-up: set pgbouncer=True (GEOSESSION_PGBOUNCER="
            "true) so that they are set in each transaction instead",
            sqlstate=diag.sqlstate,
        )
    if connecting and _TLS_REFUSED.search(diag.message):
        refused = ConnectionFailed(
            f"Could not connect to PostgreSQL at {endpoint}: {diag.message}. The server's "
            "certificate did not pass the check sslmode asks for: sslrootcert must hold the "
            "authority that signed it, and with verify-full it must name the host connected to",
            sqlstate=diag.sqlstate,
        )
        refused.transient = False  # the same certificate fails the same check again
        return refused
    if connecting and (diag.sqlstate is None or diag.sqlstate.startswith("08")):
        return ConnectionFailed(
            f"Could not connect to PostgreSQL at {endpoint}: {diag.message}. Check that the "
            "server is running and reachable, and host, port and connect_timeout in the settings",
            sqlstate=diag.sqlstate,
        )
    unsendable = _UNSENDABLE.search(diag.message)  # the driver's own words, not the server's
    if unsendable is not None:
        return _unsendable(unsendable, endpoint)
    cls, advice = classify(diag, is_disconnect=is_disconnect, postgis=postgis)
    if cls is SRIDMismatch and _SRID_MISMATCH.search(diag.message):
        return _srid_mismatch(diag, endpoint, statement, advice)
    where = _where(diag, endpoint, statement)
    return cls(
        f"{diag.message}{_detail(diag)} ({where}). {advice[:1].upper()}{advice[1:]}",
        sqlstate=diag.sqlstate,
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


def _where(diag: Diagnostics, endpoint: str, statement: Any) -> str:
    table = diag.table or _statement_table(statement)
    parts = [f"on {endpoint}"]
    if table:
        parts.append(f"table {table}")
    if diag.column:
        parts.append(f"column {diag.column}")
    if diag.constraint:
        parts.append(f"constraint {diag.constraint}")
    if diag.position and isinstance(statement, str) and not PLACEHOLDERS.search(statement):
        rest = statement[diag.position - 1 :].strip()
        if rest:
            parts.append(f"at character {diag.position}: {rest.splitlines()[0][:_SHOWN]!r}")
        else:  # "syntax error at end of input", or the wrapper's next token after it
            whole = statement.strip()
            shown = whole if len(whole) <= _SHOWN else "..." + whole[-_SHOWN:].lstrip()
            parts.append(f"at the end of {shown!r}")
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
