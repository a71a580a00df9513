"""The doctor's checks of the tables themselves: spatial indexes, indexes an ingest
deferred, sequences, statistics, SRIDs, and coordinates that cannot be degrees.

Each looks at every schema except the system ones and extension-owned tables (PostGIS's
own), or only at the schemas asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from geosession.diagnose.catalog import (
    ANALYZED_SQL,
    BUILDING_INDEXES_SQL,
    INDEXED_SQL,
    INVALID_INDEX_CAUSE,
    INVALID_INDEXES_SQL,
    SPATIAL_COLUMN_SQL,
    USER_TABLES_SQL,
)
from geosession.diagnose.checklist import Check, CheckContext, Status, listed
from geosession.diagnose.plan_text import qualified, quote
from geosession.diagnose.sequences import behind_sequences
from geosession.ingest.ledger import DEFERRED
from geosession.ingest.target import DATABASE_IDENTITY, sql_literal
from geosession.srs import in_degrees, spatial_ref

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
_UNREADABLE_SPATIAL = text(
    "SELECT n.nspname, c.relname FROM pg_class c "  # noqa: S608 (constants only)
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition "
    "AND NOT has_table_privilege(c.oid, 'SELECT') AND "
    f"{USER_TABLES_SQL} AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
    f"AND a.attnum > 0 AND NOT a.attisdropped AND {SPATIAL_COLUMN_SQL}) ORDER BY 1, 2"
)
"""Tables with spatial columns the role may not read: geometry_columns and pg_stats hide
them, so the checks that read those would pass them unseen."""
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


def spatial_indexes(connection: Connection, context: CheckContext) -> Check:
    """Every geometry/geography column with a spatial index the planner may use: none is
    a failure, one left INVALID too (rebuilt with REINDEX), one being built a warning."""
    rows = connection.execute(_UNINDEXED, {"schemas": context.schemas}).all()
    if not rows:
        return Check("spatial indexes", "ok", "every geometry/geography column has one")
    details, fixes = [], []
    missing = [row for row in rows if not row.invalid and not row.building]
    if missing:
        details.append("no spatial index on " + listed(_column_names(missing)))
        fixes += [
            f"CREATE INDEX ON {qualified(schema, table)} USING gist ({quote(column)});"
            for schema, table, column, *_ in missing
        ]
    if invalid := [row for row in rows if row.invalid]:
        details.append(
            f"an INVALID spatial index on {listed(_column_names(invalid))} ({INVALID_INDEX_CAUSE})"
        )
        fixes += [
            f"REINDEX INDEX CONCURRENTLY {qualified(row.nspname, index)};"
            for row in invalid
            for index in row.invalid
        ]
    if building := [row for row in rows if row.building and not row.invalid]:
        details.append(
            f"a spatial index being built (CREATE INDEX CONCURRENTLY) on "
            f"{listed(_column_names(building))}: the planner uses it once it is done"
        )
    status: Status = "fail" if missing or invalid else "warn"
    return Check.with_sql("spatial indexes", status, "; ".join(details), fixes)


def _column_names(rows: Sequence[Any]) -> list[str]:
    return [f"{row.nspname}.{row.relname}.{row.attname}" for row in rows]


def deferred_indexes(connection: Connection, context: CheckContext) -> Check:
    """Indexes an ingest dropped for a load into an empty table and has not rebuilt: it is
    loading now, or it was killed and not run again."""
    if connection.execute(text(f"SELECT to_regclass('{DEFERRED}')")).scalar() is None:
        return Check("deferred indexes", "ok", "no ingest has deferred indexes here")
    rows = connection.execute(_DEFERRED, {"schemas": context.schemas}).all()
    if not rows:
        return Check("deferred indexes", "ok", "every index an ingest dropped is rebuilt")
    names = listed([f"{index} on {schema}.{table}" for schema, table, index, _ in rows])
    fixes = [
        f"{definition}; DELETE FROM {DEFERRED} WHERE index_name = {sql_literal(index)} "  # noqa: S608
        f"AND to_regclass(target) = to_regclass({sql_literal(qualified(schema, table))});"
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


def sequences(connection: Connection, context: CheckContext) -> Check:
    """Serial and identity columns whose sequence would hand out a value the table holds
    (another tool loaded ids without moving it): the next INSERT would collide."""
    behind, unread = behind_sequences(connection, context.schemas)
    if not behind:
        done = "every serial and identity sequence is past its column"
        return _unread_too(connection, "sequences", done, unread)
    names = listed(
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


def statistics(connection: Connection, context: CheckContext) -> Check:
    rows = connection.execute(_NEVER_ANALYZED, {"schemas": context.schemas}).all()
    if not rows:
        return Check(
            "statistics",
            "ok",
            "every table over autovacuum_analyze_threshold rows has been analyzed (autovacuum "
            "leaves smaller ones, whose plans need no statistics)",
        )
    names = listed([f"{schema}.{table}" for schema, table in rows])
    fixes = [f"ANALYZE {qualified(schema, table)};" for schema, table in rows]
    return Check.with_sql("statistics", "fail", f"never analyzed: {names}", fixes)


def srid(connection: Connection, context: CheckContext) -> Check:
    if connection.execute(text("SELECT to_regclass('geometry_columns')")).scalar() is None:
        return Check("srid", "skip", "PostGIS is not installed")
    rows = connection.execute(_SRID_ZERO, {"schemas": context.schemas}).all()
    if not rows:
        return _unread_too(
            connection, "srid", "no geometry column has SRID 0", _unread(connection, context)
        )
    names = listed([f"{schema}.{table}.{column}" for schema, table, column in rows])
    fixes = [_relabel(schema, table, column) for schema, table, column in rows]
    return Check.with_sql(
        "srid",
        "warn",
        f"no SRID declared (SRID 0) on {names}: tools and exports see no CRS there, and "
        "rows of any SRID go in",
        fixes,
        "give each its rows' SRID (which also declares it):",
    )


def _relabel(schema: str, table: str, column: str) -> str:
    """The statement that gives a column and its rows another SRID, the coordinates kept."""
    names = ", ".join(sql_literal(name) for name in (schema, table, column))
    return f"SELECT UpdateGeometrySRID({names}, <srid>);"


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


def degree_extents(connection: Connection, context: CheckContext) -> Check:
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
        done = "no column of longitudes and latitudes holds a latitude beyond ±90"
        return _unread_too(connection, name, done, _unread(connection, context))
    names = listed(
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


def _unread(connection: Connection, context: CheckContext) -> list[str]:
    """The tables with spatial columns the role may not read (:data:`_UNREADABLE_SPATIAL`)."""
    rows = connection.execute(_UNREADABLE_SPATIAL, {"schemas": context.schemas}).all()
    return [qualified(schema, table) for schema, table in rows]


def _unread_too(connection: Connection, name: str, done: str, unread: Sequence[str]) -> Check:
    """``done`` as the check's result, or, where it could not read every table, a warning
    naming those it passed over, with the GRANT that lets it."""
    if not unread:
        return Check(name, "ok", done)
    role = connection.execute(text("SELECT current_user")).scalar_one()
    return Check(
        name,
        "warn",
        f"{done} among the tables role {role} may read; not checked, as it may not read "
        f"them: {listed(list(unread))}",
        f"check as a role that may read them, or GRANT SELECT ON {', '.join(unread)} TO "
        f"{quote(role)};",
    )
