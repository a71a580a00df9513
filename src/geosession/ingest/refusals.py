"""Rows the server refused: which row a COPY's error names, whether the error is the
row's data, and the reject that names the row's column (read from the error's context,
a key's detail, the constraint's one column, or the value whose cast fails)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from geosession.errors import IntegrityViolation
from geosession.geometry import hex_as_wkt
from geosession.ingest.row_by_row import Refusal
from geosession.ingest.target import sql_literal
from geosession.ingest.validate import Reject, as_text
from geosession.ingest.write_plan import WritePlan, is_text_cast

_ROW_LEVEL = ("22", "23", "XX", "P0", "42804")
"""SQLSTATEs caused by a row's data (data exceptions, constraints, PostGIS, triggers)."""
_POLICY_VIOLATION = "42501"
"""A row a row-level security policy's WITH CHECK refuses (insufficient privilege: the
target's own privileges are checked before the load)."""
_UNIQUE_VIOLATION = "23505"


def refused_states(plan: WritePlan) -> list[str]:
    """The SQLSTATEs of :func:`row_level`, as PL/pgSQL's handler names them."""
    states = [state if len(state) == 5 else f"{state}000" for state in _ROW_LEVEL]
    return [*states, *([_POLICY_VIOLATION] if plan.target.row_security else [])]


def failed_row(context: str | None, start: int, stop: int) -> int | None:
    """The row of [start, stop) a COPY's error context names (its last "COPY t, line N":
    a trigger's own lines come before it), if any."""
    lines = re.findall(r"^COPY .+, line (\d+)", context or "", re.M)
    if not lines:
        return None
    at = start + int(lines[-1]) - 1
    return at if start <= at < stop else None


def row_level(error: psycopg.Error, plan: WritePlan) -> bool:
    """Caused by one row's data: the server's data errors, and a policy's refusal on a
    table under row-level security (a lost connection has another SQLSTATE or none)."""
    state = str(error.sqlstate or "")
    if plan.target.row_security and state == _POLICY_VIOLATION:
        return True
    return bool(state) and state.startswith(_ROW_LEVEL)


def server_reject(
    conn: psycopg.Connection[Any],
    plan: WritePlan,
    row: int,
    values: tuple[Any, ...],
    refusal: Refusal,
    constraints: dict[str, str | None] | None = None,
) -> Reject:
    """The reject of source row ``row`` (its ``values`` as sent), which the server refused;
    a duplicate key under on_conflict="error" ends the chunk instead (the key may be
    another run's). ``constraints``: the column of each constraint looked up so far, for
    many rejects."""
    known = {} if constraints is None else constraints
    detail = f" ({hex_as_wkt(refusal.detail)})" if refusal.detail else ""
    if refusal.sqlstate == _UNIQUE_VIOLATION and plan.on_conflict == "error":
        raise IntegrityViolation(
            f"Row {row}'s key is already in {plan.target.quoted} (a row there, or an "
            f"earlier row of the source): {refusal.message}{detail}. "
            + _duplicate_advice(conn, plan, refusal.detail),
            sqlstate=refusal.sqlstate,
        )
    column = (
        refusal.column
        or _copy_column(refusal.context, plan.columns)
        or _key_column(refusal.detail, plan.columns)
        or _constraint_column(conn, plan, refusal.constraint, known)
        or _failed_cast(conn, plan, values)
    )
    value = dict(zip(plan.columns, values, strict=True)).get(column) if column else None
    return Reject(row, column, "server", f"{refusal.message}{detail}", shown(value))


_DRAWN_SEQUENCE = r"""
SELECT coalesce(pg_get_serial_sequence(%(table)s, %(column)s),
    (regexp_match(pg_get_expr(d.adbin, d.adrelid), '^nextval\(''(.+)''::regclass\)$'))[1])
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %(oid)s AND a.attname = %(column)s
"""
"""The sequence a column's default draws from: a serial's or identity's, or the one its
own DEFAULT nextval('...') names (a sequence no column owns)."""


