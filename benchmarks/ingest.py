"""Ingest benchmark: rows/s of loading polygons into a table with a GiST index, in one run.

Compares, on the same server and in the same run (machines are noisy: compare ratios),
the naive limit (server-side ``COPY ... FROM '/file' (FORMAT BINARY)``), ``db.ingest``
appending and loading into an empty table (index deferred and rebuilt), the guide's ORM
``add_all``, SQLAlchemy Core executemany, geopandas ``to_postgis`` and ``ogr2ogr``; then
checks geosession's ratio targets against them and prints PASS/FAIL, with the CPU seconds
the client and the server spent (the server's from /proc, so it must run here).

Each comparison starts from the same input: ORM, Core and geosession's default rows from
the same rows in memory (polygons built before the clock; each turns them into its own
input, objects or dicts, on the clock), to_postgis and geosession from one GeoDataFrame,
ogr2ogr and geosession from one GeoPackage. A generator that builds the polygons while
loading (2.3 s per 1M rows by itself) shows the peak RSS of a source that is never whole.

Run (1,000,000 rows on 2 cores: about 2 minutes, plus 90 s per extra repeat)::

    .venv/bin/python benchmarks/ingest.py                      # 1,000,000 rows, once
    .venv/bin/python benchmarks/ingest.py --rows 200000 --repeat 3 --markdown
    .venv/bin/python benchmarks/ingest.py --methods naive,append_geojson,ogr2ogr_geojson

The GeoJSON methods run only when asked for: their file (made from the GeoPackage by
ogr2ogr) is about 190 MB at 1,000,000 rows.

The server is GEOSESSION_DATABASE_URL, else the running embedded cluster (``geosession
local url``); it must run on this machine (it reads and writes the COPY file) and the role
must be a superuser. Everything happens in a database of its own (``geosession_bench``,
created with PostGIS, dropped at the end unless ``--keep-database``). Every client-side
method runs in a child process, which reports its time and its peak RSS growth.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_child
import numpy as np
import psycopg
from bench_child import rss_kib
from bench_server import connect, conninfo, drop_database, ensure_database, resolve_url
from psycopg import sql
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import URL, make_url

TABLE = "bench_parcels"
STAGE = "bench_stage"
LAYER = "parcels"
BATCH = 10_000
PRELOAD = 1_000
SRID = 4326
console = Console(stderr=True)

# -- the rows: the same for every method -----------------------------------------------


def make_batch(first_id: int, size: int, seed: int) -> tuple[list[int], list[str], Any, Any]:
    """ids, names, values and polygons (no SRID) of one batch, a function of its arguments."""
    from geosession.demo import synthetic_polygons

    ids = list(range(first_id, first_id + size))
    values = np.random.default_rng(seed + 1).uniform(5e4, 5e6, size).round(2)
    return ids, [f"parcel-{i}" for i in ids], values, synthetic_polygons(size, seed=seed)


def batches(count: int, first_id: int = 1, seed: int = 0) -> Iterator[tuple[Any, ...]]:
    for start in range(0, count, BATCH):
        yield make_batch(first_id + start, min(BATCH, count - start), seed + start)


def source_rows(parts: Iterable[tuple[Any, ...]]) -> Iterator[dict[str, Any]]:
    """What a user's generator looks like: a dict per row, from batches of columns."""
    for ids, names, values, polygons in parts:
        for i, id_ in enumerate(ids):
            yield {"id": id_, "name": names[i], "value": float(values[i]), "geom": polygons[i]}


def ewkb_rows(count: int, first_id: int = 1, seed: int = 0) -> Iterator[tuple[Any, ...]]:
    import shapely

    for ids, names, values, polygons in batches(count, first_id, seed):
        wkb = shapely.to_wkb(shapely.set_srid(polygons, SRID), include_srid=True)
        yield from zip(ids, names, values.tolist(), wkb.tolist(), strict=True)


# -- the server side ---------------------------------------------------------------------


def create_table(conn: psycopg.Connection[Any], name: str, *, index: bool = True) -> None:
    table = sql.Identifier(name)
    conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {}, {}").format(table, sql.Identifier(name + "_rejected"))
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id integer PRIMARY KEY, name text NOT NULL, "
            "value double precision NOT NULL, geom geometry(POLYGON, 4326) NOT NULL)"
        ).format(table)
    )
    if index:
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} USING gist (geom)").format(
                sql.Identifier(name + "_geom_idx"), table
            )
        )


