"""The staging table: rows that COPY cannot put into the target as they are (keys met by
on_conflict, values cast from text, tables under row-level security or INSERT rules, rows
lacking columns) are copied into a temporary table and moved on by an INSERT."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from geosession.errors import ConfigurationError
from geosession.ingest import row_by_row
from geosession.ingest.lacking import NOTHING, Lacking
from geosession.ingest.target import Target
from geosession.ingest.write_plan import OnConflict, WritePlan, is_text_cast

STAGE = sql.Identifier("geosession_ingest_stage")
GROUP = row_by_row.GROUP


def update_key(plan: WritePlan) -> list[sql.Composable]:
    """The staged values of the key on_conflict="update" matches rows on (none otherwise)."""
    if plan.on_conflict != "update":
        return []
    types = dict(zip(plan.columns, plan.copy_types, strict=True))
    return [_staged_value(k, types[k]) for k in conflict_key(plan.target, plan.columns, "update")]


def create_stage(
    cursor: psycopg.Cursor[Any], plan: WritePlan, *, grouped: bool, numbered: bool = False
) -> None:
    """A temporary staging table that lives only as long as this chunk's transaction: the
    loaded columns' types (text for those cast from it), each row's group when rows lack
    columns, and nothing else (the target's defaults and identities fill the columns the
    source leaves out when the rows move on; a copied NOT NULL would refuse them in the
    stage)."""
    staged = [
        sql.SQL("CAST({0} AS {1}) AS {0}").format(sql.Identifier(c), sql.SQL(t))
        if is_text_cast(t)
        else sql.Identifier(c)
        for c, t in zip(plan.columns, plan.copy_types, strict=True)
    ]
    extra = [GROUP] if grouped else []
    for name in [*extra, *([row_by_row.ROW] if numbered else [])]:
        staged.append(sql.SQL("CAST(NULL AS int4) AS {}").format(sql.Identifier(name)))
    columns = sql.SQL(", ").join(staged)
    made = sql.SQL("IF NOT EXISTS {}").format(row_by_row.ROWS) if numbered else STAGE
    cursor.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            made, columns, sql.SQL(plan.target.quoted)
        )
    )


def conflict_key(
    target: Target, columns: Sequence[str], on_conflict: OnConflict
) -> tuple[str, ...]:
    """The key that on_conflict='update' matches rows on: the primary key, else the first
    unique key, whose columns the source gives ('ignore' skips a row that conflicts on any:
    ``()``). A target without one is refused before the first row, naming its keys."""
    if on_conflict != "error" and target.insert_rules:
        raise ConfigurationError(
            f"on_conflict={on_conflict!r} loads by INSERT ... ON CONFLICT, which PostgreSQL "
            f"refuses on {target.quoted}: it has rules ON INSERT. Use on_conflict='error', "
            "or load the table the rules write into"
        )
    if on_conflict == "error" or (on_conflict == "ignore" and target.unique_keys):
        return ()
    given = set(columns)
    key = next((key for key in target.unique_keys if given >= set(key)), None)
    if key is not None:
        return key
    if not target.unique_keys:
        raise ConfigurationError(
            f"on_conflict={on_conflict!r} needs a primary key or a unique constraint on "
            f"{target.quoted}, and it has none: add one, or use on_conflict='error'"
        )
    keys = " or ".join(f"({', '.join(key)})" for key in target.unique_keys)
    raise ConfigurationError(
        f"on_conflict='update' matches rows of {target.quoted} by its primary key or a unique "
        f"constraint, {keys}, and the source gives the columns of none of them: add them to "
        "the source"
    )


def from_stage(
    plan: WritePlan,
    lacking: Lacking = NOTHING,
    group: int | None = None,
    *,
    picked: sql.Composable | None = None,
) -> sql.Composed:
    """The INSERT that moves the staged rows (those of ``group``, which lack the columns
    ``lacking``: their DEFAULT fills them, unless a Python-side default did) into the
    target: each text column cast to its type, and on_conflict's clause (an existing row
    keeps its values of the columns a row lacks). ``picked``: the rows of the numbered
    staging table that :mod:`.row_by_row`'s loop is at (a row, or a block of them)."""
    staged = {c: _staged_value(c, t) for c, t in zip(plan.columns, plan.copy_types, strict=True)}
    written = _written(plan, lacking, staged)
    stage: sql.Composable = STAGE
    if picked is not None:
        stage = sql.SQL("{} WHERE {}").format(row_by_row.ROWS, picked)
    if plan.on_conflict == "update":
        return _upsert_from_stage(plan, staged, written, stage, lacking, group)
    of_group: sql.Composable = sql.SQL("")
    if group is not None:
        joined = sql.SQL(" WHERE " if picked is None else " AND ")
        of_group = joined + sql.SQL("{} = {}").format(sql.Identifier(GROUP), sql.Literal(group))
    # "ignore": a row conflicting on any unique key leaves the one already there
    conflict = sql.SQL(" ON CONFLICT DO NOTHING" if plan.on_conflict == "ignore" else "")
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}{}{}").format(
        sql.SQL(plan.target.quoted),
        sql.SQL(", ").join(map(sql.Identifier, written)),
        sql.SQL(", ").join(written.values()),
        stage,
        of_group,
        conflict,
    )


