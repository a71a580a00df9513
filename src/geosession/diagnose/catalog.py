"""What the catalog says about the tables and indexes a plan reads.

Spatial columns (geometry, geography and domains over them), their spatial indexes (valid,
INVALID, being built), their declared SRIDs and whether their tables were ever analyzed.
The SQL fragments here are shared with doctor's table checks; every query takes names as
bind parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from geosession.diagnose.nodes import PlanNode
from geosession.read.plan import typmod_srid
from geosession.srs import in_degrees, spatial_ref, spatial_refs_sql

# Analyzed: the last ANALYZE's time (lost when the server recovers from a crash, on
# pg_stat_reset and on a standby, which keeps its own counters), or else the statistics
# it wrote, which survive all three. Over pg_class c, pg_namespace n, pg_stat_all_tables s.
ANALYZED_SQL = (
    "(s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL OR EXISTS "
    "(SELECT 1 FROM pg_stats st WHERE st.schemaname = n.nspname AND st.tablename = c.relname))"
)

_SPATIAL_TYPES = (
    "WITH RECURSIVE spatial(oid, base) AS ("
    "SELECT oid, typname FROM pg_type WHERE typname IN ('geometry', 'geography') "
    "AND typtype = 'b' UNION SELECT d.oid, spatial.base FROM pg_type d "
    "JOIN spatial ON d.typbasetype = spatial.oid WHERE d.typtype = 'd') "
)
"""geometry and geography, and the domains over them at any depth (CREATE DOMAIN
valid_point AS geometry(Point, 4326) CHECK (ST_IsValid(VALUE))), each with its base type."""
SPATIAL_COLUMN_SQL = f"a.atttypid IN ({_SPATIAL_TYPES}SELECT oid FROM spatial)"  # noqa: S608
"""Whether column ``a`` is of a spatial type (:data:`_SPATIAL_TYPES`)."""

USER_TABLES_SQL = (  # over pg_class c and pg_namespace n; :schemas, a text[] or NULL
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
    "AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%' "
    "AND (CAST(:schemas AS text[]) IS NULL OR n.nspname = ANY (CAST(:schemas AS text[]))) "
    "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
    "AND d.objid = c.oid AND d.deptype = 'e')"
)
"""The tables doctor looks at: not the system's, not an extension's (PostGIS's own), and
only those of ``:schemas`` when given."""

_SPATIAL_INDEXES_ON = (  # over pg_class c and pg_attribute a
    "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
    "JOIN pg_am am ON am.oid = ic.relam WHERE i.indrelid = c.oid "
    "AND a.attnum = ANY (i.indkey::int2[]) AND am.amname IN ('gist', 'spgist', 'brin')"
)
INDEXED_SQL = f"EXISTS (SELECT 1 {_SPATIAL_INDEXES_ON} AND i.indisvalid)"
"""Whether column ``a`` of table ``c`` has a spatial index the planner may use."""


def _unusable_indexes(*, building: bool) -> str:
    """The names of the spatial indexes on column ``a`` of table ``c`` that the planner
    may not use: those a CREATE INDEX CONCURRENTLY is building now, or (``building``
    False) those one that failed or was cancelled left INVALID."""
    running = "EXISTS" if building else "NOT EXISTS"
    return (
        f"ARRAY(SELECT ic.relname::text {_SPATIAL_INDEXES_ON} "  # noqa: S608 (constants only)
        f"AND NOT i.indisvalid AND {running} (SELECT 1 FROM pg_stat_progress_create_index p "
        "WHERE p.index_relid = i.indexrelid) ORDER BY 1)"
    )


INVALID_INDEXES_SQL = _unusable_indexes(building=False)
BUILDING_INDEXES_SQL = _unusable_indexes(building=True)
INVALID_INDEX_CAUSE = (
    "a CREATE INDEX CONCURRENTLY that failed or was cancelled left it, and the planner "
    "never uses it"
)

_SPATIAL_INDEX_NAMES = text(
    "SELECT DISTINCT ic.relname FROM pg_index i "
    "JOIN pg_class ic ON ic.oid = i.indexrelid "
    "JOIN pg_am am ON am.oid = ic.relam "
    "JOIN pg_opclass oc ON oc.oid = ANY (i.indclass::oid[]) "
    "JOIN pg_type t ON t.oid = oc.opcintype "
    "WHERE ic.relname = ANY (:names) AND am.amname IN ('gist', 'spgist', 'brin') "
    "AND t.typname IN ('geometry', 'geography')"
)
_TABLE_FACTS = text(
    "SELECT r.schema_name, r.table_name, a.attname, "  # noqa: S608 (constants only)
    f"{INDEXED_SQL} AS indexed, {INVALID_INDEXES_SQL} AS invalid, {ANALYZED_SQL} AS analyzed, "
    f"({_SPATIAL_TYPES}SELECT base FROM spatial WHERE spatial.oid = a.atttypid) AS base, "
    "CASE WHEN a.atttypmod >= 0 THEN a.atttypmod "
    "ELSE (SELECT t.typtypmod FROM pg_type t WHERE t.oid = a.atttypid) END AS typmod, "
    "CASE WHEN a.atttypmod < 0 AND a.attname IS NOT NULL "  # PostGIS 1's CHECK constraints
    "THEN postgis_constraint_srid(r.schema_name, r.table_name, a.attname) END AS checked "
    "FROM unnest(CAST(:schemas AS text[]), CAST(:tables AS text[])) AS r(schema_name, table_name) "
    "JOIN pg_namespace n ON n.nspname = r.schema_name "
    "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.table_name "
    "LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid "
    "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
    f"  AND {SPATIAL_COLUMN_SQL}"
)


@dataclass
class TableFacts:
    """A scanned table's geometry/geography columns (indexed or not) and its statistics."""

    analyzed: bool = True
    geo_columns: dict[str, bool] = field(default_factory=dict)
    """Column name -> whether a valid GiST/SP-GiST/BRIN index covers it."""
    invalid_indexes: dict[str, list[str]] = field(default_factory=dict)
    """Column name -> its spatial indexes left INVALID (:data:`INVALID_INDEXES_SQL`)."""
    base_types: dict[str, str] = field(default_factory=dict)
    """Column name -> geometry or geography (a domain's column: the type it is over)."""
    srids: dict[str, int] = field(default_factory=dict)
    """Column name -> the SRID its type declares (geometry(Point, 4326)), or a CHECK
    constraint (AddGeometryColumn(..., use_typmod => false)); 0 for any."""


@dataclass
class PlanFacts:
    """What the catalog says about the indexes and tables of one plan."""

    spatial_indexes: set[str] = field(default_factory=set)
    tables: dict[tuple[str, str], TableFacts] = field(default_factory=dict)
    degree_srids: set[int] = field(default_factory=set)
    """The columns' SRIDs whose coordinates are longitudes and latitudes (EPSG:4326 ...)."""

    @classmethod
    def load(cls, connection: Connection, root: PlanNode) -> PlanFacts:
        nodes = list(root.walk())
        indexes = sorted({n.index for n in nodes if n.index})
        tables = sorted({(n.schema, n.table) for n in nodes if n.schema and n.table})
        facts = cls()
        if indexes:
            rows = connection.execute(_SPATIAL_INDEX_NAMES, {"names": indexes})
            facts.spatial_indexes = {row[0] for row in rows}
        if tables:
            params = {"schemas": [s for s, _ in tables], "tables": [t for _, t in tables]}
            for row in connection.execute(_TABLE_FACTS, params):
                schema, table, column, indexed, invalid, analyzed, base, typmod, checked = row
                entry = facts.tables.setdefault((schema, table), TableFacts(analyzed=analyzed))
                if column is not None:
                    entry.geo_columns[column] = indexed
                    entry.invalid_indexes[column] = invalid
                    entry.base_types[column] = base
                    entry.srids[column] = typmod_srid(typmod) or checked or 0
        facts.degree_srids = _degree_srids(connection, facts)
        return facts


def _degree_srids(connection: Connection, facts: PlanFacts) -> set[int]:
    """Those of the geometry columns' SRIDs that spatial_ref_sys calls geographic."""
    srids = sorted(
        {
            srid
            for table in facts.tables.values()
            for column, srid in table.srids.items()
            if srid > 0 and table.base_types.get(column) == "geometry"
        }
    )
    if not srids or connection.execute(text(_SPATIAL_REF_SYS)).scalar() is None:
        return set()
    refs = map(spatial_ref, connection.execute(spatial_refs_sql(srids)))
    return {ref[0] for ref in refs if in_degrees(ref)}


_SPATIAL_REF_SYS = "SELECT to_regclass('spatial_ref_sys')"
