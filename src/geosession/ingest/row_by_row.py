"""Rows the server refuses, found by the server itself: one statement per row, in a loop.

An INSERT from the staging table that fails names no row, and a COPY names only the
first it fails at; halving such a chunk down to its bad rows cost a savepoint, a COPY and
an INSERT per step (5,000 rows with one bad row in a hundred: 760 COPYs and INSERTs).
Instead the rows in question are staged once, numbered, and a PL/pgSQL block moves each
alone, catching its error in a subtransaction: one round trip, about 12 µs a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

ROWS = sql.Identifier("geosession_ingest_rows")
"""The staging table of numbered rows (dropped when the chunk's transaction ends)."""
ROW = "geosession_ingest_row"
"""Its column of each row's position in the chunk."""
GROUP = "geosession_ingest_group"
"""The staging tables' column of each row's group of lacking columns (:mod:`.lacking`)."""
_REFUSED = sql.Identifier("geosession_ingest_refused")
_INSERTED = "geosession.ingest_inserted"
THIS_ROW = sql.SQL("{} = geosession_ingest.this_row").format(sql.Identifier(ROW))
"""The condition that picks the loop's current row out of :data:`ROWS`."""


@dataclass(frozen=True)
class Refusal:
    """What the server said when it refused a row."""

    sqlstate: str | None
    message: str
    detail: str | None = None
    column: str | None = None
    constraint: str | None = None
    context: str | None = None

    @classmethod
    def of(cls, error: psycopg.Error) -> Refusal:
        diag = error.diag
        return cls(
            error.sqlstate,
            diag.message_primary or str(error),
            diag.message_detail,
            diag.column_name,
            diag.constraint_name,
            diag.context,
        )


def prepare(cursor: psycopg.Cursor[Any]) -> None:
    """The index that finds each row of :data:`ROWS` and the table the refusals go to,
    once per chunk (:data:`ROWS` itself is made like the chunk's staging table)."""
    cursor.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS geosession_ingest_rows_row ON {} ({}); "
            "CREATE TEMP TABLE IF NOT EXISTS {} (row int4, sqlstate text, message text, "
            "detail text, constraint_name text, column_name text) ON COMMIT DROP"
        ).format(ROWS, sql.Identifier(ROW), _REFUSED)
    )


def insert_each(
    cursor: psycopg.Cursor[Any],
    rows: sql.Composable,
    statements: Mapping[int | None, sql.Composable],
    refused_states: Sequence[str],
    key: Sequence[sql.Composable] = (),
) -> tuple[int, dict[int, Refusal]]:
    """Moves the rows of :data:`ROWS` that ``rows`` picks, each alone by the statement of
    its group (``statements[None]`` when rows are not grouped), which picks it by
    :data:`THIS_ROW`. A row whose statement fails with one of ``refused_states``
    (SQLSTATEs; a class as ``'22000'``) is recorded and the loop goes on; any other error
    ends it. With a ``key`` (on_conflict="update"'s), a key's rows are tried from its last
    on, and the first one written stands, as the set-based INSERT keeps each key's last.

    Returns the rows the statements reported, and each refused row's refusal.
    """
    grouped = None not in statements
    turn: sql.Composable = sql.SQL("1")
    order: sql.Composable = sql.Identifier(ROW)
    if key:
        nullable = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(k) for k in key)
        keys = sql.SQL(", ").join(key)
        turn = sql.SQL(
            "CASE WHEN {} THEN 1 ELSE row_number() OVER (PARTITION BY {} ORDER BY {} DESC) END"
        ).format(nullable, keys, sql.Identifier(ROW))
        order = sql.SQL("{}, 3").format(keys)
    group = sql.Identifier(GROUP) if grouped else sql.SQL("NULL::int4")
    picked = sql.SQL("SELECT {}, {}, {} FROM {} WHERE {} ORDER BY {}").format(
        sql.Identifier(ROW), group, turn, ROWS, rows, order
    )
    cursor.execute(
        _BLOCK.format(
            picked=picked,
            statement=_dispatch(statements),
            caught=_caught(refused_states),
            refused=_REFUSED,
            inserted=sql.Literal(_INSERTED),
        )
    )
    cursor.execute(sql.SQL("SELECT current_setting({})::bigint").format(sql.Literal(_INSERTED)))
    found = cursor.fetchone()
    inserted = int(found[0]) if found else 0
    cursor.execute(
        sql.SQL(
            "DELETE FROM {} RETURNING row, sqlstate, message, detail, constraint_name, column_name"
        ).format(_REFUSED)
    )
    refusals = {
        row: Refusal(state, message, detail or None, column or None, constraint or None)
        for row, state, message, detail, constraint, column in cursor.fetchall()
    }
    return inserted, refusals


_BLOCK = sql.SQL(
    """DO $geosession_ingest$ #variable_conflict use_column
<<geosession_ingest>>
DECLARE
  this_row int4; this_group int4; turn int8; written boolean := false;
  counted bigint; total bigint := 0;
  state text; message text; detail text; constraint_name text; column_name text;
BEGIN
  FOR geosession_ingest.this_row, geosession_ingest.this_group, geosession_ingest.turn IN
    {picked}
  LOOP
    CONTINUE WHEN geosession_ingest.turn > 1 AND geosession_ingest.written;
    geosession_ingest.written := false;
    BEGIN
      {statement}
      GET DIAGNOSTICS geosession_ingest.counted = ROW_COUNT;
      geosession_ingest.total := geosession_ingest.total + geosession_ingest.counted;
      geosession_ingest.written := true;
    EXCEPTION WHEN {caught} THEN
      GET STACKED DIAGNOSTICS
        geosession_ingest.state = RETURNED_SQLSTATE,
        geosession_ingest.message = MESSAGE_TEXT,
        geosession_ingest.detail = PG_EXCEPTION_DETAIL,
        geosession_ingest.constraint_name = CONSTRAINT_NAME,
        geosession_ingest.column_name = COLUMN_NAME;
      INSERT INTO {refused} VALUES (
        geosession_ingest.this_row, geosession_ingest.state, geosession_ingest.message,
        geosession_ingest.detail, geosession_ingest.constraint_name,
        geosession_ingest.column_name);
    END;
  END LOOP;
  PERFORM set_config({inserted}, geosession_ingest.total::text, true);
END $geosession_ingest$"""
)
"""Each picked row (its number, group and turn among its key's rows) moved alone; a row
is skipped when a later row of its key was written (``turn`` counts from a key's last)."""


def _dispatch(statements: Mapping[int | None, sql.Composable]) -> sql.Composable:
    """The statement of the current row's group: an IF over the groups when there are
    several."""
    if None in statements:
        return sql.SQL("{};").format(statements[None])
    branches = [
        sql.SQL("{} geosession_ingest.this_group = {} THEN {};").format(
            sql.SQL("IF" if position == 0 else "ELSIF"), sql.Literal(group), statement
        )
        for position, (group, statement) in enumerate(statements.items())
    ]
    return sql.SQL(" ").join([*branches, sql.SQL("END IF;")])


def _caught(states: Sequence[str]) -> sql.Composable:
    return sql.SQL(" OR ").join(sql.SQL("SQLSTATE {}").format(sql.Literal(s)) for s in states)
