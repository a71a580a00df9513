"""One source batch made ready for COPY: geometries checked and encoded, values read as
their columns' types, and the rows that cannot load set aside with their reasons.

Rows an earlier run with the same ingest id committed are skipped here, before any work.
Batches are checked on several threads at once; nothing here holds shared state but the
chunk sizer's first size estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geosession.geometry import object_array
from geosession.ingest.batches import Batch
from geosession.ingest.chunking import ChunkSizer
from geosession.ingest.defaults import MISSING
from geosession.ingest.lacking import Lacking, kept, lacking_rows
from geosession.ingest.ledger import CommittedRows
from geosession.ingest.options import IngestOptions
from geosession.ingest.validate import (
    Reject,
    as_text,
    check_geometries,
    check_source_crs,
    column_crs,
)
from geosession.ingest.values import coerce_values
from geosession.ingest.write_plan import WritePlan

Keep = np.ndarray[Any, np.dtype[np.bool_]]


@dataclass
class CheckedBatch:
    """The rows of a batch to load, column-wise in the plan's order, with their source
    row numbers; the rows set aside (by row), and those repaired."""

    columns: list[list[Any]]
    numbers: list[int]
    rejects: list[Reject]
    fresh: int  # rows not committed by an earlier run: those read in this one
    lacking: list[Lacking] | None = None  # of the rows to load: the columns each lacks
    repaired: list[Reject] = field(default_factory=list)
    reprojected: int = 0  # of the fresh rows, those with a geometry moved into its SRID
    srid_assumed: int = 0  # of the rows to load, those whose geometry took the column's SRID
    z_dropped: int = 0  # of the rows to load, those with a geometry whose Z of 0 was dropped
    beyond_latitudes: int = 0  # of the rows to load, those beyond latitude ±90 in degrees


def check_batch(
    batch: Batch,
    plan: WritePlan,
    options: IngestOptions,
    committed: CommittedRows,
    sizer: ChunkSizer,
) -> CheckedBatch:
    """Checks and encodes ``batch`` for ``plan`` as ``options`` say (on_invalid, srid for
    geometries with none, reproject)."""
    numbers = np.arange(batch.first_row, batch.first_row + len(batch))
    keep = (
        np.array([not committed.contains(int(n)) for n in numbers], dtype=bool)
        if committed
        else np.ones(len(batch), dtype=bool)
    )
    fresh = int(keep.sum())
    columns = {  # a column earlier batches had and this one lacks: its DEFAULT, or NULL
        name: batch.columns.get(name, [MISSING if name in plan.may_lack else None] * len(batch))
        for name in plan.columns
    }
    filled = batch.filled if plan.on_conflict == "update" else None
    lacking = lacking_rows(columns, plan.may_lack, len(batch), filled)
    fresh_rows = keep.copy()
    geometries = _check_geometries(batch, plan, columns, keep, options, sizer)
    rejects = geometries.rejects + _read_values(batch, plan, columns, keep)
    rejects += _null_rejects(batch.first_row, plan, columns, keep, lacking)
    rejects += _too_long(batch.first_row, plan, columns, keep)
    rejects.sort(key=lambda reject: reject.row)
    return CheckedBatch(
        [_kept(columns[name], keep) for name in plan.columns],
        numbers[keep].tolist(),
        rejects,
        fresh,
        kept(lacking, keep),
        geometries.repaired,
        reprojected=int((geometries.moved & fresh_rows).sum()),
        srid_assumed=int((geometries.assumed & keep).sum()),
        z_dropped=int((geometries.flattened & keep).sum()),
        beyond_latitudes=int((geometries.beyond & keep).sum()),
    )


@dataclass
class _CheckedGeometries:
    """Of a batch's geometry columns: the rows set aside, those repaired, and (in any
    column) those reprojected and those that took the column's SRID."""

    rejects: list[Reject]
    repaired: list[Reject]
    moved: Keep
    assumed: Keep
    flattened: Keep
    beyond: Keep


