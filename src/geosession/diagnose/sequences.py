"""Sequences behind their columns: the next INSERT that takes the default would collide.

A load that writes its own ids (a COPY of a GeoPackage's fids, ``ogr2ogr -preserve_fid``,
a data-only restore, INSERTs naming the id) leaves the column's serial or identity
sequence where it was, and the next INSERT that takes the default fails with "duplicate
key value violates unique constraint". geosession's ingest moves such sequences on; doctor
finds those other tools left behind. Only columns that lead a valid btree index are looked
at, so each ``max()`` is an index lookup, not a scan of the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from geosession.diagnose.catalog import USER_TABLES_SQL
from geosession.diagnose.plan_text import qualified, quote

_SEQUENCED = text(
    "SELECT n.nspname, c.relname, a.attname, "  # noqa: S608 (constants only)
    "quote_ident(sn.nspname) || '.' || quote_ident(sc.relname) AS sequence, "
    "has_sequence_privilege(sc.oid, 'SELECT') AS readable, s.seqincrement AS increment "
    "FROM pg_depend dep "
    "JOIN pg_class sc ON sc.oid = dep.objid AND sc.relkind = 'S' "
    "JOIN pg_namespace sn ON sn.oid = sc.relnamespace "
    "JOIN pg_sequence s ON s.seqrelid = sc.oid "
    "JOIN pg_class c ON c.oid = dep.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = dep.refobjsubid "
    "WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass "
    "AND dep.deptype IN ('a', 'i') AND c.relkind IN ('r', 'p') AND s.seqincrement > 0 "
    "AND EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
    "JOIN pg_am am ON am.oid = ic.relam WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum "
    "AND i.indisvalid AND am.amname = 'btree') "
    f"AND {USER_TABLES_SQL} ORDER BY 1, 2, 3"
)
"""Serial (``OWNED BY``: deptype a) and identity (i) columns with their sequence."""


@dataclass(frozen=True)
class Behind:
    """A column whose sequence would hand out a value the table already holds."""

    schema: str
    table: str
    column: str
    sequence: str
    following: int
    """The value the next INSERT taking the default would get."""
    highest: int

    @property
    def fix(self) -> str:
        """The setval that moves the sequence past the column's values."""
        column = quote(self.column)
        return (
            f"SELECT setval('{self.sequence}', max({column})) "  # noqa: S608
            f"FROM {qualified(self.schema, self.table)};"
        )


def behind_sequences(
    connection: Connection, schemas: Sequence[str] | None
) -> tuple[list[Behind], list[str]]:
    """The serial and identity columns whose sequence is at or below their highest value,
    and the tables passed over, whose sequence or rows the role may not read."""
    behind, unread = [], []
    for row in connection.execute(_SEQUENCED, {"schemas": schemas}).all():
        table = qualified(row.nspname, row.relname)
        if not row.readable:
            unread.append(table)
            continue
        where = text(
            f"SELECT (SELECT max({quote(row.attname)}) FROM {table}), "  # noqa: S608 (quoted)
            f"last_value, is_called FROM {row.sequence}"
        )
        try:
            with connection.begin_nested():  # a table the role may not read fails alone
                highest, last_value, is_called = connection.execute(where).one()
        except DBAPIError:
            unread.append(table)
            continue
        following = last_value + row.increment if is_called else last_value
        if highest is not None and highest >= following:
            behind.append(
                Behind(row.nspname, row.relname, row.attname, row.sequence, following, highest)
            )
    return behind, sorted(set(unread))
