"""db.ingest(..., create=True) and `geosession ingest --create` against PostGIS: tables made
from files' and DataFrames' schemas, or from a mapped class, then loaded exactly once."""

from __future__ import annotations

import bz2
import csv
import datetime as dt
import decimal
import gzip
import lzma
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import geopandas as gpd
import numpy as np
import orjson
import pandas as pd
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from geoalchemy2 import Geometry
from pyarrow import feather
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from typer.testing import CliRunner

from geosession import ConfigurationError, IntegrityViolation, InvalidGeometry, SpatialDatabase
from geosession.cli import app
from geosession.demo import synthetic_polygons
from geosession.ingest.source_schema import geometry_type
from geosession.ingest.spool import suffix_of

TABLES = (
    "made_arcs",
    "made_gpkg",
    "made_shp",
    "Made_Frame",
    "made_parquet",
    "made_csv",
    "made_mapped",
    "made_lambert",
    "made_albers",
    "made_local",
    "made_lists",
    "made_m_source",
    "made_m_gpkg",
    "made_m_fgb",
    "made_m_shp",
    "made_m_frame",
    "made_fids",
    "made_ids",
    "made_objects",
    "made_latin",
    "made_latin_csv",
    "made_zip",
    "made_subset",
    "zipped_fids",
    "gdb_parcels",
    "gdb_roads",
    "from_tab",
    "from_mif",
    "from_sqlite",
    "from_zipped_tab",
    "geojson_ids",
    "geojson_ids_made",
    "geojson_seq_ids",
    "made_points",
    "made_metric",
    "made_heights",
    "made_elevations",
    "made_arrow_points",
    "made_parquet_points",
    "made_unplaced",
    "made_values",
    "made_arrow",
    "made_duckdb",
    "made_polars",
    "made_polars_plain",
    "made_plain_parquet",
    "made_unnamed",
    "made_geoarrow_parquet",
    "arrow_once",
    "made_native_parquet",
    "piped",
    "piped_seq",
    "piped_zip",
    "piped_sqlite",
    "made_feather",
    "made_arrows",
    "piped_feather",
    "made_native",
    "native_points",
    "made_typed_csv",
    "made_werte",
    "made_exported_csv",
    "made_two_wkt_csv",
    "made_copied_csv",
    "made_mixed_csv",
    "made_wkt_frame",
    "made_shapely_frame",
    "made_wkb_frame",
    "made_unknown_type",
    "made_kml_heights",
    "made_kml_flat",
    "made_points_z",
    "made_filtered_type",
    "made_boxed_type",
    "made_unfiltered_type",
    "made_untyped_parquet",
    "made_untyped_ipc",
    "made_untyped_stream",
    "made_wkt_heights",
    "made_slowly",
    "made_records",
    "made_record_shapes",
    "made_from_a_generator",
    "made_stops",
    "made_routes",
    "packed_stops",
    "packed_routes",
    "made_late_key",
    "gz_streamed_csv",
    "gz_streamed_seq",
    "gz_resumed",
    "gz_streamed_jsonl",
    "made_feed",
    "json_array",
    "json_lines",
    "piped_array",
    "piped_lines",
    "json_features",
    "made_long_names",
    "made_names_alike",
    "fid_no_default",
    "race_fids",
    "made_road_segments_2024",
)


@pytest.fixture(autouse=True)
def dropped(admin: psycopg.Connection[Any]) -> Iterator[None]:
    yield
    for name in TABLES:
        admin.execute(f'DROP TABLE IF EXISTS "{name}", "{name}_rejected" CASCADE')


def columns(admin: psycopg.Connection[Any], table: str) -> dict[str, str]:
    rows = admin.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    ).fetchall()
    return dict(rows)


def indexes(admin: psycopg.Connection[Any], table: str) -> list[str]:
    rows = admin.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", (table,)
    ).fetchall()
    return [row[0].split(" USING ", 1)[1] for row in rows]


def stored_geometries(admin: psycopg.Connection[Any], table: str) -> list[Any]:
    rows = admin.execute(f"SELECT ST_AsBinary(geom) FROM {table} ORDER BY id").fetchall()
    return [shapely.from_wkb(row[0]) for row in rows]


