"""The rows of a file that states no count (a CSV, GeoJSON Lines, JSON Lines, a JSON
array of records, a GeoJSON FeatureCollection), estimated while it loads, so that its
progress bar gets a total and a time remaining.

A GeoPackage or a Parquet file says how many rows it has; these need a look, which reads
bytes instead of parsing them: line breaks, less a CSV's header, what stands between two
records of a JSON array, or a GeoJSON file's ``"Feature"`` strings, in the first 64 MiB
(a fraction of a second; a compressed file's as they decompress), then scaled by the
file's size (by the compressed bytes those took), so that a file of many gigabytes is not
read twice. A CSV value holding a line break, a property whose value is "Feature", records
holding arrays of objects that open as they do, or rows that grow longer down the file
make it an estimate, which the bar replaces by the rows read once the load completes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Any

from geosession.compression import decompressor
from geosession.errors import GeoSessionError
from geosession.ingest.compressed import CORRUPT, inner_suffix, is_compressed
from geosession.ingest.files import SEQUENCE_SUFFIXES
from geosession.ingest.json_records import record_mark, records_form

_BLOCK = 1 << 20
_SAMPLE = 64 << 20
"""Bytes counted; a larger file's count is scaled from them."""
_LINE = b"\n"
_FEATURE = b'"Feature"'


def row_mark(path: Path, layer: str | None = None) -> tuple[bytes, int] | None:
    """What marks each row of ``path`` and how many marks come before the rows (a CSV's
    header line; -1 where a mark stands between rows), or None for a file that states its
    count, or holds rows another way."""
    suffix = inner_suffix(path)  # points.csv.gz's data is a CSV's
    if suffix == ".csv":
        return _LINE, 1
    if suffix in SEQUENCE_SUFFIXES:
        return _LINE, 0
    if suffix == ".geojson":
        return _FEATURE, 0
    form = records_form(path, layer) if suffix == ".json" else None
    if form is None:
        return None
    if form.kind == "lines":
        return _LINE, 0
    mark = record_mark(path, form)
    return None if mark is None else (mark, -1)  # one fewer than the records


def count_marks(
    path: Path, mark: bytes, before: int, stopped: Callable[[], bool], *, sample: int = _SAMPLE
) -> int | None:
    """The ``mark``s in ``path``'s data (for line breaks, a last line without one too),
    less ``before``: counted in its first ``sample`` bytes, and scaled past them by the
    file's size (a compressed file's by the compressed bytes those took); None when it
    cannot be read, holds none, or once ``stopped()``."""
    found, tail, last, read = 0, b"", b"", 0
    try:
        with path.open("rb") as raw, _decompressed(raw, path) as data:
            while read < sample and (block := data.read(min(_BLOCK, sample - read))):
                if stopped():
                    return None
                found += (tail + block).count(mark)  # a mark across two blocks too
                tail = block[-(len(mark) - 1) :] if len(mark) > 1 else b""
                last, read = block, read + len(block)
            taken, size = raw.tell(), os.fstat(raw.fileno()).st_size
            ended = read < sample or not data.read(1)
    except CORRUPT:  # OSError among them
        return None
    if not ended and taken:
        found = round(found * size / taken)
    elif mark == _LINE and found and not last.endswith(_LINE):
        found += 1
    return max(0, found - before) or None


def _decompressed(raw: IO[bytes], path: Path) -> AbstractContextManager[Any]:
    """``raw``'s data: decompressed as it is read for a compressed file."""
    return decompressor(raw, path.suffix.lower()) if is_compressed(path) else nullcontext(raw)


def rows_counted(source: object, layer: str | None) -> Callable[[Callable[[], bool]], int | None]:
    """A count of the rows of ``source``, a file that states none, for
    :meth:`.Progress.total_from`; it counts nothing for any other source."""

    def count(stopped: Callable[[], bool]) -> int | None:
        if not isinstance(source, str | os.PathLike) or not Path(source).is_file():
            return None  # a named pipe's data is the load's alone
        try:
            found = row_mark(Path(source), layer)
        except GeoSessionError:  # damaged data, an object of several arrays: the load says
            return None
        return None if found is None else count_marks(Path(source), *found, stopped)

    return count
