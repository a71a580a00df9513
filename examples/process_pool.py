"""Load a folder of tiles in worker processes, each file exactly once.

    .venv/bin/python examples/process_pool.py [--tiles 4] [--rows 2500]

Uses GEOSESSION_DATABASE_URL, else the embedded PostGIS (`geosession local start`), and
a table of its own, ``example_tiles`` (dropped and made again at the start).

A nightly job of this shape makes its SpatialDatabase at import and uses it before the
pool of worker processes starts, so the workers are forked from a process that holds
pooled connections. Each worker gets connections of its own (the parent's are never
touched there) and loads one CSV tile with ``db.ingest(table, path)``, whose ingest id
comes from the file and the table. Running the whole job again loads nothing twice.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sqlalchemy import text

from geosession import SpatialDatabase
from geosession.demo import synthetic_polygons

TABLE = "example_tiles"
db = SpatialDatabase.from_env(pool_size=2)  # made at import, as in most applications


def write_tiles(folder: Path, tiles: int, rows: int) -> list[Path]:
    """CSV tiles with an id, a tile number and a WKT polygon per row."""
    paths = []
    for tile in range(tiles):
        path = folder / f"tile_{tile}.csv"
        polygons = synthetic_polygons(rows, seed=tile)
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["id", "tile", "wkt"])
            for n, polygon in enumerate(polygons):
                out.writerow([tile * rows + n, tile, polygon.wkt])
        paths.append(path)
    return paths


def load_tile(path: Path) -> tuple[str, int, int, int, int]:
    """In a worker process: one tile, and which process and server session loaded it."""
    report = db.ingest(TABLE, path, progress=False)
    with db.session() as s:
        backend = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return path.name, report.inserted, report.already_committed, os.getpid(), backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--rows", type=int, default=2500)
    options = parser.parse_args()
    with db.transaction() as s:  # the parent's pooled connection, before the fork
        s.execute(text(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_rejected"))
        s.execute(
            text(
                f"CREATE TABLE {TABLE} (id int PRIMARY KEY, tile int, geom geometry(Polygon, 4326))"
            )
        )
        s.execute(text(f"CREATE INDEX ON {TABLE} USING gist (geom)"))
        parent = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
    print(f"parent: process {os.getpid()}, server session {parent}")
    forked = multiprocessing.get_context("fork")  # the default on Linux up to Python 3.13
    with tempfile.TemporaryDirectory() as folder:
        tiles = write_tiles(Path(folder), options.tiles, options.rows)
        for run in ("first run", "run again"):
            with ProcessPoolExecutor(max_workers=2, mp_context=forked) as workers:
                for name, loaded, skipped, pid, backend in workers.map(load_tile, tiles):
                    print(
                        f"{run}: {name} loaded {loaded:,}, skipped as committed {skipped:,} "
                        f"(process {pid}, server session {backend})"
                    )
    with db.session() as s:
        rows, ids = s.execute(text("SELECT count(*), count(DISTINCT id) FROM example_tiles")).one()
        same = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
    print(f"stored: {rows:,} rows, {ids:,} distinct ids")
    print(f"parent: still server session {same}; {db.pool_stats()}")
    db.dispose()


if __name__ == "__main__":
    main()
