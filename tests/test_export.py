"""db.export_geojson / db.export / geosession export: valid files, complete or absent."""

from __future__ import annotations

import bz2
import decimal
import gzip
import io
import logging
import lzma
import math
import os
import signal
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from geojson_pydantic import Feature, FeatureCollection
from sqlalchemy import text
from typer.testing import CliRunner

from geosession import (
    ConfigurationError,
    DatabaseError,
    ExportFailed,
    InvalidGeometry,
    SpatialDatabase,
    SRIDMismatch,
)
from geosession.cli import app
from tests.faults.helpers import wait_until
from tests.test_stream import ROWS, tables  # noqa: F401 (the module's tables, as there)

pytestmark = pytest.mark.usefixtures("tables")


def load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def test_feature_collection_is_valid_rfc7946(db: SpatialDatabase, tmp_path: Path) -> None:
    out = tmp_path / "parcels.geojson"
    result = db.export_geojson("SELECT * FROM rd_parcels ORDER BY id", out)
    assert result.features == ROWS and result.path == str(out)
    document = load(out)
    collection = FeatureCollection.model_validate(document)  # RFC 7946 structure
    assert len(collection.features) == ROWS and "crs" not in document
    first = document["features"][0]
    assert first["properties"] == {
        "id": 1,
        "name": "parcel 1",
        "value": 0.25,  # numeric as a JSON number
        "seen": "2024-01-02",  # dates as ISO 8601
        "uid": "00000000-0000-0000-0000-000000000001",
        "meta": {"n": 1},
    }
    assert document["features"][16]["geometry"] is None  # id 17: NULL geometry
    assert [p.name for p in tmp_path.iterdir()] == ["parcels.geojson"]  # no temporary left


def test_polygons_follow_the_right_hand_rule_whichever_way_they_are_stored(
    db: SpatialDatabase,
) -> None:
    """RFC 7946: exterior rings counterclockwise, holes clockwise. A Shapefile's polygons
    turn the other way, and were written as stored, which d3 and other spherical renderers
    draw as the rest of the globe."""
    clockwise = "POLYGON((0 0, 0 10, 10 10, 10 0, 0 0), (2 2, 4 2, 4 4, 2 4, 2 2))"
    sql = f"SELECT 1 AS id, ST_GeomFromText('{clockwise}', 4326) AS geom"
    collection = orjson.loads(b"".join(db.iter_geojson(sql)))
    line = orjson.loads(b"".join(db.iter_geojson(sql, newline_delimited=True)))
    (streamed,) = db.stream(sql, output="geojson")
    for geometry in (collection["features"][0]["geometry"], line["geometry"], streamed["geometry"]):
        polygon = shapely.geometry.shape(geometry)
        assert shapely.is_ccw(polygon.exterior) and not shapely.is_ccw(polygon.interiors[0])


def test_geojson_lines_and_file_objects(db: SpatialDatabase, tmp_path: Path) -> None:
    out = tmp_path / "parcels.geojsonl"
    db.export_geojson("SELECT id, geom FROM rd_parcels", out, newline_delimited=True)
    lines = out.read_bytes().splitlines()
    assert len(lines) == ROWS
    assert all(Feature.model_validate(orjson.loads(line)) for line in lines[:50])
    sink = io.BytesIO()
    db.export_geojson("SELECT id, geom FROM rd_parcels WHERE id <= 3", sink, precision=3)
    document = orjson.loads(sink.getvalue())
    ring = document["features"][0]["geometry"]["coordinates"][0]
    assert all(len(repr(x).split(".")[-1]) <= 3 for point in ring for x in point)


