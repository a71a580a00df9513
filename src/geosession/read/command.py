"""The work behind ``geosession export``: choosing the format, showing progress on stderr.

Progress and the final count go to stderr, so ``-`` (stdout) carries only the GeoJSON.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy import text

from geosession.database import SpatialDatabase
from geosession.errors import ConfigurationError
from geosession.read.export import BY_SUFFIX, FORMATS
from geosession.read.geojson import ExportResult
from geosession.read.plan import quote_identifier
from geosession.read.source import source_query, table_name

_ESTIMATE_SQL = text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)")


def choose_format(output: str, format: str | None) -> str:
    """``format``, or the one the output's suffix names (GeoJSON for stdout)."""
    if format is not None:
        if format not in FORMATS:
            raise ConfigurationError(
                f"--format {format} is not a format; use one of {', '.join(FORMATS)}"
            )
        return format
    if output == "-":
        return "geojson"
    chosen = BY_SUFFIX.get(Path(output).suffix.lower())
    if chosen is None:
        raise ConfigurationError(
            f"cannot tell the format of {output!r} from its suffix; give --format "
            f"({', '.join(FORMATS)})"
        )
    return chosen


def parse_bbox(value: str | None) -> list[float] | None:
    """``"minx,miny,maxx,maxy"`` as four numbers."""
    if value is None:
        return None
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 4:
        raise ConfigurationError(f"--bbox {value!r} is not minx,miny,maxx,maxy (four numbers)")
    return numbers


def run_export(
    source: str,
    output: str,
    *,
    format: str | None,
    where: str | None,
    bbox: Sequence[float] | None,
    layer: str | None = None,
    options: dict[str, Any],
) -> ExportResult:
    """Exports ``source`` (a table or a query) to ``output`` with a progress bar on stderr."""
    kind = choose_format(output, format)
    console = Console(stderr=True)
    started = time.perf_counter()
    with SpatialDatabase.from_env() as db:
        total = None if where or bbox else _estimate(db, source)
        dest: Any = sys.stdout.buffer if output == "-" else output
        with _progress(console, total) as advance:
            result = db.export(
                source_query(source, where=where),
                dest,
                format=kind,
                layer=layer,
                bbox=bbox,
                progress=advance,
                **options,
            )
    if output == "-":
        sys.stdout.buffer.flush()
    seconds = time.perf_counter() - started
    target = "stdout" if output == "-" else output
    console.print(
        f"Exported {result.features:,} features to {target} ({kind}) in {seconds:.1f} s",
        highlight=False,
    )
    return result


def _estimate(db: SpatialDatabase, source: str) -> int | None:
    """The planner's row count of a whole table, for the bar's total (None for queries)."""
    name = table_name(source)
    if name is None:
        return None
    qualified = ".".join(quote_identifier(part) for part in name if part is not None)
    with db.session() as session:
        estimate = session.execute(_ESTIMATE_SQL, {"name": qualified}).scalar()
    return int(estimate) if estimate is not None and estimate > 0 else None


@contextmanager
def _progress(console: Console, total: int | None) -> Iterator[Any]:
    columns = [
        SpinnerColumn(),
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("features"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("export", total=total)

        def advance(done: int) -> None:
            if total is not None and done > total:
                progress.update(task, total=None)
            progress.update(task, completed=done)

        yield advance