def _upsert_from_stage(
    plan: WritePlan,
    staged: Mapping[str, sql.Composable],
    written: Mapping[str, sql.Composable],
    stage: sql.Composable,
    lacking: Lacking,
    group: int | None,
) -> sql.Composed:
    """on_conflict="update"'s INSERT: each key's last staged row, its columns but those
    the row lacks set on the row already there."""
    given = list(written)
    target, columns = sql.SQL(plan.target.quoted), sql.SQL(", ").join(map(sql.Identifier, given))
    keys = conflict_key(plan.target, plan.columns, plan.on_conflict)
    key_list = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
    # the staged values go through the window; SQL defaults are evaluated after it, for
    # the rows it keeps only (a sequence's nextval for each row inserted, no more)
    staged_here = [c for c in given if written[c] is staged[c]]
    aliased: list[sql.Composable] = [
        sql.SQL("{} AS {}").format(staged[c], sql.Identifier(c)) for c in staged_here
    ]
    outer = sql.SQL(", ").join(
        sql.Identifier(c) if c in staged_here else value for c, value in written.items()
    )
    of_group: sql.Composable = sql.SQL("")
    if group is not None:
        aliased.append(sql.Identifier(GROUP))
        of_group = sql.SQL(" AND {} = {}").format(sql.Identifier(GROUP), sql.Literal(group))
    updates = [c for c in given if c not in {*keys, *lacking}]
    action: sql.Composable = sql.SQL("DO NOTHING")
    if updates:
        action = sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates
        )
    # one row per key, the source's last, as if the rows were applied in turn; a row with a
    # NULL in a unique key conflicts with none (NULLs are distinct there), so all such stay
    nullable = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in keys)
    return sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM (SELECT {}, row_number() OVER (PARTITION BY {} "
        "ORDER BY ctid DESC) AS geosession_turn FROM {}) latest "
        "WHERE (geosession_turn = 1 OR {}){} ON CONFLICT ({}) {}"
    ).format(
        target,
        columns,
        outer,
        sql.SQL(", ").join(aliased),
        sql.SQL(", ").join(staged[k] for k in keys),  # the key's values, not their texts
        stage,
        nullable,
        of_group,
        key_list,
        action,
    )


def _written(
    plan: WritePlan, lacking: Lacking, staged: Mapping[str, sql.Composable]
) -> dict[str, sql.Composable]:
    """Each column the INSERT writes, and its value: the staged one (also where a Python
    default filled it), or for a column the rows lack, the SQL default the ingest writes;
    a column left to the table's DEFAULT is not written."""
    written: dict[str, sql.Composable] = {}
    for column in plan.columns:
        if column not in lacking or column in plan.python_defaulted:
            written[column] = staged[column]
        elif column in plan.sql_defaults:
            written[column] = sql.SQL(plan.sql_defaults[column])
    return written


def _staged_value(column: str, copy_type: str) -> sql.Composable:
    """A staged column's value: cast from its text to the column's type where it was sent
    as text (:class:`~geosession.ingest.binary.TextCast`)."""
    if not is_text_cast(copy_type):
        return sql.Identifier(column)
    return sql.SQL("CAST({} AS {})").format(sql.Identifier(column), sql.SQL(copy_type.cast_to))
