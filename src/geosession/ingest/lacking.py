"""Keys a row leaves out where a default fills them: the server fills them per row, as an
INSERT that omits the column (``session.add_all`` of such rows) would.

COPY names one column list for all its rows, so a dict row (a new mapped instance, a
GeoJSON Feature's properties) lacking a key that other rows give would be NULL there. Such
rows are marked with the columns they lack; a chunk holding any goes through the staging
table, and each group of rows lacking the same columns moves on in an INSERT that leaves
those columns out, so the table's DEFAULT (a sequence, ``now()``, a constant) fills them
(NULL a column without one), or writes a SQLAlchemy default that is SQL (:mod:`.defaults`).
With on_conflict="update", an existing row keeps its values of the columns a row lacks, as
an UPDATE that does not name them: those a Python-side default filled are marked too, and
inserted with their filled values.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from geosession.ingest.defaults import MISSING
from geosession.ingest.target import Target

Lacking = frozenset[str]
"""The columns one row leaves to the table's DEFAULT."""

NOTHING: Lacking = frozenset()


def left_to_server(
    target: Target, on_conflict: str, sql_defaults: Collection[str] = ()
) -> frozenset[str]:
    """The columns whose value a row may lack: the table's DEFAULT fills them in a new row
    (or the SQL of ``sql_defaults``, columns the ingest writes SQLAlchemy's default of),
    and with on_conflict="update" an existing row keeps its value of every column a row
    lacks (a geometry a row lacks is NULL, checked as one)."""
    return frozenset(
        c.name
        for c in target.columns
        if not c.generated
        and c.geometry is None
        and (c.has_default or c.name in sql_defaults or on_conflict == "update")
    )


def lacking_rows(
    columns: dict[str, list[Any]],
    defaulted: Collection[str],
    rows: int,
    filled: Mapping[str, list[int]] | None = None,
) -> list[Lacking] | None:
    """Per row, the ``defaulted`` columns it lacks (their values MISSING, made None here
    in place), and the columns of ``filled`` whose value a Python-side default made for it;
    None when every row gives them all, as rows from files always do."""
    marked: dict[str, list[int]] = {name: list(at) for name, at in (filled or {}).items() if at}
    for name in defaulted:
        values = columns.get(name)
        if values is None or not any(map(operator.is_, values, itertools.repeat(MISSING))):
            continue  # the common case, checked in C
        at = [index for index, value in enumerate(values) if value is MISSING]
        if at:
            columns[name] = [None if value is MISSING else value for value in values]
            marked.setdefault(name, []).extend(at)
    if not marked:
        return None
    lacking: list[Lacking] = [NOTHING] * rows
    for name, at in marked.items():
        for index in at:
            lacking[index] = lacking[index] | {name}
    shared: dict[Lacking, Lacking] = {}  # one object per distinct set, not one per row
    return [shared.setdefault(columns_lacked, columns_lacked) for columns_lacked in lacking]


def kept(lacking: list[Lacking] | None, keep: np.ndarray[Any, Any]) -> list[Lacking] | None:
    """The marks of the rows ``keep`` keeps."""
    if lacking is None or keep.all():
        return lacking
    return [lacking[index] for index in np.flatnonzero(keep)]


def groups(lacking: Sequence[Lacking]) -> tuple[Lacking, ...]:
    """The distinct sets of lacking columns, in order of first appearance: a row's group
    is its set's position here."""
    return tuple(dict.fromkeys(lacking))
