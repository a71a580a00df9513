"""GDAL's Arrow batches checked before use: one whose geometry column came out invalid is
mended by reading its features again.

The FlatGeobuf reader of the GDAL in pyogrio's wheels (3.12) makes an invalid geometry
column of a batch that holds a NULL geometry (in a file without a spatial index, as an
export with NULLs writes one): its offsets fall back to 0 at the NULL and its data stops
there, so reading the batch failed with "SystemError: Negative size passed to
PyBytes_FromStringAndSize". Such a batch's geometries are read again, the batch's place
in the layer bounding them (``skip_features``, ``max_features``): through GDAL's feature
API, which says which are NULL, then each run of features between the NULLs through the
Arrow reader again, which keeps curves where the feature API straightens them. A batch of
many NULLs keeps the feature API's geometries (an Arrow read per run would cost an open
and a skip each), with a warning naming the file. A valid batch passes untouched (the
check is one pass over its offsets, in Arrow's C++).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from geosession.errors import ConfigurationError

log = logging.getLogger(__name__)

_ARROW_RUNS = 8
"""The most runs of features between NULLs read again through Arrow per batch (each an
open and a skip: ~30 ms on a 200,000-feature FlatGeobuf)."""


class Reread(Protocol):
    """The WKB of the layer's features ``skip`` to ``skip + count``, read as the batches
    were (same layer, filters and encoding): through GDAL's feature API, or its Arrow
    reader (``arrow``; which raises pyarrow's ArrowInvalid if it fails them again)."""

    def __call__(self, skip: int, count: int, *, arrow: bool = False) -> Sequence[bytes | None]: ...


def mended(
    batches: Iterable[Any], geometry: str, reread: Reread, path: Path, *, quiet: bool = False
) -> Iterator[Any]:
    """``batches``, each with a valid ``geometry`` column (``quiet``: without the warning,
    for a sample the load reads again)."""
    import pyarrow

    done, warned = 0, quiet
    for batch in batches:
        index = batch.schema.get_field_index(geometry)
        if index >= 0 and not _valid(pyarrow, batch.column(index)):
            wkb, straightened = _read_again(pyarrow, reread, done, batch.num_rows, path)
            if straightened and not warned:
                log.warning(
                    "%s: GDAL's Arrow reader gave an invalid geometry column from feature "
                    "%s on (a FlatGeobuf NULL geometry), and batches of many NULLs are read "
                    "again through GDAL's feature API, which straightens curves "
                    "(CircularString arcs)",
                    path,
                    f"{done + 1:,}",
                )
                warned = True
            field = batch.schema.field(index)
            batch = batch.set_column(index, field, pyarrow.array(wkb, type=field.type))
        done += batch.num_rows
        yield batch


def _read_again(
    pyarrow: Any, reread: Reread, skip: int, count: int, path: Path
) -> tuple[list[bytes | None], bool]:
    """The geometries of features ``skip`` to ``skip + count``, and whether curves among
    them may have been straightened (left as the feature API read them)."""
    wkb = list(reread(skip, count))
    if len(wkb) != count:
        raise ConfigurationError(
            f"cannot read the geometries of {path}'s features {skip + 1:,} to "
            f"{skip + count:,}: GDAL's Arrow reader gave an invalid column, and reading them "
            f"again gave {len(wkb):,} features. Convert the file (ogr2ogr -f GPKG) and load "
            "that"
        )
    runs = _present_runs(wkb)
    if len(runs) > _ARROW_RUNS:
        return wkb, True
    for start, stop in runs:
        try:
            again = reread(skip + start, stop - start, arrow=True)
        except pyarrow.ArrowInvalid:
            return wkb, True
        if len(again) != stop - start:
            return wkb, True
        wkb[start:stop] = again
    return wkb, False


def _present_runs(wkb: Sequence[bytes | None]) -> list[tuple[int, int]]:
    """The spans [start, stop) of consecutive present geometries."""
    runs: list[tuple[int, int]] = []
    start = None
    for index, value in enumerate([*wkb, None]):
        if value is not None and start is None:
            start = index
        elif value is None and start is not None:
            runs.append((start, index))
            start = None
    return runs


def _valid(pyarrow: Any, column: Any) -> bool:
    try:
        column.validate(full=True)
    except pyarrow.ArrowInvalid:
        return False
    return True
