"""db.ingest on the real server: exactly once, bad rows set aside, conflicts, indexes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import hashlib
import itertools
import json
import pickle
import re
import struct
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pytest
import shapely
from geoalchemy2 import Geometry, WKBElement
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import ForeignKey, make_url, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from geosession import (
    ConfigurationError,
    GeoSessionError,
    IngestReport,
    IntegrityViolation,
    InvalidGeometry,
    LockTimeout,
    SpatialDatabase,
)
from geosession.demo import synthetic_polygons
from geosession.geometry import to_ewkb, to_geojson
from geosession.observe.prometheus import register
from tests.faults.helpers import record_dropped_gist, wait_until

TABLE = "ingest_parcels"


def create_table(db: SpatialDatabase, geometry: str = "POLYGON", extra: str = "") -> None:
    with db.transaction() as s:
        s.execute(text(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_rejected"))
        s.execute(text("DROP TABLE IF EXISTS geosession_ingest_ledger"))
        s.execute(
            text(
                f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, name text, value float8 {extra}, "
                f"geom geometry({geometry}, 4326) NOT NULL)"
            )
        )
        s.execute(text(f"CREATE INDEX {TABLE}_geom_idx ON {TABLE} USING gist (geom)"))


@pytest.fixture
def table(db: SpatialDatabase) -> Iterator[str]:
    create_table(db)
    yield TABLE
    with db.transaction() as s:
        s.execute(text(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_rejected"))
    assert not ingest_threads(), "an ingest left threads running"


@pytest.fixture
def scratch(db: SpatialDatabase) -> Iterator[Callable[..., None]]:
    """Tables a test makes for itself: ``scratch(name, ...)`` drops them, and their
    rejects tables, after the test."""
    names: list[str] = []
    yield lambda *made: names.extend(made)
    with db.transaction() as s:
        for name in names:
            s.execute(text(f"DROP TABLE IF EXISTS {name}, {name}_rejected CASCADE"))


def ingest_threads() -> list[str]:
    """Threads of the ingest pipeline still alive: every ingest joins its own."""
    return [t.name for t in threading.enumerate() if t.name.startswith("geosession-ingest")]


def rows(count: int, *, start: int = 1, seed: int = 0) -> Iterator[dict[str, Any]]:
    """A generator of unknown length, as a user's would be."""
    for offset, polygon in enumerate(synthetic_polygons(count, seed=seed)):
        number = start + offset
        yield {"id": number, "name": f"p{number}", "value": float(number), "geom": polygon}


def source_checksum(count: int, *, seed: int = 0) -> str:
    ewkb = shapely.to_wkb(
        shapely.set_srid(synthetic_polygons(count, seed=seed), 4326),
        hex=True,
        include_srid=True,
        flavor="extended",
    )
    return hashlib.md5("".join(h.lower() for h in ewkb).encode()).hexdigest()


def table_state(db: SpatialDatabase) -> tuple[int, int, str]:
    """Row count, distinct ids, and the md5 of every geometry's EWKB in id order."""
    with db.session() as s:
        return tuple(  # type: ignore[return-value]
            s.execute(
                text(
                    f"SELECT count(*), count(DISTINCT id), "
                    "md5(coalesce(string_agg(encode(ST_AsEWKB(geom, 'NDR'), 'hex'), '' "
                    "ORDER BY id), '')) "
                    f"FROM {TABLE}"
                )
            ).one()
        )


def watch_for_rows(db: SpatialDatabase, count: int, seconds: float = 15) -> int:
    """Rows in the table once ``count`` are there (or the deadline passed)."""
    deadline = time.monotonic() + seconds
    while (found := table_state(db)[0]) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def unclosed_ring_ewkb() -> bytes:
    """EWKB of a polygon whose ring is not closed: PostGIS would store it as it is."""
    points = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    header = struct.pack("<BIIII", 1, 0x20000003, 4326, 1, len(points))
    return header + b"".join(struct.pack("<dd", *p) for p in points)


def nan_polygon() -> shapely.Polygon:
    with warnings.catch_warnings():  # numpy warns about the NaN it is asked to store
        warnings.simplefilter("ignore", RuntimeWarning)
        return shapely.Polygon([(0, 0), (1, float("nan")), (1, 1), (0, 0)])


BAD_VALUES: dict[str, Any] = {
    "null": None,
    "unparsable": "definitely not a geometry",
    "empty": "POLYGON EMPTY",
    "type": "SRID=4326;LINESTRING(0 0, 1 1)",
    "srid": "SRID=3857;POLYGON((0 0, 1 0, 1 1, 0 0))",
    "dimension": "SRID=4326;POLYGON Z((0 0 1, 1 0 1, 1 1 1, 0 0 1))",
    "non_finite": nan_polygon(),
    "too_few_points": "SRID=4326;POLYGON((0 0, 1 1, 0 0))",
    "unclosed_ring": unclosed_ring_ewkb().hex(),
    "invalid": "SRID=4326;POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))",
}


def test_generator_loads_every_row_exactly_once(db: SpatialDatabase, table: str) -> None:
    report = db.ingest(table, rows(30_000), chunk_size=4_000)
    assert (report.rows_read, report.inserted, report.rejected) == (30_000, 30_000, [])
    assert report.chunks == 8 and report.completed
    assert (report.chunk_size_min, report.chunk_size_max) == (2_000, 4_000)  # as committed
    assert table_state(db) == (30_000, 30_000, source_checksum(30_000))
    assert "30,000" in str(report) and "2,000 – 4,000 rows" in str(report)
    title = f'Ingest {report.ingest_id} into "public"."{table}": complete'
    assert str(report).splitlines()[0].strip() == title  # on one line, though wider than 72


def test_a_source_smaller_than_a_chunk_reports_its_own_size(
    db: SpatialDatabase, table: str
) -> None:
    report = db.ingest(table, rows(700))
    assert (report.chunks, report.chunk_size_min, report.chunk_size_max) == (1, 700, 700)
    again = db.ingest(table, rows(700), ingest_id=report.ingest_id)  # nothing left to load
    assert (again.already_committed, again.chunks) == (700, 0)
    chunk_size_line = next(line for line in str(again).splitlines() if "chunk size" in line)
    assert "–" in chunk_size_line and "0 rows" not in chunk_size_line


def test_every_bad_input_kind_is_quarantined_with_its_reason(
    db: SpatialDatabase, table: str
) -> None:
    source = list(rows(5_000))
    positions = {}
    for offset, (kind, value) in enumerate(BAD_VALUES.items()):
        position = 137 + offset * 433
        source[position] = {**source[position], "geom": value}
        positions[position + 1] = kind
    report = db.ingest(table, iter(source), chunk_size=1_000)
    assert {r.row: r.kind for r in report.rejected} == positions
    assert report.inserted == 5_000 - len(BAD_VALUES)
    with db.session() as s:
        stored = s.execute(
            text(
                "SELECT source_row, kind, column_name, reason, original_value "
                f"FROM {TABLE}_rejected"
            )
        ).all()
        count = s.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar()
    assert {row[0]: row[1] for row in stored} == positions
    assert all(row[2] == "geom" and row[3] for row in stored)
    assert count == 5_000 - len(BAD_VALUES)
    reasons = {r.kind: r.reason for r in report.rejected}
    assert "SRID 3857" in reasons["srid"] and "Self-intersection" in reasons["invalid"]
    # the parser's words, not the value again (it is stored beside the reason)
    assert reasons["unclosed_ring"].endswith("do not form a closed linestring")
    assert "cannot read" not in reasons["unclosed_ring"]


def test_curves_and_tins_are_quarantined_and_the_rest_of_their_chunk_loads(
    db: SpatialDatabase, admin: psycopg.Connection[Any], table: str
) -> None:
    """shapely refuses a whole array holding one curve (NotImplementedError), which ended
    the ingest; each is a reject naming its type, in every form a geometry may come in."""
    curve = "CIRCULARSTRING(0 0, 1 1, 2 0)"
    (ewkb,) = admin.execute("SELECT ST_AsEWKB(%s::geometry)", (f"SRID=4326;{curve}",)).fetchone()
    tin = "SRID=4326;TIN Z (((0 0 0, 0 1 0, 1 1 0, 0 0 0)))"
    source = list(rows(3_000))
    bad = {10: curve, 20: f"SRID=4326;{curve}", 30: bytes(ewkb), 40: bytes(ewkb).hex(), 50: tin}
    for row, value in bad.items():
        source[row - 1] = {**source[row - 1], "geom": value}
    report = db.ingest(table, iter(source), chunk_size=1_000)
    assert {r.row for r in report.rejected} == set(bad)
    held = {r.row: r.reason.partition(": it is a ")[2].partition(",")[0] for r in report.rejected}
    assert held == {**dict.fromkeys([10, 20, 30, 40], "CircularString"), 50: "TIN"}
    assert all(
        ("ST_ForceCollection" if r.row == 50 else "ST_CurveToLine") in r.reason
        for r in report.rejected
    )
    assert report.inserted == table_state(db)[0] == 3_000 - len(bad)


def test_a_z_of_zero_everywhere_is_dropped_for_a_2d_column_and_any_other_z_refused(
    db: SpatialDatabase, table: str
) -> None:
    """Google Earth writes every point with an altitude of 0: each was a dimension reject."""
    source = list(rows(6))
    source[0]["geom"] = "SRID=4326;POLYGON Z((0 0 0, 1 0 0, 1 1 0, 0 0 0))"
    source[1]["geom"] = "SRID=4326;POLYGON Z((0 0 0, 1 0 5, 1 1 0, 0 0 0))"  # one Z is not 0
    source[2]["geom"] = "SRID=4326;POLYGON M((0 0 0, 1 0 0, 1 1 0, 0 0 0))"  # M, not Z
    source[3]["geom"] = shapely.Polygon([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 0, 0)])
    report = db.ingest(table, iter(source))
    assert {r.row: r.kind for r in report.rejected} == {2: "dimension", 3: "dimension"}
    assert report.z_dropped == 2 and "Z of 0 dropped for the 2D column" in str(report)
    with db.session() as s:
        stored = s.execute(text(f"SELECT id, ST_AsText(geom) FROM {TABLE} WHERE id IN (1, 4)"))
        square = "POLYGON((0 0,1 0,1 1,0 0))"
        assert sorted(stored.all()) == [(1, square), (4, square)]


def test_geography_columns_are_checked_like_geometry_and_for_their_range(
    db: SpatialDatabase,
    scratch: Callable[..., None],
) -> None:
    """Their SRID and type come from geography_columns; out-of-range coordinates (metres
    in a lon/lat column) would be wrapped onto the globe by PostGIS without an error."""
    scratch("ingest_geog")
    with db.transaction() as s:
        s.execute(
            text("CREATE TABLE ingest_geog (id integer PRIMARY KEY, g geography(POINT, 4326))")
        )
    source = [
        {"id": 1, "g": "POINT(13.4 52.5)"},
        {"id": 2, "g": "SRID=4326;POINT(-180 -90)"},  # on the edge: fine
        {"id": 3, "g": "POINT(1489600 6891800)"},  # Berlin in EPSG:3857 metres
        {"id": 4, "g": "POINT(13.4 95)"},
        {"id": 5, "g": "SRID=3857;POINT(1 2)"},
        {"id": 6, "g": "LINESTRING(0 0,1 1)"},
        {"id": 7, "g": "POINT(-180.0000001 0)"},  # just beyond: its bounds say by how much
    ]
    report = db.ingest("ingest_geog", source)
    kinds = {r.row: r.kind for r in report.rejected}
    assert kinds == {3: "out_of_range", 4: "out_of_range", 5: "srid", 6: "type", 7: "out_of_range"}
    assert "(bounds 1489600, 6891800, 1489600, 6891800)" in report.rejected[0].reason
    assert "are they projected?" in report.rejected[0].reason
    assert "(bounds -180.0000001, 0, -180.0000001, 0)" in report.rejected[-1].reason
    with db.session() as s:
        stored = s.execute(text("SELECT id, ST_AsText(g) FROM ingest_geog ORDER BY id"))
        assert stored.all() == [(1, "POINT(13.4 52.5)"), (2, "POINT(-180 -90)")]


def test_raise_names_the_row_and_keeps_committed_chunks(db: SpatialDatabase, table: str) -> None:
    source = list(rows(3_000))
    source[2_500] = {**source[2_500], "geom": BAD_VALUES["invalid"]}
    with pytest.raises(InvalidGeometry, match="Row 2501, column geom: invalid geometry") as info:
        db.ingest(table, iter(source), chunk_size=1_000, on_invalid="raise")
    report = info.value.ingest_report  # type: ignore[attr-defined]
    assert report.inserted == table_state(db)[0] >= 2_000
    assert not report.completed


def test_repair_keeps_the_column_type(db: SpatialDatabase) -> None:
    create_table(db, geometry="MULTIPOLYGON")
    source = [
        {"id": 1, "geom": BAD_VALUES["invalid"]},  # a bow-tie: make_valid gives two triangles
        {"id": 2, "geom": "SRID=4326;POLYGON((0 0, 1 0, 1 1, 0 0))"},  # promoted to multi
        {"id": 3, "geom": BAD_VALUES["empty"]},  # not repairable
    ]
    report = db.ingest(TABLE, source, on_invalid="repair")
    assert [r.row for r in report.repaired] == [1]
    assert [(r.row, r.kind) for r in report.rejected] == [(3, "empty")]
    with db.session() as s:
        assert s.execute(text(f"SELECT bool_and(ST_IsValid(geom)) FROM {TABLE}")).scalar()
        assert s.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar() == 2


def test_repair_refuses_results_the_column_cannot_hold(db: SpatialDatabase, table: str) -> None:
    report = db.ingest(table, [{"id": 1, "geom": BAD_VALUES["invalid"]}], on_invalid="repair")
    assert report.rejected[0].kind == "invalid" and "MultiPolygon" in report.rejected[0].reason


def test_repair_drops_the_z_a_2d_column_cannot_hold(db: SpatialDatabase, table: str) -> None:
    """A 3D source (a PolygonZ Shapefile) into a 2D column: every row was a 'dimension'
    reject; repair drops the Z (and makes the result valid if it is not), and says so."""
    z_square = "SRID=4326;POLYGON Z((0 0 5, 1 0 5, 1 1 6, 0 1 6, 0 0 5))"
    z_bowtie = "SRID=4326;POLYGON Z((0 0 1, 1 1 1, 1 0 1, 0 1 1, 0 0 1))"
    source = [{"id": 1, "geom": z_square}, {"id": 2, "geom": z_bowtie}]
    quarantined = db.ingest(table, source, ingest_id="z-quarantine")
    assert [r.kind for r in quarantined.rejected] == ["dimension", "dimension"]
    assert quarantined.rejected[0].reason == (
        "3D geometry where column geom is 2D (on_invalid='repair' drops the Z)"
    )
    report = db.ingest(table, source, on_invalid="repair", ingest_id="z-repair")
    assert [(r.row, r.reason) for r in report.repaired] == [
        (1, "3D geometry where column geom is 2D (on_invalid='repair' drops the Z): Z dropped")
    ]
    assert [(r.row, r.kind) for r in report.rejected] == [(2, "invalid")]  # flat, a bow-tie
    assert "make_valid gives a MultiPolygon" in report.rejected[0].reason
    with db.session() as s:
        stored = s.execute(text(f"SELECT ST_AsText(geom) FROM {TABLE}")).scalar()
    assert stored == "POLYGON((0 0,1 0,1 1,0 1,0 0))"
    create_table(db, geometry="MULTIPOLYGON")  # where the bow-tie's repair fits
    multi = db.ingest(TABLE, [{"id": 2, "geom": z_bowtie}], on_invalid="repair")
    assert multi.inserted == 1 and multi.repaired[0].reason.endswith(
        "Z dropped; invalid geometry: Self-intersection[0.5 0.5]"
    )


def test_m_values_load_into_measured_columns_and_nowhere_else(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """PostGIS declares an XYM column 3-dimensional, like an XYZ one: Z and M are told
    apart, so M rows load into M columns (they were refused as 2D), Z rows do not, and
    repair drops an M a 2D column cannot hold."""
    import geopandas

    scratch("ingest_m")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_m (id int PRIMARY KEY, m geometry(PointM, 4326), "
                "zm geometry(PointZM, 4326), flat geometry(Point, 4326))"
            )
        )
    point_m, point_zm = shapely.from_wkt("POINT M (1 2 3)"), shapely.from_wkt("POINT ZM (1 2 3 4)")
    rows = [
        {"id": 1, "m": point_m, "zm": point_zm, "flat": shapely.Point(1, 2)},
        {"id": 2, "m": "SRID=4326;POINT M (5 6 7)", "zm": to_ewkb(point_zm, 4326)},
        {"id": 3, "m": shapely.Point(1, 2, 3)},  # Z where the column has M
        {"id": 4, "zm": point_m},
        {"id": 5, "flat": point_m},
    ]
    report = db.ingest("ingest_m", rows, ingest_id="m")
    assert report.inserted == 2
    assert [(r.row, r.reason) for r in report.rejected] == [
        (3, "3D geometry where column m is XYM"),
        (4, "XYM geometry where column zm is 4D"),
        (5, "XYM geometry where column flat is 2D (on_invalid='repair' drops the M)"),
    ]
    frame = geopandas.GeoDataFrame({"id": [6]}, geometry=[point_m], crs=4326)
    assert db.ingest("ingest_m", frame.rename_geometry("m"), ingest_id="frame").inserted == 1
    repaired = db.ingest("ingest_m", [rows[4]], on_invalid="repair", ingest_id="repair")
    assert repaired.repaired[0].reason.endswith(": M dropped")
    with db.session() as s:
        stored = s.execute(
            text(
                "SELECT id, ST_AsText(m), ST_AsText(zm), ST_AsText(flat) FROM ingest_m ORDER BY id"
            )
        ).all()
    assert [tuple(row) for row in stored] == [
        (1, "POINT M (1 2 3)", "POINT ZM (1 2 3 4)", "POINT(1 2)"),
        (2, "POINT M (5 6 7)", "POINT ZM (1 2 3 4)", None),
        (5, None, None, "POINT(1 2)"),
        (6, "POINT M (1 2 3)", None, None),
    ]


def test_skip_reports_without_quarantine(db: SpatialDatabase, table: str) -> None:
    source = [
        {"id": 1, "geom": BAD_VALUES["empty"]},
        {"id": 2, "geom": "POLYGON((0 0,1 0,1 1,0 0))"},
    ]
    report = db.ingest(table, source, on_invalid="skip")
    assert report.inserted == 1 and [r.row for r in report.rejected] == [1]
    with db.session() as s:
        assert s.execute(text(f"SELECT to_regclass('{TABLE}_rejected')")).scalar() is None


def test_a_load_of_many_rejects_keeps_the_first_in_memory_and_every_one_in_the_report(
    db: SpatialDatabase, table: str
) -> None:
    """Every reject stayed in memory: a load whose every row was rejected (metres given a
    column of degrees) grew by about 100 MB per 500,000 rows. Past the first 10,000 they
    are kept in a temporary file, and the report still holds every one."""
    square = "SRID=27700;POLYGON((400000 300000,400001 300000,400001 300001,400000 300000))"
    good = "SRID=4326;POLYGON((0 0,1 0,1 1,0 0))"
    source = ({"id": n, "geom": good if n % 1000 == 0 else square} for n in range(25_000))
    report = db.ingest(table, source, on_invalid="skip", workers=1, progress=False)
    assert report.inserted == 25 and len(report.rejected) == 24_975
    assert repr(report.rejected) == "<24,975 rejects, the first 10,000 in memory>"
    rows = [reject.row for reject in report.rejected]
    assert sorted(rows) == [n + 1 for n in range(25_000) if n % 1000]
    assert [report.rejected[i].row for i in (0, 10_000, 12_345, -1)] == [
        rows[0],
        rows[10_000],
        rows[12_345],
        rows[-1],
    ]
    assert {r.kind for r in report.rejected[9_990:10_010]} == {"srid"}
    assert pickle.loads(pickle.dumps(report)).rejected == list(report.rejected)
    assert len(report.as_dict()["rejected"]) == 24_975
    assert report.as_dict()["rejected"][-1]["value"] == square
    assert "Rejected rows (first 20 of 24,975)" in str(report)
    by_kind = " ".join(str(report).split("Rejected rows by kind")[1].split())
    assert "geom │ srid │ 24,975 │ 2 │ SRID 27700 where column geom" in by_kind
    assert "rejected │ 24,975, listed here only" in " ".join(str(report).split())
    assert not report.all_rejected