def parcels(n: int, crs: str = "EPSG:4326") -> gpd.GeoDataFrame:
    polygons = list(synthetic_polygons(n, seed=11))
    polygons[1] = shapely.MultiPolygon([polygons[1], shapely.affinity.translate(polygons[2], 5)])
    return gpd.GeoDataFrame(
        {
            "id": pd.array(range(1, n + 1), dtype="int32"),
            "Big": pd.array([2**40 + i for i in range(n)], dtype="int64"),
            "ratio": [i / 7 for i in range(n)],
            "ok": [i % 2 == 0 for i in range(n)],
            "Name": [f"parcel {i}" for i in range(n)],
            "seen": pd.to_datetime([dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * n),
        },
        geometry=polygons,
        crs=crs,
    )


def test_geopackage_table_is_made_from_its_fields_and_loaded_once(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "parcels.gpkg"
    source = parcels(300)
    source.to_file(path, layer="parcels", driver="GPKG")
    report = db.ingest("made_gpkg", path, create=True, ingest_id="made")
    assert report.created and report.inserted == 300 and not report.rejected
    assert columns(admin, "made_gpkg") == {
        "fid": "bigint",
        "id": "integer",
        "big": "bigint",
        "ratio": "double precision",
        "ok": "boolean",
        "name": "text",
        "seen": "timestamp with time zone",
        "geom": "geometry(MultiPolygon,4326)",
    }
    assert indexes(admin, "made_gpkg") == ["gist (geom)", "btree (fid)"]
    again = db.ingest("made_gpkg", path, create=True, ingest_id="made")
    assert not again.created and again.already_committed == 300 and again.inserted == 0
    expected = [
        g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in source.geometry
    ]
    assert stored_geometries(admin, "made_gpkg") == expected
    checked = "SELECT bool_and(ok = (id % 2 = 1)), min(big), max(seen), count(*) FROM made_gpkg"
    assert admin.execute(checked).fetchone() == (
        True,
        2**40,
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        300,
    )


def fids(admin: psycopg.Connection[Any], table: str) -> list[tuple[int, str]]:
    return admin.execute(f"SELECT fid, name FROM {table} ORDER BY fid").fetchall()


def test_a_geopackages_feature_ids_are_kept_in_the_table_it_makes(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """As ogr2ogr keeps them: rows that other tables refer to by fid keep their ids, and
    the identity sequence goes past them. A load into a table with rows numbers anew."""
    path = tmp_path / "fids.gpkg"
    points = [shapely.Point(i, i) for i in range(3)]
    frame = gpd.GeoDataFrame({"fid": [100, 200, 300], "name": ["a", "b", "c"]}, geometry=points)
    frame.set_crs(4326).to_file(path)  # the GeoPackage driver takes a field fid as the ids
    assert db.ingest("made_fids", path, create=True, ingest_id="fids").inserted == 3
    assert fids(admin, "made_fids") == [(100, "a"), (200, "b"), (300, "c")]
    admin.execute("INSERT INTO made_fids (name) VALUES ('drawn')")  # the identity's next
    assert fids(admin, "made_fids")[-1] == (301, "drawn")
    assert db.ingest("made_fids", path, ingest_id="again").inserted == 3
    assert fids(admin, "made_fids")[-3:] == [(302, "a"), (303, "b"), (304, "c")]
    with zipfile.ZipFile(tmp_path / "fids.zip", "w") as archive:  # the ids kept zipped too
        archive.write(path, "download/fids.gpkg")
    assert db.ingest("zipped_fids", tmp_path / "fids.zip", create=True).inserted == 3
    assert fids(admin, "zipped_fids") == [(100, "a"), (200, "b"), (300, "c")]
    geojson = tmp_path / "ids.geojson"  # GDAL calls an integer field id its ids: a field
    frame.rename(columns={"fid": "id"}).set_crs(4326).to_file(geojson)
    assert db.ingest("made_ids", geojson, create=True).inserted == 3
    assert list(columns(admin, "made_ids")) == ["fid", "id", "name", "geom"]
    assert admin.execute("SELECT fid, id FROM made_ids ORDER BY fid").fetchall() == [
        (1, 100),
        (2, 200),
        (3, 300),
    ]


def test_ids_a_geopackage_does_not_load_into_a_table_with_rows_are_said_so(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Into a table with rows a GeoPackage's fids are not loaded: a key without a default
    then has no values, which said only "the source has no values for fid"."""
    path = tmp_path / "fids.gpkg"
    points = [shapely.Point(i, i) for i in range(3)]
    frame = gpd.GeoDataFrame({"fid": [100, 200, 300], "name": ["a", "b", "c"]}, geometry=points)
    frame.set_crs(4326).to_file(path)
    admin.execute(
        "CREATE TABLE fid_no_default (fid bigint PRIMARY KEY, name text, "
        "geom geometry(Point, 4326))"
    )
    admin.execute("INSERT INTO fid_no_default VALUES (1, 'there', NULL)")
    with pytest.raises(ConfigurationError) as refused:
        db.ingest("fid_no_default", path, progress=False)
    assert 'load into "fid" only while the table is empty' in str(refused.value)
    assert "ADD GENERATED BY DEFAULT AS IDENTITY" in str(refused.value)


def test_a_sequence_behind_the_ids_another_load_kept_is_named_not_met_with_ignore(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A GeoPackage's fids kept in an empty table (as a concurrent load's are: its
    sequence moves past them at its end) then a source without ids: the default drew
    ids the table holds, and the advice to pass on_conflict='ignore' dropped those rows."""
    path = tmp_path / "fids.gpkg"
    points = [shapely.Point(i, i) for i in range(3)]
    frame = gpd.GeoDataFrame({"fid": [1, 2, 3], "name": ["a", "b", "c"]}, geometry=points)
    frame.set_crs(4326).to_file(path)
    assert db.ingest("race_fids", path, create=True, progress=False).inserted == 3
    admin.execute("SELECT setval(pg_get_serial_sequence('race_fids', 'fid'), 1, false)")
    rows = [{"name": "drawn", "geom": shapely.Point(5, 5)}]
    with pytest.raises(IntegrityViolation) as refused:
        db.ingest("race_fids", rows, progress=False)
    message = str(refused.value)
    assert "The source gives no fid: its default (a sequence) handed out an id" in message
    fix = message.split("Move it past them (")[1].split(") and run")[0]
    assert "on_conflict='ignore' would drop these rows" in message
    admin.execute(fix)
    assert db.ingest("race_fids", rows, progress=False).inserted == 1
    assert fids(admin, "race_fids")[-1] == (4, "drawn")


def test_a_default_drawing_from_a_sequence_no_column_owns_gets_its_own_setval(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """A legacy table's DEFAULT nextval('loose_ids'), no serial or identity: the advice's
    pg_get_serial_sequence() was NULL there, and its setval() moved nothing. A default
    drawing no sequence gets no setval at all."""
    admin.execute(
        'CREATE SEQUENCE "Loose Ids"; CREATE TABLE loose_keys (id int PRIMARY KEY '
        "DEFAULT nextval('\"Loose Ids\"'), name text, geom geometry(Point, 4326)); "
        "INSERT INTO loose_keys (id, name) VALUES (1, 'a'), (2, 'b')"
    )
    rows = [{"name": "drawn", "geom": shapely.Point(5, 5)}]
    with pytest.raises(IntegrityViolation) as refused:
        db.ingest("loose_keys", rows, progress=False)
    fix = str(refused.value).split("Move it past them (")[1].split(") and run")[0]
    assert fix == 'SELECT setval(\'"Loose Ids"\', max("id")) FROM "public"."loose_keys"'
    admin.execute(fix)
    assert db.ingest("loose_keys", rows, progress=False).inserted == 1
    assert admin.execute("SELECT max(id), max(name) FROM loose_keys").fetchone() == (3, "drawn")
    admin.execute(
        "CREATE TABLE computed_keys (id int PRIMARY KEY DEFAULT 1, name text, "
        "geom geometry(Point, 4326)); INSERT INTO computed_keys VALUES (1, 'a', NULL)"
    )
    with pytest.raises(IntegrityViolation) as refused:
        db.ingest("computed_keys", rows, progress=False)
    message = str(refused.value)
    assert "The source gives no id: its default handed out a value the table holds" in message
    assert "setval" not in message and "would drop these rows" in message
    admin.execute('DROP TABLE loose_keys, computed_keys; DROP SEQUENCE "Loose Ids"')


def test_a_file_geodatabase_folder_or_zipped_is_loaded_with_its_objectids(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Esri's File Geodatabase (GDAL's OpenFileGDB): a folder, its layers the feature
    classes, each feature's OBJECTID kept as a GeoPackage's fid is; zipped with its folder
    or with its files at the top, as downloads come."""
    gdb = tmp_path / "county.gdb"
    frame = parcels(4).drop(columns=["id", "seen", "Big"])  # no int64 in older ArcGIS
    pyogrio.write_dataframe(
        frame, gdb, layer="parcels", driver="OpenFileGDB", promote_to_multi=True
    )
    pyogrio.write_dataframe(
        frame.iloc[:2], gdb, layer="roads", driver="OpenFileGDB", promote_to_multi=True
    )
    with pytest.raises(
        ConfigurationError, match=r"2 layers with features \(parcels: 4, roads: 2\)"
    ):
        db.ingest("gdb_parcels", gdb, create=True)
    assert db.ingest("gdb_parcels", gdb, create=True, layer="parcels").inserted == 4
    assert list(columns(admin, "gdb_parcels")) == ["objectid", "ratio", "ok", "name", "shape"]
    admin.execute("ALTER TABLE gdb_parcels ALTER objectid RESTART WITH 1000")  # not its ids
    admin.execute("TRUNCATE gdb_parcels")
    assert db.ingest("gdb_parcels", gdb, layer="parcels", ingest_id="again").inserted == 4
    stored = admin.execute("SELECT objectid, name FROM gdb_parcels ORDER BY 1").fetchall()
    assert stored == [(i, f"parcel {i - 1}") for i in range(1, 5)]  # the OBJECTIDs
    folder, top = tmp_path / "folder.zip", tmp_path / "top.zip"
    with zipfile.ZipFile(folder, "w") as with_folder, zipfile.ZipFile(top, "w") as at_top:
        for part in gdb.iterdir():
            with_folder.write(part, f"download/county.gdb/{part.name}")
            at_top.write(part, part.name)
    for archive in (folder, top):
        loaded = db.ingest("gdb_roads", archive, create=True, layer="roads", ingest_id=archive.stem)
        assert loaded.inserted == 2
    assert admin.execute("SELECT count(*) FROM gdb_roads").fetchone() == (4,)
    runner = CliRunner()  # a folder on the command line
    env = {"GEOSESSION_DATABASE_URL": db.settings.url().render_as_string(hide_password=False)}
    cli = runner.invoke(app, ["ingest", str(gdb), "gdb_roads", "--layer", "roads"], env=env)
    assert cli.exit_code == 0, cli.output
    assert admin.execute("SELECT count(*) FROM gdb_roads").fetchone() == (6,)


def geojson_with_ids(path: Path, ids: list[Any], *, lines: bool = False) -> Path:
    """Features with RFC 7946 top-level ids, a name with JSON's awkward characters."""
    features = [
        {
            "type": "Feature",
            "id": feature_id,
            "geometry": {"type": "Point", "coordinates": [n, -n]},
            "properties": {"name": f'p{n} {{"x": "}}\\"'},
        }
        for n, feature_id in enumerate(ids)
    ]
    if lines:
        path.write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in features))
    else:
        path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_a_geojson_files_integer_feature_ids_load_into_its_id_column(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """GDAL reads a feature's integer "id" member as its FID, which it also makes up for
    features without one: the file's first feature tells them apart, and real ids load
    into the column id (a table's key, say), into a table with rows too."""
    admin.execute(
        "CREATE TABLE geojson_ids (id int PRIMARY KEY, name text, geom geometry(Point, 4326))"
    )
    admin.execute("INSERT INTO geojson_ids VALUES (1, 'there', 'SRID=4326;POINT(0 0)')")
    source = geojson_with_ids(tmp_path / "ids.geojson", [17, 27, 37])
    assert db.ingest("geojson_ids", source).inserted == 3
    stored = admin.execute("SELECT id, name FROM geojson_ids ORDER BY id").fetchall()
    assert [row[0] for row in stored] == [1, 17, 27, 37]
    assert stored[1][1] == 'p0 {"x": "}\\"'
    zipped = tmp_path / "ids.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(geojson_with_ids(tmp_path / "more.geojson", [47]), "data/more.geojson")
    assert db.ingest("geojson_ids", zipped).inserted == 1
    gzipped = tmp_path / "gz.geojson.gz"  # read through GDAL's /vsigzip/: its ids too
    gzipped.write_bytes(gzip.compress(geojson_with_ids(tmp_path / "gz.geojson", [57]).read_bytes()))
    assert db.ingest("geojson_ids", gzipped).inserted == 1
    assert db.ingest("geojson_ids_made", source, create=True).inserted == 3
    assert list(columns(admin, "geojson_ids_made")) == ["id", "name", "geom"]
    lines = geojson_with_ids(tmp_path / "ids.geojsonl", [5, 6], lines=True)
    assert db.ingest("geojson_seq_ids", lines, create=True).inserted == 2
    assert admin.execute("SELECT id FROM geojson_ids WHERE id > 40 ORDER BY id").fetchall() == [
        (47,),
        (57,),
    ]
    made = admin.execute("SELECT id FROM geojson_ids_made ORDER BY id").fetchall()
    seq = admin.execute("SELECT id FROM geojson_seq_ids ORDER BY id").fetchall()
    assert (made, seq) == ([(17,), (27,), (37,)], [(5,), (6,)])
    named = geojson_with_ids(tmp_path / "named.geojson", ["a1", "b2"])  # text: a field id
    admin.execute("DROP TABLE geojson_ids_made")
    assert db.ingest("geojson_ids_made", named, create=True).inserted == 2
    assert list(columns(admin, "geojson_ids_made")) == ["fid", "id", "name", "geom"]


def test_the_first_feature_of_a_geojson_file_says_whether_it_has_ids(tmp_path: Path) -> None:
    from geosession.ingest.archives import GdalSource
    from geosession.ingest.geojson_ids import has_integer_ids

    def ids(text: str) -> bool:
        path = tmp_path / "f.geojson"
        path.write_text(text)
        return has_integer_ids(GdalSource(path, path, shapefiles=False), sequence=False)

    feature = '{"type": "Feature", "properties": {"note": "} \\" {"}, "geometry": null'
    assert ids('{"type": "FeatureCollection", "features": [' + feature + ', "id": 3}]}')
    assert not ids('{"type": "FeatureCollection", "features": [' + feature + ', "id": "3"}]}')
    assert not ids('{"type": "FeatureCollection", "features": [' + feature + "}]}")
    assert not ids('{"type": "FeatureCollection", "features": []}')
    big = '"' + "x" * (1 << 20) + '"'  # a first feature beyond the first megabyte
    assert not ids('{"type": "FeatureCollection", "features": [{"p": ' + big + ', "id": 3}]}')


def test_mapinfo_and_spatialite_files_are_read_through_gdal(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """MapInfo (.tab with its .dat, .map and .id; .mif with its .mid) and SpatiaLite, the
    other formats pyogrio's GDAL reads, zipped in a folder too."""
    points = [shapely.Point(i + 0.5, -i) for i in range(3)]
    names = [f"parcel {i}" for i in range(3)]
    frame = gpd.GeoDataFrame({"id": [0, 1, 2], "name": names}, geometry=points, crs=4326)
    download = tmp_path / "download"
    download.mkdir()
    pyogrio.write_dataframe(frame, download / "parcels.tab", driver="MapInfo File")
    pyogrio.write_dataframe(frame, tmp_path / "parcels.mif", driver="MapInfo File")
    pyogrio.write_dataframe(frame, tmp_path / "parcels.sqlite", driver="SQLite", layer="p")
    archive = tmp_path / "tab.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for part in download.iterdir():
            zipped.write(part, f"download/{part.name}")
    sources = {
        "from_tab": download / "parcels.tab",
        "from_mif": tmp_path / "parcels.mif",
        "from_sqlite": tmp_path / "parcels.sqlite",
        "from_zipped_tab": archive,
    }
    for table, source in sources.items():
        assert db.ingest(table, source, create=True).inserted == 3, table
        geom = "geometry" if source.suffix == ".sqlite" else "geom"  # SpatiaLite names it
        stored = admin.execute(
            f"SELECT id, name, ST_AsText({geom}), ST_SRID({geom}) FROM {table} ORDER BY id"
        ).fetchall()
        assert stored == [(i, f"parcel {i}", f"POINT({i + 0.5} {-i})", 4326) for i in range(3)], (
            table
        )


def test_a_resumed_load_keeps_feature_ids_as_its_first_run_did(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """The first run found the table empty and kept the ids; when it stopped (here at an
    invalid geometry), the table had rows, and the ledger says to keep them still."""
    path = tmp_path / "fids.gpkg"
    square = shapely.box(0, 0, 1, 1)
    bow_tie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    frame = gpd.GeoDataFrame(
        {"fid": [7, 8, 9], "name": ["a", "b", "c"]}, geometry=[square, bow_tie, square]
    )
    frame.set_crs(4326).to_file(path)
    with pytest.raises(InvalidGeometry):
        db.ingest(
            "made_fids", path, create=True, ingest_id="fids", chunk_size=1, on_invalid="raise"
        )
    assert fids(admin, "made_fids") == [(7, "a")]
    report = db.ingest("made_fids", path, ingest_id="fids", chunk_size=1)
    assert report.already_committed == 1 and report.inserted == 1 and len(report.rejected) == 1
    assert fids(admin, "made_fids") == [(7, "a"), (9, "c")]


def test_shapefile_polygons_become_multipolygons_and_names_lower_case(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "parcels.shp"
    parcels(50, crs="EPSG:3857")[["id", "Name", "geometry"]].to_file(path)
    report = db.ingest("made_shp", path, create=True)
    assert report.created and report.inserted == 50 and not report.rejected
    assert columns(admin, "made_shp") == {
        "fid": "bigint",
        "id": "integer",  # a Shapefile's N(9) is read as an integer
        "name": "text",
        "geom": "geometry(MultiPolygon,3857)",
    }


def test_a_shapefile_without_cpg_zipped_or_not_and_a_latin1_csv_load_their_text(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """ISO-8859-1 field names and values of a Shapefile without its .cpg file (GDAL
    reports that encoding and passes the bytes on); a CSV in cp1252 named by --encoding."""
    path = tmp_path / "orte.shp"
    places = gpd.GeoDataFrame(
        {"straße": ["Zürich", "Besançon"]}, geometry=shapely.points([0, 1], 0), crs=4326
    )
    places.to_file(path, encoding="latin1")
    path.with_suffix(".cpg").unlink()
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(path), "made_latin", "--create"])
    assert result.exit_code == 0, result.output
    assert columns(admin, "made_latin")["straße"] == "text"
    assert admin.execute('SELECT "straße" FROM made_latin ORDER BY fid').fetchall() == [
        ("Zürich",),
        ("Besançon",),
    ]
    archive = tmp_path / "orte.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for part in tmp_path.glob("orte.*"):
            if part != archive:
                zipped.write(part, f"orte/{part.name}")  # in a folder, as many downloads are
    zipped_run = runner.invoke(app, ["ingest", str(archive), "made_zip", "--create"])
    assert zipped_run.exit_code == 0, zipped_run.output
    assert admin.execute('SELECT "straße" FROM made_zip ORDER BY fid').fetchall() == [
        ("Zürich",),
        ("Besançon",),
    ]
    csv_path = tmp_path / "prices.csv"
    csv_path.write_bytes("name;wkt\n5 €;POINT(1 2)\n".encode("cp1252"))
    refused = runner.invoke(app, ["ingest", str(csv_path), "made_latin_csv", "--create"])
    assert refused.exit_code != 0 and "--encoding latin1" in str(refused.exception)
    loaded = runner.invoke(
        app, ["ingest", str(csv_path), "made_latin_csv", "--create", "--encoding", "cp1252"]
    )
    assert loaded.exit_code == 0, loaded.output
    assert admin.execute("SELECT name FROM made_latin_csv").fetchall() == [("5 €",)]
    told = runner.invoke(app, ["ingest", str(path), "made_latin", "--encoding", "utf-8"])
    assert "orte.shp holds text that is not utf-8" in str(told.exception)  # a traceback
    assert "--encoding latin1" in str(told.exception)
    geojson = tmp_path / "orte.geojson"
    feature = '{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, '
    geojson.write_bytes((feature + '"properties": {"straße": "Zürich"}}').encode("latin1"))
    refused = runner.invoke(app, ["ingest", str(geojson), "made_latin"])
    assert "orte.geojson holds text that is not UTF-8" in str(refused.exception)
    assert "iconv -f latin1 -t utf-8 orte.geojson" in str(refused.exception)


def test_geodataframe_keeps_its_names_and_types_z_and_srid(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    frame = gpd.GeoDataFrame(
        {
            "fid": pd.array([1, 2, None], dtype="Int64"),
            "name": ["a", "b", None],
            "Level": pd.array([1, 2, 3], dtype="int16"),
            "local": pd.to_datetime([dt.datetime(2026, 1, 1, 10), None, dt.datetime(2026, 1, 2)]),
            "half": np.array([0.5, np.nan, 2], dtype="float16"),  # was a text column
        },
        geometry=[shapely.Point(1, 2, 3), None, shapely.Point(4, 5, 6)],
        crs="EPSG:2056",
    )
    report = db.ingest("Made_Frame", frame, create=True)
    assert report.created and report.inserted == 3
    assert columns(admin, '"Made_Frame"') == {
        "fid": "bigint",  # the frame's own fid: no identity key added
        "name": "text",
        "level": "smallint",
        "local": "timestamp without time zone",
        "half": "real",
        "geometry": "geometry(PointZ,2056)",
    }
    stored = admin.execute(
        'SELECT ST_AsText(geometry), local, half FROM "Made_Frame" ORDER BY level'
    )
    assert stored.fetchall() == [
        ("POINT Z (1 2 3)", dt.datetime(2026, 1, 1, 10), 0.5),
        (None, None, None),
        ("POINT Z (4 5 6)", dt.datetime(2026, 1, 2), 2.0),
    ]


def test_geojson_of_mixed_types_with_a_field_named_geom(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "mixed.geojson"
    shapes = [shapely.box(0, 0, 1, 1), shapely.LineString([(0, 0), (2, 2)])]
    gpd.GeoDataFrame({"geom": ["box", "line"]}, geometry=shapes, crs=4326).to_file(path)
    report = db.ingest("made_gpkg", path, create=True)
    assert report.created and report.inserted == 2
    assert columns(admin, "made_gpkg") == {
        "fid": "bigint",
        "geom": "text",
        "wkb_geometry": "geometry(Geometry,4326)",
    }
    stored = admin.execute("SELECT geom, ST_GeometryType(wkb_geometry) FROM made_gpkg ORDER BY fid")
    assert stored.fetchall() == [("box", "ST_Polygon"), ("line", "ST_LineString")]


KML = """<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2"><Document>
<Placemark><name>summit</name><Point><coordinates>13.4,52.5,{z}</coordinates></Point></Placemark>
<Placemark><name>trail</name><LineString><coordinates>13.4,52.5,{z} 13.5,52.6,0</coordinates>
</LineString></Placemark></Document></kml>
"""


def test_a_layer_of_unknown_type_gets_its_features_types_and_heights(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """GeoJSON and KML declare no type: pyogrio says Unknown, without Z. The column was
    geometry(Geometry) 2D: a file of Polygons and MultiPolygons loaded into a column of
    any type, and every feature of a KML with heights, or of a 3D GeoJSON of two types,
    was a dimension reject. Every feature's type is read now, of those where= and bbox=
    keep (a superset's types made a column of any type)."""
    ring = [[0, 0], [1, 0], [1, 1], [0, 0]]
    mixed = tmp_path / "regions.geojson"
    mixed.write_bytes(orjson.dumps(feature_collection(
        {"type": "Polygon", "coordinates": [ring]},
        *[{"type": "MultiPolygon", "coordinates": [[ring]]}] * 3,
    )))  # fmt: skip
    assert db.ingest("made_unknown_type", mixed, create=True).inserted == 4
    assert columns(admin, "made_unknown_type")["geom"] == "geometry(MultiPolygon,4326)"
    assert stored_types(admin, "made_unknown_type") == ["ST_MultiPolygon"] * 4

    heights = tmp_path / "trail.kml"
    heights.write_text(KML.format(z=34))
    report = db.ingest("made_kml_heights", heights, create=True)
    assert report.inserted == 2 and not report.rejected
    assert columns(admin, "made_kml_heights")["geom"] == "geometry(GeometryZ,4326)"
    (z,) = admin.execute("SELECT ST_Z(geom) FROM made_kml_heights WHERE name = 'summit'")
    assert z == (34.0,)

    flat = tmp_path / "flat.kml"  # altitudes of 0, as Google Earth writes them
    flat.write_text(KML.format(z=0))
    report = db.ingest("made_kml_flat", flat, create=True)
    assert report.inserted == 2 and report.z_dropped == 2
    assert columns(admin, "made_kml_flat")["geom"] == "geometry(Geometry,4326)"

    points = tmp_path / "points.geojson"
    points.write_bytes(orjson.dumps(feature_collection(
        {"type": "Point", "coordinates": [1, 2, 3]},
        {"type": "MultiPoint", "coordinates": [[1, 2, 0], [2, 3, 0]]},
    )))  # fmt: skip
    assert db.ingest("made_points_z", points, create=True).inserted == 2
    assert columns(admin, "made_points_z")["geom"] == "geometry(MultiPointZ,4326)"

    places = tmp_path / "places.geojson"  # a filter keeps the areas: a column of theirs
    places.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"kind": "area"},
         "geometry": {"type": "Polygon", "coordinates": [ring]}},
        {"type": "Feature", "properties": {"kind": "spot"},
         "geometry": {"type": "Point", "coordinates": [5, 5]}},
    ]}))  # fmt: skip
    report = db.ingest("made_filtered_type", places, create=True, where="kind = 'area'")
    assert report.inserted == 1
    assert columns(admin, "made_filtered_type")["geom"] == "geometry(Polygon,4326)"
    report = db.ingest("made_boxed_type", places, create=True, bbox=(4, 4, 6, 6))
    assert report.inserted == 1
    assert columns(admin, "made_boxed_type")["geom"] == "geometry(Point,4326)"
    with pytest.raises(ConfigurationError, match=r"where='nokind = 1' cannot filter"):
        db.ingest("made_unfiltered_type", places, create=True, where="nokind = 1")
    assert admin.execute("SELECT to_regclass('made_unfiltered_type')").fetchone() == (None,)


def test_geometries_of_undeclared_types_give_arrow_data_and_csvs_their_column_type(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """GeoParquet metadata with "geometry_types": [] (any: geosession's Arrow export,
    which writes the schema before the rows), a GeoArrow WKB field, and a CSV's WKT field
    declare no type: the column was geometry(Geometry) 2D, so heights were all refused.
    The values' types are read: every value of a file, a stream's first rows."""
    import pyarrow.ipc

    lines = [shapely.LineString([(0, 0, 5), (1, 1, 6)]), shapely.Point(2, 2, 7)]
    frame = gpd.GeoDataFrame({"n": [1, 2]}, geometry=lines, crs=4326).rename_geometry("geom")
    parquet = tmp_path / "untyped.parquet"
    frame.to_parquet(parquet)
    table = pq.read_table(parquet)
    geo = orjson.loads(table.schema.metadata[b"geo"])
    geo["columns"]["geom"]["geometry_types"] = []
    untyped = table.replace_schema_metadata({b"geo": orjson.dumps(geo)})
    pq.write_table(untyped, parquet)
    assert db.ingest("made_untyped_parquet", parquet, create=True).inserted == 2
    assert columns(admin, "made_untyped_parquet")["geom"] == "geometry(GeometryZ,4326)"

    made = tmp_path / "exported.arrow"
    db.export("made_untyped_parquet", made)  # GeoArrow WKB, geometry_types []
    assert db.ingest("made_untyped_ipc", made, create=True).inserted == 2
    assert columns(admin, "made_untyped_ipc")["geom"] == "geometry(GeometryZ,4326)"
    with pyarrow.ipc.open_file(made) as reader:
        stream = reader.read_all().to_reader()
    assert db.ingest("made_untyped_stream", stream, create=True).inserted == 2
    assert columns(admin, "made_untyped_stream")["geom"] == "geometry(GeometryZ,4326)"

    csv_file = tmp_path / "heights.csv"  # psql's EWKT: a Z by its third coordinate
    csv_file.write_text(
        "name,wkt\nsummit,SRID=4326;POINT(13.4 52.5 34)\n"
        'trail,"SRID=4326;MULTIPOINT((13.4 52.5 30),(13.5 52.6 31))"\n'
    )
    assert db.ingest("made_wkt_heights", csv_file, create=True).inserted == 2
    assert columns(admin, "made_wkt_heights")["geom"] == "geometry(MultiPointZ,4326)"


def test_reading_a_source_for_its_types_holds_no_transaction_open(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """The source was read for its columns' types (a CSV's every value, a GeoJSON's every
    feature: seconds per million rows) inside the transaction that then made the table:
    idle in transaction all along, so a server's idle_in_transaction_session_timeout
    ended the session, and the load with it."""
    from geosession.ingest import create

    db = make_db(server_settings={"idle_in_transaction_session_timeout": "300"})
    reading = create.source_schema

    def slowly(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.6)  # a large file's pass, past the server's timeout
        return reading(*args, **kwargs)

    monkeypatch.setattr(create, "source_schema", slowly)
    path = tmp_path / "slow.csv"
    path.write_text("name,wkt\na,POINT(1 2)\n")
    assert db.ingest("made_slowly", path, create=True, srid=4326).inserted == 1
    assert columns(admin, "made_slowly")["geom"] == "geometry(Point,4326)"


def test_dict_rows_make_their_table(db: SpatialDatabase, admin: psycopg.Connection[Any]) -> None:
    """An API's JSON records (response.json(): a list of dicts) were refused by
    create=True: "its rows declare no column types". They are typed as a DataFrame of
    Python objects is, an integer with None staying bigint; keys past the first 10,000
    records of a list widen the table as Features' properties do (a generator, read once,
    is typed by its first 10,000, and a key first seen past them is refused saying so);
    keys land in the lower-cased columns in any case."""
    records: list[dict[str, Any]] = [
        {"Name": "Berlin", "lat": 52.52, "lon": 13.405, "visits": 3, "tags": ["capital"]},
        {"Name": "Nowhere", "lat": None, "lon": None, "visits": None, "tags": None},
        *({"Name": f"stop {n}", "lat": 1.0, "lon": 2.0, "visits": n} for n in range(10_000)),
        {"Name": "late", "lat": 1.0, "lon": 2.0, "visits": 2.5, "note": "first seen here"},
    ]
    report = db.ingest("made_records", records, create=True)
    assert report.created and report.inserted == 10_003 and not report.rejected
    assert columns(admin, "made_records") == {
        "fid": "bigint",
        "name": "text",
        "visits": "double precision",  # 2.5 after 10,000 integers
        "tags": "text[]",
        "geom": "geometry(Point,4326)",
        "note": "text",
    }
    stored = admin.execute(
        "SELECT name, visits, tags, ST_AsText(geom), note FROM made_records "
        "WHERE name IN ('Berlin', 'Nowhere', 'late') ORDER BY fid"
    )
    assert stored.fetchall() == [
        ("Berlin", 3.0, ["capital"], "POINT(13.405 52.52)", None),
        ("Nowhere", None, None, None, None),
        ("late", 2.5, None, "POINT(2 1)", "first seen here"),
    ]
    shapes = [{"id": n, "footprint": {"type": "Point", "coordinates": [n, n]}} for n in (1, 2)]
    report = db.ingest("made_record_shapes", shapes, create=True)
    assert report.inserted == 2 and report.geometry_fields_found == {"footprint"}
    made = columns(admin, "made_record_shapes")
    assert made["id"] == "bigint" and made["footprint"] == "geometry(Point,4326)"
    pages = ({"id": n, "lat": 1.0, "lon": 2.0} for n in range(10_001))  # a paged API's
    assert db.ingest("made_from_a_generator", pages, create=True).inserted == 10_001
    assert columns(admin, "made_from_a_generator")["id"] == "bigint"
    late = ({"id": n, **({"note": "late"} if n == 10_500 else {})} for n in range(11_000))
    with pytest.raises(ConfigurationError) as refused:
        db.ingest("made_late_key", late, create=True, chunk_size=1_000)
    assert "row 10501 has fields that are not columns of the target: 'note'" in str(refused.value)
    assert "create=True made the table from the source's first 10,000 rows" in str(refused.value)
    assert "give the rows as a list" in str(refused.value)
    with pytest.raises(ConfigurationError, match="from a generator: its rows declare no"):
        db.ingest("made_from_tuples", ((n, "a") for n in range(3)), create=True)


def test_json_files_of_records_load_as_dict_rows(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """An API's answer saved by curl (a JSON array of records) went to GDAL, which refused
    it; piped in, it was read as CSV: a table of columns named '[{"name":"a"' and no row.
    A JSON array of objects and JSON Lines of them load as dict rows, from a file or
    standard input, and resume as files do; an array of Features loads as Features."""
    records = [{"name": "Berlin", "lat": 52.52, "lon": 13.405, "visits": 3},
               {"name": "Paris", "lat": 48.86, "lon": 2.35, "visits": None}]  # fmt: skip
    array = tmp_path / "stops.json"
    array.write_bytes(orjson.dumps(records))
    lines = tmp_path / "stops.jsonl"
    lines.write_bytes(b"\n".join(orjson.dumps(row) for row in records) + b"\n\n")
    for path, table in ((array, "json_array"), (lines, "json_lines")):
        assert db.ingest(table, path, create=True).inserted == 2
        assert columns(admin, table) == {
            "fid": "bigint",
            "name": "text",
            "visits": "bigint",
            "geom": "geometry(Point,4326)",
        }
        again = db.ingest(table, path)
        assert again.already_committed == 2 and again.inserted == 0
    stored = admin.execute("SELECT name, ST_AsText(geom) FROM json_lines ORDER BY fid")
    assert stored.fetchall() == [("Berlin", "POINT(13.405 52.52)"), ("Paris", "POINT(2.35 48.86)")]
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    for path, table in ((array, "piped_array"), (lines, "piped_lines")):
        piped = CliRunner().invoke(app, ["ingest", "-", table, "--create"], input=path.read_bytes())
        assert piped.exit_code == 0, piped.output
        assert admin.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
    features = tmp_path / "features.json"
    point = {"type": "Point", "coordinates": [1, 2]}
    features.write_bytes(orjson.dumps([{"type": "Feature", "properties": {}, "geometry": point}]))
    assert db.ingest("json_features", features, create=True).inserted == 1
    numbers = tmp_path / "numbers.json"
    numbers.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match=r"numbers\.json, item 1 of its array: a JSON nu"):
        db.ingest("json_numbers", numbers, create=True)
    cut = tmp_path / "cut.json"
    cut.write_bytes(orjson.dumps(records)[:-20])
    with pytest.raises(ConfigurationError, match=r"cut\.json is not JSON after item 1 of its arr"):
        db.ingest("json_cut", cut, create=True)
    assert admin.execute("SELECT to_regclass('json_cut')").fetchone() == (None,)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ConfigurationError, match="broken.jsonl, line 2: not JSON"):
        db.ingest("json_broken", broken, create=True)


def test_the_report_names_geometry_columns_made_without_an_srid(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """A CSV of WKT loaded with create=True made a geometry column of no SRID without a
    word (doctor found it later): the report names such columns, unless srid=0 asked for
    one, or the file's .prj or srid= gave one."""
    path = tmp_path / "places.csv"
    path.write_text("name,wkt\na,POINT(1 2)\n")
    report = db.ingest("made_unreferenced", path, create=True)
    assert report.made_without_srid == ["geom"]
    assert "made without an SRID (none stated: give --srid)" in str(report)
    assert report.as_dict()["made_without_srid"] == ["geom"]
    assert db.ingest("made_srid_0", path, create=True, srid=0).made_without_srid == []
    assert db.ingest("made_srid_4326", path, create=True, srid=4326).made_without_srid == []
    (tmp_path / "places.prj").write_text(pyproj_wkt(3857))
    assert db.ingest("made_by_prj", path, create=True).made_without_srid == []


def pyproj_wkt(code: int) -> str:
    import pyproj

    return str(pyproj.CRS.from_epsg(code).to_wkt())


def test_records_in_a_member_of_a_json_object_load_as_dict_rows(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """Most APIs wrap their records ({"count": 2, "results": [...]}): such a file went to
    GDAL, whose error was "not recognized as being in a supported file format", and piped
    in on one line it loaded as one row of a count and a jsonb of the records. The array
    of objects in a member loads, streamed (layer= names the member when several hold
    one); GeoJSON and Esri JSON objects stay GDAL's."""
    records = [{"id": 1, "lat": 1.0, "lon": 2.0}, {"id": 2, "lat": 3.0, "lon": 4.0}]
    answer = {"count": 2, "meta": {"page": 1}, "results": records, "next": None}
    wrapped = tmp_path / "answer.json"
    wrapped.write_bytes(orjson.dumps(answer, option=orjson.OPT_INDENT_2))
    assert db.ingest("wrapped_records", wrapped, create=True).inserted == 2
    stored = admin.execute("SELECT id, ST_AsText(geom) FROM wrapped_records ORDER BY id")
    assert stored.fetchall() == [(1, "POINT(2 1)"), (2, "POINT(4 3)")]
    two = tmp_path / "two.json"
    two.write_bytes(orjson.dumps({"errors": [{"code": 7}], "results": records}))
    with pytest.raises(ConfigurationError, match=r"members 'errors' and 'results' each .* lay"):
        db.ingest("two_records", two, create=True)
    assert db.ingest("two_records", two, create=True, layer="results").inserted == 2
    with pytest.raises(ConfigurationError, match=r"layer='data' names no member .*: 'errors', "):
        db.ingest("two_records", two, layer="data")
    far = tmp_path / "far.json"  # its records past the first megabyte that is scanned
    far.write_bytes(orjson.dumps({"notes": "x" * 1_100_000, "results": records}))
    with pytest.raises(ConfigurationError, match=r"further on holds its records .* layer="):
        db.ingest("far_records", far, create=True)
    assert db.ingest("far_records", far, create=True, layer="results").inserted == 2
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    piped = CliRunner().invoke(
        app, ["ingest", "-", "piped_answer", "--create"], input=orjson.dumps(answer)
    )
    assert piped.exit_code == 0, piped.output
    assert admin.execute("SELECT count(*), max(id) FROM piped_answer").fetchone() == (2, 2)
    point = {"type": "Point", "coordinates": [1, 2]}
    collection = {  # a member of metadata records before GeoJSON's own: GDAL's still
        "metadata": [{"source": "survey"}],
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"n": 1}, "geometry": point}],
    }
    geojson = tmp_path / "collection.json"
    geojson.write_bytes(orjson.dumps(collection))
    assert db.ingest("collection_with_metadata", geojson, create=True).inserted == 1
    assert "n" in columns(admin, "collection_with_metadata")
    esri = tmp_path / "esri.json"  # its fields are an array of objects too
    esri.write_bytes(
        orjson.dumps(
            {
                "geometryType": "esriGeometryPoint",
                "spatialReference": {"wkid": 4326},
                "fields": [{"name": "n", "type": "esriFieldTypeInteger", "alias": "n"}],
                "features": [{"attributes": {"n": 1}, "geometry": {"x": 1, "y": 2}}],
            }
        )
    )
    assert db.ingest("esri_points", esri, create=True).inserted == 1
    assert columns(admin, "esri_points")["geom"] == "geometry(Point,4326)"
    saved = tmp_path / "saved_lines.json"  # JSON Lines saved under .json: GDAL refused it
    saved.write_bytes(b"\n".join(map(orjson.dumps, records)))
    assert db.ingest("saved_lines", saved, create=True).inserted == 2
    one = tmp_path / "stop.json"  # GET /stops/5: one record
    one.write_bytes(orjson.dumps(records[0], option=orjson.OPT_INDENT_2))
    assert db.ingest("one_record", one, create=True).inserted == 1
    assert admin.execute("SELECT id, ST_AsText(geom) FROM one_record").fetchone() == (
        1,
        "POINT(2 1)",
    )
    piped = CliRunner().invoke(
        app, ["ingest", "-", "piped_record", "--create"], input=one.read_bytes()
    )  # its first line, "{", is no whole record: it went to GDAL
    assert piped.exit_code == 0, piped.output
    assert admin.execute("SELECT count(*) FROM piped_record").fetchone() == (1,)
    shapes = tmp_path / "shapes.json"  # a geometry: GDAL's, though it holds objects
    shapes.write_bytes(orjson.dumps({"type": "GeometryCollection", "geometries": [point]}))
    assert db.ingest("one_collection", shapes, create=True).inserted == 1
    assert columns(admin, "one_collection")["geom"] == "geometry(Geometry,4326)"


def test_how_a_json_object_holds_its_records_is_found_once_a_load(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path, monkeypatch: Any
) -> None:
    """The load, create=True's pass for the types and the row count's thread each asked
    how the file holds its records, each reading and scanning its first megabyte again
    (54 ms an answer for an object of 200,000 records). The scan is kept while the file
    stays as it was; a file written again is scanned again."""
    from geosession.ingest import json_records

    scans: list[bytes] = []
    scan_of = json_records.ObjectScan.of
    monkeypatch.setattr(
        json_records.ObjectScan,
        "of",
        staticmethod(lambda head: scans.append(head[:20]) or scan_of(head)),
    )
    records = [{"id": n, "lat": 1.0, "lon": 2.0} for n in range(3)]
    answer = tmp_path / "held_answer.json"
    answer.write_bytes(orjson.dumps({"count": 3, "results": records}))
    assert db.ingest("json_held_answer", answer, create=True).inserted == 3
    assert len(scans) == 1
    answer.write_bytes(orjson.dumps({"count": 2, "items": records[:2]}))
    assert db.ingest("json_held_again", answer, create=True).inserted == 2
    assert len(scans) == 2
    assert admin.execute("SELECT count(*) FROM json_held_again").fetchone() == (2,)


def test_a_json_file_of_records_is_read_a_record_at_a_time_and_typed_whole(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A JSON array was read whole into Python objects (a gigabyte's API dump, gigabytes
    of memory), and JSON Lines typed from their first 10,000 records, so a float or a key
    first seen later was a reject. Both stream, and create=True reads every record for
    the types before the load, as for a CSV."""
    rows = [{"id": n, "lat": 1.0, "lon": 2.0, "score": n} for n in range(12_000)]
    rows[-1] |= {"score": 0.5, "note": "late"}
    array, lines = tmp_path / "scores.json", tmp_path / "scores.jsonl"
    array.write_bytes(orjson.dumps(rows))
    lines.write_bytes(b"\n".join(map(orjson.dumps, rows)))
    for path, table in ((array, "json_scores"), (lines, "jsonl_scores")):
        report = db.ingest(table, path, create=True)
        assert report.inserted == 12_000 and not report.rejected
        made = columns(admin, table)
        assert made["score"] == "double precision" and made["note"] == "text"
        late = admin.execute(f"SELECT score, note FROM {table} WHERE id = 11999").fetchone()
        assert late == (0.5, "late")
    piece = {"type": "Point", "coordinates": [1.0, 2.0]}
    features = [
        {"type": "Feature", "properties": {"n": n}, "geometry": piece} for n in range(10_001)
    ]
    features[-1]["properties"]["n"] = "text at last"
    collection = tmp_path / "features.json"
    collection.write_bytes(orjson.dumps(features))
    assert db.ingest("json_late_features", collection, create=True).inserted == 10_001
    assert columns(admin, "json_late_features")["n"] == "text"


def test_a_json_records_file_takes_rename_as_a_files_fields_do(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """rename= (--rename) was refused for a JSON records file as for rows in Python ("rows'
    keys are renamed in Python"), which a command-line user cannot do. It renames the
    records' keys, checked against those of the first 1,000 records before any is loaded."""
    records = [{"Stop Name": "Central", "lat": 1.0, "lon": 2.0}, {"Stop Name": "Park"}]
    lines = tmp_path / "stops.jsonl"
    lines.write_bytes(b"\n".join(map(orjson.dumps, records)))
    rename = {"Stop Name": "stop_name"}
    report = db.ingest("renamed_stops", lines, create=True, rename=rename)
    assert report.inserted == 2
    assert list(columns(admin, "renamed_stops")) == ["fid", "stop_name", "geom"]
    answer = tmp_path / "answer.json"
    answer.write_bytes(orjson.dumps({"results": records}))
    assert db.ingest("renamed_stops", answer, rename=rename).inserted == 2
    with pytest.raises(ConfigurationError, match=r"rename names 'Name', which .*: Stop Name, lat"):
        db.ingest("renamed_wrong", lines, create=True, rename={"Name": "stop_name"})
    assert admin.execute("SELECT to_regclass('renamed_wrong')").fetchone() == (None,)


def test_an_option_of_another_kind_of_source_is_refused_before_a_table_is_made(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """where= given for a CSV or a JSON records file was refused only once create=True had
    made the table (an empty one stayed), and a JSON file was named "the source (a
    chain)". The options are checked against the source first, which is named."""
    lines = tmp_path / "stops.jsonl"
    lines.write_bytes(orjson.dumps({"id": 1, "lat": 1.0, "lon": 2.0}) + b"\n")
    csv_file = tmp_path / "stops.csv"
    csv_file.write_text("id,wkt\n1,POINT(1 2)\n")
    frame = pd.DataFrame({"id": [1], "wkt": ["POINT(1 2)"]})
    refused = {
        "refused_lines": (lines, {"where": "id > 1"}, r"stops\.jsonl \(JSON records\) is not"),
        "refused_csv": (csv_file, {"layer": "stops"}, r"stops\.csv is not one"),
        "refused_frame": (frame, {"bbox": (0, 0, 1, 1)}, r"the source \(a DataFrame\) is not"),
        "refused_list": ([{"id": 1}], {"encoding": "latin-1"}, r"the source \(a list\) is not"),
    }
    for table, (source, option, named) in refused.items():
        with pytest.raises(ConfigurationError, match=named):
            db.ingest(table, source, create=True, **option)
        assert admin.execute("SELECT to_regclass(%s)", [table]).fetchone() == (None,)


def feature_collection(*geometries: dict[str, Any]) -> dict[str, Any]:
    features = [
        {"type": "Feature", "properties": {"n": n}, "geometry": geometry}
        for n, geometry in enumerate(geometries)
    ]
    return {"type": "FeatureCollection", "features": features}


def as_multi(polygon: Any) -> Any:
    return shapely.MultiPolygon([polygon]) if polygon.geom_type == "Polygon" else polygon


def stored_types(admin: psycopg.Connection[Any], table: str) -> list[str]:
    rows = admin.execute(f"SELECT ST_GeometryType(geom) FROM {table} ORDER BY fid")
    return [row[0] for row in rows]


def test_async_ingest_creates_the_table_too(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    import asyncio

    async def load() -> Any:
        try:
            return await db.async_ingest("made_parquet", parcels(25), create=True)
        finally:
            await db.adispose()

    report = asyncio.run(load())
    assert report.created and report.inserted == 25
    assert columns(admin, "made_parquet")["geometry"] == "geometry(MultiPolygon,4326)"

    async def trickling() -> Any:  # a live feed's records, through the async bridge
        for n in range(6):
            await asyncio.sleep(0.1)
            yield {"id": n, "lat": 1.0, "lon": 2.0 + n}

    async def feed() -> Any:
        try:
            rows = trickling()
            return await db.async_ingest("made_feed", rows, create=True, flush_interval=0.3)
        finally:
            await db.adispose()

    report = asyncio.run(feed())
    assert report.created and report.inserted == 6

    async def tuples() -> Any:
        yield (1, "a")

    async def refused() -> None:
        try:
            await db.async_ingest("made_from_async_tuples", tuples(), create=True)
        finally:
            await db.adispose()

    with pytest.raises(ConfigurationError, match="from an async iterable: its rows declare"):
        asyncio.run(refused())
    assert columns(admin, "made_feed") == {
        "fid": "bigint",
        "id": "bigint",
        "geom": "geometry(Point,4326)",
    }


def test_geoparquet_types_from_its_metadata_without_the_bbox_columns(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "parcels.parquet"
    parcels(40).to_parquet(path, write_covering_bbox=True)
    report = db.ingest("made_parquet", path, create=True)
    assert report.created and report.inserted == 40 and not report.rejected
    made = columns(admin, "made_parquet")
    assert "bbox" not in made and made["geometry"] == "geometry(MultiPolygon,4326)"
    assert made["seen"] == "timestamp with time zone" and made["ratio"] == "double precision"


def arrow_parcels(n: int) -> pa.Table:
    """parcels(n) as Arrow data (geometry as GeoArrow WKB with its CRS), with a decimal,
    a UUID and a JSON field."""
    table = pa.table(parcels(n).to_arrow(geometry_encoding="WKB"))
    values = pa.array([decimal.Decimal(f"{i}.25") for i in range(n)], pa.decimal128(10, 2))
    keys = pa.array([uuid.UUID(int=i).bytes for i in range(n)], pa.uuid())
    notes = pa.array([f'{{"n": {i}}}' for i in range(n)], pa.json_())
    with_keys = table.append_column("value", values).append_column("key", keys)
    return with_keys.append_column("note", notes)


def test_arrow_data_makes_its_table_from_its_schema_and_is_read_once(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """A stream (a RecordBatchReader, a DuckDB result) gives its rows once: the table is
    made from the schema of the reader the load then reads."""
    data = arrow_parcels(30)
    report = db.ingest("made_arrow", data.to_reader(max_chunksize=7), create=True)
    assert report.created and report.inserted == 30 and not report.rejected
    made = columns(admin, "made_arrow")
    assert made["geometry"] == "geometry(MultiPolygon,4326)"  # GeoArrow's WKB: its values
    assert (made["value"], made["key"], made["big"]) == ("numeric(10,2)", "uuid", "bigint")
    assert made["seen"] == "timestamp with time zone" and made["ok"] == "boolean"
    assert made["note"] == "jsonb"
    stored = admin.execute(
        'SELECT "value", "key", note, ST_AsBinary(geometry) FROM made_arrow ORDER BY id'
    ).fetchall()
    assert [(v, k, n) for v, k, n, _ in stored] == [
        (decimal.Decimal(f"{i}.25"), uuid.UUID(int=i), {"n": i}) for i in range(30)
    ]
    assert [shapely.from_wkb(g) for *_, g in stored] == list(map(as_multi, parcels(30).geometry))
    reader = data.to_reader(max_chunksize=7)  # noqa: F841  # read by the query below
    query = duckdb.sql("SELECT * EXCLUDE (key, note) FROM reader")
    report = db.ingest("made_duckdb", query, create=True)
    assert report.created and report.inserted == 30
    assert columns(admin, "made_duckdb")["geometry"] == "geometry(MultiPolygon,4326)"


def test_a_duckdb_result_over_a_stream_loads_every_row_into_a_table(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """Its length is not asked (len() of a DuckDB result runs its query, which would
    spend the stream before the load reads it)."""
    admin.execute("CREATE TABLE arrow_once (id int PRIMARY KEY, geom geometry(Polygon, 4326))")
    reader = arrow_parcels(300).to_reader(max_chunksize=50)  # noqa: F841  # read by DuckDB
    query = "SELECT id, geometry AS geom FROM reader WHERE id > 100 AND id <> 2"
    report = db.ingest("arrow_once", duckdb.sql(query))
    assert report.inserted == 200 and not report.rejected
    assert admin.execute("SELECT count(*) FROM arrow_once").fetchone() == (200,)


def test_polars_frames_and_parquet_with_geoarrow_fields_make_their_tables(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    data = arrow_parcels(20).drop_columns(["key"])
    frame = pl.from_arrow(data)
    assert isinstance(frame, pl.DataFrame)
    report = db.ingest("made_polars", frame, create=True)
    assert report.created and report.inserted == 20
    assert columns(admin, "made_polars")["name"] == "text"
    path = tmp_path / "geoarrow.parquet"
    pq.write_table(data.replace_schema_metadata(None), path)  # no GeoParquet metadata
    report = db.ingest("made_geoarrow_parquet", path, create=True)
    assert report.created and report.inserted == 20
    assert columns(admin, "made_geoarrow_parquet")["geometry"] == "geometry(MultiPolygon,4326)"
    point = shapely.to_wkb(shapely.Point(1, 2))
    plain = pl.DataFrame({"id": [1], "geometry": [point]})  # WKB named as geopandas names it
    report = db.ingest("made_polars_plain", plain, create=True, srid=4326)
    assert report.created and report.inserted == 1
    assert columns(admin, "made_polars_plain")["geometry"] == "geometry(Point,4326)"
    pl.DataFrame({"id": [1], "wkb_geometry": [point]}).write_parquet(tmp_path / "plain.parquet")
    report = db.ingest("made_plain_parquet", tmp_path / "plain.parquet", create=True)
    assert columns(admin, "made_plain_parquet")["wkb_geometry"] == "geometry(Point)"  # no CRS
    unnamed = pl.DataFrame({"id": [1], "footprint": [b"\x00\x01"]})  # bytes, not WKB
    with pytest.raises(ConfigurationError, match="no field named geometry.*as_wkb"):
        db.ingest("made_unnamed", unnamed, create=True)
    assert admin.execute("SELECT to_regclass('made_unnamed')").fetchone() == (None,)
    unnamed.write_parquet(tmp_path / "unnamed.parquet")
    with pytest.raises(ConfigurationError, match="unnamed.parquet is a Parquet file .*to_parquet"):
        db.ingest("made_unnamed", tmp_path / "unnamed.parquet", create=True)


def test_features_past_the_sample_widen_the_table_they_load_into(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """create=True types GeoJSON Features' properties from the first 10,000: a float after
    them in a property of integers, or text in one of numbers, was a reject, a property
    first seen later stopped the load (no column took it), and another geometry type was a
    reject. Every feature's kinds now widen the table."""
    point = {"type": "Point", "coordinates": [1, 2]}
    features = [
        {"type": "Feature", "geometry": point, "properties": {"n": n, "h": 10, "kind": 3}}
        for n in range(10_050)
    ]
    features[10_010]["properties"]["h"] = 10.5
    features[10_011]["properties"]["kind"] = "tall"
    features[10_020]["properties"]["note"] = "late"
    features[10_030]["geometry"] = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    report = db.ingest(
        "late_kinds", {"type": "FeatureCollection", "features": features}, create=True
    )
    assert (report.inserted, report.rejected) == (10_050, [])
    assert columns(admin, "late_kinds") == {
        "fid": "bigint",
        "n": "bigint",
        "h": "double precision",
        "kind": "text",
        "geom": "geometry(Geometry,4326)",
        "note": "text",
    }
    stored = admin.execute(
        "SELECT h, kind, note, GeometryType(geom) FROM late_kinds WHERE n IN (0, 10010, 10011, "
        "10020, 10030) ORDER BY n"
    ).fetchall()
    assert stored == [
        (10.0, "3", None, "POINT"),
        (10.5, "3", None, "POINT"),
        (10.0, "tall", None, "POINT"),
        (10.0, "3", "late", "POINT"),
        (10.0, "3", None, "LINESTRING"),
    ]


def test_arrow_data_with_one_field_of_geometries_makes_it_the_geometry_column(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Arrow data (a polars DataFrame, a pyarrow Table or stream, a Parquet or Arrow IPC
    file) without GeoArrow or GeoParquet metadata whose one text or binary field holds WKB,
    WKT, EWKT or hex EWKB under a name of its own was refused by create=True; that field is
    now the geometry column, in the SRID srid= names or the values state. A stream's rows
    read to tell are loaded too."""
    points = [shapely.Point(i, i % 90) for i in range(2500)]
    wkb = [None, *shapely.to_wkb(points[1:]).tolist()]
    frame = pl.DataFrame({"name": [str(i) for i in range(2500)], "footprint": wkb})
    report = db.ingest("held_polars", frame, create=True, srid=3857)
    assert report.inserted == 2500 and report.geometry_fields_found == {"footprint"}
    assert "geometry field, found by its values │ footprint" in " ".join(str(report).split())
    assert columns(admin, "held_polars") == {
        "fid": "bigint",
        "name": "text",
        "footprint": "geometry(Point,3857)",
    }
    ewkt = pa.table({"id": [7], "g": ["SRID=4326;POINT(5 6)"]})
    assert db.ingest("held_table", ewkt, create=True).inserted == 1
    assert columns(admin, "held_table")["g"] == "geometry(Point,4326)"  # stated
    files = {"held.parquet": pq.write_table, "held.arrow": feather.write_feather}
    for file, write in files.items():
        write(pa.table({"label": ["a"] * 2500, "shape": shapely.to_wkt(points)}), tmp_path / file)
        table = file.replace(".", "_")
        assert db.ingest(table, tmp_path / file, create=True).inserted == 2500
        assert columns(admin, table)["shape"] == "geometry(Point)"  # no SRID stated or given
    one_by_one = [pa.record_batch({"where": [shapely.to_wkt(p)]}) for p in points]
    stream = pa.RecordBatchReader.from_batches(one_by_one[0].schema, iter(one_by_one))
    assert db.ingest("held_stream", stream, create=True).inserted == 2500
    stored = admin.execute('SELECT ST_X("where") FROM held_stream ORDER BY fid').fetchall()
    assert [x for (x,) in stored] == [float(i) for i in range(2500)]  # none lost or doubled
    two = pa.table({"a": ["POINT(1 2)"], "b": ["POINT(3 4)"]})
    with pytest.raises(ConfigurationError, match="nor just one text or binary field"):
        db.ingest("held_two", two, create=True)  # no guess between two


def test_a_field_of_geometries_under_a_name_of_its_own_lands_in_the_geometry_column(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A table made from such a source has its geometry column under the field's name;
    loading the same data into a table whose geometry column is named otherwise (geom)
    failed: the field was "not a column of the target". The one field that no column
    takes and whose values are all geometries now lands in the table's one geometry
    column, from a pandas or polars DataFrame, Arrow data, Parquet, Arrow IPC and CSV
    files (and bbox= filters by it)."""
    admin.execute(
        "DROP TABLE IF EXISTS outlines; CREATE TABLE outlines "
        "(id serial PRIMARY KEY, name text, geom geometry(Point, 4326))"
    )
    wkt = ["POINT(1 2)", None, "SRID=4326;POINT(30 40)"]
    table = pa.table({"name": ["a", "b", "c"], "footprint": wkt})
    sources: dict[str, Any] = {
        "pandas": table.to_pandas(),
        "polars": pl.from_arrow(table),
        "arrow": table,
        "parquet": tmp_path / "outlines.parquet",
        "feather": tmp_path / "outlines.arrow",
        "csv": tmp_path / "outlines.csv",
    }
    pq.write_table(table, sources["parquet"])
    feather.write_feather(table, sources["feather"])
    table.to_pandas().to_csv(sources["csv"], index=False)
    for kind, source in sources.items():
        report = db.ingest("outlines", source, srid=4326, ingest_id=kind)
        assert (report.inserted, report.rejected) == (3, []), kind
        assert report.geometry_fields_found == {"footprint"}, kind
    stored = admin.execute("SELECT count(*), count(geom) FROM outlines").fetchone()
    assert stored == (18, 12)
    near = db.ingest("outlines", sources["parquet"], bbox=(0, 0, 2, 3), ingest_id="near")
    assert near.inserted == 1  # POINT(1 2) alone
    two = pa.table({"a": ["POINT(1 2)"], "b": ["POINT(3 4)"]})
    with pytest.raises(ConfigurationError, match="not columns of the target: 'a', 'b'"):
        db.ingest("outlines", two)  # no guess between two
    admin.execute("DROP TABLE outlines")


def test_arrow_data_and_parquet_of_coordinates_make_point_tables(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Arrow data without a geometry field was refused by create=True ("declares no
    geometry column"), though its longitudes and latitudes make points as a CSV's do."""
    frame = pl.DataFrame({"name": ["a"], "longitude": [13.4], "latitude": [52.5], "z": [3.0]})
    parquet = tmp_path / "places.parquet"
    pq.write_table(frame.drop("z").to_arrow(), parquet)
    assert db.ingest("made_arrow_points", frame, create=True).inserted == 1
    assert db.ingest("made_parquet_points", parquet, create=True).inserted == 1
    assert columns(admin, "made_arrow_points") == {
        "fid": "bigint",
        "name": "text",
        "geom": "geometry(PointZ,4326)",
    }
    assert columns(admin, "made_parquet_points")["geom"] == "geometry(Point,4326)"
    stored = admin.execute("SELECT ST_AsText(geom) FROM made_arrow_points").fetchone()
    assert stored == ("POINT Z (13.4 52.5 3)",)
    with pytest.raises(ConfigurationError, match="nor coordinate fields"):
        db.ingest("made_unplaced", pl.DataFrame({"name": ["a"]}), create=True)


def test_arrow_ipc_files_load_and_make_their_tables(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """Feather as geopandas writes it (GeoParquet metadata, compressed), and the IPC
    stream format with GeoArrow fields; from a path or piped."""
    import pyarrow.ipc

    from geosession.ingest.files import file_length

    feather = tmp_path / "parcels.feather"
    parcels(30).rename_geometry("geom").to_feather(feather)
    report = db.ingest("made_feather", feather, create=True, rename={"Name": "title"})
    assert report.created and report.inserted == 30 and not report.rejected
    made = columns(admin, "made_feather")
    assert made["geom"] == "geometry(MultiPolygon,4326)" and made["title"] == "text"
    assert stored_geometries(admin, "made_feather") == [
        shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in parcels(30).geometry
    ]
    stream = tmp_path / "parcels.arrows"
    data = arrow_parcels(12)
    with pa.OSFile(str(stream), "wb") as sink, pyarrow.ipc.new_stream(sink, data.schema) as out:
        out.write_table(data, max_chunksize=5)
    report = db.ingest("made_arrows", stream, create=True)
    assert report.created and report.inserted == 12
    assert columns(admin, "made_arrows")["key"] == "uuid"
    assert (file_length(feather), file_length(stream)) == (30, None)  # a stream says as read
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    piped = CliRunner().invoke(
        app, ["ingest", "-", "piped_feather", "--create"], input=feather.read_bytes()
    )
    assert piped.exit_code == 0, piped.output
    assert admin.execute("SELECT count(*) FROM piped_feather").fetchone() == (30,)


def test_geoarrow_native_data_loads_and_makes_its_table(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """GeoParquet 1.1's native encodings (geopandas' geometry_encoding="geoarrow"), and
    GeoArrow native Arrow data, whose encoding names its geometry type."""
    path = tmp_path / "native.parquet"
    frame = parcels(30).rename_geometry("geom")
    frame.to_parquet(path, geometry_encoding="geoarrow")  # multipolygon: one is multi
    report = db.ingest("made_native", path, create=True)
    assert report.created and report.inserted == 30 and not report.rejected
    assert columns(admin, "made_native")["geom"] == "geometry(MultiPolygon,4326)"
    assert stored_geometries(admin, "made_native") == [
        shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in frame.geometry
    ]
    points = gpd.GeoDataFrame(
        {"id": [1, 2, 3]}, geometry=[shapely.Point(1, 2, 3), None, shapely.Point(4, 5, 6)]
    ).set_crs(3857)
    arrow = points.to_arrow(geometry_encoding="geoarrow", interleaved=False)
    report = db.ingest("native_points", arrow, create=True)
    assert report.created and report.inserted == 3
    assert columns(admin, "native_points")["geometry"] == "geometry(PointZ,3857)"
    stored = admin.execute("SELECT ST_AsText(geometry) FROM native_points ORDER BY id")
    assert stored.fetchall() == [("POINT Z (1 2 3)",), (None,), ("POINT Z (4 5 6)",)]


def test_parquets_own_geometry_type_is_read_with_its_crs(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Parquet's GEOMETRY logical type (what DuckDB writes without GeoParquet metadata):
    its CRS inline as PROJJSON, or OGC:CRS84 when it names none."""
    import pyproj

    path = tmp_path / "native.parquet"
    crs = pyproj.CRS(3857).to_json().replace("'", "''")
    duckdb.sql(
        f"COPY (SELECT i::INTEGER AS id, ('POINT(' || i || ' 2)')::GEOMETRY('{crs}') AS geom, "
        "'POINT(1 1)'::GEOMETRY AS plain FROM range(5) t(i)) "
        f"TO '{path}' (GEOPARQUET_VERSION 'NONE')"
    )
    assert pq.ParquetFile(path).schema_arrow.metadata is None  # no GeoParquet metadata
    report = db.ingest("made_native_parquet", path, create=True)
    assert report.created and report.inserted == 5 and not report.rejected
    made = columns(admin, "made_native_parquet")
    assert (made["geom"], made["plain"]) == ("geometry(Point,3857)", "geometry(Point,4326)")
    admin.execute("DROP TABLE made_native_parquet")
    admin.execute(
        "CREATE TABLE made_native_parquet (id int, geom geometry(Point, 4326), plain geometry)"
    )
    with pytest.raises(ConfigurationError, match="CRS is EPSG:3857"):
        db.ingest("made_native_parquet", path)


def test_cli_creates_a_table_for_a_csv(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    path = tmp_path / "places.csv"
    path.write_text("Name;WKT\nhere;POINT(1 2)\nthere;LINESTRING(0 0,1 1)\n")
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(path), "made_csv", "--create", "--srid", "4326"])
    assert result.exit_code == 0, result.output
    assert "created by this run" in result.output
    assert columns(admin, "made_csv") == {
        "fid": "bigint",
        "name": "text",
        "geom": "geometry(Geometry,4326)",
    }
    missing = runner.invoke(app, ["ingest", str(path), "made_nothing"])
    assert missing.exit_code != 0 and "--create" in str(missing.exception)


def test_cli_loads_the_layers_of_one_file_as_separate_loads(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    path = tmp_path / "two.gpkg"
    parcels(30).to_file(path, layer="north", driver="GPKG")
    parcels(20).to_file(path, layer="south", driver="GPKG")
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    runner = CliRunner()
    unasked = runner.invoke(app, ["ingest", str(path), "made_gpkg", "--create"])
    assert "has 2 layers with features (north: 30, south: 20)" in str(unasked.exception)
    for layer in ("north", "south", "north"):  # the second north resumes: nothing new
        loaded = runner.invoke(
            app, ["ingest", str(path), "made_gpkg", "--create", "--layer", layer]
        )
        assert loaded.exit_code == 0, loaded.output
    assert "already committed (resumed)" in loaded.output
    assert admin.execute("SELECT count(*) FROM made_gpkg").fetchone() == (50,)


def test_cli_refuses_layers_whose_tables_names_launder_alike(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """Both loaded into one table, unseen (ogr2ogr refuses the second without -append)."""
    path = tmp_path / "alike.gpkg"
    parcels(4).to_file(path, layer="Road Segments-2024", driver="GPKG")
    parcels(3).to_file(path, layer="road_segments_2024", driver="GPKG")
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    refused = CliRunner().invoke(app, ["ingest", str(path), "made_{layer}", "--create"])
    assert refused.exit_code == 1
    assert "would both load into table made_road_segments_2024" in str(refused.exception)
    made = admin.execute("SELECT to_regclass('made_road_segments_2024')").fetchone()
    assert made == (None,)


def test_cli_loads_each_member_of_records_of_a_json_object_into_its_own_table(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """'{layer}' loads a GeoPackage's layers each into its table; an API's answer of
    several arrays of records was refused ("name the one to load with layer=")."""
    answer = {
        "stops": [{"id": 1, "lat": 1.0, "lon": 2.0}, {"id": 2, "lat": 3.0, "lon": 4.0}],
        "routes": [{"id": 7, "name": "A"}],
        "count": 3,
    }
    plain, packed = tmp_path / "network.json", tmp_path / "packed.json.gz"
    plain.write_bytes(orjson.dumps(answer))
    packed.write_bytes(gzip.compress(orjson.dumps(answer)))
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    runner = CliRunner()
    unasked = runner.invoke(app, ["ingest", str(plain), "made_network", "--create"])
    assert f"geosession ingest {plain} '{{layer}}' --create" in str(unasked.exception)
    for path, table in ((plain, "made_{layer}"), (packed, "packed_{layer}")):
        loaded = runner.invoke(app, ["ingest", str(path), table, "--create"])
        assert loaded.exit_code == 0, loaded.output
        prefix = table.replace("{layer}", "")
        stops = admin.execute(f"SELECT id, ST_AsText(geom) FROM {prefix}stops ORDER BY id")
        assert stops.fetchall() == [(1, "POINT(2 1)"), (2, "POINT(4 3)")]
        assert admin.execute(f"SELECT id, name FROM {prefix}routes").fetchall() == [(7, "A")]


def test_cli_loads_the_features_a_where_and_a_bbox_keep_each_as_its_own_load(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """Two subsets of one file into one table: each filter is its own load (its own
    default ingest id), and running one again loads nothing twice."""
    path = tmp_path / "parcels.fgb"
    parcels(200).to_file(path)
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    runner = CliRunner()
    in_box = ["ingest", str(path), "made_subset", "--create", "--bbox", "-74.05,40.6,-73.9,40.7"]
    first = runner.invoke(app, in_box)
    assert first.exit_code == 0, first.output
    named = runner.invoke(app, ["ingest", str(path), "made_subset", "--where", "id <= 10"])
    assert named.exit_code == 0, named.output
    again = runner.invoke(app, in_box)
    assert again.exit_code == 0 and "already committed (resumed)" in again.output
    boxed = set(pyogrio.read_dataframe(path, bbox=(-74.05, 40.6, -73.9, 40.7))["id"])  # GDAL's own
    assert 0 < len(boxed) < 200
    ten = set(range(1, 11))
    stored = admin.execute("SELECT count(*), count(DISTINCT id) FROM made_subset").fetchone()
    assert stored == (len(boxed) + len(ten), len(boxed | ten))  # in both: loaded by both


def test_cli_loads_several_files_each_as_its_own_load(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    tiles = []
    for number in range(3):
        tile = tmp_path / f"tile{number}.geojson"
        frame = parcels(10 + number)
        frame["id"] += 100 * number
        frame.to_file(tile)
        tiles.append(str(tile))
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    runner = CliRunner()
    loaded = runner.invoke(app, ["ingest", *tiles, "made_gpkg", "--create"])
    assert loaded.exit_code == 0, loaded.output
    assert "tile2.geojson (3 of 3)" in loaded.output and "3 files" in loaded.output
    assert admin.execute("SELECT count(*), count(DISTINCT id) FROM made_gpkg").fetchone() == (
        33,
        33,
    )
    again = runner.invoke(app, ["ingest", *tiles, "made_gpkg"])
    assert again.exit_code == 0, again.output
    assert admin.execute("SELECT count(*) FROM made_gpkg").fetchone() == (33,)
    totals = next(line for line in again.output.splitlines() if "│ all" in line)
    assert [cell.strip() for cell in totals.split("│")[2:6]] == ["0", "0", "0", "33"]
    listed = again.output[again.output.index("3 files") :]
    assert "…" not in listed  # a long path wraps in its cell (it was cut: /tmp/pytest-o…)
    files = "".join(line.split("│")[1].strip() for line in listed.splitlines() if "│" in line)
    assert all(tile in files for tile in tiles)
    as_json = runner.invoke(app, ["ingest", *tiles, "made_gpkg", "--json"])
    assert as_json.exit_code == 0, as_json.output
    reported = orjson.loads(as_json.stdout)  # the progress bars went to stderr
    assert [(r["file"], r["inserted"], r["already_committed"]) for r in reported] == [
        (tile, 0, 10 + number) for number, tile in enumerate(tiles)
    ]
    named = runner.invoke(app, ["ingest", *tiles, "made_gpkg", "--ingest-id", "one"])
    assert named.exit_code != 0 and "an id names one load" in named.output
    mercator = tmp_path / "mercator.geojson"
    parcels(3).to_crs(3857).to_file(mercator)  # refused: a CRS other than the column's
    stopped = runner.invoke(app, ["ingest", tiles[0], str(mercator), *tiles[1:], "made_gpkg"])
    assert stopped.exit_code != 0
    assert (
        f"Stopped at {mercator} (2 of 4): {tiles[1]}, {tiles[2]} not loaded. The files before "
        "it are; running the command again (without this file, or once it is mended) skips"
    ) in str(stopped.exception)
    arguments = ["ingest", tiles[0], str(mercator), *tiles[1:], "made_gpkg", "--json"]
    stopped_json = runner.invoke(app, arguments)  # stdout was empty: nothing said what loaded
    assert stopped_json.exit_code != 0
    reported = orjson.loads(stopped_json.stdout)
    assert [(r["file"], r["completed"]) for r in reported] == [
        (tiles[0], True),
        (str(mercator), False),
    ]
    assert reported[0]["error"] is None and "EPSG:3857" in reported[1]["error"]


def test_cli_loads_standard_input_and_resumes_when_the_same_data_comes_again(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    geojson = tmp_path / "piped.geojson"
    parcels(25).to_file(geojson)
    sequence = tmp_path / "piped.geojsonl"
    parcels(12).drop(columns="seen").to_file(sequence, driver="GeoJSONSeq")
    spatialite = tmp_path / "piped.sqlite"  # SQLite as a GeoPackage is, but no GeoPackage
    pyogrio.write_dataframe(parcels(9).drop(columns="seen"), spatialite, driver="SQLite")
    zipped = tmp_path / "piped.zip"
    parcels(7).drop(columns="seen").to_file(tmp_path / "piped.shp")
    with zipfile.ZipFile(zipped, "w") as archive:
        for suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
            archive.write(tmp_path / f"piped{suffix}", f"piped{suffix}")
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    runner = CliRunner()
    for source, table, rows in (
        (geojson, "piped", 25),
        (sequence, "piped_seq", 12),
        (zipped, "piped_zip", 7),
        (spatialite, "piped_sqlite", 9),
    ):
        loaded = runner.invoke(app, ["ingest", "-", table, "--create"], input=source.read_bytes())
        assert loaded.exit_code == 0, loaded.output
        assert admin.execute(f"SELECT count(*) FROM {table}").fetchone() == (rows,)
    again = runner.invoke(app, ["ingest", "-", "piped"], input=geojson.read_bytes())
    assert again.exit_code == 0 and "already committed (resumed)" in again.output
    assert admin.execute("SELECT count(*) FROM piped").fetchone() == (25,)
    empty = runner.invoke(app, ["ingest", "-", "piped"], input=b"")
    assert empty.exit_code != 0 and "Standard input is empty" in str(empty.exception)
    assert "--format geojson writes an empty FeatureCollection" in str(empty.exception)
    none = runner.invoke(
        app, ["ingest", "-", "piped"], input=b'{"type":"FeatureCollection","features":[]}'
    )
    assert none.exit_code == 0 and admin.execute("SELECT count(*) FROM piped").fetchone() == (25,)
    cut = runner.invoke(app, ["ingest", "-", "piped"], input=geojson.read_bytes()[:2000])
    assert cut.exit_code != 0 and "cannot read standard input as" in str(cut.exception)
    assert "stdin.geojson" not in str(cut.exception)  # the spooled copy is gone


def test_compressed_files_load_as_what_they_hold_and_resume_by_the_compressed_file(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """Data is often downloaded gzipped (buildings.geojsonl.gz, a CSV's .csv.gz): such a
    file was refused as of an unsupported type, and piped in it was "binary data of no
    format". It loads as what it holds (a CSV read as it decompresses, others from a
    temporary file); its default id follows the compressed file, so the same load resumes."""
    source = parcels(30).drop(columns="seen")
    plain = {"geojsonl": tmp_path / "p.geojsonl", "gpkg": tmp_path / "p.gpkg"}
    source.to_file(plain["geojsonl"], driver="GeoJSONSeq")
    source.to_file(plain["gpkg"], layer="parcels")
    csv_text = "id,wkt\n" + "".join(f"{i},POINT({i} {i / 2})\n" for i in range(1, 21))
    compressed = {
        "gz_lines": (
            tmp_path / "buildings.geojsonl.gz",
            gzip.compress(plain["geojsonl"].read_bytes()),
            30,
        ),
        "bz_points": (tmp_path / "points.csv.bz2", bz2.compress(csv_text.encode()), 20),
        "xz_parcels": (tmp_path / "parcels.gpkg.xz", lzma.compress(plain["gpkg"].read_bytes()), 30),
        "gz_unnamed": (tmp_path / "download.gz", gzip.compress(plain["geojsonl"].read_bytes()), 30),
    }
    (tmp_path / "shp").mkdir()
    source.to_file(tmp_path / "shp" / "parcels.shp")  # a download's Shapefile in a folder
    with tarfile.open(tmp_path / "shapefiles.tar", "w") as tar:
        tar.add(tmp_path / "shp", "download/data")
    tarred = (tmp_path / "shapefiles.tar").read_bytes()
    compressed["tar_shapes"] = (tmp_path / "shapefiles.tar.gz", gzip.compress(tarred), 30)
    zstd = tmp_path / "lines.geojsonl.zst"
    with pa.CompressedOutputStream(str(zstd), "zstd") as out:
        out.write(plain["geojsonl"].read_bytes())
    compressed["zst_lines"] = (zstd, zstd.read_bytes(), 30)
    for table, (path, data, rows) in compressed.items():
        path.write_bytes(data)
        report = db.ingest(table, path, create=True)
        assert report.inserted == rows, table
        assert admin.execute(f"SELECT count(*) FROM {table}").fetchone() == (rows,)
    assert columns(admin, "gz_lines")["geom"] == "geometry(MultiPolygon,4326)"  # its features'
    source_geometries = gpd.read_file(plain["geojsonl"]).geometry
    expected = [shapely.normalize(as_multi(g)) for g in source_geometries]
    stored = [shapely.normalize(g) for g in stored_geometries(admin, "gz_lines")]
    assert shapely.equals_exact(stored, expected, tolerance=0).all()
    path = compressed["gz_lines"][0]
    again = db.ingest("gz_lines", path)
    assert (again.inserted, again.already_committed) == (0, 30)
    assert again.ingest_id == db.ingest("gz_lines", path).ingest_id
    bad_row = tmp_path / "bad.csv.gz"
    bad_row.write_bytes(gzip.compress(b"wkt,b\nPOINT(1 2),1,3\n"))
    with pytest.raises(ConfigurationError, match=f"^{bad_row}: row 1 has 3 fields"):
        db.ingest("gz_bad", bad_row, create=True)
    cut = tmp_path / "cut.geojsonl.gz"
    cut.write_bytes(compressed["gz_lines"][1][:600])
    with pytest.raises(ConfigurationError, match="cannot decompress .*cut short") as refused:
        db.ingest("gz_lines", cut)
    assert "a file that is not gzip data is named without .gz" in refused.value.message
    notes = tmp_path / "notes.txt.gz"
    notes.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(ConfigurationError, match="it holds notes.txt, a file type"):
        db.ingest("gz_notes", notes, create=True)
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    runner = CliRunner()
    piped = runner.invoke(
        app, ["ingest", "-", "gz_piped", "--create"], input=compressed["gz_lines"][1]
    )
    assert piped.exit_code == 0, piped.output
    assert admin.execute("SELECT count(*) FROM gz_piped").fetchone() == (30,)
    piped_zstd = runner.invoke(
        app, ["ingest", "-", "gz_piped_zstd", "--create"], input=zstd.read_bytes()
    )
    assert piped_zstd.exit_code == 0, piped_zstd.output
    assert admin.execute("SELECT count(*) FROM gz_piped_zstd").fetchone() == (30,)
    piped_tar = runner.invoke(
        app, ["ingest", "-", "gz_piped_tar", "--create"], input=compressed["tar_shapes"][1]
    )
    assert piped_tar.exit_code == 0, piped_tar.output
    assert admin.execute("SELECT count(*) FROM gz_piped_tar").fetchone() == (30,)
    cut_pipe = runner.invoke(app, ["ingest", "-", "gz_piped"], input=cut.read_bytes())
    assert "cannot decompress standard input" in str(cut_pipe.exception)
    named = runner.invoke(app, ["ingest", str(path), "gz_cli", "--create"])
    assert named.exit_code == 0, named.output
    again_named = runner.invoke(app, ["ingest", str(path), "gz_cli"])
    assert "already committed (resumed)" in again_named.output
    assert admin.execute("SELECT count(*) FROM gz_cli").fetchone() == (30,)
    layered = tmp_path / "layered.gpkg"
    source.head(4).to_file(layered, layer="alpha")
    source.head(2).to_file(layered, layer="beta")
    (tmp_path / "layered.gpkg.gz").write_bytes(gzip.compress(layered.read_bytes()))
    each = runner.invoke(
        app, ["ingest", str(tmp_path / "layered.gpkg.gz"), "gz_{layer}", "--create"]
    )
    assert each.exit_code == 0, each.output
    counted = "SELECT (SELECT count(*) FROM gz_alpha), (SELECT count(*) FROM gz_beta)"
    assert admin.execute(counted).fetchone() == (4, 2)
    made = ("gz_piped", "gz_piped_zstd", "gz_piped_tar", "gz_cli", "gz_alpha", "gz_beta")
    for table in (*compressed, *made):
        admin.execute(f"DROP TABLE {table}")


def test_a_csv_read_as_it_decompresses_resumes_after_damage_under_its_ingest_id(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A .csv.gz is read as it decompresses: a download cut short loads the rows before
    the damage, is refused naming the file, and the file fetched again resumes after them
    under the same ingest id, each row once."""
    rows = "".join(f"{i},POINT({i} {i})\n" for i in range(200_000))
    whole = gzip.compress(("id,wkt\n" + rows).encode())
    path = tmp_path / "points.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    admin.execute("CREATE TABLE gz_resumed (id int, geom geometry(Point, 4326))")
    with pytest.raises(ConfigurationError, match=f"^cannot decompress {path}: .*cut short") as cut:
        db.ingest("gz_resumed", path)
    first = cut.value.ingest_report  # type: ignore[attr-defined]
    assert 0 < first.inserted < 200_000
    assert f"rerunning with the same ingest id ({first.ingest_id})" in cut.value.message
    path.write_bytes(whole)  # fetched again: another size and time, so the id is named
    again = db.ingest("gz_resumed", path, ingest_id=first.ingest_id)
    assert (again.already_committed, again.inserted) == (first.inserted, 200_000 - first.inserted)
    stored = admin.execute("SELECT count(*), count(DISTINCT id) FROM gz_resumed").fetchone()
    assert stored == (200_000, 200_000)


def test_decompressing_into_a_full_temporary_disk_says_where_and_leaves_nothing(
    database_url: str, tmp_path: Path
) -> None:
    """A file size limit (RLIMIT_FSIZE) makes the temporary copy's writes fail as a full
    disk would: the load of bzip2'd GeoJSON Lines (GDAL reads it from a copy) is refused
    naming the file, the directory and TMPDIR, before any row, and the temporary
    directory is gone. A CSV, JSON records and gzipped GeoJSON Lines (through GDAL's
    /vsigzip/), read as they decompress, need no copy: they were refused so too."""
    source = tmp_path / "big.geojsonl.bz2"
    features = "".join(
        orjson.dumps({"type": "Feature", "properties": {"n": i}, "geometry": None}).decode() + "\n"
        for i in range(20_000)
    )
    source.write_bytes(bz2.compress(features.encode()))
    gzipped = tmp_path / "big_too.geojsonl.gz"
    gzipped.write_bytes(gzip.compress(features.encode()))
    points = tmp_path / "big.csv.gz"
    rows = "".join(f"{i},POINT({i} {i})\n" for i in range(20_000))
    points.write_bytes(gzip.compress(("id,wkt\n" + rows).encode()))
    records = tmp_path / "big.jsonl.xz"
    lines = "".join(
        orjson.dumps({"id": i, "lat": 1.0, "lon": 2.0}).decode() + "\n" for i in range(20_000)
    )
    records.write_bytes(lzma.compress(lines.encode()))
    spool = tmp_path / "tmp"
    spool.mkdir()
    script = (
        "import resource, signal, sys\n"
        "from geosession import SpatialDatabase, ConfigurationError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "with SpatialDatabase(sys.argv[1]) as db:\n"
        "    streamed = ('gz_streamed_csv', 'gz_streamed_jsonl', 'gz_streamed_seq')\n"
        "    for table, path in zip(streamed, sys.argv[3:]):\n"
        "        print(db.ingest(table, path, create=True, srid=4326).inserted)\n"
        "    try:\n"
        "        db.ingest('gz_too_big', sys.argv[2], create=True)\n"
        "    except ConfigurationError as error:\n"
        "        print(error.message)\n"
    )
    env = {**os.environ, "TMPDIR": str(spool)}
    done = subprocess.run(
        [sys.executable, "-c", script, database_url, *map(str, (source, points, records, gzipped))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    *loaded, refused = done.stdout.split("\n", 3)
    assert loaded == ["20000", "20000", "20000"]
    assert refused.startswith(f"Could not decompress {source} into {spool}/"), done.stdout
    assert "Point TMPDIR at a disk with room for the data uncompressed" in refused
    assert list(spool.iterdir()) == []


def test_ctrl_c_before_any_row_says_nothing_was_loaded(database_url: str, tmp_path: Path) -> None:
    """Stopped while a named pipe's data was still coming (or a compressed file was
    decompressed, or a CSV's types read), the command ended with status 130 and said
    nothing: no report exists yet to say how far it got."""
    pipe = tmp_path / "feed"
    os.mkfifo(pipe)
    writer = os.open(pipe, os.O_RDWR)  # open, and sends nothing
    command = str(Path(sys.executable).parent / "geosession")
    env = {**os.environ, "GEOSESSION_DATABASE_URL": database_url}
    process = subprocess.Popen(
        [command, "ingest", str(pipe), "never_fed", "--create"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fds = Path(f"/proc/{process.pid}/fd")
        deadline = time.monotonic() + 30
        while not any(str(fd.resolve()) == str(pipe) for fd in fds.iterdir()):
            assert time.monotonic() < deadline, "the command never opened the pipe"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, said = process.communicate(timeout=30)
    finally:
        process.kill()
        os.close(writer)
    assert process.returncode == 130
    assert f"Stopped before any row of {pipe} was loaded" in said, said


def test_a_real_pipe_from_export_into_ingest(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "source.gpkg"
    parcels(40).to_file(source, layer="parcels")
    command = str(Path(sys.executable).parent / "geosession")
    env = {**os.environ, "GEOSESSION_DATABASE_URL": database_url}
    subprocess.run(
        [command, "ingest", str(source), "pipe_from", "--create"],
        env=env,
        check=True,
        capture_output=True,
    )
    export = subprocess.Popen(
        [command, "export", "pipe_from", "-", "--format", "geojsonl"],
        env=env,
        stdout=subprocess.PIPE,
    )
    ingest = subprocess.run(
        [command, "ingest", "-", "pipe_to", "--create"],
        env=env,
        stdin=export.stdout,
        capture_output=True,
        text=True,
    )
    assert export.wait() == 0 and ingest.returncode == 0, ingest.stderr
    compared = admin.execute(
        "SELECT count(*), count(*) FILTER (WHERE ST_Equals(a.geom, b.geom) AND a.name = b.name) "
        "FROM pipe_from a JOIN pipe_to b USING (id)"
    ).fetchone()
    assert compared == (40, 40)


def test_a_named_pipe_is_read_as_standard_input_is(
    admin: psycopg.Connection[Any], database_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "source.geojson"
    parcels(30).to_file(source)
    command = str(Path(sys.executable).parent / "geosession")
    env = {**os.environ, "GEOSESSION_DATABASE_URL": database_url}

    def ingest(producer: str) -> subprocess.CompletedProcess[str]:
        line = f"{shlex.quote(command)} ingest <({producer}) from_pipe --create"
        return subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True)

    loaded = ingest(f"cat {shlex.quote(str(source))}")
    assert loaded.returncode == 0, loaded.stderr
    assert admin.execute("SELECT count(*) FROM from_pipe").fetchone() == (30,)
    again = ingest(f"cat {shlex.quote(str(source))}")  # the same data: the same load
    assert again.returncode == 0 and "already committed (resumed)" in again.stdout, again.stdout
    assert admin.execute("SELECT count(*) FROM from_pipe").fetchone() == (30,)
    empty = ingest("true")
    assert empty.returncode == 1 and "/dev/fd/" in empty.stderr and "is empty" in empty.stderr


@pytest.mark.parametrize(
    ("head", "suffix"),
    [
        (b"SQLite format 3\x00" + bytes(52) + b"GPKG...", ".gpkg"),
        (b"SQLite format 3\x00" + bytes(52) + b"GP11...", ".gpkg"),
        (b"SQLite format 3\x00" + bytes(60), ".sqlite"),  # SpatiaLite: no application_id
        (b"PK\x03\x04...", ".zip"),
        (  # an OpenDocument spreadsheet: its stored first entry names its type
            b"PK\x03\x04" + bytes(26) + b"mimetypeapplication/vnd.oasis.opendocument.spreadsheet",
            ".ods",
        ),
        (b"PK\x03\x04" + bytes(26) + b"[Content_Types].xml...xl/workbook.xml...", ".xlsx"),
        (b"PAR1...", ".parquet"),
        (b"ARROW1\x00\x00...", ".arrow"),
        (b"\xff\xff\xff\xff\xd0\x16\x00\x00...", ".arrows"),
        (b"fgb\x03fgb\x01...", ".fgb"),
        (b'\xef\xbb\xbf\n {"type": "FeatureCollection", "features": [', ".geojson"),
        (b'{"type": "FeatureCollection", "features": []}', ".geojson"),
        (
            b'{"type": "Feature", "geometry": null, "properties": {}}\n{"type": "Feature"',
            ".geojsonl",
        ),
        (b'\x1e{"type": "Feature"', ".geojsonl"),
        (b'<?xml version="1.0"?>\n<gpx version="1.1">', ".gpx"),
        (b'<?xml version="1.0"?>\n<kml xmlns="http://www.opengis.net/kml/2.2">', ".kml"),
        (b"name,wkt\nhere,POINT(1 2)\n", ".csv"),
    ],
)
def test_the_format_of_standard_input_is_told_by_its_first_bytes(head: bytes, suffix: str) -> None:
    assert suffix_of(head) == suffix


@pytest.mark.parametrize(
    ("head", "needle"),
    [
        (b"", "is empty"),
        (b" \n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary data of no format geosession reads"),
        (b"<?xml version='1.0'?><svg>", "neither KML nor GPX"),
    ],
)
def test_standard_input_geosession_cannot_read_is_refused(head: bytes, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        suffix_of(head)


def test_mapped_class_is_created_from_its_definition(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    class Base(DeclarativeBase):
        pass

    class Made(Base):
        __tablename__ = "made_mapped"
        id: Mapped[int] = mapped_column(primary_key=True)
        geom = mapped_column(Geometry("POINT", 4326), nullable=False)

    rows = [{"id": i, "geom": f"POINT({i} {i})"} for i in range(1, 11)]
    assert db.ingest(Made, rows, create=True).created
    assert columns(admin, "made_mapped") == {"id": "integer", "geom": "geometry(Point,4326)"}
    assert "gist (geom)" in indexes(admin, "made_mapped")
    later = db.ingest(Made, [{"id": 11, "geom": "POINT(0 0)"}], create=True)
    assert not later.created and later.inserted == 1


def test_fields_named_past_63_bytes_load_into_the_columns_postgresql_cut_them_to(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    total = "population_estimate_for_the_year_two_thousand_and_twenty_three_total"
    accented = "é" * 40  # 80 bytes: cut between characters, at 62
    path = tmp_path / "long.gpkg"
    frame = gpd.GeoDataFrame(
        {total: [1, 2], accented: ["a", "b"]}, geometry=[shapely.Point(0, 0)] * 2, crs=4326
    )
    frame.to_file(path, layer="long")
    made = db.ingest("made_long_names", path, create=True, progress=False)
    assert made.created and made.inserted == 2
    assert list(columns(admin, "made_long_names"))[1:3] == [total[:63], "é" * 31]
    rows = [{total: 3, accented: "c", "geom": shapely.Point(1, 1)}]
    assert db.ingest("made_long_names", rows, progress=False).inserted == 1
    frame.index = [10, 11]
    assert db.ingest("made_long_names", frame.rename_geometry("geom"), progress=False).inserted == 2
    stored = admin.execute(
        f'SELECT "{total[:63]}", "{"é" * 31}" FROM made_long_names ORDER BY 1, 2'
    )
    assert stored.fetchall() == [(1, "a"), (1, "a"), (2, "b"), (2, "b"), (3, "c")]


def test_fields_postgresql_would_cut_to_one_name_are_refused_before_a_table_is_made(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    frame = gpd.GeoDataFrame(
        {"x" * 70: [1], "x" * 72: [2]}, geometry=[shapely.Point(0, 0)], crs=4326
    )
    with pytest.raises(ConfigurationError) as refused:
        db.ingest("made_names_alike", frame, create=True, progress=False)
    message = str(refused.value)
    assert "first 63 bytes" in message and repr("x" * 70) in message and repr("x" * 72) in message
    assert "--rename" in message
    assert admin.execute("SELECT to_regclass('made_names_alike')").fetchone() == (None,)


def test_a_table_created_meanwhile_by_another_load_is_loaded(
    db: SpatialDatabase, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "parcels.gpkg"
    parcels(20).to_file(path, layer="parcels", driver="GPKG")
    other = psycopg.connect(database_url.replace("+psycopg", ""))
    try:
        other.execute(
            "CREATE TABLE made_gpkg (id integer, geom geometry(MULTIPOLYGON, 4326), "
            "big bigint, ratio float8, ok boolean, name text, seen timestamptz)"
        )  # not committed: the ingest's CREATE TABLE waits for this transaction
        outcome: list[Any] = []
        loader = threading.Thread(
            target=lambda: outcome.append(db.ingest("made_gpkg", path, create=True))
        )
        loader.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as watch:
            deadline = time.monotonic() + 10
            while watch.execute(waiting).fetchone() == (0,) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert watch.execute(waiting).fetchone() == (1,)  # its CREATE TABLE waits
        other.commit()
        loader.join(timeout=30)
    finally:
        other.close()
    assert not outcome[0].created and outcome[0].inserted == 20


@pytest.mark.parametrize("form", ["frame", "gpkg", "parquet"])
def test_a_crs_without_an_epsg_code_needs_srid_to_make_the_column(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path, form: str
) -> None:
    """A column made without an SRID would drop the source's CRS unseen: the table is not
    made until srid= names the SRID (here 0: a column without one, as asked)."""
    lambert = "+proj=lcc +lat_1=33 +lat_2=45 +lat_0=39 +lon_0=-96 +datum=WGS84 +units=m"
    frame = gpd.GeoDataFrame(
        {"name": ["a", "b"]}, geometry=[shapely.Point(1, 2), shapely.Point(3, 4)], crs=lambert
    )
    source: Any = frame
    if form != "frame":
        source = tmp_path / f"lambert.{form}"
        frame.to_parquet(source) if form == "parquet" else frame.to_file(source)
    with pytest.raises(ConfigurationError, match=r"no EPSG code\), so create=True cannot tell"):
        db.ingest("made_lambert", source, create=True)
    assert admin.execute("SELECT to_regclass('made_lambert')").fetchone() == (None,)
    report = db.ingest("made_lambert", source, create=True, srid=0)
    assert report.created and report.inserted == 2
    assert "geometry(Point)" in columns(admin, "made_lambert").values()


@pytest.mark.parametrize("form", ["frame", "gpkg"])
def test_an_esri_crs_is_its_srid_in_spatial_ref_sys(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path, form: str
) -> None:
    """ESRI:102003 has no EPSG code, but PostGIS files it as SRID 102003: the table is
    made with that SRID, later loads of the same CRS need no srid=, and reproject=True
    moves 4326 rows into it as the server's ST_Transform does."""
    points = [shapely.Point(-100 + i, 40 + i / 2) for i in range(5)]
    wgs84 = gpd.GeoDataFrame({"id": range(1, 6)}, geometry=points, crs=4326)
    wgs84 = wgs84.rename_geometry("geom")
    albers = wgs84.to_crs("ESRI:102003")
    source: Any = albers
    if form == "gpkg":
        source = tmp_path / "albers.gpkg"
        albers.to_file(source)
    report = db.ingest("made_albers", source, create=True)
    assert report.created and report.inserted == 5 and report.srid_assumed == 0
    assert columns(admin, "made_albers")["geom"] == "geometry(Point,102003)"
    assert db.ingest("made_albers", albers.assign(id=range(6, 11))).inserted == 5
    moved = db.ingest("made_albers", wgs84.assign(id=range(11, 16)), reproject=True)
    assert moved.reprojected == 5
    rows = admin.execute(
        "SELECT ST_Distance(a.geom, b.geom) FROM made_albers a JOIN made_albers b "
        "ON b.id = a.id + 10 WHERE a.id <= 5"
    ).fetchall()
    assert max(distance for (distance,) in rows) < 1e-3  # metres


def test_reproject_into_an_srid_a_user_added(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """The column's CRS is its spatial_ref_sys definition, so rows are moved into it."""
    lambert = "+proj=lcc +lat_1=40 +lat_2=50 +lat_0=45 +lon_0=10 +ellps=GRS80 +units=m +no_defs"
    admin.execute("DELETE FROM spatial_ref_sys WHERE srid = 910001")
    admin.execute(
        "INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, proj4text) "
        "VALUES (910001, 'local', 910001, %s)",
        (lambert,),
    )
    try:
        frame = gpd.GeoDataFrame(
            {"id": [1, 2]}, geometry=[shapely.Point(1, 2), shapely.Point(3, 4)], crs=lambert
        )
        assert db.ingest("made_local", frame, create=True, srid=910001).inserted == 2
        assert "geometry(Point,910001)" in columns(admin, "made_local").values()
        wgs84 = frame.to_crs(4326).assign(id=[3, 4])
        assert db.ingest("made_local", wgs84, reproject=True).reprojected == 2
        server = admin.execute(
            "SELECT ST_AsText(ST_SnapToGrid(ST_Transform(ST_SetSRID(geometry, 910001), "
            "4326), 1e-9)), ST_AsText(ST_SnapToGrid(geometry, 1e-6)) FROM made_local "
            "ORDER BY id"
        ).fetchall()
        assert [text for _, text in server] == ["POINT(1 2)", "POINT(3 4)"] * 2
    finally:
        admin.execute("DROP TABLE IF EXISTS made_local")
        admin.execute("DELETE FROM spatial_ref_sys WHERE srid = 910001")


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"reproject": 990001, "create": True}, "--reproject-to 990001"),
        ({"srid": 990001, "create": True}, "--srid 990001"),
        ({"srid": 990001, "reproject": True}, "--srid 990001"),
    ],
)
@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_an_srid_spatial_ref_sys_lacks_is_refused_before_a_table_is_made(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    tmp_path: Path,
    options: dict[str, Any],
    flag: str,
) -> None:
    """A typo in an SRID made a column of it and rejected every row PROJ could not move."""
    admin.execute("DROP TABLE IF EXISTS made_local")
    if not options.get("create"):
        admin.execute("CREATE TABLE made_local (id int, geom geometry(Point, 4326))")
    path = tmp_path / "grid.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[shapely.Point(530000, 180000)]).to_file(path)
    try:
        with pytest.raises(ConfigurationError) as refused:
            db.ingest("made_local", path, progress=False, **options)
        assert f"(CLI: {flag})" in str(refused.value)
        assert "spatial_ref_sys does not hold" in str(refused.value)
        made = admin.execute("SELECT to_regclass('made_local') IS NOT NULL").fetchone()
        assert made == (not options.get("create"),)
    finally:
        admin.execute("DROP TABLE IF EXISTS made_local")


@pytest.mark.parametrize("suffix", [".geojson", ".parquet"])
def test_lists_and_objects_become_arrays_and_jsonb(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path, suffix: str
) -> None:
    """As ogr2ogr makes them (GDAL's list fields, Arrow's lists), with JSON as jsonb, and
    so from the GeoDataFrame geopandas reads (numpy arrays, dicts); a list into a text
    column is JSON text, not Python's repr of it."""
    frame = gpd.GeoDataFrame(
        {
            "tags": [["a", "b"], ["c"]],
            "nums": [[1, 2], [3]],
            "meta": [{"k": 1, "v": "x"}, {"k": 2, "v": "y"}],
            "nested": [[[1], [2, 3]], []],
        },
        geometry=[shapely.Point(1, 2), shapely.Point(3, 4)],
        crs=4326,
    )
    source = tmp_path / f"lists{suffix}"
    frame.to_parquet(source) if suffix == ".parquet" else frame.to_file(source)
    assert db.ingest("made_lists", source, create=True).inserted == 2
    made = columns(admin, "made_lists")
    assert (made["tags"], made["meta"], made["nested"]) == ("text[]", "jsonb", "jsonb")
    assert made["nums"] in ("integer[]", "bigint[]")  # GeoJSON's integers fit int4
    rows = admin.execute("SELECT tags, nums, meta, nested FROM made_lists ORDER BY fid")
    assert rows.fetchall() == [
        (["a", "b"], [1, 2], {"k": 1, "v": "x"}, [[1], [2, 3]]),
        (["c"], [3], {"k": 2, "v": "y"}, []),
    ]
    admin.execute("DROP TABLE made_lists")
    read = gpd.read_file(source) if suffix == ".geojson" else gpd.read_parquet(source)
    assert db.ingest("made_lists", read, create=True).inserted == 2  # numpy arrays, dicts
    made = columns(admin, "made_lists")
    assert (made["tags"], made["nums"], made["meta"]) == ("text[]", "bigint[]", "jsonb")
    rows = admin.execute("SELECT tags, nums, meta, nested FROM made_lists ORDER BY fid")
    assert rows.fetchall()[0] == (["a", "b"], [1, 2], {"k": 1, "v": "x"}, [[1], [2, 3]])
    admin.execute("TRUNCATE made_lists")
    admin.execute("ALTER TABLE made_lists ALTER tags TYPE text, ALTER meta TYPE text")
    assert db.ingest("made_lists", read, ingest_id="as-text").inserted == 2
    rows = admin.execute("SELECT tags, meta FROM made_lists ORDER BY fid")
    assert rows.fetchall() == [
        ('["a", "b"]', '{"k": 1, "v": "x"}'),
        ('["c"]', '{"k": 2, "v": "y"}'),
    ]


def test_object_columns_of_python_values_get_their_types(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """A DataFrame built from records holds dates, Decimals, UUIDs, bytes, and booleans or
    integers with None as objects: they get the column types an INSERT of them would
    (text held "b'ab'" for bytes), and load as they are."""
    stamp = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    records = [
        {
            "day": dt.date(2026, 1, 2),
            "ok": True,
            "price": decimal.Decimal("1.50"),
            "key": uuid.UUID(int=1),
            "raw": b"ab",
            "count": 7,
            "share": 1,
            "at": dt.time(3, 4),
            "seen": stamp,
            "took": dt.timedelta(days=1),
            "days": [dt.date(2026, 1, 2), None],
            "geometry": shapely.Point(0, 0),
        },
        dict.fromkeys(["day", "ok", "price", "key", "raw", "count", "at", "seen", "took"])
        | {"share": 0.5, "days": [], "geometry": shapely.Point(1, 1)},
    ]
    frame = gpd.GeoDataFrame(pd.DataFrame(records, dtype=object), crs=4326)
    assert db.ingest("made_objects", frame, create=True).inserted == 2
    assert list(columns(admin, "made_objects").values())[1:-1] == [
        "date",
        "boolean",
        "numeric",
        "uuid",
        "bytea",
        "bigint",
        "double precision",
        "time without time zone",
        "timestamp with time zone",
        "interval",
        "date[]",
    ]
    stored = admin.execute("SELECT * FROM made_objects ORDER BY fid").fetchall()
    assert stored[0][1:-1] == (
        *(dt.date(2026, 1, 2), True, decimal.Decimal("1.50"), uuid.UUID(int=1), b"ab", 7, 1.0),
        *(dt.time(3, 4), stamp, dt.timedelta(days=1), [dt.date(2026, 1, 2), None]),
    )
    assert stored[1][1:-1] == (*[None] * 6, 0.5, None, None, None, [])


def test_an_object_column_of_other_kinds_after_its_first_values_is_typed_by_all(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """An object column was typed by its first 1,000 values: codes that are numbers there
    and text later ("n/a", as a spreadsheet's column reads) made a bigint column that set
    the text aside, and integers before a float one that set the float aside."""
    codes: list[object] = [*range(1_500), "n/a"]
    shares: list[object] = [*range(1_500), 0.5]
    frame = gpd.GeoDataFrame(
        {"code": codes, "share": shares, "n": range(1_501)},
        geometry=[shapely.Point(1, 2)] * 1_501,
        crs=4326,
    ).astype({"code": object, "share": object})
    report = db.ingest("late_objects", frame, create=True)
    assert (report.inserted, report.rejected) == (1_501, [])
    made = columns(admin, "late_objects")
    assert (made["code"], made["share"], made["n"]) == ("text", "double precision", "bigint")
    last = admin.execute("SELECT code, share FROM late_objects WHERE n = 1500").fetchone()
    assert last == ("n/a", 0.5)


def test_arrow_backed_and_categorical_columns_get_their_types(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """pandas' pyarrow dtypes (dtype_backend="pyarrow", convert_dtypes) and categoricals
    are typed by their Arrow type or their categories, not made text."""
    frame = pd.DataFrame({"count": [1, None], "share": [0.5, None], "ok": [True, None]})
    frame = frame.convert_dtypes(dtype_backend="pyarrow")
    frame["day"] = pd.array([dt.date(2026, 1, 2), None], dtype=pd.ArrowDtype(pa.date32()))
    frame["took"] = pd.array([dt.timedelta(1), None], dtype=pd.ArrowDtype(pa.duration("us")))
    frame["price"] = pd.array(
        [decimal.Decimal("1.50"), None], dtype=pd.ArrowDtype(pa.decimal128(10, 2))
    )
    frame["kind"] = pd.Series(["a", "b"]).astype("category")
    frame["rank"] = pd.Series([3, 4]).astype("category")
    points = gpd.GeoDataFrame(frame, geometry=[shapely.Point(0, 0)] * 2, crs=4326)
    assert db.ingest("made_objects", points, create=True).inserted == 2
    assert list(columns(admin, "made_objects").values())[1:-1] == [
        *("bigint", "double precision", "boolean", "date", "interval", "numeric(10,2)"),
        *("text", "bigint"),
    ]
    stored = admin.execute("SELECT * FROM made_objects ORDER BY fid").fetchall()
    assert [row[1:-1] for row in stored] == [
        (1, 0.5, True, dt.date(2026, 1, 2), dt.timedelta(1), decimal.Decimal("1.50"), "a", 3),
        (None, None, None, None, None, None, "b", 4),
    ]


def test_m_values_make_measured_columns(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """pyogrio reports an M layer as 2D (with a warning, which is not shown); the table is
    made XYM, as the layer declares, and the M values load."""
    import warnings

    admin.execute("CREATE TABLE made_m_source (id int PRIMARY KEY, geom geometry(PointM, 4326))")
    admin.execute("INSERT INTO made_m_source VALUES (1, 'SRID=4326;POINT M (1 2 3)')")
    frame = gpd.GeoDataFrame(
        {"id": [1]}, geometry=[shapely.from_wkt("POINT M (1 2 3)")], crs=4326
    ).rename_geometry("geom")
    sources: dict[str, Any] = {"made_m_frame": frame}
    for suffix in ("gpkg", "fgb", "shp"):  # a Shapefile's text encoding is read too
        sources[f"made_m_{suffix}"] = tmp_path / f"m.{suffix}"
        db.export("SELECT * FROM made_m_source", sources[f"made_m_{suffix}"])
    for table, source in sources.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert db.ingest(table, source, create=True).inserted == 1, table
        assert columns(admin, table)["geom"] == "geometry(PointM,4326)", table
        stored = admin.execute(f"SELECT ST_AsText(geom) FROM {table}").fetchone()
        assert stored == ("POINT M (1 2 3)",), table


def test_an_unreadable_file_is_said_to_be_so_before_a_table_is_made(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "broken.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(ConfigurationError, match=r"cannot read .*broken.geojson as a GeoJSON"):
        db.ingest("made_broken", path, create=True)
    assert admin.execute("SELECT to_regclass('made_broken')").fetchone() == (None,)


def test_a_flatgeobuf_cut_short_is_refused_however_it_was_cut(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Cut inside its spatial index, GDAL read it as a file of no features: 0 rows, a
    complete load, exit status 0. Cut inside its header, or with --create through its
    features, the load ended in pyogrio's IndexError or GDAL's OSError."""
    whole = tmp_path / "whole.fgb"
    db.export(
        "SELECT g AS id, ST_Buffer(ST_MakePoint(g, 0), 0.4) AS geom "
        "FROM generate_series(1, 20000) g",
        whole,
    )
    unindexed = tmp_path / "unindexed.fgb"
    db.export(
        "SELECT g AS id, ST_MakePoint(g, 0) AS geom FROM generate_series(1, 1000) g",
        unindexed,
        spatial_index=False,
    )
    data, plain = whole.read_bytes(), unindexed.read_bytes()
    cuts = {
        "in_index.fgb": data[:200_000],  # its index takes its first ~850 kB
        "in_header.fgb": data[:20],
        "in_features.fgb": plain[: len(plain) // 2],
    }
    for name, cut in cuts.items():
        (tmp_path / name).write_bytes(cut)
        said = "GDAL finds no layer in it" if name == "in_header.fgb" else "damaged or cut short"
        with pytest.raises(ConfigurationError, match=said):
            db.ingest("made_cut", tmp_path / name, create=True, progress=False)
        assert admin.execute("SELECT to_regclass('made_cut')").fetchone() == (None,)
    admin.execute("CREATE TABLE made_cut (id int, geom geometry)")
    try:
        with pytest.raises(ConfigurationError, match="its header declares 20,000 features"):
            db.ingest("made_cut", tmp_path / "in_index.fgb", progress=False)
    finally:
        admin.execute("DROP TABLE IF EXISTS made_cut, made_cut_rejected")


def test_rows_without_a_schema_cannot_make_a_table(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="made_rows does not exist, and create=True"):
        db.ingest("made_rows", iter([(1, "a")]), create=True)  # tuples name no columns
    sheet = tmp_path / "rows.docx"
    sheet.write_bytes(b"")
    with pytest.raises(ConfigurationError, match="rows.docx: unsupported file type"):
        db.ingest("made_rows", sheet, create=True)
    assert admin.execute("SELECT to_regclass('made_rows')").fetchone() == (None,)


def test_a_missing_schema_is_named_and_a_quoted_one_is_loaded(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """A schema that does not exist is said to be missing (not the table), with or without
    create=True; a schema whose name needs quoting (a double quote in it) is loaded into."""
    frame = parcels(3)
    for create in (False, True):
        with pytest.raises(ConfigurationError, match=r'Schema "no_such_schema" does not exist'):
            db.ingest("no_such_schema.made_frame", frame, create=create)
    admin.execute('DROP SCHEMA IF EXISTS "odd""schema" CASCADE')
    admin.execute('CREATE SCHEMA "odd""schema"')
    try:
        report = db.ingest('odd"schema.made_frame', frame, create=True)
        assert report.created and report.inserted == 3
        bow_tie = "SRID=4326;MULTIPOLYGON(((0 0, 1 1, 1 0, 0 1, 0 0)))"
        again = db.ingest('odd"schema.made_frame', [{"id": 9, "geometry": bow_tie}])
        assert again.inserted == 0 and len(again.rejected) == 1
        stored = admin.execute('SELECT count(*) FROM "odd""schema".made_frame').fetchone()
        quarantined = admin.execute('SELECT count(*) FROM "odd""schema".made_frame_rejected')
        assert stored == (3,) and quarantined.fetchone() == (1,)
    finally:
        admin.execute('DROP SCHEMA "odd""schema" CASCADE')


@pytest.mark.parametrize(
    ("types", "srid", "multi", "expected"),
    [
        (["Polygon"], 4326, False, "geometry(POLYGON, 4326)"),
        (["Polygon"], 4326, True, "geometry(MULTIPOLYGON, 4326)"),
        (["Point"], None, True, "geometry(POINT)"),
        (["Polygon", "MultiPolygon"], 3857, False, "geometry(MULTIPOLYGON, 3857)"),
        (["Point", "LineString"], 0, False, "geometry(GEOMETRY)"),
        (["LineString Z"], 2056, False, "geometry(LINESTRINGZ, 2056)"),
        (["Point ZM"], 4326, False, "geometry(POINTZM, 4326)"),
        (["Unknown"], 4326, False, "geometry(GEOMETRY, 4326)"),
        ([], 4326, False, "geometry(GEOMETRY, 4326)"),
    ],
)
def test_geometry_type_for_the_declared_types(
    types: list[str], srid: int | None, multi: bool, expected: str
) -> None:
    assert geometry_type(types, srid, multi=multi) == expected


def test_a_geopackage_of_curves_makes_a_curve_table(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """pyogrio names a curve layer's type as linear (or Unknown): the table was made
    POLYGON, and every CurvePolygon was then refused. The first features' types say."""
    (arc,) = admin.execute(
        "SELECT ST_AsBinary('CURVEPOLYGON(CIRCULARSTRING(0 0, 1 1, 2 0, 1 -1, 0 0))'::geometry)"
    ).fetchone()
    arcs = pa.table({"id": [1, 2], "geom": pa.array([bytes(arc)] * 2, pa.binary())})
    path = tmp_path / "cadastre.gpkg"
    pyogrio.write_arrow(
        arcs, path, layer="parcels", driver="GPKG", geometry_name="geom",
        geometry_type="Unknown", crs="EPSG:4326",
    )  # fmt: skip
    report = db.ingest("made_arcs", path, create=True)
    assert report.inserted == 2 and not report.rejected
    assert columns(admin, "made_arcs")["geom"] == "geometry(CurvePolygon,4326)"


def test_a_csv_of_longitudes_and_latitudes_makes_a_point_table(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """It made a table of text columns latitude and longitude, without a geometry."""
    path = tmp_path / "cities.csv"
    path.write_text(
        "name,lat,lng\nBerlin,52.52,13.405\nParis,48.8566,2.3522\nNowhere,,\nBad,north,1\n"
    )
    report = db.ingest("made_points", path, create=True)
    assert report.inserted == 3 and [r.row for r in report.rejected] == [4]
    assert report.rejected[0].reason == "lat 'north' is not a number (a point needs lng and lat)"
    assert columns(admin, "made_points") == {
        "fid": "bigint",
        "name": "text",
        "geom": "geometry(Point,4326)",
    }
    stored = admin.execute("SELECT name, ST_AsText(geom) FROM made_points ORDER BY fid")
    assert stored.fetchall() == [
        ("Berlin", "POINT(13.405 52.52)"),
        ("Paris", "POINT(2.3522 48.8566)"),
        ("Nowhere", None),
    ]
    admin.execute("CREATE TABLE made_metric (name text, geom geometry(Point, 3857))")
    with pytest.raises(ConfigurationError, match=r"CRS is EPSG:4326, but column geom .* 3857"):
        db.ingest("made_metric", path)
    assert db.ingest("made_metric", path, reproject=True).inserted == 3
    (x,) = admin.execute("SELECT round(ST_X(geom)) FROM made_metric WHERE name = 'Berlin'")
    assert x == (1492238,)
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    metres = tmp_path / "metres.csv"
    metres.write_text("name;e;n\nBerlin;1492237.77;6894699.80\n")
    command = ["ingest", str(metres), "made_metric", "--xy-columns"]
    assert "is not X,Y or X,Y,Z" in CliRunner().invoke(app, [*command, "e"]).output
    loaded = CliRunner().invoke(app, [*command, "e,n"])
    assert loaded.exit_code == 0, loaded.output
    assert admin.execute("SELECT count(*) FROM made_metric").fetchone() == (4,)


def test_a_csv_makes_columns_of_the_types_all_its_values_read_as(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Each field's column is of the one kind all its values read as, checked over the
    whole file (a word in the last of 60,000 rows keeps a field text); what would not
    load back as that kind stays text: leading zeros, numbers beyond bigint, NA."""
    header = "name,wkt,pop,big,area,flag,day,moment,zoned,clock,code,huge,late,gap,na,far\n"
    first = (
        "a,POINT(1 2),7,5130000000,105.4,true,2020-01-03,2020-01-03T10:00:00,"
        "2020-01-03 10:00:00+01,12:30,01234,99999999999999999999,1,,NA,1e400\n"
    )
    second = (
        "b,POINT(3 4),8,1,47,F,2019-05-01,2020-01-03,2020-01-03T10:00Z,23:59:59.5,75001,1,2,,1,1\n"
    )
    rows = "".join(
        f"r{i},POINT(0 0),{i},{i},{i}.5,t,2020-01-01,,,,{i},{i},{i},,{i},{i}\n"
        for i in range(60_000)
    )
    path = tmp_path / "typed.csv"
    path.write_text(header + first + second + rows + "z,POINT(0 0),1,1,1,f,,,,,1,1,late,,1,1\n")
    report = db.ingest("made_typed_csv", path, create=True)
    assert report.inserted == 60_003 and not report.rejected
    assert columns(admin, "made_typed_csv") == {
        "fid": "bigint",
        "name": "text",
        "pop": "integer",
        "big": "bigint",
        "area": "double precision",
        "flag": "boolean",
        "day": "date",
        "moment": "timestamp without time zone",
        "zoned": "timestamp with time zone",
        "clock": "time without time zone",
        "code": "text",
        "huge": "text",
        "late": "text",
        "gap": "text",
        "na": "text",
        "far": "text",
        "geom": "geometry(Point)",  # its values' type
    }
    admin.execute("SET TimeZone = 'UTC'")
    stored = admin.execute(
        "SELECT pop, big, area, flag, day, moment, zoned, clock, code FROM made_typed_csv "
        "WHERE name IN ('a', 'b') ORDER BY name"
    )
    assert stored.fetchall() == [
        (
            7,
            5130000000,
            105.4,
            True,
            dt.date(2020, 1, 3),
            dt.datetime(2020, 1, 3, 10),
            dt.datetime(2020, 1, 3, 9, tzinfo=dt.UTC),
            dt.time(12, 30),
            "01234",
        ),
        (
            8,
            1,
            47.0,
            False,
            dt.date(2019, 5, 1),
            dt.datetime(2020, 1, 3),
            dt.datetime(2020, 1, 3, 10, tzinfo=dt.UTC),
            dt.time(23, 59, 59, 500000),
            "75001",
        ),
    ]
    werte = tmp_path / "werte.csv"
    werte.write_text("name;wert;anteil;lat;lon\nA;12,5;1.234,5;52,5;13,4\nB;7;1;1;2\n")
    assert db.ingest("made_werte", werte, create=True).inserted == 2
    assert columns(admin, "made_werte") == {
        "fid": "bigint",
        "name": "text",
        "wert": "double precision",
        "anteil": "text",  # a thousands separator: the load would not read it as a number
        "geom": "geometry(Point,4326)",
    }
    assert admin.execute("SELECT wert FROM made_werte ORDER BY fid").fetchall() == [(12.5,), (7.0,)]


def test_a_csv_field_of_wkt_values_is_the_geometry_column_under_its_own_name(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A CSV export of a geometry column named otherwise than geom or wkt loads back with
    create=True: the one field whose values are all WKT or EWKT (empty ones aside) is the
    geometry column, under its name and with its spatial index; with two such fields no
    guess is made (wkt_column= names one), and both stay text. Hex EWKB (psql's CSV of a
    geometry) is told the same way. Without srid=, the column takes the SRID every value
    states (EWKT, EWKB), or none."""
    path = tmp_path / "exported.csv"
    path.write_text(
        "id,footprint,label\n"
        '1,"POLYGON ((0 0, 1 0, 1 1, 0 0))","POINT is a word"\n'
        "2,,empty\n"
        "3,SRID=4326;POINT(5 6),point\n"
    )
    report = db.ingest("made_exported_csv", path, create=True, srid=4326)
    assert report.inserted == 3 and not report.rejected
    assert columns(admin, "made_exported_csv") == {
        "fid": "bigint",
        "id": "integer",
        "footprint": "geometry(Geometry,4326)",
        "label": "text",
    }
    assert "gist (footprint)" in indexes(admin, "made_exported_csv")
    stored = admin.execute(
        "SELECT id, ST_AsText(footprint) FROM made_exported_csv ORDER BY id"
    ).fetchall()
    assert stored == [(1, "POLYGON((0 0,1 0,1 1,0 0))"), (2, None), (3, "POINT(5 6)")]
    mixed = tmp_path / "mixed.csv"  # one value states an SRID, one does not: none
    mixed.write_text("id,wkt\n1,SRID=4326;POINT(1 2)\n2,POINT(3 4)\n")
    assert db.ingest("made_mixed_csv", mixed, create=True).inserted == 2
    assert columns(admin, "made_mixed_csv")["geom"] == "geometry(Point)"
    two = tmp_path / "two.csv"
    two.write_text('a,b\nPOINT(1 2),"LINESTRING(0 0,1 1)"\n')
    assert db.ingest("made_two_wkt_csv", two, create=True).inserted == 1
    assert columns(admin, "made_two_wkt_csv") == {"fid": "bigint", "a": "text", "b": "text"}
    located = shapely.set_srid(shapely.Point(7, 8), 4326)
    copied = tmp_path / "copied.csv"  # as psql's \copy ... csv header writes a geometry
    copied.write_text(f"id,shape\n1,{shapely.to_wkb(located, hex=True, include_srid=True)}\n")
    assert db.ingest("made_copied_csv", copied, create=True).inserted == 1
    assert columns(admin, "made_copied_csv")["shape"] == "geometry(Point,4326)"  # stated
    shape = admin.execute("SELECT ST_AsEWKT(shape) FROM made_copied_csv").fetchone()
    assert shape == ("SRID=4326;POINT(7 8)",)


def test_a_plain_dataframe_column_of_geometries_is_the_geometry_column(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """A pandas DataFrame (not a GeoDataFrame) whose one text or object column holds
    geometries, as WKT, EWKT or hex EWKB (read_csv's), WKB (read_sql's) or shapely objects
    (built from records), makes a geometry column of that name with create=True, in the SRID its
    values state or srid= names; before, it made a text column."""
    footprints = ["SRID=4326;POLYGON((0 0,1 0,1 1,0 0))", None, "SRID=4326;POINT(3 4)"]
    frame = pd.DataFrame({"id": [1, 2, 3], "footprint": footprints})
    assert db.ingest("made_wkt_frame", frame, create=True).inserted == 3
    assert columns(admin, "made_wkt_frame") == {
        "fid": "bigint",
        "id": "bigint",
        "footprint": "geometry(Geometry,4326)",
    }
    stored = admin.execute("SELECT ST_AsText(footprint) FROM made_wkt_frame ORDER BY id")
    assert stored.fetchall() == [("POLYGON((0 0,1 0,1 1,0 0))",), (None,), ("POINT(3 4)",)]
    shapes = pd.DataFrame({"name": ["a", "b"], "shape": [shapely.Point(1, 2), None]})
    report = db.ingest("made_shapely_frame", shapes, create=True, srid=3857)
    assert report.inserted == 2 and not report.rejected
    assert columns(admin, "made_shapely_frame")["shape"] == "geometry(Point,3857)"
    located = shapely.set_srid(shapely.Point(5, 6), 4326)
    queried = pd.DataFrame({"id": [1], "g": [shapely.to_wkb(located, include_srid=True)]})
    assert db.ingest("made_wkb_frame", queried, create=True).inserted == 1  # read_sql's
    assert columns(admin, "made_wkb_frame")["g"] == "geometry(Point,4326)"
    assert columns(admin, "made_shapely_frame")["name"] == "text"  # text is not geometry
    api = pd.DataFrame({"id": [1], "where": [{"type": "Point", "coordinates": [7, 8]}]})
    assert db.ingest("made_geojson_frame", api, create=True).inserted == 1
    assert columns(admin, "made_geojson_frame")["where"] == "geometry(Point,4326)"
    arrow_backed = frame.convert_dtypes(dtype_backend="pyarrow")  # string[pyarrow]
    assert db.ingest("made_arrow_backed_frame", arrow_backed, create=True).inserted == 3
    assert columns(admin, "made_arrow_backed_frame")["footprint"] == "geometry(Geometry,4326)"


def test_digits_a_csv_quotes_while_numbers_are_bare_make_a_text_column(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """geosession's CSV export (as Arrow's, and csv.QUOTE_NONNUMERIC) quotes text alone,
    so a postcode of digits came back as an integer column; quoting that tells nothing (a
    file quoting every field) leaves the types to the values."""
    admin.execute(
        "DROP TABLE IF EXISTS codes; CREATE TABLE codes (id int, postcode text, "
        "pop int, geom geometry(Point, 4326)); INSERT INTO codes VALUES "
        "(1, '75001', 7, 'SRID=4326;POINT(2.3 48.8)'), (2, NULL, 8, 'SRID=4326;POINT(2 48)')"
    )
    exported = tmp_path / "codes.csv"
    db.export("SELECT * FROM codes ORDER BY id", exported)
    assert '"75001"' in exported.read_text()
    db.ingest("codes_again", exported, create=True)
    made = columns(admin, "codes_again")
    assert (made["postcode"], made["pop"], made["id"]) == ("text", "integer", "integer")
    assert admin.execute("SELECT postcode FROM codes_again ORDER BY id").fetchall() == [
        ("75001",),
        (None,),
    ]
    rows = [["id", "postcode", "wkt"], [1, "75001", "POINT(1 2)"], [2, "75002", "POINT(3 4)"]]
    for quoting, postcode in ((csv.QUOTE_NONNUMERIC, "text"), (csv.QUOTE_ALL, "integer")):
        path = tmp_path / f"quoting{quoting}.csv"
        with path.open("w", newline="") as handle:
            csv.writer(handle, quoting=quoting).writerows(rows)
        db.ingest(f"made_quoting{quoting}", path, create=True)
        made = columns(admin, f"made_quoting{quoting}")
        assert (made["id"], made["postcode"]) == ("integer", postcode), quoting
    admin.execute("DROP TABLE codes")


def test_decimals_and_dates_a_csv_quotes_keep_their_types(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Quoting where numbers are bare made every quoted field text: geosession's export
    of a numeric column ("12.34", quoted to keep every digit) came back as text, and so
    did the dates Python's csv.QUOTE_NONNUMERIC quotes. Quoted decimals are numeric now,
    exact; quoted dates keep their type; quoted digits stay text (a postcode)."""
    admin.execute(
        "DROP TABLE IF EXISTS prices; CREATE TABLE prices (id int, price numeric(22, 2), "
        "geom geometry(Point, 4326)); INSERT INTO prices VALUES "
        "(1, 12345678901234567890.12, 'SRID=4326;POINT(1 2)'), (2, 0.5, NULL)"
    )
    exported = tmp_path / "prices.csv"
    db.export("SELECT * FROM prices ORDER BY id", exported)
    db.ingest("prices_again", exported, create=True)
    assert columns(admin, "prices_again")["price"] == "numeric"
    stored = admin.execute("SELECT price FROM prices_again ORDER BY id").fetchall()
    assert stored == [(decimal.Decimal("12345678901234567890.12"),), (decimal.Decimal("0.50"),)]
    path = tmp_path / "python.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(["id", "born", "postcode", "wkt"])
        writer.writerow([1, dt.date(2020, 1, 2).isoformat(), "01234", "POINT(1 2)"])
        writer.writerow([2, dt.date(2021, 3, 4).isoformat(), "75001", "POINT(3 4)"])
    db.ingest("python_quoted", path, create=True)
    made = columns(admin, "python_quoted")
    assert (made["id"], made["born"], made["postcode"]) == ("integer", "date", "text")
    admin.execute("DROP TABLE prices")


def test_bare_numbers_double_precision_would_round_make_numeric(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A CSV's bare decimals of more digits than double precision keeps, and whole
    numbers past 2**53 among decimals, made a double precision column that rounded them.
    They make numeric now, every digit kept; a float's shortest form (Python's repr,
    what pandas and PostgreSQL write) still makes double precision, exact."""
    path = tmp_path / "digits.csv"
    path.write_text(
        "ledger,mixed,measured,wkt\n"
        "12345678901234.567891,1.5,0.30000000000000004,POINT(1 2)\n"
        "0.1,9007199254740993,55.161553842425946,POINT(3 4)\n"
    )
    db.ingest("made_digits", path, create=True)
    made = columns(admin, "made_digits")
    assert (made["ledger"], made["mixed"], made["measured"]) == (
        "numeric",
        "numeric",
        "double precision",
    )
    stored = admin.execute("SELECT ledger::text, mixed::text, measured FROM made_digits")
    assert stored.fetchall() == [
        ("12345678901234.567891", "1.5", 0.30000000000000004),
        ("0.1", "9007199254740993", 55.161553842425946),
    ]
    admin.execute("DROP TABLE made_digits")


def test_a_csv_of_x_y_and_z_makes_a_pointz_table(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    """geosession's export of PointZ as coordinates came back as points and a number
    column z. An elevation beside longitude and latitude stays a column of its own."""
    path = tmp_path / "heights.csv"
    path.write_text('"id","longitude","latitude","z"\n1,13.4,52.5,34.5\n')
    assert db.ingest("made_heights", path, create=True).inserted == 1
    assert columns(admin, "made_heights") == {
        "fid": "bigint",
        "id": "integer",
        "geom": "geometry(PointZ,4326)",
    }
    stored = admin.execute("SELECT ST_AsText(geom) FROM made_heights").fetchall()
    assert stored == [("POINT Z (13.4 52.5 34.5)",)]
    gps = tmp_path / "gps.csv"
    gps.write_text("lat,lon,elevation\n52.5,13.4,34\n")
    assert db.ingest("made_elevations", gps, create=True).inserted == 1
    assert columns(admin, "made_elevations")["geom"] == "geometry(Point,4326)"
    assert columns(admin, "made_elevations")["elevation"] == "integer"
    admin.execute("DROP TABLE made_elevations")
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    command = ["ingest", str(gps), "made_elevations", "--create", "--xy-columns"]
    assert "is not X,Y or X,Y,Z" in CliRunner().invoke(app, [*command, "lon,lat,"]).output
    loaded = CliRunner().invoke(app, [*command, "lon,lat,elevation", "--srid", "4326"])
    assert loaded.exit_code == 0, loaded.output
    assert columns(admin, "made_elevations")["geom"] == "geometry(PointZ,4326)"
    frame = pd.DataFrame({"x": [1.0], "y": [2.0], "z": [3.0]})
    admin.execute("DROP TABLE made_elevations")
    assert db.ingest("made_elevations", frame, create=True, srid=3857).inserted == 1
    assert columns(admin, "made_elevations") == {
        "fid": "bigint",
        "geom": "geometry(PointZ,3857)",
    }


def test_a_semicolon_csvs_decimal_commas_are_numbers_of_number_columns(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A spreadsheet where a comma is the decimal mark saves 12,5 in a semicolon CSV."""
    path = tmp_path / "werte.csv"
    path.write_text("name;wert;anteil;lat;lon\nA,1;12,5;0,25;52,5;13,4\nB;7;1.234,5;1;2\n")
    admin.execute(
        "CREATE TABLE made_values (name text, wert float8, anteil numeric, "
        "geom geometry(Point, 4326))"
    )
    report = db.ingest("made_values", path)
    assert report.inserted == 1 and [(r.row, r.column) for r in report.rejected] == [(2, "anteil")]
    stored = admin.execute("SELECT name, wert, anteil, ST_AsText(geom) FROM made_values")
    assert stored.fetchall() == [("A,1", 12.5, decimal.Decimal("0.25"), "POINT(13.4 52.5)")]