def test_columns_named_as_the_queries_own_aliases_are_properties(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """ST_AsGeoJSON took the row as "f", the alias of the subquery, so a column named f
    was taken instead ("function st_asgeojson(double precision, ...) does not exist")."""
    query = "SELECT id, 1.5::float8 AS f, 2 AS q, 'x' AS source, geom FROM rd_parcels"
    out = tmp_path / "aliased.geojson"
    db.export_geojson(f"{query} WHERE id <= 2 ORDER BY id", out)
    features = orjson.loads(out.read_bytes())["features"]
    assert [f["properties"] for f in features] == [
        {"id": n, "f": 1.5, "q": 2, "source": "x"} for n in (1, 2)
    ]
    chunks = db.iter_geojson(f"{query} WHERE id = 3", pages_by="id")
    assert orjson.loads(b"".join(chunks))["features"][0]["properties"]["f"] == 1.5


def test_coordinates_are_transformed_to_wgs84(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    out = tmp_path / "metric.geojson"
    db.export_geojson("SELECT * FROM rd_metric WHERE id <= 100", out)
    features = load(out)["features"]
    rows = admin.execute(
        "SELECT id, ST_AsBinary(ST_Transform(geom, 4326)) FROM rd_metric WHERE id <= 100 "
        "ORDER BY id"
    ).fetchall()
    by_id = {f["properties"]["id"]: f["geometry"] for f in features}
    for key, wkb in rows:
        if wkb is None:
            assert by_id[key] is None
            continue
        exported = shapely.geometry.shape(by_id[key])
        assert exported.equals_exact(shapely.from_wkb(wkb), 1e-12)


def test_empty_result_is_an_empty_collection(db: SpatialDatabase, tmp_path: Path) -> None:
    out = tmp_path / "none.geojson"
    assert db.export_geojson("SELECT * FROM rd_parcels WHERE id < 0", out).features == 0
    assert load(out) == {"type": "FeatureCollection", "features": []}


def test_round_trip_through_ingest(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    out = tmp_path / "trip.geojson"
    db.export_geojson("SELECT id, name, geom FROM rd_parcels WHERE geom IS NOT NULL", out)
    admin.execute(
        "DROP TABLE IF EXISTS rd_trip; "
        "CREATE TABLE rd_trip (id int PRIMARY KEY, name text, geom geometry(Polygon, 4326))"
    )
    report = db.ingest("rd_trip", out)
    assert report.inserted == ROWS - 1 and not report.rejected
    same = admin.execute(
        "SELECT count(*) FROM rd_trip t JOIN rd_parcels p USING (id) "
        "WHERE t.name = p.name AND ST_Equals(t.geom, p.geom) AND t.geom ~= p.geom"
    ).fetchone()
    assert same is not None and same[0] == ROWS - 1
    admin.execute("DROP TABLE rd_trip")


def test_bad_destination_fails_before_the_query(db: SpatialDatabase, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        db.export_geojson("SELECT * FROM rd_parcels", tmp_path / "missing" / "x.geojson")
    with pytest.raises(ConfigurationError, match="is a directory"):
        db.export_geojson("SELECT * FROM rd_parcels", tmp_path)
    with pytest.raises(ConfigurationError, match="format='kml'"):
        db.export("SELECT * FROM rd_parcels", tmp_path / "x.kml", format="kml")
    with pytest.raises(ConfigurationError, match="no geometry column"):
        db.export_geojson("SELECT * FROM rd_plain", tmp_path / "plain.geojson")
    with pytest.raises(ConfigurationError, match="RFC 7946"):
        db.export_geojson(
            "SELECT * FROM rd_parcels", tmp_path / "t.geojson", geometry="transform:3857"
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".fgb", ".shp", ".parquet", ".csv"])
def test_failure_mid_export_leaves_no_partial_file(
    db: SpatialDatabase, tmp_path: Path, suffix: str
) -> None:
    """The server's error, not GDAL's "Error while accessing batch from stream"."""
    out = tmp_path / f"boom{suffix}"
    out.write_text("previous complete export")
    with pytest.raises(DatabaseError, match="division by zero"):
        db.export(
            "SELECT id, geom, 1 / (id - 2900) AS boom FROM rd_parcels ORDER BY id",
            out,
            batch_size=500,
        )
    assert out.read_text() == "previous complete export"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    assert db.pool_stats().checked_out == 0


@pytest.mark.parametrize(
    "suffix", [".geojson", ".geojsonl", ".gpkg", ".fgb", ".shp", ".parquet", ".csv"]
)
def test_progress_is_a_bar_a_function_or_nothing(
    db: SpatialDatabase, tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As for db.ingest, progress=True shows a bar on stderr (cleared at the end); a
    function is told the features written so far; anything else is refused up front."""
    seen: list[int] = []
    out = tmp_path / f"p{suffix}"
    result = db.export("SELECT * FROM rd_metric", out, progress=seen.append, batch_size=700)
    assert result.features == ROWS and seen[-1] == ROWS and len(seen) >= ROWS // 700
    assert seen == sorted(seen)
    for shown in (True, False):
        assert db.export("SELECT * FROM rd_metric", out, progress=shown).features == ROWS
    assert capsys.readouterr().out == ""
    out.unlink()
    with pytest.raises(ConfigurationError, match=r"progress='yes' is not True, False or a func"):
        db.export("SELECT * FROM rd_metric", out, progress="yes")
    assert not out.exists() and db.pool_stats().checked_out == 0


@pytest.mark.parametrize("suffix", [".gpkg", ".fgb"])
def test_a_layers_type_not_declared_by_a_column_is_the_one_its_rows_have(
    db: SpatialDatabase, tmp_path: Path, suffix: str
) -> None:
    """An expression's column and an envelope declare no type: the layer's is the one
    type of all the rows, else Unknown. A later chunk of another type used to break a
    FlatGeobuf export (GDAL refused the row) and mislabel a GeoPackage layer."""
    mixed = (
        "SELECT g AS id, ST_SetSRID(CASE WHEN g > 1500 THEN ST_MakePoint(g, 0) "
        "ELSE ST_Buffer(ST_MakePoint(g, 0), 1) END, 3857) AS geom FROM generate_series(1, 2000) g"
    )
    series = "FROM generate_series(1, 900) g"
    expected = {
        (mixed, "envelope"): ("Unknown", {"Polygon": 1500, "Point": 500}),
        (mixed, "full"): ("Unknown", {"Polygon": 1500, "Point": 500}),
        (mixed + " WHERE g <= 1500", "full"): ("Polygon", {"Polygon": 1500}),
        (mixed + " WHERE g > 1500", "envelope"): ("Point", {"Point": 500}),
        (f"SELECT g AS id, ST_SetSRID(ST_MakePoint(g, g, g), 3857) AS geom {series}", "full"): (
            "Point Z",
            {"Point": 900},
        ),
    }
    for number, ((query, projection), (declared, kinds)) in enumerate(expected.items()):
        out = tmp_path / f"layer{number}{suffix}"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # GDAL warns of rows unlike the declared type
            db.export(query, out, geometry=projection, batch_size=400)
            info = pyogrio.read_info(out)
            frame = pyogrio.read_dataframe(out)
        assert (info["geometry_type"], info["features"]) == (declared, sum(kinds.values()))
        assert frame.geom_type.value_counts().to_dict() == kinds, (query, projection)


def test_a_column_named_fid_stays_when_the_type_is_learnt_through_a_geopackage(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """A FlatGeobuf file of an undeclared type is written through a GeoPackage, where an
    integer fid became the feature id and was left out of the copy (repeats failed)."""
    query = "SELECT g % 3 AS fid, g AS n, ST_Buffer(ST_MakePoint(g, 0), 1) AS geom "
    query += "FROM generate_series(1, 7) g"
    db.export(query, tmp_path / "fid.fgb")
    frame = pyogrio.read_dataframe(tmp_path / "fid.fgb").sort_values("n")
    assert frame.fid.tolist() == [1, 2, 0, 1, 2, 0, 1]


@pytest.mark.parametrize("suffix", [".gpkg", ".fgb"])
def test_geometries_of_srid_0_make_a_layer_without_a_crs_and_no_warning(
    db: SpatialDatabase, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"unknown{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        db.export("SELECT g AS id, ST_MakePoint(g, g) AS geom FROM generate_series(1, 5) g", out)
    info = pyogrio.read_info(out)
    assert (info["crs"], info["features"], info["geometry_type"]) == (None, 5, "Point")


def test_an_export_to_a_url_says_it_writes_local_files(db: SpatialDatabase) -> None:
    for url in ("s3://bucket/parcels.gpkg", "https://example.org/parcels.geojson"):
        with pytest.raises(ConfigurationError, match=f"cannot write {url}: exports write local"):
            db.export("SELECT 1 AS id, ST_Point(0, 0, 4326) AS geom", url)


MIXED_SRIDS = (
    "SELECT g AS id, ST_SetSRID(ST_MakePoint(g, g), CASE WHEN g < 4000 THEN 4326 ELSE 3857 END) "
    "AS geom FROM generate_series(1, 5000) g ORDER BY g"
)
"""A column that declares no SRID, its first 3,999 rows in 4326 and the rest in 3857."""


def test_geometries_of_several_srids_in_one_column_are_refused_not_labelled_one(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """A file's layer, a frame's or an Arrow column has one CRS: the first rows' was given
    to all, so the 3857 points were written as degrees. Later batches count too."""
    out = tmp_path / "mixed.gpkg"
    with pytest.raises(SRIDMismatch, match=r"SRID 4326 and 3857.*transform:4326"):
        db.export(MIXED_SRIDS, out, batch_size=1_000)
    assert not out.exists()
    with pytest.raises(SRIDMismatch, match="declares no SRID"):
        list(db.stream_frames(MIXED_SRIDS, batch_size=1_000))
    with (
        pytest.raises(SRIDMismatch, match="declares no SRID"),
        db.stream_arrow(MIXED_SRIDS, batch_size=1_000) as arrow,
    ):
        arrow.read_all()
    moved = db.export(MIXED_SRIDS, out, geometry="transform:4326")
    assert moved.features == 5_000 and pyogrio.read_info(out)["crs"] == "EPSG:4326"
    mixed_with_unknown = MIXED_SRIDS.replace("3857", "0")  # SRID 0 says nothing: no conflict
    assert len(pd_concat(db.stream_frames(mixed_with_unknown, batch_size=1_000))) == 5_000


def pd_concat(frames: Iterator[Any]) -> Any:
    import pandas

    return pandas.concat(list(frames))


LAMBERT = "+proj=lcc +lat_1=40 +lat_2=50 +lat_0=45 +lon_0=10 +ellps=GRS80 +units=m +no_defs"
"""A CRS without an EPSG code, added to spatial_ref_sys as SRID 910001 (above 2**19,
where the column's type modifier needs PostGIS's sign handling to read back)."""


@pytest.fixture
def non_epsg_tables(admin: psycopg.Connection[Any]) -> Iterator[dict[str, Any]]:
    """A table in SRID 102003 (ESRI's USA Contiguous Albers, shipped in PostGIS's
    spatial_ref_sys), and one in an SRID a user added."""
    import pyproj

    admin.execute("DELETE FROM spatial_ref_sys WHERE srid = 910001")
    admin.execute(
        "INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, proj4text) "
        "VALUES (910001, 'local', 910001, %s)",
        (LAMBERT,),
    )
    for table, srid in (("rd_esri", 102003), ("rd_local", 910001)):
        admin.execute(f"DROP TABLE IF EXISTS {table}")
        admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, geom geometry(Point, {srid}))")
        admin.execute(
            f"INSERT INTO {table} SELECT g, ST_SetSRID(ST_MakePoint(g * 1000, g * 500), {srid}) "
            "FROM generate_series(1, 5) g"
        )
    yield {"rd_esri": pyproj.CRS("ESRI:102003"), "rd_local": pyproj.CRS(LAMBERT)}
    admin.execute("DROP TABLE rd_esri, rd_local")
    admin.execute("DELETE FROM spatial_ref_sys WHERE srid = 910001")


def test_an_srid_that_is_not_an_epsg_code_exports_with_its_crs(
    db: SpatialDatabase, tmp_path: Path, non_epsg_tables: dict[str, Any]
) -> None:
    """The CRS comes from the database's spatial_ref_sys (authority and code, else the
    definition), not from EPSG:<srid>, which PROJ does not know for these. A longitude and
    latitude bbox is bent by the projection: the world's held nothing in a conic one."""
    import geopandas
    import pyproj

    for table, expected in non_epsg_tables.items():
        for suffix in (".gpkg", ".fgb"):
            out = tmp_path / f"{table}{suffix}"
            db.export(f"SELECT * FROM {table}", out)
            info = pyogrio.read_info(out)
            assert info["features"] == 5, out.name
            assert pyproj.CRS(info["crs"]).equals(expected, ignore_axis_order=True), out.name
        db.export(f"SELECT * FROM {table}", tmp_path / f"{table}.parquet")
        assert geopandas.read_parquet(tmp_path / f"{table}.parquet").crs.equals(expected)
        empty = tmp_path / f"{table}_empty.gpkg"
        db.export(f"SELECT * FROM {table} WHERE id < 0", empty)
        assert pyproj.CRS(pyogrio.read_info(empty)["crs"]).equals(expected), table
        db.export(f"SELECT * FROM {table}", tmp_path / f"{table}.csv")
        assert len((tmp_path / f"{table}.csv").read_text().splitlines()) == 6
        frame = geopandas.pd.concat(db.stream_frames(f"SELECT * FROM {table}"))
        assert frame.crs.equals(expected) and len(frame) == 5, table
        stored = db.stream(f"SELECT id, geom FROM {table} WHERE id = 1")
        assert [row.geom.x for row in stored] == [1000.0]
    world, elsewhere = tmp_path / "world.geojson", tmp_path / "elsewhere.geojson"
    assert db.export("SELECT * FROM rd_esri", world, bbox=(-180, -90, 180, 90)).features == 5
    assert db.export("SELECT * FROM rd_esri", elsewhere, bbox=(0, 0, 10, 10)).features == 0
    untyped = tmp_path / "untyped.gpkg"  # no typmod: the rows' SRID, read as ESRI's code
    db.export("SELECT id, geom::geometry AS geom FROM rd_esri", untyped)
    assert pyproj.CRS(pyogrio.read_info(untyped)["crs"]).equals(non_epsg_tables["rd_esri"])


def test_what_a_geopackage_cannot_hold_is_said_and_leaves_no_file(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """Names that differ only in case are refused before a row is written; a column named
    fid becomes the feature id when it is an integer (so its values must be unique), and
    is an ordinary field otherwise. An existing GeoPackage stays as it was."""
    out = tmp_path / "parcels.gpkg"
    with pytest.raises(ConfigurationError, match=r"'Name' and 'name' differ only in case"):
        db.export('SELECT id AS "Name", name, geom FROM rd_parcels', out)
    assert not out.exists()
    with pytest.raises(ConfigurationError, match=r"differ only in case.*or cast the geometry"):
        db.export('SELECT id AS "Name", name, geom::geometry FROM rd_parcels', tmp_path / "a.fgb")
    db.export("SELECT 'parcel ' || id AS fid, geom FROM rd_parcels", out, layer="named")
    assert pyogrio.read_dataframe(out, layer="named").fid[0] == "parcel 1"
    with pytest.raises(ExportFailed, match=r"UNIQUE.*Column fid becomes the GeoPackage's"):
        db.export("SELECT id % 3 AS fid, geom FROM rd_parcels", out, layer="repeats")
    assert pyogrio.list_layers(out)[:, 0].tolist() == ["named"]  # as it was
    assert [p.name for p in tmp_path.iterdir()] == ["parcels.gpkg"]


@pytest.fixture
def dimension_tables(admin: psycopg.Connection[Any]) -> Iterator[None]:
    rows = {
        "rd_z": ("GeometryZ", ["POINT Z (1 2 3)", "LINESTRING Z (0 0 1, 1 1 2)"]),
        "rd_m": ("PointM", ["POINT M (1 2 3)"]),
        "rd_zm": ("PointZM", ["POINT ZM (1 2 3 4)"]),
    }
    for table, (kind, values) in rows.items():
        admin.execute(f"DROP TABLE IF EXISTS {table}")
        admin.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, geom geometry({kind}, 4326))")
        for value in values:
            admin.execute(
                f"INSERT INTO {table} (geom) VALUES (ST_GeomFromText(%s, 4326))", (value,)
            )
    yield
    admin.execute("DROP TABLE " + ", ".join(rows))


@pytest.mark.usefixtures("dimension_tables")
def test_z_and_m_values_are_declared_and_kept(db: SpatialDatabase, tmp_path: Path) -> None:
    """FlatGeobuf writes the dimensions its header declares for every row, so a layer of
    several types with Z is declared Unknown with Z (it was 2D, and lost every Z), and M
    types are declared under GDAL's names (they failed to export)."""
    import sqlite3

    def stored(path: Path) -> list[str]:
        return [g.wkt for g in pyogrio.read_dataframe(path).geometry]

    for suffix in (".gpkg", ".fgb"):
        out = tmp_path / f"z{suffix}"
        db.export("SELECT * FROM rd_z ORDER BY id", out)
        assert sorted(stored(out)) == ["LINESTRING Z (0 0 1, 1 1 2)", "POINT Z (1 2 3)"]
        mixed = tmp_path / f"mixed{suffix}"  # an expression: the rows tell the type
        db.export(
            "SELECT id, CASE WHEN id = 1 THEN ST_Force2D(geom) ELSE geom END AS geom "
            "FROM rd_z UNION ALL SELECT 3, 'SRID=4326;POINT Z (5 6 7)'",
            mixed,
        )
        kept = {"LINESTRING Z (0 0 1, 1 1 2)", "POINT Z (5 6 7)"}
        assert kept < set(stored(mixed)), suffix  # the 2D point may read back with Z 0
        for table, declared in (("rd_m", "PointM"), ("rd_zm", "Measured 3D Point")):
            out = tmp_path / f"{table}{suffix}"
            db.export(f"SELECT * FROM {table}", out)
            with pytest.warns(UserWarning, match=f"Original type '{declared}'"):
                assert pyogrio.read_info(out)["features"] == 1  # pyogrio reads no M
    with sqlite3.connect(tmp_path / "rd_zm.gpkg") as package:  # pyogrio reads no M: WKB
        (blob,) = package.execute("SELECT geom FROM rd_zm").fetchone()
        envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(blob[3] >> 1) & 7]
        assert shapely.from_wkb(blob[8 + envelope :]).wkt == "POINT ZM (1 2 3 4)"
    with sqlite3.connect(tmp_path / "mixed.gpkg") as package:
        declared = package.execute("SELECT geometry_type_name, z, m FROM gpkg_geometry_columns")
        assert declared.fetchall() == [("GEOMETRY", 2, 0)]  # some rows have Z
    points = tmp_path / "points.fgb"  # geometry(GeometryZ) whose rows are all points
    db.export("SELECT * FROM rd_z WHERE GeometryType(geom) = 'POINT'", points)
    assert pyogrio.read_info(points)["geometry_type"] == "Point Z"


def test_file_formats_need_a_path_but_geoparquet_streams(
    db: SpatialDatabase, runner: CliRunner
) -> None:
    """GeoPackage, FlatGeobuf and Shapefiles are finished in place after the rows, so a
    file object or standard output is refused before the query, saying which formats can.
    GeoParquet, whose footer comes last, is written to either (it was refused)."""
    for kind in ("gpkg", "fgb", "shp"):
        with pytest.raises(ConfigurationError, match="needs a file path.*csv, parquet or arrow"):
            db.export("SELECT * FROM no_such_table", io.BytesIO(), format=kind)
    done = runner.invoke(app, ["export", "rd_parcels", "-", "--format", "gpkg"])
    assert done.exit_code != 0 and "or standard output" in str(done.exception)
    sink = io.BytesIO()
    assert db.export("rd_parcels", sink, format="parquet").features == ROWS
    import geopandas

    sink.seek(0)
    frame = geopandas.read_parquet(sink)
    assert len(frame) == ROWS and frame.crs.to_epsg() == 4326
    piped = runner.invoke(app, ["export", "rd_parcels", "-", "--format", "parquet"])
    assert piped.exit_code == 0 and piped.stdout_bytes.startswith(b"PAR1")
    with pytest.raises(ConfigurationError, match="dest is a text stream: pass a binary one"):
        db.export("rd_parcels", io.StringIO())  # was TypeError: string argument expected


def test_arrays_of_any_type_are_json_text(db: SpatialDatabase, tmp_path: Path) -> None:
    """numeric[] (Decimals), inet[], interval[] and bytea[] failed in the text formats
    (orjson writes none of them); numerics are JSON numbers, the others their text."""
    query = (
        "SELECT ARRAY[1.5, 2, 3.25]::numeric[] AS na, ARRAY['10.0.0.1'::inet] AS ips, "
        "ARRAY['ab'::bytea] AS bys, 'SRID=4326;POINT(1 2)'::geometry(Point, 4326) AS geom"
    )
    for suffix in (".csv", ".gpkg", ".fgb"):
        out = tmp_path / f"arrays{suffix}"
        db.export(query, out)
        row = pyogrio.read_dataframe(out).iloc[0] if suffix != ".csv" else None
        text = out.read_text() if suffix == ".csv" else None
        expected = ("[1.5,2,3.25]", '["10.0.0.1"]', '["\\\\x6162"]')
        if row is not None:
            assert (row["na"], row["ips"], row["bys"]) == expected, suffix
        else:
            assert '"[1.5,2,3.25]"' in str(text) and '"[""10.0.0.1""]"' in str(text)


def test_spatial_index_can_be_left_out(
    db: SpatialDatabase, tmp_path: Path, runner: CliRunner
) -> None:
    """Quicker to write, and FlatGeobuf's index (built in memory by GDAL) is memory that
    grows with the features."""
    for suffix in (".gpkg", ".fgb"):
        for indexed in (True, False):
            out = tmp_path / f"{'with' if indexed else 'without'}{suffix}"
            db.export("SELECT * FROM rd_metric WHERE geom IS NOT NULL", out, spatial_index=indexed)
            info = pyogrio.read_info(out)
            assert info["features"] > ROWS - 5
            assert info["capabilities"]["fast_spatial_filter"] is indexed, out.name
    out = tmp_path / "cli.fgb"
    done = runner.invoke(app, ["export", "rd_metric", str(out), "--no-spatial-index"])
    assert done.exit_code == 0, done.output
    assert not pyogrio.read_info(out)["capabilities"]["fast_spatial_filter"]
    with pytest.raises(
        ConfigurationError, match=r"spatial_index=False \(--no-spatial-index\) is for"
    ):
        db.export("SELECT * FROM rd_metric", tmp_path / "x.parquet", spatial_index=False)
    assert not (tmp_path / "x.parquet").exists()


def test_a_null_or_empty_geometry_leaves_flatgeobufs_index_out(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """FlatGeobuf's index cannot hold either (GDAL refused an empty one mid-export)."""
    for odd in ("NULL", "'POLYGON EMPTY'"):
        out = tmp_path / "odd.fgb"
        db.export(
            f"SELECT id, CASE WHEN id = 7 THEN {odd} ELSE geom END::geometry(Polygon, 3857) "
            "AS geom FROM rd_metric WHERE geom IS NOT NULL",
            out,
        )
        info = pyogrio.read_info(out)
        assert info["features"] > ROWS - 5 and not info["capabilities"]["fast_spatial_filter"]
        frame = pyogrio.read_dataframe(out)
        seventh = frame.geometry[frame["id"] == 7].iloc[0]
        assert seventh is None or seventh.is_empty, odd


CURVES = {
    1: "CURVEPOLYGON Z (CIRCULARSTRING Z (0 0 1, 4 0 2, 4 4 3, 0 4 2, 0 0 1))",
    2: "CURVEPOLYGON Z (COMPOUNDCURVE Z (CIRCULARSTRING Z (0 0 0, 2 0 0, 2 1 0, 2 3 0, 4 3 0), "
    "(4 3 0, 4 5 0, 1 4 0, 0 0 0)))",
    3: "POLYGON Z ((10 10 0, 11 10 0, 11 11 0, 10 10 0))",  # a linear one among them
    4: None,
}


@pytest.fixture
def curve_table(admin: psycopg.Connection[Any]) -> Iterator[str]:
    """A cadastre's parcels with arcs (CurvePolygon Z, EPSG:2154), one linear, one NULL."""
    admin.execute("DROP TABLE IF EXISTS ex_curves, ex_curves_back")
    admin.execute("CREATE TABLE ex_curves (id int PRIMARY KEY, geom geometry(GeometryZ, 2154))")
    for key, wkt in CURVES.items():
        admin.execute("INSERT INTO ex_curves VALUES (%s, ST_GeomFromText(%s, 2154))", (key, wkt))
    yield "ex_curves"
    admin.execute("DROP TABLE IF EXISTS ex_curves, ex_curves_back, ex_curves_back_rejected")


def test_curves_go_to_geopackage_and_flatgeobuf_as_they_are(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path, curve_table: str
) -> None:
    """GDAL writes the curves shapely cannot hold: they leave as they came (a declared
    CurvePolygon layer; several types, Unknown with Z), and a GeoPackage of them loads
    back equal to the table."""
    declared = f"SELECT id, geom::geometry(CurvePolygonZ, 2154) AS geom FROM {curve_table} "
    declared += "WHERE id IN (1, 2)"
    for query, kind in ((declared, "Curve Polygon"), (f"SELECT * FROM {curve_table}", None)):
        for suffix in (".gpkg", ".fgb"):
            out = tmp_path / f"curves{suffix}"
            db.export(query, out)
            info = pyogrio.read_info(out)
            assert info["crs"] == "EPSG:2154"
            frame = pyogrio.read_dataframe(out, read_geometry=False)
            assert sorted(frame["id"]) == ([1, 2] if kind else [1, 2, 3, 4]), out
            written = subprocess.run(
                ["ogrinfo", "-al", "-q", str(out)], capture_output=True, text=True, check=True
            ).stdout
            assert "CURVEPOLYGON Z (CIRCULARSTRING Z (0 0 1,4 0 2,4 4 3,0 4 2,0 0 1))" in written
            assert "CURVEPOLYGON Z (COMPOUNDCURVE Z (CIRCULARSTRING Z" in written
            out.unlink()
    for suffix in (".gpkg", ".fgb"):  # the FlatGeobuf's NULL: GDAL's Arrow reader fails it
        package = tmp_path / f"all{suffix}"
        db.export(f"SELECT * FROM {curve_table}", package)
        admin.execute("DROP TABLE IF EXISTS ex_curves_back, ex_curves_back_rejected")
        admin.execute(
            "CREATE TABLE ex_curves_back (id int PRIMARY KEY, geom geometry(GeometryZ, 2154))"
        )
        assert db.ingest("ex_curves_back", package).inserted == 4
        differing = admin.execute(
            f"SELECT count(*) FROM {curve_table} a JOIN ex_curves_back b USING (id) "
            "WHERE ST_AsEWKB(a.geom) IS DISTINCT FROM ST_AsEWKB(b.geom)"
        ).fetchone()
        assert differing == (0,), suffix
    with pytest.raises(InvalidGeometry, match="GeoPackage and FlatGeobuf exports write them"):
        db.export(f"SELECT * FROM {curve_table}", tmp_path / "curves.parquet")


def test_a_flatgeobuf_export_with_null_geometries_loads_back(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GDAL's Arrow reader gives an invalid geometry column for a FlatGeobuf batch holding
    a NULL geometry (a file without an index, as an export with NULLs writes): the load
    failed with "SystemError: Negative size passed to PyBytes_FromStringAndSize". Such a
    batch is read again through GDAL's feature API, with a warning."""
    out = tmp_path / "nulls.fgb"
    nulled = "CASE WHEN id % 7 = 0 THEN NULL ELSE geom END"
    db.export(f"SELECT id, {nulled} AS geom FROM rd_metric", out)
    admin.execute("DROP TABLE IF EXISTS ex_nulls_back, ex_nulls_back_rejected")
    caplog.set_level(logging.WARNING, "geosession.ingest.gdal_batches")
    try:
        assert db.ingest("ex_nulls_back", out, create=True).inserted == ROWS
        same = admin.execute(
            "SELECT count(*) FROM rd_metric a JOIN ex_nulls_back b USING (id) WHERE "
            f"ST_AsEWKB(b.geom) IS NOT DISTINCT FROM ST_AsEWKB({nulled.replace('geom', 'a.geom')})"
        ).fetchone()
        assert same == (ROWS,)
    finally:
        admin.execute("DROP TABLE IF EXISTS ex_nulls_back, ex_nulls_back_rejected")
    assert "read again through GDAL's feature API" in caplog.text


def test_gdal_formats_get_times_to_the_millisecond_and_never_a_sixtieth_second(
    db: SpatialDatabase, admin: Any, tmp_path: Path
) -> None:
    """GDAL keeps times to the millisecond and rounded the rest: 12:59:59.9996 was written
    as 12:59:60 into a GeoPackage and a Shapefile, and infinity (datetime.max) as year
    10000, whose ingest then crashed in pyarrow (date value out of range)."""
    query = (
        "SELECT 1 AS id, '2020-01-01 12:59:59.9996+00'::timestamptz AS t, "
        "'2020-12-31 23:59:59.9997'::timestamp AS ts, '23:59:59.9998'::time AS tod, "
        "'infinity'::timestamptz AS until, ST_Point(1, 2, 4326) AS geom"
    )
    for suffix in (".gpkg", ".shp", ".fgb"):
        out = tmp_path / f"times{suffix}"
        db.export(query, out)
        [row] = pyogrio.read_dataframe(out, datetime_as_string=True).to_dict("records")
        assert row["t"].startswith("2020-01-01T12:59:59.999"), suffix
        assert row["ts"].startswith("2020-12-31T23:59:59.999"), suffix
        assert row["until"].startswith("9999-12-31T23:59:59.999"), suffix
    package = tmp_path / "times.gpkg"
    with sqlite3.connect(package) as written:  # as exports before wrote the last instant
        triggers = written.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        for (name,) in triggers.fetchall():  # the R-tree's, which call GDAL's functions
            written.execute(f'DROP TRIGGER "{name}"')
        written.execute("UPDATE times SET until = '9999-12-31T23:59:60.000Z'")
    admin.execute(
        "CREATE TABLE ex_times_back (id int PRIMARY KEY, t timestamptz, ts timestamp, "
        "tod time, until timestamptz, geom geometry(Point, 4326))"
    )
    try:
        report = db.ingest("ex_times_back", package)
        [reject] = report.rejected
        assert (reject.row, reject.column, reject.kind) == (1, "until", "value")
        assert "a year after 9999, which Python's dates and times cannot hold" in reject.reason
    finally:
        admin.execute("DROP TABLE IF EXISTS ex_times_back, ex_times_back_rejected")


def test_geopackage_and_flatgeobuf(db: SpatialDatabase, tmp_path: Path) -> None:
    for suffix, kind in ((".gpkg", "gpkg"), (".fgb", "fgb")):
        out = tmp_path / f"parcels{suffix}"
        result = db.export("SELECT * FROM rd_metric", out, format=kind, batch_size=1000)
        assert result.features == ROWS
        info = pyogrio.read_info(out)
        assert info["features"] == ROWS and info["crs"] == "EPSG:3857"
        frame = pyogrio.read_dataframe(out)
        assert sorted(frame["id"]) == list(range(1, ROWS + 1))
    typed = tmp_path / "typed.gpkg"
    db.export("SELECT *, '\\x0102'::bytea AS blob FROM rd_parcels WHERE id <= 10", typed)
    info = pyogrio.read_info(typed)
    assert dict(zip(info["fields"], info["ogr_types"], strict=True)) == {
        "id": "OFTInteger",
        "name": "OFTString",
        "value": "OFTReal",
        "seen": "OFTDate",
        "uid": "OFTString",
        "meta": "OFTString",
        "blob": "OFTBinary",
    }
    assert (info["geometry_name"], info["geometry_type"], info["crs"]) == (
        "geom",
        "Polygon",
        "EPSG:4326",
    )
    frame = pyogrio.read_dataframe(typed)
    assert frame.loc[0, "uid"] == "00000000-0000-0000-0000-000000000001"
    assert frame.loc[0, "value"] == 0.25 and frame.loc[0, "meta"] == '{"n": 1}'
    assert frame.loc[0, "blob"] == b"\x01\x02"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "parcels.fgb",
        "parcels.gpkg",
        "typed.gpkg",
    ]


def test_geoparquet_schema_metadata_and_round_trip(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    import pyarrow as pa

    out = tmp_path / "parcels.parquet"
    statement = (  # the first chunk's names and geometries are NULL
        "SELECT id, CASE WHEN id > 2 THEN name END AS name, value, seen, uid, meta, "
        "CASE WHEN id > 2 THEN geom END AS geom FROM rd_parcels ORDER BY id"
    )
    assert db.export(statement, out, batch_size=2).format == "parquet"
    handle = pq.ParquetFile(out)
    assert handle.metadata.num_rows == ROWS and handle.metadata.num_row_groups == 1
    schema = handle.schema_arrow
    assert [(f.name, f.type) for f in schema] == [
        ("id", pa.int32()),
        ("name", pa.string()),
        ("value", pa.decimal128(12, 2)),  # numeric(12, 2): every digit
        ("seen", pa.date32()),
        ("uid", pa.string()),
        ("meta", pa.string()),
        ("geom", pa.binary()),
        ("bbox", pa.struct([(side, pa.float64()) for side in ("xmin", "ymin", "xmax", "ymax")])),
    ]
    geo = orjson.loads(schema.metadata[b"geo"])
    column = geo["columns"]["geom"]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geom"
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert column["covering"] == {
        "bbox": {s: ["bbox", s] for s in ("xmin", "ymin", "xmax", "ymax")}
    }
    boxes = pq.read_table(out, columns=["bbox"]).column("bbox").to_pylist()
    assert boxes[:2] == [None, None] and boxes[2] is not None  # NULL geometry: NULL box
    assert column["crs"]["id"] == {"authority": "EPSG", "code": 4326}
    bounds = admin.execute(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
        "FROM (SELECT ST_Extent(geom)::geometry AS e FROM rd_parcels WHERE id > 2) q"
    ).fetchone()
    assert column["bbox"] == pytest.approx(list(bounds))
    table = pq.read_table(out)
    assert table.column("meta")[2].as_py() == '{"n": 3}'  # the server's text of jsonb
    assert table.column("uid")[0].as_py() == "00000000-0000-0000-0000-000000000001"
    admin.execute(
        "DROP TABLE IF EXISTS rd_trip; "
        "CREATE TABLE rd_trip (id int PRIMARY KEY, name text, geom geometry(Polygon, 4326))"
    )
    try:
        report = db.ingest("rd_trip", pq_subset(out, tmp_path, ["id", "name", "geom"]))
        assert report.inserted == ROWS and not report.rejected
        same = admin.execute(
            "SELECT count(*) FROM rd_trip t JOIN rd_parcels p USING (id) WHERE id > 2 "
            "AND t.name = p.name AND t.geom ~= p.geom AND ST_Equals(t.geom, p.geom)"
        ).fetchone()
        assert same == (ROWS - 3,)  # row 17's geometry is NULL in both
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_trip")


def test_geoparquet_export_has_a_covering_bbox_that_bbox_loads_filter_by(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """GeoParquet 1.1's covering bbox column (as GDAL writes it): readers filter by it
    without parsing geometries; points, whose box is the point, have none."""
    import geopandas

    out = tmp_path / "parcels.parquet"
    db.export("SELECT id, name, geom FROM rd_parcels ORDER BY id", out)
    box = (-74.0, 40.7, -73.9, 40.8)
    expected = admin.execute(
        "SELECT count(*) FROM rd_parcels WHERE geom && ST_MakeEnvelope(-74.0, 40.7, -73.9, "
        "40.8, 4326)"
    ).fetchone()
    assert expected is not None and 0 < expected[0] < ROWS
    assert len(geopandas.read_parquet(out, bbox=box)) == expected[0]  # geopandas reads it
    admin.execute("DROP TABLE IF EXISTS rd_region")
    try:
        report = db.ingest("rd_region", out, create=True, bbox=box)
        assert report.inserted == expected[0]
        assert "bbox" not in [
            c
            for (c,) in admin.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'rd_region'::regclass"
            )
        ]  # the covering is no data
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_region")
    points = tmp_path / "points.parquet"
    db.export("SELECT id, a FROM rd_two", points)  # a: geometry(Point, 4326)
    assert pq.ParquetFile(points).schema_arrow.names == ["id", "a"]


@pytest.mark.parametrize("suffix", [".parquet", ".feather"])
def test_a_geography_column_comes_back_as_geography(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path, suffix: str
) -> None:
    """The export marks it "edges": "spherical"; create=True made it geometry before."""
    out = tmp_path / f"geog{suffix}"
    db.export("SELECT id, geog FROM rd_geog ORDER BY id", out)
    admin.execute("DROP TABLE IF EXISTS rd_geog_back")
    try:
        assert db.ingest("rd_geog_back", out, create=True).inserted == ROWS
        made = admin.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'rd_geog_back'::regclass AND attname = 'geog'"
        ).fetchone()
        assert made == ("geography(Polygon,4326)",)
        same = admin.execute(
            "SELECT count(*) FROM rd_geog_back b JOIN rd_geog g USING (id) "
            "WHERE ST_Equals(b.geog::geometry, g.geog::geometry)"
        ).fetchone()
        assert same == (ROWS - 1,)  # one geography is NULL in both
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_geog_back")


def test_arrow_ipc_export_is_feather_that_loads_back(
    db: SpatialDatabase, admin: psycopg.Connection[Any], runner: CliRunner, tmp_path: Path
) -> None:
    """An Arrow IPC file (Feather v2, lz4): geopandas reads it with its CRS and type, and
    it loads back into a table it makes, from its path or through a pipe."""
    import geopandas
    import pyarrow as pa

    out = tmp_path / "parcels.feather"
    assert db.export("SELECT * FROM rd_parcels ORDER BY id", out).format == "arrow"
    frame = geopandas.read_feather(out)
    assert len(frame) == ROWS and frame.crs.to_epsg() == 4326
    assert set(frame.geom_type.dropna()) == {"Polygon"}
    schema = pa.ipc.open_file(out).schema
    assert schema.field("value").type == pa.decimal128(12, 2)
    assert orjson.loads(schema.metadata[b"geo"])["columns"]["geom"]["geometry_types"] == ["Polygon"]
    piped = runner.invoke(app, ["export", "rd_parcels", "-", "--format", "arrow"])
    assert piped.exit_code == 0 and piped.stdout_bytes.startswith(b"ARROW1")
    admin.execute("DROP TABLE IF EXISTS rd_feather, rd_feather_rejected")
    try:
        report = db.ingest("rd_feather", out, create=True)
        assert report.inserted == ROWS and not report.rejected
        made = admin.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'rd_feather'::regclass AND attname IN ('value', 'geom') "
            "ORDER BY attname"
        ).fetchall()
        assert made == [("geometry(Polygon,4326)",), ("numeric(12,2)",)]
        same = admin.execute(
            "SELECT count(*) FROM rd_feather t JOIN rd_parcels p USING (id) "
            "WHERE t.value = p.value AND t.geom ~= p.geom AND ST_Equals(t.geom, p.geom)"
        ).fetchone()
        assert same == (ROWS - 1,)  # one geometry is NULL in both
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_feather, rd_feather_rejected")


def pq_subset(path: Path, tmp_path: Path, columns: list[str]) -> Path:
    """The file with only ``columns``, its geo metadata kept."""

    subset = tmp_path / "subset.parquet"
    pq.write_table(pq.read_table(path, columns=columns), subset)
    return subset


def test_geoparquet_of_an_empty_result_and_of_timestamps(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    import geopandas as gpd
    import pyarrow as pa

    empty = tmp_path / "none.geoparquet"
    db.export("SELECT * FROM rd_metric WHERE id < 0", empty)
    schema = pq.read_schema(empty)
    geo = orjson.loads(schema.metadata[b"geo"])
    assert pq.ParquetFile(empty).metadata.num_rows == 0
    assert geo["columns"]["geom"]["geometry_types"] == []
    assert geo["columns"]["geom"]["crs"]["id"]["code"] == 3857  # from the column's type
    times = tmp_path / "times.parquet"
    db.export(
        "SELECT id, CASE WHEN id > 1 THEN timestamptz '2026-01-01 12:00+02' END AS at, "
        "ST_Centroid(geom) AS geom FROM rd_parcels WHERE id <= 4 ORDER BY id",
        times,
        batch_size=1,
    )
    frame = gpd.read_parquet(times)
    assert pq.read_schema(times).field("at").type == pa.timestamp("us", tz="UTC")
    assert frame["at"].isna().tolist() == [True, False, False, False]
    assert frame["at"].iloc[1] == pd_timestamp("2026-01-01 10:00Z")
    assert frame.crs.to_epsg() == 4326 and len(frame) == 4


def pd_timestamp(text: str) -> Any:
    import pandas as pd

    return pd.Timestamp(text)


@pytest.mark.parametrize("suffix", [".geojsonl", ".ndjson"])
def test_geojson_lines_round_trip_through_ingest(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path, suffix: str
) -> None:
    """What export writes, ingest reads (GDAL's GeoJSONSeq, a feature at a time)."""
    out = tmp_path / f"parcels{suffix}"
    db.export("SELECT id, name, geom FROM rd_parcels WHERE geom IS NOT NULL", out)
    admin.execute("DROP TABLE IF EXISTS rd_lines")
    try:
        report = db.ingest("rd_lines", out, create=True)
        assert report.created and report.inserted == ROWS - 1 and not report.rejected
        same = admin.execute(
            "SELECT count(*) FROM rd_lines t JOIN rd_parcels p USING (id) "
            "WHERE t.name = p.name AND ST_Equals(t.geom, p.geom)"
        ).fetchone()
        assert same == (ROWS - 1,)
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_lines, rd_lines_rejected")


def test_csv_holds_every_digit_of_a_numeric(db: SpatialDatabase, tmp_path: Path) -> None:
    """A float64 column wrote 12345678901234567890 as 1.2345678901234567e+19."""
    out = tmp_path / "numbers.csv"
    query = (
        "SELECT 12345678901234567890::numeric AS big, 0.1::numeric(30, 25) + 0.2 AS exact, "
        "'NaN'::numeric AS nan, NULL::numeric AS nothing, ST_Point(1, 2, 4326) AS geom"
    )
    db.export(query, out)
    assert out.read_text().splitlines()[1] == (
        '"12345678901234567890","0.3000000000000000000000000","NaN",,"POINT (1 2)"'
    )


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_geoparquet_holds_a_declared_numeric_as_a_decimal(
    make_db: Any, admin: psycopg.Connection[Any], tmp_path: Path, driver: str
) -> None:
    """numeric(p, s) was float64 (1234567890123456.7891 lost its last digits); it is
    decimal128(p, s) now, and loads back exactly. A numeric without both, or beyond what
    Arrow's decimals hold, stays float64; NaN, which a decimal cannot hold, is null."""
    admin.execute(
        "DROP TABLE IF EXISTS ex_decimal; CREATE TABLE ex_decimal (id int PRIMARY KEY, "
        "exact numeric(20, 4), loose numeric, wide numeric(40, 2), negative numeric(5, -2), "
        "geom geometry(Point, 4326))"
    )
    try:
        admin.execute(
            "INSERT INTO ex_decimal VALUES "
            "(1, 1234567890123456.7891, 0.5, 1.5, 12300, 'SRID=4326;POINT(1 1)'), "
            "(2, 'NaN', NULL, NULL, NULL, 'SRID=4326;POINT(1 1)'), "
            "(3, NULL, 1, 2, 3, 'SRID=4326;POINT(1 1)')"
        )
        out = tmp_path / "decimal.parquet"
        make_db(driver=driver).export("SELECT * FROM ex_decimal ORDER BY id", out)
        table = pq.read_table(out)
        types = {name: str(table.schema.field(name).type) for name in table.schema.names}
        assert types["exact"] == "decimal128(20, 4)"
        assert types["loose"] == types["wide"] == types["negative"] == "double"
        assert table.column("exact").to_pylist() == [
            decimal.Decimal("1234567890123456.7891"),
            None,
            None,
        ]
        admin.execute("CREATE TABLE ex_decimal_back (LIKE ex_decimal)")
        assert make_db().ingest("ex_decimal_back", out).inserted == 3
        same = admin.execute(
            "SELECT count(*) FROM ex_decimal a JOIN ex_decimal_back b USING (id) "
            "WHERE a.exact = b.exact"
        ).fetchone()
        assert same == (1,)
    finally:
        admin.execute("DROP TABLE IF EXISTS ex_decimal, ex_decimal_back")


def test_csv_with_wkt_round_trips_through_ingest(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    out = tmp_path / "parcels.csv"
    statement = (
        "SELECT id, name, value, seen, uid, meta, '\\x00ff'::bytea AS blob, "
        "interval '1 day' * id AS span, geom FROM rd_parcels ORDER BY id"
    )
    assert db.export(statement, out, batch_size=700).format == "csv"
    lines = out.read_text().splitlines()
    assert lines[0] == '"id","name","value","seen","uid","meta","blob","span","geom"'
    assert lines[1].startswith(  # numeric as its exact text, so quoted as text is
        '1,"parcel 1","0.25",2024-01-02,"00000000-0000-0000-0000-000000000001"'
    )
    assert '"\\x00ff"' in lines[1] and ',"POLYGON ((' in lines[1] and len(lines) == ROWS + 1
    admin.execute(
        "DROP TABLE IF EXISTS rd_trip; CREATE TABLE rd_trip (id int PRIMARY KEY, name text, "
        "value numeric(12, 2), seen date, uid uuid, meta jsonb, blob bytea, span text, "
        "geom geometry(Polygon, 4326))"
    )
    try:
        report = db.ingest("rd_trip", out, srid=4326)
        assert report.inserted == ROWS and not report.rejected
        same = admin.execute(
            "SELECT count(*) FROM rd_trip t JOIN rd_parcels p USING (id) WHERE t.name = p.name "
            "AND t.value = p.value AND t.seen = p.seen AND t.uid = p.uid AND t.meta = p.meta "
            "AND t.blob = '\\x00ff' AND t.geom ~= p.geom AND ST_Equals(t.geom, p.geom)"
        ).fetchone()
        assert same == (ROWS - 1,)  # row 17's geometry is NULL in both
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_trip")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".gpkg", ".fgb"])
def test_json_values_go_into_files_as_postgresqls_text_and_load_back_as_they_were(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path, suffix: str
) -> None:
    """A JSON string was written bare (123 for "123", so it loaded back as a number, and
    "just a string" not at all), 2**64 crashed orjson, and decimals lost their digits:
    the server's text of json and jsonb is exact."""
    values = [
        '"123"',
        '"true"',
        '"just a string"',
        "null",
        '{"big": 18446744073709551616, "p": 0.12345678901234567890123, "n": 1.50}',
        '[1, {"a": [true, null]}]',
        None,
    ]
    admin.execute(
        "DROP TABLE IF EXISTS rd_json, rd_json_back, rd_json_back_rejected; "
        "CREATE TABLE rd_json (id int PRIMARY KEY, j jsonb, t json, geom geometry(Point, 4326))"
    )
    try:
        for n, value in enumerate(values, start=1):
            admin.execute(
                "INSERT INTO rd_json VALUES (%s, %s::jsonb, %s::json, 'SRID=4326;POINT(1 2)')",
                (n, value, value),
            )
        out = tmp_path / f"json{suffix}"
        assert db.export("SELECT * FROM rd_json ORDER BY id", out).features == len(values)
        admin.execute("CREATE TABLE rd_json_back (LIKE rd_json)")
        report = db.ingest("rd_json_back", out, progress=False)
        assert report.inserted == len(values) and not report.rejected
        differing = admin.execute(
            "SELECT id FROM rd_json a FULL JOIN rd_json_back b USING (id) WHERE a.j IS "
            "DISTINCT FROM b.j OR a.t::text IS DISTINCT FROM b.t::text"
        ).fetchall()
        assert differing == []
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_json, rd_json_back, rd_json_back_rejected")


def test_the_format_follows_the_suffix(db: SpatialDatabase, tmp_path: Path) -> None:
    out = tmp_path / "parcels.gpkg"
    assert db.export("SELECT * FROM rd_metric WHERE id <= 3", out).format == "gpkg"
    assert pyogrio.read_info(out)["driver"] == "GPKG"
    with pytest.raises(ConfigurationError, match=r"cannot tell the format of .*x.txt.*format="):
        db.export("SELECT * FROM rd_metric", tmp_path / "x.txt")
    stream = io.BytesIO()
    assert db.export("SELECT * FROM rd_metric WHERE id = 1", stream).format == "geojson"


def test_a_compressed_suffix_compresses_the_file_as_it_is_written(
    db: SpatialDatabase, tmp_path: Path, runner: CliRunner
) -> None:
    """parcels.geojsonl.gz was "cannot tell the format": the export is compressed as it is
    written for the formats written front to back, and reads back as written; a format
    finished in place is refused before the query runs, and so is a missing directory."""
    query = "SELECT * FROM rd_parcels ORDER BY id"
    plain = tmp_path / "plain.geojsonl"
    db.export(query, plain)
    for name, opener in (("p.geojsonl.gz", gzip.open), ("p.geojsonl.bz2", bz2.open)):
        result = db.export(query, tmp_path / name)
        assert (result.format, result.path, result.features) == (
            "geojsonl",
            str(tmp_path / name),
            ROWS,
        )
        with opener(tmp_path / name) as packed:
            assert packed.read() == plain.read_bytes()
    assert db.export(query, tmp_path / "p.geojsonl.zst").features == ROWS
    unpacked = pa.CompressedInputStream(str(tmp_path / "p.geojsonl.zst"), "zstd").read()
    assert unpacked == plain.read_bytes()
    assert db.export(query, tmp_path / "p.parquet.xz").format == "parquet"
    table = pq.read_table(io.BytesIO(lzma.decompress((tmp_path / "p.parquet.xz").read_bytes())))
    assert table.num_rows == ROWS and b"geo" in table.schema.metadata
    csv = runner.invoke(app, ["export", query, str(tmp_path / "p.csv.gz")])
    assert csv.exit_code == 0 and "(csv)" in csv.output, csv.output
    assert "Its CRS, which CSV cannot hold:" in csv.output and "p.prj" in csv.output
    assert gzip.decompress((tmp_path / "p.csv.gz").read_bytes()).count(b"\n") == ROWS + 1
    for refused, reason in (
        ("p.gpkg.gz", "a gpkg file is finished in place"),
        ("none/p.geojson.gz", "does not exist"),
    ):
        with pytest.raises(ConfigurationError, match=reason):
            db.export(query, tmp_path / refused)
    failing = "SELECT id, 1 / (id - 2) AS v, geom FROM rd_parcels ORDER BY id"
    for name in ("f.csv.gz", "f.parquet.zst"):  # a TypeError hid the server's error
        with pytest.raises(DatabaseError, match="division by zero"):
            db.export(failing, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "p.csv.gz",
        "p.geojsonl.bz2",
        "p.geojsonl.gz",
        "p.geojsonl.zst",
        "p.parquet.xz",
        "p.prj",  # the CSV's CRS
        "plain.geojsonl",
    ]


def test_geopackage_of_two_geometry_columns_and_of_no_rows(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    two = tmp_path / "two.gpkg"
    db.export("SELECT * FROM rd_two ORDER BY id", two, geometry_column="b")
    info = pyogrio.read_info(two)
    assert info["geometry_name"] == "b" and info["features"] == 10
    assert dict(zip(info["fields"], info["ogr_types"], strict=True))["a"] == "OFTBinary"
    point = shapely.from_wkb(pyogrio.read_dataframe(two)["a"][0])  # the other one, as WKB
    assert point.geom_type == "Point"
    empty = tmp_path / "none.gpkg"
    assert db.export("SELECT * FROM rd_metric WHERE id < 0", empty).features == 0
    info = pyogrio.read_info(empty)
    assert info["features"] == 0 and list(info["fields"]) == ["id"]
    assert info["crs"] == "EPSG:3857"
    mixed = tmp_path / "mixed.gpkg"  # the first chunk has only polygons, the column says Multi
    db.export(
        "SELECT id, CASE WHEN id > 2 THEN ST_Multi(geom) ELSE geom END::geometry(Geometry, 4326) "
        "AS geom FROM rd_parcels WHERE id <= 4 ORDER BY id",
        mixed,
        batch_size=2,
    )
    assert pyogrio.read_info(mixed)["geometry_type"] == "Unknown"
    declared = tmp_path / "declared.gpkg"
    db.export(
        "SELECT id, ST_Multi(geom)::geometry(MultiPolygon, 4326) AS geom FROM rd_parcels "
        "WHERE id <= 4",
        declared,
    )
    assert pyogrio.read_info(declared)["geometry_type"] == "MultiPolygon"
    centroids = tmp_path / "centroids.gpkg"
    db.export("SELECT * FROM rd_metric WHERE id <= 4", centroids, geometry="centroid")
    assert pyogrio.read_info(centroids)["geometry_type"] == "Point"
    for suffix in (".gpkg", ".fgb"):
        solid = tmp_path / f"z{suffix}"
        db.export(
            "SELECT g AS id, ST_SetSRID(ST_MakePoint(g, g, g), 2056) AS geom "
            "FROM generate_series(1, 3) g",
            solid,
        )
        info = pyogrio.read_info(solid)
        assert (info["geometry_type"], info["crs"], info["features"]) == ("Point Z", "EPSG:2056", 3)


def test_an_export_of_no_rows_from_a_postgis_1_column_knows_its_crs_and_type(
    db: SpatialDatabase, make_db: Callable[..., SpatialDatabase], tmp_path: Path
) -> None:
    """A column CHECK constraints declare (AddGeometryColumn(..., use_typmod => false), as
    PostGIS 1 made every column) gives its reads no type modifier: an export of no rows
    from one had no CRS and an Unknown 2D type. psycopg2 describes no modifiers at all:
    a table's column is looked up in the catalogue there."""
    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS legacy_columns"))
        s.execute(text("CREATE TABLE legacy_columns (id int)"))
        s.execute(
            text(
                "SELECT AddGeometryColumn('legacy_columns', 'geom', 27700, 'POINT', 3, false), "
                "AddGeometryColumn('legacy_columns', 'route', 4326, 'MULTILINESTRINGM', 3, false)"
            )
        )
    try:
        for query, declared in (
            ("SELECT id, geom FROM legacy_columns", ("POINT", 1, 0, 27700)),
            ("SELECT l.id, l.route AS r FROM legacy_columns l", ("MULTILINESTRING", 0, 1, 4326)),
        ):
            path = tmp_path / f"legacy{declared[-1]}.gpkg"
            assert db.export(query, path).features == 0
            with sqlite3.connect(path) as package:
                found = package.execute(
                    "SELECT geometry_type_name, z, m, srs_id FROM gpkg_geometry_columns"
                )
                assert found.fetchall() == [declared]
        path = tmp_path / "psycopg2.gpkg"
        make_db(driver="psycopg2").export("legacy_columns", path, geometry_column="route")
        with sqlite3.connect(path) as package:
            found = package.execute(
                "SELECT geometry_type_name, z, m, srs_id FROM gpkg_geometry_columns"
            )
            assert found.fetchall() == [("MULTILINESTRING", 0, 1, 4326)]
        path = tmp_path / "legacy.fgb"
        db.export("SELECT id, geom FROM legacy_columns", path)
        info = pyogrio.read_info(path)
        assert (info["geometry_type"], info["crs"]) == ("Point Z", "EPSG:27700")
        with db.transaction() as s:
            s.execute(
                text("INSERT INTO legacy_columns (id, geom) VALUES (1, 'SRID=27700;POINT(1 2 3)')")
            )
        path = tmp_path / "rows.gpkg"
        db.export("SELECT id, geom FROM legacy_columns", path)
        frame = pyogrio.read_dataframe(path)
        assert frame.crs == "EPSG:27700" and frame.geometry[0].wkt == "POINT Z (1 2 3)"
    finally:
        with db.transaction() as s:
            s.execute(text("DROP TABLE legacy_columns"))


def test_layers_are_added_to_a_geopackage_and_replaced_by_name(
    db: SpatialDatabase, runner: CliRunner, tmp_path: Path
) -> None:
    city = tmp_path / "city.gpkg"
    db.export("SELECT * FROM rd_metric WHERE id <= 30", city, layer="metric")
    db.export("SELECT id, name, geom FROM rd_parcels WHERE id <= 10", city, layer="parcels")
    result = runner.invoke(
        app, ["export", "SELECT * FROM rd_metric WHERE id <= 5", str(city), "--layer", "metric"]
    )
    assert result.exit_code == 0, result.output
    layers = {
        str(name): pyogrio.read_info(city, layer=name)["features"]
        for name, _ in pyogrio.list_layers(city)
    }
    assert layers == {"metric": 5, "parcels": 10}
    assert pyogrio.read_info(city, layer="metric")["crs"] == "EPSG:3857"
    flat = tmp_path / "flat.fgb"
    db.export("SELECT * FROM rd_metric WHERE id <= 3", flat, layer="metric")
    assert [str(name) for name, _ in pyogrio.list_layers(flat)] == ["metric"]
    with pytest.raises(ConfigurationError, match="layer='x' names a layer of a GeoPackage"):
        db.export("SELECT * FROM rd_metric", tmp_path / "x.parquet", layer="x")
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"not a geopackage")
    with pytest.raises(ConfigurationError, match="cannot add layer 'metric'"):
        db.export("SELECT * FROM rd_metric WHERE id <= 3", garbage, layer="metric")
    assert garbage.read_bytes() == b"not a geopackage"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["city.gpkg", "flat.fgb", "garbage.gpkg"]


def test_field_types_follow_the_columns_not_the_first_chunks_values(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Integers with a NULL were written as Real fields and booleans as String fields
    ("True"), and a chunk of NULLs made a String field of any column: the GeoPackage's
    fields now come from the column types, and every GeoDataFrame chunk has the same dtypes."""
    admin.execute("DROP TABLE IF EXISTS ex_typed")
    admin.execute(
        "CREATE TABLE ex_typed AS SELECT g AS id, "
        "CASE WHEN g > 2 THEN g % 2 = 0 END AS ok, CASE WHEN g > 2 THEN g * 10 END AS n, "
        "CASE WHEN g > 2 THEN 2 ^ 40 + g END::int8 AS big, "
        "CASE WHEN g > 2 THEN g / 4.0 END::float8 AS ratio, "
        "ST_SetSRID(ST_MakePoint(g, g), 4326) AS geom FROM generate_series(1, 6) g"
    )
    try:
        out = tmp_path / "typed.gpkg"
        db.export("SELECT * FROM ex_typed ORDER BY id", out, format="gpkg", batch_size=2)
        info = pyogrio.read_info(out)
        assert dict(zip(info["fields"], info["dtypes"], strict=True)) == {
            "id": "int32",
            "ok": "bool",
            "n": "int32",
            "big": "int64",
            "ratio": "float64",
        }
        frame = pyogrio.read_dataframe(out, use_arrow=True)
        assert frame["big"].tolist()[2:] == [2**40 + g for g in range(3, 7)]
        nan = "SELECT 1 AS id, 'NaN'::float8 AS x, NULL::float8 AS y, ST_MakePoint(0, 0) AS geom"
        db.export(nan, tmp_path / "nan.parquet")  # PostgreSQL's NaN is a value, not a NULL
        values = pq.read_table(tmp_path / "nan.parquet").to_pylist()[0]
        assert math.isnan(values["x"]) and values["y"] is None
        chunks = list(db.stream_frames("SELECT * FROM ex_typed ORDER BY id", batch_size=2))
        dtypes = {str(dict(chunk.dtypes)) for chunk in chunks}
        assert len(chunks) == 3 and len(dtypes) == 1
        assert chunks[0]["ok"].isna().all() and chunks[1]["ok"].tolist() == [False, True]
    finally:
        admin.execute("DROP TABLE IF EXISTS ex_typed")


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_timestamps_keep_their_type_and_zone_in_every_chunk(
    make_db: Any, admin: psycopg.Connection[Any], tmp_path: Path, driver: str
) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    admin.execute("DROP TABLE IF EXISTS ex_times")
    admin.execute(
        "CREATE TABLE ex_times AS SELECT g AS id, "
        "CASE WHEN g > 2 THEN timestamptz '2026-07-01 12:00:00.123456+00' + g * interval '1 d' "
        "END AS at, CASE WHEN g > 2 THEN timestamp '3000-01-02 03:04:05' END AS far, "
        "ST_SetSRID(ST_MakePoint(g, g), 4326) AS geom FROM generate_series(1, 4) g"
    )
    berlin = make_db(driver=driver, server_settings={"TimeZone": "Europe/Berlin"}, pool_size=1)
    try:
        chunks = list(berlin.stream_frames("SELECT * FROM ex_times ORDER BY id", batch_size=2))
        assert [str(chunk["at"].dtype) for chunk in chunks] == ["datetime64[us, Europe/Berlin]"] * 2
        assert [str(chunk["far"].dtype) for chunk in chunks] == ["datetime64[us]"] * 2
        assert chunks[0]["at"].isna().all() and chunks[0]["far"].isna().all()
        first = chunks[1]["at"].iloc[0]
        assert first == dt.datetime(2026, 7, 4, 12, 0, 0, 123456, tzinfo=dt.UTC)
        assert first.tzinfo is not None and first.utcoffset() == dt.timedelta(hours=2)
        assert chunks[1]["far"].iloc[0] == dt.datetime(3000, 1, 2, 3, 4, 5)
        out = tmp_path / "times.gpkg"
        berlin.export("SELECT id, at, geom FROM ex_times ORDER BY id", out, batch_size=2)
        info = pyogrio.read_info(out)
        assert info["driver"] == "GPKG"
        assert dict(zip(info["fields"], info["dtypes"], strict=True))["at"].startswith("datetime")
        stored = pyogrio.read_dataframe(out)["at"]
        assert stored.iloc[3] == dt.datetime(
            2026, 7, 5, 14, 0, 0, 123000, tzinfo=ZoneInfo("Europe/Berlin")
        )
    finally:
        admin.execute("DROP TABLE IF EXISTS ex_times")


def test_iter_geojson_pages_release_between_chunks(db: SpatialDatabase) -> None:
    chunks = []
    for chunk in db.iter_geojson("SELECT id, geom FROM rd_parcels", pages_by="id", batch_size=500):
        assert db.pool_stats().checked_out == 0
        chunks.append(chunk)
    document = orjson.loads(b"".join(chunks))
    assert [f["properties"]["id"] for f in document["features"]] == list(range(1, ROWS + 1))


def test_async_iter_geojson_matches_the_sync_bytes(db: SpatialDatabase) -> None:
    import asyncio

    query = "SELECT id, name, geom FROM rd_parcels WHERE id <= 1200 ORDER BY id"
    empty = "SELECT id, geom FROM rd_parcels WHERE id < 0"

    async def collect(statement: str, **options: Any) -> tuple[bytes, int]:
        chunks = [c async for c in db.async_iter_geojson(statement, **options)]
        return b"".join(chunks), db.async_engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]

    async def work() -> list[tuple[bytes, int]]:
        try:
            return [
                await collect(query, batch_size=500),
                await collect(query, pages_by="id", batch_size=500, newline_delimited=True),
                await collect(empty),
            ]
        finally:
            await db.adispose()

    (whole, held), (lines, held_pages), (nothing, _) = asyncio.run(work())
    assert held == held_pages == 0
    assert whole == b"".join(db.iter_geojson(query, batch_size=500))
    assert lines == b"".join(
        db.iter_geojson(query, pages_by="id", batch_size=500, newline_delimited=True)
    )
    assert len(orjson.loads(whole)["features"]) == 1200 and len(lines.splitlines()) == 1200
    assert orjson.loads(nothing) == {"type": "FeatureCollection", "features": []}


# --- the command line ------------------------------------------------------------------


@pytest.fixture
def runner(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    return CliRunner()


def test_cli_exports_a_table_with_bbox_and_where(
    runner: CliRunner, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    out = tmp_path / "box.geojson"
    result = runner.invoke(
        app,
        ["export", "rd_metric", str(out), "--bbox", "-74,40.7,-73.9,40.8", "--where", "id > 100"],
    )
    assert result.exit_code == 0, result.output
    expected = admin.execute(
        "SELECT count(*) FROM rd_metric WHERE id > 100 AND geom && "
        "ST_Transform(ST_MakeEnvelope(-74, 40.7, -73.9, 40.8, 4326), 3857)"
    ).fetchone()
    assert expected is not None
    assert len(load(out)["features"]) == expected[0]
    assert f"Exported {expected[0]:,} features" in result.output


def test_cli_query_to_stdout_and_formats(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "SELECT id, geom FROM rd_parcels WHERE id <= 4", "-"])
    assert result.exit_code == 0, result.output
    body = result.stdout[: result.stdout.rindex("}") + 1]
    assert len(orjson.loads(body)["features"]) == 4
    out = tmp_path / "lines.txt"
    result = runner.invoke(
        app, ["export", "rd_parcels", str(out), "--format", "geojsonl", "--geometry", "centroid"]
    )
    assert result.exit_code == 0, result.output
    first = orjson.loads(out.read_bytes().splitlines()[0])
    assert first["geometry"]["type"] == "Point"
    parquet = tmp_path / "parcels.parquet"
    result = runner.invoke(app, ["export", "rd_parcels", str(parquet)])
    assert result.exit_code == 0, result.output
    assert f"Exported {ROWS:,} features" in result.output and "(parquet)" in result.output


def test_cli_params_bind_the_query_and_where_and_leave_other_colons_alone(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "bound.geojson"
    query = "SELECT id, name, '12:30'::time AS t, geom FROM rd_parcels WHERE id <= :last"
    arguments = ["export", query, str(out), "--where", "id >= :first"]
    result = runner.invoke(app, [*arguments, "--param", "last=7", "--param", "first=5"])
    assert result.exit_code == 0, result.output
    features = load(out)["features"]
    assert [f["properties"]["id"] for f in features] == [5, 6, 7]
    assert features[0]["properties"]["t"] == "12:30:00"
    alone = runner.invoke(app, ["export", query, str(out), "--param", "last=2"])  # no --where
    assert alone.exit_code == 0, alone.output
    assert [f["properties"]["id"] for f in load(out)["features"]] == [1, 2]
    table = runner.invoke(
        app, ["export", "rd_parcels", str(out), "--where", "id = :n", "--param", "n=3"]
    )
    assert table.exit_code == 0 and [f["properties"]["id"] for f in load(out)["features"]] == [3]
    unused = runner.invoke(app, [*arguments, "--param", "first=1", "--param", "lsat=2"])
    assert "--param lsat=...: neither the query nor --where has :lsat" in str(unused.exception)
    unbound = runner.invoke(app, [*arguments, "--param", "first=1"])  # was a bare syntax error
    assert isinstance(unbound.exception, ConfigurationError)
    assert "The query's :last has no value: give --param last=VALUE" in str(unbound.exception)


def test_cli_flags_it_cannot_take_are_usage_errors_naming_them(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Refused before the query runs, in the flag's words (was geometry='simplify', and
    bbox_srid and statement_timeout as Python spells them)."""
    out = tmp_path / "never.geojson"
    cases = {
        "--geometry": ("simplify", "'simplify' is not a projection; use one of 'full'"),
        "--statement-timeout": ("5", "'5' has no unit: write '5s' or '5ms'"),
        "--bbox-srid": ("0", "greater than or equal to 1"),
    }
    for flag, (value, said) in cases.items():
        refused = runner.invoke(app, ["export", "rd_parcels", str(out), flag, value])
        assert refused.exit_code == 2, refused.output
        shown = " ".join(refused.output.replace("│", " ").split())
        assert f"Invalid value for '{flag}'" in shown and said in shown
    assert not out.exists()
    kept = runner.invoke(app, ["export", "rd_parcels", str(out), "--geometry", "simplify:0.5"])
    assert kept.exit_code == 0, kept.output


def test_cli_quotes_identifiers_and_reports_errors(
    runner: CliRunner, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    result = runner.invoke(app, ["export", "rd_parcels", str(tmp_path / "x.unknown")])
    assert result.exit_code != 0
    assert "give --format (geojson" in str(result.exception)  # main() prints it
    result = runner.invoke(app, ["export", "rd_parcels", "-", "--format", "kml"])
    assert "--format 'kml' is not an export format" in str(result.exception)
    hostile = 'rd_parcels"; DROP TABLE rd_plain; --'
    result = runner.invoke(app, ["export", hostile, str(tmp_path / "x.geojson")])
    assert result.exit_code != 0  # a table of that odd name, quoted: none; nothing dropped
    assert admin.execute("SELECT count(*) FROM rd_plain").fetchone() == (1,)
    out = str(tmp_path / "x.geojson")
    for option in ("--geometry-column", "--pages-by"):
        result = runner.invoke(app, ["export", "rd_parcels", out, option, "nosuch"])
        python = option[2:].replace("-", "_")
        assert f"{python}='nosuch' (CLI: {option}) is not a column of the query; its " in str(
            result.exception
        )


def test_cli_table_names_as_typed_quoted_or_not_and_a_missing_one_named(
    runner: CliRunner, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A table made as "Weird Names" is exported by that name typed bare, quoted or with
    its schema (it was taken for SQL: "syntax error"); a name in the wrong case says which
    table it may mean."""
    admin.execute('CREATE TABLE "Weird Names" (id int, g geography(Point, 4326))')
    try:
        admin.execute("""INSERT INTO "Weird Names" VALUES (1, 'POINT(8 47)')""")
        for typed in ("Weird Names", '"Weird Names"', 'public."Weird Names"'):
            out = tmp_path / "weird.geojson"
            result = runner.invoke(app, ["export", typed, str(out)])
            assert result.exit_code == 0, (typed, result.output)
            assert load(out)["features"][0]["properties"] == {"id": 1}
        result = runner.invoke(app, ["export", "weird names", str(tmp_path / "x.geojson")])
        assert result.exit_code != 0
        assert 'did you mean public."Weird Names"?' in str(result.exception)
        result = runner.invoke(app, ["export", "nowhere.rd_parcels", str(tmp_path / "x.geojson")])
        assert "no table nowhere.rd_parcels" in str(result.exception)
        assert "did you mean public.rd_parcels?" in str(result.exception)
        result = runner.invoke(app, ["export", "SELEC 1", str(tmp_path / "x.geojson")])
        assert 'no table "SELEC 1"' in str(result.exception)
        assert "Meant as a query? It is one when it begins with SELECT" in str(result.exception)
    finally:
        admin.execute('DROP TABLE "Weird Names"')


def test_intervals_times_with_zones_and_ranges_hold_postgresqls_text_in_every_format(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """GeoJSON has them from to_json; the other files had Python's text of the driver's
    values ("32 days, 3:00:00": a month read as 30 days), now PostgreSQL's, the same."""
    query = (
        "SELECT 1 AS id, interval '1 mon 2 days 03:00' AS span, timetz '12:00+02' AS at, "
        "int4range(1, 5) AS r, ARRAY[interval '1 mon', interval '2 hours'] AS spans, "
        "ST_Point(1, 2, 4326) AS geom"
    )
    expected: dict[str, Any] = {
        "id": 1,
        "span": "1 mon 2 days 03:00:00",
        "at": "12:00:00+02",
        "r": "[1,5)",
        "spans": '["1 mon","02:00:00"]',  # arrays as JSON: was ["30 days, 0:00:00", ...]
    }
    geojson = load(_export(db, query, tmp_path / "t.geojson"))["features"][0]["properties"]
    assert geojson == {**expected, "spans": ["1 mon", "02:00:00"]}
    import geopandas

    for suffix in ("gpkg", "fgb", "parquet"):
        reader = geopandas.read_parquet if suffix == "parquet" else pyogrio.read_dataframe
        read = reader(_export(db, query, tmp_path / f"t.{suffix}"))
        assert read.drop(columns=read.geometry.name).to_dict("records") == [expected], suffix
    assert _export(db, query, tmp_path / "t.csv").read_text().splitlines()[1] == (
        '1,"1 mon 2 days 03:00:00","12:00:00+02","[1,5)","[""1 mon"",""02:00:00""]","POINT (1 2)"'
    )
    (frame,) = db.stream_frames(query)  # frames keep the driver's values
    assert str(frame["span"].iloc[0]) == "32 days 03:00:00"


def _export(db: SpatialDatabase, query: str, path: Path) -> Path:
    db.export(query, path)
    return path


@pytest.mark.parametrize("kind", ["geojson", "csv"])
def test_a_full_disk_fails_the_export_naming_the_file(db: SpatialDatabase, kind: str) -> None:
    """/dev/full answers every write with ENOSPC: it came out as a bare OSError."""
    with (
        open("/dev/full", "wb", buffering=0) as full,
        pytest.raises(ExportFailed, match=r"Writing /dev/full failed: No space left on device"),
    ):
        db.export("SELECT * FROM rd_parcels", full, format=kind)


def test_standard_outputs_reader_leaving_ends_the_command_quietly(database_url: str) -> None:
    """`geosession export ... - | head` printed a BrokenPipeError traceback."""
    program = str(Path(sys.executable).parent / "geosession")
    command = [program, "export", "SELECT * FROM rd_parcels", "-"]
    env = {**os.environ, "GEOSESSION_DATABASE_URL": database_url}
    export = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert export.stdout is not None and export.stderr is not None
    assert export.stdout.read(40).startswith(b'{"type":"FeatureCollection"')
    export.stdout.close()  # the reader leaves, as head does
    assert export.wait(timeout=60) == 141
    assert b"Traceback" not in export.stderr.read()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_an_export_without_leaving_a_partial_file(
    database_url: str, tmp_path: Path, stop: signal.Signals
) -> None:
    """SIGTERM stops `geosession export` as Ctrl-C does: the unfinished file goes, and
    the exit status is the signal's (GDAL reported an interrupted read as a RuntimeError
    of its own: a traceback and status 1)."""
    program = str(Path(sys.executable).parent / "geosession")
    query = (
        "SELECT g AS id, ST_Buffer(ST_Point(g, 0, 4326), 0.5) AS geom "
        "FROM generate_series(1, 5000000) g"
    )
    command = [program, "export", query, str(tmp_path / "big.gpkg")]
    env = {**os.environ, "GEOSESSION_DATABASE_URL": database_url}
    export = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wait_until(lambda: any(tmp_path.iterdir()), timeout=30)  # writing its part file
    export.send_signal(stop)
    assert export.stderr is not None
    assert export.wait(timeout=60) == 128 + stop, export.stderr.read().decode()
    assert "Traceback" not in export.stderr.read().decode()
    assert list(tmp_path.iterdir()) == []


def test_a_csv_of_points_as_coordinate_columns_loads_back(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Spreadsheets take two number columns; longitude and latitude read back as 4326."""
    out = tmp_path / "centroids.csv"
    query = "SELECT id, name, geom FROM rd_parcels ORDER BY id"
    result = db.export(query, out, geometry="centroid", coordinates=True)
    assert result.features == ROWS
    lines = out.read_text().splitlines()
    assert lines[0] == '"id","name","longitude","latitude"'
    assert lines[17] == '17,"parcel 17",,'  # its geometry is NULL
    admin.execute("DROP TABLE IF EXISTS rd_centroids")
    assert db.ingest("rd_centroids", out, create=True).inserted == ROWS
    same = admin.execute(
        "SELECT count(*) FROM rd_centroids c JOIN rd_parcels p ON p.id = c.id::int "
        "WHERE ST_Equals(c.geom, ST_Centroid(p.geom)) AND ST_SRID(c.geom) = 4326"
    ).fetchone()
    assert same == (ROWS - 1,)
    admin.execute("DROP TABLE rd_centroids")
    metric = db.export(
        "SELECT id, ST_Centroid(geom) AS geom FROM rd_metric", tmp_path / "m.csv", coordinates=True
    )
    assert metric.features == ROWS
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == '"id","x","y"'
    expression = tmp_path / "e.csv"  # declares no SRID: the rows' is EPSG:4326
    db.export("SELECT id, ST_Centroid(geom) AS g FROM rd_parcels", expression, coordinates=True)
    assert expression.read_text().splitlines()[0] == '"id","longitude","latitude"'
    with pytest.raises(ExportFailed, match=r"writes points, and the rows hold a Polygon.*centroid"):
        db.export(query, tmp_path / "polygons.csv", coordinates=True)
    with pytest.raises(
        ConfigurationError, match=r"a gpkg file holds geometries: write CSV .* or leave it out"
    ):
        db.export(query, tmp_path / "x.gpkg", coordinates=True)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == ["centroids.csv", "centroids.prj", "e.csv", "e.prj", "m.csv", "m.prj"]


def test_a_csv_export_names_its_crs_in_a_prj_beside_it_which_the_ingest_reads(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A CSV holds no CRS: an EPSG:3857 table exported to CSV came back with create=True
    as SRID 0 (doctor then flags the table), and with coordinates=True and a transform to
    3857 its metres were written as longitude and latitude (the column's declared 4326),
    so they loaded back as degrees. The export writes the CRS into a .prj (GeoCSV's
    sidecar, read by GDAL and QGIS), and the ingest of a CSV reads it."""
    out = tmp_path / "metric.csv"
    db.export("SELECT id, geom FROM rd_metric ORDER BY id", out)
    assert pyogrio.read_info(out, GEOM_POSSIBLE_NAMES="geom")["crs"] == "EPSG:3857"  # GDAL
    admin.execute("DROP TABLE IF EXISTS rd_metric_back, rd_moved_back, rd_packed_back")
    try:
        assert db.ingest("rd_metric_back", out, create=True).inserted == ROWS
        moved = tmp_path / "moved.csv"
        query = "SELECT id, ST_Centroid(geom) AS geom FROM rd_parcels ORDER BY id"
        db.export(query, moved, geometry="transform:3857", coordinates=True)
        assert moved.read_text().splitlines()[0] == '"id","x","y"'
        assert db.ingest("rd_moved_back", moved, create=True).inserted == ROWS
        srids = admin.execute(
            "SELECT f_table_name, srid FROM geometry_columns "
            "WHERE f_table_name IN ('rd_metric_back', 'rd_moved_back') ORDER BY 1"
        )
        assert srids.fetchall() == [("rd_metric_back", 3857), ("rd_moved_back", 3857)]
        same = admin.execute(
            "SELECT count(*) FROM rd_moved_back b JOIN rd_parcels p ON p.id = b.id::int "
            "WHERE ST_DWithin(b.geom, ST_Transform(ST_Centroid(p.geom), 3857), 1e-6)"
        )
        assert same.fetchone() == (ROWS - 1,)  # row 17's geometry is NULL
        with pytest.raises(ConfigurationError, match=r"CRS is EPSG:3857, but column geom .* 4326"):
            db.ingest("rd_parcels", out)
        packed = tmp_path / "packed.csv.gz"  # compressed as it is written: packed.prj
        db.export("SELECT id, geom FROM rd_metric WHERE id <= 10", packed)
        assert (tmp_path / "packed.prj").read_text() == (tmp_path / "metric.prj").read_text()
        assert db.ingest("rd_packed_back", packed, create=True).inserted == 10
        made = admin.execute("SELECT Find_SRID('public', 'rd_packed_back', 'geom')").fetchone()
        assert made == (3857,)
        db.export("SELECT id, geom FROM rd_parcels WHERE id < 0", out)  # no rows, 4326
        assert "WGS 84" in (tmp_path / "metric.prj").read_text()
        db.export("SELECT 1 AS id, 'POINT (1 2)'::geometry AS geom", out)  # no CRS
        assert not (tmp_path / "metric.prj").exists()  # the earlier one would be wrong
        shapefile = tmp_path / "shapes.shp"
        db.export("SELECT id, geom FROM rd_metric WHERE id <= 3", shapefile)
        kept = (tmp_path / "shapes.prj").read_text()
        for beside in ("shapes.csv", "shapes.csv.gz"):  # the Shapefile's CRS was replaced
            with pytest.raises(ConfigurationError, match="holds the CRS of the Shapefile"):
                db.export("SELECT id, geom FROM rd_parcels", tmp_path / beside)
            assert not (tmp_path / beside).exists()
        assert (tmp_path / "shapes.prj").read_text() == kept
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_metric_back, rd_moved_back, rd_packed_back")


def test_points_with_z_as_coordinate_columns_keep_their_z(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """A third column, z (its Z was dropped unseen); a 2D point among them has none."""
    declared = "SELECT 1 AS id, 'SRID=4326;POINT Z (1 2 3)'::geometry(PointZ, 4326) AS geom"
    out = tmp_path / "z.csv"
    db.export(declared, out, coordinates=True)
    assert out.read_text().splitlines() == ['"id","longitude","latitude","z"', "1,1,2,3"]
    mixed = "SELECT * FROM (VALUES (1, 'POINT (1 1)'::geometry), (2, 'POINT Z (4 5 6)')) v (id, g)"
    db.export(mixed, out, coordinates=True)
    assert out.read_text().splitlines() == ['"id","x","y","z"', "1,1,1,", "2,4,5,6"]
    with pytest.raises(ExportFailed, match="points with Z came after the first rows"):
        db.export(mixed + " ORDER BY id", out, coordinates=True, batch_size=1)
