"""GDAL's Arrow batches checked before use: one whose geometry column came out invalid is
mended by reading its features again through GDAL's feature API.

The FlatGeobuf reader of the GDAL in pyogrio's wheels (3.12) makes an invalid geometry
column of a batch that holds a NULL geometry (in a file without a spatial index, as an
export with NULLs writes one): its offsets fall back to 0 at the NULL and its data stops
there, so reading the batch failed with "SystemError: Negative size passed to
PyBytes_FromStringAndSize". Such a batch's geometries are read again, the batch's place
in the layer bounding them (``skip_features``, ``max_features``), and replace the column;
a valid batch passes untouched (the check is one pass over its offsets, in Arrow's C++).
GDAL's feature API straightens curves (its Arrow reader keeps them), so a warning names
the file when a batch is mended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from geosession.errors import ConfigurationError

Reread = Callable[[int, int], Sequence[bytes | None]]
"""``reread(skip, count)``: the WKB of the layer's features ``skip`` to ``skip + count``,
read as the batches were (same layer, filters and encoding)."""

log = logging.getLogger(__name__)


def mended(
    batches: Iterable[Any], geometry: str, reread: Reread, path: Path, *, quiet: bool = False
) -> Iterator[Any]:
    """``batches``, each with a valid ``geometry`` column (``quiet``: without the warning,
    for a sample the load reads again)."""
    import pyarrow

    done, mended_any = 0, False
    for batch in batches:
        index = batch.schema.get_field_index(geometry)
        if index >= 0 and not _valid(pyarrow, batch.column(index)):
            wkb = list(reread(done, batch.num_rows))
            if len(wkb) != batch.num_rows:
                raise ConfigurationError(
                    f"cannot read the geometries of {path}'s features {done + 1:,} to "
                    f"{done + batch.num_rows:,}: GDAL's Arrow reader gave an invalid column, "
                    f"and reading them again gave {len(wkb):,} features. Convert the file "
                    "(ogr2ogr -f GPKG) and load that"
                )
            if not (mended_any or quiet):
                log.warning(
                    "%s: GDAL's Arrow reader gave an invalid geometry column from feature "
                    "%s on (a FlatGeobuf NULL geometry): such batches are read again through "
                    "GDAL's feature API, which straightens curves (CircularString arcs)",
                    path,
                    f"{done + 1:,}",
                )
            mended_any = True
            field = batch.schema.field(index)
            column = pyarrow.array(wkb, type=field.type)
            batch = batch.set_column(index, field, column)
        done += batch.num_rows
        yield batch


def _valid(pyarrow: Any, column: Any) -> bool:
    try:
        column.validate(full=True)
    except pyarrow.ArrowInvalid:
        return False
    return True