def test_cli_exits_1_when_every_row_was_rejected(
    database_url: str, table: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """Points loaded into a table of polygons: every row a reject, and the command said
    so with exit status 0, which a cron job took for a success."""
    import geopandas
    from typer.testing import CliRunner

    from geosession.cli import app

    points = geopandas.GeoDataFrame(
        {"id": range(1, 31)}, geometry=shapely.points(np.arange(30), 0), crs=4326
    ).rename_geometry("geom")
    path = tmp_path / "points.geojson"
    points.to_file(path)
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    refused = CliRunner().invoke(app, ["ingest", str(path), table])
    assert refused.exit_code == 1, refused.output
    output = " ".join(refused.output.split())
    assert "points.geojson was loaded: every row read was rejected" in output
    assert "geom │ type │ 30 │ 1 │ Point where column geom takes POLYGON" in output
    assert "rejected │ 30, kept in" in output  # the table's name may wrap
    mixed = tmp_path / "mixed.geojson"
    polygon = geopandas.GeoSeries([shapely.box(0, 0, 1, 1)], crs=4326)
    points.assign(geom=polygon.reindex(range(30)).fillna(points.geom)).to_file(mixed)
    loaded = CliRunner().invoke(app, ["ingest", str(mixed), table])
    assert loaded.exit_code == 0, loaded.output  # one row loaded: rejects are the file's own


@pytest.mark.filterwarnings("ignore:'crs' was not provided")  # the Shapefile has no .prj
def test_cli_exits_1_when_every_row_loaded_has_a_latitude_no_degrees_have(
    database_url: str, table: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """A Shapefile of British National Grid metres without its .prj, into a column of
    4326: every row stored with latitudes of 180,000, and exit status 0."""
    import geopandas
    from typer.testing import CliRunner

    from geosession.cli import app

    squares = [shapely.box(530_000 + i, 180_000, 530_001 + i, 180_001) for i in range(5)]
    frame = geopandas.GeoDataFrame({"id": range(1, 6)}, geometry=squares)
    path = tmp_path / "grid.shp"
    frame.to_file(path)  # no CRS: no .prj
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    loaded = CliRunner().invoke(app, ["ingest", str(path), table, "--ignore-extra-fields"])
    assert loaded.exit_code == 1, loaded.output
    said = " ".join(loaded.output.split())
    assert "was loaded with a latitude beyond ±90 into a column of degrees" in said
    assert "--srid with its EPSG code and --reproject" in said


def test_the_garbage_collector_stays_paused_until_the_last_of_two_loads_ends(
    db: SpatialDatabase, table: str
) -> None:
    """Each load paused the collector and resumed it at its end if it had been on: of two
    loads on two threads (a web app's background tasks), the first to start resumed it at
    its end under the other, still running."""
    import gc

    square = "SRID=4326;POLYGON((0 0,1 0,1 1,0 0))"
    events = [(threading.Event(), threading.Event()) for _ in range(2)]

    def waiting(n: int) -> Iterator[dict[str, Any]]:
        started, release = events[n]
        yield {"id": n, "geom": square}
        started.set()
        release.wait(30)

    def load(n: int) -> int:
        return db.ingest(table, waiting(n), flush_interval=0.05, progress=False).inserted

    assert gc.isenabled()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(load, 0)
        assert events[0][0].wait(30)
        second = pool.submit(load, 1)
        assert events[1][0].wait(30)
        events[0][1].set()
        assert first.result() == 1
        assert not gc.isenabled(), "the second load still runs"
        events[1][1].set()
        assert second.result() == 1
    assert gc.isenabled()


def test_rejects_stay_in_memory_where_no_temporary_file_can_be_written(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A $TMPDIR that cannot take the file (missing, read-only, full) must not stop a load:
    the rejects past the first stay in memory, with a warning saying so."""
    import tempfile

    from geosession.ingest.rejects import Rejects
    from geosession.ingest.validate import Reject

    made = [Reject(n, "geom", "srid", "wrong SRID", f"POINT({n} 0)") for n in range(9)]
    spilled = Rejects(made[:6], kept=2, block=2)  # two blocks written
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/geosession")
    kept = Rejects(made[:6], kept=2, block=2)
    kept.extend(made[6:])
    spilled.extend(made[6:])
    assert list(kept) == list(spilled) == made == kept
    assert [kept[i].row for i in range(-9, 9)] == [*range(9), *range(9)]
    assert "stay in memory: they could not be written to a temporary file in " in caplog.text


def test_coordinates_that_are_missing_or_no_numbers_are_rejects_that_name_them(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """Coordinates that made no point were set aside with GEOS's words for WKT the user
    never wrote ("Expected number but encountered ')'" for an empty longitude), or as a
    NaN coordinate where every other value of the batch was a number."""
    import pandas

    scratch("coordinate_rejects")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE coordinate_rejects (id int, geom geometry(Point, 4326))"))
    expected = [
        (2, "lon 'abc' is not a number (a point needs lon and lat)", "lon=abc; lat=50"),
        (3, "lon is missing (a point needs lon and lat)", "lon=; lat=5"),
        (4, "lat is missing (a point needs lon and lat)", "lon=7; lat="),
    ]
    csv = tmp_path / "points.csv"
    csv.write_text("id,lon,lat\n1,1.5,2\n2,abc,50\n3,,5\n4,7,\n5,,\n")
    rows = [
        {"id": 1, "lon": 1.5, "lat": 2},
        {"id": 2, "lon": "abc", "lat": 50},
        {"id": 3, "lon": None, "lat": 5},
        {"id": 4, "lon": 7, "lat": None},
        {"id": 5, "lon": None, "lat": None},
    ]
    numeric = [row for row in rows if row["id"] != 2]  # the batch reads as numbers
    frame = pandas.DataFrame(numeric)
    arrow = pa.Table.from_pylist(numeric)
    for number, source in enumerate([csv, rows, numeric, frame, arrow]):
        report = db.ingest("coordinate_rejects", source, ingest_id=f"coordinates-{number}")
        found = [(r.row, r.reason, r.value) for r in report.rejected]
        wanted = expected  # as text: the CSV, and rows among which one is no number
        if number >= 2:  # numbers read as numbers, shown as such
            wanted = [(2, expected[1][1], "lon=; lat=5.0"), (3, expected[2][1], "lon=7.0; lat=")]
        assert found == wanted, (number, found)
        assert {r.kind for r in report.rejected} == {"unparsable"}
        assert report.inserted == 2  # the first row, and the last with no point (NULL)


def test_dropped_rejects_close_their_temporary_file() -> None:
    """The rejects' temporary file was closed by the garbage collector's finalization of
    the file object, which warns (ResourceWarning, shown under -W default and by pytest)."""
    import gc
    import warnings

    from geosession.ingest.rejects import Rejects
    from geosession.ingest.validate import Reject

    made = [Reject(n, "geom", "srid", "wrong SRID", f"POINT({n} 0)") for n in range(9)]
    rejects = Rejects(made, kept=2, block=2)
    file = rejects._file
    assert file is not None and not file.closed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        del rejects
        gc.collect()
    assert file.closed
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_arrays_of_geometries_load_from_shapes_and_from_geosessions_exports(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """An element of a geometry[] that was not text was refused ("a dict is no text for
    this type"), so the JSON of GeoJSON geometries exports write for such a column did
    not load back; shapely geometries, WKB and GeoJSON objects now go as text PostGIS's
    geometry input reads (GeoJSON without a crs member keeps SRID 0, as PostGIS reads it)."""
    scratch("shape_lists", "shape_lists_back")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE shape_lists (id int, parts geometry[], geom geometry)"))
    rows = [
        {"id": 1, "parts": [shapely.Point(1, 2), None, "SRID=4326;POINT(3 4)"], "geom": None},
        {
            "id": 2,
            "parts": [
                shapely.to_wkb(shapely.Point(5, 6)),
                {"type": "Point", "coordinates": [7, 8]},
            ],
            "geom": "POINT(0 0)",
        },
    ]
    assert db.ingest("shape_lists", rows).inserted == 2
    stored = (
        "SELECT id, array_to_string(ARRAY(SELECT coalesce(ST_AsEWKT(p), 'NULL') FROM "
        "unnest(parts) p), ' | ') FROM {} ORDER BY id"
    )
    expected = [(1, "POINT(1 2) | NULL | SRID=4326;POINT(3 4)"), (2, "POINT(5 6) | POINT(7 8)")]
    with db.session() as s:
        assert s.execute(text(stored.format("shape_lists"))).all() == expected
    with db.transaction() as s:
        s.execute(text("CREATE TABLE shape_lists_back (LIKE shape_lists)"))
    with db.transaction() as s:  # a geography's input reads no GeoJSON: sent as hex EWKB
        s.execute(text("ALTER TABLE shape_lists ADD places geography[]"))
    places = [{"id": 3, "places": [{"type": "Point", "coordinates": [9, 10]}, shapely.Point(1, 2)]}]
    assert db.ingest("shape_lists", places).inserted == 1
    with db.transaction() as s:
        found = s.execute(
            text("SELECT ST_AsEWKT(places[1]), ST_AsEWKT(places[2]) FROM shape_lists WHERE id = 3")
        )
        assert found.one() == ("SRID=4326;POINT(9 10)", "SRID=4326;POINT(1 2)")
        s.execute(text("DELETE FROM shape_lists WHERE id = 3; ALTER TABLE shape_lists DROP places"))
    for name in ("lists.csv", "lists.gpkg", "lists.parquet"):
        db.export("SELECT * FROM shape_lists", tmp_path / name, geometry_column="geom")
        report = db.ingest("shape_lists_back", tmp_path / name)
        assert report.inserted == 2 and not report.rejected, (name, report.rejected)
        with db.transaction() as s:
            assert s.execute(text(stored.format("shape_lists_back"))).all() == expected, name
            s.execute(text("TRUNCATE shape_lists_back"))


def test_wkb_is_sent_as_it_came_only_where_nothing_changed_it(db: SpatialDatabase) -> None:
    create_table(db, geometry="MULTIPOLYGON")
    square = shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])
    multi = shapely.MultiPolygon([square])
    bowtie = shapely.MultiPolygon([shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])])
    source = [
        {"id": 1, "geom": shapely.to_wkb(square)},  # plain WKB, promoted to multi
        {"id": 2, "geom": shapely.to_wkb(shapely.set_srid(multi, 4326), include_srid=True)},
        {"id": 3, "geom": memoryview(shapely.to_wkb(multi, byte_order=0))},  # big-endian
        {"id": 4, "geom": shapely.to_wkb(bowtie)},  # repaired
        {"id": 5, "geom": shapely.to_wkb(shapely.set_srid(multi, 3857), include_srid=True)},
        {"id": 6, "geom": unclosed_ring_ewkb()},
    ]
    report = db.ingest(TABLE, source, on_invalid="repair")
    assert [r.row for r in report.repaired] == [4]
    assert [(r.row, r.kind) for r in report.rejected] == [(5, "srid"), (6, "unclosed_ring")]
    with db.session() as s:
        stored = s.execute(
            text(f"SELECT id, ST_SRID(geom), ST_AsText(geom), ST_NumGeometries(geom) FROM {TABLE}")
        ).all()
    square_text = "MULTIPOLYGON(((0 0,1 0,1 1,0 1,0 0)))"
    assert sorted(stored)[:3] == [(n, 4326, square_text, 1) for n in (1, 2, 3)]
    assert sorted(stored)[3][::3] == (4, 2)  # make_valid: the bow-tie's two triangles


def test_one_part_multis_load_into_a_single_type_column_as_their_part(
    db: SpatialDatabase, table: str
) -> None:
    """A Shapefile or GeoPackage often writes polygons as MultiPolygons of one part: into a
    POLYGON column each is its part (nothing lost); one of several parts is a type reject
    that says how to load it; a repair whose result is one part fits too."""
    square = shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])
    two = shapely.MultiPolygon([square, shapely.box(2, 2, 3, 3)])
    source = [
        {"id": 1, "geom": shapely.MultiPolygon([square])},
        {"id": 2, "geom": "SRID=4326;MULTIPOLYGON(((0 0,1 0,1 1,0 1,0 0)))"},
        {"id": 3, "geom": shapely.to_wkb(shapely.MultiPolygon([square]))},
        {"id": 4, "geom": two},
    ]
    report = db.ingest(table, source)
    assert report.inserted == 3 and [(r.row, r.kind) for r in report.rejected] == [(4, "type")]
    assert report.rejected[0].reason == (
        "MultiPolygon where column geom takes POLYGON (2 parts: a one-part MultiPolygon would "
        "be loaded as its part; make the column MULTIPOLYGON, or split the parts into rows "
        "first, e.g. with GeoDataFrame.explode())"
    )
    with db.session() as s:
        stored = s.execute(text(f"SELECT DISTINCT ST_AsEWKT(geom) FROM {TABLE}")).scalars().all()
    assert stored == ["SRID=4326;POLYGON((0 0,1 0,1 1,0 1,0 0))"]


def test_a_sources_crs_is_checked_against_the_column(
    db: SpatialDatabase, table: str, tmp_path: Path
) -> None:
    """A mismatch is the whole source's: refused before any row, not 20 quarantined."""
    import geopandas

    polygons = synthetic_polygons(20)
    frame = geopandas.GeoDataFrame({"id": range(1, 21)}, geometry=polygons, crs=3857)
    wrong = r"source's CRS is EPSG:3857, but column geom of .* has SRID 4326: pass reproject"
    with pytest.raises(ConfigurationError, match=wrong + r".*to_crs\(4326\)") as refused:
        db.ingest(table, frame.rename_geometry("geom"))
    assert refused.value.ingest_report.rows_read == 0  # type: ignore[attr-defined]
    geopackage = tmp_path / "webmercator.gpkg"
    frame.rename_geometry("geom").to_file(geopackage)
    with pytest.raises(ConfigurationError, match=wrong + r".*ogr2ogr -t_srs EPSG:4326"):
        db.ingest(table, geopackage)
    contradicts = r"srid=4326 contradicts the source's CRS, EPSG:3857.*ogr2ogr -a_srs EPSG:4326"
    for reproject in (False, True):  # srid= does not relabel a source's CRS
        with pytest.raises(ConfigurationError, match=contradicts):
            db.ingest(table, geopackage, srid=4326, reproject=reproject)
    with db.session() as s:
        rejected = s.execute(text(f"SELECT count(*) FROM {TABLE}_rejected")).scalar()
    assert table_state(db)[0] == 0 and rejected == 0
    with db.transaction() as s:
        s.execute(text(f"DROP TABLE {TABLE}_rejected"))
        s.execute(text(f"ALTER TABLE {TABLE} ALTER geom TYPE geometry(GEOMETRY)"))
    again = db.ingest(table, frame.rename_geometry("geom"), ingest_id="into-srid-0")
    assert again.inserted == 20
    with db.session() as s:  # a column without an SRID keeps the frame's
        assert s.execute(
            text(f"SELECT array_agg(DISTINCT ST_SRID(geom)) FROM {TABLE}")
        ).scalar() == [3857]


def stored_polygons(db: SpatialDatabase) -> tuple[list[int], Any]:
    """Ids, and the polygons (with their SRIDs) in id order."""
    with db.session() as s:
        found = s.execute(text(f"SELECT id, ST_AsEWKB(geom) FROM {TABLE} ORDER BY id")).all()
    return [i for i, _ in found], shapely.from_wkb([bytes(g) for _, g in found])


def test_the_report_counts_geometries_that_took_the_columns_srid(
    db: SpatialDatabase, table: str
) -> None:
    """PostGIS stamps a geometry without an SRID with its column's without a word; the
    ingest does the same but says how many rows it did it for, unless srid= (or the
    source's CRS, or the geometry itself) said the SRID."""
    import geopandas

    source = list(rows(300))
    source[5]["geom"] = to_ewkb(source[5]["geom"], 4326)  # carries its own
    source[6]["geom"] = "SRID=4326;" + source[6]["geom"].wkt
    source[7]["geom"] = "POLYGON EMPTY"  # rejected: not counted
    report = db.ingest(table, source)
    assert report.inserted == 299 and report.srid_assumed == 297
    assert "without an SRID: took the column's" in str(report)
    with db.transaction() as s:
        s.execute(text(f"TRUNCATE {TABLE}"))
    stated = db.ingest(table, rows(300), srid=4326, ingest_id="stated")
    assert stated.srid_assumed == 0 and "without an SRID" not in str(stated)
    with db.transaction() as s:
        s.execute(text(f"TRUNCATE {TABLE}"))
    frame = geopandas.GeoDataFrame(list(rows(50)), geometry="geom", crs=4326)
    assert db.ingest(table, frame).srid_assumed == 0


def test_reproject_transforms_a_frames_crs_into_the_columns(
    db: SpatialDatabase, table: str
) -> None:
    """The same coordinates geopandas's to_crs (PROJ) gives, stored with the column's SRID."""
    import geopandas

    polygons = synthetic_polygons(500, extent=(-1.2e6, 6.5e6, 1.2e6, 7.5e6))
    frame = geopandas.GeoDataFrame({"id": range(1, 501)}, geometry=polygons, crs=3857)
    report = db.ingest(table, frame.rename_geometry("geom"), reproject=True)
    assert report.inserted == 500 and not report.rejected and report.reprojected == 500
    ids, stored = stored_polygons(db)
    assert ids == list(range(1, 501)) and set(shapely.get_srid(stored)) == {4326}
    expected = frame.to_crs(4326).geometry.to_numpy()
    assert shapely.equals_exact(stored, expected, tolerance=1e-9).all()
    with db.transaction() as s:
        s.execute(text(f"TRUNCATE {TABLE}"))
    source = frame.rename_geometry("geom")
    again = asyncio.run(db.async_ingest(table, source, reproject=True, ingest_id="async"))
    assert again.inserted == 500 and again.reprojected == 500  # the async twin takes it too
    assert shapely.equals_exact(stored_polygons(db)[1], expected, tolerance=1e-9).all()


def test_reproject_moves_each_row_from_its_own_srid_and_sets_aside_what_it_cannot(
    db: SpatialDatabase, table: str
) -> None:
    """Rows carry their SRIDs (EWKB, EWKT, shapely); those without one are in the column's
    (or srid=). A geometry with M values, or of an SRID PROJ does not know, is set aside."""
    from pyproj import Transformer

    base = synthetic_polygons(5)
    to_mercator = Transformer.from_crs(4326, 3857, always_xy=True).transform
    mercator = shapely.transform(base, to_mercator, interleaved=False)
    measured = shapely.from_wkt("POLYGON M ((0 0 1, 1e5 0 1, 1e5 1e5 1, 0 0 1))")
    to_albers = Transformer.from_crs(4326, "ESRI:102003", always_xy=True).transform
    albers = shapely.transform(base[0], to_albers, interleaved=False)
    source = [
        {"id": 1, "geom": to_ewkb(mercator[0], 3857)},
        {"id": 2, "geom": "SRID=3857;" + mercator[1].wkt},
        {"id": 3, "geom": shapely.set_srid(base[2], 4326)},
        {"id": 4, "geom": base[3]},  # no SRID: the column's
        {"id": 5, "geom": shapely.set_srid(measured, 3857)},
        {"id": 6, "geom": shapely.set_srid(base[4], 999_999)},
        {"id": 7, "geom": shapely.set_srid(albers, 102003)},  # ESRI's code, as PostGIS's
    ]
    report = db.ingest(table, source, reproject=True)
    assert report.inserted == 5 and report.reprojected == 3
    reasons = {r.row: (r.kind, r.reason) for r in report.rejected}
    assert reasons[5][0] == "srid" and "M values" in reasons[5][1]
    assert reasons[6][0] == "srid" and "cannot reproject SRID 999999" in reasons[6][1]
    ids, stored = stored_polygons(db)
    assert ids == [1, 2, 3, 4, 7] and set(shapely.get_srid(stored)) == {4326}
    assert shapely.equals_exact(stored, [*base[:4], base[0]], tolerance=1e-9).all()
    with db.transaction() as s:
        s.execute(text(f"TRUNCATE {TABLE}"))
    mercator_rows = [{"id": i + 1, "geom": g} for i, g in enumerate(mercator)]
    assert db.ingest(table, mercator_rows, srid=3857, reproject=True).inserted == 5
    assert shapely.equals_exact(stored_polygons(db)[1], base, tolerance=1e-9).all()


def test_geojson_is_longitude_latitude_unless_it_names_its_crs(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """RFC 7946 GeoJSON (an API's features) is longitude/latitude, as PostGIS's
    ST_GeomFromGeoJSON reads it: into a column of another SRID it is refused, not stored
    as if its degrees were the column's metres. A legacy crs member names its SRID,
    srid= says what the rest is in, reproject=True transforms it."""
    from pyproj import Transformer

    scratch("ingest_geojson")
    with db.transaction() as s:
        s.execute(
            text("CREATE TABLE ingest_geojson (id integer PRIMARY KEY, g geometry(POLYGON, 3857))")
        )
    base = synthetic_polygons(4)
    to_mercator = Transformer.from_crs(4326, 3857, always_xy=True).transform
    mercator = shapely.transform(base, to_mercator, interleaved=False)

    def crs(name: str) -> dict[str, Any]:
        return {"crs": {"type": "name", "properties": {"name": name}}}

    source = [
        {"id": 1, "g": to_geojson(base[0])},
        {"id": 2, "g": json.dumps({**to_geojson(mercator[1]), **crs("EPSG:3857")})},
        {
            "id": 3,
            "g": {"type": "Feature", "geometry": to_geojson(mercator[2]), "properties": {}}
            | crs("urn:ogc:def:crs:EPSG::3857"),
        },
        {"id": 4, "g": {**to_geojson(mercator[3]), **crs("ESRI:102100")}},
    ]
    report = db.ingest("ingest_geojson", source)
    reasons = {r.row: (r.kind, r.reason) for r in report.rejected}
    assert report.inserted == 2 and set(reasons) == {1, 4}
    assert reasons[1][0] == "srid" and "SRID 4326 where column g has SRID 3857" in reasons[1][1]
    assert "GeoJSON that names no CRS is longitude/latitude" in reasons[1][1]
    assert reasons[4][0] == "unparsable" and "'ESRI:102100', not an EPSG code" in reasons[4][1]

    def stored() -> Any:
        with db.session() as s:
            found = s.execute(text("SELECT id, ST_AsEWKB(g) FROM ingest_geojson ORDER BY id"))
            ids, wkb = zip(*found.all(), strict=True)
        geoms = shapely.from_wkb(list(wkb))
        assert set(shapely.get_srid(geoms)) == {3857}
        return list(ids), geoms

    assert shapely.equals_exact(stored()[1], mercator[1:3], tolerance=0).all()
    moved = db.ingest("ingest_geojson", source[:1], reproject=True)
    assert moved.inserted == 1 and moved.reprojected == 1
    ids, geoms = stored()
    assert ids == [1, 2, 3] and shapely.equals_exact(geoms[0], mercator[0], tolerance=1e-6)
    declared = [{"id": 5, "g": to_geojson(mercator[3])}]  # GeoJSON written in 3857
    assert db.ingest("ingest_geojson", declared, srid=3857).inserted == 1
    assert shapely.equals_exact(stored()[1][-1], mercator[3], tolerance=0)


def test_a_3d_crs_loads_into_a_column_of_its_horizontal_srid(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """GDAL reads a GeoJSON file with heights as EPSG:4979 (WGS 84 3D): geosession's own
    GeoJSON export of a PointZ column of SRID 4326 was refused as "EPSG:4979, but column
    geom has SRID 4326", and create=True made a 4979 column of it."""
    import geopandas

    scratch("heights_4326", "heights_made", "heights_bng")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE heights_4326 (id int, geom geometry(POINTZ, 4326))"))
        s.execute(text("CREATE TABLE heights_bng (id int, geom geometry(POINTZ, 27700))"))
        s.execute(text("INSERT INTO heights_4326 VALUES (1, 'SRID=4326;POINT(13.4 52.5 34)')"))
    path = tmp_path / "heights.geojson"
    db.export("SELECT * FROM heights_4326", path)
    assert db.ingest("heights_4326", path).inserted == 1
    assert db.ingest("heights_made", path, create=True).inserted == 1
    with db.session() as s:
        assert s.execute(text("SELECT DISTINCT ST_AsEWKT(geom) FROM heights_4326")).all() == [
            ("SRID=4326;POINT(13.4 52.5 34)",)
        ]
        made = "SELECT type, srid, coord_dimension FROM geometry_columns WHERE f_table_name = :t"
        assert s.execute(text(made), {"t": "heights_made"}).one() == ("POINT", 4326, 3)
    survey = geopandas.GeoDataFrame(  # British National Grid + ODN height
        {"id": [1]}, geometry=[shapely.Point(530000, 180000, 12.5)], crs="EPSG:7405"
    )
    assert db.ingest("heights_bng", survey).inserted == 1
    with pytest.raises(ConfigurationError, match="EPSG:7405, but column geom .* SRID 4326"):
        db.ingest("heights_4326", survey)


def test_geojson_geometries_read_together_and_the_odd_ones_alone(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """A batch's GeoJSON dicts are read in one GEOS call; what that call does not read (a
    ring left open, Decimal coordinates, bad coordinates) is read alone as before, and a
    bad one is rejected with its reason."""
    scratch("ingest_geojson_mixed")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_geojson_mixed (id int PRIMARY KEY, g geometry(Geometry, 4326))"
            )
        )
    square = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
    source = [
        {"id": 1, "g": {"type": "Polygon", "coordinates": [square]}},
        {"id": 2, "g": {"type": "Polygon", "coordinates": [square[:-1]]}},  # shapely closes it
        {"id": 3, "g": {"type": "Point", "coordinates": [decimal.Decimal("1.5"), 2]}},
        {"id": 4, "g": {"type": "Point", "coordinates": "nowhere"}},
        {"id": 5, "g": {"type": "LineString", "coordinates": [[3, 4], [5, 6]]}},
    ]
    report = db.ingest("ingest_geojson_mixed", source, on_invalid="quarantine")
    assert [(r.row, r.kind) for r in report.rejected] == [(4, "unparsable")]
    assert "invalid GeoJSON" in report.rejected[0].reason
    with db.session() as s:
        stored = s.execute(
            text("SELECT id, ST_AsEWKT(g) FROM ingest_geojson_mixed ORDER BY id")
        ).all()
    assert [ewkt for _, ewkt in stored] == [
        "SRID=4326;POLYGON((0 0,1 0,1 1,0 1,0 0))",
        "SRID=4326;POLYGON((0 0,1 0,1 1,0 1,0 0))",
        "SRID=4326;POINT(1.5 2)",
        "SRID=4326;LINESTRING(3 4,5 6)",
    ]


LAMBERT = (
    "+proj=lcc +lat_1=33 +lat_2=45 +lat_0=39 +lon_0=-96 +x_0=0 +y_0=0 +datum=WGS84 "
    "+units=m +no_defs"
)
"""A CRS without an EPSG code."""


@pytest.mark.parametrize("form", ["frame", "gpkg", "parquet"])
def test_a_crs_without_an_epsg_code_is_refused_unless_declared_or_reprojected(
    db: SpatialDatabase, table: str, tmp_path: Path, form: str
) -> None:
    """It cannot be compared with the column's SRID: loading it as that SRID unasked
    could store coordinates of another CRS. srid= says it is the column's; reproject=True
    transforms it (PROJ from its definition: WKT from GDAL and geopandas, PROJJSON from
    GeoParquet)."""
    import geopandas

    polygons = synthetic_polygons(50, extent=(-5e5, -5e5, 5e5, 5e5))
    frame = geopandas.GeoDataFrame({"id": range(1, 51)}, geometry=polygons, crs=LAMBERT)
    frame = frame.rename_geometry("geom")
    source: Any = frame
    if form == "gpkg":
        source = tmp_path / "lambert.gpkg"
        frame.to_file(source)
    elif form == "parquet":
        source = tmp_path / "lambert.parquet"
        frame.to_parquet(source)
    with pytest.raises(ConfigurationError, match=r"no EPSG code.*give srid=4326"):
        db.ingest(table, source)
    assert table_state(db)[0] == 0
    report = db.ingest(table, source, reproject=True, ingest_id=f"{form}-reprojected")
    assert report.inserted == 50 and report.reprojected == 50
    expected = frame.to_crs(4326).geometry.to_numpy()
    assert shapely.equals_exact(stored_polygons(db)[1], expected, tolerance=1e-9).all()
    with db.transaction() as s:
        s.execute(text(f"TRUNCATE {TABLE}"))
    declared = db.ingest(table, source, srid=4326, ingest_id=f"{form}-declared")
    assert declared.inserted == 50 and declared.reprojected == 0
    assert declared.beyond_latitudes == 50  # metres declared degrees: stored, and counted
    assert "latitude beyond ±90 in degrees (projected? axes swapped?)" in str(declared)
    assert report.beyond_latitudes == 0  # the same reprojected: none
    assert shapely.equals_exact(stored_polygons(db)[1], polygons, tolerance=0).all()


@pytest.mark.parametrize("form", ["frame", "shp", "gpkg", "parquet"])
def test_crs84_is_srid_4326(db: SpatialDatabase, table: str, tmp_path: Path, form: str) -> None:
    """OGC:CRS84 (GeoParquet's default; a Shapefile's .prj may say it in ESRI's words) is
    EPSG:4326 with longitude first, which is PostGIS's order: loaded as it is."""
    import geopandas

    polygons = synthetic_polygons(20)
    frame = geopandas.GeoDataFrame({"id": range(1, 21)}, geometry=polygons, crs="OGC:CRS84")
    frame = frame.rename_geometry("geom")
    source: Any = frame
    if form != "frame":
        source = tmp_path / f"crs84.{form}"
        if form == "parquet":
            frame.to_parquet(source)
        else:
            frame.to_file(source)
    report = db.ingest(table, source)
    assert report.inserted == 20 and report.reprojected == 0
    stored = shapely.normalize(stored_polygons(db)[1])  # a Shapefile turns rings clockwise
    assert shapely.equals_exact(stored, shapely.normalize(polygons), tolerance=0).all()


def test_cli_reproject_loads_a_file_in_another_crs(
    db: SpatialDatabase, database_url: str, table: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """A GeoPackage in the British National Grid into a 4326 column: as the server's own
    ST_Transform puts it (both are PROJ), to well under a millimetre."""
    import geopandas
    from typer.testing import CliRunner

    from geosession.cli import app

    polygons = synthetic_polygons(300, extent=(400_000, 100_000, 500_000, 200_000))
    frame = geopandas.GeoDataFrame({"id": range(1, 301)}, geometry=polygons, crs=27700)
    path = tmp_path / "bng.gpkg"
    frame.rename_geometry("geom").to_file(path)
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    refused = CliRunner().invoke(app, ["ingest", str(path), table])
    assert "pass reproject=True (CLI: --reproject)" in str(refused.exception)
    loaded = CliRunner().invoke(app, ["ingest", str(path), table, "--reproject"])
    assert loaded.exit_code == 0, loaded.output
    assert "reprojected into the column's SRID" in loaded.output
    ids, stored = stored_polygons(db)
    assert ids == list(range(1, 301))
    with db.session() as s:
        server = s.execute(
            text(
                "SELECT ST_AsEWKB(ST_Transform(ST_GeomFromWKB(g, 27700), 4326)) "
                "FROM unnest(CAST(:wkb AS bytea[])) WITH ORDINALITY AS u(g, n) ORDER BY n"
            ),
            {"wkb": [polygon.wkb for polygon in polygons]},
        ).scalars()
        expected = shapely.from_wkb([bytes(g) for g in server])
    assert shapely.equals_exact(stored, expected, tolerance=1e-8).all()  # degrees: ~1 mm


def test_reproject_to_an_srid_makes_the_new_table_in_it(
    db: SpatialDatabase,
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
    scratch: Callable[..., None],
) -> None:
    """create=True made the column in the file's CRS, so there was no way to load a British
    National Grid file into a new 4326 table (ogr2ogr's -t_srs): reproject=4326 does."""
    import geopandas
    from typer.testing import CliRunner

    from geosession.cli import app

    scratch("bng_points", "bng_frame")
    points = shapely.points([530_000, 400_000], [180_000, 300_000])
    frame = geopandas.GeoDataFrame({"n": [1, 2]}, geometry=points, crs=27700)
    path = tmp_path / "bng.gpkg"
    frame.to_file(path)
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    command = ["ingest", str(path), "bng_points", "--create", "--reproject-to", "4326"]
    loaded = CliRunner().invoke(app, command)
    assert loaded.exit_code == 0, loaded.output
    report = db.ingest("bng_frame", frame, create=True, reproject=4326)
    assert report.reprojected == 2
    with db.session() as s:
        for table in ("bng_points", "bng_frame"):
            name, kind, srid = s.execute(
                text(
                    "SELECT f_geometry_column, type, srid FROM geometry_columns "
                    "WHERE f_table_name = :t"
                ),
                {"t": table},
            ).one()
            assert (kind, srid) == ("POINT", 4326)
            london = s.execute(text(f"SELECT ST_X({name}), ST_Y({name}) FROM {table} WHERE n = 1"))
            assert london.one() == pytest.approx((-0.12835, 51.50399), abs=1e-5)
    with pytest.raises(
        ConfigurationError, match=r"has geometry \(SRID 4326\): pass reproject=True"
    ):
        db.ingest("bng_frame", frame, reproject=3857)
    with pytest.raises(ConfigurationError, match="reproject=0 is not valid"):
        db.ingest("bng_frame", frame, reproject=0)


def test_rows_the_server_rejects_are_found_in_two_copies_and_one_loop(
    db: SpatialDatabase,
) -> None:
    """The COPY's error names the row it failed at: the rows before it are written alone,
    and the server moves those after it in blocks in one loop, a failed block row by row,
    setting aside the rows it refuses (statements counted by a statement trigger drawing
    from a sequence, which no rollback takes back; the top-level statement tells a COPY
    from the loop)."""
    create_table(db, extra="CHECK (value >= 0)")
    with db.transaction() as s:
        s.execute(text("CREATE SEQUENCE ingest_copies"))
        s.execute(text("CREATE SEQUENCE ingest_loops"))
        s.execute(
            text(
                "CREATE FUNCTION ingest_count_copy() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
                "IF current_query() LIKE 'COPY%' THEN PERFORM nextval('ingest_copies'); "
                "ELSIF current_query() LIKE 'DO%' THEN PERFORM nextval('ingest_loops'); END IF; "
                "RETURN NULL; END$$"
            )
        )
        s.execute(
            text(
                f"CREATE TRIGGER ingest_count_copy BEFORE INSERT ON {TABLE} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ingest_count_copy()"
            )
        )
    try:
        source = list(rows(8_000))
        for position in (10, 4_321, 7_999):
            source[position] = {**source[position], "value": -1.0}
        report = db.ingest(TABLE, iter(source), chunk_size=8_000)
        assert [(r.row, r.kind, r.column) for r in report.rejected] == [
            (11, "server", "value"),
            (4_322, "server", "value"),
            (8_000, "server", "value"),
        ]
        assert all("check constraint" in r.reason for r in report.rejected)
        assert (report.inserted, table_state(db)[0]) == (7_997, 7_997)
        with db.session() as s:
            copies = s.execute(text("SELECT last_value FROM ingest_copies")).scalar()
            statements = s.execute(text("SELECT last_value FROM ingest_loops")).scalar()
        assert copies == 2  # halving alone down to each row: 73
        assert statements < 300  # blocks of up to 64 rows, a failed block's rows one by one
    finally:
        with db.transaction() as s:
            s.execute(text("DROP FUNCTION ingest_count_copy() CASCADE"))
            s.execute(text("DROP SEQUENCE ingest_copies, ingest_loops"))


def test_rows_a_staged_insert_refuses_are_found_one_by_one_on_the_server(
    db: SpatialDatabase, table: str
) -> None:
    """An INSERT from the staging table names no row it fails at: the server moves the
    chunk's rows again one at a time and sets aside those it refuses, in one statement.
    Upserted, a key's last row that the server takes stands, as in a clean chunk: an
    earlier row of the key when its last is refused."""
    with db.transaction() as s:
        s.execute(text(f"ALTER TABLE {table} ADD CHECK (value >= 0)"))
    db.ingest(table, rows(50))
    source = [
        {**row, "value": -1.0 if row["id"] % 9 == 0 else float(row["id"]), "name": "new"}
        for row in rows(2_000)
    ]
    square = "POLYGON((0 0,1 0,1 1,0 0))"
    repeated = [
        {"id": 5, "name": "taken", "value": 5.0, "geom": square},
        {"id": 7, "name": "superseded", "value": 7.0, "geom": square},
        {"id": 7, "name": "last", "value": 7.0, "geom": square},
        {"id": 5, "name": "refused", "value": -5.0, "geom": square},
    ]
    report = db.ingest(table, source + repeated, on_conflict="update", chunk_size=3_000)
    bad = [n for n in range(1, 2_001) if n % 9 == 0]
    assert [r.row for r in report.rejected] == [*bad, 2_004]
    assert {(r.column, r.kind) for r in report.rejected} == {("value", "server")}
    assert report.rejected[0].reason.startswith(
        f'new row for relation "{table}" violates check constraint'
    )
    assert (report.inserted, report.superseded) == (2_000 - len(bad), 3)
    with db.session() as s:
        stored = s.execute(
            text(f"SELECT count(*), count(*) FILTER (WHERE value < 0), sum(id) FROM {table}")
        ).one()
        named = dict(s.execute(text(f"SELECT id, name FROM {table} WHERE id IN (5, 7, 9)")).all())
    absent = [n for n in bad if n > 50]  # refused, and not loaded before
    assert tuple(stored) == (2_000 - len(absent), 0, 2_000 * 2_001 // 2 - sum(absent))
    assert named == {5: "taken", 7: "last", 9: "p9"}  # 9 refused: the loaded row kept


@pytest.mark.parametrize("on_conflict", ["ignore", "update"])
def test_the_row_by_row_loop_leaves_what_a_clean_load_of_the_good_rows_leaves(
    db: SpatialDatabase, scratch: Callable[..., None], on_conflict: str
) -> None:
    """The same feed (repeated keys, rows lacking columns) loaded twice: once with its bad
    rows, which send the chunks through the server's loop, once without them, through the
    set-based INSERT: the same table, and the same counts of rows written."""
    scratch("ingest_feed_loop", "ingest_feed_clean")
    with db.transaction() as s:
        for name in ("ingest_feed_loop", "ingest_feed_clean"):
            s.execute(
                text(
                    f"CREATE TABLE {name} (id int PRIMARY KEY, name text DEFAULT 'unnamed', "
                    "value float8 CHECK (value >= 0), geom geometry(POINT, 4326))"
                )
            )
            s.execute(
                text(
                    f"INSERT INTO {name} SELECT n, 'old', n, ST_Point(n, n, 4326) "
                    "FROM generate_series(1, 40) n"
                )
            )
    picks = np.random.default_rng(7)
    feed: list[dict[str, Any]] = []
    for row in range(600):
        key = int(picks.integers(1, 200))
        entry = {"id": key, "value": float(row), "geom": f"SRID=4326;POINT({row} 0)"}
        if on_conflict == "update" and picks.random() < 0.3:
            entry["name"] = f"named {row}"  # the others leave name to the table or the row
        elif on_conflict == "ignore":
            entry["name"] = f"named {row}"
        if picks.random() < 0.05:
            entry["value"] = -1.0  # refused by the CHECK
        feed.append(entry)
    loop = db.ingest("ingest_feed_loop", feed, on_conflict=on_conflict, progress=False)
    good = [entry for entry in feed if entry["value"] >= 0]
    clean = db.ingest("ingest_feed_clean", good, on_conflict=on_conflict, progress=False)
    bad = len(feed) - len(good)
    assert (loop.inserted, loop.conflicts) == (clean.inserted, clean.conflicts)
    # a bad row a later row of its key supersedes is passed over, as in a clean chunk
    assert loop.superseded + len(loop.rejected) == clean.superseded + bad
    assert len(loop.rejected) > 3 and not clean.rejected
    with db.session() as s:
        stored = [
            [tuple(row) for row in s.execute(text(f"SELECT * FROM {name} ORDER BY id"))]
            for name in ("ingest_feed_loop", "ingest_feed_clean")
        ]
    assert stored[0] == stored[1]


def test_a_staged_duplicate_key_found_one_by_one_still_ends_the_load(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """Under on_conflict="error" a row duplicating a key is no reject, also when the rows
    went through the staging table (a macaddr column, sent as text) and a refused row
    before it sent the chunk through the server's row-by-row loop."""
    scratch("ingest_macs")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_macs (id int PRIMARY KEY, mac macaddr, "
                "size int CHECK (size > 0), geom geometry(POINT, 4326))"
            )
        )
        s.execute(text("INSERT INTO ingest_macs VALUES (40, '08:00:2b:01:02:03', 1, NULL)"))
    source = [
        {"id": n, "mac": "08:00:2b:01:02:03", "size": -1 if n == 3 else 1} for n in range(1, 51)
    ]
    with pytest.raises(IntegrityViolation, match=r"Row 40.s key is already in .*ingest_macs"):
        db.ingest("ingest_macs", source, progress=False)
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM ingest_macs")).scalar() == 1


def test_an_error_of_no_row_in_the_row_by_row_loop_ends_the_chunk(
    db: SpatialDatabase, table: str, row_trigger: Callable[[str, str, str], None]
) -> None:
    """The server's loop sets aside only rows their data makes it refuse: any other error
    ends the chunk, none of its rows, rejects or ledger entry kept."""
    with db.transaction() as s:
        s.execute(text(f"ALTER TABLE {table} ADD CHECK (value >= 0)"))
    row_trigger(
        table,
        "BEFORE INSERT",
        "IF NEW.name = 'boom' THEN RAISE EXCEPTION 'boom' USING ERRCODE = 'feature_not_supported'; "
        "END IF;",
    )
    source = list(rows(100))
    source[10] = {**source[10], "value": -1.0}
    source[60] = {**source[60], "name": "boom"}
    with pytest.raises(GeoSessionError, match="boom"):
        db.ingest(table, source, on_conflict="ignore", chunk_size=100, progress=False)
    with db.session() as s:
        assert s.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0
        assert s.execute(text(f"SELECT count(*) FROM {table}_rejected")).scalar() == 0
        ledger = s.execute(text("SELECT count(*) FROM geosession_ingest_ledger")).scalar()
    assert ledger == 0


@pytest.mark.parametrize("key", ["bigint GENERATED BY DEFAULT AS IDENTITY", "serial"])
def test_sequences_move_past_the_ids_a_load_wrote(
    db: SpatialDatabase, scratch: Callable[..., None], key: str
) -> None:
    """Explicit ids leave a sequence behind, and the next INSERT taking the default would
    collide with a loaded row; a sequence already past them is left where it is."""
    scratch("numbered", "drawn_ahead")
    with db.transaction() as s:
        for name in ("numbered", "drawn_ahead"):
            s.execute(text(f"CREATE TABLE {name} (id {key} PRIMARY KEY, geom geometry)"))
        s.execute(text("SELECT setval(pg_get_serial_sequence('drawn_ahead', 'id'), 500)"))
    points = [{"id": n, "geom": shapely.Point(n, n)} for n in range(1, 11)]
    for name in ("numbered", "drawn_ahead"):
        assert db.ingest(name, points, progress=False).inserted == 10
    with db.transaction() as s:
        drawn = [
            s.execute(text(f"INSERT INTO {name} (geom) VALUES (NULL) RETURNING id")).scalar()
            for name in ("numbered", "drawn_ahead")
        ]
    assert drawn == [11, 501]


SLOW_MAX = """
DROP DOMAIN IF EXISTS slow_id CASCADE;
CREATE DOMAIN slow_id AS integer;
CREATE FUNCTION slow_larger(a slow_id, b slow_id) RETURNS slow_id LANGUAGE plpgsql
    AS $$BEGIN PERFORM pg_sleep(0.001); RETURN greatest(a, b); END$$;
CREATE AGGREGATE max(slow_id) (SFUNC = slow_larger, STYPE = slow_id);
CREATE SEQUENCE slow_max_id_seq;
CREATE TABLE slow_max (id slow_id DEFAULT nextval('slow_max_id_seq'), geom geometry);
ALTER SEQUENCE slow_max_id_seq OWNED BY slow_max.id;
"""
"""A table whose id's domain has a max() that sleeps 1 ms a row."""


def test_a_sequence_moves_past_the_ids_however_long_their_max_takes(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    scratch: Callable[..., None],
) -> None:
    """The max() that moves a sequence reads the whole table where its column has no index
    (hundreds of millions of rows past statement_timeout). Here the column's domain has
    a max() that sleeps 1 ms a row: 600 rows take 0.6 s, under a 300 ms statement_timeout."""
    scratch("slow_max")
    db = make_db(statement_timeout="300ms")
    admin.execute(SLOW_MAX)
    try:
        points = [{"id": n, "geom": shapely.Point(n, n)} for n in range(1, 601)]
        assert db.ingest("slow_max", points, progress=False).inserted == 600
        with db.transaction() as s:
            drawn = s.execute(text("INSERT INTO slow_max (geom) VALUES (NULL) RETURNING id"))
            assert drawn.scalar() == 601
    finally:
        admin.execute("DROP TABLE IF EXISTS slow_max, slow_max_rejected")
        admin.execute("DROP DOMAIN IF EXISTS slow_id CASCADE")


def test_a_sequence_that_could_not_be_moved_is_moved_by_the_rerun(
    make_db: Callable[..., SpatialDatabase], scratch: Callable[..., None]
) -> None:
    """The rows are in when the sequence's lock is not granted: the error says so and how
    to move it, and the rerun with the ingest id loads nothing twice."""
    scratch("numbered")
    db = make_db(statement_timeout="1s")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE numbered (id serial PRIMARY KEY, geom geometry)"))
    points = [{"id": n, "geom": shapely.Point(n, n)} for n in range(1, 11)]
    with db.transaction(statement_timeout="10s") as holder:
        holder.execute(text("ALTER SEQUENCE numbered_id_seq INCREMENT BY 1"))  # locks it
        with pytest.raises(LockTimeout) as info:
            db.ingest("numbered", points, ingest_id="numbered-1", progress=False)
    assert '"public"."numbered" is loaded, but moving its sequences' in str(info.value)
    assert "the same ingest id (numbered-1) loads no row again" in str(info.value)
    assert info.value.ingest_report.inserted == 10  # type: ignore[attr-defined]
    report = db.ingest("numbered", points, ingest_id="numbered-1", progress=False)
    assert (report.inserted, report.already_committed) == (0, 10)
    with db.transaction() as s:
        drawn = s.execute(text("INSERT INTO numbered (geom) VALUES (NULL) RETURNING id"))
        assert drawn.scalar() == 11


@pytest.fixture
def loader(
    db: SpatialDatabase, make_db: Callable[..., SpatialDatabase], database_url: str
) -> Iterator[SpatialDatabase]:
    """A database for a role that may write to the table and the ledger, and create none."""
    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS numbered, numbered_rejected"))
        s.execute(text("CREATE TABLE numbered (id serial PRIMARY KEY, geom geometry)"))
        s.execute(text("CREATE INDEX numbered_geom ON numbered USING gist (geom)"))
    db.ingest("numbered", [], progress=False, on_invalid="skip")  # makes the ledger
    with db.transaction() as s:
        s.execute(text("DROP ROLE IF EXISTS geosession_loader"))
        s.execute(text("CREATE ROLE geosession_loader LOGIN"))
        s.execute(text("GRANT SELECT, INSERT ON numbered TO geosession_loader"))
        s.execute(
            text(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON geosession_ingest_ledger, "
                "geosession_ingest_deferred_index TO geosession_loader"
            )
        )
    loading = make_db(make_url(database_url).set(username="geosession_loader"))
    yield loading
    loading.dispose()
    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS numbered, numbered_rejected"))
        s.execute(text("DROP OWNED BY geosession_loader"))
        s.execute(text("DROP ROLE geosession_loader"))


def test_a_role_without_create_loads_into_tables_an_owner_made(
    db: SpatialDatabase, loader: SpatialDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """The ledger and rejects tables exist: no CREATE is asked for, and the indexes of an
    empty table it does not own stay (only the owner may drop them). What such a role may
    not do (make a rejects table, move a sequence) is said with what an owner must run."""
    points = [{"id": n, "geom": shapely.Point(n, n)} for n in range(1, 4)]
    with pytest.raises(ConfigurationError, match="keeps bad rows in") as refused:
        loader.ingest("numbered", points, progress=False)
    assert "CREATE TABLE IF NOT EXISTS" in str(refused.value)
    assert "GRANT SELECT, INSERT, DELETE ON " in str(refused.value)
    with caplog.at_level("WARNING", logger="geosession.ingest.sequences"):
        report = loader.ingest("numbered", points, progress=False, on_invalid="skip")
    assert report.inserted == 3 and not report.deferred_indexes
    assert "SELECT setval('public.numbered_id_seq', max(id))" in caplog.text
    with pytest.raises(ConfigurationError, match=r"which only its owner \(postgres\) may do"):
        loader.ingest("numbered", [], progress=False, on_invalid="skip", defer_indexes=True)
    db.ingest("numbered", [], progress=False)  # the owner makes the rejects table
    with pytest.raises(
        ConfigurationError,
        match=r"lacks INSERT on .*numbered_rejected.*; USAGE on the sequence of .*_rejected.*\.id",
    ) as lacking:
        loader.ingest("numbered", points, progress=False)  # before a row is read
    assert "GRANT USAGE ON SEQUENCE" in str(lacking.value)
    grant_rejects_to_loader(db)
    with db.transaction() as s:
        s.execute(text("GRANT SELECT, UPDATE ON SEQUENCE numbered_id_seq TO geosession_loader"))
    more = [{"id": n, "geom": shapely.Point(n, n)} for n in range(4, 6)]
    more.append({"id": 6, "geom": shapely.Point()})
    report = loader.ingest("numbered", more, progress=False)
    assert report.inserted == 2 and [r.kind for r in report.rejected] == ["empty"]
    with db.transaction() as s:
        assert s.execute(text("SELECT count(*) FROM numbered_rejected")).scalar() == 1
        drawn = s.execute(text("INSERT INTO numbered (geom) VALUES (NULL) RETURNING id"))
        assert drawn.scalar() == 6
    with pytest.raises(ConfigurationError, match=r"writes into .*numbered.*lacks UPDATE on"):
        loader.ingest("numbered", more, progress=False, on_conflict="update")
    with db.transaction() as s:
        s.execute(text("REVOKE UPDATE, DELETE ON geosession_ingest_ledger FROM geosession_loader"))
    with pytest.raises(ConfigurationError) as unrecorded:
        loader.ingest("numbered", more, progress=False)
    assert "lacks UPDATE and DELETE on geosession_ingest_ledger. Have" in str(unrecorded.value)
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON geosession_ingest_ledger" in str(
        unrecorded.value
    )
    assert 'geosession_ingest_deferred_index TO "geosession_loader";' in str(unrecorded.value)


def test_column_grants_are_enough_for_the_columns_a_load_writes(
    db: SpatialDatabase, loader: SpatialDatabase
) -> None:
    """GRANT INSERT (id, geom) was refused as lacking INSERT on the table; a column the
    source gives and the role may not write failed at the first chunk with "permission
    denied for table", naming none."""
    with db.transaction() as s:
        s.execute(text("ALTER TABLE numbered ADD note text"))
        s.execute(text("REVOKE INSERT ON numbered FROM geosession_loader"))
        s.execute(text("GRANT INSERT (id, geom) ON numbered TO geosession_loader"))
    points = [{"id": n, "geom": shapely.Point(n, n)} for n in range(1, 4)]
    assert loader.ingest("numbered", points, on_invalid="skip").inserted == 3
    noted = [{**point, "id": point["id"] + 3, "note": "x"} for point in points]
    with pytest.raises(ConfigurationError, match="lacks INSERT on note") as refused:
        loader.ingest("numbered", noted, on_invalid="skip")
    assert 'GRANT INSERT ("note") ON "public"."numbered" TO "geosession_loader";' in str(
        refused.value
    )
    assert refused.value.ingest_report.inserted == 0  # type: ignore[attr-defined]
    unnumbered = [{"geom": shapely.Point(n, n)} for n in range(2)]  # id from its sequence
    with pytest.raises(ConfigurationError, match="take the next value of public.numbered_id_seq"):
        loader.ingest("numbered", unnumbered, on_invalid="skip")
    with db.transaction() as s:
        s.execute(text("GRANT USAGE ON SEQUENCE numbered_id_seq TO geosession_loader"))
        s.execute(text("SELECT setval('numbered_id_seq', 10)"))  # past the ids loaded above
    assert loader.ingest("numbered", unnumbered, on_invalid="skip").inserted == 2
    sparse = [{"id": n, "geom": shapely.Point(n, n)} for n in range(20, 24)]
    sparse[3]["note"] = "x"  # first given in the second chunk's batch
    with pytest.raises(ConfigurationError, match="lacks INSERT on note") as late:
        loader.ingest("numbered", sparse, on_invalid="skip", chunk_size=2)
    assert "Source rows 3-4 are the first to give note" in str(late.value)
    assert "2 rows before it stay committed: rerunning with the same ingest id" in str(late.value)
    assert late.value.ingest_report.inserted == 2  # type: ignore[attr-defined]


def grant_rejects_to_loader(db: SpatialDatabase) -> None:
    """Lets the loading role keep rejects in numbered_rejected (made by its owner)."""
    with db.transaction() as s:
        s.execute(text("GRANT SELECT, INSERT, DELETE ON numbered_rejected TO geosession_loader"))
        s.execute(text("GRANT USAGE ON SEQUENCE numbered_rejected_id_seq TO geosession_loader"))


def test_settings_reach_the_ingests_connections_while_it_holds_them(
    db: SpatialDatabase,
    loader: SpatialDatabase,
    make_db: Callable[..., SpatialDatabase],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
) -> None:
    """A row-level security policy keyed on a setting (a tenant's key, a JWT's claims)
    refused every row of an ingest, which had no way to set it: settings= sets them (a
    role too) on its connections while it holds them, and resets them after."""
    with db.transaction() as s:
        s.execute(text("ALTER TABLE numbered ADD tenant text NOT NULL"))
        s.execute(text("ALTER TABLE numbered ENABLE ROW LEVEL SECURITY"))
        s.execute(
            text(
                "CREATE POLICY by_tenant ON numbered USING (tenant = current_setting("
                "'app.tenant', true)) WITH CHECK (tenant = current_setting('app.tenant', true))"
            )
        )
    db.ingest("numbered", [], progress=False)  # the owner makes the rejects table
    grant_rejects_to_loader(db)
    points = [
        {"id": n, "geom": shapely.Point(n, n), "tenant": "b" if n == 3 else "a"}
        for n in range(1, 6)
    ]
    one = make_db(pool_size=1, max_overflow=0)  # a superuser's, whom no policy binds
    tenant_a = {"role": "geosession_loader", "app.tenant": "a"}
    report = one.ingest("numbered", points, progress=False, settings=tenant_a)
    assert report.inserted == 4 and [(r.row, r.kind) for r in report.rejected] == [(3, "server")]
    assert "row-level security policy" in report.rejected[0].reason
    unkeyed = one.ingest("numbered", points, settings={"role": "geosession_loader"})
    assert unkeyed.inserted == 0 and len(unkeyed.rejected) == 5  # the policy sees no key
    with one.session() as s:  # the pooled connection is the superuser's again, keyless
        state = s.execute(text("SELECT current_user, current_setting('app.tenant', true)"))
        assert state.one() in (("postgres", ""), ("postgres", None))
    with db.session() as s:
        stored = s.execute(text("SELECT id, tenant FROM numbered ORDER BY id")).all()
    assert stored == [(1, "a"), (2, "a"), (4, "a"), (5, "a")]
    with pytest.raises(ConfigurationError, match="Name the target's schema instead"):
        one.ingest("numbered", points, settings={"search_path": "elsewhere, public"})
    refused = r"\(--setting\) role, app.tenant: .*role \"nobody\" does not"  # names only
    with pytest.raises(ConfigurationError, match=refused) as info:
        one.ingest("numbered", points, settings={"role": "nobody", "app.tenant": "k3y"})
    assert "k3y" not in str(info.value)
    with pytest.raises(ConfigurationError, match="not taken by an ingest behind PgBouncer"):
        make_db(pgbouncer=True).ingest("numbered", points, settings=tenant_a)
    source = tmp_path / "late.geojsonl"
    source.write_text(
        json.dumps(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [9, 9]},
                "properties": {"id": 9, "tenant": "a"},
            }
        )
        + "\n"
    )
    from typer.testing import CliRunner

    from geosession.cli import app

    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    settings = ["--setting", "role=geosession_loader", "--setting", "app.tenant=a"]
    done = CliRunner().invoke(app, ["ingest", str(source), "numbered", *settings])
    assert done.exit_code == 0, done.output
    with db.session() as s:
        assert s.execute(text("SELECT tenant FROM numbered WHERE id = 9")).scalar() == "a"


def test_a_role_that_may_not_create_temporary_tables_finds_refused_rows_by_halving(
    db: SpatialDatabase, loader: SpatialDatabase
) -> None:
    """The server's row-by-row loop needs a temporary table: a role without the TEMPORARY
    privilege on the database has the rows after a refused one halved instead. A load
    that needs a staging table is refused before its first row, with the GRANT."""
    revoke = (
        "DO $$BEGIN EXECUTE format('{} TEMPORARY ON DATABASE %I {} PUBLIC', "
        "current_database()); END$$"
    )
    with db.transaction() as s:
        s.execute(text("ALTER TABLE numbered ADD CHECK (id % 7 <> 0)"))
        s.execute(text(revoke.format("REVOKE", "FROM")))
    try:
        db.ingest("numbered", [], progress=False)  # the owner makes the rejects table
        grant_rejects_to_loader(db)
        points = [{"id": n, "geom": shapely.Point(n, n)} for n in range(1, 201)]
        report = loader.ingest("numbered", points, progress=False)
        with pytest.raises(ConfigurationError) as refused:
            loader.ingest("numbered", points, progress=False, on_conflict="ignore")
    finally:
        with db.transaction() as s:
            s.execute(text(revoke.format("GRANT", "TO")))
    assert [r.row for r in report.rejected] == list(range(7, 201, 7))
    assert report.inserted == 200 - 28
    assert "temporary staging table (on_conflict='ignore'), and role geosession_loader" in str(
        refused.value
    )
    assert 'GRANT TEMPORARY ON DATABASE "geosession_test_' in str(refused.value)
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM numbered")).scalar() == 172


def test_refusals_name_the_role_settings_made_current(
    db: SpatialDatabase, loader: SpatialDatabase, make_db: Callable[..., SpatialDatabase]
) -> None:
    """A load that takes a role by settings= (SET ROLE) is checked as that role, and its
    refusals name that role and grant to it, not to the user it logged in as."""
    superuser = make_db()
    as_loader = {"role": "geosession_loader"}
    unnumbered = [{"geom": shapely.Point(1, 1)}]  # ids from numbered_id_seq
    with pytest.raises(ConfigurationError, match="role geosession_loader may not make") as made:
        superuser.ingest("numbered", unnumbered, progress=False, settings=as_loader)
    assert 'numbered_rejected_id_seq" TO "geosession_loader";' in str(made.value)
    with pytest.raises(ConfigurationError, match="role geosession_loader may not use it") as used:
        superuser.ingest("numbered", unnumbered, settings=as_loader, on_invalid="skip")
    assert 'numbered_id_seq TO "geosession_loader";' in str(used.value)
    with db.transaction() as s:
        s.execute(text("REVOKE SELECT ON numbered FROM geosession_loader"))
    numbered = [{"id": 1, "geom": shapely.Point(1, 1)}]
    with pytest.raises(ConfigurationError, match="role geosession_loader lacks SELECT") as read:
        superuser.ingest(
            "numbered", numbered, settings=as_loader, on_conflict="ignore", on_invalid="skip"
        )
    assert 'TO "geosession_loader";' in str(read.value) and "postgres" not in str(read.value)
    assert superuser.ingest("numbered", numbered, progress=False).inserted == 1  # as itself


def test_a_table_under_row_level_security_loads_through_its_policies(
    db: SpatialDatabase, loader: SpatialDatabase
) -> None:
    """COPY FROM refuses a table whose policies apply to the role ("COPY FROM not supported
    with row-level security"): its rows go through a staging table and an INSERT, which the
    policies check, and a row a policy refuses is quarantined like a constraint's."""
    with db.transaction() as s:
        s.execute(text("ALTER TABLE numbered ADD owner text NOT NULL DEFAULT current_user"))
        s.execute(text("ALTER TABLE numbered ENABLE ROW LEVEL SECURITY"))
        s.execute(
            text(
                "CREATE POLICY own ON numbered USING (owner = current_user) "
                "WITH CHECK (owner = current_user)"
            )
        )
        s.execute(text("INSERT INTO numbered (id, geom, owner) VALUES (100, NULL, 'other')"))
        s.execute(text("GRANT UPDATE ON numbered TO geosession_loader"))
    db.ingest("numbered", [], progress=False)  # the owner makes the rejects table
    grant_rejects_to_loader(db)
    points = [{"id": n, "geom": shapely.Point(n, n)} for n in range(1, 6)]
    for point in points:
        point["owner"] = "other" if point["id"] == 3 else "geosession_loader"
    with db.transaction() as s:
        s.execute(text("REVOKE SELECT ON numbered FROM geosession_loader"))
    with pytest.raises(ConfigurationError, match=r"lacks SELECT on .*numbered"):
        loader.ingest("numbered", points, progress=False)  # the stage is made from it
    with db.transaction() as s:
        s.execute(text("GRANT SELECT ON numbered TO geosession_loader"))
    report = loader.ingest("numbered", points, progress=False)
    assert report.inserted == 4
    assert [(r.row, r.kind) for r in report.rejected] == [(3, "server")]
    assert "row-level security policy" in report.rejected[0].reason
    again = loader.ingest("numbered", points, progress=False, on_conflict="update")
    assert again.inserted == 4 and [r.row for r in again.rejected] == [3]
    with db.session() as s:
        stored = s.execute(text("SELECT id, owner FROM numbered ORDER BY id")).all()
    assert stored == [(n, "geosession_loader") for n in (1, 2, 4, 5)] + [(100, "other")]
    with db.transaction() as s:  # the owner is not under the policies: COPY as before
        s.execute(text("DELETE FROM numbered WHERE id < 100"))
    unowned = [{"id": p["id"], "geom": p["geom"]} for p in points]
    assert loader.ingest("numbered", unowned, progress=False).inserted == 5  # the default
    with db.transaction() as s:
        s.execute(text("DELETE FROM numbered WHERE id < 100"))
    assert db.ingest("numbered", points, progress=False).inserted == 5


def test_on_conflict_error_ignore_update(db: SpatialDatabase, table: str) -> None:
    db.ingest(table, rows(100))
    changed = [
        {"id": 50, "name": "changed", "value": -5.0, "geom": "POLYGON((0 0,1 0,1 1,0 0))"},
        {"id": 101, "name": "new", "value": 1.0, "geom": "POLYGON((0 0,1 0,1 1,0 0))"},
    ]
    with pytest.raises(IntegrityViolation, match="Row 1.s key is already in.*--on-conflict ignore"):
        db.ingest(table, changed)
    ignored = db.ingest(table, changed, on_conflict="ignore")
    assert (ignored.inserted, ignored.conflicts) == (1, 1)
    with db.session() as s:
        assert s.execute(text(f"SELECT name FROM {TABLE} WHERE id = 50")).scalar() == "p50"
    updated = db.ingest(table, changed, on_conflict="update")
    assert updated.inserted == 2
    with db.session() as s:
        assert s.execute(text(f"SELECT name FROM {TABLE} WHERE id = 50")).scalar() == "changed"
        assert s.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar() == 101


def test_on_conflict_update_writes_the_last_row_of_a_key_the_source_repeats(
    db: SpatialDatabase, table: str
) -> None:
    """A feed of changes names a key again: applied in turn, its last row stands (one
    INSERT ... ON CONFLICT DO UPDATE cannot touch a row twice, so the chunk keeps the last),
    and columns the source leaves out keep their values."""
    db.ingest(table, rows(10))
    square = "POLYGON((0 0,1 0,1 1,0 0))"
    feed = [
        {"id": 3, "name": "first", "geom": square},
        {"id": 11, "name": "new", "geom": square},
        {"id": 3, "name": "second", "geom": square},
        {"id": 11, "name": "newer", "geom": square},
        {"id": 3, "name": "last", "geom": square},
    ]
    report = db.ingest(table, feed, on_conflict="update", chunk_size=10)
    assert (report.rows_read, report.inserted, report.superseded) == (5, 2, 3)
    assert re.search(
        r"superseded by a later row of its key, or giving only the key +│ +3 │", str(report)
    )
    with db.session() as s:
        found = s.execute(
            text(f"SELECT id, name, value FROM {TABLE} WHERE id IN (3, 11) ORDER BY id")
        )
        assert found.all() == [(3, "last", 3.0), (11, "newer", None)]
    twice = [{"id": 12, "name": "a", "geom": square}, {"id": 12, "name": "b", "geom": square}]
    ignored = db.ingest(table, twice, on_conflict="ignore")
    assert (ignored.inserted, ignored.conflicts) == (1, 1)
    with db.session() as s:
        assert s.execute(text(f"SELECT name FROM {TABLE} WHERE id = 12")).scalar() == "a"


@pytest.mark.parametrize(("on_conflict", "stands"), [("update", "later"), ("ignore", "slow")])
def test_a_key_repeated_across_chunks_is_applied_in_source_order(
    db: SpatialDatabase,
    table: str,
    row_trigger: Callable[[str, str, str], None],
    on_conflict: str,
    stands: str,
) -> None:
    """Into a table with a GiST index the load wrote two chunks at once by default, so a
    key in two chunks ended with the row of whichever committed last: a slow first chunk
    overwrote the second's newer row (update), or lost its own to it (ignore); so did a
    chunk retried after a lost connection. Such loads write one chunk at a time, in turn."""
    db.ingest(table, rows(10))  # not empty: its GiST index is kept up during the load
    slow = "IF NEW.name = 'slow' THEN PERFORM pg_sleep(1); END IF;"
    row_trigger(table, "BEFORE INSERT OR UPDATE", slow)
    square = "POLYGON((0 0,1 0,1 1,0 0))"
    feed = [
        {"id": 21, "name": "slow", "geom": square},
        {"id": 22, "name": "a", "geom": square},
        {"id": 21, "name": "later", "geom": square},
        {"id": 23, "name": "b", "geom": square},
    ]
    report = db.ingest(table, feed, on_conflict=on_conflict, chunk_size=2)
    assert (report.chunks, report.workers) == (2, 1)
    with db.session() as s:
        assert s.execute(text(f"SELECT name FROM {TABLE} WHERE id = 21")).scalar() == stands


def test_on_conflict_matches_on_a_unique_key_when_the_source_has_no_primary_key(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """Rows keyed by a natural code, the table by an identity: 'update' matches on the
    unique code (not on a partial unique index, which ON CONFLICT cannot name), 'ignore'
    skips a row that conflicts on any unique key."""
    scratch("coded")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE coded (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                "code text, region text, name text, geom geometry(Point, 4326), "
                "UNIQUE (code) INCLUDE (name))"
            )
        )
        s.execute(text("CREATE UNIQUE INDEX ON coded (region) WHERE region IS NOT NULL"))
        s.execute(text("INSERT INTO coded (code, name) VALUES ('A', 'old'), ('B', 'kept')"))
    point = "POINT(1 1)"
    changes = [
        {"code": "A", "name": "new", "geom": point},
        {"code": "C", "name": "c", "geom": point},
        {"code": None, "name": "uncoded 1"},  # NULLs are distinct in a unique key:
        {"code": None, "name": "uncoded 2"},  # both are new rows, neither supersedes
    ]
    updated = db.ingest("coded", changes, on_conflict="update")
    assert (updated.inserted, updated.superseded, updated.rejected) == (4, 0, [])
    ignored = db.ingest(
        "coded", [{"code": "B", "name": "x"}, {"code": "D", "name": "d"}], on_conflict="ignore"
    )
    assert (ignored.inserted, ignored.conflicts, ignored.rejected) == (1, 1, [])
    with db.session() as s:
        found = s.execute(
            text("SELECT code, name, geom IS NOT NULL FROM coded WHERE code IS NOT NULL ORDER BY 1")
        )
        assert found.all() == [
            ("A", "new", True),
            ("B", "kept", False),
            ("C", "c", True),
            ("D", "d", False),
        ]
    with pytest.raises(
        ConfigurationError,
        match=r"a unique constraint, \(id\) or \(code\), and the source gives the columns of none",
    ) as info:
        db.ingest("coded", [{"name": "nameless"}], on_conflict="update")
    assert "(region)" not in str(info.value)  # partial: not a key ON CONFLICT can use
    with db.transaction() as s:
        s.execute(text("CREATE TABLE unkeyed (name text)"))
    scratch("unkeyed")
    with pytest.raises(
        ConfigurationError,
        match=r"needs a primary key or a unique constraint on \"public\".\"unkeyed\"",
    ):
        db.ingest("unkeyed", [{"name": "a"}], on_conflict="ignore")


def test_resume_with_the_same_ingest_id_after_a_crash(db: SpatialDatabase, table: str) -> None:
    def crashing() -> Iterator[dict[str, Any]]:
        for number, row in enumerate(rows(10_000), start=1):
            if number == 6_543:
                raise RuntimeError("source died")
            yield row

    with pytest.raises(RuntimeError, match="source died"):
        db.ingest(table, crashing(), chunk_size=1_000, ingest_id="resume-me")
    assert table_state(db)[0] == 6_000
    stopped = ledger_entries(db, "resume-me")  # an entry per chunk while a load is unfinished
    assert [entry[:3] for entry in stopped] == [(n, n + 999, 1_000) for n in range(1, 6_000, 1_000)]
    report = db.ingest(table, rows(10_000), chunk_size=1_000, ingest_id="resume-me")
    assert (report.already_committed, report.inserted) == (6_000, 4_000)
    assert table_state(db) == (10_000, 10_000, source_checksum(10_000))
    # completed: one entry for the load, the same rows committed
    assert ledger_entries(db, "resume-me") == [(1, 10_000, 10_000, 0, "merged:10 chunks")]
    again = db.ingest(table, rows(10_000), chunk_size=1_000, ingest_id="resume-me")
    assert (again.already_committed, again.inserted) == (10_000, 0)


def ledger_entries(db: SpatialDatabase, ingest_id: str) -> list[tuple[int, int, int, int, str]]:
    """An ingest id's ledger entries: first and last source row, rows inserted and
    rejected, and the checksum."""
    with db.session() as s:
        found = s.execute(
            text(
                "SELECT first_row, last_row, rows_inserted, rows_rejected, checksum "
                "FROM geosession_ingest_ledger WHERE ingest_id = :id ORDER BY first_row"
            ),
            {"id": ingest_id},
        )
        return [tuple(entry) for entry in found]  # type: ignore[misc]


def test_a_running_load_merges_its_entries_below_the_chunks_it_writes() -> None:
    """A chunk whose commit goes unanswered is looked up by its own entry: a load merges
    only the entries that end before every chunk its writers hold."""
    from types import SimpleNamespace

    from geosession.ingest.ledger_merges import MergePoints

    first, second, third = (SimpleNamespace(first_row=n, last_row=n + 99) for n in (1, 101, 201))
    points = MergePoints(every=2)
    points.taken(first)
    points.taken(second)
    assert points.answered(first) is None  # one answered: not due
    points.taken(third)
    assert points.answered(third) == 100  # due, and the second is still held
    assert points.answered(second) is None
    points.taken(fourth := SimpleNamespace(first_row=301, last_row=400))
    assert points.answered(fourth) == 400  # none held: all answered


def test_a_feed_that_runs_on_merges_its_entries_as_it_goes(
    db: SpatialDatabase, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load that never completes (a feed) merges its entries every so many chunks; where
    it stops, the rows committed are what a rerun skips."""
    from geosession.ingest import ledger_merges

    monkeypatch.setattr(ledger_merges, "MERGE_EVERY", 4)

    def feed() -> Iterator[dict[str, Any]]:
        for number, row in enumerate(rows(3_000), start=1):
            if number == 2_951:
                raise RuntimeError("feed dropped")
            yield row

    with pytest.raises(RuntimeError, match="feed dropped"):
        db.ingest(table, feed(), chunk_size=100, ingest_id="feed", workers=2, progress=False)
    entries = ledger_entries(db, "feed")
    assert entries[0][:3] == (1, entries[0][1], entries[0][1])  # merged from the start
    assert entries[0][4].startswith("merged:") and 2 <= len(entries) <= 8
    assert sum(entry[2] for entry in entries) == 2_900 == table_state(db)[0]
    resumed = db.ingest(table, rows(3_000), chunk_size=100, ingest_id="feed", progress=False)
    assert (resumed.already_committed, resumed.inserted) == (2_900, 100)
    assert table_state(db) == (3_000, 3_000, source_checksum(3_000))
    assert ledger_entries(db, "feed") == [(1, 3_000, 3_000, 0, "merged:30 chunks")]


def test_ledger_entries_merge_into_one_per_run_of_rows(
    db: SpatialDatabase, admin: psycopg.Connection[Any], table: str
) -> None:
    """Entries that meet or overlap (a resumed run's chunk spans the rows it skipped)
    become one, their counts summed; a gap, another table's entries and another id's stay
    apart, and what a run reads as committed is the same before and after."""
    from types import SimpleNamespace

    from geosession.ingest.ledger import committed_rows
    from geosession.ingest.ledger_merges import merge_entries

    db.ingest(table, [], progress=False)  # makes the ledger
    with admin.transaction(), admin.cursor() as cursor:
        oid = cursor.execute("SELECT %s::regclass::oid", (table,)).fetchone()[0]
        database = cursor.execute("SELECT current_database()").fetchone()[0]
        target = SimpleNamespace(quoted=f'"public"."{TABLE}"', oid=oid, database=database)
        entries = [
            ("merging", 1, 100, 90, 10),
            ("merging", 101, 200, 100, 0),
            ("merging", 301, 400, 50, 0),  # after a gap
            ("merging", 302, 320, 19, 0),  # nested: a resumed run's chunk around it
            ("merging", 401, 450, 50, 0),
            ("other", 1, 100, 100, 0),
        ]
        for ingest_id, first, last, inserted, rejected in entries:
            cursor.execute(
                "INSERT INTO geosession_ingest_ledger (ingest_id, target, target_oid, "
                "target_database, first_row, last_row, rows_inserted, rows_rejected, checksum) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'crc32:0')",
                (ingest_id, target.quoted, oid, database, first, last, inserted, rejected),
            )
        before = committed_rows(cursor, "merging", target)  # type: ignore[arg-type]
        merge_entries(cursor, "merging")
        after = committed_rows(cursor, "merging", target)  # type: ignore[arg-type]
    assert (after.starts, after.ends) == (before.starts, before.ends) == ([1, 301], [200, 450])
    assert ledger_entries(db, "merging") == [
        (1, 200, 190, 10, "merged:2 chunks"),
        (301, 450, 119, 0, "merged:3 chunks"),
    ]
    assert ledger_entries(db, "other") == [(1, 100, 100, 0, "crc32:0")]
    admin.execute("DELETE FROM geosession_ingest_ledger WHERE ingest_id IN ('merging', 'other')")


def test_an_emptied_table_is_loaded_again_a_thinned_one_resumes(
    db: SpatialDatabase, table: str
) -> None:
    def source() -> Iterator[dict[str, Any]]:
        yield from rows(3_000)
        yield {"id": 3_001, "name": "bad", "value": 0.0, "geom": "POLYGON((0 0,1 1,1 0,0 1,0 0))"}

    def rejects() -> int:
        with db.session() as s:
            return int(s.execute(text(f"SELECT count(*) FROM {table}_rejected")).scalar_one())

    assert db.ingest(table, source(), ingest_id="again").inserted == 3_000
    with db.transaction() as s:
        s.execute(text(f"DELETE FROM {table} WHERE id > 2000"))
    resumed = db.ingest(table, source(), ingest_id="again")
    assert (resumed.already_committed, resumed.inserted, resumed.reloaded) == (3_001, 0, 0)
    with db.transaction() as s:
        s.execute(text(f"TRUNCATE {table}"))
    again = db.ingest(table, source(), ingest_id="again")
    assert (again.already_committed, again.inserted, again.reloaded) == (0, 3_000, 3_000)
    assert "loaded again (deleted since the last run)" in str(again)
    assert table_state(db) == (3_000, 3_000, source_checksum(3_000)) and rejects() == 1


def test_a_load_that_inserted_nothing_resumes_into_its_empty_table(
    db: SpatialDatabase, table: str
) -> None:
    bad = [{"id": 1, "name": "x", "value": 1.0, "geom": "POINT(1 1)"}]
    assert db.ingest(table, bad, ingest_id="nothing").inserted == 0
    report = db.ingest(table, bad, ingest_id="nothing")
    assert (report.already_committed, report.reloaded, len(report.rejected)) == (1, 0, 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_source_still_loads_the_rows_read_before_it(
    db: SpatialDatabase, table: str, workers: int
) -> None:
    def crashing() -> Iterator[dict[str, Any]]:
        for number, row in enumerate(rows(16_000), start=1):
            if number == 12_001:
                raise RuntimeError("feed dropped")
            yield row

    # source batches of 5,000 rows under chunks of 20,000: when the third batch fails,
    # the first two wait for a chunk to fill; they load, the failing batch does not
    with pytest.raises(RuntimeError, match="feed dropped") as failed:
        db.ingest(table, crashing(), chunk_size=20_000, ingest_id="dropped", workers=workers)
    report = failed.value.ingest_report  # type: ignore[attr-defined]
    assert (report.inserted, report.chunks, report.completed) == (10_000, 1, False)
    assert report.workers == workers
    assert table_state(db)[0] == 10_000
    resumed = db.ingest(table, rows(16_000), chunk_size=20_000, ingest_id="dropped")
    assert (resumed.already_committed, resumed.inserted) == (10_000, 6_000)
    assert table_state(db) == (16_000, 16_000, source_checksum(16_000))


def test_an_ingest_id_belongs_to_one_table(
    db: SpatialDatabase, table: str, scratch: Callable[..., None]
) -> None:
    """Rerun after the table was dropped and made again: its rows went with it, so all of
    them load again (they were skipped as committed). Reused for another table: refused."""
    scratch("ingest_other", "ingest_renamed")
    assert db.ingest(table, rows(3_000), ingest_id="parcels-v1").inserted == 3_000
    with db.transaction() as s:
        s.execute(text(f"DROP TABLE {TABLE}"))
        s.execute(
            text(
                f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, name text, value float8, "
                "geom geometry(POLYGON, 4326) NOT NULL)"
            )
        )
    again = db.ingest(table, rows(3_000), ingest_id="parcels-v1")
    assert (again.already_committed, again.inserted) == (0, 3_000)
    assert table_state(db) == (3_000, 3_000, source_checksum(3_000))
    resumed = db.ingest(table, rows(3_000), ingest_id="parcels-v1")  # the same table: skipped
    assert (resumed.already_committed, resumed.inserted) == (3_000, 0)
    with db.transaction() as s:
        s.execute(text("CREATE TABLE ingest_other (LIKE ingest_parcels INCLUDING ALL)"))
    with pytest.raises(ConfigurationError, match=r"'parcels-v1' already loaded rows into"):
        db.ingest("ingest_other", rows(10), ingest_id="parcels-v1")
    with db.transaction() as s:  # renamed, it is still the table those rows are in
        s.execute(text(f"ALTER TABLE {TABLE} RENAME TO ingest_renamed"))
    renamed = db.ingest("ingest_renamed", rows(3_000), ingest_id="parcels-v1")
    assert (renamed.already_committed, renamed.inserted) == (3_000, 0)
    with db.transaction() as s:  # once that table is gone, the id is free again
        s.execute(text("DROP TABLE ingest_renamed"))
    assert db.ingest("ingest_other", rows(10), ingest_id="parcels-v1").inserted == 10


def test_a_ledger_from_an_earlier_version_gains_the_table_oid(
    db: SpatialDatabase, table: str
) -> None:
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE geosession_ingest_ledger (ingest_id text NOT NULL, "
                "target text NOT NULL, first_row bigint NOT NULL, last_row bigint NOT NULL, "
                "rows_inserted integer NOT NULL, rows_rejected integer NOT NULL, "
                "checksum text NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (ingest_id, first_row))"
            )
        )
        s.execute(  # an old entry, without an OID: trusted as this table's
            text(
                "INSERT INTO geosession_ingest_ledger VALUES "
                "('old', '\"public\".\"ingest_parcels\"', 1, 100, 100, 0, 'crc32:0', now())"
            )
        )
        s.execute(  # and the rows that entry loaded
            text(f"INSERT INTO {table} VALUES (:id, :name, :value, ST_GeomFromEWKB(:geom))"),
            [{**row, "geom": to_ewkb(row["geom"], 4326)} for row in rows(100)],
        )
    report = db.ingest(table, rows(150), ingest_id="old")
    assert (report.already_committed, report.inserted) == (100, 50)
    with db.session() as s:
        oids = s.execute(text("SELECT target_oid FROM geosession_ingest_ledger ORDER BY first_row"))
        assert [oid is not None for oid in oids.scalars()] == [False, True]  # the new entry


def test_a_resumed_ingest_after_a_dump_is_restored_skips_what_the_dump_holds(
    db: SpatialDatabase,
    table: str,
    make_db: Callable[..., SpatialDatabase],
    database_url: str,
    server_url: str,
) -> None:
    """pg_dump and pg_restore into another database give every table another OID: the
    ledger's entries were taken as a dropped table's, deleted, and the same command
    loaded every row again. Entries from another database now name their table by name."""
    import subprocess

    import psycopg

    from geosession.local import _find_binaries

    first_part = itertools.islice(rows(5_000), 3_000)  # as if stopped after 3,000 rows
    assert db.ingest(table, first_part, chunk_size=1_000, ingest_id="migrated").chunks == 3
    restored = make_url(database_url).database + "_restored"
    libpq = make_url(server_url).set(drivername="postgresql")
    with psycopg.connect(libpq.render_as_string(hide_password=False), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {restored} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {restored}")
        try:
            restored_url = make_url(database_url).set(database=restored)
            binaries = _find_binaries()
            dump = subprocess.run(
                [
                    binaries.tool("pg_dump"),
                    "--format=custom",
                    "--dbname",
                    libpq.set(database=make_url(database_url).database).render_as_string(
                        hide_password=False
                    ),
                ],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(
                [
                    binaries.tool("pg_restore"),
                    "--no-owner",
                    "--dbname",
                    restored_url.set(drivername="postgresql").render_as_string(hide_password=False),
                ],
                input=dump,
                check=True,
                capture_output=True,
            )
            moved = make_db(restored_url.render_as_string(hide_password=False), pool_size=2)
            resumed = moved.ingest(table, rows(5_000), chunk_size=1_000, ingest_id="migrated")
            assert (resumed.already_committed, resumed.inserted) == (3_000, 2_000)
            assert table_state(moved) == (5_000, 5_000, source_checksum(5_000))
            again = moved.ingest(table, rows(5_000), ingest_id="migrated")  # OIDs adopted
            assert (again.already_committed, again.inserted) == (5_000, 0)
            moved.dispose()
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {restored} WITH (FORCE)")
    assert table_state(db)[0] == 3_000  # the original is untouched


def test_arrow_data_loads_with_its_geoarrow_crs_and_resumes(
    db: SpatialDatabase, table: str
) -> None:
    """A pyarrow Table or RecordBatchReader (any Arrow C stream): WKB in a geoarrow.wkb
    field whose CRS is checked against the column's SRID, as a file's is."""
    polygons = synthetic_polygons(2_000, seed=3)

    def arrow(crs: str) -> pa.Table:
        metadata = {
            b"ARROW:extension:name": b"geoarrow.wkb",
            b"ARROW:extension:metadata": json.dumps({"crs": crs}).encode(),
        }
        fields = [pa.field("id", pa.int32()), pa.field("shape", pa.binary(), metadata=metadata)]
        values = [pa.array(range(1, 2_001), pa.int32()), pa.array(shapely.to_wkb(polygons))]
        return pa.Table.from_arrays(values, schema=pa.schema(fields))

    data = arrow("OGC:CRS84")
    first = db.ingest(table, data.to_reader(max_chunksize=300), ingest_id="arrow", chunk_size=500)
    again = db.ingest(table, data, ingest_id="arrow")
    assert (first.inserted, first.srid_assumed, again.inserted) == (2_000, 0, 0)
    assert table_state(db) == (2_000, 2_000, source_checksum(2_000, seed=3))
    with pytest.raises(ConfigurationError, match=r"The source's CRS is EPSG:3857"):
        db.ingest(table, arrow("EPSG:3857"))


def test_wkb_fields_named_as_geometries_usually_are_land_in_the_geometry_column(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """Arrow data and Parquet files without metadata: a WKB field named geometry (as
    geopandas names it), wkb_geometry (GDAL), the_geom or shape loads into the table's
    geometry column; with two geometry columns it must be named after one."""
    import polars as pl
    import pyarrow.parquet as pq

    scratch("usual_names", "two_geometries")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE usual_names (id int PRIMARY KEY, geom geometry(Point, 4326))"))
        s.execute(text("CREATE TABLE two_geometries (id int, a geometry, b geometry)"))
    points = shapely.to_wkb([shapely.Point(i, i) for i in range(4)]).tolist()
    frame = pl.DataFrame({"id": [1, 2], "geometry": points[:2]})
    pq.write_table(pa.table({"id": [3, 4], "WKB_Geometry": points[2:]}), tmp_path / "p.parquet")
    assert db.ingest("usual_names", frame).inserted == 2
    assert db.ingest("usual_names", tmp_path / "p.parquet").inserted == 2
    with db.session() as s:
        stored = s.execute(text("SELECT ST_X(geom) FROM usual_names ORDER BY id")).scalars()
        assert list(stored) == [0, 1, 2, 3]
    with pytest.raises(ConfigurationError, match="fields that are not columns.*'geometry'"):
        db.ingest("two_geometries", frame)
    named = pl.DataFrame({"id": [5], "shape": ["circle"], "geom": points[:1]})
    with pytest.raises(ConfigurationError, match="not columns of the target: 'shape'"):
        db.ingest("usual_names", named)  # a field named as the column is the geometry


def test_a_psycopg2_database_ingests_over_psycopg_connections_of_its_own(
    make_db: Callable[..., SpatialDatabase], table: str
) -> None:
    """Binary COPY is psycopg 3's: the ingest of a psycopg2 database borrows from a pool of
    psycopg 3 connections with the same settings."""
    db = make_db(driver="psycopg2", statement_timeout="41s", pool_size=2, max_overflow=0)
    report = db.ingest(table, rows(3_000), chunk_size=1_000, workers=2, progress=False)
    again = asyncio.run(db.async_ingest(table, rows(500, start=3_001, seed=1)))
    assert (report.inserted, again.inserted) == (3_000, 500)
    assert table_state(db)[:2] == (3_500, 3_500)
    assert db.engine.dialect.driver == "psycopg2"
    ingest_pool = db.metrics.ingest_pool
    assert ingest_pool is not None and ingest_pool.stats().checked_out == 0
    with ingest_pool.engine.connect() as connection:
        assert connection.dialect.driver == "psycopg"
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "41s"
    registry = CollectorRegistry()
    register(db, registry, database="testdb")
    assert (
        'geosession_pool_size{database="testdb",pool="ingest"} 2.0'
        in generate_latest(registry).decode()
    )


async def async_rows(
    count: int, *, fail_at: int | None = None, pause_every: int = 0
) -> AsyncIterator[dict[str, Any]]:
    """rows(count) as an async generator, as an async client's would be."""
    for number, row in enumerate(rows(count), start=1):
        if number == fail_at:
            raise RuntimeError("async source died")
        if pause_every and number % pause_every == 0:
            await asyncio.sleep(0.02)
        yield row


def test_async_ingest_loads_an_async_generator_without_blocking_the_loop(
    db: SpatialDatabase, table: str
) -> None:
    async def main() -> tuple[IngestReport, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(tick())
        report = await db.async_ingest(table, async_rows(30_000), chunk_size=3_000)
        ticker.cancel()
        return report, ticks

    report, ticks = asyncio.run(main())
    assert (report.rows_read, report.inserted, report.chunks) == (30_000, 30_000, 10)
    assert table_state(db) == (30_000, 30_000, source_checksum(30_000))
    assert ticks >= 5, "the event loop was blocked during the ingest"
    assert asyncio.run(db.async_ingest(table, rows(10, start=40_001))).inserted == 10


def test_async_ingest_source_failure_keeps_what_came_before_and_resumes(
    db: SpatialDatabase, table: str
) -> None:
    with pytest.raises(RuntimeError, match="async source died"):
        asyncio.run(
            db.async_ingest(
                table, async_rows(10_000, fail_at=6_543), chunk_size=1_000, ingest_id="async-1"
            )
        )
    assert table_state(db)[0] == 6_000
    resumed = asyncio.run(
        db.async_ingest(table, async_rows(10_000), chunk_size=1_000, ingest_id="async-1")
    )
    assert (resumed.already_committed, resumed.inserted) == (6_000, 4_000)
    assert table_state(db) == (10_000, 10_000, source_checksum(10_000))


def test_cancelled_async_ingest_stops_and_the_same_id_resumes(
    db: SpatialDatabase, table: str
) -> None:
    async def cancel_mid_load() -> IngestReport:
        task = asyncio.create_task(
            db.async_ingest(
                table, async_rows(40_000, pause_every=1_000), chunk_size=1_000, ingest_id="async-2"
            )
        )
        while await asyncio.to_thread(lambda: table_state(db)[0]) == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as cancelled:
            await task
        assert not ingest_threads(), "the pipeline still runs after the task was cancelled"
        return cancelled.value.ingest_report  # type: ignore[attr-defined, no-any-return]

    stopped = asyncio.run(cancel_mid_load())
    committed = table_state(db)[0]
    assert 0 < committed < 40_000 and stopped.inserted == committed and not stopped.completed
    resumed = db.ingest(table, rows(40_000), chunk_size=1_000, ingest_id="async-2")
    assert (resumed.already_committed, resumed.inserted) == (committed, 40_000 - committed)
    assert table_state(db) == (40_000, 40_000, source_checksum(40_000))


def test_async_ingest_raises_what_the_ingest_raises(db: SpatialDatabase, table: str) -> None:
    source = list(rows(3_000))
    source[2_500] = {**source[2_500], "geom": BAD_VALUES["invalid"]}
    with pytest.raises(InvalidGeometry, match="Row 2501") as info:
        asyncio.run(db.async_ingest(table, source, chunk_size=1_000, on_invalid="raise"))
    assert info.value.ingest_report.inserted == table_state(db)[0] >= 2_000  # type: ignore[attr-defined]
    assert not ingest_threads()


@pytest.mark.parametrize("flush_interval", [None, 0.2])
def test_cancel_does_not_wait_for_a_quiet_async_source(
    db: SpatialDatabase, table: str, flush_interval: float | None
) -> None:
    async def cancel_while_quiet() -> None:
        release = asyncio.Event()

        async def stalls_after(count: int) -> AsyncIterator[dict[str, Any]]:
            for row in rows(count):
                yield row
            await release.wait()  # a stream whose next row does not come

        task = asyncio.create_task(
            db.async_ingest(table, stalls_after(2_500), flush_interval=flush_interval)
        )
        if flush_interval:  # what came is committed while the source is quiet
            assert await asyncio.to_thread(watch_for_rows, db, 2_500) == 2_500
        await asyncio.sleep(0.5)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        release.set()  # a stuck ingest can then end, so that the test fails, not hangs
        assert done, "cancelling waited for the source's next row"
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_while_quiet())
    assert not ingest_threads()


def test_an_async_source_needs_async_ingest(db: SpatialDatabase, table: str) -> None:
    source = async_rows(10)
    with pytest.raises(ConfigurationError, match=r"await db\.async_ingest"):
        db.ingest(table, source)
    asyncio.run(source.aclose())


def test_indexes_are_deferred_on_an_empty_table_and_always_restored(
    db: SpatialDatabase, table: str
) -> None:
    report = db.ingest(table, rows(2_000))
    assert report.deferred_indexes == [f"{TABLE}_geom_idx"]
    assert index_names(db) == {f"{TABLE}_pkey", f"{TABLE}_geom_idx"}
    again = db.ingest(table, rows(10, start=5_000))
    assert again.deferred_indexes == []  # never on a table that has rows
    with db.transaction() as s:
        s.execute(text(f"TRUNCATE {TABLE}"))
    with pytest.raises(InvalidGeometry):
        db.ingest(table, [{"id": 1, "geom": "POLYGON EMPTY"}], on_invalid="raise")
    assert index_names(db) == {f"{TABLE}_pkey", f"{TABLE}_geom_idx"}


def test_several_deferred_indexes_are_all_rebuilt(db: SpatialDatabase, table: str) -> None:
    with db.transaction() as s:
        s.execute(text(f"CREATE INDEX {TABLE}_name_idx ON {TABLE} (name)"))
        s.execute(text(f"CREATE INDEX {TABLE}_value_idx ON {TABLE} (value)"))
    report = db.ingest(table, rows(2_000))
    deferred = {f"{TABLE}_geom_idx", f"{TABLE}_name_idx", f"{TABLE}_value_idx"}
    assert set(report.deferred_indexes) == deferred
    assert index_names(db) == deferred | {f"{TABLE}_pkey"}
    assert not deferred_records(db)
    assert table_state(db) == (2_000, 2_000, source_checksum(2_000))


def at_once(
    make_db: Callable[..., SpatialDatabase],
    load: Callable[[SpatialDatabase, Any], Any],
    arguments: tuple[Any, ...],
    **settings: Any,
) -> list[Any]:
    """``load(db, argument)`` for each argument, on threads released together, each with
    a database of its own (with ``settings``); what each returned or raised (a
    GeoSessionError), as it ended."""
    start = threading.Barrier(len(arguments))
    outcomes: list[Any] = []

    def run(argument: Any) -> None:
        loader = make_db(pool_size=3, **settings)
        start.wait()
        try:
            outcomes.append(load(loader, argument))
        except GeoSessionError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=run, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_two_loads_into_one_empty_table_at_once_rebuild_its_indexes_once(
    db: SpatialDatabase, make_db: Callable[..., SpatialDatabase], table: str
) -> None:
    """Both saw the table empty and deferred its index; the second to finish rebuilt it
    again alongside the first and failed on pg_class's unique name ("duplicate key value
    ... pg_class_relname_nsp_index"), though the rows and the index were fine."""
    with db.transaction() as s:
        s.execute(text(f"CREATE INDEX {TABLE}_name_idx ON {TABLE} (name)"))
    reports = at_once(
        make_db,
        lambda loader, first: loader.ingest(
            table, rows(20_000, start=first), ingest_id=f"both-{first}"
        ),
        (1, 100_001),
    )
    assert [report.inserted for report in reports] == [20_000, 20_000]
    assert index_names(db) == {f"{TABLE}_pkey", f"{TABLE}_geom_idx", f"{TABLE}_name_idx"}
    assert not deferred_records(db)


def test_a_chunk_whose_rows_another_run_of_the_id_committed_is_refused(
    db: SpatialDatabase, admin: psycopg.Connection[Any], table: str
) -> None:
    """Two runs of one ingest id at once cut chunks differently: rows 1-7000 of one and
    5001-12000 of the other passed the ledger's key (first rows differ), so rows
    5001-7000 could be loaded twice. A commit over rows another run committed after this
    one began is refused; rows committed before it began are the ones it skips (a resumed
    chunk's span may cover them)."""
    from types import SimpleNamespace

    from geosession.ingest.ledger import CommittedRows, record_chunk

    db.ingest(table, [], progress=False)  # makes the ledger
    target = SimpleNamespace(quoted=f'"public"."{TABLE}"', oid=None, database=None)
    before = CommittedRows()  # what a run saw committed when it began

    def commit(first: int, last: int, known: CommittedRows, ingest_id: str = "twice") -> None:
        with admin.transaction(), admin.cursor() as cursor:
            span, counts = (first, last), (last - first + 1, 0)
            record_chunk(
                cursor, ingest_id, target, span, counts, "0", started_empty=True, known=known
            )

    commit(1, 7000, before)  # another run's
    for first, last in ((5001, 12000), (7000, 7000), (1, 1), (2, 100)):
        shared = f"among {first}-{min(last, 7000)} of ingest twice .* rows {first}-{last}:"
        with pytest.raises(IntegrityViolation, match=shared):
            commit(first, last, before)
    resumed = CommittedRows()
    resumed.add(1, 7000)  # a run that began after those were committed skips them
    commit(3001, 12000, resumed)  # its span covers 3001-7000, its rows do not
    with pytest.raises(IntegrityViolation, match="among 11000-12000 of ingest twice"):
        commit(11000, 13000, resumed)
    rows = admin.execute(
        "SELECT first_row, last_row FROM geosession_ingest_ledger WHERE ingest_id = 'twice' "
        "ORDER BY first_row"
    ).fetchall()
    assert rows == [(1, 7000), (3001, 12000)]
    # a merged entry: rows 4001-5000 that a run knew, 5001-7000 that it did not
    commit(4001, 7000, before, "merged")
    knew = CommittedRows()
    knew.add(4001, 5000)
    commit(3001, 4500, knew, "merged")  # writes 3001-4000: it shares known rows only
    with pytest.raises(IntegrityViolation, match="among 4501-6000 of ingest merged"):
        commit(4501, 6000, knew, "merged")
    admin.execute("DELETE FROM geosession_ingest_ledger WHERE ingest_id IN ('twice', 'merged')")


def test_two_runs_of_one_ingest_id_at_once_load_no_row_twice(
    db: SpatialDatabase, make_db: Callable[..., SpatialDatabase], table: str
) -> None:
    """Into a table without a key, which would not refuse a row loaded twice itself.
    Behind PgBouncer (pgbouncer=True) no run lock keeps the second run out: the ledger's
    check stops the run whose commit comes second."""
    with db.transaction() as s:
        s.execute(text(f"ALTER TABLE {TABLE} DROP CONSTRAINT {TABLE}_pkey"))
    outcomes = at_once(
        make_db,
        lambda loader, size: loader.ingest(
            table, rows(30_000), ingest_id="at-once", chunk_size=size, workers=2
        ),
        (3_000, 5_000),
        pgbouncer=True,
    )
    refused = [o for o in outcomes if isinstance(o, IntegrityViolation)]
    assert all("another run of the same ingest id" in str(error) for error in refused), refused
    count, distinct, _ = table_state(db)
    assert count == distinct  # whoever stopped, no row twice
    db.ingest(table, rows(30_000), ingest_id="at-once")  # one run finishes the load
    assert table_state(db) == (30_000, 30_000, source_checksum(30_000))


def half_loaded(
    pool: ThreadPoolExecutor, db: SpatialDatabase, count: int, ingest_id: str
) -> tuple[Future[IngestReport], threading.Event]:
    """A load of ``rows(count)`` on ``pool`` that has committed the first half and waits
    for the event returned before it reads on: a run that goes on for a while."""
    go_on = threading.Event()

    def paused() -> Iterator[dict[str, Any]]:
        for row in rows(count):
            if row["id"] == count // 2 + 1:
                go_on.wait(30)
            yield row

    load = pool.submit(
        db.ingest, TABLE, paused(), ingest_id=ingest_id, chunk_size=1_000, flush_interval=0.05
    )
    assert watch_for_rows(db, count // 2) == count // 2
    return load, go_on


RUN_LOCKS = (
    "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 2 "
    "AND l.classid = hashtext('geosession ingest')::oid AND l.objid = hashtext(%s)::oid"
)
"""The backends holding an ingest id's run lock."""


def run_lock_holders(admin: psycopg.Connection[Any], ingest_id: str) -> list[int]:
    return [pid for (pid,) in admin.execute(RUN_LOCKS, (ingest_id,)).fetchall()]


def run_lock_released(admin: psycopg.Connection[Any], ingest_id: str) -> bool:
    """Whether no backend holds the run lock within a few seconds: a run releases it by
    closing the lock's connection, and its backend ends a moment after the client."""
    wait_until(lambda: run_lock_holders(admin, ingest_id) == [], timeout=5)
    return True


@contextlib.contextmanager
def run_lock_held(database_url: str, ingest_id: str, application: str = "") -> Iterator[int]:
    """``ingest_id``'s run lock, held as a run holds it, on a connection of its own (its
    backend's pid yielded); released as that connection closes or is terminated."""
    with psycopg.connect(database_url, application_name=application, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_advisory_lock(hashtext('geosession ingest'), hashtext(%s))", (ingest_id,)
        )
        yield conn.info.backend_pid


def test_a_second_run_of_one_ingest_id_is_refused_while_the_first_runs(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], table: str
) -> None:
    """A cron job that overlaps its last run: the second run is refused before it loads
    a row, naming the first run's session, and the first goes on to load every row. The
    lock's connection is out of the pool: a pool of one still serves the writer."""
    first_db = make_db(pool_size=1, max_overflow=0, pool_timeout=5)
    with ThreadPoolExecutor(1) as pool:
        first, go_on = half_loaded(pool, first_db, 20_000, "nightly")
        (holder,) = run_lock_holders(admin, "nightly")
        second_db = make_db(pool_size=3)
        with pytest.raises(LockTimeout, match="already running") as refused:
            second_db.ingest(table, rows(20_000), ingest_id="nightly")
        assert f"pid {holder} (user " in str(refused.value)
        assert "application 'geosession ingest nightly'" in str(refused.value)  # the load's
        assert f"pg_terminate_backend({holder})" in str(refused.value)
        assert refused.value.ingest_report.inserted == 0  # type: ignore[attr-defined]
        assert table_state(first_db)[0] == 10_000
        go_on.set()
        assert first.result().inserted == 20_000
    assert table_state(first_db) == (20_000, 20_000, source_checksum(20_000))
    assert run_lock_released(admin, "nightly")  # released with the run
    assert second_db.ingest(table, rows(20_000), ingest_id="nightly").inserted == 0


def test_a_run_lock_held_by_a_lingering_connection_is_named_until_it_ends(
    db: SpatialDatabase, database_url: str, admin: psycopg.Connection[Any], table: str
) -> None:
    """A run whose host went away leaves its connection (and lock) on the server until
    TCP keepalives end it: the refusal says which backend to terminate, and once it is
    gone the load runs."""
    with run_lock_held(database_url, "hourly", "vanished host") as pid:
        with pytest.raises(LockTimeout, match="application 'vanished host'") as refused:
            db.ingest(table, rows(100), ingest_id="hourly")
        assert f"SELECT pg_terminate_backend({pid})" in str(refused.value)
        assert table_state(db)[0] == 0
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        assert db.ingest(table, rows(100), ingest_id="hourly").inserted == 100
    assert run_lock_released(admin, "hourly")


def test_a_run_lock_released_a_moment_later_is_taken(
    db: SpatialDatabase, database_url: str, admin: psycopg.Connection[Any], table: str
) -> None:
    """Run again at once after a crash, the last run's backend may not have seen its
    connection close yet: a lock released within a second is waited for, not refused."""
    with run_lock_held(database_url, "again") as pid:
        ending = threading.Timer(0.3, admin.execute, ("SELECT pg_terminate_backend(%s)", (pid,)))
        ending.start()
        assert db.ingest(table, rows(100), ingest_id="again").inserted == 100
        ending.join()
    assert run_lock_released(admin, "again")


def test_cli_refuses_a_second_run_of_a_load_with_exit_status_1(
    db: SpatialDatabase,
    database_url: str,
    admin: psycopg.Connection[Any],
    table: str,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """The same command started while its last run still runs (a cron job)."""
    import geopandas
    from typer.testing import CliRunner

    from geosession.cli import app

    path = tmp_path / "parcels.geojson"
    geopandas.GeoDataFrame(
        {"id": range(1, 11)}, geometry=list(synthetic_polygons(10)), crs=4326
    ).rename_geometry("geom").to_file(path)
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    command = ["ingest", str(path), table, "--ingest-id", "cron-load"]
    with run_lock_held(database_url, "cron-load") as pid:
        refused = CliRunner().invoke(app, command)
    assert refused.exit_code == 1, refused.output
    assert isinstance(refused.exception, LockTimeout)  # main() prints it in red on stderr
    message = str(refused.exception)
    assert 'Ingest cron-load into "public"."ingest_parcels" is already running' in message
    assert f"pg_terminate_backend({pid})" in message
    assert "Stopped" not in refused.output  # nothing was loaded to resume after
    loaded = CliRunner().invoke(app, command)
    assert loaded.exit_code == 0, loaded.output
    assert table_state(db)[0] == 10


def test_a_failed_or_async_run_releases_its_lock(
    db: SpatialDatabase, database_url: str, admin: psycopg.Connection[Any], table: str
) -> None:
    """The lock ends with the run however it ends; async_ingest takes it as well."""
    bad = [*rows(10), {"id": 11, "geom": "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))", "name": "x"}]
    with pytest.raises(InvalidGeometry):
        db.ingest(table, bad, ingest_id="weekly", on_invalid="raise", chunk_size=5)
    assert run_lock_released(admin, "weekly")
    committed = table_state(db)[0]  # the chunks before the bad row's, as far as written

    async def while_held() -> None:
        running = "Ingest weekly into .* is already running"
        with run_lock_held(database_url, "weekly"), pytest.raises(LockTimeout, match=running):
            await db.async_ingest(table, rows(20), ingest_id="weekly")
        resumed = await db.async_ingest(table, rows(20), ingest_id="weekly")
        assert resumed.inserted == 20 - committed

    asyncio.run(while_held())
    assert run_lock_released(admin, "weekly")
    assert table_state(db)[0] == 20


def test_no_run_lock_is_taken_for_a_dry_run_or_behind_pgbouncer(
    db: SpatialDatabase,
    make_db: Callable[..., SpatialDatabase],
    database_url: str,
    admin: psycopg.Connection[Any],
    table: str,
) -> None:
    """A dry run writes nothing to keep; behind PgBouncer's transaction pooling a session
    lock would stay on a server connection other clients use."""
    with run_lock_held(database_url, "hold") as pid:
        assert db.ingest(table, rows(50), ingest_id="hold", dry_run=True).inserted == 50
        bouncing = make_db(pgbouncer=True, pool_size=2)
        assert bouncing.ingest(table, rows(50), ingest_id="hold").inserted == 50
        assert run_lock_holders(admin, "hold") == [pid]
    assert table_state(db)[0] == 50


def test_a_unique_index_is_never_deferred(db: SpatialDatabase, table: str) -> None:
    """It enforces keys during the load (and ON CONFLICT needs it): a duplicate must be
    refused as with a constraint, not loaded and then break the rebuild."""
    with db.transaction() as s:
        s.execute(text(f"CREATE UNIQUE INDEX {TABLE}_name_key ON {TABLE} (name)"))
    source = [{**row, "name": "same"} if row["id"] in (3, 7) else row for row in rows(10)]
    with pytest.raises(IntegrityViolation, match="Row 7"):  # one writer: chunks in order
        db.ingest(table, source, chunk_size=5, workers=1)
    assert index_names(db) == {f"{TABLE}_pkey", f"{TABLE}_geom_idx", f"{TABLE}_name_key"}
    assert table_state(db)[0] == 5  # the chunk before the duplicate
    report = db.ingest(table, source, on_conflict="ignore")  # ids 1-5 are in; 7's name too
    assert (report.inserted, report.conflicts, report.rejected) == (4, 6, [])


def test_a_partitioned_tables_index_is_rebuilt_on_every_partition(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """The server defines a partitioned index ON ONLY the parent: rebuilt as written it
    would stay invalid, with no index on any partition. A partition's own part of it
    cannot be dropped, so a load into one partition keeps it up instead."""
    scratch("ingest_parted", "ingest_parted_b")
    partition = "CREATE TABLE ingest_parted_{} PARTITION OF ingest_parted FOR VALUES FROM {}"
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_parted (id integer PRIMARY KEY, name text, value float8, "
                "geom geometry(POLYGON, 4326) NOT NULL) PARTITION BY RANGE (id)"
            )
        )
        s.execute(text(partition.format("a", "(0) TO (5001)")))
        s.execute(text(partition.format("b", "(5001) TO (MAXVALUE)")))
        s.execute(text("CREATE INDEX ingest_parted_geom_idx ON ingest_parted USING gist (geom)"))
    spatial = (
        "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
        "JOIN pg_am a ON a.oid = c.relam AND a.amname = 'gist' WHERE c.relname LIKE 'ingest_p%' "
        "ORDER BY 1"
    )
    report = db.ingest("ingest_parted", rows(5_000))  # all of it into partition a
    assert report.deferred_indexes == ["ingest_parted_geom_idx"]
    with db.session() as s:
        assert s.execute(text(spatial)).all() == [
            ("ingest_parted_a_geom_idx", True),
            ("ingest_parted_b_geom_idx", True),
            ("ingest_parted_geom_idx", True),
        ]
    into_partition = db.ingest("ingest_parted_b", rows(100, start=5_001))  # empty
    assert (into_partition.deferred_indexes, into_partition.workers) == ([], 2)
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM ingest_parted")).scalar() == 5_100
    homeless = db.ingest("ingest_parted", rows(1, start=-5), on_invalid="skip")  # no partition
    assert [(r.column, r.kind) for r in homeless.rejected] == [("id", "server")]
    assert "no partition of relation" in homeless.rejected[0].reason


def test_an_index_rebuild_and_analyze_longer_than_statement_timeout_complete(
    make_db: Callable[..., SpatialDatabase], table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """statement_timeout bounds the application's statements; the rebuild of an index the
    load dropped cannot be made shorter (a GiST over tens of millions of rows takes longer
    than the default 30 s), and failed on every run. Here an expression index whose
    function sleeps 1 ms on every fourth row takes 0.5 s to build (and to ANALYZE)."""
    db = make_db(statement_timeout="300ms")
    with db.transaction() as s:
        s.execute(
            text(
                f"CREATE FUNCTION {TABLE}_slow(n int) RETURNS int IMMUTABLE LANGUAGE plpgsql "
                "AS $$BEGIN IF n % 4 = 0 THEN PERFORM pg_sleep(0.001); END IF; RETURN n; END$$"
            )
        )
        s.execute(text(f"CREATE INDEX {TABLE}_slow_idx ON {TABLE} (({TABLE}_slow(id)))"))
    try:
        with caplog.at_level("WARNING", logger="geosession.ingest"):
            report = db.ingest(table, rows(2_000))
        assert f"{TABLE}_slow_idx" in report.deferred_indexes and report.rebuild_seconds > 0.6
        assert f"{TABLE}_slow_idx" in index_names(db) and not deferred_records(db)
        assert not [r.getMessage() for r in caplog.records]  # the ANALYZE ran too
    finally:
        with db.transaction() as s:
            s.execute(text(f"DROP FUNCTION IF EXISTS {TABLE}_slow CASCADE"))


def test_an_index_that_cannot_be_rebuilt_stays_recorded_and_undoes_no_other(
    db: SpatialDatabase, table: str
) -> None:
    """Row 3 (value 3) breaks the expression index, which was not there to refuse it."""
    with db.transaction() as s:
        s.execute(text(f"CREATE INDEX {TABLE}_inverse_idx ON {TABLE} ((1 / (value - 3)))"))
    with pytest.raises(GeoSessionError, match=f"Rebuilding index {TABLE}_inverse_idx") as info:
        db.ingest(table, rows(10))
    assert "division by zero" in str(info.value) and "stays recorded" in str(info.value)
    assert info.value.ingest_report.inserted == 10  # type: ignore[attr-defined]
    assert index_names(db) == {f"{TABLE}_pkey", f"{TABLE}_geom_idx"}  # the other is back
    assert deferred_records(db) == [f"{TABLE}_inverse_idx"]
    assert table_state(db)[0] == 10  # the load itself committed
    with db.transaction() as s:
        s.execute(text(f"DELETE FROM {TABLE} WHERE id = 3"))  # the data fixed
    wait_until(lambda: not older_snapshots(db))
    later = db.ingest(table, rows(1, start=20))  # the next ingest rebuilds it, and says so
    assert later.inserted == 1 and later.deferred_indexes == [f"{TABLE}_inverse_idx"]
    assert f"{TABLE}_inverse_idx" in index_names(db) and not deferred_records(db)


def test_a_table_made_again_under_the_name_does_not_get_the_old_ones_indexes(
    db: SpatialDatabase, table: str
) -> None:
    """A failed rebuild leaves its index recorded; the table is then dropped and made again
    without it: the record is not the new table's, for the doctor or the next ingest."""
    with db.transaction() as s:
        s.execute(text(f"CREATE INDEX {TABLE}_inverse_idx ON {TABLE} ((1 / (value - 3)))"))
    with pytest.raises(GeoSessionError, match=f"Rebuilding index {TABLE}_inverse_idx"):
        db.ingest(table, rows(10))
    create_table(db)
    assert deferred_records(db) == [f"{TABLE}_inverse_idx"]
    doctor = {check.name: check for check in db.doctor().checks}
    assert doctor["deferred indexes"].status == "ok", doctor["deferred indexes"].detail
    report = db.ingest(table, rows(10))  # row 3 would fail the old index again
    assert report.inserted == 10 and report.deferred_indexes == [f"{TABLE}_geom_idx"]
    assert index_names(db) == {f"{TABLE}_pkey", f"{TABLE}_geom_idx"}
    assert not deferred_records(db)


def test_a_ledger_made_by_an_earlier_geosession_gains_its_columns(
    db: SpatialDatabase, table: str
) -> None:
    """Ledger tables without the target's OID and database: the doctor reads them as they
    are, and the next ingest adds the columns and rebuilds the index recorded by name."""
    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS geosession_ingest_deferred_index"))
        s.execute(
            text(
                "CREATE TABLE geosession_ingest_ledger (ingest_id text, target text, "
                "first_row bigint, last_row bigint, rows_inserted integer, rows_rejected "
                "integer, checksum text, committed_at timestamptz DEFAULT now(), "
                "PRIMARY KEY (ingest_id, first_row))"
            )
        )
        s.execute(
            text(
                "CREATE TABLE geosession_ingest_deferred_index (target text, index_name text, "
                "definition text, ingest_id text, PRIMARY KEY (target, index_name))"
            )
        )
        record_dropped_gist(s, TABLE)
    doctor = {check.name: check for check in db.doctor().checks}
    assert doctor["deferred indexes"].status == "warn"
    assert f"{TABLE}_geom_idx on public.{TABLE}" in doctor["deferred indexes"].detail
    assert db.ingest(table, rows(10)).inserted == 10
    assert index_names(db) == {f"{TABLE}_pkey", f"{TABLE}_geom_idx"}
    assert not deferred_records(db)
    with db.session() as s:
        added = s.execute(
            text(
                "SELECT attrelid::regclass::text, count(*) FROM pg_attribute WHERE attname IN "
                "('target_oid', 'target_database', 'started_empty') AND attrelid IN "
                "('geosession_ingest_ledger'::regclass, "
                "'geosession_ingest_deferred_index'::regclass) GROUP BY 1 ORDER BY 1"
            )
        ).all()
    assert added == [("geosession_ingest_deferred_index", 2), ("geosession_ingest_ledger", 3)]


def test_a_record_from_another_database_is_adopted_by_name(db: SpatialDatabase, table: str) -> None:
    """A restored dump: the record's OID and database are another's, its name this table's."""
    db.ingest(table, rows(0))  # makes the ledger
    with db.transaction() as s:
        record_dropped_gist(s, TABLE, 1, "another-cluster/1")
    doctor = {check.name: check for check in db.doctor().checks}
    assert doctor["deferred indexes"].status == "warn"
    assert db.ingest(table, rows(10)).inserted == 10
    assert index_names(db) == {f"{TABLE}_pkey", f"{TABLE}_geom_idx"}
    assert not deferred_records(db)


def older_snapshots(db: SpatialDatabase) -> int:
    """Other transactions in the database with a snapshot (autovacuum's ANALYZE, say):
    CREATE INDEX also indexes the rows they may still see, deleted ones included."""
    with db.session() as s:
        return int(
            s.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL"
                )
            ).scalar_one()
        )


def deferred_records(db: SpatialDatabase) -> list[str]:
    with db.session() as s:
        return list(
            s.execute(text("SELECT index_name FROM geosession_ingest_deferred_index")).scalars()
        )


def index_names(db: SpatialDatabase) -> set[str]:
    with db.session() as s:
        result = s.execute(
            text("SELECT indexname FROM pg_indexes WHERE tablename = :t"), {"t": TABLE}
        )
        return set(result.scalars())


def test_parallel_workers_load_exactly_once(db: SpatialDatabase, table: str) -> None:
    report = db.ingest(table, rows(20_000), chunk_size=2_000, workers=2, defer_indexes=False)
    assert report.inserted == 20_000 and report.workers == 2
    assert table_state(db) == (20_000, 20_000, source_checksum(20_000))


def test_attribute_values_arrive_as_sent(db: SpatialDatabase, table: str) -> None:
    """NULLs, non-str text and ints for floats take the slow encoding paths, mixed in
    with fast columns, in one chunk."""
    polygons = list(synthetic_polygons(6))
    source = [
        {"id": 1, "name": "plain", "value": 1.5, "geom": polygons[0]},
        {"id": 2, "name": None, "value": None, "geom": polygons[1]},
        {"id": 3, "name": 42, "value": 7, "geom": polygons[2]},
        {"id": 4, "name": "", "value": -0.0, "geom": polygons[3]},
        {"id": 5, "name": "ünïcödé ✓", "value": 1e300, "geom": memoryview(polygons[4].wkb)},
        {"id": 6, "name": "x" * 5_000, "value": 2.25, "geom": polygons[5].wkb},
    ]
    assert db.ingest(table, source).inserted == 6
    with db.session() as s:
        stored = s.execute(
            text(f"SELECT id, name, value, ST_AsBinary(geom) FROM {TABLE} ORDER BY id")
        ).all()
    assert [(i, n, v) for i, n, v, _ in stored] == [
        (1, "plain", 1.5),
        (2, None, None),
        (3, "42", 7.0),
        (4, "", -0.0),
        (5, "ünïcödé ✓", 1e300),
        (6, "x" * 5_000, 2.25),
    ]
    assert [bytes(g) for *_, g in stored] == [p.wkb for p in polygons]


def test_other_column_types_go_through_psycopgs_dumpers(db: SpatialDatabase) -> None:
    """Arrays, jsonb, uuid, numeric, enums: a value that fits is stored as sent (text for
    a JSON column is JSON, as in an INSERT), and one that cannot be dumped for its column
    is set aside as that row's reject, not the end of the load."""
    with db.transaction() as s:
        s.execute(text("DROP TYPE IF EXISTS ingest_mood"))
        s.execute(text("CREATE TYPE ingest_mood AS ENUM ('calm', 'busy')"))
        s.execute(
            text(
                "CREATE TABLE ingest_typed (id uuid PRIMARY KEY, tags text[], counts int4[], "
                "meta jsonb, price numeric(8, 2), mood ingest_mood, geom geometry(POINT, 4326))"
            )
        )
    first, second = uuid.uuid4(), uuid.uuid4()
    point = "SRID=4326;POINT(1 2)"
    source = [
        {"id": first, "tags": ["a", None], "counts": [1, 2], "meta": {"k": [1]}, "geom": point},
        {"id": str(second), "price": "12.50", "mood": "busy", "meta": '{"s": 1}', "geom": point},
        {"id": uuid.uuid4(), "tags": "[a,b]", "geom": point},  # not PostgreSQL's {a,b}
        {"id": uuid.uuid4(), "meta": object(), "geom": point},  # not JSON
        {"id": uuid.uuid4(), "meta": "{oops", "geom": point},  # text that is not JSON
    ]
    try:
        report = db.ingest("ingest_typed", source)
        assert report.inserted == 2
        kinds = [(r.row, r.column, r.kind) for r in report.rejected]
        assert kinds == [(3, "tags", "value"), (4, "meta", "value"), (5, "meta", "server")]
        assert report.rejected[0].reason.startswith("cannot read '[a,b]' as text[]: not a JSON")
        assert report.rejected[0].value == "[a,b]"
        assert "invalid input syntax for type json" in report.rejected[2].reason
        assert (report.rejected[2].column, report.rejected[2].value) == ("meta", "{oops")
        with db.session() as s:
            stored = s.execute(
                text("SELECT id, tags, counts, meta, price, mood FROM ingest_typed ORDER BY meta")
            ).all()
        assert sorted(stored, key=str) == sorted(
            [
                (first, ["a", None], [1, 2], {"k": [1]}, None, None),
                (second, None, None, {"s": 1}, decimal.Decimal("12.50"), "busy"),
            ],
            key=str,
        )
    finally:
        with db.transaction() as s:
            s.execute(text("DROP TABLE IF EXISTS ingest_typed, ingest_typed_rejected"))
            s.execute(text("DROP TYPE IF EXISTS ingest_mood"))


def test_values_that_cannot_be_sent_are_set_aside_before_the_server_sees_the_chunk(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """They were found by bisecting the chunk with COPY attempts; now each column is dumped
    before the COPY. A trigger counts, with a sequence (which no rollback undoes), every
    row the server was sent: only the good ones."""
    source: list[dict[str, Any]]
    scratch("ingest_sendable")
    with db.transaction() as s:
        s.execute(text("DROP SEQUENCE IF EXISTS ingest_sendable_seen"))
        s.execute(text("CREATE SEQUENCE ingest_sendable_seen"))
        s.execute(
            text(
                "CREATE TABLE ingest_sendable (id int PRIMARY KEY, tags text[], at date, note text)"
            )
        )
        s.execute(
            text(
                "CREATE OR REPLACE FUNCTION ingest_sendable_count() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN PERFORM nextval('ingest_sendable_seen'); "
                "RETURN NEW; END $$; "
                "CREATE TRIGGER counted BEFORE INSERT ON ingest_sendable "
                "FOR EACH ROW EXECUTE FUNCTION ingest_sendable_count()"
            )
        )
    note = "n" * 1000  # so that COPY data reaches the server before a bad row
    source = [{"id": i, "tags": ["x"], "at": None, "note": note} for i in range(1, 1001)]
    source[499]["tags"] = 5  # a number for an array column
    source[999]["at"] = 20260101  # an int for a date
    try:
        report = db.ingest("ingest_sendable", source, chunk_size=1000)
        assert report.inserted == 998
        assert [(r.row, r.column, r.kind) for r in report.rejected] == [
            (500, "tags", "value"),
            (1000, "at", "value"),
        ]
        assert report.rejected[1].reason.startswith("cannot be sent as date (given int): ")
        with db.session() as s:
            seen = s.execute(text("SELECT last_value FROM ingest_sendable_seen")).scalar()
        assert seen == 998
    finally:
        with db.transaction() as s:
            s.execute(text("DROP FUNCTION IF EXISTS ingest_sendable_count() CASCADE"))
            s.execute(text("DROP SEQUENCE IF EXISTS ingest_sendable_seen"))


def test_bytes_for_a_text_column_are_their_utf8_text(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """Not Python's repr of them ("b'ab'", "<memory at 0x...>"); bytes that are not UTF-8
    are set aside naming the column."""
    scratch("ingest_text")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE ingest_text (id integer, label text, geom geometry)"))
    point = shapely.Point(0, 0)
    loaded = [(1, b"ab", point), (2, bytearray(b"x"), point), (3, memoryview("é".encode()), point)]
    report = db.ingest("ingest_text", [*loaded, (4, b"\xff", point)], progress=False)
    assert report.inserted == 3
    assert [(r.row, r.kind, r.column) for r in report.rejected] == [(4, "value", "label")]
    assert "read as UTF-8 text" in report.rejected[0].reason
    with db.session() as s:
        stored = s.execute(text("SELECT label FROM ingest_text ORDER BY id")).scalars().all()
    assert stored == ["ab", "x", "é"]


def test_csv_text_is_read_as_each_columns_type(
    db: SpatialDatabase, tmp_path: Path, scratch: Callable[..., None]
) -> None:
    """Text that is not its column's type sets its row aside before the COPY, naming the
    column (no bisecting on the server), whatever on_invalid says; 'maybe' is no boolean."""
    scratch("ingest_csv")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_csv (id integer PRIMARY KEY, n int8, ok boolean, "
                "day date, at timestamptz, price numeric(8, 2), meta jsonb, "
                "geom geometry(POINT, 4326) NOT NULL)"
            )
        )
    csv_file = tmp_path / "typed.csv"
    csv_file.write_text(
        "id,n,ok,day,at,price,meta,wkt\n"
        '1,7,true,2026-01-02,2026-01-02T03:04:05+00:00,1.25,"{""a"": 1}",POINT(1 1)\n'
        "2,N/A,false,2026-01-02,,2.50,,POINT(2 2)\n"
        "3,8,maybe,,,,,POINT(3 3)\n"
        "4,9,,2026-13-01,,,,POINT(4 4)\n"
        "5,10,off,,,abc,,POINT(5 5)\n"
        "6,11,on,,,,,POINT(6 6)\n"
    )
    report = db.ingest("ingest_csv", csv_file)
    assert [(r.row, r.column, r.kind) for r in report.rejected] == [
        (2, "n", "value"),
        (3, "ok", "value"),
        (4, "day", "value"),
        (5, "price", "value"),
    ]
    assert report.rejected[0].reason == "cannot read 'N/A' as int8"
    assert report.rejected[0].value == "N/A"
    with db.session() as s:
        stored = s.execute(text("SELECT id, n, ok, price, meta FROM ingest_csv ORDER BY id"))
        assert stored.all() == [
            (1, 7, True, decimal.Decimal("1.25"), {"a": 1}),
            (6, 11, True, None, None),
        ]
    with db.transaction() as s:
        s.execute(text("TRUNCATE ingest_csv, ingest_csv_rejected"))
    bad_geometry = csv_file.read_text().replace("POINT(4 4)", "POINT(4)")
    csv_file.write_text(bad_geometry)
    with pytest.raises(InvalidGeometry, match="Row 4, column geom") as raised:
        db.ingest("ingest_csv", csv_file, on_invalid="raise", ingest_id="raise")
    partial = raised.value.ingest_report  # type: ignore[attr-defined]
    assert [(r.row, r.column) for r in partial.rejected] == [(2, "n"), (3, "ok")]
    assert partial.inserted == 1


def test_csv_arrays_are_read_as_postgresql_writes_them(
    db: SpatialDatabase, tmp_path: Path, scratch: Callable[..., None]
) -> None:
    """{1,2} into int4[] failed for every row (psycopg's list dumper was given text), as
    did numpy arrays; a JSON array (as exports write them) is read too; other text is set
    aside naming the column."""
    scratch("ingest_arrays")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_arrays (id int PRIMARY KEY, ints int[], tags text[], "
                "days date[], geom geometry(POINT, 4326))"
            )
        )
    csv_file = tmp_path / "arrays.csv"
    csv_file.write_text(
        "id,ints,tags,days,wkt\n"
        '1,"{1,2}","{a,""b c"",NULL}","{2026-01-02}",POINT(1 1)\n'
        '2,"[1,2]","{a",,POINT(2 2)\n'
        "3,{},{},,POINT(3 3)\n"
        '6,"[3, 4]","[""x""]",,POINT(6 6)\n'
    )
    report = db.ingest("ingest_arrays", csv_file, srid=4326)
    assert [(r.row, r.column, r.kind) for r in report.rejected] == [(2, "tags", "value")]
    assert "not an array as PostgreSQL writes one" in report.rejected[0].reason
    with db.session() as s:
        stored = s.execute(text("SELECT id, ints, tags, days FROM ingest_arrays ORDER BY id"))
        assert stored.all() == [
            (1, [1, 2], ["a", "b c", None], [dt.date(2026, 1, 2)]),
            (3, [], [], None),
            (6, [3, 4], ["x"], None),
        ]
    listed = [  # geopandas.read_file gives list fields as numpy arrays
        {"id": 4, "ints": np.array([5, 6]), "tags": np.array(["x", "y"]), "geom": "POINT(4 4)"},
        {"id": 5, "ints": (7,), "tags": ["z"], "geom": "POINT(5 5)"},
    ]
    assert db.ingest("ingest_arrays", listed, srid=4326, ingest_id="lists").inserted == 2
    with db.session() as s:
        stored = s.execute(
            text("SELECT ints, tags FROM ingest_arrays WHERE id IN (4, 5) ORDER BY id")
        )
        assert stored.all() == [([5, 6], ["x", "y"]), ([7], ["z"])]


def test_a_spreadsheets_csv_loads_as_it_is(
    db: SpatialDatabase, tmp_path: Path, scratch: Callable[..., None]
) -> None:
    """Semicolons, upper-case headers and a time without a zone, as a spreadsheet in a
    comma-decimal locale saves them, load without editing the file."""
    scratch("ingest_sheet")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_sheet (id integer PRIMARY KEY, name text, "
                "seen timestamptz, geom geometry(POLYGON, 4326))"
            )
        )
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "ID;Name;Seen;WKT\n"
        "1;Zürich;2026-03-01 08:00;POLYGON ((0 0, 1 0, 1 1, 0 0))\n"
        "2;Genève;;POLYGON ((0 0, 2 0, 2 2, 0 0))\n",
        encoding="utf-8",
    )
    assert db.ingest("ingest_sheet", sheet).inserted == 2
    with db.session() as s:
        stored = s.execute(
            text("SELECT id, name, seen IS NOT NULL, ST_Area(geom) FROM ingest_sheet ORDER BY id")
        ).all()
    assert stored == [(1, "Zürich", True, 0.5), (2, "Genève", False, 2.0)]


@pytest.mark.parametrize("with_nulls", [False, True], ids=["no-nulls", "nulls"])
def test_integer_columns_take_whole_numbers_of_any_type_and_never_cut_a_fraction(
    db: SpatialDatabase, scratch: Callable[..., None], with_nulls: bool
) -> None:
    """3.0 (a pandas integer column with NaNs) loads as 3 and NaN (its missing value) as
    NULL; 1.5 was stored as 1 by the column-wise encoder without a word, and is now a
    reject naming the column."""
    import numpy as np

    scratch("ingest_whole")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_whole (id integer PRIMARY KEY, n int4, "
                "geom geometry(POINT, 4326) NOT NULL)"
            )
        )
    values: list[Any] = [3.0, 1.5, decimal.Decimal("7.9"), np.float32(2), float("nan"), 12]
    values += [None] if with_nulls else [np.int64(5)]
    point = "SRID=4326;POINT(1 1)"
    source = [{"id": i, "n": n, "geom": point} for i, n in enumerate(values, start=1)]
    report = db.ingest("ingest_whole", source)
    assert [(r.row, r.column, r.kind, r.value) for r in report.rejected] == [
        (2, "n", "value", "1.5"),
        (3, "n", "value", "7.9"),
    ]
    assert report.rejected[0].reason == "cannot read '1.5' as int4: not a whole number; " + (
        "round it in the source if that is meant"
    )
    with db.session() as s:
        stored = s.execute(text("SELECT id, n FROM ingest_whole ORDER BY id")).all()
    assert stored == [(1, 3), (4, 2), (5, None), (6, 12), (7, None if with_nulls else 5)]


def test_a_boolean_for_a_number_column_is_a_value_reject(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """Python's bool is an int: True was stored as 1 in an integer column and as 1.0 in
    a float one (an INSERT refuses it), and False for numeric gave decimal's own words."""
    import numpy as np

    scratch("ingest_bools")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_bools (id integer PRIMARY KEY, i int8, f float8, "
                "r real, n numeric, ids int4[], flag boolean, geom geometry(POINT, 4326))"
            )
        )
    point = "SRID=4326;POINT(1 1)"
    source = [
        {"id": 1, "i": True, "geom": point},
        {"id": 2, "f": True, "geom": point},
        {"id": 3, "r": np.bool_(False), "geom": point},
        {"id": 4, "n": False, "geom": point},
        {"id": 5, "ids": [1, True], "geom": point},
        {"id": 6, "i": 1, "f": 0.5, "r": 2, "n": 3, "ids": [1], "flag": 1, "geom": point},
    ]
    report = db.ingest("ingest_bools", source)
    assert [(r.row, r.column, r.kind) for r in report.rejected] == [
        (1, "i", "value"),
        (2, "f", "value"),
        (3, "r", "value"),
        (4, "n", "value"),
        (5, "ids", "value"),
    ]
    assert report.rejected[3].reason == (
        "cannot read 'False' as numeric: a boolean is no number to PostgreSQL (it casts one "
        "only when told): make the column boolean, or give 1 and 0"
    )
    with db.session() as s:
        stored = s.execute(text("SELECT id, i, f, r, n, ids, flag FROM ingest_bools")).all()
    assert [tuple(row) for row in stored] == [(6, 1, 0.5, 2.0, 3, [1], True)]


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_infinite_dates_and_times_stream_out_and_load_back_as_infinity(
    make_db: Callable[..., SpatialDatabase], scratch: Callable[..., None], driver: str
) -> None:
    """Every driver reads infinity as Python's last date or time (-infinity as the
    first); loaded back, those were stored as 9999-12-31 23:59:59.999999 and 0001-01-01,
    and the server's own text 'infinity' (a CSV's) was refused as no date."""
    db = make_db(driver=driver)
    scratch("ingest_moments", "ingest_moments_copy")
    columns = "id integer PRIMARY KEY, d date, ts timestamp, tz timestamptz, geom geometry"
    with db.transaction() as s:
        for table in ("ingest_moments", "ingest_moments_copy"):
            s.execute(text(f"CREATE TABLE {table} ({columns})"))
        s.execute(
            text(
                "INSERT INTO ingest_moments VALUES "
                "(1, 'infinity', 'infinity', 'infinity', 'POINT(1 1)'), "
                "(2, '-infinity', '-infinity', '-infinity', 'POINT(1 1)'), "
                "(3, '2020-01-02', '2020-01-02 03:04', '2020-01-02 03:04+00', 'POINT(1 1)'), "
                "(4, NULL, NULL, NULL, 'POINT(1 1)')"
            )
        )
    streamed = [dict(row._mapping) for row in db.stream("SELECT * FROM ingest_moments")]
    assert streamed[0]["ts"] == dt.datetime.max
    text_rows = [
        {"id": 5, "d": " Infinity", "ts": "-infinity", "tz": "+infinity", "geom": "POINT(1 1)"},
        {"id": 6, "d": dt.datetime.max, "ts": dt.datetime.min, "tz": dt.datetime.max},
        {"id": 7, "d": "9999-12-31", "ts": "0001-01-01", "tz": "9999-12-31 23:59:59.999999Z"},
    ]  # the last: as a CSV export writes the last instant
    report = db.ingest("ingest_moments_copy", [*streamed, *text_rows])
    assert (report.inserted, report.rejected) == (7, [])
    with db.session() as s:
        stored = s.execute(
            text("SELECT id, d::text, ts::text, tz::text FROM ingest_moments_copy ORDER BY id")
        ).all()
    infinite, minus = ("infinity",) * 3, ("-infinity",) * 3
    assert [tuple(row)[1:] for row in stored] == [
        infinite,
        minus,
        ("2020-01-02", "2020-01-02 03:04:00", "2020-01-02 03:04:00+00"),
        (None, None, None),
        ("infinity", "-infinity", "infinity"),
        ("infinity", "-infinity", "infinity"),
        ("infinity", "-infinity", "infinity"),
    ]


def test_infinite_elements_of_date_and_time_arrays_load_back_as_infinity(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """An array's infinity reads as Python's last instant too (the stream's fix, arrays
    included): loaded back, it was stored as 9999-12-31, and the text infinity in an
    array was refused."""
    scratch("ingest_moment_arrays", "ingest_moment_arrays_copy")
    columns = "id integer PRIMARY KEY, ds date[], ts timestamp[], tz timestamptz[], geom geometry"
    with db.transaction() as s:
        for table in ("ingest_moment_arrays", "ingest_moment_arrays_copy"):
            s.execute(text(f"CREATE TABLE {table} ({columns})"))
        s.execute(
            text(
                "INSERT INTO ingest_moment_arrays VALUES "
                "(1, '{infinity,2020-01-01,NULL,-infinity}', '{infinity,\"2020-01-01 10:00\"}', "
                "'{{-infinity,infinity},{2021-01-01,NULL}}', 'POINT(1 1)'), "
                "(2, NULL, '{}', NULL, NULL)"
            )
        )
    streamed = [dict(row._mapping) for row in db.stream("SELECT * FROM ingest_moment_arrays")]
    typed = {"id": 3, "ds": "{infinity,-Infinity}", "ts": ["infinity", dt.datetime.max]}
    report = db.ingest("ingest_moment_arrays_copy", [*streamed, typed])
    assert (report.inserted, report.rejected) == (3, [])
    with db.session() as s:
        stored = s.execute(
            text(
                "SELECT id, ds::text, ts::text, tz::text FROM ingest_moment_arrays_copy ORDER BY id"
            )
        ).all()
    assert [tuple(row) for row in stored] == [
        (
            1,
            "{infinity,2020-01-01,NULL,-infinity}",
            '{infinity,"2020-01-01 10:00:00"}',
            '{{-infinity,infinity},{"2021-01-01 00:00:00+00",NULL}}',
        ),
        (2, None, "{}", None),
        (3, "{infinity,-infinity}", "{infinity,infinity}", None),
    ]


def test_a_value_whose_str_raises_is_a_value_reject(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """A text column takes str() of an object; one whose __str__ raised stopped the load."""

    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no text for this one")

    scratch("ingest_unprintable")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_unprintable (id integer PRIMARY KEY, name text, "
                "geom geometry(POINT, 4326))"
            )
        )
    point = "SRID=4326;POINT(1 1)"
    source = [{"id": 1, "name": Unprintable(), "geom": point}, {"id": 2, "name": 7, "geom": point}]
    report = db.ingest("ingest_unprintable", source)
    assert report.inserted == 1
    [reject] = report.rejected
    assert (reject.row, reject.column, reject.kind) == (1, "name", "value")
    assert "its str() raised ValueError: no text for this one" in reject.reason
    assert reject.value is not None and "Unprintable object at" in reject.value


def test_values_are_read_as_the_server_reads_them_in_an_insert(
    db: SpatialDatabase, make_db: Callable[..., SpatialDatabase], scratch: Callable[..., None]
) -> None:
    """Times without a zone are the session's local time for timestamptz (binary COPY
    refused every one, CSV text included) and times with one become its local time for
    timestamp; booleans are true, false, 1 and 0 (the dumper took 2 and 0.5 as True); a
    float4 beyond its range is refused (it was stored as infinity); pandas' missing
    values are NULL, as in a GeoDataFrame."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    import numpy as np
    import pandas as pd

    scratch("ingest_read")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_read (id integer PRIMARY KEY, at timestamptz, "
                "local timestamp, ok boolean, ratio float4, note text, day date, "
                "geom geometry(POINT, 4326))"
            )
        )
    india = make_db(server_settings={"TimeZone": "Asia/Kolkata"}, pool_size=2)
    naive, utc = dt.datetime(2026, 1, 2, 3, 4, 5), dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    source: list[dict[str, Any]] = [
        {"id": 1, "at": naive, "local": utc, "ok": 1, "ratio": 1e38},
        {"id": 2, "at": "2026-01-02 03:04:05", "local": "2026-01-02T03:04:05Z", "ok": 0},
        {"id": 3, "at": np.datetime64("2026-01-02T03:04:05"), "ok": np.bool_(True)},
        {"id": 4, "at": dt.date(2026, 1, 2), "ok": "off", "ratio": np.float32(0.5)},
        {"id": 5, "ok": 2},
        {"id": 6, "ok": 0.5},
        {"id": 7, "ok": "false", "ratio": 1e39},
        {"id": 8, "ratio": -1e-50},
        {"id": 9, "at": pd.NaT, "local": np.datetime64("NaT"), "ok": pd.NA, "ratio": np.nan},
        {"id": 10, "note": float("nan")},  # how pandas marks a missing string
    ]
    days: list[Any] = [
        dt.datetime(2026, 1, 1, 20, 0, tzinfo=dt.UTC),  # 01:30 on the 2nd in India
        "2026-01-02",
        np.datetime64("2026-01-02"),  # numpy's took the date dumper's TypeError
        pd.Timestamp("2026-01-02T23:59"),
    ]
    for row, day in zip(source, days, strict=False):
        row["day"] = day
    source[8]["day"] = np.datetime64("NaT")
    for row in source:
        row["geom"] = "SRID=4326;POINT(1 1)"
    report = india.ingest("ingest_read", source)
    assert [(r.row, r.column, r.value) for r in report.rejected] == [
        (5, "ok", "2"),
        (6, "ok", "0.5"),
        (7, "ratio", "1e+39"),
        (8, "ratio", "-1e-50"),
    ]
    assert report.rejected[0].reason == (
        "cannot read '2' as bool: only true, false, 1 and 0 (and their spellings in text) "
        "are booleans"
    )
    assert report.rejected[2].reason == (
        "cannot read '1e+39' as float4: out of range (magnitudes up to 3.4e38, down to "
        "1.4e-45): use a float8 column"
    )
    with db.session() as s:
        stored = s.execute(
            text("SELECT id, at, local, ok, ratio, note FROM ingest_read ORDER BY id")
        )
        rows = stored.all()
    in_india = naive.replace(tzinfo=ZoneInfo("Asia/Kolkata"))
    midnight = dt.datetime(2026, 1, 2, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert [row[1] for row in rows] == [in_india, in_india, in_india, midnight, None, None]
    assert [row[2] for row in rows] == [naive + dt.timedelta(hours=5.5)] * 2 + [None] * 4
    assert [row[3] for row in rows] == [True, False, True, False, None, None]
    assert rows[0][4] == pytest.approx(1e38, rel=1e-6) and rows[3][4] == 0.5
    assert rows[4:] == [(9, None, None, None, None, None), (10, None, None, None, None, None)]
    with db.session() as s:
        stored_days = s.execute(text("SELECT day FROM ingest_read ORDER BY id")).scalars()
        assert list(stored_days) == [dt.date(2026, 1, 2)] * 4 + [None] * 2


def test_text_longer_than_its_varchar_or_char_column_is_a_value_reject(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """The server refused such rows one at a time ("value too long for type character
    varying(3)"), found by bisecting the chunk; they are set aside before the COPY, counted
    in characters, and spaces past the length are cut as the server cuts them."""
    scratch("ingest_lengths")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_lengths (id integer PRIMARY KEY, code varchar(3), "
                "flag char(2), note varchar, geom geometry(POINT, 4326))"
            )
        )
    point = "SRID=4326;POINT(1 1)"
    source: list[dict[str, Any]] = [
        {"id": 1, "code": "abc", "flag": "x"},
        {"id": 2, "code": "abcd"},
        {"id": 3, "code": "ab   ", "flag": "ab  "},  # spaces past the length: cut
        {"id": 4, "code": 1234},  # sent as its text
        {"id": 5, "flag": "xyz", "note": "long" * 1_000},
        {"id": 6, "code": "ééé"},  # characters, not bytes
    ]
    report = db.ingest("ingest_lengths", [{**row, "geom": point} for row in source])
    assert [(r.row, r.column, r.kind, r.reason) for r in report.rejected] == [
        (2, "code", "value", "value too long for character varying(3): 4 characters"),
        (4, "code", "value", "value too long for character varying(3): 4 characters"),
        (5, "flag", "value", "value too long for character(2): 3 characters"),
    ]
    with db.session() as s:
        stored = s.execute(text("SELECT id, code, flag FROM ingest_lengths ORDER BY id")).all()
    assert [tuple(row) for row in stored] == [(1, "abc", "x "), (3, "ab ", "ab"), (6, "ééé", None)]


def test_numbers_beyond_their_columns_type_are_refused_not_wrapped(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """numpy's and psycopg's integer dumpers wrap a number beyond the type: 2**40 was
    stored as 0 in an int4 column, 70000 as 4464 in an int2, [1, 2**40] as {1,0} in an
    int4[]; a decimal beyond float8 was stored as infinity (or 0). Each is a value reject
    naming the type's range; its bounds load."""
    from decimal import Decimal

    import numpy as np

    scratch("ingest_ints")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_ints (id integer PRIMARY KEY, small int2, whole int4, "
                "big int8, wholes int4[], smalls int2[], ratio float8, "
                "geom geometry(POINT, 4326))"
            )
        )
    point = "SRID=4326;POINT(1 1)"
    source: list[dict[str, Any]] = [
        {"id": 1, "small": -32768, "whole": 2**31 - 1, "big": -(2**63), "wholes": [2**31 - 1]},
        {"id": 2, "whole": 2**40},
        {"id": 3, "small": 70000},
        {"id": 4, "big": 2**70},
        {"id": 5, "whole": np.int64(-(2**31) - 1)},  # beside NULLs: read value by value
        {"id": 6, "wholes": [1, 2**40]},
        {"id": 7, "smalls": "{1,99999}"},
        {"id": 8, "whole": "3000000000"},
        {"id": 9, "ratio": Decimal("1e400")},
        {"id": 10, "ratio": Decimal("-1e-400")},
    ]
    report = db.ingest("ingest_ints", [{**row, "geom": point} for row in source])
    assert [(r.row, r.column, r.kind) for r in report.rejected] == [
        (2, "whole", "value"),
        (3, "small", "value"),
        (4, "big", "value"),
        (5, "whole", "value"),
        (6, "wholes", "value"),
        (7, "smalls", "value"),
        (8, "whole", "value"),
        (9, "ratio", "value"),
        (10, "ratio", "value"),
    ]
    assert report.rejected[0].reason == (
        "cannot read '1099511627776' as int4: out of range for int4 (-2147483648 to 2147483647)"
    )
    assert report.rejected[4].reason.endswith("out of range for int4 (-2147483648 to 2147483647)")
    with db.session() as s:
        stored = s.execute(text("SELECT id, small, whole, big, wholes FROM ingest_ints")).all()
    assert [tuple(row) for row in stored] == [(1, -32768, 2**31 - 1, -(2**63), [2**31 - 1])]


def test_a_uuid_column_takes_text_uuids_and_their_16_bytes(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    import uuid

    scratch("ingest_uuid")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE ingest_uuid (id int PRIMARY KEY, key uuid, geom geometry)"))
    key = uuid.UUID(int=7)
    values: list[Any] = [str(key), key, key.bytes, bytearray(key.bytes), key.bytes[:15], "x"]
    source = [{"id": i, "key": v, "geom": "POINT(1 1)"} for i, v in enumerate(values, 1)]
    report = db.ingest("ingest_uuid", source)
    assert [(r.row, r.column, r.kind) for r in report.rejected] == [
        (5, "key", "value"),
        (6, "key", "value"),
    ]
    assert "a UUID is 16 bytes, not 15" in report.rejected[0].reason
    with db.session() as s:
        stored = s.execute(text("SELECT key FROM ingest_uuid ORDER BY id")).scalars().all()
    assert stored == [key] * 4


def test_time_interval_and_hstore_values_are_read_or_refused_never_stored_wrong(
    make_db: Callable[..., SpatialDatabase], scratch: Callable[..., None], db: SpatialDatabase
) -> None:
    """psycopg's time and interval dumpers read any object as if it were of their type:
    text, a datetime or a number was stored as a wrong time or a wild interval ('1 day
    02:00:00aa' as 1681447309 days). Times are read from text and datetimes (in the
    session's TimeZone), durations from timedelta and timedelta64, anything else is a
    `value` reject. hstore is sent in its binary form, from a mapping or hstore text."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    scratch("ingest_kinds")
    with db.transaction() as s:
        s.execute(text("CREATE EXTENSION IF NOT EXISTS hstore"))
        s.execute(
            text(
                "CREATE TABLE ingest_kinds (id integer PRIMARY KEY, at time, took interval, "
                "tags hstore, ats time[], tooks interval[], addr inet, net cidr, blob bytea, "
                "flags bool[], moments timestamptz[], span tstzrange, "
                "geom geometry(POINT, 4326))"
            )
        )
    berlin = make_db(server_settings={"TimeZone": "Europe/Berlin"}, pool_size=2)
    source: list[dict[str, Any]] = [
        {"id": 1, "at": "12:30", "took": dt.timedelta(hours=1), "tags": {"name": "Café", "n": 2}},
        {"id": 2, "at": dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC), "took": np.timedelta64(90, "m")},
        {"id": 3, "at": np.datetime64("2026-01-01T07:15"), "took": pd.Timedelta(minutes=5)},
        {"id": 4, "at": "12:30:00", "tags": '"amenity"=>"cafe", "fee"=>NULL'},
        {"id": 5, "took": "1 day 02:00:00aa"},
        {"id": 6, "at": 5},
        {"id": 7, "at": "25:00"},
        {"id": 8, "tags": "amenity=cafe"},
        {"id": 9, "ats": ["12:30", None, dt.time(1)], "tooks": [[dt.timedelta(1)], [None]]},
        {"id": 10, "ats": [5]},  # [5] was stored as {00:00:00}
        {"id": 11, "took": "1 mon 2 days 03:00", "tooks": ["1 day", "P1DT2H"]},
        {"id": 12, "ats": "{12:30,13:00}", "tooks": np.array([np.timedelta64(5, "s")])},
        {"id": 13, "addr": "10.1.2.3/16", "net": "10.0.0.0/8"},  # text: a reject before
        {"id": 14, "net": "10.0.0.1/8"},  # host bits set: not a cidr
        {"id": 15, "blob": 5},  # was stored as five zero bytes
        {
            "id": 16,
            "flags": ["false", 1, None],
            "moments": '{"2026-01-01 00:00+02"}',
            "span": '["2026-01-01 00:00+02",)',  # psycopg read 00:00+02 as 00:00:02 UTC
        },
        {"id": 17, "flags": ["maybe"]},  # was stored as {t}, as "false" was
    ]
    report = berlin.ingest(
        "ingest_kinds", [{**row, "geom": "SRID=4326;POINT(1 1)"} for row in source]
    )
    assert [(r.row, r.column, r.kind) for r in report.rejected] == [
        (5, "took", "value"),
        (6, "at", "value"),
        (7, "at", "value"),
        (8, "tags", "value"),
        (10, "ats", "value"),
        (14, "net", "value"),
        (15, "blob", "value"),
        (17, "flags", "value"),
    ]
    assert "not an interval such as '1 day 02:00:00'" in report.rejected[0].reason
    with db.session() as s:
        rows = s.execute(
            text("SELECT id, at, took, hstore_to_jsonb(tags) FROM ingest_kinds ORDER BY id")
        ).all()
    assert rows == [
        (1, dt.time(12, 30), dt.timedelta(hours=1), {"name": "Café", "n": "2"}),
        (2, dt.time(9, 0), dt.timedelta(minutes=90), None),
        (3, dt.time(7, 15), dt.timedelta(minutes=5), None),
        (4, dt.time(12, 30), None, {"amenity": "cafe", "fee": None}),
        (9, None, None, None),
        (11, None, dt.timedelta(days=32, hours=3), None),  # psycopg reads a month as 30 days
        (12, None, None, None),
        (13, None, None, None),
        (16, None, None, None),
    ]
    with db.session() as s:
        both = s.execute(
            text("SELECT flags, moments, lower(span) FROM ingest_kinds WHERE id = 16")
        ).one()
        start = dt.datetime(2025, 12, 31, 22, tzinfo=dt.UTC)
        assert both == ([False, True, None], [start], start)
        month = s.execute(text("SELECT took::text FROM ingest_kinds WHERE id = 11")).scalar()
        assert month == "1 mon 2 days 03:00:00"  # the month sent as one
        arrays = s.execute(
            text(
                "SELECT ats::text, tooks::text, addr::text, net::text "
                "FROM ingest_kinds WHERE id BETWEEN 9 AND 15"
            )
        )
        assert arrays.all() == [
            ("{12:30:00,NULL,01:00:00}", '{{"1 day"},{NULL}}', None, None),
            (None, '{"1 day","1 day 02:00:00"}', None, None),
            ("{12:30:00,13:00:00}", "{00:00:05}", None, None),
            (None, None, "10.1.2.3/16", "10.0.0.0/8"),
        ]


@pytest.mark.parametrize(
    "written",
    [
        "1 year 2 mons 3 days 04:05:06.5",
        "-1 days +02:00:00",
        "@ 1 year 2 mons -3 days 4 hours 5 mins 6.5 secs ago",
        "90 minutes",
        "1.5 days",
        "1.5 months",
        "1.5 years",
        "3 weeks",
        "1 week 2.5 days",
        "-1.5 hours",
        "1 decade",
        "P1Y2M3DT4H5M6S",
        "P1.5D",
        "PT36H",
        "P1W",
        "02:00:00",
        "-02:30",
        "100:00:00",
        "1 2:03:04",
        "2 1:00:00 ago",
        "1 day, 02:00:00",
        "5",
        "-7.25",
        "1 DAY 2 HOURS",
        "1-2",
        "-1-2 3 4:05:06",
        "1 day 5",
        "1 year 2 hours 6.5",
        "1h30m",
        "2h30",
        "P0001-02-03T04:05:06",
        "P1-2",
        "P1Y2M3DT04:05:06",
        "PT",
    ],
)
def test_interval_text_is_read_as_the_server_reads_it(
    admin: psycopg.Connection[Any], written: str
) -> None:
    """The same months, days and microseconds as PostgreSQL's own input (interval_send)."""
    from geosession.ingest.intervals import parse_interval

    server = admin.execute("SELECT interval_send(%s::interval)", (written,)).fetchone()
    assert server is not None and parse_interval(written).binary() == bytes(server[0])


@pytest.mark.parametrize(
    "written",
    ["1 fortnight", "1 day 2 3:00", "1-2-3", "P", "abc", "", "1 5", "1 day 02:00 5", "1h-30m"],
)
def test_interval_text_the_server_refuses_is_refused(
    admin: psycopg.Connection[Any], written: str
) -> None:
    from geosession.ingest.intervals import parse_interval

    with pytest.raises(ValueError):
        parse_interval(written)
    with pytest.raises(psycopg.errors.InvalidDatetimeFormat), admin.transaction():
        admin.execute("SELECT %s::interval", (written,))


def test_a_table_of_many_types_exported_loads_back_the_same(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """Exports write intervals, times with zones and ranges as PostgreSQL's text, arrays
    and hstore as JSON: each loads back into the same columns, value for value."""
    scratch("kinds_out", "kinds_in")
    columns = (
        "id int PRIMARY KEY, t time, tz timetz, iv interval, h hstore, ip inet, c cidr, "
        "r int4range, ts tstzrange, d daterange, arr_t time[], arr_iv interval[], js jsonb, "
        "u uuid, b bytea, n numeric(12,3), ch char(3), geom geometry(Point, 4326)"
    )
    with db.transaction() as s:
        s.execute(text("CREATE EXTENSION IF NOT EXISTS hstore"))
        s.execute(text(f"CREATE TABLE kinds_out ({columns})"))
        s.execute(text(f"CREATE TABLE kinds_in ({columns})"))
        s.execute(
            text(
                "INSERT INTO kinds_out VALUES (1, '12:30', '12:30+02', '1 mon 2 days 03:00', "
                "'a=>1,b=>NULL', '10.0.0.1', '10.0.0.0/8', '[1,5)', "
                "'[2026-01-01 00:00+00,2026-02-01 12:00+00)', '[2026-01-01,2026-02-01)', "
                "'{12:30,13:00}', '{\"1 day\",\"2 hours\"}', '{\"a\": [1]}', "
                "gen_random_uuid(), '\\x0001', 1.5, 'ab', 'SRID=4326;POINT(1 2)'), "
                "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
                "NULL, NULL, NULL, NULL, NULL)"
            )
        )
    for suffix in ("gpkg", "csv", "parquet"):
        path = tmp_path / f"kinds.{suffix}"
        db.export("kinds_out", path)
        with db.transaction() as s:
            s.execute(text("TRUNCATE kinds_in"))
        report = db.ingest("kinds_in", path, ingest_id=f"kinds-{suffix}", progress=False)
        assert report.inserted == 2 and not report.rejected, (suffix, report.rejected)
        with db.session() as s:
            differ = s.execute(
                text(
                    "SELECT count(*) FROM kinds_out o FULL JOIN kinds_in i USING (id) "
                    "WHERE row(o.*)::text IS DISTINCT FROM row(i.*)::text"
                )
            ).scalar()
        assert differ == 0, suffix


def test_domains_and_enums_are_sent_as_their_base_types_and_labels(
    db: SpatialDatabase,
) -> None:
    """A domain is sent as its base type and its CHECK is the server's (a domain over an
    array crashed the plan; one over int4 was sent as text and every row failed); an enum
    as its label, an enum[] as text[] naming the enum."""
    with db.transaction() as s:
        s.execute(text("DROP TYPE IF EXISTS ingest_mood CASCADE"))
        s.execute(text("DROP DOMAIN IF EXISTS ingest_positive, ingest_codes CASCADE"))
        s.execute(text("CREATE TYPE ingest_mood AS ENUM ('sad', 'ok', 'happy')"))
        s.execute(text("CREATE DOMAIN ingest_positive AS int4 CHECK (VALUE > 0)"))
        s.execute(text("CREATE DOMAIN ingest_codes AS int4[]"))
        s.execute(
            text(
                "CREATE TABLE ingest_domains (id integer PRIMARY KEY, n ingest_positive, "
                "codes ingest_codes, mood ingest_mood, moods ingest_mood[], words tsvector, "
                "geom geometry(POINT, 4326))"
            )
        )
    point = "SRID=4326;POINT(1 1)"
    try:
        source = [
            {"id": 1, "n": 5, "codes": [1, 2], "mood": "ok", "moods": ["sad", "ok"]},
            {"id": 2, "n": -5, "codes": None, "mood": "happy", "moods": None},
            {"id": 3, "n": 7, "codes": [], "mood": "meh", "moods": []},
            {"id": 4, "n": 8, "mood": "sad", "moods": [["sad"], ["happy"]]},
            {"id": 5, "n": 9, "moods": ["sad", "glum"]},
        ]
        report = db.ingest("ingest_domains", [{**row, "geom": point} for row in source])
        assert [(r.row, r.column, r.kind) for r in report.rejected] == [
            (2, "n", "server"),
            (3, "mood", "server"),
            (5, "moods", "server"),
        ]
        assert "violates check constraint" in report.rejected[0].reason
        assert report.rejected[2].reason == 'invalid input value for enum ingest_mood: "glum"'
        with db.session() as s:
            stored = s.execute(
                text("SELECT id, n, codes, mood, moods::text FROM ingest_domains ORDER BY id")
            ).all()
        assert stored == [
            (1, 5, [1, 2], "ok", "{sad,ok}"),
            (4, 8, None, "sad", "{{sad},{happy}}"),
        ]
    finally:
        with db.transaction() as s:
            s.execute(text("DROP TABLE IF EXISTS ingest_domains, ingest_domains_rejected"))
            s.execute(text("DROP TYPE IF EXISTS ingest_mood CASCADE"))
            s.execute(text("DROP DOMAIN IF EXISTS ingest_positive, ingest_codes CASCADE"))


def test_types_without_a_binary_input_load_as_text(db: SpatialDatabase, tmp_path: Path) -> None:
    """raster, box2d and box3d have no binary input function: such a column was left out
    of the target, so a source giving it was refused ("fields that are not columns"),
    an export of a table with a raster could not load back."""
    with db.transaction() as s:
        raster = s.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'postgis_raster'"))
        installed = raster.first() is not None
        s.execute(text("CREATE EXTENSION IF NOT EXISTS postgis_raster"))
        s.execute(
            text(
                "CREATE TABLE ingest_boxes (id int, rast raster, extent box2d, "
                "volume box3d, geom geometry(POINT, 4326))"
            )
        )
        tile = s.execute(
            text("SELECT ST_AsRaster('POLYGON((0 0, 1 0, 1 1, 0 0))'::geometry, 2, 2)::text")
        ).scalar_one()
    try:
        rows = [
            {
                "id": 1,
                "rast": tile,
                "extent": "BOX(0 0,1 1)",
                "volume": "BOX3D(0 0 0,1 1 1)",
                "geom": "SRID=4326;POINT(1 1)",
            },
            {"id": 2, "extent": "no box", "geom": "SRID=4326;POINT(1 1)"},
        ]
        report = db.ingest("ingest_boxes", rows)
        assert report.inserted == 1
        assert [(r.row, r.column, r.kind) for r in report.rejected] == [(2, "extent", "server")]
        exported = tmp_path / "boxes.csv"
        db.export("SELECT * FROM ingest_boxes", exported)
        assert db.ingest("ingest_boxes", exported).inserted == 1
        with db.session() as s:
            stored = s.execute(
                text(
                    "SELECT id, ST_Width(rast), rast::text = :tile, extent::text, volume::text "
                    "FROM ingest_boxes"
                ),
                {"tile": tile},
            )
            assert stored.all() == [(1, 2, True, "BOX(0 0,1 1)", "BOX3D(0 0 0,1 1 1)")] * 2
    finally:
        with db.transaction() as s:
            s.execute(text("DROP TABLE ingest_boxes, ingest_boxes_rejected"))
            if not installed:
                s.execute(text("DROP EXTENSION postgis_raster"))


def test_types_without_a_binary_dumper_are_cast_from_text_by_the_server(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """macaddr, money, bit, tsvector, point, a composite, arrays of a domain and of
    geometry: psycopg sends none in binary. They travel as text through a staging table
    and the server casts them, as it reads an INSERT's text (bit(4) refuses '10')."""
    with db.transaction() as s:
        s.execute(text("DROP TYPE IF EXISTS ingest_pair CASCADE"))
        s.execute(text("DROP DOMAIN IF EXISTS ingest_small CASCADE"))
        s.execute(text("CREATE TYPE ingest_pair AS (a int, b text)"))
        s.execute(text("CREATE DOMAIN ingest_small AS int CHECK (VALUE < 10)"))
        s.execute(
            text(
                "CREATE TABLE ingest_cast (mac macaddr PRIMARY KEY, price money, flags bit(4), "
                "words tsvector, spot point, pair ingest_pair, smalls ingest_small[], "
                "shapes geometry[], geom geometry(POINT, 4326))"
            )
        )
    try:
        point = "SRID=4326;POINT(1 1)"
        good = {
            "mac": "08:00:2b:01:02:03",
            "price": decimal.Decimal("12.50"),
            "flags": "1010",
            "words": "a fat cat",
            "spot": "(1,2)",
            "pair": "(1,x)",
            "smalls": [1, 2],
            "shapes": ["POINT(1 2)"],
            "geom": point,
        }
        source = [
            good,
            {"mac": "zz", "geom": point},
            {"mac": "08:00:2b:01:02:04", "flags": "10", "geom": point},
            {"mac": "08:00:2b:01:02:05", "smalls": ["1", "20"], "geom": point},
            {"mac": "08:00:2b:01:02:06", "pair": (1, "x"), "geom": point},
            {"mac": "08-00-2b-01-02-07", "price": 3, "spot": "3,4", "geom": point},
        ]
        report = db.ingest("ingest_cast", source, chunk_size=6)
        rejected = sorted(report.rejected, key=lambda r: r.row)
        assert [(r.row, r.column, r.kind) for r in rejected] == [
            (2, "mac", "server"),
            (3, None, "server"),
            (4, "smalls", "server"),
            (5, "pair", "value"),
        ]
        assert rejected[0].reason == 'invalid input syntax for type macaddr: "zz"'
        assert rejected[1].reason == "bit string length 2 does not match type bit(4)"
        assert "a tuple is no text for this type" in rejected[3].reason
        query = (
            "SELECT mac::text, price::numeric, flags::text, words::text, spot::text, "
            "pair::text, smalls::text, ST_AsText(shapes[1]) FROM {} ORDER BY mac"
        )
        expected = [
            (
                "08:00:2b:01:02:03",
                12.5,
                "1010",
                "'a' 'cat' 'fat'",
                "(1,2)",
                "(1,x)",
                "{1,2}",
                "POINT(1 2)",
            ),
            ("08:00:2b:01:02:07", 3, None, None, "(3,4)", None, None, None),
        ]
        with db.session() as s:
            assert s.execute(text(query.format("ingest_cast"))).all() == expected
        updated = db.ingest(  # the key's values, not its texts, tell rows apart
            "ingest_cast",
            [{"mac": "08002b010207", "price": 4}, {"mac": "0800.2b01.0207", "price": 5}],
            on_conflict="update",
        )
        assert updated.inserted == 1 and not updated.rejected
        with db.session() as s:
            prices = s.execute(text("SELECT mac::text, price::numeric FROM ingest_cast ORDER BY 1"))
            assert prices.all() == [("08:00:2b:01:02:03", 12.5), ("08:00:2b:01:02:07", 5)]
        exported = tmp_path / "cast.gpkg"
        db.export("ingest_cast", exported)
        with db.transaction() as s:
            s.execute(text("CREATE TABLE ingest_cast_back (LIKE ingest_cast)"))
        back = db.ingest("ingest_cast_back", exported)
        assert back.inserted == 2 and not back.rejected, back.rejected
        with db.session() as s:
            assert (
                s.execute(text(query.format("ingest_cast"))).all()
                == s.execute(text(query.format("ingest_cast_back"))).all()
            )
    finally:
        with db.transaction() as s:
            s.execute(text("DROP TABLE IF EXISTS ingest_cast, ingest_cast_back CASCADE"))
            s.execute(text("DROP TYPE IF EXISTS ingest_pair CASCADE"))
            s.execute(text("DROP DOMAIN IF EXISTS ingest_small CASCADE"))


def test_a_domain_over_geometry_is_validated_as_geometry(db: SpatialDatabase) -> None:
    """PostGIS does not list a domain's column in geometry_columns: its geometry type,
    SRID and dimension are read from the domain's typmod, so its values are checked before
    the COPY as any geometry column's are; a domain's NOT NULL (or that of a domain it is
    over) makes the column required, as the column's own would."""
    with db.transaction() as s:
        s.execute(text("DROP DOMAIN IF EXISTS ingest_area, ingest_some_area CASCADE"))
        s.execute(text("CREATE DOMAIN ingest_area AS geometry(POLYGON, 4326) NOT NULL"))
        s.execute(text("CREATE DOMAIN ingest_some_area AS ingest_area CHECK (true)"))
        s.execute(text("CREATE TABLE ingest_areas (id integer PRIMARY KEY, area ingest_some_area)"))
    try:
        source = [
            {"id": 1, "area": shapely.box(0, 0, 1, 1)},
            {"id": 2, "area": "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"},
            {"id": 3, "area": "POINT(1 1)"},
            {"id": 4, "area": None},
        ]
        report = db.ingest("ingest_areas", source)
        kinds = [(r.row, r.kind) for r in report.rejected]
        assert kinds == [(2, "invalid"), (3, "type"), (4, "null")]
        with pytest.raises(ConfigurationError, match="The source has no values for area"):
            db.ingest("ingest_areas", [{"id": 5}])
        with db.session() as s:
            stored = s.execute(text("SELECT id, ST_SRID(area) FROM ingest_areas")).all()
        assert stored == [(1, 4326)]
    finally:
        with db.transaction() as s:
            s.execute(text("DROP TABLE IF EXISTS ingest_areas, ingest_areas_rejected"))
            s.execute(text("DROP DOMAIN IF EXISTS ingest_some_area, ingest_area"))


def test_auto_workers_follow_the_index_upkeep(db: SpatialDatabase, table: str) -> None:
    assert db.ingest(table, rows(100)).workers == 1  # empty: the GiST index is deferred
    assert db.ingest(table, rows(100, start=101)).workers == 2  # kept up during the load
    assert "4 over 2 connections" in str(db.ingest(table, rows(10, start=201), chunk_size=3))
    one_chunk = str(db.ingest(table, rows(10, start=211)))  # the second writer took none
    assert re.search(r"chunks +│ +1 │", one_chunk) and "connections" not in one_chunk
    with db.transaction() as s:
        s.execute(text(f"DROP INDEX {TABLE}_geom_idx"))
    assert db.ingest(table, rows(100, start=301)).workers == 1  # only the primary key


def test_mapped_class_and_table_targets(make_db: Callable[..., SpatialDatabase]) -> None:
    from geosession.demo import Base, Parcel

    db = make_db()
    Base.metadata.drop_all(db.engine)
    Base.metadata.create_all(db.engine)
    try:
        parcels = [
            Parcel(id=i, name="n", land_use="park", value=1.0, geom=p)
            for i, p in enumerate(synthetic_polygons(50), start=1)
        ]
        assert db.ingest(Parcel, parcels).inserted == 50
        more = ({**row, "land_use": "civic"} for row in rows(5, start=100))
        assert db.ingest(Parcel.__table__, more).inserted == 5
    finally:
        Base.metadata.drop_all(db.engine)


def test_dict_rows_for_a_mapped_class_may_use_attribute_names(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """As in an ORM bulk insert (session.execute(insert(Cls), dicts)): an attribute whose
    column has another name (label = mapped_column("name")) may key the dicts; so may the
    column's name, and mapped instances too."""

    class Base(DeclarativeBase):
        pass

    class Thing(Base):
        __tablename__ = "ingest_things"
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str] = mapped_column("name")
        shape: Mapped[WKBElement] = mapped_column("geom", Geometry("POINT", 4326))

    scratch("ingest_things")
    Base.metadata.create_all(db.engine)
    point = "SRID=4326;POINT(1 2)"
    source: list[Any] = [
        {"id": 1, "label": "by attribute", "shape": point},
        {"id": 2, "name": "by column", "geom": point},
        Thing(id=3, label="instance", shape=point),
    ]
    assert db.ingest(Thing, source).inserted == 3
    with db.session() as s:
        stored = s.execute(text("SELECT id, name, ST_AsText(geom) FROM ingest_things ORDER BY id"))
        assert [tuple(row) for row in stored] == [
            (1, "by attribute", "POINT(1 2)"),
            (2, "by column", "POINT(1 2)"),
            (3, "instance", "POINT(1 2)"),
        ]
    with pytest.raises(ConfigurationError, match="'nope'.*extra_fields='ignore'"):
        db.ingest(Thing, [{"id": 4, "nope": 1}])
    extra = [{"id": 4, "name": "extra", "nope": 1, "geom": "POINT(3 4)"}]
    report = db.ingest(Thing, extra, extra_fields="ignore")
    assert report.inserted == 1 and report.fields_left_out == {"nope"}
    assert "fields not loaded (no column takes them) │ nope" in " ".join(str(report).split())
    both = [{"id": 5, "name": "column", "label": "attribute", "geom": point}]  # last one won
    with pytest.raises(ConfigurationError, match="row 1 gives column name twice, as 'label'"):
        db.ingest(Thing, both)


def test_related_objects_set_on_new_instances_are_refused_not_left_out(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """Lot(owner=Owner(...)) loaded with owner_id NULL, and an Owner's lots not at all: a
    COPY of one table's columns cannot write them. A related object whose key is given
    too (owner_id=1) loads as before."""

    class Base(DeclarativeBase):
        pass

    class Owner(Base):
        __tablename__ = "ingest_owners"
        id: Mapped[int] = mapped_column(primary_key=True)
        lots: Mapped[list[Lot]] = relationship(back_populates="owner")

    class Lot(Base):
        __tablename__ = "ingest_lots"
        id: Mapped[int] = mapped_column(primary_key=True)
        owner_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_owners.id"))
        geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", 4326))
        owner: Mapped[Owner | None] = relationship(back_populates="lots")

    scratch("ingest_lots", "ingest_owners")
    Base.metadata.create_all(db.engine)
    db.ingest(Owner, [Owner(id=1)])
    point = "SRID=4326;POINT(1 2)"
    given = [Lot(id=1, owner_id=1, geom=point), Lot(id=2, owner_id=1, owner=Owner(id=1))]
    given[1].geom = point
    assert db.ingest(Lot, given).inserted == 2
    unsaved = [Lot(id=3, geom=point), Lot(id=4, geom=point, owner=Owner(id=2))]
    with pytest.raises(ConfigurationError) as refused:
        db.ingest(Lot, unsaved)
    assert str(refused.value).startswith(
        "row 2: Lot.owner is set to a related object, which the ingest does not write: it "
        "loads the columns of ingest_lots only, so set owner_id instead"
    )
    with pytest.raises(ConfigurationError, match=r"row 1: Owner.lots holds related objects"):
        db.ingest(Owner, [Owner(id=3, lots=[Lot(id=5, geom=point)])])
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM ingest_lots")).scalar() == 2


def test_a_stream_or_a_query_result_loads_by_column_name(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """db.stream's records and a session's Rows name their columns: a table of another
    column order gets each value in its column (records went in by position)."""
    scratch("ingest_copy_from", "ingest_copy_to")
    with db.transaction() as s:
        s.execute(
            text("CREATE TABLE ingest_copy_from (id int, name text, geom geometry(Point, 4326))")
        )
        s.execute(
            text(
                "INSERT INTO ingest_copy_from SELECT i, 'n' || i, ST_MakePoint(i, -i) "
                "FROM generate_series(1, 3000) i"
            )
        )
        s.execute(
            text("CREATE TABLE ingest_copy_to (name text, geom geometry(Point, 4326), id int)")
        )
    assert db.ingest("ingest_copy_to", db.stream("SELECT * FROM ingest_copy_from")).inserted == 3000
    with db.session() as s:
        rows = s.execute(text("SELECT id + 3000 AS id, name, geom FROM ingest_copy_from"))
        assert db.ingest("ingest_copy_to", rows).inserted == 3000
        same = s.execute(
            text(
                "SELECT count(*) FROM ingest_copy_to t JOIN ingest_copy_from f "
                "ON f.id = CASE WHEN t.id > 3000 THEN t.id - 3000 ELSE t.id END "
                "WHERE t.name = f.name AND ST_Equals(t.geom, f.geom)"
            )
        )
        assert same.scalar() == 6000


def test_create_makes_a_table_for_geojson_features(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """create=True from a FeatureCollection: columns typed from the properties, the
    geometry column geom of the features' type and CRS, and their ids as the key."""
    scratch("made_stops", "made_zones")
    stops = [
        {
            "type": "Feature",
            "id": n,
            "geometry": {"type": "Point", "coordinates": [n, -n]},
            "properties": {"name": f"stop {n}", "lines": n * 2, "accessible": n % 2 == 0},
        }
        for n in range(1, 21)
    ]
    collection = {"type": "FeatureCollection", "features": stops}
    report = db.ingest("made_stops", collection, create=True)
    assert report.created and report.inserted == 20
    mercator = {"type": "name", "properties": {"name": "EPSG:3857"}}
    square = {"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]]]}
    zones = {
        "type": "FeatureCollection",
        "crs": mercator,
        "features": [{"type": "Feature", "geometry": square, "properties": {"zone": "a"}}],
    }
    assert db.ingest("made_zones", zones, create=True).inserted == 1
    with db.session() as s:
        columns = s.execute(
            text(
                "SELECT table_name, column_name, udt_name FROM information_schema.columns "
                "WHERE table_name IN ('made_stops', 'made_zones') ORDER BY 1, ordinal_position"
            )
        ).all()
        kinds = s.execute(
            text(
                "SELECT f_table_name, type, srid FROM geometry_columns "
                "WHERE f_table_name IN ('made_stops', 'made_zones') ORDER BY 1"
            )
        ).all()
        keys = (
            s.execute(
                text(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                    "ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indisprimary "
                    "AND i.indrelid = 'made_stops'::regclass"
                )
            )
            .scalars()
            .all()
        )
        stored = s.execute(text("SELECT id, name, lines FROM made_stops WHERE id = 7")).one()
    assert [tuple(c) for c in columns] == [
        ("made_stops", "id", "int8"),
        ("made_stops", "geom", "geometry"),
        ("made_stops", "name", "text"),
        ("made_stops", "lines", "int8"),
        ("made_stops", "accessible", "bool"),
        ("made_zones", "fid", "int8"),
        ("made_zones", "geom", "geometry"),
        ("made_zones", "zone", "text"),
    ]
    assert [tuple(k) for k in kinds] == [
        ("made_stops", "POINT", 4326),
        ("made_zones", "POLYGON", 3857),
    ]
    assert keys == ["id"] and tuple(stored) == (7, "stop 7", 14)


def test_inheritance_single_table_fills_the_discriminator_joined_is_refused(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """As the ORM writes them: a Well(Feature) row gets kind = 'well' (dicts lacked it: a
    NOT NULL column without a default); a class over two tables is refused, naming them."""
    from sqlalchemy import ForeignKey

    class Base(DeclarativeBase):
        pass

    class Feature(Base):
        __tablename__ = "ingest_sti"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str]
        geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", 4326))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "feature"}  # noqa: RUF012

    class Well(Feature):
        depth: Mapped[float | None]
        __mapper_args__ = {"polymorphic_identity": "well"}  # noqa: RUF012

    class Mine(Feature):
        __tablename__ = "ingest_jti"
        id: Mapped[int] = mapped_column(ForeignKey("ingest_sti.id"), primary_key=True)
        ore: Mapped[str]
        __mapper_args__ = {"polymorphic_identity": "mine"}  # noqa: RUF012

    scratch("ingest_jti", "ingest_sti")
    Base.metadata.create_all(db.engine)
    point = "SRID=4326;POINT(1 2)"
    assert db.ingest(Well, [{"id": 1, "depth": 3.5, "geom": point}]).inserted == 1
    assert db.ingest(Feature, [{"id": 2, "geom": point}]).inserted == 1
    with db.session() as s:
        kinds = s.execute(text("SELECT id, kind FROM ingest_sti ORDER BY id")).all()
        assert [tuple(row) for row in kinds] == [(1, "well"), (2, "feature")]
        assert s.get(Well, 1) is not None  # read back as a Well
    with pytest.raises(ConfigurationError, match=r"Mine is mapped over 2 tables .*ingest_jti"):
        db.ingest(Mine, [{"id": 3, "ore": "gold", "geom": point}])


def test_geojson_features_from_a_web_api_load_as_rows(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """A FeatureCollection (a dict, or a geojson-pydantic model) or a list of Features: each
    row is the Feature's properties, its geometry (EPSG:4326) and its id."""
    from geojson_pydantic import FeatureCollection

    scratch("ingest_features")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_features (id int PRIMARY KEY, name text, "
                "geom geometry(Point, 4326))"
            )
        )
    features = [
        {
            "type": "Feature",
            "id": n,
            "geometry": {"type": "Point", "coordinates": [n, -n]},
            "properties": {"name": f"stop {n}"},
        }
        for n in range(1, 101)
    ]
    payload = {"type": "FeatureCollection", "features": features}
    assert db.ingest("ingest_features", payload).inserted == 100
    model = FeatureCollection.model_validate(payload)
    assert db.ingest("ingest_features", model, on_conflict="ignore").conflicts == 100
    assert db.ingest("ingest_features", features, on_conflict="ignore").conflicts == 100
    body = json.dumps(payload)  # an HTTP response's text, or its bytes
    assert db.ingest("ingest_features", body, on_conflict="ignore").conflicts == 100
    assert db.ingest("ingest_features", body.encode(), on_conflict="ignore").conflicts == 100
    one = json.dumps({**features[0], "id": 101})
    assert db.ingest("ingest_features", one).inserted == 1
    mercator = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    point = {"type": "Point", "coordinates": [1113194.9, 1118889.97]}  # (10, 10) in metres
    legacy = {  # GeoJSON 2008, as QGIS writes a layer in another CRS: never read as 4326
        "type": "FeatureCollection",
        "crs": mercator,
        "features": [{"type": "Feature", "geometry": point, "properties": {"id": 200}}],
    }
    refused = db.ingest("ingest_features", legacy)
    assert [(r.kind, r.reason) for r in refused.rejected] == [
        ("srid", "SRID 3857 where column geom has SRID 4326")
    ]
    assert db.ingest("ingest_features", legacy, reproject=True).inserted == 1
    with db.session() as s:
        moved = s.execute(text("SELECT ST_AsText(geom) FROM ingest_features WHERE id = 200"))
        x, y = map(float, moved.scalar_one()[6:-1].split())
    assert abs(x - 10) < 1e-6 and abs(y - 10) < 1e-6
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    answer = db.ingest("ingest_features", [{**features[0], "geometry": line}], on_invalid="skip")
    assert json.loads(json.dumps(answer.as_dict()))["rejected"] == [  # an API's answer
        {
            "row": 1,
            "column": "geom",
            "kind": "type",
            "reason": "LineString where column geom takes POINT",
            "value": '{"type":"LineString","coordinates":[[0,0],[1,1]]}',  # as given
        }
    ]
    with pytest.raises(ConfigurationError, match="looks like GeoJSON text but is not JSON"):
        db.ingest("ingest_features", body[:-1])
    with db.session() as s:
        stored = s.execute(
            text("SELECT id, name, ST_AsEWKT(geom) FROM ingest_features WHERE id IN (1, 100)")
        ).all()
    assert sorted(stored) == [
        (1, "stop 1", "SRID=4326;POINT(1 -1)"),
        (100, "stop 100", "SRID=4326;POINT(100 -100)"),
    ]


def test_bare_geometries_and_a_geoseries_load_into_the_geometry_column(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    import geopandas

    scratch("ingest_bare")
    with db.transaction() as s:
        s.execute(
            text("CREATE TABLE ingest_bare (id serial PRIMARY KEY, geom geometry(Point, 4326))")
        )
    points = [shapely.Point(n, n) for n in range(50)]
    assert db.ingest("ingest_bare", points).inserted == 50
    mercator = geopandas.GeoSeries(points, crs=4326).to_crs(3857)
    assert db.ingest("ingest_bare", mercator, reproject=True).inserted == 50
    with db.session() as s:
        same = s.execute(
            text(
                "SELECT count(*) FROM ingest_bare a JOIN ingest_bare b ON a.id + 50 = b.id "
                "WHERE ST_DWithin(a.geom, b.geom, 1e-9)"
            )
        )
        assert same.scalar() == 50


def test_python_side_column_defaults_fill_what_the_source_lacks(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """As session.add_all would: mapped_column(default=...) fills a column the source lacks,
    a key a dict row leaves out and an attribute a new instance leaves unset; None given
    stays NULL. A default in SQL (func.now(), a Sequence) the table lacks is written into
    the INSERT, per row."""
    from sqlalchemy import Sequence, func

    class Base(DeclarativeBase):
        pass

    def site_code(context: Any) -> str:
        return f"{context.get_current_parameters()['status']}-{context.current_parameters['n']}"

    class Site(Base):
        __tablename__ = "ingest_sites"
        uid: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
        n: Mapped[int]
        status: Mapped[str | None] = mapped_column(default="new")
        code: Mapped[str] = mapped_column(default=site_code)
        geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", 4326))

    class Stamped(Base):
        __tablename__ = "ingest_stamped"
        id: Mapped[int] = mapped_column(primary_key=True)
        seen: Mapped[dt.datetime | None] = mapped_column(default=func.now())
        ticket: Mapped[int | None] = mapped_column(Sequence("ingest_ticket_seq", start=100))
        geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", 4326))

    scratch("ingest_sites", "ingest_stamped")
    with db.transaction() as s:
        s.execute(text("DROP SEQUENCE IF EXISTS ingest_ticket_seq"))
    Base.metadata.create_all(db.engine)
    point = "SRID=4326;POINT(1 2)"
    source: list[Any] = [{"n": 1, "geom": point}, {"n": 2, "status": "old", "geom": point}]
    source += [{"n": 3, "status": None, "geom": point}, Site(n=4, geom=point)]
    assert db.ingest(Site, source, chunk_size=2).inserted == 4
    csv_file = tmp_path / "sites.csv"
    csv_file.write_text("n,status,wkt\n5,csv,POINT(1 2)\n")
    assert db.ingest(Site, csv_file).inserted == 1
    with db.session() as s:
        stored = s.execute(text("SELECT n, status, code, uid FROM ingest_sites ORDER BY n")).all()
    assert [tuple(row[:3]) for row in stored] == [
        (1, "new", "new-1"),
        (2, "old", "old-2"),
        (3, None, "None-3"),
        (4, "new", "new-4"),
        (5, "csv", "csv-5"),
    ]
    assert len({row.uid for row in stored}) == 5
    again = [{"uid": stored[1].uid, "n": 22, "geom": point}, {"n": 6, "geom": point}]
    assert db.ingest(Site, again, on_conflict="update").inserted == 2
    with db.session() as s:
        updated = s.execute(text("SELECT n, status, code FROM ingest_sites WHERE n > 5"))
        # a default fills new rows only: the existing row keeps its status and code
        assert sorted(tuple(row) for row in updated) == [(6, "new", "new-6"), (22, "old", "old-2")]
    mixed = [  # rows lacking keys other rows give: kept where the row exists
        {"uid": stored[0].uid, "n": 11, "status": "seen", "geom": point},
        {"uid": stored[2].uid, "n": 33, "geom": point},
        {"n": 8, "geom": point},  # new: uid, status and code from their defaults
    ]
    assert db.ingest(Site, mixed, on_conflict="update").inserted == 3
    with db.session() as s:
        query = "SELECT n, status, code FROM ingest_sites WHERE n IN (8, 11, 33) ORDER BY n"
        assert [tuple(row) for row in s.execute(text(query))] == [
            (8, "new", "new-8"),
            (11, "seen", "new-1"),
            (33, None, "None-3"),
        ]
    late = [  # a key the first batch lacks altogether, given by a later row: written there
        {"uid": stored[3].uid, "n": 44, "geom": point},
        {"uid": stored[4].uid, "n": 55, "status": "late", "geom": point},
    ]
    assert db.ingest(Site, late, on_conflict="update", chunk_size=1).inserted == 2
    with db.session() as s:
        query = "SELECT n, status, code FROM ingest_sites WHERE n IN (44, 55) ORDER BY n"
        assert [tuple(row) for row in s.execute(text(query))] == [
            (44, "new", "new-4"),
            (55, "late", "csv-5"),
        ]
    with pytest.raises(ConfigurationError, match=r"column code .* source row 2: KeyError: 'n'"):
        db.ingest(Site, [{"n": 7, "geom": point}, {"geom": point}], chunk_size=1)
    assert db.ingest(Stamped, [{"id": 1, "geom": point}]).inserted == 1
    mixed = [{"id": 2, "seen": None, "ticket": 7, "geom": point}, {"id": 3, "geom": point}]
    assert db.ingest(Stamped, mixed).inserted == 2
    with db.transaction() as s:
        s.execute(text("ALTER TABLE ingest_stamped ALTER COLUMN seen SET DEFAULT now()"))
    assert db.ingest(Stamped, [{"id": 4, "geom": point}]).inserted == 1  # the table's DEFAULT
    upserts = [{"id": 5, "geom": point}, {"id": 6, "seen": None, "geom": point}]
    upserts.append({"id": 2, "geom": point})  # exists: keeps its ticket
    assert db.ingest(Stamped, upserts, on_conflict="update").inserted == 3
    with db.transaction() as s:
        stamped = s.execute(text("SELECT id, seen IS NOT NULL, ticket FROM ingest_stamped"))
        found = sorted(tuple(row) for row in stamped)
        assert found[:4] == [(1, True, 100), (2, False, 7), (3, True, 101), (4, True, 102)]
        # a nextval per row offered, as INSERT ... ON CONFLICT takes one for row 2 too
        assert [row[:2] for row in found[4:]] == [(5, True), (6, False)]
        assert {row[2] for row in found[4:]} < {103, 104, 105}
        s.execute(text("DROP TABLE ingest_stamped; DROP SEQUENCE ingest_ticket_seq"))


def test_a_key_a_row_lacks_takes_the_table_default_as_an_insert_would(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """Dict rows, GeoJSON Features and new instances that leave out a key other rows give
    get the column's DEFAULT (a constant, now(), a sequence), not NULL; a NOT NULL column
    with a DEFAULT takes them without a reject; None given stays NULL. Rows the server
    refuses in such a chunk are still found by row; with on_conflict="update" an existing row
    keeps the values of the columns a row lacks."""

    class Base(DeclarativeBase):
        pass

    class Visit(Base):
        __tablename__ = "ingest_visits"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None]
        status: Mapped[str] = mapped_column(server_default="new")
        rank: Mapped[int | None] = mapped_column(server_default=text("7"))
        seen: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))
        geom: Mapped[WKBElement] = mapped_column(Geometry("POINT", 4326))

    scratch("ingest_visits")
    Base.metadata.create_all(db.engine)
    with db.transaction() as s:
        s.execute(text("ALTER TABLE ingest_visits ADD CHECK (rank < 100)"))
    point = "SRID=4326;POINT(1 2)"
    source: list[Any] = [
        {"id": 1, "name": "a", "status": "open", "rank": 1, "geom": point},
        {"id": 2, "name": "b", "geom": point},  # status, rank, seen: their DEFAULTs
        {"id": 3, "name": "c", "rank": None, "geom": point},  # None stays NULL
        {"id": 4, "status": "shut", "rank": 500, "geom": point},  # refused by the CHECK
        {"type": "Feature", "properties": {"id": 5, "name": "e"}, "geometry": to_geojson(point)},
        Visit(id=6, name="f", geom=point),  # attributes left unset
        {"id": 7, "name": "g", "geom": point},  # a batch lacking the columns altogether
        {"id": 8, "name": "h", "geom": point},
    ]
    report = db.ingest(Visit, source, chunk_size=2, srid=4326)
    assert (report.inserted, [(r.row, r.column) for r in report.rejected]) == (7, [(4, "rank")])
    query = "SELECT id, name, status, rank, seen IS NOT NULL FROM ingest_visits ORDER BY id"
    with db.session() as s:
        stored = [tuple(row) for row in s.execute(text(query))]
    assert stored == [
        (1, "a", "open", 1, True),
        (2, "b", "new", 7, True),
        (3, "c", "new", None, True),
        (5, "e", "new", 7, True),
        (6, "f", "new", 7, True),
        (7, "g", "new", 7, True),
        (8, "h", "new", 7, True),
    ]
    again = [
        {"id": 1, "rank": 2, "geom": point},  # name and status kept
        {"id": 2, "name": "B", "status": "open", "geom": point},  # rank kept
        {"id": 9, "name": "i", "geom": point},  # new: the DEFAULTs
    ]
    assert db.ingest(Visit, again, on_conflict="update", srid=4326).inserted == 3
    with db.session() as s:
        updated = [tuple(row) for row in s.execute(text(query + " LIMIT 2"))]
        new = s.execute(text("SELECT status, rank FROM ingest_visits WHERE id = 9")).one()
    assert updated == [(1, "a", "open", 2, True), (2, "B", "open", 7, True)]
    assert tuple(new) == ("new", 7)
    ignored = [{"id": 9, "geom": point}, {"id": 10, "status": "x", "geom": point}]
    ignored.append({"id": 11, "geom": point})
    assert db.ingest(Visit, ignored, on_conflict="ignore", srid=4326).inserted == 2
    with db.session() as s:
        statuses = s.execute(text("SELECT status FROM ingest_visits WHERE id > 9 ORDER BY id"))
        assert statuses.scalars().all() == ["x", "new"]


def test_a_null_in_a_not_null_column_is_a_null_reject_before_the_copy(
    db: SpatialDatabase,
    scratch: Callable[..., None],
    row_trigger: Callable[[str, str, str], None],
) -> None:
    """The server refused such rows one at a time, found by bisecting each chunk (ten times
    the load's time with one row in a hundred); they are set aside before the COPY, but not
    a row that leaves the column to its DEFAULT, nor where a trigger may fill it."""
    scratch("ingest_required")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_required (id integer PRIMARY KEY, status text NOT NULL, "
                "rank integer NOT NULL DEFAULT 1, geom geometry(POINT, 4326))"
            )
        )
    point = "SRID=4326;POINT(1 2)"
    source: list[dict[str, Any]] = [
        {"id": 1, "status": "a", "rank": 5, "geom": point},
        {"id": 2, "status": None, "rank": 5, "geom": point},
        {"id": 3, "status": "c", "geom": point},  # rank: its DEFAULT
        {"id": 4, "status": "d", "rank": None, "geom": point},
        {"id": 5, "status": None, "rank": None, "geom": None},  # named once, first column
    ]
    report = db.ingest("ingest_required", source)
    assert report.inserted == 2
    assert [(r.row, r.column, r.kind, r.reason) for r in report.rejected] == [
        (2, "status", "null", "NULL in NOT NULL column status"),
        (4, "rank", "null", "NULL in NOT NULL column rank"),
        (5, "status", "null", "NULL in NOT NULL column status"),
    ]
    with db.session() as s:
        stored = s.execute(text("SELECT id, rank FROM ingest_required ORDER BY id")).all()
        assert [tuple(row) for row in stored] == [(1, 5), (3, 1)]
        kept = s.execute(text("SELECT source_row, kind FROM ingest_required_rejected"))
        assert sorted(tuple(row) for row in kept) == [(2, "null"), (4, "null"), (5, "null")]
    strict = [{"id": 11, "status": None, "geom": point}, {"id": 12, "status": "l", "geom": point}]
    raised = db.ingest("ingest_required", strict, on_invalid="raise")  # for geometries only
    assert raised.inserted == 1 and [r.kind for r in raised.rejected] == ["null"]
    row_trigger("ingest_required", "BEFORE INSERT", "NEW.status := coalesce(NEW.status, 'x');")
    filled = db.ingest("ingest_required", [{"id": 6, "status": None, "geom": point}])
    assert (filled.inserted, filled.rejected) == (1, [])
    scratch("ingest_required_parted")  # a partition's trigger fills it too (COPY fires it)
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_required_parted (id integer, status text NOT NULL, "
                "geom geometry(POINT, 4326)) PARTITION BY RANGE (id)"
            )
        )
        s.execute(
            text(
                "CREATE TABLE ingest_required_part PARTITION OF ingest_required_parted "
                "FOR VALUES FROM (0) TO (100)"
            )
        )
    row_trigger("ingest_required_part", "BEFORE INSERT", "NEW.status := 'filled';")
    parted = db.ingest("ingest_required_parted", [{"id": 1, "status": None, "geom": point}])
    assert (parted.inserted, parted.rejected) == (1, [])


def test_text_that_postgresql_or_utf8_cannot_hold_is_a_value_reject_kept_written_out(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """PostgreSQL's text holds no NUL (0x00), and UTF-8 no lone surrogate (json.loads makes
    one of "\\ud800"): a text value with either is set aside before the COPY, and a reject
    whose value holds one is kept with it written \\x00 or \\ud800. Each stopped the
    whole load: the NUL when its reject was stored ("text fields cannot contain NUL"), the
    surrogate at once (UnicodeEncodeError)."""
    scratch("ingest_nul")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_nul (id integer PRIMARY KEY, name text, "
                "tags text[], geom geometry(POINT, 4326))"
            )
        )
    point = "SRID=4326;POINT(1 2)"
    source = [
        {"id": 1, "name": "plain", "geom": point},
        {"id": 2, "name": "cut\x00off", "geom": point},
        {"id": "3\x00", "name": "id", "geom": point},
        {"id": 4, "tags": ["a", "b\x00"], "geom": point},
        {"id": 5, "name": json.loads('"lone \\ud800"'), "geom": point},
        {"id": 6, "tags": [json.loads('"\\udfff"')], "geom": point},
    ]
    report = db.ingest("ingest_nul", source)
    assert report.inserted == 1
    assert [(r.row, r.column, r.kind) for r in report.rejected] == [
        (2, "name", "value"),
        (3, "id", "value"),
        (4, "tags", "server"),  # an array's elements: the server's refusal
        (5, "name", "value"),
        (6, "tags", "value"),
    ]
    assert "cannot hold the NUL character" in report.rejected[0].reason
    with db.session() as s:
        kept = s.execute(
            text("SELECT source_row, original_value FROM ingest_nul_rejected ORDER BY 1")
        ).all()
    stored = [tuple(row) for row in kept]
    assert stored[:2] == [(2, "cut\\x00off"), (3, "3\\x00")]
    assert stored[3:] == [(5, "lone \\ud800"), (6, "['\\udfff']")]


def test_a_source_row_that_stops_the_load_says_how_to_resume_after_the_rows_before(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """A row the checks refuse (a key the table lacks) after chunks committed said nothing
    of them, and a generator's ingest id is made up per run: rerun without it, the rows
    before were loaded again (a duplicate key)."""
    scratch("ingest_stopped")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE ingest_stopped (id int PRIMARY KEY, geom geometry)"))

    def feed() -> Iterator[dict[str, Any]]:
        for n in range(1, 41):
            yield {"id": n, "geom": "POINT(1 1)", **({"bogus": 1} if n == 30 else {})}

    with pytest.raises(ConfigurationError, match="not columns of the target") as stopped:
        db.ingest("ingest_stopped", feed(), chunk_size=10)
    report = stopped.value.ingest_report  # type: ignore[attr-defined]
    assert (
        f"20 rows before it stay committed: rerunning with the same ingest id ({report.ingest_id})"
        in str(stopped.value)
    )
    resumed = db.ingest(
        "ingest_stopped", feed(), chunk_size=10, ingest_id=report.ingest_id, extra_fields="ignore"
    )
    assert (resumed.already_committed, resumed.inserted) == (20, 20)


def test_a_key_first_given_after_the_first_batch_is_loaded_from_there_on(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """Sparse keys (a property few rows have) were refused mid-load when the first batch
    lacked them ("give every row the same keys"), after earlier chunks had committed. The
    rows before the key's first row lack it as any row lacking a key does: the table's
    DEFAULT, or NULL; with on_conflict="update" an existing row keeps its value."""
    scratch("ingest_sparse")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_sparse (id integer PRIMARY KEY, "
                "status text NOT NULL DEFAULT 'new', note text, "
                "geom geometry(POINT, 4326) NOT NULL)"
            )
        )

    def sparse(count: int, given: dict[int, dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for n in range(1, count + 1):
            yield {"id": n, "geom": f"SRID=4326;POINT({n} 0)", **given.get(n, {})}

    given = {4: {"note": "four", "status": "open"}, 7: {"note": "seven"}}
    report = db.ingest("ingest_sparse", sparse(8, given), chunk_size=2)
    assert (report.inserted, report.rejected) == (8, [])
    query = "SELECT id, status, note FROM ingest_sparse ORDER BY id"
    with db.session() as s:
        stored = [tuple(row) for row in s.execute(text(query))]
    assert stored == [
        (1, "new", None),
        (2, "new", None),
        (3, "new", None),
        (4, "open", "four"),
        (5, "new", None),
        (6, "new", None),
        (7, "new", "seven"),
        (8, "new", None),
    ]
    late = {1_200: {"note": "late"}}  # past the first batches of an automatic chunk size
    report = db.ingest("ingest_sparse", sparse(2_000, late), on_conflict="update")
    assert (report.inserted, report.rejected) == (2_000, [])
    with db.session() as s:
        notes = s.execute(text("SELECT id, status, note FROM ingest_sparse WHERE note IS NOT NULL"))
        assert sorted(tuple(row) for row in notes) == [
            (4, "open", "four"),  # kept: its row lacked both keys
            (7, "new", "seven"),
            (1_200, "new", "late"),
        ]
        assert s.execute(text("SELECT count(*) FROM ingest_sparse")).scalar() == 2_000


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": 60_000}, "chunk_size=60000 is not valid: .* from 1 to 50,000"),
        ({"on_invalid": "ignore"}, "on_invalid"),
        ({"on_conflict": "merge"}, "on_conflict"),
        ({"workers": 0}, "workers"),
        ({"srid": -5}, "srid=-5 is not valid: use the SRID"),
        ({"srid": "4326"}, "srid='4326' is not valid"),
        ({"encoding": "klingon"}, "not a known text encoding"),
        ({"extra_fields": "drop"}, r"extra_fields='drop' is not valid.*'ignore'"),
        ({"xy_columns": ("x",)}, "xy_columns=.* is not valid"),
        ({"ingest_id": ""}, "ingest_id='' is not valid: name the load"),  # was a new id
        ({"ingest_id": 42}, "ingest_id=42 is not valid"),
        ({"dry_run": "false"}, "dry_run='false' is not valid: use True or False"),
        ({"create": "no"}, "create='no' is not valid: use True or False"),
    ],
)
def test_invalid_options_fail_before_any_row(
    db: SpatialDatabase, table: str, kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        db.ingest(table, rows(10), **kwargs)
    assert table_state(db)[0] == 0


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--on-conflict", "bogus"], "'bogus': use error, ignore, update"),
        (["--on-invalid", "drop"], "'drop': use quarantine, raise, repair, skip"),
        (["--chunk-size", "100000"], "'100000': use auto, or 1 to 50,000 rows"),
        (["--chunk-size", "-5"], "'-5': use auto, or 1 to 50,000 rows"),
        (["--workers", "0"], "'0': use auto, or 1 to 32 COPY connections"),
    ],
)
def test_cli_options_out_of_range_are_usage_errors_naming_the_flag(
    database_url: str, tmp_path: Path, flags: list[str], needle: str
) -> None:
    """They were the Python API's errors (on_conflict='bogus' ...), and a chunk size over
    50,000 was cut to it unsaid."""
    from typer.testing import CliRunner

    from geosession.cli import app

    path = tmp_path / "few.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}')
    env = {"GEOSESSION_DATABASE_URL": database_url}
    refused = CliRunner().invoke(app, ["ingest", str(path), TABLE, *flags], env=env)
    assert refused.exit_code == 2
    assert needle in " ".join(refused.output.replace("│", " ").split())
    assert flags[0] in refused.output


def test_generated_columns_are_computed_by_the_server_and_refused_from_the_source(
    db: SpatialDatabase, tmp_path: Path, scratch: Callable[..., None]
) -> None:
    scratch("ingest_generated")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_generated (id integer PRIMARY KEY, "
                "geom geometry(POLYGON, 4326) NOT NULL, "
                "area double precision GENERATED ALWAYS AS (ST_Area(geom)) STORED, "
                "label text)"
            )
        )
    square = "SRID=4326;POLYGON((0 0,2 0,2 2,0 2,0 0))"
    assert db.ingest("ingest_generated", [{"id": 1, "geom": square}]).inserted == 1
    assert db.ingest("ingest_generated", [(2, square, "tuple")]).inserted == 1  # no area
    refused = r"has values for 'area' \(GENERATED ALWAYS AS \(\.\.\.\)\): .*Leave them out"
    with pytest.raises(ConfigurationError, match="row 1 " + refused) as error:
        db.ingest("ingest_generated", [{"id": 3, "geom": square, "area": 4.0}])
    assert "identity" not in str(error.value)  # no advice for a column it does not fit
    csv_file = tmp_path / "squares.csv"
    csv_file.write_text(f'id,wkt,area\n4,"{square}",4.0\n')
    with pytest.raises(ConfigurationError, match="squares.csv " + refused):
        db.ingest("ingest_generated", csv_file)
    ignored = db.ingest("ingest_generated", csv_file, extra_fields="ignore")  # as exported
    assert ignored.inserted == 1 and ignored.fields_left_out == {"area"}
    with db.session() as s:
        stored = s.execute(text("SELECT id, area, label FROM ingest_generated ORDER BY id"))
        assert stored.all() == [(1, 4.0, None), (2, 4.0, "tuple"), (4, 4.0, None)]


def test_identity_always_columns_are_numbered_by_the_server_and_refused_from_the_source(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """COPY, unlike INSERT, would store a source's ids in a GENERATED ALWAYS identity
    without advancing its sequence, so the next INSERT would collide with a loaded row."""
    scratch("ingest_identity")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_identity (id integer GENERATED ALWAYS AS IDENTITY "
                "PRIMARY KEY, ref integer GENERATED BY DEFAULT AS IDENTITY, "
                "geom geometry(POINT, 4326) NOT NULL)"
            )
        )
    point = "SRID=4326;POINT(1 2)"
    with pytest.raises(
        ConfigurationError, match=r"row 1 has values for 'id' \(GENERATED ALWAYS AS IDENTITY\)"
    ) as error:
        db.ingest("ingest_identity", [{"id": 1, "geom": point}])
    assert 'ALTER TABLE ... ALTER COLUMN "id" SET GENERATED BY DEFAULT;' in str(error.value)
    assert db.ingest("ingest_identity", [{"geom": point}, {"geom": point}]).inserted == 2
    assert db.ingest("ingest_identity", [(100, point)]).inserted == 1  # ref, geom
    with db.transaction() as s:
        s.execute(text("INSERT INTO ingest_identity (geom) VALUES (ST_Point(0, 0, 4326))"))
        stored = s.execute(text("SELECT id, ref FROM ingest_identity ORDER BY id")).all()
    assert stored == [(1, 1), (2, 2), (3, 100), (4, 101)]  # ref's sequence went past 100


def test_a_required_column_the_source_lacks_is_refused_before_any_row(
    db: SpatialDatabase, scratch: Callable[..., None], row_trigger: Callable[[str, str, str], None]
) -> None:
    """Every row would fail NOT NULL: refused at once, not found one by one as 20,000
    server rejects. A DEFAULT, or a BEFORE INSERT trigger that may fill it, lets the load go on."""
    scratch("ingest_owned")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE ingest_owned (id integer PRIMARY KEY, owner text NOT NULL, "
                "geom geometry(POINT, 4326))"
            )
        )
    source = [{"id": i, "geom": f"SRID=4326;POINT({i} 1)"} for i in range(1, 20_001)]
    with pytest.raises(ConfigurationError, match=r"no values for owner: NOT NULL col") as no:
        db.ingest("ingest_owned", source)
    refused = no.value.ingest_report  # type: ignore[attr-defined]
    assert (refused.rows_read, refused.chunks, refused.rejected) == (0, 0, [])
    row_trigger("ingest_owned", "BEFORE INSERT", "NEW.owner := coalesce(NEW.owner, 'trigger');")
    assert db.ingest("ingest_owned", source[:10]).inserted == 10
    with db.transaction() as s:
        s.execute(text("DROP TRIGGER ingest_owned_trigger_0 ON ingest_owned"))
        s.execute(text("ALTER TABLE ingest_owned ALTER owner SET DEFAULT 'default'"))
    assert db.ingest("ingest_owned", source[10:20]).inserted == 10
    with db.session() as s:
        owners = s.execute(text("SELECT owner, count(*) FROM ingest_owned GROUP BY 1"))
        assert sorted(owners.all()) == [("default", 10), ("trigger", 10)]


def test_a_view_is_loaded_only_through_an_instead_of_insert_trigger(
    db: SpatialDatabase, scratch: Callable[..., None], row_trigger: Callable[[str, str, str], None]
) -> None:
    scratch("ingest_viewed", "ingest_view")  # the views go with the table (CASCADE)
    with db.transaction() as s:
        s.execute(text("CREATE TABLE ingest_viewed (id integer PRIMARY KEY, geom geometry)"))
        s.execute(text("CREATE VIEW ingest_view AS SELECT id, geom FROM ingest_viewed"))
        s.execute(text("CREATE MATERIALIZED VIEW ingest_matview AS SELECT * FROM ingest_viewed"))
    source = [{"id": 1, "geom": "SRID=4326;POINT(1 2)"}]
    for relation, kind in (("ingest_view", "view"), ("ingest_matview", "materialized view")):
        with pytest.raises(ConfigurationError, match=f"is a {kind}, which COPY cannot load"):
            db.ingest(relation, source)
    insert = "INSERT INTO ingest_viewed VALUES (NEW.id, NEW.geom);"
    row_trigger("ingest_view", "INSTEAD OF INSERT", insert)
    assert db.ingest("ingest_view", source).inserted == 1
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM ingest_viewed")).scalar() == 1


def test_rows_a_before_insert_trigger_discards_are_not_counted_inserted(
    db: SpatialDatabase, scratch: Callable[..., None], row_trigger: Callable[[str, str, str], None]
) -> None:
    scratch("ingest_routed")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE ingest_routed (id integer PRIMARY KEY, geom geometry)"))
    row_trigger("ingest_routed", "BEFORE INSERT", "IF NEW.id % 10 = 0 THEN RETURN NULL; END IF;")
    source = [{"id": i, "geom": f"SRID=4326;POINT({i} 0)"} for i in range(-1, 100)]
    source[50]["geom"] = "POINT(nan 0)"  # a reject beside the discarded rows
    report = db.ingest("ingest_routed", source, chunk_size=30)
    assert (report.rows_read, report.inserted, report.discarded) == (101, 90, 10)
    assert [r.row for r in report.rejected] == [51]
    assert re.search(r"not stored: a BEFORE INSERT trigger returned NULL +│ +10 │", str(report))
    assert report.as_dict()["discarded"] == 10
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM ingest_routed")).scalar() == 90


def test_insert_rules_apply_as_they_do_to_an_insert(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """COPY does not apply rules: rows a rule sends to another table (rule-based
    partitioning) stayed in this one. They go through the staging table's INSERT now, and
    a view with a DO INSTEAD rule takes rows as one with an INSTEAD OF trigger does."""
    scratch("ingest_ruled", "ingest_ruled_north")
    with db.transaction() as s:
        s.execute(
            text("CREATE TABLE ingest_ruled (id integer PRIMARY KEY, region text, geom geometry)")
        )
        s.execute(text("CREATE TABLE ingest_ruled_north (LIKE ingest_ruled)"))
        s.execute(
            text(
                "CREATE RULE north AS ON INSERT TO ingest_ruled WHERE NEW.region = 'n' "
                "DO INSTEAD INSERT INTO ingest_ruled_north VALUES (NEW.*)"
            )
        )
        s.execute(text("CREATE VIEW ingest_ruled_view AS SELECT * FROM ingest_ruled"))
        s.execute(
            text(
                "CREATE RULE through AS ON INSERT TO ingest_ruled_view "
                "DO INSTEAD INSERT INTO ingest_ruled VALUES (NEW.*)"
            )
        )
    source = [
        {"id": i, "region": "ns"[i % 2], "geom": f"SRID=4326;POINT({i} 0)"} for i in range(10)
    ]
    assert db.ingest("ingest_ruled", source).inserted == 10
    assert db.ingest("ingest_ruled_view", [{**source[1], "id": 11}]).inserted == 1
    with db.session() as s:
        counts = (
            "SELECT (SELECT count(*) FROM ingest_ruled), (SELECT count(*) FROM ingest_ruled_north)"
        )
        assert s.execute(text(counts)).one() == (6, 5)
    with pytest.raises(ConfigurationError, match="it has rules ON INSERT"):
        db.ingest("ingest_ruled", source, on_conflict="ignore")


def test_deferred_and_exclusion_constraints_reject_only_their_rows(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """A DEFERRABLE INITIALLY DEFERRED foreign key is checked at COMMIT, where no row that
    breaks it can be found: each chunk checks it at each statement. An exclusion constraint (no two
    parcels overlap) rejects the row that overlaps, its column named from the detail."""
    scratch("ingest_owned_by", "ingest_owned_by_rejected", "ingest_owners")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE ingest_owners (id integer PRIMARY KEY)"))
        s.execute(text("INSERT INTO ingest_owners SELECT generate_series(1, 5)"))
        s.execute(
            text(
                "CREATE TABLE ingest_owned_by (id integer PRIMARY KEY, owner integer "
                "REFERENCES ingest_owners DEFERRABLE INITIALLY DEFERRED, "
                "geom geometry(Polygon, 4326), EXCLUDE USING gist (geom WITH &&))"
            )
        )
    source = [
        {"id": n, "owner": n % 5 + 1, "geom": shapely.box(n, 0, n + 0.9, 1)} for n in range(40)
    ]
    source[7]["owner"] = 99
    source[15]["geom"] = shapely.Polygon()  # a client-side reject after row 8, same chunk
    source[30]["geom"] = shapely.box(3.2, 0, 3.4, 1)  # inside row 4's parcel
    report = db.ingest("ingest_owned_by", source, srid=4326, chunk_size=20)
    assert report.inserted == 37
    rejected = [(r.row, r.column, r.kind) for r in report.rejected]
    assert rejected == [(8, "owner", "server"), (16, "geom", "empty"), (31, "geom", "server")]
    assert "is not present in table" in report.rejected[0].reason
    assert "exclusion constraint" in report.rejected[2].reason
    assert "(geom)=(POLYGON ((3.4 0, 3.4 1, 3.2 1, 3.2 0, 3.4 0))) conflicts" in (
        report.rejected[2].reason  # the server's hex EWKB as WKT
    )
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM ingest_owned_by")).scalar() == 37


def test_a_dataframe_of_longitudes_and_latitudes_loads_as_points(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """pandas.read_csv's frame, or an API's records as a DataFrame: its coordinate
    columns were "fields that are not columns" (only a CSV file's made points)."""
    import geopandas
    import pandas as pd

    scratch("frame_points", "frame_points_made")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE frame_points (name text, geom geometry(POINT, 4326))"))
    frame = pd.DataFrame(
        {
            "name": ["a", "b", "c", "d"],
            "Longitude": [10.5, 11.0, np.nan, 200.0],
            "Latitude": [50.25, 51.0, np.nan, 95.0],
        }
    )
    report = db.ingest("frame_points", frame)
    assert report.inserted == 4 and not report.rejected  # geometry, not geography: 200 fits
    assert report.beyond_latitudes == 1  # latitude 95: stored, and counted
    renamed = frame.rename(columns={"Longitude": "e", "Latitude": "n"}).iloc[:2]
    assert db.ingest("frame_points", renamed, xy_columns=("e", "n"), srid=4326).inserted == 2
    texts = pd.DataFrame({"name": ["t", "u"], "lon": ["1.5", "x"], "lat": ["2", "3"]})
    typed = db.ingest("frame_points", texts)
    assert typed.inserted == 1 and [(r.row, r.kind) for r in typed.rejected] == [(2, "unparsable")]
    with db.session() as s:
        stored = s.execute(
            text("SELECT name, ST_AsText(geom) FROM frame_points ORDER BY name, ST_X(geom)")
        ).all()
    assert stored == [
        ("a", "POINT(10.5 50.25)"),
        ("a", "POINT(10.5 50.25)"),
        ("b", "POINT(11 51)"),
        ("b", "POINT(11 51)"),
        ("c", None),
        ("d", "POINT(200 95)"),
        ("t", "POINT(1.5 2)"),
    ]
    made = db.ingest("frame_points_made", frame.iloc[:2], create=True)
    assert made.inserted == 2
    with db.session() as s:
        declared = (
            "SELECT type, srid FROM geometry_columns WHERE f_table_name = 'frame_points_made'"
        )
        assert s.execute(text(declared)).one() == ("POINT", 4326)
    with db.transaction() as s:  # coordinates load as numbers too into columns of their names
        s.execute(text("CREATE TABLE frame_points_kept (lon float8, geom geometry(POINT, 4326))"))
    scratch("frame_points_kept")
    kept = pd.DataFrame({"lon": [1.5], "lat": [2.5]})
    assert db.ingest("frame_points_kept", kept).inserted == 1
    with db.session() as s:
        row = s.execute(text("SELECT lon, ST_AsText(geom) FROM frame_points_kept")).one()
    assert tuple(row) == (1.5, "POINT(1.5 2.5)")
    spatial = geopandas.GeoDataFrame(renamed, geometry=shapely.points([0, 1], [0, 1]), crs=4326)
    with pytest.raises(ConfigurationError, match="the target has a column for it"):
        db.ingest("frame_points", spatial.rename_geometry("geom"), xy_columns=("e", "n"))


def test_coordinates_with_heights_load_as_3d_points(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """A CSV of longitude, latitude and elevation (a GPS log's, or geosession's own export
    of PointZ as coordinates) was refused for a PointZ column: "fields that are not
    columns: 'z'", and without that field every point was a dimension reject."""
    import pandas as pd

    scratch("heights")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE heights (name text, geom geometry(POINTZ, 4326))"))
    path = tmp_path / "track.csv"
    path.write_text("name,lat,lon,ele\na,52.5,13.4,34.5\nb,52.6,13.5,\nc,,,\n")
    report = db.ingest("heights", path)
    assert report.inserted == 2 and [(r.row, r.kind) for r in report.rejected] == [
        (2, "non_finite")  # a height left empty: PostGIS would store NaN
    ]
    assert report.rejected[0].reason.endswith("Z is nan at (13.5 52.6)")
    frame = pd.DataFrame({"name": ["d"], "X": [1.0], "Y": [2.0], "Z": [3.0]})
    assert db.ingest("heights", frame, srid=4326).inserted == 1
    records = [{"name": "e", "lon": 4, "lat": 5, "altitude": 6}, {"name": "f", "h": 7}]
    renamed = [{"name": "f", "e": 8, "n": 9, "h": 10}]
    assert db.ingest("heights", records[:1]).inserted == 1
    assert db.ingest("heights", renamed, xy_columns=("e", "n", "h"), srid=4326).inserted == 1
    exported = tmp_path / "again.csv"
    db.export("SELECT name, geom FROM heights WHERE name = 'a'", exported, coordinates=True)
    assert exported.read_text().splitlines()[0] == '"name","longitude","latitude","z"'
    assert db.ingest("heights", exported).inserted == 1
    with db.session() as s:
        stored = s.execute(text("SELECT name, ST_AsText(geom) FROM heights ORDER BY name, 2"))
        assert stored.all() == [
            ("a", "POINT Z (13.4 52.5 34.5)"),
            ("a", "POINT Z (13.4 52.5 34.5)"),
            ("c", None),
            ("d", "POINT Z (1 2 3)"),
            ("e", "POINT Z (4 5 6)"),
            ("f", "POINT Z (8 9 10)"),
        ]
    with db.transaction() as s:  # a 2D column: heights are a field like any other
        s.execute(
            text("CREATE TABLE heights_flat (name text, ele float8, geom geometry(POINT, 4326))")
        )
    scratch("heights_flat")
    assert db.ingest("heights_flat", path).inserted == 3
    with pytest.raises(ConfigurationError, match="names a z field, 'ele', and the table's"):
        db.ingest("heights_flat", path, xy_columns=("lon", "lat", "ele"))
    with pytest.raises(ConfigurationError, match=r"xy_columns=\('a', 'b', 'a'\) is not valid"):
        db.ingest("heights", path, xy_columns=("a", "b", "a"))
    flat = tmp_path / "flat.csv"  # every point would be a dimension reject: refused up front
    flat.write_text("name,lon,lat,height_m\ng,1,2,3\n")
    with pytest.raises(ConfigurationError, match="lon and lat make 2D points, and the table"):
        db.ingest("heights", flat)
    with pytest.raises(ConfigurationError, match="the first row's coordinates lon and lat"):
        db.ingest("heights", [{"name": "g", "lon": 1, "lat": 2}])
    assert db.ingest("heights", flat, xy_columns=("lon", "lat", "height_m")).inserted == 1


def test_coordinates_into_a_column_with_m_are_refused_before_the_first_row(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """Coordinates give no M: into a PointM or PointZM column every point was a dimension
    reject."""
    import pandas as pd
    import pyarrow as pa

    scratch("measured", "measured_z")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE measured (name text, geom geometry(POINTM, 4326))"))
        s.execute(text("CREATE TABLE measured_z (name text, geom geometry(POINTZM, 4326))"))
    path = tmp_path / "track.csv"
    path.write_text("name,lon,lat,ele\na,13.4,52.5,34.5\n")
    sources = [
        (path, "track.csv's coordinates lon"),
        (pd.DataFrame({"name": ["a"], "lon": [13.4], "lat": [52.5]}), "lon and lat make"),
        ([{"name": "a", "lon": 13.4, "lat": 52.5}], "the first row's coordinates lon and"),
        (pa.table({"name": ["a"], "x": [1.0], "y": [2.0]}), "coordinates x and y make"),
    ]
    for table in ("measured", "measured_z"):
        for source, named in sources:
            with pytest.raises(ConfigurationError, match=named) as refused:
                db.ingest(table, source, srid=4326)
            assert "make points without M, and the table's geometry column has M" in str(
                refused.value
            )
    assert db.ingest("measured", [{"name": "b", "geom": "POINT M (1 2 3)"}]).inserted == 1
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM measured_z")).scalar() == 0


def test_a_gpx_files_elevations_are_the_z_of_a_column_with_z(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """GDAL reads a GPX file's <ele> as a field: into a PointZ or MultiLineStringZ column
    every waypoint and track was a dimension reject (a track's heights are in no field)."""
    scratch("gpx_points", "gpx_flat", "gpx_tracks")
    with db.transaction() as s:
        s.execute(
            text("CREATE TABLE gpx_points (name text, ele float8, geom geometry(POINTZ, 4326))")
        )
        s.execute(text("CREATE TABLE gpx_flat (name text, ele float8, geom geometry(POINT, 4326))"))
        s.execute(
            text("CREATE TABLE gpx_tracks (name text, geom geometry(MULTILINESTRINGZ, 4326))")
        )
    path = tmp_path / "walk.gpx"
    path.write_text(
        '<?xml version="1.0"?>\n<gpx version="1.1" creator="t" '
        'xmlns="http://www.topografix.com/GPX/1/1">\n'
        '<wpt lat="52.5" lon="13.4"><ele>34.5</ele><name>a</name></wpt>\n'
        '<trk><name>t</name><trkseg><trkpt lat="52.5" lon="13.4"><ele>34.5</ele></trkpt>'
        '<trkpt lat="52.6" lon="13.5"><ele>40</ele></trkpt></trkseg></trk>\n</gpx>\n'
    )
    loads = [
        ("gpx_points", "waypoints", "POINT Z (13.4 52.5 34.5)"),
        ("gpx_flat", "waypoints", "POINT(13.4 52.5)"),  # the height stays a field
        ("gpx_tracks", "tracks", "MULTILINESTRING Z ((13.4 52.5 34.5,13.5 52.6 40))"),
    ]
    for table, layer, stored in loads:
        report = db.ingest(table, path, layer=layer, extra_fields="ignore")
        assert (report.inserted, report.rejected) == (1, []), table
        with db.session() as s:
            assert s.execute(text(f"SELECT ST_AsText(geom) FROM {table}")).scalar() == stored
    with db.session() as s:
        assert s.execute(text("SELECT ele FROM gpx_points")).scalar() == 34.5


def test_a_column_constrained_by_checks_gets_its_srid_written(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """AddGeometryColumn(..., use_typmod => false), as PostGIS 1 made every column: a plain
    geometry column whose SRID, type and dimensions are CHECK constraints. The server does
    not stamp the SRID there, and the ingest sent geometries without one: every row was a
    server reject (enforce_srid_geom)."""
    import geopandas

    scratch("checked_points", "checked_curves")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE checked_points (id int)"))
        s.execute(text("CREATE TABLE checked_curves (id int)"))
        s.execute(
            text(
                "SELECT AddGeometryColumn('checked_points', 'geom', 4326, 'POINT', 2, false), "
                "AddGeometryColumn('checked_curves', 'geom', 4326, 'GEOMETRY', 2, false)"
            )
        )
    rows = [
        {"id": 1, "geom": "SRID=4326;POINT(1 2)"},
        {"id": 2, "geom": "POINT(3 4)"},  # no SRID: the column's, counted as assumed
        {"id": 3, "geom": shapely.to_wkb(shapely.Point(5, 6))},  # plain WKB, reused elsewhere
        {"id": 4, "geom": "SRID=3857;POINT(1 2)"},
    ]
    report = db.ingest("checked_points", rows)
    assert report.inserted == 3 and report.srid_assumed == 2
    assert [(r.row, r.kind) for r in report.rejected] == [(4, "srid")]
    path = tmp_path / "points.gpkg"
    geopandas.GeoDataFrame({"id": [5]}, geometry=[shapely.Point(7, 8)], crs=4326).rename_geometry(
        "geom"
    ).to_file(path)
    assert db.ingest("checked_points", path).inserted == 1
    curve = bytes.fromhex(  # CIRCULARSTRING(0 0, 1 1, 2 0) in plain WKB, which GEOS cannot read
        "01080000000300000000000000000000000000000000000000000000000000f03f"
        "000000000000f03f00000000000000400000000000000000"
    )
    assert db.ingest("checked_curves", [{"id": 1, "geom": curve}]).inserted == 1
    with db.session() as s:
        stored = s.execute(text("SELECT id, ST_AsEWKT(geom) FROM checked_points ORDER BY id"))
        assert stored.all() == [
            (1, "SRID=4326;POINT(1 2)"),
            (2, "SRID=4326;POINT(3 4)"),
            (3, "SRID=4326;POINT(5 6)"),
            (5, "SRID=4326;POINT(7 8)"),
        ]
        curved = s.execute(text("SELECT ST_AsEWKT(geom) FROM checked_curves")).scalar()
        assert curved == "SRID=4326;CIRCULARSTRING(0 0,1 1,2 0)"


def test_a_nan_height_is_a_non_finite_reject(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """GEOS's validity check reads x and y alone: a NaN or infinite Z or M was stored."""
    scratch("nan_heights", "nan_measures")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE nan_heights (id int, geom geometry(LINESTRINGZ, 4326))"))
        s.execute(text("CREATE TABLE nan_measures (id int, geom geometry(POINTM, 4326))"))
    values = [
        "SRID=4326;LINESTRING Z (0 0 1, 1 1 NaN)",
        shapely.from_wkt("LINESTRING Z (0 0 inf, 1 1 2)"),
        "SRID=4326;LINESTRING Z (0 0 1, 1 1 2)",
    ]
    rows = [{"id": i, "geom": value} for i, value in enumerate(values)]
    report = db.ingest("nan_heights", rows, srid=4326)
    assert report.inserted == 1
    assert [(r.row, r.kind, r.reason) for r in report.rejected] == [
        (1, "non_finite", "non-finite coordinate (NaN or infinity): Z is nan at (1 1)"),
        (2, "non_finite", "non-finite coordinate (NaN or infinity): Z is inf at (0 0)"),
    ]
    measured = db.ingest("nan_measures", [{"id": 1, "geom": "SRID=4326;POINT M (0 0 NaN)"}])
    assert [(r.kind, r.reason[-17:]) for r in measured.rejected] == [
        ("non_finite", "M is nan at (0 0)")
    ]


def test_an_ingest_leaves_the_processs_warning_filters_as_they_were(
    db: SpatialDatabase,
    scratch: Callable[..., None],
    tmp_path: Path,
    recwarn: pytest.WarningsRecorder,
) -> None:
    """The validating threads each caught warnings (warnings.catch_warnings, which swaps
    the process's filters) while reading a value alone: two at once left an "ignore
    RuntimeWarning" filter in force for good, silencing the application's warnings. GDAL
    layers opened on several threads at once (two loads of files with M values) could
    leave a recorder in place of warnings.showwarning the same way."""
    scratch("overflowing", "measured_files")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE overflowing (id int, geom geometry(POINT, 4326))"))
        s.execute(text("CREATE TABLE measured_files (id int, geom geometry(POINTM, 4326))"))
    filters, showwarning = list(warnings.filters), warnings.showwarning
    rows = (
        {"id": i, "geom": "POINT (1e400 2)" if i % 2 else {"type": "Point", "coordinates": [1, 2]}}
        for i in range(60_000)
    )
    report = db.ingest("overflowing", rows, chunk_size=2000, progress=False)
    assert report.inserted == 30_000 and {r.kind for r in report.rejected} == {"non_finite"}
    assert warnings.filters == filters
    assert not [w for w in recwarn if "overflow" in str(w.message)]  # a non_finite reject
    path = tmp_path / "measured.shp"
    db.export("SELECT 1 AS id, 'SRID=4326;POINT M (1 2 3)'::geometry(POINTM, 4326) AS geom", path)
    with ThreadPoolExecutor(4) as pool:
        loads = [
            pool.submit(db.ingest, "measured_files", path, ingest_id=f"m{n}") for n in range(40)
        ]
        assert sum(load.result().inserted for load in loads) == 40
    assert warnings.filters == filters and warnings.showwarning is showwarning


def test_arrow_data_and_parquet_with_coordinates_load_as_points(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path
) -> None:
    """A polars DataFrame (pl.read_csv's), a pyarrow Table, or a Parquet or Arrow file of
    longitudes and latitudes was refused ("fields that are not columns: 'lon', 'lat'"),
    where a pandas DataFrame of the same made points."""
    import polars as pl
    import pyarrow.feather
    import pyarrow.parquet

    scratch("arrow_points", "arrow_heights")
    with db.transaction() as s:
        s.execute(
            text("CREATE TABLE arrow_points (name text, lat float8, geom geometry(POINT, 4326))")
        )
        s.execute(text("CREATE TABLE arrow_heights (name text, geom geometry(POINTZ, 3857))"))
    frame = pl.DataFrame(
        {"name": ["a", "b", "c"], "lon": [13.4, None, None], "lat": [52.5, None, 1.0]}
    )
    parquet, feather = tmp_path / "points.parquet", tmp_path / "points.feather"
    pyarrow.parquet.write_table(frame.to_arrow(), parquet)
    pyarrow.feather.write_feather(frame.to_arrow(), feather)
    texts = pl.DataFrame({"name": ["t", "u"], "lon": ["1.5", "x"], "lat": ["2", "3"]})
    for source in (frame, frame.to_arrow(), parquet, feather):
        report = db.ingest("arrow_points", source)
        assert report.inserted == 2, source  # a missing longitude: no point
        assert [(r.row, r.reason) for r in report.rejected] == [
            (3, "lon is missing (a point needs lon and lat)")
        ], source
    typed = db.ingest("arrow_points", texts)
    assert typed.inserted == 1 and [(r.row, r.kind) for r in typed.rejected] == [(2, "unparsable")]
    with db.session() as s:
        stored = s.execute(text("SELECT name, lat, ST_AsText(geom) FROM arrow_points"))
        assert sorted(stored.all(), key=str) == sorted(
            [("a", 52.5, "POINT(13.4 52.5)"), ("b", None, None)] * 4 + [("t", 2.0, "POINT(1.5 2)")],
            key=str,
        )
    metres = pl.DataFrame({"name": ["m"], "e": [1.0], "n": [2.0], "h": [3.0]})
    given = db.ingest("arrow_heights", metres, xy_columns=("e", "n", "h"), srid=3857)
    assert given.inserted == 1
    with pytest.raises(ConfigurationError, match="xy_columns=.* the target has a column for it"):
        db.ingest("arrow_points", frame.rename({"lon": "geom"}), xy_columns=("geom", "lat"))


@pytest.mark.parametrize("suffix", [".xlsx", ".ods"])
def test_a_spreadsheet_of_coordinates_loads_as_points(
    db: SpatialDatabase, scratch: Callable[..., None], tmp_path: Path, suffix: str
) -> None:
    """A workbook of places with latitude and longitude columns (a list of stores, of
    stations) was refused as a file of no supported kind; GDAL reads each sheet as a
    layer of fields, whose coordinates make points as a CSV's do."""
    import pandas as pd
    import pyogrio

    scratch("sheet_points", "sheet_made")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE sheet_points (name text, geom geometry(POINT, 4326))"))
    places = pd.DataFrame({"name": ["Berlin", "Paris"], "lat": [52.52, 48.85], "lon": [13.4, 2.35]})
    path = tmp_path / f"places{suffix}"
    driver = {".xlsx": "XLSX", ".ods": "ODS"}[suffix]
    pyogrio.write_dataframe(places, path, driver=driver, layer="cities")
    pyogrio.write_dataframe(places.iloc[:1], path, driver=driver, layer="capitals", append=True)
    with pytest.raises(ConfigurationError, match="capitals.*cities|cities.*capitals"):
        db.ingest("sheet_points", path)  # two sheets: which one is for the load to be told
    assert db.ingest("sheet_points", path, layer="cities").inserted == 2
    report = db.ingest("sheet_made", path, layer="capitals", create=True)
    assert report.inserted == 1
    with db.session() as s:
        stored = s.execute(text("SELECT name, ST_AsEWKT(geom) FROM sheet_points ORDER BY name"))
        assert stored.all() == [
            ("Berlin", "SRID=4326;POINT(13.4 52.52)"),
            ("Paris", "SRID=4326;POINT(2.35 48.85)"),
        ]
        made = "SELECT type, srid FROM geometry_columns WHERE f_table_name = 'sheet_made'"
        assert s.execute(text(made)).one() == ("POINT", 4326)


def test_dict_rows_with_coordinates_load_as_points(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """An API's records ({"name": ..., "lat": ..., "lon": ...}) were refused: "fields that
    are not columns: 'lon'"."""
    scratch("row_points")
    with db.transaction() as s:
        s.execute(
            text("CREATE TABLE row_points (name text, lat float8, geom geometry(POINT, 4326))")
        )
    records = [
        {"name": "a", "lat": 50.5, "lon": 10},
        {"name": "b", "lat": "51", "lon": "11.5"},  # text, as some APIs send numbers
        {"name": "c"},  # no place: a NULL geometry
        {"name": "d", "lat": 1, "lon": "x"},
    ]
    report = db.ingest("row_points", records)
    assert report.inserted == 3 and [(r.row, r.kind) for r in report.rejected] == [
        (4, "unparsable")
    ]
    given = db.ingest("row_points", [{"name": "e", "E": 5, "N": 6}], xy_columns=("E", "N"))
    assert given.inserted == 1
    with pytest.raises(ConfigurationError, match="not columns of the target: 'foo';"):
        db.ingest("row_points", [{"name": "f", "foo": 1, "lat": 1, "lon": 2}])
    with db.session() as s:
        stored = s.execute(text("SELECT name, lat, ST_AsText(geom) FROM row_points ORDER BY name"))
        assert stored.all() == [
            ("a", 50.5, "POINT(10 50.5)"),
            ("b", 51.0, "POINT(11.5 51)"),
            ("c", None, None),
            ("e", None, "POINT(5 6)"),
        ]


def test_a_geometry_field_of_another_usual_name_lands_in_the_geometry_column(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """A DataFrame's WKT column or a record's the_geom key was "not a column of the
    target" (a CSV's WKT column and an Arrow field named geometry landed there)."""
    import pandas as pd

    scratch("named_geometries")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE named_geometries (name text, geom geometry(POINT, 4326))"))
    frame = pd.DataFrame({"name": ["a"], "WKT": ["POINT(1 2)"]})
    assert db.ingest("named_geometries", frame, srid=4326).inserted == 1
    records = [{"name": "b", "the_geom": "SRID=4326;POINT(3 4)"}, {"name": "c"}]
    named = db.ingest("named_geometries", records)
    assert named.inserted == 2 and not named.geometry_fields_found  # found by its name
    api = [{"name": "d", "footprint": {"type": "Point", "coordinates": [5, 6]}}]
    report = db.ingest("named_geometries", api)  # its one key of geometries
    assert report.inserted == 1 and report.geometry_fields_found == {"footprint"}
    with db.session() as s:
        stored = s.execute(text("SELECT name, ST_AsText(geom) FROM named_geometries ORDER BY 1"))
        assert stored.all() == [
            ("a", "POINT(1 2)"),
            ("b", "POINT(3 4)"),
            ("c", None),
            ("d", "POINT(5 6)"),
        ]
    with pytest.raises(ConfigurationError, match="not columns of the target: 'colour'"):
        db.ingest("named_geometries", [{"name": "e", "colour": "red"}])  # no geometries


def test_a_dry_run_reports_the_load_and_keeps_nothing(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """Every chunk is written (so the server's refusals count too) and rolled back: no
    rows, no rejects table, no ledger entry; the load itself then does the same."""
    scratch("dry_parcels")
    with db.transaction() as s:
        s.execute(
            text(
                "CREATE TABLE dry_parcels (id integer PRIMARY KEY CHECK (id < 50), "
                "geom geometry(POLYGON, 4326))"
            )
        )
    source = [{"id": row["id"], "geom": row["geom"]} for row in rows(60, start=0)]
    source[5]["geom"] = "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"  # a bow-tie
    tried = db.ingest("dry_parcels", source, srid=4326, chunk_size=25, dry_run=True)
    assert (tried.rows_read, tried.inserted, len(tried.rejected)) == (60, 49, 11)
    assert tried.dry_run and "would be inserted" in str(tried) and "rolled back" in str(tried)
    assert [(r.row, r.column, r.kind) for r in tried.rejected[:2]] == [
        (6, "geom", "invalid"),
        (51, "id", "server"),  # the CHECK constraint's one column
    ]
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM dry_parcels")).scalar() == 0
        assert s.execute(text("SELECT to_regclass('dry_parcels_rejected')")).scalar() is None
    loaded = db.ingest("dry_parcels", source, srid=4326, chunk_size=25)  # makes the ledger
    assert (loaded.inserted, len(loaded.rejected)) == (49, 11)
    with db.session() as s:
        entries = "SELECT count(*) FROM geosession_ingest_ledger WHERE ingest_id = :id"
        assert s.execute(text(entries), {"id": tried.ingest_id}).scalar() == 0
    with pytest.raises(ConfigurationError, match="dry_run=True tries a load into an existing"):
        db.ingest("dry_new", source, create=True, dry_run=True)


def test_curves_load_into_columns_that_take_them(
    db: SpatialDatabase, scratch: Callable[..., None]
) -> None:
    """A cadastre's arcs (CurvePolygon WKB, as GDAL reads them from a GeoPackage) were
    `unparsable` rejects even into a curve column: shapely cannot hold them. They go
    through as they came where the column takes curves (a plain geometry column gets the
    source's SRID), and stay refused, saying to make them linear, elsewhere."""
    scratch("arcs", "arcs_any", "arcs_linear")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE arcs (id integer, geom geometry(CURVEPOLYGON, 4326))"))
        s.execute(text("CREATE TABLE arcs_any (id integer, geom geometry)"))
        s.execute(text("CREATE TABLE arcs_linear (id integer, geom geometry(POLYGON, 4326))"))
        curve = "CURVEPOLYGON(CIRCULARSTRING(0 0, 1 1, 2 0, 1 -1, 0 0))"
        wkb = s.execute(text(f"SELECT ST_AsBinary('{curve}'::geometry)")).scalar()  # ISO
        ewkb = s.execute(text(f"SELECT ST_AsEWKB('SRID=4326;{curve}'::geometry)")).scalar()
    source = [
        {"id": 1, "geom": bytes(wkb)},
        {"id": 2, "geom": bytes(ewkb).hex()},  # hex EWKB, as text
        {"id": 3, "geom": shapely.box(0, 0, 1, 1)},  # a Polygon: the column refuses it
    ]
    report = db.ingest("arcs", source, srid=4326)
    assert report.inserted == 2 and [(r.row, r.kind) for r in report.rejected] == [(3, "server")]
    assert db.ingest("arcs_any", source[:1], srid=4326).inserted == 1
    linear = db.ingest("arcs_linear", source[:2], srid=4326)
    assert [r.kind for r in linear.rejected] == ["unparsable", "unparsable"]
    assert "make it linear first" in linear.rejected[0].reason
    moved = db.ingest("arcs", source[:1], srid=3857, reproject=True)
    assert [r.kind for r in moved.rejected] == ["srid"]
    assert "cannot be reprojected on the client" in moved.rejected[0].reason
    with db.session() as s:
        stored = "SELECT ST_AsEWKT(geom) FROM {} ORDER BY id"
        arcs = s.execute(text(stored.format("arcs"))).scalars().all()
        assert arcs == [f"SRID=4326;{curve}".replace(", ", ",")] * 2
        (anywhere,) = s.execute(text(stored.format("arcs_any"))).scalars().all()
        assert anywhere.startswith("SRID=4326;CURVEPOLYGON")  # the source's SRID, stamped


def test_missing_table_is_a_clear_error(db: SpatialDatabase) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        db.ingest("no_such_table", [])


def test_a_url_as_the_source_says_how_to_read_it(
    db: SpatialDatabase, table: str, database_url: str, monkeypatch: Any
) -> None:
    """It was a missing file named 'https:/example.org/...' (a Path's single slash)."""
    from typer.testing import CliRunner

    from geosession.cli import app

    url = "https://example.org/parcels.geojson"
    for source in (url, Path(url)):
        with pytest.raises(ConfigurationError, match=f"cannot ingest {url}: sources are local"):
            db.ingest(table, source)
    with pytest.raises(ConfigurationError, match="aws s3 cp"):
        db.ingest(table, "s3://bucket/parcels.parquet")
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    refused = CliRunner().invoke(app, ["ingest", url, table])
    assert refused.exit_code == 2 and "curl" in refused.output  # the message boxed by typer


def test_a_file_given_last_is_not_taken_for_the_table(
    db: SpatialDatabase, table: str, tmp_path: Path, database_url: str, monkeypatch: Any
) -> None:
    """`ingest a.geojson b.geojson` with the table forgotten loaded a.geojson into a table
    named b.geojson (schema b) or failed on that schema; b.geojson was never read."""
    from typer.testing import CliRunner

    from geosession.cli import app

    first, second = tmp_path / "a.geojson", tmp_path / "b.geojson"
    for path in (first, second):
        path.write_text('{"type": "FeatureCollection", "features": []}')
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    refused = CliRunner().invoke(app, ["ingest", "a.geojson", "b.geojson", "--create"])
    shown = " ".join(refused.output.replace("│", " ").split())
    assert refused.exit_code == 2, refused.output
    assert "'b.geojson', the last argument, is a file" in shown
    assert "(geosession ingest a.geojson b.geojson TABLE)" in shown
    with db.session() as session:
        assert session.execute(text("SELECT to_regnamespace('b')")).scalar() is None
    loaded = CliRunner().invoke(app, ["ingest", "a.geojson", "b.geojson", table, "--create"])
    assert loaded.exit_code == 0, loaded.output


@pytest.mark.parametrize("name", ["parcels.gpkg", "parcels.geojson", "parcels.csv"])
def test_a_file_of_no_bytes_is_refused_by_name(
    db: SpatialDatabase, table: str, tmp_path: Path, name: str
) -> None:
    """A download that failed leaves an empty file: GDAL called it "not recognized as
    being in a supported file format", and create=True made a CSV's table of no columns."""
    path = tmp_path / name
    path.touch()
    with pytest.raises(ConfigurationError, match=r"parcels\.\w+ is empty \(0 bytes\)"):
        db.ingest(table, path)
    with pytest.raises(ConfigurationError, match="is empty"):
        db.ingest("from_nothing", str(path), create=True)
    with db.session() as s:
        assert s.execute(text("SELECT to_regclass('from_nothing')")).scalar() is None


def test_geojson_lines_of_no_features_load_no_rows(
    db: SpatialDatabase, table: str, tmp_path: Path
) -> None:
    """An export of no rows to GeoJSON Lines is a file of 0 bytes: no features, not a
    broken file (GDAL refuses to open it); it has no fields to create a table from."""
    path = tmp_path / "none.geojsonl"
    path.touch()
    report = db.ingest(table, path, progress=False)
    assert (report.rows_read, report.inserted, report.completed) == (0, 0, True)
    with pytest.raises(ConfigurationError, match=r"none\.geojsonl is empty .* create the table"):
        db.ingest("from_nothing", path, create=True)
    with db.session() as s:
        assert s.execute(text("SELECT to_regclass('from_nothing')")).scalar() is None


def test_cli_ingest_of_a_geopackage_resumes_by_default(
    db: SpatialDatabase, database_url: str, table: str, tmp_path: Any, monkeypatch: Any
) -> None:
    import geopandas
    from typer.testing import CliRunner

    from geosession.cli import app

    frame = geopandas.GeoDataFrame(
        {"id": range(1, 2_001), "name": [f"f{i}" for i in range(1, 2_001)]},
        geometry=list(synthetic_polygons(2_000, seed=3)),
        crs="EPSG:4326",
    )
    frame.loc[99, "geometry"] = shapely.from_wkt("POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))")
    path = tmp_path / "parcels.gpkg"
    frame.to_file(path, layer="parcels", driver="GPKG")
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    first = CliRunner().invoke(app, ["ingest", str(path), table])
    assert first.exit_code == 0, first.output
    assert "1,999" in first.output and "Self-intersection" in first.output
    again = CliRunner().invoke(app, ["ingest", str(path), table])
    assert again.exit_code == 0, again.output
    assert "already committed (resumed)" in again.output
    said = " ".join(again.output.split())  # a changed --srid would load nothing either
    assert "Nothing to load: an earlier run of this load (ingest id cli-" in said
    assert "committed all 2,000 rows" in said and "pass another --ingest-id" in said
    assert table_state(db)[:2] == (1_999, 1_999)


def test_cli_loads_each_layer_into_its_own_table(
    db: SpatialDatabase,
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
    scratch: Callable[..., None],
) -> None:
    """'{layer}' as the table loads a whole GeoPackage (and files of one layer, named
    after the file), as ogr2ogr does: each layer with features into its own table, its
    name laundered; empty layers are said and skipped; running it again resumes each."""
    import geopandas
    import pandas as pd
    import pyogrio
    from typer.testing import CliRunner

    from geosession.cli import app

    scratch("cli_points", "cli_road_segments_2024", "cli_roads", "cli_empty")
    points = geopandas.GeoDataFrame(
        {"n": [1, 2]}, geometry=shapely.points([0, 1], [0, 1]), crs=4326
    )
    roads = geopandas.GeoDataFrame(
        {"name": ["a"]}, geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=4326
    )
    package = tmp_path / "city.gpkg"
    points.to_file(package, layer="Points")
    roads.to_file(package, layer="Road Segments-2024")
    points.iloc[:0].to_file(package, layer="empty")
    pyogrio.write_dataframe(pd.DataFrame({"code": [1, 2]}), package, layer="lookup")
    roads.to_file(tmp_path / "roads.shp")
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    command = ["ingest", str(package), str(tmp_path / "roads.shp"), "cli_{layer}", "--create"]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    said = " ".join(first.output.split())  # an attribute table was passed over unsaid
    assert f"Layers not loaded: {package} (empty, empty), {package} (lookup, no geometries)" in (
        said
    )
    assert "3 loads" in first.output and f"{package} (Road Segments-2024)" in first.output
    with db.session() as s:
        counts = [
            s.execute(text(f"SELECT count(*) FROM {name}")).scalar()
            for name in ("cli_points", "cli_road_segments_2024", "cli_roads")
        ]
    assert counts == [2, 1, 1]
    again = CliRunner().invoke(app, [*command, "--json"])
    assert again.exit_code == 0, again.output
    loads = json.loads(again.stdout)
    assert [(load["layer"], load["already_committed"]) for load in loads] == [
        ("Points", 2),
        ("Road Segments-2024", 1),
        (None, 1),
    ]
    one = CliRunner().invoke(app, ["ingest", str(package), "cli_{layer}", "--layer", "Points"])
    assert one.exit_code == 0 and "already committed (resumed)" in one.output
    with_id = CliRunner().invoke(app, [*command, "--ingest-id", "x"])
    assert with_id.exit_code != 0 and "several files or" in with_id.output


def test_a_file_loaded_again_without_an_ingest_id_resumes_and_a_changed_one_loads(
    db: SpatialDatabase, table: str, tmp_path: Path
) -> None:
    """db.ingest names a file's load by the file (path, size, modification time), the
    table and the filters, as the CLI does; rows and streams get a new id each run."""
    import geopandas

    def write(count: int) -> None:
        polygons = list(synthetic_polygons(count, seed=7))
        frame = geopandas.GeoDataFrame({"id": range(count)}, geometry=polygons, crs=4326)
        frame.to_file(path, driver="GeoJSON")

    path = tmp_path / "parcels.geojson"
    write(300)
    first = db.ingest(table, path, chunk_size=100)
    again = db.ingest(table, str(path))
    assert (first.inserted, again.inserted, again.already_committed) == (300, 0, 300)
    assert first.ingest_id == again.ingest_id and first.ingest_id.startswith("file-")
    filtered = db.ingest(table, path, where="id < 10", on_conflict="ignore")
    assert filtered.ingest_id != first.ingest_id  # other filters: another load
    assert (filtered.inserted, filtered.already_committed, filtered.conflicts) == (0, 0, 10)
    write(305)  # a changed file: a new load
    changed = db.ingest(table, path, on_conflict="ignore")
    assert changed.ingest_id != first.ingest_id
    assert (changed.inserted, changed.conflicts) == (5, 300)
    assert (
        db.ingest(table, rows(2, start=900)).ingest_id
        != db.ingest(table, rows(2, start=902)).ingest_id
    )
    assert table_state(db)[:2] == (309, 309)


def test_csv_geometry_column_by_name_or_by_option(
    db: SpatialDatabase, database_url: str, table: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """A CSV from QGIS or PostGIS names its geometry column the_geom (found in any case);
    any other name is given with wkt_column / --wkt-column, or found by its values when
    it is the one field no column takes."""
    from typer.testing import CliRunner

    from geosession.cli import app

    polygons = list(synthetic_polygons(6, seed=5))
    lines = [f'{i},"{p.wkt}"' for i, p in enumerate(polygons, start=1)]
    found = tmp_path / "found.csv"
    found.write_text("id,The_Geom\n" + "\n".join(lines[:2]) + "\n")
    assert db.ingest(table, found).inserted == 2
    outlined = tmp_path / "outlined.csv"
    outlined.write_text("id,outline\n" + "\n".join(lines[2:4]) + "\n")
    assert db.ingest(table, outlined).inserted == 2  # WKT values, and no geom field
    named = tmp_path / "named.csv"
    named.write_text("id,outline,note\n" + "\n".join(f"{line},POINT(0 0)" for line in lines[4:]))
    with pytest.raises(ConfigurationError, match=r"fields that are not columns .*'outline'"):
        db.ingest(table, named)  # two fields of WKT: no guess
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    loaded = CliRunner().invoke(
        app,
        ["ingest", str(named), table, "--wkt-column", "outline", "--ignore-extra-fields"],
    )
    assert loaded.exit_code == 0, loaded.output
    with db.session() as s:
        stored = s.execute(text(f"SELECT id, ST_AsText(geom) FROM {TABLE} ORDER BY id")).all()
    assert [(i, shapely.from_wkt(w)) for i, w in stored] == list(enumerate(polygons, start=1))
    with pytest.raises(
        ConfigurationError, match=r"wkt_column='outline' names the geometry column of a CSV"
    ):
        db.ingest(table, rows(3), wkt_column="outline")


def test_geoparquet_loads_exactly_and_resumes_from_the_cli(
    db: SpatialDatabase, database_url: str, table: str, tmp_path: Path, monkeypatch: Any
) -> None:
    import geopandas
    from typer.testing import CliRunner

    from geosession.cli import app

    frame = geopandas.GeoDataFrame(
        {"id": range(1, 3_001), "name": [f"p{i}" for i in range(1, 3_001)]},
        geometry=list(synthetic_polygons(3_000)),
        crs="EPSG:4326",
    )
    path = tmp_path / "parcels.parquet"
    frame.to_parquet(path)
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    first = CliRunner().invoke(app, ["ingest", str(path), table])
    assert first.exit_code == 0, first.output
    assert table_state(db) == (3_000, 3_000, source_checksum(3_000))
    again = CliRunner().invoke(app, ["ingest", str(path), table])
    assert again.exit_code == 0 and "already committed (resumed)" in again.output
    frame.to_crs(3857).to_parquet(path)
    with pytest.raises(ConfigurationError, match=r"CRS is EPSG:3857, but column geom"):
        db.ingest(table, path)


def test_cli_defer_indexes_option(
    db: SpatialDatabase, database_url: str, table: str, tmp_path: Any, monkeypatch: Any
) -> None:
    import geopandas
    from typer.testing import CliRunner

    from geosession.cli import app

    frame = geopandas.GeoDataFrame(
        {"id": range(1, 101)}, geometry=list(synthetic_polygons(100, seed=4)), crs="EPSG:4326"
    )
    path = tmp_path / "parcels.gpkg"
    frame.to_file(path, layer="parcels", driver="GPKG")
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    kept = CliRunner().invoke(app, ["ingest", str(path), table, "--defer-indexes", "no"])
    assert kept.exit_code == 0, kept.output
    assert "indexes built after the load" not in kept.output
    with db.transaction() as s:
        s.execute(text(f"TRUNCATE {TABLE}"))
    rebuilt = CliRunner().invoke(app, ["ingest", str(path), table, "--ingest-id", "again"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert f"{TABLE}_geom_idx" in rebuilt.output and "rebuilding indexes, ANALYZE" in rebuilt.output
    wrong = CliRunner().invoke(app, ["ingest", str(path), table, "--defer-indexes", "maybe"])
    assert wrong.exit_code == 2 and "use auto, yes or no" in wrong.output


def test_every_column_type_round_trips_with_nulls(db: SpatialDatabase) -> None:
    import datetime as dt
    import uuid

    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS typed"))
        s.execute(
            text(
                "CREATE TABLE typed (a int2, b int4, c int8, d float4, e float8, f bool, g text, "
                "h varchar(20), i bytea, j numeric, k date, l uuid, m timestamptz, "
                "geom geometry(POINT, 4326))"
            )
        )
    source = [
        (1, 2, 3, 1.5, 2.25, True, "é ü", "v", b"\x00\x01", None, None, None, None, "POINT(1 2)"),
        (None, None, None, None, None, None, None, None, None, None, None, None, None, None),
        (-1, -2, 2**40, -0.5, 1e300, False, "", "x" * 20, b"", 1, None, None, None, "POINT(3 4)"),
    ]
    fancy = (
        7,
        7,
        7,
        7.0,
        7.0,
        True,
        "t",
        "t",
        b"t",
        12.5,
        dt.date(2024, 2, 29),
        uuid.UUID(int=7),
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        "POINT(5 6)",
    )
    try:
        assert db.ingest("typed", [*source, fancy]).inserted == 4
        with db.session() as s:
            stored = s.execute(
                text("SELECT *, ST_AsText(geom) FROM typed ORDER BY b NULLS FIRST")
            ).all()
        assert [row[:9] for row in stored] == [
            (None, None, None, None, None, None, None, None, None),
            (-1, -2, 2**40, -0.5, 1e300, False, "", "x" * 20, b""),
            (1, 2, 3, 1.5, 2.25, True, "é ü", "v", b"\x00\x01"),
            (7, 7, 7, 7.0, 7.0, True, "t", "t", b"t"),
        ]
        assert stored[3][9:13] == fancy[9:13]
        assert [row[-1] for row in stored] == [None, "POINT(3 4)", "POINT(1 2)", "POINT(5 6)"]
    finally:
        with db.transaction() as s:
            s.execute(text("DROP TABLE IF EXISTS typed, typed_rejected"))


def test_source_batches_stay_small_until_the_rows_size_is_known() -> None:
    """Several batches are in flight at once (read ahead, validated two at a time), so for
    large geometries they must hold a few chunks' worth, not 5,000 rows each."""
    from geosession.ingest.chunk_reader import batch_rows
    from geosession.ingest.chunking import MAX_CHUNK_BYTES, make_sizer

    sizer = make_sizer("auto", None)
    assert batch_rows(sizer) == 500
    sizer.observe_bytes(500, 500 * 32_000)  # 32 kB polygons
    assert batch_rows(sizer) == MAX_CHUNK_BYTES // 32_000 == 131
    small = make_sizer("auto", None)
    small.observe_bytes(500, 500 * 200)  # 200-byte polygons
    assert batch_rows(small) == 5_000  # at most
    assert batch_rows(make_sizer(2_000, None)) == 2_000  # a size the caller chose


def test_automatic_chunks_are_capped_by_their_encoded_size() -> None:
    from geosession.ingest.chunking import MAX_CHUNK_BYTES, make_sizer

    sizer = make_sizer("auto", "30s")
    sizer.observe(sizer.size, 0.01)  # fast: the next chunk may double
    assert sizer.size == 10_000
    sizer.observe_bytes(10_000, 10_000 * 1_000)  # 1 kB per row: 4 MB hold 4,194 rows
    assert sizer.size == sizer.row_limit == MAX_CHUNK_BYTES // 1_000
    sizer.observe(sizer.size, 0.001)
    assert sizer.size == MAX_CHUNK_BYTES // 1_000  # growing stops at the cap
    fixed = make_sizer(20_000, "30s")
    fixed.observe_bytes(20_000, 20_000 * 1_000)
    assert fixed.size == 20_000  # a size the caller chose is kept


@pytest.mark.parametrize("quiet_after", [3, 500])  # 500: just after a full first batch
def test_flush_interval_commits_what_a_quiet_source_gave(
    db: SpatialDatabase, table: str, quiet_after: int
) -> None:
    release = threading.Event()
    committed_while_quiet: list[int] = []

    def trickle() -> Iterator[dict[str, Any]]:
        source = rows(quiet_after + 2)
        yield from itertools.islice(source, quiet_after)
        assert release.wait(30), "never released"
        yield from source

    def watch() -> None:
        committed_while_quiet.append(watch_for_rows(db, quiet_after))
        release.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    report = db.ingest(table, trickle(), flush_interval=0.2)
    watcher.join()
    assert committed_while_quiet == [quiet_after]  # committed while the source was waiting
    assert (report.inserted, report.chunks) == (quiet_after + 2, 2)
    assert table_state(db) == (quiet_after + 2, quiet_after + 2, source_checksum(quiet_after + 2))


def test_async_flush_interval_commits_what_a_quiet_async_source_gave(
    db: SpatialDatabase, table: str
) -> None:
    async def main() -> tuple[int, IngestReport]:
        release = asyncio.Event()

        async def trickle() -> AsyncIterator[dict[str, Any]]:
            source = rows(5)
            for row in itertools.islice(source, 3):
                yield row
            await asyncio.wait_for(release.wait(), 30)
            for row in source:
                yield row

        task = asyncio.create_task(db.async_ingest(table, trickle(), flush_interval=0.2))
        quiet = await asyncio.to_thread(watch_for_rows, db, 3)
        release.set()
        return quiet, await task

    committed_while_quiet, report = asyncio.run(main())
    assert committed_while_quiet == 3
    assert (report.inserted, report.chunks) == (5, 2)
    assert table_state(db) == (5, 5, source_checksum(5))


@pytest.mark.parametrize("interval", [0, -1.0, float("nan"), "5", True])
def test_flush_interval_must_be_positive_seconds(
    db: SpatialDatabase, table: str, interval: Any
) -> None:
    with pytest.raises(ConfigurationError, match=r"flush_interval=.* is not valid"):
        db.ingest(table, rows(1), flush_interval=interval)


def test_flush_interval_hands_over_every_row_exactly_once(db: SpatialDatabase, table: str) -> None:
    """Many hand-overs in the middle of trips to the loop and of batches: none lost or doubled."""
    sync = db.ingest(table, trickling_rows(6_000), flush_interval=0.02, chunk_size=1_000)
    assert sync.inserted == 6_000 and sync.chunks > 6  # some cut by time
    assert table_state(db) == (6_000, 6_000, source_checksum(6_000))
    create_table(db)
    report = asyncio.run(
        db.async_ingest(table, async_rows(6_000, pause_every=150), flush_interval=0.02)
    )
    assert report.inserted == 6_000 and report.chunks > 6
    assert table_state(db) == (6_000, 6_000, source_checksum(6_000))


def trickling_rows(count: int) -> Iterator[dict[str, Any]]:
    """rows(count), pausing now and then as a live feed does."""
    for row in rows(count):
        if row["id"] % 150 == 0:
            time.sleep(0.02)
        yield row


def test_async_ingest_failing_while_its_source_is_quiet_raises_its_own_error(
    db: SpatialDatabase, table: str
) -> None:
    """The source's trip in flight is ended before the generator is closed, so the
    ingest's error comes out, not 'aclose(): asynchronous generator is already running'."""

    async def main() -> None:
        release = asyncio.Event()

        async def bad_then_quiet() -> AsyncIterator[dict[str, Any]]:
            for row in rows(10):
                yield {**row, "geom": BAD_VALUES["invalid"]} if row["id"] == 5 else row
            await release.wait()  # a feed with nothing more for now

        try:
            with pytest.raises(InvalidGeometry, match="Row 5"):
                await asyncio.wait_for(
                    db.async_ingest(
                        table, bad_then_quiet(), on_invalid="raise", flush_interval=0.2
                    ),
                    timeout=20,
                )
        finally:
            release.set()

    asyncio.run(main())
    assert table_state(db)[0] == 4  # the rows before the bad one
    assert not ingest_threads()


def test_ingest_failing_while_its_source_is_quiet_does_not_wait_for_the_next_row(
    db: SpatialDatabase, table: str
) -> None:
    release = threading.Event()

    def bad_then_quiet() -> Iterator[dict[str, Any]]:
        for row in rows(10):
            yield {**row, "geom": BAD_VALUES["invalid"]} if row["id"] == 5 else row
        release.wait(30)  # a feed with nothing more for now

    started = time.monotonic()
    try:
        with pytest.raises(InvalidGeometry, match="Row 5"):
            db.ingest(table, bad_then_quiet(), on_invalid="raise", flush_interval=0.2)
        assert time.monotonic() - started < 10, "the ingest waited for the source's next row"
    finally:
        release.set()  # the pulling thread, waiting in the source, can now end
    assert table_state(db)[0] == 4  # the rows before the bad one
    deadline = time.monotonic() + 5
    while ingest_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
