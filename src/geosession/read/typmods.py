"""The SRID and type of a read's geometry columns before any row: their type modifiers.

psycopg 3 reports each result column's type modifier and the table column it reads
(through SQLAlchemy's async adapter too); psycopg2 the table column only, whose modifier
is the catalogue's. asyncpg reports neither: there the table column is the one the
statement selects as it is (``select(Parcel)``, a table's name, as SQLAlchemy traces
it). Without one a read knew a column's SRID only from its rows: a ``bbox`` filter then
transformed its box row by row, which no GiST index serves, and a read of no rows had
no CRS.

A table's geometry column that CHECK constraints declare (PostGIS 1's,
``AddGeometryColumn(..., use_typmod => false)``) has no modifier: PostGIS's reading of
the constraints stands in for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CompoundSelect, Select, Subquery, TableClause, text
from sqlalchemy.sql.elements import ColumnClause

from geosession.read.decode import Rows
from geosession.read.plan import typmod_of
from geosession.read.source import quoted_table, star_table

_SPATIAL = ("geometry", "geography")

_Wanted = tuple[int, int | None, int | None, str | None, str | None]
"""A result column's index, and its table column: by OID and number, or by names."""


@dataclass(frozen=True)
class TypmodLookup:
    """The modifiers the driver reported (None where it reported none), and the catalogue
    query for the others that can be known (None: no query needed)."""

    typmods: list[int | None]
    query: Any

    def complete(self, rows: Rows) -> list[int | None]:
        """The modifiers, with those ``query``'s rows give."""
        typmods = list(self.typmods)
        for index, typmod, srid, geometry_type, dimension in rows:
            if (srid, geometry_type, dimension) != (None, None, None):
                typmod = typmod_of(srid or 0, geometry_type or "GEOMETRY", dimension or 2)
            typmods[index] = typmod
        return typmods


def typmod_lookup(
    description: Sequence[Sequence[Any]],
    source: Subquery,
    spatial: Mapping[int, str],
    result: Any = None,
) -> TypmodLookup:
    """What is known of the modifiers of the result columns ``description`` gives (the
    describe step's, over the caller's statement ``source``); ``spatial``: PostGIS's type
    OIDs; ``result``: psycopg 3's ``pgresult`` of the describe step, where there is one."""
    wanted: list[_Wanted]
    if result is not None:
        typmods: list[int | None] = [result.fmod(i) for i in range(result.nfields)]
        wanted = [
            (i, result.ftable(i), result.ftablecol(i), None, None)
            for i in range(result.nfields)
            if spatial.get(result.ftype(i)) == "geometry" and typmods[i] == -1 and result.ftable(i)
        ]
    else:
        typmods = [None] * len(description)
        wanted = _catalogued(description, source, spatial)
    if not wanted:
        return TypmodLookup(typmods, None)
    relids, attnums, tables, columns = ([entry[n] for entry in wanted] for n in range(1, 5))
    query = _DECLARED_SQL.bindparams(
        indexes=[entry[0] for entry in wanted],
        relids=relids,
        attnums=attnums,
        tables=tables,
        columns=columns,
    )
    return TypmodLookup(typmods, query)


def _catalogued(
    description: Sequence[Sequence[Any]], source: Subquery, spatial: Mapping[int, str]
) -> list[_Wanted]:
    """The spatial result columns whose table column is known: psycopg2's description
    names it (``table_oid``, ``table_column``: any query's, SQL text's too), else
    SQLAlchemy traces it in ``source``."""
    origins = table_columns(source, [str(entry[0]) for entry in description])
    wanted: list[_Wanted] = []
    for index, (entry, origin) in enumerate(zip(description, origins, strict=True)):
        if spatial.get(int(entry[1])) not in _SPATIAL:
            continue
        relid, attnum = getattr(entry, "table_oid", None), getattr(entry, "table_column", None)
        if relid and attnum:
            wanted.append((index, int(relid), int(attnum), None, None))
        elif origin is not None:
            wanted.append((index, None, None, *origin))
    return wanted


def table_columns(source: Subquery, names: Sequence[str]) -> list[tuple[str, str] | None]:
    """For each result column (named ``names``, as described), the table (quoted, as
    ``to_regclass`` reads it) and column it reads as they are, where the statement says
    so; None for an expression, a text query's column, or a column of a union of several."""
    statement = source.element
    if not isinstance(statement, Select | CompoundSelect):
        return [None] * len(names)
    star = star_table(statement)
    if star is not None:
        return [(star, name) for name in names]
    columns = list(source.c)
    if len(columns) != len(names):
        return [None] * len(names)
    return [_origin(column) for column in columns]


def _origin(column: Any) -> tuple[str, str] | None:
    bases = list(column.base_columns)
    if len(bases) != 1:
        return None
    base = bases[0]
    table = getattr(base, "table", None)
    if not isinstance(base, ColumnClause) or base.is_literal or not isinstance(table, TableClause):
        return None
    return quoted_table(table), str(base.name)


_DECLARED_SQL = text(
    "SELECT q.i, a.atttypmod, "
    "CASE WHEN k.constrained THEN "
    "postgis_constraint_srid(n.nspname::text, c.relname::text, a.attname::text) END, "
    "CASE WHEN k.constrained THEN "
    "postgis_constraint_type(n.nspname::text, c.relname::text, a.attname::text) END, "
    "CASE WHEN k.constrained THEN "
    "postgis_constraint_dims(n.nspname::text, c.relname::text, a.attname::text) END "
    "FROM unnest(CAST(:indexes AS int[]), CAST(:relids AS oid[]), CAST(:attnums AS int2[]), "
    "CAST(:tables AS text[]), CAST(:columns AS text[])) AS q(i, relid, attnum, tab, col) "
    "JOIN pg_attribute a ON a.attrelid = coalesce(q.relid, to_regclass(q.tab)) "
    "AND (a.attnum = q.attnum OR a.attname = q.col) AND NOT a.attisdropped "
    "JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_type t ON t.oid = a.atttypid "
    "CROSS JOIN LATERAL (SELECT a.atttypmod = -1 AND t.typname = 'geometry' "
    "AND EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = a.attrelid "
    "AND k.contype = 'c' AND a.attnum = ANY (k.conkey)) AS constrained) k"
)
"""Each table column's type modifier and, for a geometry column without one that CHECK
constraints declare, the SRID, type and dimensions they do (PostGIS reads the
constraints only where a column has some). Columns come by table OID and attribute
number (as psycopg reports them) or by quoted table name and column name (as the
statement says them)."""
