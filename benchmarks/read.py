"""Read benchmark: rows/s and peak RSS growth of streaming polygons out, in one run.

Compares, on the same server and in the same run (machines are noisy: compare ratios),
``db.stream`` (server-side cursor, and keyset pages), ``db.stream_frames`` and
``db.export_geojson`` with these anchors: a raw psycopg 3 named cursor fetching
the geometry in binary (EWKB) with ``shapely.from_wkb`` per batch, the same with
``ST_AsBinary`` as text, the ORM's ``.scalars().all()`` and ``yield_per`` with
``to_shape``, geopandas ``read_postgis`` (plain and ``chunksize``), and, for GeoJSON export,
``ogr2ogr`` and a hand-written psycopg stream of server-side ``ST_AsGeoJSON(t.*)``; for
GeoPackage, FlatGeobuf and Shapefile export ``ogr2ogr`` to them, for GeoParquet and Arrow
IPC geopandas ``read_postgis`` then ``to_parquet`` or ``to_feather``. Then checks
geosession's read targets against them and prints PASS/FAIL.

Run (about 5 minutes at 1,000,000 rows on 2 cores; ogr2ogr and the ORM's .all() take most)::

    .venv/bin/python benchmarks/read.py                  # 1,000,000 rows, key methods x3
    .venv/bin/python benchmarks/read.py --rows 100000 --repeat 1

The server is GEOSESSION_DATABASE_URL, else the running embedded cluster. Everything
happens in a database of its own (``geosession_bench_read``, dropped at the end unless
``--keep-database``, which also lets the next run reuse its table). Every method runs in a
child process that reports its time and peak RSS growth over the RSS it had after imports
and connecting (for ogr2ogr: the peak RSS of the ogr2ogr process itself).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_child
import psycopg
from bench_child import rss_kib
from bench_server import connect, conninfo, drop_database, ensure_database, resolve_url
from geoalchemy2 import Geometry, WKBElement
from psycopg import sql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE = "geosession_bench_read"
TABLE = "bench_read_parcels"
SELECT = f"SELECT id, name, land_use, value, geom FROM {TABLE}"  # noqa: S608 - a constant
BATCH = 10_000

READS = {  # key: label
    "anchor": "raw psycopg named cursor, binary EWKB + from_wkb per batch (anchor)",
    "anchor_text": "raw psycopg named cursor, ST_AsBinary as text + from_wkb",
    "stream": "db.stream (server-side cursor, shapely rows)",
    "stream_pages": "db.stream(pages_by='id') (keyset pages)",
    "stream_frames": "db.stream_frames (GeoDataFrame chunks)",
    "orm_all": "ORM select(Model).scalars().all() + to_shape",
    "orm_yield_per": "ORM yield_per(10000) + to_shape",
    "read_postgis": "geopandas read_postgis",
    "read_postgis_chunks": "geopandas read_postgis(chunksize=50000)",
}
EXPORTS = {
    "export_hand": "hand-written psycopg stream of ST_AsGeoJSON(t.*) (9 decimals)",
    "export": "db.export_geojson (default: 15 decimals, exact)",
    "export_p9": "db.export_geojson(precision=9) (as the hand-written)",
    "ogr2ogr": "ogr2ogr -f GeoJSON",
    "export_gpkg": "db.export to GeoPackage",
    "ogr2ogr_gpkg": "ogr2ogr -f GPKG",
    "export_fgb": "db.export to FlatGeobuf (with its spatial index)",
    "export_fgb_noindex": "db.export to FlatGeobuf, spatial_index=False",
    "ogr2ogr_fgb": "ogr2ogr -f FlatGeobuf",
    "export_shp": "db.export to Shapefile (with its .qix spatial index)",
    "ogr2ogr_shp": "ogr2ogr -f 'ESRI Shapefile' -lco SPATIAL_INDEX=YES",
    "export_parquet": "db.export to GeoParquet",
    "to_parquet": "geopandas read_postgis + to_parquet",
    "export_arrow": "db.export to Arrow IPC (Feather, lz4)",
    "to_feather": "geopandas read_postgis + to_feather (lz4)",
}
REPEATED = ("anchor", "stream", "export_hand", "export", "export_p9")


# -- set-up -------------------------------------------------------------------------------


def prepare_database(url: URL, rows: int) -> URL:
    """The benchmark database with TABLE holding ``rows`` star polygons (reused if so)."""
    bench = ensure_database(url, DATABASE)
    with connect(bench) as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
        if found and found[0]:
            have = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE)))
            if have.fetchone() == (rows,):
                return bench
        load_table(conn, rows)
    return bench


def load_table(conn: psycopg.Connection[Any], rows: int) -> None:
    table = sql.Identifier(TABLE)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id int PRIMARY KEY, name text NOT NULL, land_use text NOT NULL, "
            "value float8 NOT NULL, geom geometry(Polygon, 4326) NOT NULL)"
        ).format(table)
    )
    copy_sql = sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(table)
    for start in range(0, rows, 50_000):
        with conn.cursor().copy(copy_sql) as copy:
            copy.set_types(["int4", "text", "text", "float8", "bytea"])
            for row in make_rows(start, min(50_000, rows - start)):
                copy.write_row(row)
    conn.execute(sql.SQL("CREATE INDEX ON {} USING gist (geom)").format(table))
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table))


def make_rows(start: int, size: int) -> list[tuple[Any, ...]]:
    """Star polygons of 6 to 13 points (the demo's), SRID 4326, with a text and a float."""
    import numpy as np

    from geosession.demo import synthetic_polygons
    from geosession.geometry import encode_ewkb

    rng = np.random.default_rng(start)
    geometries = encode_ewkb(list(synthetic_polygons(size, seed=start)), 4326)
    uses = ("residential", "commercial", "industrial", "park", "civic")
    values = rng.uniform(50_000, 5_000_000, size).round(2)
    return [
        (start + i + 1, f"parcel-{start + i + 1}", uses[i % 5], float(values[i]), geometries[i])
        for i in range(size)
    ]


# -- one measurement per child process ----------------------------------------------------


def run_child(key: str, bench: URL, rows: int, workdir: Path) -> dict[str, float]:
    spec = {"key": key, "url": conninfo(bench), "rows": rows, "workdir": str(workdir)}
    return bench_child.run_child(__file__, spec)


def child(spec: dict[str, Any]) -> None:
    """Prepares (imports, connects), then times one method; prints JSON."""
    url = make_url(spec["url"]).set(drivername="postgresql+psycopg")
    run = PREPARE[spec["key"]](url, spec)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    baseline = rss_kib("VmRSS")
    started = time.perf_counter()
    count = run()
    seconds = time.perf_counter() - started
    growth = (rss_kib("VmHWM") - baseline) / 1024
    if spec["key"].startswith("ogr2ogr"):  # the work happens in the ogr2ogr process
        growth = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert count == spec["rows"], f"{spec['key']} read {count} rows, not {spec['rows']}"
    print(json.dumps({"seconds": seconds, "rss_mb": growth}))


Run = Callable[[], int]


def raw_cursor(url: URL, spec: dict[str, Any], *, binary: bool) -> Run:
    import shapely

    conn = psycopg.connect(conninfo(url))
    query = SELECT if binary else SELECT.replace("geom FROM", "ST_AsBinary(geom) FROM")

    def run() -> int:
        count = 0
        with conn.cursor("anchor", binary=binary) as cursor:
            cursor.itersize = BATCH
            cursor.execute(query)
            while rows := cursor.fetchmany(BATCH):
                geometries = shapely.from_wkb([row[4] for row in rows])
                for _row, _geometry in zip(rows, geometries, strict=True):
                    count += 1
        conn.rollback()
        return count

    return run


def geosession_stream(url: URL, spec: dict[str, Any], **options: Any) -> Run:
    from geosession import SpatialDatabase

    db = SpatialDatabase(url.render_as_string(hide_password=False))

    def run() -> int:
        count = 0
        for _row in db.stream(SELECT, **options):
            count += 1
        return count

    return run


def geosession_frames(url: URL, spec: dict[str, Any]) -> Run:
    import geopandas  # noqa: F401 - imported before the baseline

    from geosession import SpatialDatabase

    db = SpatialDatabase(url.render_as_string(hide_password=False))
    return lambda: sum(len(frame) for frame in db.stream_frames(SELECT))


class Base(DeclarativeBase):
    pass


class Parcel(Base):
    __tablename__ = TABLE
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    land_use: Mapped[str]
    value: Mapped[float]
    geom: Mapped[WKBElement] = mapped_column(Geometry("POLYGON", 4326, spatial_index=False))


def orm(url: URL, spec: dict[str, Any], *, yield_per: bool) -> Run:
    from geoalchemy2.shape import to_shape
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    engine = create_engine(url)

    def run() -> int:
        count = 0
        with Session(engine) as session:
            if yield_per:
                result = session.scalars(select(Parcel).execution_options(yield_per=BATCH))
                for parcel in result:
                    to_shape(parcel.geom)
                    count += 1
            else:
                for parcel in session.scalars(select(Parcel)).all():
                    to_shape(parcel.geom)
                    count += 1
        return count

    return run


def read_postgis(url: URL, spec: dict[str, Any], *, chunksize: int | None) -> Run:
    import geopandas
    from sqlalchemy import create_engine

    engine = create_engine(url)

    def run() -> int:
        with engine.connect() as conn:
            if chunksize is None:
                return len(geopandas.read_postgis(SELECT, conn, geom_col="geom"))
            frames = geopandas.read_postgis(SELECT, conn, geom_col="geom", chunksize=chunksize)
            return sum(len(frame) for frame in frames)

    return run


def export_hand(url: URL, spec: dict[str, Any]) -> Run:
    conn = psycopg.connect(conninfo(url))
    out = Path(spec["workdir"]) / "hand.geojson"

    def run() -> int:
        count = 0
        with conn.cursor("export") as cursor, out.open("w") as sink:
            cursor.itersize = BATCH
            cursor.execute(f"SELECT ST_AsGeoJSON(t.*) FROM {TABLE} t")  # noqa: S608
            sink.write('{"type":"FeatureCollection","features":[\n')
            while rows := cursor.fetchmany(BATCH):
                sink.write((",\n" if count else "") + ",\n".join(row[0] for row in rows))
                count += len(rows)
            sink.write("\n]}\n")
        conn.rollback()
        return count

    return run


def geosession_export(
    url: URL, spec: dict[str, Any], suffix: str = ".geojson", **options: Any
) -> Run:
    from geosession import SpatialDatabase

    db = SpatialDatabase(url.render_as_string(hide_password=False))
    out = Path(spec["workdir"]) / f"geosession{suffix}"
    return lambda: db.export(SELECT, out, **options).features


def ogr2ogr(url: URL, spec: dict[str, Any], driver: str = "GeoJSON") -> Run:
    if shutil.which("ogr2ogr") is None:
        sys.exit("ogr2ogr not found: apt-get install gdal-bin")
    source = f"PG:host={url.host} port={url.port or 5432} dbname={url.database} "
    source += f"user={url.username}"
    suffix = {
        "GeoJSON": ".geojson",
        "GPKG": ".gpkg",
        "FlatGeobuf": ".fgb",
        "ESRI Shapefile": ".shp",
    }[driver]
    options = ["-lco", "SPATIAL_INDEX=YES"] if driver == "ESRI Shapefile" else []
    out = Path(spec["workdir"]) / f"ogr2ogr{suffix}"
    env = {**os.environ, "PGPASSWORD": url.password or ""}

    def run() -> int:
        out.unlink(missing_ok=True)
        command = ["ogr2ogr", "-f", driver, *options, str(out), source, TABLE]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"ogr2ogr failed: {done.stderr}")
        if driver != "GeoJSON":
            import pyogrio

            return int(pyogrio.read_info(out)["features"])
        with out.open("rb") as sink:
            return sum(1 for line in sink if line.startswith(b'{ "type": "Feature"'))

    return run


