"""What to read: the caller's statement as the subquery ``q``, or a table name or SQL
that a person typed.

A table name (``parcels``, ``gis.parcels``, ``"Weird Names"``: see :mod:`geosession.names`)
becomes ``SELECT * FROM "schema"."table"`` with both parts quoted; text that begins as a
query does (SELECT, WITH, VALUES, TABLE or a parenthesis) is taken as SQL. ``where`` is
SQL too, run as given by the user's own choice, inside the read-only transaction every
read uses.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    FromClause,
    Select,
    Subquery,
    Table,
    TableClause,
    TextClause,
    inspect,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnClause, Label
from sqlalchemy.sql.selectable import CompoundSelect, TextualSelect

from geosession.errors import ConfigurationError
from geosession.names import identifier_table_name, split_table_name
from geosession.placeholders import mismatch
from geosession.read.decode import Rows
from geosession.read.plan import AUTO_KEY, ReadOptions, quote_identifier
from geosession.sql_text import one_statement


def as_subquery(statement: Any, params: Mapping[str, Any] | None = None) -> Subquery:
    """The caller's statement as the subquery ``q``: a select (Core or ORM), a text
    query, SQL as a string, a table's name, a Table or a mapped class."""
    if isinstance(statement, str):
        name = identifier_table_name(statement)
        statement = text(_query(statement)) if name is None else _every_column(*name)
    if isinstance(statement, TextClause):
        statement = _bound(statement, params)
        subquery: Subquery = statement.columns().subquery("q")
        return subquery
    if params:
        raise ConfigurationError("params= applies to SQL given as text; bind values in the select")
    if isinstance(statement, Select | CompoundSelect | TextualSelect):
        return statement.subquery("q")
    if isinstance(statement, FromClause):
        return select(statement).subquery("q")
    mapper = inspect(statement, raiseerr=False)
    if mapper is not None and getattr(mapper, "is_mapper", False):
        return select(statement).subquery("q")
    raise ConfigurationError(
        f"cannot read from {type(statement).__name__}: give a select (Core or ORM), a text() "
        "query, SQL as a string, a table's name, a Table or a mapped class"
    )


def paged_options(statement: Any, options: ReadOptions) -> ReadOptions:
    """``options``, their pages going down the key where ``statement`` is ordered by it
    descending (``select(Parcel).order_by(Parcel.id.desc())``, newest first), and
    ``pages_by="auto"`` made the key it means, or no pages (a cursor).

    Pages come in the key's order (``WHERE key > :last ORDER BY key``): a select ordered
    by anything else would come in an order it does not ask for, so it is refused (read
    by a cursor, for "auto"). The ORDER BY of SQL text is not read (it is lost)."""
    key = options.pages_by
    if key == AUTO_KEY:
        key = primary_key_name(statement)
        if key is None and star_table(statement) is not None:
            return options  # a table's name: its key is looked up as the read starts
        options = replace(options, pages_by=key)
    if key is None or not isinstance(statement, Select | CompoundSelect):
        return options
    clauses = statement._order_by_clauses  # SQLAlchemy has no public reader of it
    if not clauses:
        return options
    ordered_by, descending = _order_key(clauses[0])
    if len(clauses) == 1 and _is_key(ordered_by, key, statement):
        return replace(options, pages_descending=descending)
    if options.pages_by_auto:
        return replace(options, pages_by=None)
    order = ", ".join(str(clause) for clause in clauses)
    raise ConfigurationError(
        f"pages_by={key!r} (CLI: --pages-by) reads pages in the order of {key} (WHERE {key} "
        f"> the last key ORDER BY {key}), so the statement's ORDER BY {order} would be lost: "
        f"order by {key} alone (ascending, or descending for pages that go down it), "
        "leave the ORDER BY out, or leave pages_by out (a server-side cursor keeps the order)"
    )


def primary_key_name(statement: Any) -> str | None:
    """The result name of the key of the one table ``statement`` reads rows of
    (``select(Parcel)``, a WHERE, a label of the key included), where the key is one
    column and the select has it; None for anything else (joins, SQL text, a table's
    name, aggregates)."""
    if not isinstance(statement, Select):
        return None
    froms = statement.get_final_froms()
    if len(froms) != 1 or not isinstance(froms[0], Table):
        return None
    keys = list(froms[0].primary_key.columns)
    if len(keys) != 1:
        return None
    for column in statement.selected_columns:
        bare = _unlabelled(column)
        if isinstance(bare, ColumnClause) and bare.shares_lineage(keys[0]):
            return str(column.name)
    return None


def key_lookup(source: Subquery, options: ReadOptions) -> Any | None:
    """The query for the one-column primary key of the table whose name is read, where
    ``pages_by="auto"`` is left to the read (None: nothing to look up)."""
    table = star_table(source.element) if options.pages_by == AUTO_KEY else None
    return None if table is None else _PRIMARY_KEY_SQL.bindparams(table=table)


def with_key(options: ReadOptions, rows: Rows) -> ReadOptions:
    """``options`` paging by the key :func:`key_lookup`'s ``rows`` name, or by none."""
    names = [str(name) for (name,) in rows]
    return replace(options, pages_by=names[0] if len(names) == 1 else None)


