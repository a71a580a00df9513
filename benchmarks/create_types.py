"""What create=True's pass for geometry types costs on a GeoJSON file, whose layer GDAL
calls Unknown: every feature's geometry type and heights are read before the load.

Compared in the same run with GDAL opening the file (``pyogrio.read_info``, which
create=True does anyway) and with GDAL reading the same geometries through Arrow
(``pyogrio.read_arrow(columns=[])``, the least a pass over them can cost), on a file of
``--rows`` polygons and multipolygons written before the clock. No database is used::

    .venv/bin/python benchmarks/create_types.py --rows 1000000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyogrio

from geosession.demo import synthetic_polygons
from geosession.ingest.archives import gdal_source
from geosession.ingest.found_types import feature_types


def write_geojson(path: Path, rows: int) -> None:
    """Polygons, every third a MultiPolygon (as boundary files mix them)."""
    features = []
    for n, polygon in enumerate(synthetic_polygons(rows, seed=5)):
        rings = [[list(point) for point in polygon.exterior.coords]]
        geometry = (
            {"type": "MultiPolygon", "coordinates": [rings]}
            if n % 3 == 0
            else {"type": "Polygon", "coordinates": rings}
        )
        features.append({"type": "Feature", "properties": {"n": n}, "geometry": geometry})
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": features}))


def timed(work: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "boundaries.geojson"
        write_geojson(path, args.rows)
        size = path.stat().st_size
        source = gdal_source(path)
        opened, info = timed(lambda: pyogrio.read_info(path), args.repeat)
        arrow, _ = timed(lambda: pyogrio.read_arrow(path, columns=[]), args.repeat)
        passed, types = timed(
            lambda: feature_types(pyogrio, source, None, progress=False), args.repeat
        )
    print(f"{args.rows:,} features, a GeoJSON file of {size / 2**20:,.0f} MB")
    print(f"declared type (read_info): {info['geometry_type']}; found: {', '.join(types)}")
    rows = [
        ("GDAL opens the file (read_info)", opened),
        ("GDAL reads the geometries (read_arrow, columns=[])", arrow),
        ("create=True's pass for types (feature_types)", passed),
    ]
    for name, seconds in rows:
        print(f"{name:<52} {seconds:7.2f} s  {seconds / arrow:5.2f}x the Arrow read")


if __name__ == "__main__":
    main()