def to_file(url: URL, spec: dict[str, Any], suffix: str = ".parquet") -> Run:
    """What a geopandas user writes: the whole table as one GeoDataFrame, then the file
    (to_parquet, or to_feather)."""
    import geopandas
    from sqlalchemy import create_engine

    engine, out = create_engine(url), Path(spec["workdir"]) / f"geopandas{suffix}"

    def run() -> int:
        with engine.connect() as conn:
            frame = geopandas.read_postgis(SELECT, conn, geom_col="geom")
        if suffix == ".feather":
            frame.to_feather(out)
        else:
            frame.to_parquet(out)
        return len(frame)

    return run


PREPARE: dict[str, Callable[[URL, dict[str, Any]], Run]] = {
    "anchor": lambda url, spec: raw_cursor(url, spec, binary=True),
    "anchor_text": lambda url, spec: raw_cursor(url, spec, binary=False),
    "stream": geosession_stream,
    "stream_pages": lambda url, spec: geosession_stream(url, spec, pages_by="id"),
    "stream_frames": geosession_frames,
    "orm_all": lambda url, spec: orm(url, spec, yield_per=False),
    "orm_yield_per": lambda url, spec: orm(url, spec, yield_per=True),
    "read_postgis": lambda url, spec: read_postgis(url, spec, chunksize=None),
    "read_postgis_chunks": lambda url, spec: read_postgis(url, spec, chunksize=50_000),
    "export_hand": export_hand,
    "export": geosession_export,
    "export_p9": lambda url, spec: geosession_export(url, spec, precision=9),
    "ogr2ogr": ogr2ogr,
    "export_gpkg": lambda url, spec: geosession_export(url, spec, ".gpkg"),
    "ogr2ogr_gpkg": lambda url, spec: ogr2ogr(url, spec, "GPKG"),
    "export_fgb": lambda url, spec: geosession_export(url, spec, ".fgb"),
    "export_fgb_noindex": lambda url, spec: geosession_export(
        url, spec, ".fgb", spatial_index=False
    ),
    "ogr2ogr_fgb": lambda url, spec: ogr2ogr(url, spec, "FlatGeobuf"),
    "export_shp": lambda url, spec: geosession_export(url, spec, ".shp"),
    "ogr2ogr_shp": lambda url, spec: ogr2ogr(url, spec, "ESRI Shapefile"),
    "export_parquet": lambda url, spec: geosession_export(url, spec, ".parquet"),
    "to_parquet": to_file,
    "export_arrow": lambda url, spec: geosession_export(url, spec, ".arrow"),
    "to_feather": lambda url, spec: to_file(url, spec, ".feather"),
}