def _duplicate_advice(conn: psycopg.Connection[Any], plan: WritePlan, detail: str | None) -> str:
    """What to do about a duplicate key: where the source gave no value for it, the
    column's default (its sequence) handed out one the table holds, which ignoring
    conflicts would turn into rows lost."""
    named = _key_column(detail, tuple(c.name for c in plan.target.columns))
    if named is None or named in plan.columns:
        return (
            "Pass on_conflict='ignore' (CLI: --on-conflict ignore) to keep the existing rows, "
            "or 'update' to overwrite them"
        )
    target = plan.target
    found = conn.execute(
        _DRAWN_SEQUENCE, {"table": target.quoted, "column": named, "oid": target.oid}
    )
    sequence = (found.fetchone() or (None,))[0]
    if sequence is None:
        return (
            f"The source gives no {named}: its default handed out a value the table holds. "
            f"Give the rows their own {named}, or a default that draws new values; "
            "on_conflict='ignore' would drop these rows"
        )
    column, table = target.quote(named), target.quoted
    setval = f"SELECT setval({sql_literal(sequence)}, max({column})) FROM {table}"  # noqa: S608 - advice
    return (
        f"The source gives no {named}: its default (a sequence) handed out an id the table "
        "holds, as it does when rows were loaded with their own ids (another load keeping a "
        "GeoPackage's fids, a restore, INSERTs naming the id) without moving the sequence. "
        f"Move it past them ({setval}) and run the same load again; on_conflict='ignore' "
        "would drop these rows"
    )


def _failed_cast(
    conn: psycopg.Connection[Any], plan: WritePlan, values: tuple[Any, ...]
) -> str | None:
    """The column whose text the server cannot cast to its type (the INSERT from the stage
    names none): each such value of the row cast alone."""
    for column, copy_type, value in zip(plan.columns, plan.copy_types, values, strict=True):
        if is_text_cast(copy_type) and value is not None:
            cast = sql.SQL("SELECT CAST(CAST(%s AS {}) AS {})").format(
                sql.SQL(str(copy_type)), sql.SQL(copy_type.cast_to)
            )
            try:
                with conn.transaction():
                    conn.execute(cast, (value,))
            except psycopg.Error:
                return column
    return None


def _copy_column(context: str | None, columns: tuple[str, ...]) -> str | None:
    """The column a COPY error names in its context ("COPY t, line 1, column c")."""
    named = (re.search(rf", column {re.escape(c)}(:|$)", context or "", re.M) for c in columns)
    return next((c for c, match in zip(columns, named, strict=True) if match), None)


def _constraint_column(
    conn: psycopg.Connection[Any],
    plan: WritePlan,
    constraint: str | None,
    known: dict[str, str | None],
) -> str | None:
    """The one column a constraint of the target is on (CHECK (area > 0)), if it is one;
    read once per constraint into ``known``."""
    if constraint is None:
        return None
    if constraint not in known:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "SELECT array_agg(a.attname::text) FROM pg_constraint c JOIN pg_attribute a "
                "ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
                "WHERE c.conrelid = %s AND c.conname = %s",
                (plan.target.oid, constraint),
            )
            found = cursor.fetchone()
        names = found[0] if found and found[0] else []
        known[constraint] = names[0] if len(names) == 1 and names[0] in plan.columns else None
    return known[constraint]


def _key_column(detail: str | None, columns: tuple[str, ...]) -> str | None:
    """The column a key's detail names ("Key (parent)=(99) is not present ...", "Partition
    key of the failing row contains (region) = (x)"): a foreign key's, an exclusion
    constraint's or a partition key's of one column."""
    match = re.match(
        r'(?:Key|Partition key of the failing row contains) \((?:"((?:[^"]|"")+)"|([^,()"]+))\) ?=',
        detail or "",
    )
    if match is None:
        return None
    name = match[1].replace('""', '"') if match[1] is not None else match[2]
    return name if name in columns else None


def shown(value: Any) -> str | None:
    """A sent value as text for the rejects table (JSON text as it came)."""
    return as_text(value.obj if isinstance(value, Json | Jsonb) else value)