def drop_table(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def copy_rows(conn: psycopg.Connection[Any], name: str, rows: Iterator[tuple[Any, ...]]) -> None:
    statement = sql.SQL("COPY {} (id, name, value, geom) FROM STDIN (FORMAT BINARY)")
    with conn.cursor() as cursor, cursor.copy(statement.format(sql.Identifier(name))) as copy:
        copy.set_types(["int4", "text", "float8", "bytea"])
        for row in rows:
            copy.write_row(row)


def checkpoint(conn: psycopg.Connection[Any]) -> None:
    """Starts each measurement with no dirty buffers from the one before (needs superuser)."""
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        conn.execute("CHECKPOINT")


def count_rows(conn: psycopg.Connection[Any], name: str, *, mismatched: bool) -> int:
    """All rows, or those whose name does not follow from their id (a misloaded row)."""
    where = sql.SQL(" WHERE name <> 'parcel-' || id" if mismatched else "")
    statement = sql.SQL("SELECT count(*) FROM {}{}").format(sql.Identifier(name), where)
    row = conn.execute(statement).fetchone()
    return int(row[0]) if row else 0


def drop_bench_tables(conn: psycopg.Connection[Any]) -> None:
    names = [TABLE, TABLE + "_rejected", STAGE]
    names += ["geosession_ingest_ledger", "geosession_ingest_deferred_index"]
    conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(map(sql.Identifier, names)))
    )


# -- the input files, made once ----------------------------------------------------------


@dataclass(frozen=True)
class Files:
    directory: Path
    binary: Path
    geopackage: Path
    geojson: Path
    """Made from the GeoPackage by ogr2ogr, only when a GeoJSON method runs (~190 MB at 1M)."""


def make_files(conn: psycopg.Connection[Any], rows: int, *, geojson: bool) -> Files:
    """The binary COPY file (written by the server), the GeoPackage (by pyogrio) and, with
    ``geojson``, the GeoJSON file (by ogr2ogr from the GeoPackage, keeping the ids)."""
    directory = Path(tempfile.mkdtemp(prefix="geosession-bench-"))
    directory.chmod(0o777)  # the server's OS user writes the COPY file here
    files = Files(
        directory,
        directory / "parcels.bin",
        directory / "parcels.gpkg",
        directory / "parcels.geojson",
    )
    create_table(conn, STAGE, index=False)
    copy_rows(conn, STAGE, ewkb_rows(rows))
    conn.execute(
        sql.SQL(
            "COPY (SELECT id, name, value, geom FROM {} ORDER BY id) TO {} (FORMAT BINARY)"
        ).format(sql.Identifier(STAGE), sql.Literal(str(files.binary)))
    )
    drop_table(conn, STAGE)
    write_geopackage(files.geopackage, rows)
    if geojson:
        command = ["ogr2ogr", "-f", "GeoJSON", str(files.geojson), str(files.geopackage)]
        subprocess.run([*command, "-preserve_fid"], check=True, capture_output=True)
    os.sync()  # else the kernel writes the new files back during the first measurement
    return files


def write_geopackage(path: Path, rows: int) -> None:
    import geopandas
    import pyogrio

    for number, (ids, names, values, polygons) in enumerate(batches(rows)):
        frame = geopandas.GeoDataFrame(
            {"id": ids, "name": names, "value": values}, geometry=polygons, crs=SRID
        ).rename_geometry("geom")
        pyogrio.write_dataframe(frame, path, layer=LAYER, append=number > 0)


# -- measurements ------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    small: str = ""
    """"" for the full row count, else the option giving a smaller one (orm, small)."""
    preload: bool = True
    """Pre-load 1,000 rows first, so the table is not empty (an append)."""
    rss: bool = False
    by_default: bool = True
    """Run without --methods (the GeoJSON ones make a large file first: asked for only)."""


