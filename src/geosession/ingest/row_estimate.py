"""The rows of a file that holds one a line (CSV, GeoJSON Lines, JSON Lines), counted
while it loads, so that its progress bar gets a total and a time remaining.

A GeoPackage or a Parquet file states how many rows it has; these need a pass. Line
breaks are counted in blocks (a fraction of a second per gigabyte from the page cache),
not parsed: a CSV value holding a line break counts twice, so the total is an estimate,
which the bar replaces by the rows read once the load completes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from geosession.ingest.files import SEQUENCE_SUFFIXES
from geosession.ingest.json_records import records_form

_BLOCK = 1 << 20
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


def count_marks(path: Path, mark: bytes, before: int, stopped: Callable[[], bool]) -> int | None:
    """The ``mark``s in ``path`` (for line breaks, a last line without one too), less
    ``before``; None when it cannot be read, holds none, or once ``stopped()``."""
    found, tail, last = 0, b"", b""
    try:
        with path.open("rb", buffering=0) as file:
            while block := file.read(_BLOCK):
                if stopped():
                    return None
                found += (tail + block).count(mark)  # a mark across two blocks too
                tail = block[-(len(mark) - 1) :] if len(mark) > 1 else b""
                last = block
    except OSError:
        return None
    if mark == _LINE and found and not last.endswith(_LINE):
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