def _check_geometries(
    batch: Batch,
    plan: WritePlan,
    columns: dict[str, list[Any]],
    keep: Keep,
    options: IngestOptions,
    sizer: ChunkSizer,
) -> _CheckedGeometries:
    """Encodes each geometry column in place and clears ``keep`` for the rows set aside;
    a row's reject is reported once, for its first bad geometry, and not for a row that
    is skipped as committed."""
    found = _CheckedGeometries([], [], *(np.zeros(len(keep), bool) for _ in range(4)))
    for column in plan.target.geometry_columns:
        if column.name not in columns:
            continue
        source = batch.crs.get(column.name)
        if options.srid is None or isinstance(source, int):  # else srid= names an odd CRS
            source = column_crs(column, source)
        check_source_crs(
            column, source, plan.target.quoted, srid=options.srid, reproject=options.reprojecting
        )
        undeclared = source if isinstance(source, str) and options.srid is None else None
        checked = check_geometries(
            columns[column.name],
            column,
            first_row=batch.first_row,
            on_invalid=options.on_invalid,
            default_srid=source if isinstance(source, int) else options.srid,
            reproject=options.reprojecting,
            source_crs=undeclared,  # no EPSG code, and srid= does not say which it is
        )
        columns[column.name] = checked.encoded[column.name]
        if not sizer.measured:  # a first estimate; sealed chunks give the real size
            geometry_bytes = sum(map(len, filter(None, columns[column.name])))
            sizer.observe_bytes(len(batch), geometry_bytes)
        found.rejects += [r for r in checked.rejects if keep[r.row - batch.first_row]]
        found.repaired += checked.repaired
        found.moved |= checked.moved
        found.assumed |= checked.assumed
        found.flattened |= checked.flattened
        found.beyond |= checked.beyond
        keep &= checked.keep
    return found


def _read_values(
    batch: Batch, plan: WritePlan, columns: dict[str, list[Any]], keep: Keep
) -> list[Reject]:
    """Reads each column's values as its type in place; a value that cannot be read sets
    its row aside (kind "value") unless the row is already set aside or skipped."""
    rejects = []
    first_row, timezone = batch.first_row, plan.target.timezone
    for name, copy_type in zip(plan.columns, plan.copy_types, strict=True):
        columns[name], unreadable = coerce_values(
            columns[name], copy_type, timezone, decimal_comma=batch.decimal_comma
        )
        for index, reason in unreadable.items():
            if keep[index]:
                keep[index] = False
                value = as_text(columns[name][index])
                rejects.append(Reject(first_row + index, name, "value", reason, value))
    return rejects


def _null_rejects(
    first_row: int,
    plan: WritePlan,
    columns: dict[str, list[Any]],
    keep: Keep,
    lacking: list[Lacking] | None,
) -> list[Reject]:
    """Sets aside the rows with a NULL in a NOT NULL column (a geometry's is checked with
    it), which the server would otherwise refuse, each found by a failed COPY and the
    rows after it moved by the server's loop; not where a BEFORE INSERT trigger or an
    INSERT rule may fill it, nor in a row that leaves the column to its DEFAULT."""
    target = plan.target
    if target.insert_triggers or target.insert_rules:
        return []
    rejects = []
    for column in target.columns:
        values = columns.get(column.name)
        if not column.not_null or column.geometry is not None or values is None:
            continue
        if None not in values:  # the common case, in C
            continue
        for index, value in enumerate(values):
            if (
                value is None
                and keep[index]
                and (lacking is None or column.name not in lacking[index])
            ):
                keep[index] = False
                reason = f"NULL in NOT NULL column {column.name}"
                rejects.append(Reject(first_row + index, column.name, "null", reason, None))
    return rejects


def _too_long(
    first_row: int, plan: WritePlan, columns: dict[str, list[Any]], keep: Keep
) -> list[Reject]:
    """Sets aside the rows with a value longer than its varchar(n) or char(n) column holds,
    which the server would refuse one at a time (spaces past n it cuts, as it does)."""
    rejects = []
    for column in plan.target.columns:
        limit, values = column.max_length, columns.get(column.name)
        if limit is None or values is None or _longest(values) <= limit:
            continue
        kind = "character varying" if column.type_name == "varchar" else "character"
        for index, value in enumerate(values):
            text = value if value is None or isinstance(value, str) else str(value)
            if text is not None and len(text) > limit and text[limit:].strip(" ") and keep[index]:
                keep[index] = False
                reason = f"value too long for {kind}({limit}): {len(text)} characters"
                rejects.append(Reject(first_row + index, column.name, "value", reason, text[:2000]))
    return rejects


def _longest(values: list[Any]) -> int:
    """The length of the longest value as text (a pass in C when all are text or NULL)."""
    try:
        return max(map(len, filter(None, values)), default=0)
    except TypeError:  # numbers, which go as their text
        return max((len(str(value)) for value in values if value is not None), default=0)


def _kept(values: list[Any], keep: Keep) -> list[Any]:
    """The values of the rows to load (a plain copy when every row stays)."""
    if keep.all():
        return list(values)
    return list(object_array(values)[keep])