METHODS = (
    Method("naive", "server COPY FROM file, binary (naive limit)"),
    Method("append", "geosession append (default: workers=auto, 2)", rss=True),
    Method("append1", "geosession append, workers=1", rss=True),
    Method("append_gen", "geosession append, generator building the polygons", rss=True),
    Method("append_gpkg", "geosession append, GeoPackage", rss=True),
    Method("append_gdf", "geosession append, GeoDataFrame", rss=True),
    Method("empty", "geosession empty table (index rebuilt)", preload=False, rss=True),
    Method("empty_gpkg", "geosession empty table, GeoPackage", preload=False, rss=True),
    Method("ogr2ogr", "ogr2ogr PG_USE_COPY from GeoPackage"),
    Method("append_geojson", "geosession append, GeoJSON", rss=True, by_default=False),
    Method("ogr2ogr_geojson", "ogr2ogr PG_USE_COPY from GeoJSON", by_default=False),
    Method("orm", "ORM add_all, 10k chunks, from_shape", small="orm"),
    Method("core", "Core executemany, hex EWKB", small="small"),
    Method("to_postgis", "geopandas to_postgis, chunksize=10k", small="small"),
    Method(
        "append_features",
        "geosession append, GeoJSON FeatureCollection (a web API's, in memory)",
        small="small",
        by_default=False,
    ),
    Method(
        "features_to_postgis",
        "geopandas from_features + to_postgis, chunksize=10k",
        small="small",
        by_default=False,
    ),
)


@dataclass
class Outcome:
    rows: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(sample.seconds for sample in self.samples)

    @property
    def cpu(self) -> str:
        """Median CPU seconds, client + server (server "?" when it is not on this machine)."""
        client = statistics.median(sample.client_cpu for sample in self.samples)
        servers = [sample.server_cpu for sample in self.samples]
        if any(server is None for server in servers):
            return f"{client:.1f} + ?"
        return f"{client:.1f} + {statistics.median(s for s in servers if s is not None):.1f}"

    @property
    def rate(self) -> float:
        return self.rows / self.median


def rows_for(method: Method, args: argparse.Namespace) -> int:
    rows: int = args.rows
    return min(rows, getattr(args, method.small + "_rows")) if method.small else rows


@dataclass(frozen=True)
class Sample:
    """One load: wall seconds, CPU seconds of the client and of the server, peak RSS."""

    seconds: float
    client_cpu: float
    server_cpu: float | None
    rss_mb: float | None


def measure(method: Method, rows: int, bench: URL, files: Files) -> Sample:
    """One load of ``rows`` rows by ``method`` into a fresh table."""
    with connect(bench) as conn:
        create_table(conn, TABLE)
        if method.preload:
            copy_rows(conn, TABLE, ewkb_rows(PRELOAD, first_id=rows + 1, seed=10**7))
        checkpoint(conn)
        server = ServerCpu(conn)
        if method.key == "naive":
            seconds, client, rss = time_server_copy(conn, files.binary), 0.0, None
        elif method.key in ("ogr2ogr", "ogr2ogr_geojson"):
            source = files.geojson if method.key == "ogr2ogr_geojson" else files.geopackage
            seconds, client, rss = *time_ogr2ogr(bench, source), None
        else:
            seconds, client, rss = run_child(method.key, bench, rows, files)
        sample = Sample(seconds, client, server.used(conn), rss)
        check_loaded(conn, method, rows)
        drop_table(conn, TABLE)  # frees the space before the next method
    return sample


class ServerCpu:
    """CPU seconds the server's processes use from now on, read from /proc.

    The postmaster's own times include the backends that exited (it reaps them); the
    live ones are added. None when the server is not on this machine.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        self.postmaster = _parent_pid(row[0]) if row else None
        self.start = self._total()

    def used(self, conn: psycopg.Connection[Any]) -> float | None:
        """After the method's backends are gone and reaped: a backend that just exited is
        in neither the live list nor the postmaster's children times until it is."""
        deadline = time.monotonic() + 5
        while _other_backends(conn) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        total = self._total()
        return None if total is None or self.start is None else total - self.start

    def _total(self) -> float | None:
        if self.postmaster is None:
            return None
        try:
            own = _proc_times(self.postmaster, children=True)
            children = Path(f"/proc/{self.postmaster}/task/{self.postmaster}/children")
            pids = children.read_text().split()
        except OSError:
            return None
        return own + sum(_proc_times(int(pid)) for pid in pids)


