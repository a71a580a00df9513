"""``geosession doctor``: a checklist of what makes spatial sessions slow or unsafe, with fixes.

Each check runs in its own short connection from the pool (so one that fails, e.g. for
want of a privilege, does not hide the others) and returns one :class:`Check`: ``ok``,
``warn`` (worth a look, may be intended), ``fail`` (fix it) or ``skip``. The report fails
when any check fails. Table checks look at every schema except the system ones and
extension-owned tables (PostGIS's own), or only at ``schemas`` when given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, text

from geosession.diagnose.activity import hidden_sessions, see_all_advice
from geosession.diagnose.advice import (
    ANALYZED_SQL,
    BUILDING_INDEXES_SQL,
    INDEXED_SQL,
    INVALID_INDEX_CAUSE,
    INVALID_INDEXES_SQL,
    SPATIAL_COLUMN_SQL,
    USER_TABLES_SQL,
    qualified,
    quote,
)
from geosession.diagnose.sequences import behind_sequences
from geosession.engine import build_engine
from geosession.errors import GeoSessionError, endpoint_of
from geosession.ingest.ledger import DEFERRED
from geosession.ingest.target import DATABASE_IDENTITY
from geosession.replicas import LAG_SQL
from geosession.settings import DatabaseSettings
from geosession.srs import in_degrees, spatial_ref

Status = Literal["ok", "warn", "fail", "skip"]

_UNINDEXED = text(
    "SELECT n.nspname, c.relname, a.attname, "  # noqa: S608 (constants only)
    f"{INVALID_INDEXES_SQL} AS invalid, {BUILDING_INDEXES_SQL} AS building FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE {SPATIAL_COLUMN_SQL} AND a.attnum > 0 AND NOT a.attisdropped "
    "AND c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition AND "
    f"{USER_TABLES_SQL} "
    f"AND NOT {INDEXED_SQL} ORDER BY 1, 2, 3"
)
_NEVER_ANALYZED = text(
    "SELECT n.nspname, c.relname FROM pg_class c "  # noqa: S608 (constants only)
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid "
    "WHERE c.relkind IN ('r', 'm') AND "
    f"{USER_TABLES_SQL} "
    f"AND NOT {ANALYZED_SQL} "
    "AND greatest(c.reltuples, coalesce(s.n_live_tup, 0)) "
    "> CAST(current_setting('autovacuum_analyze_threshold') AS float8) ORDER BY 1, 2"
)
_SRID_ZERO = text(
    "SELECT g.f_table_schema, g.f_table_name, g.f_geometry_column FROM geometry_columns g "
    "WHERE g.srid = 0 AND (CAST(:schemas AS text[]) IS NULL "
    "OR g.f_table_schema = ANY (CAST(:schemas AS text[]))) ORDER BY 1, 2, 3"
)
# DEFERRED is the ledger's constant table name, never user input. A record made here for
# another table of the name (dropped and made again) is not this one's (the next ingest
# forgets it); its table is read through to_jsonb, as a ledger made by an earlier
# geosession lacks those columns until an ingest adds them.
_DEFERRED = text(
    "SELECT n.nspname, c.relname, d.index_name, d.definition "  # noqa: S608
    f"FROM {DEFERRED} d JOIN pg_class c ON c.oid = to_regclass(d.target) "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "CROSS JOIN LATERAL (SELECT (to_jsonb(d) ->> 'target_oid')::oid AS oid, "
    "to_jsonb(d) ->> 'target_database' AS database) made_for "
    "WHERE (CAST(:schemas AS text[]) IS NULL OR n.nspname = ANY (CAST(:schemas AS text[]))) "
    "AND (made_for.oid IS NULL OR made_for.oid = c.oid "
    f"OR NOT coalesce(made_for.database = {DATABASE_IDENTITY}, true)) "
    "AND to_regclass(quote_ident(n.nspname) || '.' || quote_ident(d.index_name)) IS NULL "
    "ORDER BY 1, 2, 3"
)
_IDLE_IN_TRANSACTION = text(
    "SELECT pid, application_name, extract(epoch FROM clock_timestamp() - state_change)::float8 "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend' AND state LIKE 'idle in transaction%' "
    "AND clock_timestamp() - state_change > make_interval(secs => :seconds) ORDER BY 3 DESC"
)
_LONG_RUNNING = text(
    "SELECT pid, application_name, extract(epoch FROM clock_timestamp() - query_start)::float8 "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend' AND state = 'active' "
    "AND clock_timestamp() - query_start > make_interval(secs => :seconds) ORDER BY 3 DESC"
)


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    """What to do, with the SQL to run where there is one (all of ``statements``)."""
    statements: tuple[str, ...] = ()
    """The SQL of the fix, a statement (or a pair that goes together) for each object."""

    @classmethod
    def with_sql(
        cls, name: str, status: Status, detail: str, statements: Sequence[str], advice: str = ""
    ) -> Check:
        """A check whose fix is SQL to run, one statement per object it names."""
        fix = " ".join([advice, *statements]) if advice else " ".join(statements)
        return cls(name, status, detail, fix, tuple(statements))

    @property
    def advice(self) -> str:
        """What the fix says besides its statements (:meth:`with_sql` puts them last)."""
        return self.fix.removesuffix(" ".join(self.statements)).strip()


_LISTED = 10
"""Objects a result names before it counts the rest (the fix's statements name all)."""


def _listed(names: Sequence[str], separator: str = ", ") -> str:
    if len(names) <= _LISTED:
        return separator.join(names)
    return f"{separator.join(names[:_LISTED])} and {len(names) - _LISTED} more"


@dataclass(frozen=True)
class DoctorReport:
    """The checklist; ``ok`` unless a check failed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.status == "fail")

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}

    def __str__(self) -> str:
        lines = [
            f"[{c.status}] {c.name}: {c.detail}" + (f"\n  fix: {c.fix}" if c.fix else "")
            for c in self.checks
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Context:
    settings: DatabaseSettings
    schemas: list[str] | None
    long_running: float
    idle_after: float


CheckFunction = Callable[[Connection, _Context], Check]


def run_doctor(
    engine: Engine,
    settings: DatabaseSettings,
    *,
    schemas: Sequence[str] | None = None,
    long_running: float = 60.0,
    idle_after: float = 1.0,
) -> DoctorReport:
    """Runs every check on ``engine``'s database; the connection check first."""
    context = _Context(settings, list(schemas) if schemas else None, long_running, idle_after)
    try:
        with engine.connect() as connection:
            checks = [_connection(connection)]
    except GeoSessionError as error:
        failed = Check("connection", "fail", error.message, "fix the settings or start the server")
        skipped = [Check(name, "skip", "not checked: no connection") for name, _ in _CHECKS]
        return DoctorReport((failed, *skipped))
    replicas = (("replicas", _replicas),) if settings.replica_urls else ()
    named = (("schemas", _schemas),) if context.schemas else ()
    for name, check in (*named, *_CHECKS, *replicas):
        checks.append(_run(engine, name, check, context))
    return DoctorReport(tuple(checks))


def _run(engine: Engine, name: str, check: CheckFunction, context: _Context) -> Check:
    try:
        with engine.connect() as connection:
            return check(connection, context)
    except GeoSessionError as error:
        return Check(name, "fail", f"could not check: {error.message}")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _connection(connection: Connection) -> Check:
    started = time.perf_counter()
    user, database, address, port = connection.execute(
        text(
            "SELECT current_user, current_database(), host(inet_server_addr()), inet_server_port()"
        )
    ).one()
    ms = (time.perf_counter() - started) * 1000
    server = f" on {address}:{port}" if address else ""  # which of the URL's hosts, if several
    return Check("connection", "ok", f"connected to {database} as {user}{server} ({ms:.1f} ms)")


def _postgresql_version(connection: Connection, context: _Context) -> Check:
    number = int(connection.execute(text("SHOW server_version_num")).scalar_one())
    version = connection.execute(text("SHOW server_version")).scalar_one()
    if number < 120000:
        return Check("postgresql version", "fail", f"{version} is unsupported", "upgrade to 15+")
    status: Status = "ok" if number >= 130000 else "warn"
    return Check("postgresql version", status, str(version), "" if status == "ok" else "upgrade")


_POSTGIS = text(
    "SELECT e.extversion, a.default_version, n.nspname::text, "
    "n.nspname = ANY (current_schemas(false)) AS searched, current_database()::text "
    "FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
    "LEFT JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'postgis'"
)


def _postgis_version(connection: Connection, context: _Context) -> Check:
    """PostGIS installed, 3 or later, at the version of the server's PostGIS package (after
    the package is upgraded, a database keeps the old functions until it is updated too),
    and in a schema on the search_path."""
    found = connection.execute(_POSTGIS).first()
    if found is None:
        return Check(
            "postgis version",
            "fail",
            "PostGIS is not installed in this database",
            "as the database owner or a superuser: CREATE EXTENSION postgis;",
        )
    version, packaged, schema, searched, database = found
    if int(str(version).split(".")[0]) < 3:
        return Check("postgis version", "warn", str(version), "upgrade")
    if packaged is not None and version != packaged:
        return Check(
            "postgis version",
            "warn",
            f"{version} in this database, while the server's PostGIS package is {packaged}: "
            f"the database keeps the functions of {version} until it is updated",
            "as the database owner or a superuser: ALTER EXTENSION postgis UPDATE; (SELECT "
            "postgis_extensions_upgrade(); also updates postgis_raster and postgis_topology)",
        )
    if not searched:
        return Check(
            "postgis version",
            "warn",
            f"{version}, in schema {schema}, which is not on this session's search_path: "
            "geometry and the ST_ functions are not found unless qualified",
            f'ALTER DATABASE {quote(database)} SET search_path = "$user", public, '
            f"{quote(schema)}; (or search_path in server_settings)",
        )
    return Check("postgis version", "ok", str(version))


def _pool_size(connection: Connection, context: _Context) -> Check:
    s = context.settings
    per_process = s.pool_size + s.max_overflow
    if s.pgbouncer:  # the server's max_connections is PgBouncer's business, not this pool's
        return Check(
            "pool size",
            "ok",
            f"pool_size + max_overflow = {per_process} per process, connections to PgBouncer: "
            "they count against its max_client_conn, and its default_pool_size is what each "
            "database and user gets of the server (in session pooling each open connection "
            "holds one of those; SHOW CONFIG on its admin console)",
        )
    max_connections, reserved, in_use = connection.execute(
        text(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int, "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
    ).one()
    available = max_connections - reserved
    detail = (
        f"pool_size + max_overflow = {per_process} per process; the server allows "
        f"{available} ({max_connections} max_connections - {reserved} reserved), {in_use} in use"
    )
    fix = "lower pool_size/max_overflow, raise max_connections, or put PgBouncer in front"
    if per_process > available:
        return Check("pool size", "fail", detail, fix)
    if per_process * 2 > available:
        return Check("pool size", "warn", f"{detail}; two processes exhaust it", fix)
    return Check("pool size", "ok", f"{detail}; {available // per_process} processes fit")


def _timeout(connection: Connection, context: _Context, name: str, example: str) -> Check:
    value = connection.execute(text("SELECT current_setting(:name)"), {"name": name}).scalar()
    if value not in (None, "0"):
        return Check(name, "ok", f"{value}")
    database = connection.execute(text("SELECT current_database()")).scalar_one()
    return Check(
        name,
        "fail",
        "not set (0: unlimited)",
        f"set it for geosession (GEOSESSION_{name.upper()}={example}) or on the server: "
        f"ALTER DATABASE {quote(database)} SET {name} = '{example}';",
    )


def _statement_timeout(connection: Connection, context: _Context) -> Check:
    return _timeout(connection, context, "statement_timeout", "30s")


def _idle_in_transaction_session_timeout(connection: Connection, context: _Context) -> Check:
    return _timeout(connection, context, "idle_in_transaction_session_timeout", "5min")


def _spatial_indexes(connection: Connection, context: _Context) -> Check:
    """Every geometry/geography column with a spatial index the planner may use: none is
    a failure, one left INVALID too (rebuilt with REINDEX), one being built a warning."""
    rows = connection.execute(_UNINDEXED, {"schemas": context.schemas}).all()
    if not rows:
        return Check("spatial indexes", "ok", "every geometry/geography column has one")
    details, fixes = [], []
    missing = [row for row in rows if not row.invalid and not row.building]
    if missing:
        details.append("no spatial index on " + _listed(_column_names(missing)))
        fixes += [
            f"CREATE INDEX ON {qualified(schema, table)} USING gist ({quote(column)});"
            for schema, table, column, *_ in missing
        ]
    if invalid := [row for row in rows if row.invalid]:
        details.append(
            f"an INVALID spatial index on {_listed(_column_names(invalid))} ({INVALID_INDEX_CAUSE})"
        )
        fixes += [
            f"REINDEX INDEX CONCURRENTLY {qualified(row.nspname, index)};"
            for row in invalid
            for index in row.invalid
        ]
    if building := [row for row in rows if row.building and not row.invalid]:
        details.append(
            f"a spatial index being built (CREATE INDEX CONCURRENTLY) on "
            f"{_listed(_column_names(building))}: the planner uses it once it is done"
        )
    status: Status = "fail" if missing or invalid else "warn"
    return Check.with_sql("spatial indexes", status, "; ".join(details), fixes)


def _column_names(rows: Sequence[Any]) -> list[str]:
    return [f"{row.nspname}.{row.relname}.{row.attname}" for row in rows]


def _deferred_indexes(connection: Connection, context: _Context) -> Check:
    """Indexes an ingest dropped for a load into an empty table and has not rebuilt: it is
    loading now, or it was killed and not run again."""
    if connection.execute(text(f"SELECT to_regclass('{DEFERRED}')")).scalar() is None:
        return Check("deferred indexes", "ok", "no ingest has deferred indexes here")
    rows = connection.execute(_DEFERRED, {"schemas": context.schemas}).all()
    if not rows:
        return Check("deferred indexes", "ok", "every index an ingest dropped is rebuilt")
    names = _listed([f"{index} on {schema}.{table}" for schema, table, index, _ in rows])
    fixes = [
        f"{definition}; DELETE FROM {DEFERRED} WHERE index_name = {_literal(index)} "  # noqa: S608
        f"AND to_regclass(target) = to_regclass({_literal(qualified(schema, table))});"
        for schema, table, index, definition in rows
    ]
    return Check.with_sql(
        "deferred indexes",
        "warn",
        f"dropped for a load and not rebuilt yet (a load in progress, or one that was killed): "
        f"{names}",
        fixes,
        "run the ingest again (any ingest into the table rebuilds them), or:",
    )


def _sequences(connection: Connection, context: _Context) -> Check:
    """Serial and identity columns whose sequence would hand out a value the table holds
    (another tool loaded ids without moving it): the next INSERT would collide."""
    behind = behind_sequences(connection, context.schemas)
    if not behind:
        return Check("sequences", "ok", "every serial and identity sequence is past its column")
    names = _listed(
        [
            f"{b.schema}.{b.table}.{b.column} would get {b.following:,} from {b.sequence}, "
            f"and holds up to {b.highest:,}"
            for b in behind
        ],
        "; ",
    )
    return Check.with_sql(
        "sequences",
        "fail",
        f"{names}: the next INSERT taking the default fails with a duplicate key",
        [b.fix for b in behind],
    )


def _statistics(connection: Connection, context: _Context) -> Check:
    rows = connection.execute(_NEVER_ANALYZED, {"schemas": context.schemas}).all()
    if not rows:
        return Check(
            "statistics",
            "ok",
            "every table over autovacuum_analyze_threshold rows has been analyzed (autovacuum "
            "leaves smaller ones, whose plans need no statistics)",
        )
    names = _listed([f"{schema}.{table}" for schema, table in rows])
    fixes = [f"ANALYZE {qualified(schema, table)};" for schema, table in rows]
    return Check.with_sql("statistics", "fail", f"never analyzed: {names}", fixes)


def _srid(connection: Connection, context: _Context) -> Check:
    if connection.execute(text("SELECT to_regclass('geometry_columns')")).scalar() is None:
        return Check("srid", "skip", "PostGIS is not installed")
    rows = connection.execute(_SRID_ZERO, {"schemas": context.schemas}).all()
    if not rows:
        return Check("srid", "ok", "no geometry column has SRID 0")
    names = _listed([f"{schema}.{table}.{column}" for schema, table, column in rows])
    fixes = [_relabel(schema, table, column) for schema, table, column in rows]
    return Check.with_sql("srid", "warn", f"SRID 0 (unknown) on {names}", fixes)


def _relabel(schema: str, table: str, column: str) -> str:
    """The statement that gives a column and its rows another SRID, the coordinates kept."""
    return (
        f"SELECT UpdateGeometrySRID({_literal(schema)}, {_literal(table)}, {_literal(column)}, "
        "<srid>);"
    )


_EXTENTS = text(
    "SELECT g.f_table_schema, g.f_table_name, g.f_geometry_column, r.srid, r.auth_name, "
    "r.auth_srid, r.srtext, r.proj4text, ST_YMin(e.box), ST_YMax(e.box) "
    "FROM geometry_columns g JOIN spatial_ref_sys r ON r.srid = g.srid "
    "JOIN pg_namespace n ON n.nspname = g.f_table_schema "
    "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = g.f_table_name "
    "AND c.relkind IN ('r', 'm') "  # a partitioned table's rows are its partitions'
    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = g.f_geometry_column "
    "CROSS JOIN LATERAL (SELECT ST_EstimatedExtent(g.f_table_schema::text, "
    "g.f_table_name::text, g.f_geometry_column::text) AS box) e "
    "WHERE NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
    "AND NOT i.indisvalid AND a.attnum = ANY (i.indkey::int2[])) "
    "AND EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = g.f_table_schema "
    "AND s.tablename = g.f_table_name AND s.attname = g.f_geometry_column) "
    "AND (CAST(:schemas AS text[]) IS NULL OR g.f_table_schema = ANY (CAST(:schemas AS text[]))) "
    "ORDER BY 1, 2, 3"
)
"""Each analyzed geometry column's SRID and the latitudes its statistics span
(ST_EstimatedExtent reads them from the last ANALYZE, or the root of the column's spatial
index: no scan of the table), of tables and materialized views (a partitioned table has
no storage of its own to estimate), but not of a column whose spatial index is INVALID
(PostGIS would read its empty file and fail; the spatial index check names it)."""
_LATITUDE_SLACK = 1.0
"""The statistics' extent is rounded outwards (float4): latitudes up to 91 pass."""


def _degree_extents(connection: Connection, context: _Context) -> Check:
    """Geometry columns of a geographic SRID whose data reach beyond latitude ±90: rows of
    projected coordinates (metres) labelled 4326, or latitude and longitude swapped,
    which PostGIS stored without a word."""
    name = "coordinates in degrees"
    if connection.execute(text("SELECT to_regclass('geometry_columns')")).scalar() is None:
        return Check(name, "skip", "PostGIS is not installed")
    rows = connection.execute(_EXTENTS, {"schemas": context.schemas}).all()
    beyond = [
        row
        for row in rows
        if in_degrees(spatial_ref(row[3:8]))
        and row[8] is not None
        and max(abs(row[8]), abs(row[9])) > 90 + _LATITUDE_SLACK
    ]
    if not beyond:
        return Check(
            name, "ok", "no column of longitudes and latitudes holds a latitude beyond ±90"
        )
    names = _listed(
        [
            f"{schema}.{table}.{column} (SRID {srid}: latitudes {low:,.1f} to {high:,.1f})"
            for schema, table, column, srid, *_, low, high in beyond
        ]
    )
    fixes = [_relabel(schema, table, column) for schema, table, column, *_ in beyond]
    return Check.with_sql(
        name,
        "warn",
        f"latitudes beyond ±90 in columns of longitudes and latitudes, by their statistics: "
        f"{names}: projected coordinates given a geographic SRID, or latitude and longitude "
        "swapped",
        fixes,
        "for coordinates of another CRS, give them its SRID (no coordinate changes):",
    )


def _unseen(connection: Connection, name: str) -> Check | None:
    """A warning instead of "none" when other roles' sessions hide their state."""
    hidden, role = hidden_sessions(connection)
    if not hidden:
        return None
    return Check(
        name,
        "warn",
        f"none that role {role} can see; {hidden} session(s) of other roles hide their "
        "state from it",
        see_all_advice(role),
    )


def _idle_in_transaction(connection: Connection, context: _Context) -> Check:
    rows = connection.execute(_IDLE_IN_TRANSACTION, {"seconds": context.idle_after}).all()
    if not rows:
        return _unseen(connection, "idle in transaction") or Check(
            "idle in transaction", "ok", "no session is idle in a transaction"
        )
    named = ", ".join(f"pid {pid} ({app or '?'}) for {age:.0f}s" for pid, app, age in rows)
    return Check(
        "idle in transaction",
        "fail",
        f"idle in transaction: {named}",
        "commit or roll back promptly in those applications; to release their locks now: "
        + " ".join(f"SELECT pg_terminate_backend({pid});" for pid, _, _ in rows),
    )


def _long_running(connection: Connection, context: _Context) -> Check:
    rows = connection.execute(_LONG_RUNNING, {"seconds": context.long_running}).all()
    if not rows:
        return _unseen(connection, "long-running queries") or Check(
            "long-running queries", "ok", f"none over {context.long_running:g}s"
        )
    named = ", ".join(f"pid {pid} ({app or '?'}) for {age:.0f}s" for pid, app, age in rows)
    return Check(
        "long-running queries",
        "warn",
        f"running: {named}",
        "check their plans (geosession explain) or cancel: "
        + " ".join(f"SELECT pg_cancel_backend({pid});" for pid, _, _ in rows),
    )


def _temporary_tables(connection: Connection, context: _Context) -> Check:
    """The ingest stages rows in temporary tables: for on_conflict, for columns the server
    casts from text, for tables under row-level security or with INSERT rules, and to find
    the rows the server refuses."""
    allowed, role, database = connection.execute(_TEMPORARY_STATE).one()
    if allowed:
        return Check("temporary tables", "ok", f"role {role} may create temporary tables")
    return Check(
        "temporary tables",
        "warn",
        f"role {role} may not create temporary tables in {database} (no TEMPORARY privilege): "
        "ingests that go through a staging table (on_conflict='ignore' or 'update', columns "
        "sent as text such as macaddr or money, tables under row-level security or with "
        "INSERT rules) are refused, and rows the server refuses are found by halving each "
        "chunk (slower)",
        f"GRANT TEMPORARY ON DATABASE {quote(database)} TO {quote(role)};",
    )


_TEMPORARY_STATE = text(
    "SELECT has_database_privilege(current_database(), 'TEMPORARY'), current_user, "
    "current_database()"
)


def _jit(connection: Connection, context: _Context) -> Check:
    """JIT compilation is decided by a plan's estimated cost, and PostGIS declares its
    predicates and ST_Transform at 10,000 per call: a sequential scan of a few thousand
    rows passes jit_above_cost and spends tens to hundreds of ms compiling."""
    jit, available, above_cost, database = connection.execute(_JIT_STATE).one()
    if jit != "on" or not available:  # pg_jit_available() is false while jit is off
        reason = "off" if jit != "on" else "not available on this server (no LLVM)"
        return Check("jit", "ok", f"JIT compilation is {reason}")
    return Check(
        "jit",
        "warn",
        f"JIT compilation is on (jit_above_cost {above_cost}); PostGIS functions declare high "
        "costs, so many spatial queries are compiled first, often taking longer than they run "
        "(geosession explain --analyze shows the compile time)",
        'for geosession\'s connections: GEOSESSION_SERVER_SETTINGS=\'{"jit": "off"}\'; for '
        f"everyone: ALTER DATABASE {quote(database)} SET jit = off; (or raise jit_above_cost)",
    )


_JIT_STATE = text(
    "SELECT current_setting('jit'), pg_jit_available(), current_setting('jit_above_cost'), "
    "current_database()"
)


def _replicas(connection: Connection, context: _Context) -> Check:
    """Each of replica_urls answers, is a standby, streams from the primary, and replays
    within replica_max_lag."""
    failed, warned, fine = [], [], []
    for number in range(len(context.settings.replica_urls)):
        settings = context.settings.for_replica(number)
        engine = build_engine(settings.model_copy(update={"pool_size": 1, "max_overflow": 0}))
        name = endpoint_of(engine)
        try:
            with engine.connect() as replica:
                standby, lag, streaming = replica.execute(_REPLICA_STATE).one()
        except GeoSessionError as error:
            failed.append(f"{name} cannot be reached ({error.message})")
            continue
        finally:
            engine.dispose()
        limit = context.settings.replica_max_lag
        if not standby:
            failed.append(f"{name} is not a standby (pg_is_in_recovery() is false)")
        elif streaming != "streaming":
            warned.append(f"{name} receives no WAL from the primary ({streaming or 'no receiver'})")
        elif limit is not None and lag is not None and lag > limit:
            warned.append(f"{name} replays {lag:.1f} s behind (replica_max_lag {limit:g} s)")
        else:
            fine.append(f"{name} streaming, {lag or 0:.1f} s behind")
    if failed:
        fix = "start it, or take it out of replica_urls: reads pass over it for the primary"
        return Check("replicas", "fail", "; ".join(failed + warned + fine), fix)
    if warned:
        fix = "check the standby's primary_conninfo and its log"
        return Check("replicas", "warn", "; ".join(warned + fine), fix)
    return Check("replicas", "ok", "; ".join(fine))


_REPLICA_STATE = text(  # LAG_SQL is a constant expression, never user input
    f"SELECT pg_is_in_recovery(), {LAG_SQL}, (SELECT status FROM pg_stat_wal_receiver)"  # noqa: S608
)


_SCHEMAS = text(
    "SELECT nspname FROM pg_namespace "
    "WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' ORDER BY 1"
)


def _schemas(connection: Connection, context: _Context) -> Check:
    """The schemas asked for exist: the table checks would pass a misspelt one, finding
    no table in it."""
    present = [str(name) for name in connection.execute(_SCHEMAS).scalars()]
    wanted = context.schemas or []
    missing = [name for name in wanted if name not in present]
    if not missing:
        return Check("schemas", "ok", f"checking the tables of {', '.join(wanted)}")
    return Check(
        "schemas",
        "fail",
        f"no schema {', '.join(missing)} in this database, so none of its tables was checked "
        f"(its schemas: {', '.join(present)})",
        "name a schema it has, as written in its case (--schema; schemas= in db.doctor)",
    )


_CHECKS: tuple[tuple[str, CheckFunction], ...] = (
    ("postgresql version", _postgresql_version),
    ("postgis version", _postgis_version),
    ("pool size", _pool_size),
    ("statement_timeout", _statement_timeout),
    ("idle_in_transaction_session_timeout", _idle_in_transaction_session_timeout),
    ("spatial indexes", _spatial_indexes),
    ("deferred indexes", _deferred_indexes),
    ("sequences", _sequences),
    ("statistics", _statistics),
    ("srid", _srid),
    ("coordinates in degrees", _degree_extents),
    ("idle in transaction", _idle_in_transaction),
    ("long-running queries", _long_running),
    ("temporary tables", _temporary_tables),
    ("jit", _jit),
)