_PRIMARY_KEY_SQL = text(
    "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
    "AND a.attnum = i.indkey[0] WHERE i.indrelid = to_regclass(:table) AND i.indisprimary "
    "AND i.indnatts = 1"
)


def star_table(statement: Any) -> str | None:
    """The table of ``SELECT * FROM table`` (how a table's name is read), quoted as
    ``to_regclass`` reads it."""
    if not isinstance(statement, Select) or len(statement.selected_columns) != 1:
        return None
    (selected,) = statement.selected_columns
    froms = statement.get_final_froms()
    if not (isinstance(selected, ColumnClause) and selected.is_literal and selected.name == "*"):
        return None
    if len(froms) != 1 or not isinstance(froms[0], TableClause):
        return None
    return quoted_table(froms[0])


def quoted_table(table: TableClause) -> str:
    """``"schema"."name"`` (or ``"name"``), as ``to_regclass`` reads it."""
    parts = [table.schema, table.name] if table.schema else [table.name]
    return ".".join(quote_identifier(part) for part in parts)


def _order_key(clause: Any) -> tuple[str | ColumnClause[Any] | Label[Any] | None, bool]:
    """The column (or name) an ORDER BY item sorts by, if a column's, and whether
    descending."""
    descending = False
    while not isinstance(clause, str | ColumnClause | Label):
        modifier = getattr(clause, "modifier", None)
        if modifier in (operators.asc_op, operators.desc_op):
            descending = modifier is operators.desc_op
        clause = getattr(clause, "element", None)  # under ASC/DESC, NULLS LAST, a label
        if clause is None:
            return None, descending
    return clause, descending


def _is_key(ordered_by: Any, key: str, statement: Select[Any] | CompoundSelect[Any]) -> bool:
    """Whether an ORDER BY item is the key: by its name, or as the column the key's result
    column labels (``select(Parcel.id.label("pid"), ...).order_by(Parcel.id)``)."""
    if ordered_by is None:
        return False
    if (ordered_by if isinstance(ordered_by, str) else str(ordered_by.name)) == key:
        return True
    named = [column for column in statement.selected_columns if column.key == key]
    bare = _unlabelled(named[0]) if len(named) == 1 else None
    return (
        isinstance(ordered_by, ColumnClause)
        and isinstance(bare, ColumnClause)
        and ordered_by.shares_lineage(bare)
    )


def _unlabelled(column: Any) -> Any:
    """A result column's expression without its label."""
    return column.element if isinstance(column, Label) else column


def _bound(statement: TextClause, params: Mapping[str, Any] | None) -> TextClause:
    """``params`` bound to the SQL's ``:names``, each placeholder with a value and each
    value with a placeholder, or refused before the query runs (a placeholder without one
    failed inside the read as SQLAlchemy's "A value is required for bind parameter")."""
    problem = mismatch(statement, params or {}, postgresql.dialect())  # type: ignore[no-untyped-call]
    if problem is not None:
        raise ConfigurationError(f"Cannot read: {problem}")
    return statement.bindparams(**params) if params else statement


def _every_column(schema: str | None, name: str) -> Select[Any]:
    """``SELECT * FROM "schema"."name"``."""
    return select(literal_column("*")).select_from(table(name, schema=schema))


_COLONS = re.compile(r"(?<!\\)(:+)(\w*)")


def raw_sql(sql: str, binds: Collection[str] = ()) -> TextClause:
    """User-typed SQL taken literally: colons are not bind parameters (``'12:30'``,
    ``geom::geography``), except ``:name`` for a name in ``binds``."""

    def escaped(match: re.Match[str]) -> str:
        colons, name = match.groups()
        if colons == ":" and name in binds:
            return match.group(0)
        return colons.replace(":", "\\:") + name

    return text(_COLONS.sub(escaped, sql))


def describe_statement(source: Subquery) -> Select[Any]:
    """``SELECT * FROM (...) q LIMIT 0``: the result's columns and types, no rows."""
    return select(literal_column("*")).select_from(source).limit(0)


_QUERY_START = re.compile(r"^\s*(?:\(|(?:select|with|values|table)\b)", re.IGNORECASE)


def table_name(source: str) -> tuple[str | None, str] | None:
    """``(schema, table)`` when ``source`` is a table name, else None (SQL)."""
    return None if _QUERY_START.match(source) else split_table_name(source)


def source_query(source: str, *, where: str | None = None, binds: Collection[str] = ()) -> Any:
    """The select for a table name or an SQL query, filtered by ``where`` (raw SQL);
    ``:name`` in either is a bind parameter for each name in ``binds``."""
    name = table_name(source)
    statement: Any
    if name is not None:
        statement = _every_column(*name)
    elif where is None:
        return raw_sql(_query(source), binds)
    else:
        statement = select(literal_column("*")).select_from(
            raw_sql(_query(source), binds).columns().subquery("source")
        )
    if where is not None:
        condition = one_statement(where, what="A where condition (CLI: --where)")
        statement = statement.where(raw_sql(condition + "\n", binds))
    return statement


def _query(sql: str) -> str:
    """SQL read as a subquery: its one statement, without the semicolon psql's habits
    leave after it, and ended by a new line so that a comment on its last line does not
    hide the rest of the select it goes into."""
    return one_statement(sql, what="A read") + "\n"
