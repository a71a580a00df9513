"""The work behind ``geosession export``: the query, a progress bar and the count on stderr.

Progress and the final count go to stderr, so ``-`` (stdout) carries only the GeoJSON.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from sqlalchemy import text

from geosession.database import SpatialDatabase
from geosession.errors import ConfigurationError
from geosession.read.export import format_for
from geosession.read.geojson import ExportResult
from geosession.read.plan import quote_identifier
from geosession.read.progress import export_progress
from geosession.read.source import source_query, table_name

_ESTIMATE_SQL = text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)")


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
    spatial_index: bool = True,
    options: dict[str, Any],
) -> ExportResult:
    """Exports ``source`` (a table or a query) to ``output`` with a progress bar on stderr."""
    dest: Any = sys.stdout.buffer if output == "-" else output
    kind = format_for(dest, format, option="--format ")
    console = Console(stderr=True)
    started = time.perf_counter()
    with SpatialDatabase.from_env() as db:
        total = None if where or bbox else _estimate(db, source, options.get("replica", False))
        with export_progress(total, console) as advance:
            result = db.export(
                source_query(source, where=where),
                dest,
                format=kind,
                layer=layer,
                spatial_index=spatial_index,
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


def _estimate(db: SpatialDatabase, source: str, replica: bool) -> int | None:
    """The planner's row count of a whole table, for the bar's total (None for queries)."""
    name = table_name(source)
    if name is None:
        return None
    qualified = ".".join(quote_identifier(part) for part in name if part is not None)
    with db.session(replica=replica) as session:
        estimate = session.execute(_ESTIMATE_SQL, {"name": qualified}).scalar()
    return int(estimate) if estimate is not None and estimate > 0 else None
