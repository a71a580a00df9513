"""Loading an API's JSON records: time and peak memory of geosession's streamed read of
a JSON array and of JSON Lines, against the alternatives measured in the same run.

The files (``--rows`` records of an id, a name, a latitude, a longitude and a count) are
written before the clock. Each method runs in a process of its own, loading into a new
table (``create=True``, or ``to_postgis``'s own) on an empty database:

- geosession, a JSON array file (``db.ingest(table, "stops.json", create=True)``);
- geosession, a JSON Lines file;
- the file read whole (``orjson.loads``), its list of dicts given to ``db.ingest``;
- pandas ``read_json(lines=True)``, geopandas points, ``to_postgis`` (``--small-rows``
  records: it inserts through SQLAlchemy's executemany).

"peak RSS growth" is the process's VmHWM after the load minus its RSS just before it
(after importing pandas, geopandas and pyarrow, which create=True's typing uses)::

    .venv/bin/python benchmarks/json_records.py --rows 1000000

The server is GEOSESSION_DATABASE_URL, else the running embedded cluster; everything
happens in a database of its own (``geosession_bench_json``), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from bench_child import rss_kib, run_child
from bench_server import drop_database, ensure_database, resolve_url

DATABASE = "geosession_bench_json"
METHODS = {
    "array": "geosession, JSON array file (streamed)",
    "lines": "geosession, JSON Lines file",
    "whole": "orjson.loads whole, then db.ingest(list)",
    "pandas": "pandas read_json(lines=True) + to_postgis",
}


def records(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": n,
            "name": f"stop {n}",
            "lat": 40 + (n % 1000) / 1000,
            "lon": -74 + (n // 1000) / 1000,
            "visits": n % 7,
        }
        for n in range(count)
    ]


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    data = records(rows)
    array, lines = folder / "stops.json", folder / "stops.jsonl"
    array.write_bytes(orjson.dumps(data))
    lines.write_bytes(b"\n".join(map(orjson.dumps, data)))
    return array, lines


def child(spec: dict[str, Any]) -> None:
    """One load, in this process: prints its seconds, rows and RSS growth as JSON."""
    import geopandas  # the libraries create=True reads frames with, imported before
    import pandas
    import pyarrow  # noqa: F401

    from geosession import SpatialDatabase

    db = SpatialDatabase(spec["url"])
    table, method = f"bench_json_{spec['key']}", spec["key"]
    before = rss_kib("VmRSS")
    started = time.perf_counter()
    if method in ("array", "lines"):
        rows = db.ingest(table, spec["path"], create=True).inserted
    elif method == "whole":
        rows = db.ingest(table, orjson.loads(Path(spec["path"]).read_bytes()), create=True).inserted
    else:
        frame = pandas.read_json(spec["path"], lines=True, nrows=spec["rows"])
        points = geopandas.points_from_xy(frame.pop("lon"), frame.pop("lat"), crs=4326)
        geopandas.GeoDataFrame(frame, geometry=points).to_postgis(
            table, db.engine, chunksize=10_000
        )
        rows = len(frame)
    seconds = time.perf_counter() - started
    growth = (rss_kib("VmHWM") - before) / 1024
    db.dispose()
    print(json.dumps({"seconds": seconds, "rows": rows, "rss_mb": growth}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=200_000)
    parser.add_argument("--url", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    server = resolve_url(args.url)
    url = ensure_database(server, DATABASE).render_as_string(hide_password=False)
    results = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            array, lines = write_files(Path(folder), args.rows)
            size = array.stat().st_size / 2**20
            paths = {"array": array, "lines": lines, "whole": array, "pandas": lines}
            for key in METHODS:
                rows = args.small_rows if key == "pandas" else args.rows
                spec = {"key": key, "url": url, "path": str(paths[key]), "rows": rows}
                results[key] = run_child(__file__, spec)
    finally:
        drop_database(server, DATABASE)
    whole = results["whole"]["rows"] / results["whole"]["seconds"]
    print(f"{args.rows:,} records, {size:,.0f} MB as a JSON array")
    print("| method | rows | seconds | rows/s | × whole read | peak RSS growth |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, name in METHODS.items():
        found = results[key]
        speed = found["rows"] / found["seconds"]
        print(
            f"| {name} | {found['rows']:,} | {found['seconds']:.1f} | {speed:,.0f} | "
            f"{speed / whole:.2f} | {found['rss_mb']:,.0f} MB |"
        )


if __name__ == "__main__":
    main()