# -- the report ---------------------------------------------------------------------------


def measure_all(bench: URL, rows: int, repeat: int, methods: list[str]) -> dict[str, Any]:
    """Median seconds and RSS growth per method; repeated ones interleaved round by round."""
    seconds: dict[str, list[float]] = {key: [] for key in methods}
    rss: dict[str, list[float]] = {key: [] for key in methods}
    with tempfile.TemporaryDirectory(prefix="geosession-read-") as workdir:
        for round_number in range(repeat):
            for key in methods:
                if round_number > 0 and key not in REPEATED:
                    continue
                print(f"  {key} (round {round_number + 1})", file=sys.stderr, flush=True)
                result = run_child(key, bench, rows, Path(workdir))
                seconds[key].append(result["seconds"])
                rss[key].append(result["rss_mb"])
    return {
        key: (statistics.median(seconds[key]), max(rss[key]), len(seconds[key])) for key in methods
    }


def report(results: dict[str, Any], rows: int) -> list[str]:
    lines = [f"{rows:,} polygons; median of the runs shown; RSS = peak growth over baseline", ""]
    lines.append(f"{'method':<72} {'runs':>4} {'rows/s':>10} {'RSS MB':>7}")
    labels = {**READS, **EXPORTS}
    for key, (seconds, rss_mb, runs) in results.items():
        rss_text = f"{rss_mb:7.0f}" + ("*" if key.startswith("ogr2ogr") else " ")
        lines.append(f"{labels[key]:<72} {runs:>4} {rows / seconds:>10,.0f} {rss_text}")
    lines += ["", "* ogr2ogr: peak RSS of the ogr2ogr process", "", "targets:"]
    speed = {key: rows / value[0] for key, value in results.items()}
    checks = [
        ("db.stream / binary raw cursor", "stream", "anchor", 0.9),
        ("db.stream / ORM .all()", "stream", "orm_all", 6.0),
        ("db.stream / read_postgis", "stream", "read_postgis", 4.0),
        ("db.stream / read_postgis(chunksize)", "stream", "read_postgis_chunks", 4.0),
        ("export_geojson / hand-written ST_AsGeoJSON", "export", "export_hand", 1.0),
        ("export_geojson(precision=9) / hand-written", "export_p9", "export_hand", 1.0),
        ("export_geojson / ogr2ogr", "export", "ogr2ogr", 1.0),
        ("export to GeoPackage / ogr2ogr -f GPKG", "export_gpkg", "ogr2ogr_gpkg", 1.0),
        ("export to FlatGeobuf / ogr2ogr -f FlatGeobuf", "export_fgb", "ogr2ogr_fgb", 1.0),
        ("export to Shapefile / ogr2ogr (with .qix)", "export_shp", "ogr2ogr_shp", 1.0),
        ("export to GeoParquet / read_postgis+to_parquet", "export_parquet", "to_parquet", 1.0),
        ("export to Arrow IPC / read_postgis+to_feather", "export_arrow", "to_feather", 1.0),
    ]
    for label, ours, theirs, target in checks:
        if ours in speed and theirs in speed:
            ratio = speed[ours] / speed[theirs]
            verdict = "PASS" if ratio >= target else "FAIL"
            lines.append(f"  {label:<46} {ratio:6.2f}x  (target >= {target:g}x)  {verdict}")
    if "stream" in results:
        growth = results["stream"][1]
        verdict = "PASS" if growth < 100 else "FAIL"
        lines.append(
            f"  {'db.stream peak RSS growth':<46} {growth:6.0f} MB (target < 100 MB)  {verdict}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the key methods")
    parser.add_argument("--methods", nargs="*", choices=[*READS, *EXPORTS])
    parser.add_argument("--url", help="server URL (default: GEOSESSION_DATABASE_URL)")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    url = resolve_url(args.url)
    print(f"preparing {args.rows:,} polygons in {DATABASE}.{TABLE}", file=sys.stderr)
    bench = prepare_database(url, args.rows)
    try:
        methods = args.methods or [*READS, *EXPORTS]
        results = measure_all(bench, args.rows, args.repeat, methods)
    finally:
        if not args.keep_database:
            drop_database(url, DATABASE)
    print("\n".join(report(results, args.rows)))


if __name__ == "__main__":
    main()
