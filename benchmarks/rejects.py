"""Loads with bad rows: how much a share of refused rows costs against a clean load.

Points with attributes go into a table with a GiST index, ``rank integer NOT NULL CHECK
(rank < 100)``, from dict rows in which a share of the rows (one in ``--every``) is bad
in one of two ways, each in its own run:

- ``CHECK``: rank 500, which only the server refuses: the rows before the one a COPY's
  error names are written, and the server moves the rest one at a time;
- ``NULL``: rank None, which geosession sets aside before the COPY (NOT NULL, no trigger).

Each is timed against the same rows all good, in the same run, and against itself with
every bad row dropped before the load (what cleaning the source first would cost
nothing): the ratio says what finding the bad rows costs. Every load is checked: the good
rows all in the table, the bad ones all among the rejects.

Run (about a minute with the defaults)::

    .venv/bin/python benchmarks/rejects.py
    .venv/bin/python benchmarks/rejects.py --rows 100000 --every 10,100,1000
    .venv/bin/python benchmarks/rejects.py --on-conflict update   # through the staging table

The server is GEOSESSION_DATABASE_URL, else the running embedded cluster; everything
happens in a database of its own (``geosession_bench_rejects``), dropped at the end.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench_server import drop_database, ensure_database, resolve_url
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from geosession import SpatialDatabase

DATABASE = "geosession_bench_rejects"
TABLE = "bench_rejects"
BAD = {"CHECK": 500, "NULL": None}


def rows(count: int, every: int | None, bad: Any) -> list[dict[str, Any]]:
    """Points with attributes; one row in ``every`` with ``bad`` as its rank."""
    return [
        {
            "id": n,
            "rank": bad if every and n % every == every // 2 else n % 100,
            "name": f"point {n}",
            "geom": f"SRID=4326;POINT({n % 360 - 180} {n % 170 - 85})",
        }
        for n in range(count)
    ]


def load(
    db: SpatialDatabase, source: list[dict[str, Any]], on_conflict: str = "error"
) -> tuple[float, int, int]:
    """Seconds to load ``source`` into an empty table (its index kept), rows in, rejects."""
    with db.transaction() as s:
        s.execute(text(f"TRUNCATE {TABLE}, {TABLE}_rejected"))
        s.execute(text("DELETE FROM geosession_ingest_ledger"))
    started = time.perf_counter()
    report = db.ingest(TABLE, source, defer_indexes=False, on_conflict=on_conflict)
    return time.perf_counter() - started, report.inserted, len(report.rejected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--every", default="10,100,1000", help="one bad row in N, comma-separated")
    parser.add_argument(
        "--on-conflict",
        default="error",
        choices=("error", "ignore", "update"),
        help="'ignore' and 'update' load through a staging table (INSERT ... ON CONFLICT)",
    )
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    server = resolve_url(args.url)
    url = ensure_database(server, DATABASE)
    db = SpatialDatabase(url.render_as_string(hide_password=False))
    console = Console()
    try:
        with db.transaction() as s:
            s.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} (id integer PRIMARY KEY, rank integer "
                    "NOT NULL CHECK (rank < 100), name text, geom geometry(POINT, 4326)); "
                    f"CREATE INDEX IF NOT EXISTS {TABLE}_geom ON {TABLE} USING gist (geom)"
                )
            )
        db.ingest(TABLE, rows(1_000, 1_000, 500))  # warm: the ledger, rejects table, caches
        clean, _, _ = load(db, rows(args.rows, None, None), args.on_conflict)
        title = f"{args.rows:,} points into an indexed table, one bad row in N"
        results = Table(title=f"{title}, on_conflict={args.on_conflict!r}")
        for column in ("bad rows", "one in", "seconds", "× clean", "× bad rows dropped first"):
            results.add_column(column, justify="right" if column != "bad rows" else "left")
        results.add_row("none", "—", f"{clean:.2f}", "1.00", "—")
        for every in map(int, args.every.split(",")):
            for kind, bad in BAD.items():
                source = rows(args.rows, every, bad)
                good = [row for row in source if row["rank"] == row["id"] % 100]
                dropped, _, _ = load(db, good, args.on_conflict)
                seconds, inserted, rejected = load(db, source, args.on_conflict)
                assert inserted + rejected == args.rows and rejected == args.rows // every, kind
                results.add_row(
                    kind,
                    f"{every:,}",
                    f"{seconds:.2f}",
                    f"{seconds / clean:.2f}",
                    f"{seconds / dropped:.2f}",
                )
        console.print(results)
    finally:
        db.dispose()
        drop_database(server, DATABASE)


if __name__ == "__main__":
    main()
