"""``geosession doctor``: a checklist of what makes spatial sessions slow or unsafe, with fixes.

Each check runs in its own short connection from the pool (so one that fails, e.g. for
want of a privilege, does not hide the others) and returns one :class:`Check`: ``ok``,
``warn`` (worth a look, may be intended), ``fail`` (fix it) or ``skip``. The report fails
when any check fails. Table checks look at every schema except the system ones and
extension-owned tables (PostGIS's own), or only at ``schemas`` when given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from geosession.diagnose.activity import hidden_sessions, see_all_advice
from geosession.diagnose.checklist import Check, CheckContext, CheckFunction, Status
from geosession.diagnose.plan_text import quote
from geosession.diagnose.table_checks import (
    deferred_indexes,
    degree_extents,
    sequences,
    spatial_indexes,
    srid,
    statistics,
)
from geosession.engine import build_engine
from geosession.errors import GeoSessionError, endpoint_of
from geosession.replicas import LAG_SQL
from geosession.settings import DatabaseSettings

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


_PRIVILEGE = "42501"  # insufficient_privilege


def run_doctor(
    engine: Engine,
    settings: DatabaseSettings,
    *,
    schemas: Sequence[str] | None = None,
    long_running: float = 60.0,
    idle_after: float = 1.0,
) -> DoctorReport:
    """Runs every check on ``engine``'s database; the connection check first."""
    context = CheckContext(settings, list(schemas) if schemas else None, long_running, idle_after)
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


def _run(engine: Engine, name: str, check: CheckFunction, context: CheckContext) -> Check:
    try:
        with engine.connect() as connection:
            return check(connection, context)
    except GeoSessionError as error:
        if getattr(error, "sqlstate", None) != _PRIVILEGE:
            return Check(name, "fail", f"could not check: {error.message}")
        return Check(  # the role's view, not the database's fault
            name,
            "warn",
            f"could not check: {error.message}",
            "run doctor as a role that may read what it names, or grant the privilege",
        )


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


def _postgresql_version(connection: Connection, context: CheckContext) -> Check:
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


def _postgis_version(connection: Connection, context: CheckContext) -> Check:
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


def _pool_size(connection: Connection, context: CheckContext) -> Check:
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


def _timeout(connection: Connection, context: CheckContext, name: str, example: str) -> Check:
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


def _statement_timeout(connection: Connection, context: CheckContext) -> Check:
    return _timeout(connection, context, "statement_timeout", "30s")


def _idle_in_transaction_session_timeout(connection: Connection, context: CheckContext) -> Check:
    return _timeout(connection, context, "idle_in_transaction_session_timeout", "5min")


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


def _idle_in_transaction(connection: Connection, context: CheckContext) -> Check:
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


def _long_running(connection: Connection, context: CheckContext) -> Check:
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


def _temporary_tables(connection: Connection, context: CheckContext) -> Check:
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


def _jit(connection: Connection, context: CheckContext) -> Check:
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


def _replicas(connection: Connection, context: CheckContext) -> Check:
    """Each of replica_urls answers, is a standby, streams from the primary, and replays
    within replica_max_lag."""
    failed, warned, fine = [], [], []
    fixes: dict[str, None] = {}
    for number in range(len(context.settings.replica_urls)):
        settings = context.settings.for_replica(number)
        engine = build_engine(settings.model_copy(update={"pool_size": 1, "max_overflow": 0}))
        name = endpoint_of(engine)
        try:
            with engine.connect() as replica:
                standby, lag, streaming = replica.execute(_REPLICA_STATE).one()
        except GeoSessionError as error:
            failed.append(f"{name} cannot be reached ({error.message})")
            fixes[
                "start what cannot be reached, or take it out of replica_urls (meanwhile reads "
                "pass over it for the next, the primary when none answers)"
            ] = None
            continue
        finally:
            engine.dispose()
        limit = context.settings.replica_max_lag
        if not standby:
            failed.append(f"{name} is not a standby (pg_is_in_recovery() is false)")
            fixes[
                "take a primary out of replica_urls (reads pass over it with replica_max_lag, "
                "else go to it as to a replica)"
            ] = None
        elif streaming != "streaming":
            warned.append(f"{name} receives no WAL from the primary ({streaming or 'no receiver'})")
        elif limit is not None and lag is not None and lag > limit:
            warned.append(f"{name} replays {lag:.1f} s behind (replica_max_lag {limit:g} s)")
        else:
            fine.append(f"{name} streaming, {lag or 0:.1f} s behind")
    if failed:
        fix = "; ".join(fixes)
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


def _schemas(connection: Connection, context: CheckContext) -> Check:
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
    ("spatial indexes", spatial_indexes),
    ("deferred indexes", deferred_indexes),
    ("sequences", sequences),
    ("statistics", statistics),
    ("srid", srid),
    ("coordinates in degrees", degree_extents),
    ("idle in transaction", _idle_in_transaction),
    ("long-running queries", _long_running),
    ("temporary tables", _temporary_tables),
    ("jit", _jit),
)
