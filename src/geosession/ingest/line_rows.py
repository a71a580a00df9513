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


def lines_before_rows(path: Path, layer: str | None = None) -> int | None:
    """How many lines come before the rows of a file of a row a line (a CSV's header: 1),
    or None for any other file (or a JSON file whose records are not a line each)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return 1
    if suffix in SEQUENCE_SUFFIXES:
        return 0
    form = records_form(path, layer) if suffix == ".json" else None
    return 0 if form is not None and form.kind == "lines" else None


def count_rows(path: Path, header: int, stopped: Callable[[], bool]) -> int | None:
    """The lines of ``path`` (a last one without a line break too), less ``header``; None
    when it cannot be read, or once ``stopped()``."""
    lines, last = 0, b"\n"
    try:
        with path.open("rb", buffering=0) as file:
            while block := file.read(_BLOCK):
                if stopped():
                    return None
                lines += block.count(b"\n")
                last = block
    except OSError:
        return None
    return max(0, lines + (not last.endswith(b"\n")) - header)


def rows_by_lines(source: object, layer: str | None) -> Callable[[Callable[[], bool]], int | None]:
    """A count of the rows of ``source``, a file of a row a line, for
    :meth:`.Progress.total_from`; it counts nothing for any other source."""

    def count(stopped: Callable[[], bool]) -> int | None:
        if not isinstance(source, str | os.PathLike):
            return None
        header = lines_before_rows(Path(source), layer)
        return None if header is None else count_rows(Path(source), header, stopped)

    return count