def _other_backends(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(row[0]) if row else 0


def _parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _proc_times(pid: int, *, children: bool = False) -> float:
    """utime + stime (+ cutime + cstime) of ``pid`` in seconds; 0 if it just exited."""
    fields = _stat_fields(pid)
    ticks = sum(int(value) for value in fields[11 : 15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (state, ppid, ...); [] when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def check_loaded(conn: psycopg.Connection[Any], method: Method, rows: int) -> None:
    loaded = count_rows(conn, TABLE, mismatched=False) - (PRELOAD if method.preload else 0)
    if loaded != rows:
        raise RuntimeError(f"{method.key}: {loaded:,} rows loaded, expected {rows:,}")
    if count_rows(conn, TABLE, mismatched=True):
        raise RuntimeError(f"{method.key}: some rows have a name that does not match their id")


def time_server_copy(conn: psycopg.Connection[Any], path: Path) -> float:
    started = time.perf_counter()
    conn.execute(
        sql.SQL("COPY {} (id, name, value, geom) FROM {} (FORMAT BINARY)").format(
            sql.Identifier(TABLE), sql.Literal(str(path))
        )
    )
    return time.perf_counter() - started


def time_ogr2ogr(bench: URL, source: Path) -> tuple[float, float]:
    """ogr2ogr takes the integer primary key as the FID column, so the file's FIDs (1..N,
    the same as its id field; the GeoJSON file's feature ids) are kept with -preserve_fid."""
    target = f"PG:host={bench.host} port={bench.port or 5432} dbname={bench.database} "
    target += f"user={bench.username}"
    env = {**os.environ, "PG_USE_COPY": "YES", "PGPASSWORD": bench.password or ""}
    command = ["ogr2ogr", "-f", "PostgreSQL", target, str(source), LAYER, "-nln", TABLE]
    command += ["-append", "-preserve_fid", "-gt", "65536"]
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"ogr2ogr failed: {done.stderr}")
    return seconds, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(key: str, bench: URL, rows: int, files: Files) -> tuple[float, float, float]:
    spec = {
        "key": key,
        "url": conninfo(bench),
        "rows": rows,
        "geopackage": str(files.geopackage),
        "geojson": str(files.geojson),
    }
    result = bench_child.run_child(__file__, spec)
    console.log(f"{key}: the child's imports and setup took {result['setup_mb']:.0f} MB")
    if result["rebuild"]:
        console.log(f"{key}: of its time, rebuilding indexes and ANALYZE {result['rebuild']:.2f} s")
    return float(result["seconds"]), float(result["cpu"]), float(result["rss_mb"])


# -- in the child process ----------------------------------------------------------------


def child(spec: dict[str, Any]) -> None:
    """Runs one measurement; prints its seconds and peak RSS growth as JSON.

    Imports and setup happen before the clock starts and before the RSS baseline, so the
    growth is what the load itself holds at its peak.
    """
    url = make_url(spec["url"]).set(drivername="postgresql+psycopg")
    started_with = rss_kib("VmRSS")
    load = CHILD_LOADS[spec["key"]](url, spec)
    reset_peak_rss()
    baseline = rss_kib("VmRSS")
    cpu, started = time.process_time(), time.perf_counter()
    report = load()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    growth = (rss_kib("VmHWM") - baseline) / 1024
    setup = (baseline - started_with) / 1024
    rebuild = getattr(report, "rebuild_seconds", 0.0)  # geosession's: index rebuild + ANALYZE
    result = {"seconds": seconds, "cpu": cpu, "rss_mb": growth, "setup_mb": setup}
    print(json.dumps({**result, "rebuild": rebuild}))


def reset_peak_rss() -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


def geosession_load(
    workers: int | str = "auto", *, source: str = "memory", empty: bool = False
) -> Any:
    """db.ingest with default options from a generator of dicts over the rows in memory
    (the polygons built before the clock, as for ORM and Core), a generator that builds
    them while loading, the GeoPackage, or a GeoDataFrame (what to_postgis is given)."""

    def prepare(url: URL, spec: dict[str, Any]) -> Any:
        from geosession import SpatialDatabase

        db = SpatialDatabase(url.render_as_string(hide_password=False))
        if source in ("geopackage", "geojson"):  # imported on first use (~200 MB): setup
            import pyarrow  # noqa: F401
            import pyogrio  # noqa: F401
        sources: dict[str, Callable[[], Any]] = {
            "features": lambda: feature_collection(spec["rows"]),
            "memory": lambda: source_rows(list(batches(spec["rows"]))),
            "generator": lambda: source_rows(batches(spec["rows"])),
            "geopackage": lambda: spec["geopackage"],
            "geojson": lambda: spec["geojson"],
            "geodataframe": lambda: geodataframe(spec["rows"]),
        }
        rows = sources[source]()

        def load() -> Any:
            report = db.ingest(TABLE, rows, workers=workers, progress=False)
            assert report.inserted == spec["rows"] and not report.rejected, report
            assert bool(report.deferred_indexes) == empty, report.deferred_indexes
            return report

        return load

    return prepare


def bench_table() -> Any:
    from geoalchemy2 import Geometry
    from sqlalchemy import Column, Float, Integer, MetaData, Text
    from sqlalchemy import Table as SATable

    return SATable(
        TABLE,
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", Text, nullable=False),
        Column("value", Float, nullable=False),
        Column("geom", Geometry("POLYGON", SRID, spatial_index=False), nullable=False),
    )


def orm_load(url: URL, spec: dict[str, Any]) -> Any:
    """The guide: mapped objects, from_shape (extended=False), add_all and commit per 10k,
    from the rows in memory."""
    from geoalchemy2.shape import from_shape
    from sqlalchemy import create_engine
    from sqlalchemy.orm import DeclarativeBase, Session

    class Base(DeclarativeBase):
        pass

    class Parcel(Base):
        __table__ = bench_table()

    engine, parts = create_engine(url), list(batches(spec["rows"]))

    def load() -> None:
        for ids, names, values, polygons in parts:
            parcels = [
                Parcel(id=i, name=n, value=v, geom=from_shape(p, srid=SRID))
                for i, n, v, p in zip(ids, names, values.tolist(), polygons, strict=True)
            ]
            with Session(engine) as session, session.begin():
                session.add_all(parcels)

    return load


def core_load(url: URL, spec: dict[str, Any]) -> Any:
    """session.execute(insert(t), dicts) per 10k chunk, geometry as hex EWKB, from the
    rows in memory."""
    import shapely
    from sqlalchemy import create_engine, insert
    from sqlalchemy.orm import Session

    table, engine, parts = bench_table(), create_engine(url), list(batches(spec["rows"]))

    def load() -> None:
        for ids, names, values, polygons in parts:
            hexes = shapely.to_wkb(shapely.set_srid(polygons, SRID), hex=True, include_srid=True)
            rows = [
                {"id": i, "name": n, "value": v, "geom": h}
                for i, n, v, h in zip(ids, names, values.tolist(), hexes, strict=True)
            ]
            with Session(engine) as session, session.begin():
                session.execute(insert(table), rows)

    return load


def geodataframe(rows: int) -> Any:
    """The rows as one GeoDataFrame in memory, as a geopandas user has them."""
    import geopandas
    import pandas

    frames = [
        geopandas.GeoDataFrame({"id": i, "name": n, "value": v}, geometry=p, crs=SRID)
        for i, n, v, p in batches(rows)
    ]
    return pandas.concat(frames, ignore_index=True).rename_geometry("geom")


def feature_collection(rows: int) -> dict[str, Any]:
    """The rows as a web API's GeoJSON FeatureCollection, parsed (``response.json()``)."""
    import orjson
    import shapely

    features = []
    for ids, names, values, polygons in batches(rows):
        geometries = map(orjson.loads, shapely.to_geojson(polygons))
        for i, n, v, g in zip(ids, names, values.tolist(), geometries, strict=True):
            properties = {"id": i, "name": n, "value": v}
            features.append({"type": "Feature", "geometry": g, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def features_to_postgis_load(url: URL, spec: dict[str, Any]) -> Any:
    """The user has the FeatureCollection: GeoDataFrame.from_features and to_postgis are
    timed."""
    import geopandas
    from sqlalchemy import create_engine

    collection, engine = feature_collection(spec["rows"]), create_engine(url)

    def load() -> None:
        frame = geopandas.GeoDataFrame.from_features(collection, crs=SRID)
        frame.rename_geometry("geom").to_postgis(
            TABLE, engine, if_exists="append", index=False, chunksize=BATCH
        )

    return load


def to_postgis_load(url: URL, spec: dict[str, Any]) -> Any:
    """The user already has the GeoDataFrame: only to_postgis is timed."""
    from sqlalchemy import create_engine

    frame, engine = geodataframe(spec["rows"]), create_engine(url)

    def load() -> None:
        frame.to_postgis(TABLE, engine, if_exists="append", index=False, chunksize=BATCH)

    return load


CHILD_LOADS = {
    "append": geosession_load(),
    "append1": geosession_load(1),
    "append_gen": geosession_load(source="generator"),
    "empty": geosession_load(empty=True),
    "append_gpkg": geosession_load(source="geopackage"),
    "append_gdf": geosession_load(source="geodataframe"),
    "empty_gpkg": geosession_load(source="geopackage", empty=True),
    "append_geojson": geosession_load(source="geojson"),
    "orm": orm_load,
    "core": core_load,
    "to_postgis": to_postgis_load,
    "append_features": geosession_load(source="features"),
    "features_to_postgis": features_to_postgis_load,
}

# -- targets and the table -----------------------------------------------------------------

RSS_LIMIT_MB = 200.0


@dataclass(frozen=True)
class Verdict:
    target: str
    passed: bool | None  # None: no target, or a method it needs was not run
    detail: str = ""


def verdicts(outcomes: dict[str, Outcome]) -> dict[str, Verdict]:
    """geosession's ingest targets, each checked against this run's medians."""

    def rate(key: str) -> float | None:
        return outcomes[key].rate if key in outcomes else None

    def at_least(key: str, base: str, factor: float, target: str) -> Verdict:
        value, reference = rate(key), rate(base)
        if value is None or reference is None:
            return Verdict(target, None)
        return Verdict(target, value >= factor * reference, f"{value / reference:.2f}×")

    found = {
        "append": at_least("append", "naive", 1.0, "≥ 1.00× naive"),
        "append1": at_least("append1", "naive", 1.0, "≥ 1.00× naive"),
        "append_gen": at_least("append_gen", "naive", 1.0, "≥ 1.00× naive"),
        "append_gpkg": at_least("append_gpkg", "naive", 1.0, "≥ 1.00× naive"),
        "append_gdf": at_least("append_gdf", "naive", 1.0, "≥ 1.00× naive"),
        "empty": at_least("empty", "naive", 1.4, "≥ 1.40× naive"),
        "empty_gpkg": at_least("empty_gpkg", "naive", 1.4, "≥ 1.40× naive"),
        "orm": at_least("append", "orm", 15, "append ≥ 15× this"),
        "to_postgis": at_least("append_gdf", "to_postgis", 4, "GeoDataFrame ≥ 4× this"),
        "ogr2ogr_geojson": at_least("append_geojson", "ogr2ogr_geojson", 1.0, "GeoJSON faster"),
        "features_to_postgis": at_least(
            "append_features", "features_to_postgis", 1.0, "Features faster"
        ),
    }
    append, empty = (
        at_least(k, "ogr2ogr", 1.0, "GeoPackage faster") for k in ("append_gpkg", "empty_gpkg")
    )
    if append.passed is not None and empty.passed is not None:
        found["ogr2ogr"] = Verdict(
            append.target,
            append.passed and empty.passed,
            f"append {append.detail}, empty {empty.detail}",
        )
    return found


def table_rows(outcomes: dict[str, Outcome]) -> list[list[str]]:
    naive = outcomes["naive"].rate if "naive" in outcomes else None
    checks = verdicts(outcomes)
    rows = []
    for method in METHODS:
        if method.key not in outcomes:
            continue
        outcome = outcomes[method.key]
        verdict = checks.get(method.key, Verdict("", None))
        rows.append(
            [
                method.label,
                f"{outcome.rows:,}",
                f"{outcome.median:.1f}",
                f"{outcome.rate:,.0f}",
                f"{outcome.rate / naive:.2f}" if naive else "",
                outcome.cpu,
                verdict.target,
                _result(verdict.passed, verdict.detail),
                _rss(outcome) if method.rss else "",
            ]
        )
    return rows


def _result(passed: bool | None, detail: str) -> str:
    if passed is None:
        return ""
    return f"{'PASS' if passed else 'FAIL'} ({detail})"


def _rss(outcome: Outcome) -> str:
    peak = max(sample.rss_mb or 0.0 for sample in outcome.samples)
    return f"{'PASS' if peak < RSS_LIMIT_MB else 'FAIL'} ({peak:.0f} MB)"


HEADERS = [
    "method",
    "rows",
    "seconds",
    "rows/s",
    "× naive",
    "CPU s (client + server)",
    "target",
    "result",
    f"peak RSS growth (< {RSS_LIMIT_MB:.0f} MB)",
]


def print_table(outcomes: dict[str, Outcome], title: str, markdown: bool) -> None:
    table = Table(title=title)
    for number, header in enumerate(HEADERS):
        table.add_column(header, justify="right" if 0 < number < 6 else "left")
    rows = table_rows(outcomes)
    for row in rows:
        style = "red" if "FAIL" in row[7] + row[8] else None
        table.add_row(*row, style=style)
    Console(width=160).print(table)
    if markdown:
        print("| " + " | ".join(HEADERS) + " |")
        print("|---|" + "---:|" * 5 + "---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


# -- main --------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per load")
    parser.add_argument("--repeat", type=int, default=1, help="median of this many runs")
    parser.add_argument("--orm-rows", type=int, default=50_000, help="rows for ORM add_all")
    parser.add_argument(
        "--small-rows", type=int, default=200_000, help="rows for Core and to_postgis"
    )
    parser.add_argument("--methods", help="comma-separated subset of: " + ", ".join(KEYS))
    parser.add_argument("--url", help="server URL (default: GEOSESSION_DATABASE_URL, local)")
    parser.add_argument("--database", default="geosession_bench", help="database to use")
    parser.add_argument("--keep-database", action="store_true", help="do not drop it")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


KEYS = [m.key for m in METHODS]
DEFAULT_KEYS = [m.key for m in METHODS if m.by_default]


def selected(args: argparse.Namespace) -> list[Method]:
    wanted = args.methods.split(",") if args.methods else DEFAULT_KEYS
    unknown = set(wanted) - set(KEYS)
    if unknown:
        sys.exit(f"unknown methods {sorted(unknown)}; choose from {', '.join(KEYS)}")
    if any(key.startswith("ogr2ogr") or "geojson" in key for key in wanted) and not shutil.which(
        "ogr2ogr"
    ):
        sys.exit("ogr2ogr not found: apt-get install gdal-bin, or leave it out with --methods")
    return [m for m in METHODS if m.key in wanted]


def run_all(args: argparse.Namespace, bench: URL, files: Files) -> dict[str, Outcome]:
    """Each repeat runs every method once, in order, so drift spreads over all of them."""
    methods = selected(args)
    outcomes = {m.key: Outcome(rows_for(m, args)) for m in methods}
    for repeat in range(1, args.repeat + 1):
        for method in methods:
            outcome = outcomes[method.key]
            sample = measure(method, outcome.rows, bench, files)
            outcome.samples.append(sample)
            console.log(
                f"[{repeat}/{args.repeat}] {method.label}: {outcome.rows:,} rows in "
                f"{sample.seconds:.1f} s, {outcome.rows / sample.seconds:,.0f} rows/s, "
                f"CPU {sample.client_cpu:.1f} s client, {sample.server_cpu or 0:.1f} s server"
                + (f", peak RSS +{sample.rss_mb:.0f} MB" if sample.rss_mb is not None else "")
            )
    return outcomes


def machine(conn: psycopg.Connection[Any]) -> str:
    """Cores, server versions, the geosession commit, and the load (other users are noise)."""
    server = conn.execute("SHOW server_version").fetchone()
    postgis = conn.execute("SELECT postgis_lib_version()").fetchone()
    return (
        f"{os.cpu_count()} cores, PostgreSQL {server[0] if server else '?'}, "
        f"PostGIS {postgis[0] if postgis else '?'}, geosession {code_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )


def code_version() -> str:
    """The commit of the working tree, with '+changes' when it has uncommitted edits."""
    root = Path(__file__).resolve().parent.parent

    def git(*arguments: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *arguments], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "src") else "")


def main() -> None:
    args = parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    selected(args)  # an unknown method or a missing ogr2ogr fails before the input files
    url = resolve_url(args.url)
    bench = ensure_database(url, args.database)
    files = None
    try:
        with connect(bench) as conn:
            title = f"Ingest, {args.rows:,} rows, median of {args.repeat}: {machine(conn)}"
            console.log(f"making the input files ({args.rows:,} rows)")
            geojson = any("geojson" in method.key for method in selected(args))
            files = make_files(conn, args.rows, geojson=geojson)
        outcomes = run_all(args, bench, files)
    finally:
        cleanup(url, bench, files, args)
    print_table(outcomes, title, args.markdown)


def cleanup(url: URL, bench: URL, files: Files | None, args: argparse.Namespace) -> None:
    if files is not None:
        shutil.rmtree(files.directory, ignore_errors=True)
    if args.keep_database:
        with connect(bench) as conn:
            drop_bench_tables(conn)
    else:
        drop_database(url, args.database)


if __name__ == "__main__":
    main()
