"""The rows of a file that states no count (a CSV, GeoJSON Lines, JSON Lines, a GeoJSON
FeatureCollection), estimated while it loads, so that its progress bar gets a total and
a time remaining.

A GeoPackage or a Parquet file says how many rows it has; these need a look, which reads
bytes instead of parsing them: line breaks, less a CSV's header, or a GeoJSON file's
``"Feature"`` strings, in the first 64 MiB (a fraction of a second), then scaled by the
file's size, so that a file of many gigabytes is not read twice. A CSV value holding a
line break, a property whose value is "Feature" or rows that grow longer down the file
make it an estimate, which the bar replaces by the rows read once the load completes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from geosession.ingest.files import SEQUENCE_SUFFIXES
from geosession.ingest.json_records import records_form

_BLOCK = 1 << 20
_SAMPLE = 64 << 20
"""Bytes counted; a larger file's count is scaled from them."""
_LINE = b"\n"
_FEATURE = b'"Feature"'


def row_mark(path: Path, layer: str | None = None) -> tuple[bytes, int] | None:
    """What marks each row of ``path`` and how many marks come before the rows (a CSV's
    header line), or None for a file that states its count, or holds rows another way."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _LINE, 1
    if suffix in SEQUENCE_SUFFIXES:
        return _LINE, 0
    if suffix == ".geojson":
        return _FEATURE, 0
    form = records_form(path, layer) if suffix == ".json" else None
    return (_LINE, 0) if form is not None and form.kind == "lines" else None


def count_marks(
    path: Path, mark: bytes, before: int, stopped: Callable[[], bool], *, sample: int = _SAMPLE
) -> int | None:
    """The ``mark``s in ``path`` (for line breaks, a last line without one too), less
    ``before``: counted in its first ``sample`` bytes, and scaled by its size past them;
    None when it cannot be read, holds none, or once ``stopped()``."""
    found, tail, last, read = 0, b"", b"", 0
    try:
        with path.open("rb", buffering=0) as file:
            size = os.fstat(file.fileno()).st_size
            while read < sample and (block := file.read(min(_BLOCK, sample - read))):
                if stopped():
                    return None
                found += (tail + block).count(mark)  # a mark across two blocks too
                tail = block[-(len(mark) - 1) :] if len(mark) > 1 else b""
                last, read = block, read + len(block)
    except OSError:
        return None
    if 0 < read < size:
        found = round(found * size / read)
    elif mark == _LINE and found and not last.endswith(_LINE):
        found += 1
    return max(0, found - before) or None


def rows_counted(source: object, layer: str | None) -> Callable[[Callable[[], bool]], int | None]:
    """A count of the rows of ``source``, a file that states none, for
    :meth:`.Progress.total_from`; it counts nothing for any other source."""

    def count(stopped: Callable[[], bool]) -> int | None:
        if not isinstance(source, str | os.PathLike):
            return None
        found = row_mark(Path(source), layer)
        return None if found is None else count_marks(Path(source), *found, stopped)

    return count
