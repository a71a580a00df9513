"""Memory of a load whose every row is rejected: the report keeps each reject (the first
10,000 in memory, the rest in a temporary file).

A common mistake, points in British National Grid metres (SRID 27700) loaded into a
column of SRID 4326, rejects every row for one reason; the report holds them all (row,
column, kind, reason and the value as text) and the quarantine table gets them too. The
script loads ``--rows`` such points from a generator and prints the process's peak RSS
against its RSS before the load: what the rejects cost in memory. Run it in a process of
its own per measurement (peak RSS never goes down)::

    .venv/bin/python benchmarks/reject_memory.py --rows 500000 [--on-invalid skip]

The server is GEOSESSION_DATABASE_URL, else the running embedded cluster; everything
happens in a database of its own (``geosession_bench_reject_memory``), dropped at the end.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator
from typing import Any

import shapely
from bench_server import drop_database, ensure_database, resolve_url
from sqlalchemy import text

from geosession import SpatialDatabase

DATABASE = "geosession_bench_reject_memory"
TABLE = "bench_reject_memory"


def wrong_srid_points(count: int) -> Iterator[dict[str, Any]]:
    """Points in metres, as British National Grid coordinates are."""
    for n in range(count):
        yield {"id": n, "geom": shapely.Point(400_000 + n % 1000, 300_000 + n // 1000)}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--on-invalid", default="quarantine", choices=("quarantine", "skip"))
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    server = resolve_url(args.url)
    url = ensure_database(server, DATABASE)
    db = SpatialDatabase(url.render_as_string(hide_password=False))
    try:
        with db.transaction() as s:
            s.execute(
                text(
                    f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_rejected; CREATE TABLE {TABLE} "
                    "(id integer PRIMARY KEY, geom geometry(POINT, 4326))"
                )
            )
        source = list(wrong_srid_points(1_000))  # warm: imports, the ledger, caches
        db.ingest(TABLE, source, srid=27700, on_invalid=args.on_invalid, progress=False)
        before = peak_mb()
        started = time.perf_counter()
        report = db.ingest(
            TABLE,
            wrong_srid_points(args.rows),
            srid=27700,
            on_invalid=args.on_invalid,
            progress=False,
            ingest_id="reject-memory",
        )
        seconds = time.perf_counter() - started
        assert len(report.rejected) == args.rows and report.inserted == 0
        print(
            f"{args.rows:,} rows, every one rejected (on_invalid={args.on_invalid!r}): "
            f"{seconds:.1f} s, peak RSS {peak_mb():.0f} MB, {peak_mb() - before:.0f} MB over "
            f"the {before:.0f} MB before the load"
        )
    finally:
        db.dispose()
        drop_database(server, DATABASE)


if __name__ == "__main__":
    main()
