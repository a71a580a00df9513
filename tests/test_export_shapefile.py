"""db.export / geosession export to Shapefiles: the dBase limits kept in the open."""

from __future__ import annotations

import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pyogrio
import pytest
import shapely
from typer.testing import CliRunner

from geosession import ConfigurationError, ExportFailed, SpatialDatabase
from geosession.cli import app
from geosession.read.shapefile import field_names
from tests.test_stream import ROWS, tables  # noqa: F401 (the module's tables, as there)

pytestmark = pytest.mark.usefixtures("tables")


def files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_table_round_trips_through_a_shapefile_and_a_zipped_one(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    query = "SELECT id, name, seen, geom FROM rd_parcels WHERE geom IS NOT NULL"
    plain = db.export(query, tmp_path / "parcels.shp")
    zipped = db.export(query, tmp_path / "parcels.shp.zip", spatial_index=False)
    assert (plain.features, plain.format, plain.renamed) == (ROWS - 1, "shp", {})
    assert zipped.features == ROWS - 1
    assert files(tmp_path) == [
        "parcels.cpg",
        "parcels.dbf",
        "parcels.prj",
        "parcels.qix",
        "parcels.shp",
        "parcels.shp.zip",
        "parcels.shx",
    ]
    inside = zipfile.ZipFile(tmp_path / "parcels.shp.zip").namelist()
    assert sorted(inside) == [
        "parcels.cpg",
        "parcels.dbf",
        "parcels.prj",
        "parcels.shp",
        "parcels.shx",
    ]
    assert (tmp_path / "parcels.cpg").read_text() == "UTF-8"
    info = pyogrio.read_info(tmp_path / "parcels.shp")
    assert (info["crs"], info["geometry_type"]) == ("EPSG:4326", "Polygon")
    assert dict(zip(info["fields"], info["ogr_types"], strict=True)) == {
        "id": "OFTInteger",
        "name": "OFTString",
        "seen": "OFTDate",
    }
    for source in ("parcels.shp", "parcels.shp.zip"):
        admin.execute(
            "DROP TABLE IF EXISTS rd_shp; CREATE TABLE rd_shp "
            "(id int PRIMARY KEY, name text, seen date, geom geometry(Polygon, 4326))"
        )
        report = db.ingest("rd_shp", tmp_path / source)
        assert report.inserted == ROWS - 1 and not report.rejected
        same = admin.execute(
            "SELECT count(*) FROM rd_shp t JOIN rd_parcels p USING (id) "
            "WHERE t.name = p.name AND t.seen = p.seen AND ST_Equals(t.geom, p.geom)"
        ).fetchone()
        assert same is not None and same[0] == ROWS - 1, source
    admin.execute("DROP TABLE rd_shp")


def test_long_field_names_are_shortened_unique_and_reported(
    db: SpatialDatabase, runner: CliRunner, tmp_path: Path
) -> None:
    assert field_names(["a_very_long_name", "a_very_long_other", "A_VERY_LON", "g"], "g") == {
        "a_very_long_name": "a_very_lon",
        "a_very_long_other": "a_very_l_1",
        "A_VERY_LON": "A_VERY_L_2",
    }
    assert field_names(["Ünïcödé name"], "geom") == {"Ünïcödé name": "Ünïcöd"}  # 9 bytes
    query = (
        "SELECT id AS parcel_identifier, id * 2 AS parcel_identity, name, geom "
        "FROM rd_parcels WHERE id <= 5"
    )
    result = db.export(query, tmp_path / "long.shp")
    assert result.renamed == {"parcel_identifier": "parcel_ide", "parcel_identity": "parcel_i_1"}
    frame = pyogrio.read_dataframe(tmp_path / "long.shp")
    assert frame.columns.tolist() == ["parcel_ide", "parcel_i_1", "name", "geometry"]
    assert frame.parcel_i_1.tolist() == [2, 4, 6, 8, 10]
    printed = runner.invoke(app, ["export", query, str(tmp_path / "cli.shp")])
    assert printed.exit_code == 0, printed.output
    said = " ".join(printed.output.split())
    assert "parcel_identifier -> parcel_ide, parcel_identity -> parcel_i_1" in said


def test_text_too_long_for_a_dbase_field_fails_naming_column_and_feature(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """GDAL would cut the value to 254 bytes and only warn."""
    out = tmp_path / "notes.shp"
    db.export("SELECT id, geom FROM rd_parcels WHERE id = 1", out)
    before = {name: (tmp_path / name).read_bytes() for name in files(tmp_path)}
    query = (
        "SELECT id, CASE WHEN id = 2345 THEN repeat('é', 128) ELSE 'short' END AS note, geom "
        "FROM rd_parcels ORDER BY id"
    )
    with pytest.raises(ExportFailed, match="column note of feature 2,345 holds 256 bytes of text"):
        db.export(query, out, batch_size=500)
    blob = "SELECT id, decode(repeat('ab', 128), 'hex') AS raw, geom FROM rd_parcels"
    with pytest.raises(ExportFailed, match="column raw of feature 1 holds 256 bytes as hex"):
        db.export(blob, out)
    assert {name: (tmp_path / name).read_bytes() for name in files(tmp_path)} == before
    fits = "SELECT id, repeat('é', 127) AS note, geom FROM rd_parcels WHERE id <= 3"
    db.export(fits, out)
    assert pyogrio.read_dataframe(out).note[0] == "é" * 127


def test_a_number_too_wide_for_a_dbase_field_fails_naming_field_and_feature(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    """GDAL wrote another number (1e30 read back as 1e23) and only warned."""
    out = tmp_path / "sums.shp"
    db.export("SELECT id, geom FROM rd_parcels WHERE id = 1", out)
    before = {name: (tmp_path / name).read_bytes() for name in files(tmp_path)}
    for wide in ("1e30::float8", "123456789012345678901234567890.5::numeric(40, 2)"):
        query = (
            f"SELECT id, CASE WHEN id = 2345 THEN {wide} ELSE id END AS total, geom "
            "FROM rd_parcels ORDER BY id"
        )
        with pytest.raises(ExportFailed, match="field total of feature 2,345 holds 1.*e\\+"):
            db.export(query, out, batch_size=500)
        assert {name: (tmp_path / name).read_bytes() for name in files(tmp_path)} == before
    fits = "SELECT id, 1e20::float8 AS total, geom FROM rd_parcels WHERE id <= 3"
    db.export(fits, out)
    assert pyogrio.read_dataframe(out).total[0] == 1e20


def test_one_shape_type_single_and_multi_lines_or_polygons_together(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    series = "FROM generate_series(1, 900) g"
    buffer = "ST_Buffer(ST_MakePoint(g, 0), 1)"
    polygons = (
        f"SELECT g AS id, CASE WHEN g % 2 = 0 THEN ST_Multi({buffer}) ELSE {buffer} END "
        f"AS geom {series}"
    )
    db.export(polygons, tmp_path / "polygons.shp", batch_size=200)
    frame = pyogrio.read_dataframe(tmp_path / "polygons.shp")
    assert len(frame) == 900 and set(frame.geom_type) == {"Polygon"}  # one part: Polygon
    lines_z = (
        "SELECT g AS id, CASE WHEN g > 450 "
        "THEN ST_MakeLine(ST_MakePoint(g, 0, 5), ST_MakePoint(g, 1, 6)) "
        "ELSE ST_Multi(ST_MakeLine(ST_MakePoint(g, 0), ST_MakePoint(g, 1))) END "
        f"AS geom {series}"
    )
    db.export(lines_z, tmp_path / "lines.shp", batch_size=200)
    info = pyogrio.read_info(tmp_path / "lines.shp")
    assert (info["geometry_type"], info["features"]) == ("LineString Z", 900)
    points = (  # GDAL refuses a point in a Shapefile of multipoints: each is made one
        "SELECT g AS id, CASE WHEN g > 800 THEN ST_Collect(ST_MakePoint(g, 0, 1), "
        f"ST_MakePoint(g, 1, 2)) ELSE ST_MakePoint(g, 0, 3) END AS geom {series}"
    )
    db.export(points, tmp_path / "points.shp", batch_size=200)
    read = pyogrio.read_dataframe(tmp_path / "points.shp")
    assert pyogrio.read_info(tmp_path / "points.shp")["geometry_type"] == "MultiPoint Z"
    assert read.geometry.iloc[0].wkt == "MULTIPOINT Z ((1 0 3))" and len(read) == 900
    assert read.geometry.iloc[-1].wkt == "MULTIPOINT Z ((900 0 1), (900 1 2))"
    mixed = {
        "points_lines": "SELECT CASE WHEN g > 800 THEN ST_MakeLine(ST_MakePoint(g, 0), "
        f"ST_MakePoint(g, 1)) ELSE ST_MakePoint(g, 0) END AS geom {series}",
        "collection": "SELECT 'GEOMETRYCOLLECTION(POINT(1 1))'::geometry(GeometryCollection) "
        "AS geom",
    }
    for name, query in mixed.items():
        with pytest.raises(ExportFailed, match="a Shapefile holds one kind of shape"):
            db.export(query, tmp_path / f"{name}.shp", batch_size=200)
    apart = (  # an empty collection among points, as ST_Collect of nothing kept gives
        "SELECT g AS id, CASE WHEN g < 2 THEN ST_MakePoint(g, 0) "
        "ELSE 'GEOMETRYCOLLECTION EMPTY'::geometry END AS geom FROM generate_series(0, 3) g"
    )
    with pytest.raises(ExportFailed, match=r"ST_CollectionExtract\(geom, 1\) makes the"):
        db.export(apart, tmp_path / "apart.shp")  # the advice was for polygons
    extracted = apart.replace("CASE WHEN", "ST_CollectionExtract(CASE WHEN")
    db.export(extracted.replace(" END AS geom", " END, 1) AS geom"), tmp_path / "apart.shp")
    read = pyogrio.read_dataframe(tmp_path / "apart.shp")
    assert [g is None for g in read.geometry] == [False, False, True, True]
    for suffix in ("cpg", "dbf", "qix", "shp", "shx", "prj"):
        (tmp_path / f"apart.{suffix}").unlink(missing_ok=True)
    with pytest.raises(ConfigurationError, match="holds one geometry column.*a and b"):
        db.export("SELECT id, a, b FROM rd_two", tmp_path / "two.shp", geometry_column="a")
    assert files(tmp_path) == sorted(
        f"{stem}.{suffix}"
        for stem in ("lines", "points", "polygons")
        for suffix in ("cpg", "dbf", "qix", "shp", "shx")
    )


def test_values_null_and_empty_shapes_and_a_crs_only_when_known(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    query = (
        "SELECT 1 AS id, true AS flag, date '2024-02-29' AS day, "
        "timestamptz '2024-02-29 12:30:00+00' AS stamp, 1/3::float8 AS third, "
        "12345678901234 AS big, 'POLYGON EMPTY'::geometry AS geom "
        "UNION ALL SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL "
        "UNION ALL SELECT 3, false, NULL, NULL, NULL, NULL, ST_Buffer(ST_MakePoint(0, 0), 1)"
    )
    db.export(query, tmp_path / "values.shp")
    assert "values.prj" not in files(tmp_path)  # SRID 0: no CRS
    frame = pyogrio.read_dataframe(tmp_path / "values.shp")
    first = frame.iloc[0]
    assert (bool(first.flag), first.day.date(), first.stamp) == (
        True,
        date(2024, 2, 29),
        "2024-02-29T12:30:00Z",
    )
    assert (round(first.third, 15), int(first.big)) == (0.333333333333333, 12345678901234)
    assert frame.geometry.isna().tolist() == [True, True, False]
    assert isinstance(frame.geometry[2], shapely.Polygon)


def test_an_older_shapefiles_other_files_are_removed_and_a_failure_keeps_them(
    db: SpatialDatabase, tmp_path: Path
) -> None:
    db.export("SELECT id, geom FROM rd_parcels WHERE id <= 10", tmp_path / "old.shp")
    for stale in ("old.sbn", "old.sbx"):
        (tmp_path / stale).write_bytes(b"an ESRI index of the old rows")
    kept = files(tmp_path)
    with pytest.raises(ExportFailed):
        db.export("SELECT id, repeat('x', 300) AS t, geom FROM rd_parcels", tmp_path / "old.shp")
    assert files(tmp_path) == kept
    db.export(
        "SELECT id, geom FROM rd_metric WHERE id <= 20", tmp_path / "old.shp", spatial_index=False
    )
    assert files(tmp_path) == ["old.cpg", "old.dbf", "old.prj", "old.shp", "old.shx"]
    assert pyogrio.read_info(tmp_path / "old.shp")["features"] == 20


@pytest.fixture
def runner(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    return CliRunner()


def test_a_shapefile_of_cut_names_loads_back_with_rename(
    db: SpatialDatabase, admin: psycopg.Connection[Any], runner: CliRunner, tmp_path: Path
) -> None:
    admin.execute(
        "DROP TABLE IF EXISTS rd_long; CREATE TABLE rd_long (id int PRIMARY KEY, "
        "classification_code text, classification_name text, area_hectares float8, "
        "geom geometry(Polygon, 4326))"
    )
    admin.execute(
        "INSERT INTO rd_long SELECT id, 'C' || id, name, id * 1.5, geom FROM rd_parcels "
        "WHERE geom IS NOT NULL AND id <= 500"
    )
    out = tmp_path / "long.shp"
    renamed = db.export("SELECT * FROM rd_long", out).renamed
    assert renamed == {
        "classification_code": "classifica",
        "classification_name": "classifi_1",
        "area_hectares": "area_hecta",
    }
    admin.execute("CREATE TABLE rd_long_copy (LIKE rd_long INCLUDING ALL)")
    refused = runner.invoke(app, ["ingest", str(out), "rd_long_copy"])
    assert refused.exit_code != 0
    assert "--rename classifica=classification_code --rename classifi_1=classification_name" in (
        " ".join(str(refused.exception).split())
    )
    flags = [f"--rename={field}={column}" for column, field in renamed.items()]
    loaded = runner.invoke(app, ["ingest", str(out), "rd_long_copy", *flags])
    assert loaded.exit_code == 0, loaded.output
    same = admin.execute(
        "SELECT count(*) FROM rd_long_copy c JOIN rd_long o USING (id) WHERE "
        "(c.classification_code, c.classification_name, c.area_hectares) = "
        "(o.classification_code, o.classification_name, o.area_hectares) "
        "AND ST_Equals(c.geom, o.geom)"
    ).fetchone()
    assert same == (499,)  # id 17 has no geometry
    back = {field: column.title() for column, field in renamed.items()}  # names as given
    report = db.ingest("rd_long_new", out, create=True, rename=back)
    assert report.inserted == 499
    created = admin.execute(
        "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = 'rd_long_new'::regclass AND attnum > 0"
    ).fetchone()
    assert created == (
        ["fid", "id", "Classification_Code", "Classification_Name", "Area_Hectares", "geom"],
    )
    for bad, message in [
        ({"id": 5}, "is not valid: use a dict of a file's field names"),
        ({"id": "x", "classifica": "x"}, "gives x to several fields"),
        ({"missing": "x"}, "rename names 'missing', which .*long.shp does not have"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            db.ingest("rd_long_copy", out, rename=bad)
    with pytest.raises(ConfigurationError, match=r"gives id to a field while .* has a field"):
        db.ingest("rd_long_other", out, create=True, rename={"classifica": "id"})
    odd = runner.invoke(app, ["ingest", str(out), "rd_long_copy", "--rename", "classifica"])
    assert odd.exit_code != 0 and "is not FIELD=COLUMN" in odd.output
    admin.execute("DROP TABLE rd_long, rd_long_copy, rd_long_new, rd_long_copy_rejected")
