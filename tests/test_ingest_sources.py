"""geosession.ingest.sources: every source kind as column-wise batches; no database needed."""

from __future__ import annotations

import csv
import json
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather
import pyarrow.parquet
import pyogrio
import pytest
import shapely
from geoalchemy2 import Geometry
from sqlalchemy.orm import DeclarativeBase, Mapped, make_transient_to_detached, mapped_column

from geosession.errors import ConfigurationError
from geosession.ingest.batches import Batch
from geosession.ingest.columnar_bbox import BoxFilter
from geosession.ingest.geo_columns import schema_geometry
from geosession.ingest.sources import iter_batches, source_length

COLUMNS = ["id", "name", "val", "geom"]


def batches(source: Any, size: int | Callable[[], int] = 10, **options: Any) -> list[Batch]:
    options.setdefault("columns", COLUMNS)
    options.setdefault("geometry_column", "geom")
    return list(iter_batches(source, batch_size=size, **options))


def column(found: list[Batch], name: str) -> list[Any]:
    return [value for batch in found for value in batch.columns[name]]


def frame(n: int = 25, crs: int | None = 3857) -> gpd.GeoDataFrame:
    x = np.arange(n, dtype=float)
    return gpd.GeoDataFrame(
        {"name": [f"p{i}" for i in range(n)], "val": np.arange(n)},
        geometry=shapely.box(x, x, x + 1, x + 1),
        crs=crs,
    )


class Base(DeclarativeBase):
    pass


class Parcel(Base):
    __tablename__ = "parcel"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str | None] = mapped_column("name")
    val: Mapped[int | None]
    geom: Mapped[Any] = mapped_column(Geometry("POLYGON", srid=3857))


class Other(Base):
    __tablename__ = "other"
    id: Mapped[int] = mapped_column(primary_key=True)
    colour: Mapped[str | None]


# -- Batch -----------------------------------------------------------------------------


def test_batch_len_is_its_rows() -> None:
    assert len(Batch(11, {"a": [1, 2, 3, 4], "b": ["w", "x", "y", "z"]})) == 4
    assert len(Batch(1, {})) == 0


# -- iterables -------------------------------------------------------------------------


def test_dicts_in_batches_with_row_numbers_and_table_order() -> None:
    rows = [{"geom": f"POINT({i} 0)", "name": f"n{i}"} for i in range(25)]
    found = batches(rows)
    assert [(b.first_row, len(b)) for b in found] == [(1, 10), (11, 10), (21, 5)]
    assert list(found[0].columns) == ["name", "geom"]  # table order; absent columns left out
    assert column(found, "name") == [f"n{i}" for i in range(25)]
    assert found[2].columns["geom"][-1] == "POINT(24 0)"


def test_missing_dict_keys_become_none_and_geometries_pass_untouched() -> None:
    shape = shapely.Point(1, 2)
    geojson = {"type": "Point", "coordinates": [1, 2]}
    rows = [{"name": "a", "geom": shape}, {"val": 3, "geom": geojson}, {"name": "c"}]
    (batch,) = batches(rows)
    assert batch.columns == {
        "name": ["a", None, "c"],
        "val": [None, 3, None],
        "geom": [shape, geojson, None],
    }
    assert batch.columns["geom"][0] is shape


def test_tuples_and_lists_are_positional() -> None:
    rows: list[Any] = [(1, "a", 10, b"\x01"), [2, "b", None, "POINT(0 0)"]]
    (batch,) = batches(rows)
    assert batch.columns == {
        "id": [1, 2],
        "name": ["a", "b"],
        "val": [10, None],
        "geom": [b"\x01", "POINT(0 0)"],
    }


def test_rows_that_name_their_values_are_taken_by_name() -> None:
    """SQLAlchemy Rows, db.stream records and named tuples in another column order than
    the target's: by name, never by position."""
    from collections import namedtuple

    import sqlalchemy

    from geosession.read.decode import record_type

    engine = sqlalchemy.create_engine("sqlite://")
    with engine.connect() as connection:
        row = connection.execute(sqlalchemy.text("SELECT 'a' AS name, 1 AS id")).one()
    record = tuple.__new__(record_type(("val", "id")), (10, 2))
    named = namedtuple("named", ["geom", "id"])("POINT(0 0)", 3)
    (batch,) = batches([row, record, named])
    assert batch.columns == {
        "id": [1, 2, 3],
        "name": ["a", None, None],
        "val": [None, 10, None],
        "geom": [None, None, "POINT(0 0)"],
    }


def test_geojson_features_are_rows_of_their_properties_geometry_and_id() -> None:
    from geosession.ingest.sources import opened

    point = {"type": "Point", "coordinates": [1, 2]}
    features = [
        {"type": "Feature", "id": 5, "geometry": point, "properties": {"name": "a", "val": 1}},
        {"type": "Feature", "id": 6, "geometry": None, "properties": {"id": 9, "name": "b"}},
        {"type": "Feature", "geometry": point, "properties": None},
    ]
    collection = opened({"type": "FeatureCollection", "features": features})
    assert source_length(collection) == 3
    (batch,) = batches(collection)
    assert batch.columns == {
        "id": [5, 9, None],  # a property id is the row's own
        "name": ["a", "b", None],
        "val": [1, None, None],
        "geom": [point, None, point],
    }
    with pytest.raises(ConfigurationError, match="row 1 is a Feature, and its geometry needs"):
        batches(features, geometry_column=None)
    with pytest.raises(ConfigurationError, match="has no list of features"):
        opened({"type": "FeatureCollection"})


def test_bare_geometries_and_a_geoseries_are_rows_of_the_geometry_column() -> None:
    from geosession.ingest.sources import opened

    points = [shapely.Point(0, 0), shapely.Point(1, 1)]
    (batch,) = batches(points)
    assert batch.columns == {"geom": points}
    (mixed,) = batches([points[0], {"id": 2, "geom": points[1]}])
    assert mixed.columns == {"id": [None, 2], "geom": points}
    with pytest.raises(ConfigurationError, match="row 1 is a bare geometry, which needs"):
        batches(points, geometry_column=None)
    series = opened(gpd.GeoSeries(points, crs=3857))
    (framed,) = batches(series)
    assert framed.columns["geom"][1].equals(points[1]) and framed.crs["geom"] is not None
    with pytest.raises(ConfigurationError, match=r"pandas Series: it is one column"):
        opened(pd.Series([1, 2]))


def test_tuple_of_wrong_length_names_its_row() -> None:
    rows = [(1, "a", 1, None)] * 12 + [(1, "a")]
    produced = iter_batches(rows, columns=COLUMNS, geometry_column="geom", batch_size=10)
    assert len(next(produced)) == 10
    with pytest.raises(ConfigurationError, match=r"row 13 has 2 values.*4 columns: id, name"):
        next(produced)


def test_mapped_instances_use_column_names_and_omit_unset_attributes() -> None:
    shape = shapely.Point(0, 0)
    rows = [Parcel(label=f"p{i}", val=i, geom=shape) for i in range(12)]
    found = batches(rows)
    assert [(b.first_row, len(b)) for b in found] == [(1, 10), (11, 2)]
    assert list(found[0].columns) == ["name", "val", "geom"]  # id unset: its default applies
    assert column(found, "name") == [f"p{i}" for i in range(12)]
    assert column(found, "geom")[0] is shape


def test_loaded_mapped_instances_give_every_column() -> None:
    parcel = Parcel(id=7, label="x", val=None, geom=None)
    make_transient_to_detached(parcel)  # as if loaded from a database
    (batch,) = batches([parcel])
    assert batch.columns == {"id": [7], "name": ["x"], "val": [None], "geom": [None]}


def test_unknown_fields_in_a_row_name_the_row_and_the_target_columns() -> None:
    rows: list[Any] = [{"name": "a"}] * 14 + [{"name": "b", "colour": "red"}]
    produced = iter_batches(rows, columns=COLUMNS, geometry_column="geom", batch_size=10)
    assert len(next(produced)) == 10  # rows before the bad one still come out
    with pytest.raises(ConfigurationError) as caught:
        next(produced)
    assert "row 15" in str(caught.value) and "'colour'" in str(caught.value)
    assert "id, name, val, geom" in str(caught.value)
    with pytest.raises(ConfigurationError, match=r"row 1 .*'colour'"):
        batches([Other(colour="red")])


def test_generators_are_consumed_lazily() -> None:
    pulled: list[int] = []

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(25):
            pulled.append(i)
            yield {"val": i}
        raise RuntimeError("source broke")

    produced = iter_batches(rows(), columns=COLUMNS, geometry_column="geom", batch_size=10)
    assert pulled == []
    first = next(produced)
    assert len(pulled) == 10 and first.columns["val"] == list(range(10))
    second = next(produced)
    assert second.first_row == 11 and len(pulled) == 20
    with pytest.raises(RuntimeError, match="source broke"):
        next(produced)  # the last 5 rows never reach a batch: the source failed first


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (42, r"row 1 is a int"),
        ({}, r"row 1 has no value"),
        ("text", r"row 1 is a str"),
        ({1234567890: 2}, r"row 1 has fields that are not columns of the target: 1234567890;"),
    ],
)
def test_bad_rows_are_errors(row: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        batches([row])


@pytest.mark.parametrize("source", [b"bytes", {"name": "a"}, 42, None])
def test_unsupported_sources_are_errors(source: Any) -> None:
    with pytest.raises(ConfigurationError, match="cannot ingest a"):
        iter_batches(source, columns=COLUMNS, geometry_column="geom")


def test_a_statement_as_source_is_pointed_to_db_stream() -> None:
    import sqlalchemy

    with pytest.raises(ConfigurationError, match=r"a Select: .*pass db.stream\(statement\)"):
        iter_batches(
            sqlalchemy.select(sqlalchemy.literal(1)), columns=COLUMNS, geometry_column="geom"
        )


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ConfigurationError, match="batch_size"):
        iter_batches([], columns=COLUMNS, geometry_column="geom", batch_size=0)
    with pytest.raises(ConfigurationError, match="columns"):
        iter_batches([], columns=[], geometry_column=None)


# -- DataFrames ------------------------------------------------------------------------


def test_geodataframe_in_slices_with_srid_from_crs() -> None:
    gdf = frame(25)
    found = batches(gdf)
    assert [(b.first_row, len(b)) for b in found] == [(1, 10), (11, 10), (21, 5)]
    assert list(found[0].columns) == ["name", "val", "geom"]  # "geometry" lands in geom
    assert column(found, "val") == list(range(25)) and type(column(found, "val")[0]) is int
    geoms = column(found, "geom")
    assert all(b.crs == {"geom": 3857} for b in found)  # for geometries that carry none
    assert shapely.equals(geoms[24], shapely.box(24, 24, 25, 25))


def test_geodataframe_without_epsg_keeps_srid_zero_and_missing_values_become_none() -> None:
    gdf = frame(3, crs=None)
    gdf["val"] = [1.5, np.nan, 3.0]
    gdf.loc[1, "geometry"] = None
    gdf = gdf.rename_geometry("geom")  # a target column: kept as it is
    (batch,) = batches(gdf)
    assert batch.columns["val"] == [1.5, None, 3.0]
    assert batch.columns["geom"][1] is None
    assert shapely.get_srid(batch.columns["geom"][0]) == 0 and batch.crs == {}


def test_plain_dataframe() -> None:
    df = pd.DataFrame({"name": ["a", None], "geom": ["POINT(0 0)", "POINT(1 1)"]})
    (batch,) = batches(df)
    assert batch.columns == {"name": ["a", None], "geom": ["POINT(0 0)", "POINT(1 1)"]}


def test_dataframe_values_are_python_values_with_or_without_missing_ones() -> None:
    df = pd.DataFrame(
        {
            "name": pd.array(["a", pd.NA], dtype="string"),
            "val": pd.array([7, pd.NA], dtype="Int64"),
            "geom": [1.5, 2.5],  # any column: only the values' types matter here
        }
    )
    (batch,) = batches(df)
    assert batch.columns == {"name": ["a", None], "val": [7, None], "geom": [1.5, 2.5]}
    assert type(batch.columns["val"][0]) is int and type(batch.columns["geom"][0]) is float


def test_dataframe_fields_are_checked_before_iteration() -> None:
    gdf = frame(3)
    gdf["colour"] = "red"
    with pytest.raises(ConfigurationError, match=r"DataFrame .*'colour'.*id, name, val, geom"):
        iter_batches(gdf, columns=COLUMNS, geometry_column="geom")
    with pytest.raises(ConfigurationError, match=r"'geometry'"):
        iter_batches(frame(3), columns=["name", "val", "geom"], geometry_column=None)


def test_repeated_labels_and_an_index_named_as_a_column_are_refused_with_the_fix() -> None:
    """A repeated label raised pandas' AttributeError ('DataFrame' object has no attribute
    'dtype'); an index named id was left out unseen, as to_postgis leaves an index out."""
    twice = pd.concat([frame(3), frame(3)[["name"]]], axis=1)
    with pytest.raises(ConfigurationError, match=r"more than one column named 'name'"):
        batches(twice)
    indexed = frame(3).set_index("name")
    with pytest.raises(ConfigurationError, match=r"index is named 'name', a column of the"):
        batches(indexed)
    with pytest.raises(ConfigurationError, match=r"index is named 'NAME'.*reset_index\(drop"):
        batches(frame(3).rename(columns={"name": "NAME"}).set_index(["NAME", "val"]))
    assert column(batches(indexed.reset_index()), "name") == ["p0", "p1", "p2"]
    assert "name" not in batches(indexed.reset_index(drop=True))[0].columns
    assert len(batches(frame(3).rename_axis("row"))[0]) == 3  # not a column: no matter


# -- vector files ----------------------------------------------------------------------

FORMATS = {"gpkg": {}, "shp": {}, "geojson": {}, "fgb": {"SPATIAL_INDEX": "NO"}}


@pytest.mark.parametrize("suffix", FORMATS)
def test_vector_file_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"parcels.{suffix}"
    gdf = frame(25)
    pyogrio.write_dataframe(gdf, path, **FORMATS[suffix])
    found = batches(path)
    assert [(b.first_row, len(b)) for b in found] == [(1, 10), (11, 10), (21, 5)]
    assert list(found[0].columns) == ["name", "val", "geom"]
    assert column(found, "name") == list(gdf["name"])
    assert column(found, "val") == list(range(25))
    geoms = shapely.from_wkb(column(found, "geom"))  # the WKB the driver read
    assert all(b.crs == {"geom": 3857} for b in found)
    assert all(isinstance(g, shapely.Polygon) for g in geoms)
    assert all(shapely.equals(geoms, list(gdf.geometry)))
    counted = None if suffix == "geojson" else 25  # counting a GeoJSON file reads it whole
    assert source_length(path) == counted and source_length(str(path)) == counted


def test_file_geometry_named_as_a_target_column_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "parcels.gpkg"
    gdf = frame(2, crs=4326)
    gdf.loc[1, "name"] = None
    pyogrio.write_dataframe(gdf, path, geometry_name="shape")
    (batch,) = batches(str(path), columns=["name", "val", "shape"], geometry_column=None)
    assert batch.columns["name"] == ["p0", None]
    assert batch.crs == {"shape": 4326}
    assert all(isinstance(g, bytes) for g in batch.columns["shape"])


def test_file_fields_are_checked_before_the_first_batch(tmp_path: Path) -> None:
    path = tmp_path / "parcels.gpkg"
    pyogrio.write_dataframe(frame(3), path)
    produced = iter_batches(path, columns=["id", "geom"], geometry_column="geom")
    message = r"parcels.gpkg has fields .*'name', 'val'.*Add those columns to the table"
    with pytest.raises(ConfigurationError, match=message):
        next(produced)


def test_a_file_of_several_layers_is_read_by_the_layer_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "two.gpkg"
    pyogrio.write_dataframe(frame(3), path, layer="first")
    pyogrio.write_dataframe(frame(5), path, layer="second")
    with pytest.raises(
        ConfigurationError, match=r"has 2 layers with features \(first: 3, second: 5\).*--layer"
    ):
        batches(path)
    assert [len(b) for b in batches(path, layer="second")] == [5]
    assert source_length(path, "second") == 5 and source_length(path) is None
    filled = tmp_path / "one_filled.gpkg"  # an empty layer beside the data does not count
    pyogrio.write_dataframe(frame(0), filled, layer="empty", geometry_type="Polygon")
    pyogrio.write_dataframe(frame(4), filled, layer="data")
    assert [len(b) for b in batches(filled)] == [4]
    with pytest.raises(ConfigurationError, match=r"no layer 'third'; its layers: first, second"):
        batches(path, layer="third")
    csv_path = write_csv(tmp_path / "rows.csv", [["name", "wkt"], ["a", "POINT(1 1)"]])
    with pytest.raises(ConfigurationError, match=r"layer='first' names a layer .* not one"):
        batches(csv_path, layer="first")
    with pytest.raises(ConfigurationError, match=r"layer='first' .* the source \(a list\)"):
        batches([{"name": "a"}], layer="first")


def test_a_table_without_geometries_beside_the_layer_does_not_count(tmp_path: Path) -> None:
    path = tmp_path / "styled.gpkg"
    pyogrio.write_dataframe(frame(4), path, layer="parcels")
    pyogrio.write_dataframe(pd.DataFrame({"stylename": ["qgis"]}), path, layer="layer_styles")
    assert [len(b) for b in batches(path)] == [4] and source_length(path) == 4


def test_missing_unsupported_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing.gpkg: no such file"):
        iter_batches(tmp_path / "missing.gpkg", columns=COLUMNS, geometry_column="geom")
    (tmp_path / "data.docx").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"data.docx: unsupported.*GeoPackage.*\.csv"):
        iter_batches(tmp_path / "data.docx", columns=COLUMNS, geometry_column="geom")
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"not a geopackage")
    with pytest.raises(ConfigurationError, match=r"cannot read .*garbage.gpkg"):
        batches(garbage)
    assert source_length(garbage) is None and source_length(tmp_path / "missing.fgb") is None
    not_json = tmp_path / "garbage.geojson"  # a file of one layer: opened, not listed
    not_json.write_bytes(b"not json")
    with pytest.raises(ConfigurationError, match=r"cannot read .*garbage.geojson"):
        batches(not_json)


def test_geoparquet_is_read_in_batches_with_its_crs(tmp_path: Path) -> None:
    path = tmp_path / "parcels.parquet"
    gdf = frame(25).set_index(pd.Index(range(100, 125)))  # an index pandas stores as a column
    gdf.to_parquet(path)
    found = batches(path)
    assert [(b.first_row, len(b)) for b in found] == [(1, 10), (11, 10), (21, 5)]
    assert list(found[0].columns) == ["name", "val", "geom"]
    assert column(found, "val") == list(range(25))
    assert all(b.crs == {"geom": 3857} for b in found)
    assert all(shapely.equals(shapely.from_wkb(column(found, "geom")), list(gdf.geometry)))
    assert source_length(path) == 25
    frame(3, crs=None).to_parquet(tmp_path / "unknown.parquet")  # a null CRS: unknown
    assert batches(tmp_path / "unknown.parquet")[0].crs == {}
    frame(3).to_parquet(tmp_path / "covered.parquet", write_covering_bbox=True)
    assert list(batches(tmp_path / "covered.parquet")[0].columns) == ["name", "val", "geom"]


def test_geoparquet_other_encodings_plain_parquet_and_garbage(tmp_path: Path) -> None:
    native = tmp_path / "native.parquet"  # GeoParquet 1.1's polygon encoding
    frame(3).to_parquet(native, geometry_encoding="geoarrow")
    (read,) = batches(native)
    assert read.crs == {"geom": 3857} and list(read.columns["geom"]) == list(frame(3).geometry)
    other = pa.parquet.read_table(native)  # an encoding GeoParquet does not have
    geo = json.loads(other.schema.metadata[b"geo"])
    geo["columns"]["geometry"]["encoding"] = "geojson"
    pa.parquet.write_table(
        other.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), native
    )
    with pytest.raises(ConfigurationError, match=r"in the geojson encoding, which geosession"):
        batches(native)
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"name": ["a"], "geom": [shapely.Point(1, 2).wkb]}).to_parquet(plain)
    (batch,) = batches(plain)
    assert batch.columns == {"name": ["a"], "geom": [shapely.Point(1, 2).wkb]}
    assert batch.crs == {}
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not really")
    with pytest.raises(ConfigurationError, match=r"cannot read .*garbage.parquet as Parquet"):
        batches(garbage)


def geoarrow_table(extension: str = "geoarrow.wkb", crs: Any = "EPSG:3857") -> pa.Table:
    """25 rows whose geometry field carries a GeoArrow extension (unregistered: in the
    field's metadata, as pyogrio and DuckDB write it)."""
    gdf = frame(25)
    metadata = {b"ARROW:extension:name": extension.encode()}
    if crs is not None:
        metadata[b"ARROW:extension:metadata"] = json.dumps({"crs": crs}).encode()
    wkb = pa.field("shape", pa.binary(), metadata=metadata)
    return pa.Table.from_arrays(
        [pa.array(gdf["name"]), pa.array(gdf["val"]), pa.array(shapely.to_wkb(gdf.geometry))],
        schema=pa.schema([pa.field("name", pa.string()), pa.field("val", pa.int64()), wkb]),
    )


def test_arrow_data_is_read_a_record_batch_at_a_time_with_its_geoarrow_crs() -> None:
    table = geoarrow_table()
    for source in (table, table.to_batches()[0], table.to_reader(max_chunksize=1)):
        found = batches(source)  # record batches cut, small ones joined first
        assert [(b.first_row, len(b)) for b in found] == [(1, 10), (11, 10), (21, 5)]
        assert list(found[0].columns) == ["name", "val", "geom"]  # shape: the geometry
        assert column(found, "val") == list(range(25)) and found[0].crs == {"geom": 3857}
        assert shapely.equals(shapely.from_wkb(column(found, "geom")), frame(25).geometry).all()
    assert source_length(table) == 25 and source_length(table.to_reader()) is None
    projjson = {"id": {"authority": "EPSG", "code": 2154}, "type": "ProjectedCRS"}
    assert batches(geoarrow_table(crs=projjson))[0].crs == {"geom": 2154}
    assert batches(geoarrow_table(crs=None))[0].crs == {}  # unknown: the column's SRID
    converted = frame(25).to_arrow()  # geopandas' own Arrow table (a C stream)
    assert batches(converted)[0].crs == {"geom": 3857}


def test_a_parquet_file_without_geo_metadata_has_its_geoarrow_fields_crs(tmp_path: Path) -> None:
    """pyarrow writes a Table's GeoArrow field metadata into the file (no GeoParquet
    ``geo``): its CRS counts, instead of the column's SRID being assumed."""
    path = tmp_path / "geoarrow.parquet"
    pa.parquet.write_table(geoarrow_table(crs="EPSG:32633"), path)
    found = batches(path)
    assert found[0].crs == {"geom": 32633} and len(column(found, "geom")) == 25


def test_arrow_data_in_geoarrows_native_encodings_is_read_with_its_crs() -> None:
    """Interleaved (x, y pairs) or separated (an array per dimension), as geopandas'
    to_arrow(geometry_encoding="geoarrow") writes them, nulls kept, in cut batches."""
    parts = frame(25)
    parts.loc[7, "geometry"] = None
    for interleaved in (True, False):
        native = parts.to_arrow(geometry_encoding="geoarrow", interleaved=interleaved)
        found = batches(pa.table(native).to_reader(max_chunksize=6))
        assert [(b.first_row, len(b)) for b in found] == [(1, 10), (11, 10), (21, 5)]
        assert found[0].crs == {"geom": 3857}
        assert column(found, "geom") == [None if g is None else g for g in parts.geometry]


def test_arrow_data_in_other_geoarrow_types_or_with_unknown_fields_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"in the geoarrow.box encoding, which"):
        batches(geoarrow_table("geoarrow.box"))
    xym = pa.struct([("x", pa.float64()), ("y", pa.float64()), ("m", pa.float64())])
    measured = pa.field("geom", xym, metadata={b"ARROW:extension:name": b"geoarrow.point"})
    points = pa.array([{"x": 1.0, "y": 2.0, "m": 3.0}], xym)
    with pytest.raises(ConfigurationError, match=r"column geom has M coordinates \(xym\)"):
        batches(pa.Table.from_arrays([points], schema=pa.schema([measured])))
    extra = pa.table({"name": ["a"], "colour": ["red"]})
    with pytest.raises(ConfigurationError, match=r"the Table has fields that are not columns"):
        batches(extra)
    wkt = pa.table({"name": ["a"], "geom": ["SRID=3857;POINT(1 2)"]})  # by name: WKT text
    assert batches(wkt)[0].columns == {"name": ["a"], "geom": ["SRID=3857;POINT(1 2)"]}


def sources_of_25_rows(tmp_path: Path) -> dict[str, Any]:
    gpkg = tmp_path / "parcels.gpkg"
    pyogrio.write_dataframe(frame(25), gpkg)
    lines = [["name", "val", "WKT"]] + [[f"n{i}", str(i), f"POINT ({i} 1)"] for i in range(25)]
    return {
        "generator": ({"val": i} for i in range(25)),
        "dataframe": frame(25),
        "gpkg": gpkg,
        "csv": write_csv(tmp_path / "points.csv", lines),
    }


@pytest.mark.parametrize("kind", ["generator", "dataframe", "gpkg", "csv"])
def test_batch_size_may_change_between_batches(tmp_path: Path, kind: str) -> None:
    """The pipeline shrinks batches once it knows how large the rows are."""
    sizes = iter([3, 5])
    found = batches(sources_of_25_rows(tmp_path)[kind], size=lambda: next(sizes, 100))
    assert [(b.first_row, len(b)) for b in found] == [(1, 3), (4, 5), (9, 17)]


# -- CSV -------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_csv_with_wkt_in_batches(tmp_path: Path) -> None:
    rows = [["name", "val", "WKT"]] + [[f"n{i}", str(i), f"POINT ({i} 1)"] for i in range(25)]
    path = write_csv(tmp_path / "points.csv", rows)
    found = batches(path)
    assert [(b.first_row, len(b)) for b in found] == [(1, 10), (11, 10), (21, 5)]
    assert list(found[0].columns) == ["name", "val", "geom"]
    assert column(found, "val")[:2] == ["0", "1"]  # strings: the writer casts by column type
    assert column(found, "geom")[24] == "POINT (24 1)"
    assert source_length(path) is None


def test_csv_empty_values_blank_lines_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text('geom,name,val\nPOINT (0 0),"two\nlines",\n\n,c,3\n', encoding="utf-8")
    (batch,) = batches(path)
    assert batch.columns == {
        "name": ["two\nlines", "c"],
        "val": [None, "3"],
        "geom": ["POINT (0 0)", None],
    }


def test_csv_explicit_wkt_column_and_its_errors(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [["name", "shape"], ["a", "POINT (0 0)"]])
    (batch,) = batches(path, wkt_column="shape")
    assert batch.columns == {"name": ["a"], "geom": ["POINT (0 0)"]}
    with pytest.raises(ConfigurationError, match=r"p.csv has no column 'wkt_text'"):
        batches(path, wkt_column="wkt_text")
    (found,) = batches(path)  # no known WKT name: the one field of WKT values
    assert found.columns == batch.columns
    words = write_csv(tmp_path / "w.csv", [["name", "shape"], ["a", "round"]])
    with pytest.raises(ConfigurationError, match=r"w.csv has fields .*'shape'"):
        iter_batches(words, columns=COLUMNS, geometry_column="geom")  # no WKT there


def test_csv_row_of_wrong_width_names_its_row(tmp_path: Path) -> None:
    rows = [["name", "wkt"]] + [["a", "POINT (0 0)"]] * 11 + [["b"]]
    produced = iter_batches(
        write_csv(tmp_path / "p.csv", rows), columns=COLUMNS, geometry_column="geom", batch_size=10
    )
    assert len(next(produced)) == 10
    with pytest.raises(ConfigurationError, match=r"row 12 has 1 fields; the header has 2"):
        next(produced)


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_separator_is_read_from_the_header(tmp_path: Path, delimiter: str) -> None:
    """A spreadsheet's semicolons (WKT has commas of its own) and tabs are separators."""
    polygon = "POLYGON ((0 0, 1 0, 1 1, 0 0))"
    path = tmp_path / "p.csv"
    path.write_text(
        delimiter.join(["name", "val", "wkt"]) + "\n" + f"a{delimiter}1{delimiter}{polygon}\n"
    )
    (batch,) = batches(path)
    assert batch.columns == {"name": ["a"], "val": ["1"], "geom": [polygon]}


def test_csv_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"name,wkt\na,POINT (0 0)\nZ\xfcrich,POINT (1 1)\n")
    with pytest.raises(
        ConfigurationError, match=r"latin.csv is not UTF-8 text: byte 0xfc on line 3"
    ):
        batches(path)
    path.write_bytes(b"n\xe4me,wkt\n")
    with pytest.raises(ConfigurationError, match=r"byte 0xe4 on line 1 .*--encoding latin1"):
        batches(path)


def test_csv_of_a_spreadsheets_unicode_text_is_read_as_utf16(tmp_path: Path) -> None:
    """Excel's "Unicode text" is UTF-16 with a byte order mark, separated by tabs."""
    path = tmp_path / "unicode.csv"
    path.write_bytes("name\twkt\nŁódź\tPOINT (19.4 51.7)\n".encode("utf-16"))
    (batch,) = batches(path)
    assert batch.columns == {"name": ["Łódź"], "geom": ["POINT (19.4 51.7)"]}


def test_csv_in_the_encoding_named(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"name,wkt\nZ\xfcrich \x80,POINT (1 1)\n")
    (batch,) = batches(path, encoding="cp1252")
    assert batch.columns["name"] == ["Zürich €"]
    path.write_bytes(b"name,wkt\n\x81,POINT (1 1)\n")  # 0x81 has no character in cp1252
    with pytest.raises(ConfigurationError, match=r"not cp1252 text: byte 0x81 on line 2"):
        batches(path, encoding="cp1252")


def _shapefile(tmp_path: Path, name: str, values: dict[str, list[str]], encoding: str) -> Path:
    """A Shapefile of points written in ``encoding``, without the .cpg file that names it."""
    path = tmp_path / f"{name}.shp"
    points = shapely.points(np.arange(len(next(iter(values.values())))), 0)
    pyogrio.write_dataframe(
        gpd.GeoDataFrame(values, geometry=points, crs=4326), path, encoding=encoding
    )
    path.with_suffix(".cpg").unlink()
    return path


def test_shapefile_text_without_a_cpg_file_is_read_as_utf8_or_as_latin1(
    tmp_path: Path,
) -> None:
    """pyogrio says ISO-8859-1 for both files and GDAL hands their bytes over as stored:
    values are UTF-8 where they are valid UTF-8, else ISO-8859-1."""
    names = ["Zürich", "Besançon", "plain"]
    latin = _shapefile(tmp_path, "latin", {"name": names}, "latin1")
    utf8 = _shapefile(tmp_path, "utf8", {"name": [*names, "Łódź"]}, "utf-8")
    assert (
        pyogrio.read_info(latin)["encoding"] == pyogrio.read_info(utf8)["encoding"] == "ISO-8859-1"
    )
    columns = {"columns": ["name", "geom"]}
    assert column(batches(latin, **columns), "name") == names
    assert column(batches(utf8, **columns), "name") == [*names, "Łódź"]
    renamed = _shapefile(tmp_path, "renamed", {"straße": names}, "latin1")  # not UTF-8 names
    (batch,) = batches(renamed, columns=["straße", "geom"])
    assert batch.columns["straße"] == names
    (batch,) = batches(latin, encoding="cp1252", **columns)  # named: GDAL converts
    assert batch.columns["name"] == names


def test_encoding_is_refused_where_it_cannot_apply(tmp_path: Path) -> None:
    path = tmp_path / "parcels.gpkg"
    pyogrio.write_dataframe(frame(2), path)
    with pytest.raises(ConfigurationError, match=r"applies to Shapefiles and CSV files.*gpkg"):
        batches(path, encoding="latin1")
    assert len(column(batches(path, encoding="utf-8"), "name")) == 2
    with pytest.raises(ConfigurationError, match=r"'klingon' is not a known text encoding"):
        batches(path, encoding="klingon")
    with pytest.raises(ConfigurationError, match=r"encoding='latin1' .* the source \(a list\)"):
        batches([{"name": "a"}], encoding="latin1")


def test_fields_match_columns_in_any_case_when_only_one_column_has_the_name(
    tmp_path: Path,
) -> None:
    """A Shapefile's upper-case NAME and VAL land in name and val (ogr2ogr lowercases them
    too); a field whose name two columns share in different cases is not guessed."""
    path = tmp_path / "upper.shp"
    pyogrio.write_dataframe(frame(2).rename(columns={"name": "NAME", "val": "Val"}), path)
    (batch,) = batches(path)
    assert batch.columns["name"] == ["p0", "p1"] and batch.columns["val"] == [0, 1]
    csv_path = write_csv(tmp_path / "upper.csv", [["ID", "Name", "WKT"], ["1", "a", "POINT (0 0)"]])
    assert batches(csv_path)[0].columns == {"id": ["1"], "name": ["a"], "geom": ["POINT (0 0)"]}
    with pytest.raises(ConfigurationError, match=r"fields that are not columns .*'NAME'"):
        iter_batches(
            frame(1).rename(columns={"name": "NAME"}),
            columns=["name", "Name", "val", "geom"],
            geometry_column="geom",
        )


def test_sequences_have_a_length_generators_do_not() -> None:
    assert source_length([{"name": "a"}] * 3) == 3
    assert source_length({"name": "a"} for _ in range(3)) is None
    assert source_length(frame(4)) == 4


def _zipped(archive: Path, files: dict[str, Path]) -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, path in files.items():
            zipped.write(path, name)
    return archive


def test_zipped_vector_files_are_read_in_place_at_the_top_or_in_a_folder(tmp_path: Path) -> None:
    """Downloads keep Shapefiles at the top of the archive or in a folder beside a README;
    GDAL alone finds only the first."""
    shapefile = tmp_path / "parcels.shp"
    pyogrio.write_dataframe(frame(12), shapefile)
    parts = sorted(tmp_path.glob("parcels.*"))
    top = _zipped(tmp_path / "top.zip", {p.name: p for p in parts})
    (tmp_path / "README.txt").write_text("parcels of the county")
    readme = {"README.txt": tmp_path / "README.txt", "meta/about.json": tmp_path / "README.txt"}
    folder = _zipped(tmp_path / "folder.zip", {**readme, **{f"data/{p.name}": p for p in parts}})
    for archive in (top, folder):
        assert column(batches(archive), "name") == list(frame(12)["name"])
        assert all(b.crs == {"geom": 3857} for b in batches(archive))
        assert source_length(archive) == 12
    package = tmp_path / "parcels.gpkg"
    pyogrio.write_dataframe(frame(3), package)
    nested = _zipped(tmp_path / "package.zip", {"deep/down/parcels.gpkg": package, **readme})
    assert len(column(batches(nested), "name")) == 3


def _tarred(archive: Path, files: dict[str, Path], mode: str = "w") -> Path:
    with tarfile.open(archive, mode) as tar:
        for name, path in files.items():
            tar.add(path, name)
    return archive


def test_tar_archives_are_read_in_place_as_zips_are(tmp_path: Path) -> None:
    """Shapefiles in a folder of a .tar or .tgz download were "unsupported file type";
    GDAL reads them in place (/vsitar/). GeoJSON's own ids are read from the member too,
    and a damaged archive is refused naming its kind."""
    pyogrio.write_dataframe(frame(12), tmp_path / "parcels.shp")
    parts = sorted(tmp_path.glob("parcels.*"))
    (tmp_path / "README.txt").write_text("parcels of the county")
    members = {"README.txt": tmp_path / "README.txt", **{f"data/{p.name}": p for p in parts}}
    plain = _tarred(tmp_path / "download.tar", members)
    packed = _tarred(tmp_path / "download.tgz", members, "w:gz")
    top = _tarred(tmp_path / "top.tar", {p.name: p for p in parts})
    for archive in (plain, packed, top):
        assert column(batches(archive), "name") == list(frame(12)["name"]), archive
        assert source_length(archive) == 12
    features = tmp_path / "ids.geojson"
    features.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "id": 7, '
        '"properties": {"name": "a"}, "geometry": {"type": "Point", "coordinates": [1, 2]}}]}'
    )
    (batch,) = batches(_tarred(tmp_path / "ids.tar", {"in/ids.geojson": features}))
    assert batch.columns["id"] == [7]
    (tmp_path / "broken.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(ConfigurationError, match=r"cannot read .*broken.tar as a tar archive"):
        batches(tmp_path / "broken.tar")


def test_a_folder_of_shapefiles_is_read_as_its_zip_would_be(tmp_path: Path) -> None:
    """An unzipped download: the folder is the dataset, each Shapefile a layer, chosen
    when several have features; a Shapefile in it without its .dbf is refused."""
    folder = tmp_path / "download"
    folder.mkdir()
    pyogrio.write_dataframe(frame(12), folder / "parcels.shp")
    (folder / "README.txt").write_text("parcels of the county")
    assert column(batches(folder), "name") == list(frame(12)["name"])
    assert all(b.crs == {"geom": 3857} for b in batches(folder))
    pyogrio.write_dataframe(frame(3), folder / "roads.shp")
    with pytest.raises(ConfigurationError, match=r"2 layers with features"):
        batches(folder)
    assert len(column(batches(folder, layer="roads"), "name")) == 3
    (folder / "roads.dbf").unlink()
    with pytest.raises(ConfigurationError, match=r"roads.shp in .*download lacks its .dbf"):
        batches(folder, layer="parcels")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigurationError, match="unsupported file type"):
        batches(empty)


def test_archives_without_data_or_with_data_gdal_cannot_open_as_one(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("nothing here")
    empty = _zipped(tmp_path / "empty.zip", {"README.txt": tmp_path / "README.txt"})
    with pytest.raises(ConfigurationError, match=r"empty.zip holds no GeoPackage, Shapefile"):
        batches(empty)
    package = tmp_path / "parcels.gpkg"
    pyogrio.write_dataframe(frame(3), package)
    mixed = _zipped(tmp_path / "mixed.zip", {"a/one.gpkg": package, "b/two.gpkg": package})
    with pytest.raises(ConfigurationError, match=r"several vector files \(a/one.gpkg, b/two"):
        batches(mixed)
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(ConfigurationError, match=r"cannot read .*broken.zip as a zip archive"):
        batches(tmp_path / "broken.zip")
    with pytest.raises(ConfigurationError, match=r"package.zip holds none, and its text is UTF-8"):
        batches(_zipped(tmp_path / "package.zip", {"parcels.gpkg": package}), encoding="latin1")


def test_a_geodataframes_geometry_must_name_one_of_several_geometry_columns() -> None:
    two = frame(2, crs=4326)
    two["m"] = two.geometry.to_crs(3857)
    with pytest.raises(ConfigurationError, match=r"'geometry' is not .* frame.rename_geometry"):
        batches(two, columns=["name", "val", "geom", "m"], geometry_column=None)
    (batch,) = batches(
        two.rename_geometry("geom"), columns=["name", "val", "geom", "m"], geometry_column=None
    )
    assert batch.crs == {"geom": 4326, "m": 3857}  # each column's own CRS


@pytest.mark.parametrize("suffix", ["gpkg", "fgb", "shp"])
def test_a_vector_files_features_filtered_by_where_and_bbox(tmp_path: Path, suffix: str) -> None:
    """GDAL's filters: an OGR SQL condition on the fields, a box in the layer's CRS (boxes
    (i, i)-(i+1, i+1) of frame(): the box (10, 10)-(12.5, 12.5) meets boxes 9 to 12)."""
    path = tmp_path / f"parcels.{suffix}"
    pyogrio.write_dataframe(frame(25), path)
    # sorted: a FlatGeobuf with its index stores its features in the index's order
    assert sorted(column(batches(path, where="val >= 20"), "val")) == [20, 21, 22, 23, 24]
    assert sorted(column(batches(path, bbox=(10, 10, 12.5, 12.5)), "val")) == [9, 10, 11, 12]
    both = batches(path, where="val <> 10", bbox=(10, 10, 12.5, 12.5), size=2)
    assert [(b.first_row, len(b)) for b in both] == [(1, 2), (3, 1)]  # rows counted as kept
    assert sorted(column(both, "val")) == [9, 11, 12]
    with pytest.raises(ConfigurationError, match=r"where='nosuch = 1' cannot filter .*OGR SQL"):
        batches(path, where="nosuch = 1")


@pytest.mark.parametrize("suffix", ["gpkg", "fgb", "geojson", "shp"])
def test_a_bbox_crossing_the_antimeridian_filters_both_sides(tmp_path: Path, suffix: str) -> None:
    """minx > maxx: RFC 7946's box over the antimeridian, which GDAL's rectangle cannot
    hold; in a projected layer it is corners in the wrong order, and refused."""
    longitudes = [178.0, -179.0, 0.0, 170.0, -175.0]
    pacific = gpd.GeoDataFrame(
        {"val": range(5)}, geometry=shapely.points(longitudes, -17.0), crs=4326
    )
    path = tmp_path / f"pacific.{suffix}"
    pyogrio.write_dataframe(pacific, path)
    assert sorted(column(batches(path, bbox=(177, -20, -178, -10)), "val")) == [0, 1]
    projected = tmp_path / f"projected.{suffix}"
    pyogrio.write_dataframe(pacific.to_crs(3857), projected)
    with pytest.raises(ConfigurationError, match=r"minx > maxx.*projected.*EPSG:3857"):
        batches(projected, bbox=(177, -20, -178, -10))


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("covering.parquet", {"write_covering_bbox": True, "row_group_size": 100}),
        ("plain.parquet", {"row_group_size": 100}),
        ("native.parquet", {"geometry_encoding": "geoarrow"}),
        ("frame.arrow", {}),
        ("extension.arrow", {"geometry_encoding": "geoarrow"}),  # no geo metadata
    ],
)
def test_a_bbox_filters_geoparquet_and_arrow_files(
    tmp_path: Path, name: str, write: dict[str, Any]
) -> None:
    """pyarrow reads them, not GDAL: the rows whose geometry's box meets the bbox are kept
    (either side of the antimeridian too), a row without a geometry is not; a covering
    bbox column's statistics skip the row groups elsewhere."""
    longitudes = np.linspace(-180.0, 180.0, 1_000)
    points = gpd.GeoDataFrame(
        {"name": [f"p{i}" for i in range(1_001)], "val": np.arange(1_001)},
        geometry=[*shapely.points(longitudes, 0.0), None],
        crs=4326,
    ).rename_geometry("geom")
    path = tmp_path / name
    if name == "extension.arrow":  # GeoArrow's point extension alone says the encoding
        table = pa.table(points.to_arrow(**write)).replace_schema_metadata(None)
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table)
    elif name.endswith(".arrow"):
        points.to_feather(path)
    else:
        points.to_parquet(path, **write)
    values = column(batches(path, bbox=(170, -1, -170, 1)), "val")
    expected = [i for i, x in enumerate(longitudes) if x >= 170 or x <= -170]
    assert sorted(values) == expected and len(expected) == 56
    assert sorted(column(batches(path, bbox=(0, -1, 1, 1)), "val")) == [500, 501, 502]
    found = batches(path, bbox=(0, -1, 1, 1), size=2)
    assert [(b.first_row, len(b)) for b in found] == [(1, 2), (3, 1)]  # rows counted as kept
    if "covering" in name:
        handle = pyarrow.parquet.ParquetFile(path)
        geo = schema_geometry(handle.schema_arrow, path)
        box = BoxFilter.of((0, -1, 1, 1), "geom", geo, path)
        groups = box.row_groups(handle.metadata)  # rows 500-599; the NULL of no statistics
        assert groups == [5, 10]
    projected = tmp_path / f"projected{path.suffix}"
    metres = points.to_crs(3857)
    metres.to_feather(projected) if name.endswith(".arrow") else metres.to_parquet(projected)
    with pytest.raises(ConfigurationError, match=r"minx > maxx.*projected CRS \(3857\)"):
        batches(projected, bbox=(170, -1, -170, 1))


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_a_bbox_filters_by_a_plain_field_that_lands_in_the_geometry_column(
    tmp_path: Path, suffix: str
) -> None:
    """A plain Parquet or Arrow file's WKT field named as the target's geometry column
    (footprint), or found by its values (outline), was "no geometry column" to bbox=."""
    wkt = [f"POINT({x} 0)" for x in range(-5, 5)]
    for field, columns in (("footprint", ["val", "footprint"]), ("outline", COLUMNS)):
        path = tmp_path / f"{field}{suffix}"
        table = pa.table({"val": list(range(10)), field: wkt})
        if suffix == ".parquet":
            pyarrow.parquet.write_table(table, path)
        else:
            pyarrow.feather.write_feather(table, path)
        geometry = columns[-1]
        kept = batches(path, bbox=(0, -1, 1, 1), columns=columns, geometry_column=geometry)
        assert column(kept, "val") == [5, 6], field


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_a_bbox_filters_parquet_and_arrow_files_of_coordinates(tmp_path: Path, suffix: str) -> None:
    """A Parquet file of longitude and latitude columns (trips, sensor readings) was
    refused: "no geometry column". The coordinates are filtered as points, their row
    groups skipped by their statistics where those are numbers."""
    longitudes = np.linspace(-180.0, 180.0, 1_000)
    table = pa.table(
        {"val": np.arange(1_001), "lon": [*longitudes, None], "lat": [*([0.0] * 1_000), None]}
    )
    path = tmp_path / f"coordinates{suffix}"
    if suffix == ".parquet":
        pyarrow.parquet.write_table(table, path, row_group_size=100)
    else:
        pyarrow.feather.write_feather(table, path)
    values = column(batches(path, bbox=(170, -1, -170, 1)), "val")
    assert sorted(values) == [i for i, x in enumerate(longitudes) if x >= 170 or x <= -170]
    assert sorted(column(batches(path, bbox=(0, -1, 1, 1)), "val")) == [500, 501, 502]
    if suffix == ".parquet":
        metadata = pyarrow.parquet.ParquetFile(path).metadata
        assert BoxFilter.of_points((0, -1, 1, 1), "lon", "lat").row_groups(metadata) == [5, 10]
        texts = tmp_path / "texts.parquet"  # text's statistics are in the order of text
        pyarrow.parquet.write_table(
            table.set_column(
                1,
                "lon",
                pa.array([None if x is None else str(x) for x in table.column("lon").to_pylist()]),
            ),
            texts,
            row_group_size=100,
        )
        assert sorted(column(batches(texts, bbox=(0, -1, 1, 1)), "val")) == [500, 501, 502]
        assert BoxFilter.of_points((0, -1, 1, 1), "lon", "lat").row_groups(
            pyarrow.parquet.ParquetFile(texts).metadata
        ) == list(range(11))


def test_filters_are_refused_where_they_cannot_apply(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "rows.csv", [["name", "wkt"], ["a", "POINT(1 1)"]])
    with pytest.raises(ConfigurationError, match=r"where='x' filters the features of a vector"):
        batches(csv_path, where="x")
    with pytest.raises(ConfigurationError, match=r"bbox=\(0, 0, 1, 1\) .* \(a GeoDataFrame\)"):
        batches(frame(2), bbox=(0, 0, 1, 1))
    path = tmp_path / "parcels.gpkg"
    pyogrio.write_dataframe(frame(2), path)
    for box in [(0, 1, 1, 0), (190, 0, 0, 1)]:  # minx > maxx only within -180..180
        with pytest.raises(ConfigurationError, match=r"is not \(minx, miny, maxx, maxy\) with"):
            batches(path, bbox=box)
    assert source_length(path) == 2 and source_length(path, filtered=True) is None


def test_rename_loads_a_files_fields_into_columns_of_other_names(tmp_path: Path) -> None:
    """A Shapefile keeps 10 bytes of a name; rename= says which column a field is for, in
    every kind of file, and a field of a cut name is met with the columns it may be."""
    columns = ["id", "parcel_name", "parcel_name_2", "geom"]
    long_names = frame(3).rename(columns={"name": "parcel_name", "val": "parcel_name_2"})
    shapefile = tmp_path / "cut.shp"
    with pytest.warns(RuntimeWarning, match="Normalized/laundered field name"):
        pyogrio.write_dataframe(long_names, shapefile)
    hint = (
        r"'parcel_nam' may be parcel_name or parcel_name_2; 'parcel_n_1' may be parcel_name or "
        r"parcel_name_2.*rename=\{'parcel_nam': 'parcel_name', 'parcel_n_1': 'parcel_name_2'\} "
        r"\(CLI: --rename parcel_nam=parcel_name --rename parcel_n_1=parcel_name_2\)"
    )
    with pytest.raises(ConfigurationError, match=hint):
        batches(shapefile, columns=columns)
    rename = {"parcel_nam": "parcel_name", "parcel_n_1": "parcel_name_2"}
    (batch,) = batches(shapefile, columns=columns, rename=rename)
    assert batch.columns["parcel_name"] == ["p0", "p1", "p2"]
    assert batch.columns["parcel_name_2"] == [0, 1, 2]
    csv_path = write_csv(tmp_path / "r.csv", [["nm", "wkt"], ["a", "POINT (0 0)"]])
    (batch,) = batches(csv_path, columns=columns, rename={"nm": "parcel_name"})
    assert batch.columns == {"parcel_name": ["a"], "geom": ["POINT (0 0)"]}
    frame(2).to_parquet(tmp_path / "r.parquet")
    (batch,) = batches(tmp_path / "r.parquet", rename={"name": "id", "val": "Val"})
    assert batch.columns["id"] == ["p0", "p1"] and batch.columns["val"] == [0, 1]
    with pytest.raises(ConfigurationError, match=r"rename names 'nme', which .*r.csv does not"):
        batches(csv_path, columns=columns, rename={"nme": "parcel_name"})
    with pytest.raises(ConfigurationError, match=r"rename=.* renames a file's fields .* list"):
        batches([{"id": 1}], rename={"id": "name"})


def test_a_shapefile_without_its_shx_or_dbf_is_refused_naming_them(tmp_path: Path) -> None:
    """GDAL refused a missing .shx with a traceback about SHAPE_RESTORE_SHX, and read a
    .shp without its .dbf as geometries alone: every attribute lost unseen."""
    shapefile = tmp_path / "parcels.shp"
    pyogrio.write_dataframe(frame(4), shapefile)
    parts = {p.suffix: p for p in tmp_path.glob("parcels.*")}
    (tmp_path / "parcels.dbf").rename(tmp_path / "parcels.DBF")  # where GDAL looks too
    assert len(column(batches(shapefile), "name")) == 4
    (tmp_path / "parcels.DBF").unlink()
    with pytest.raises(ConfigurationError, match=r"lacks its \.dbf \(its attributes\).*"):
        batches(shapefile)
    (tmp_path / "parcels.shx").unlink()
    missing = r"lacks its \.shx \(the index of its shapes\) and \.dbf .* parcels\.shx and "
    with pytest.raises(ConfigurationError, match=missing + r"parcels\.dbf beside it"):
        batches(shapefile)
    pieces = {f"data/{p.name}": p for suffix, p in parts.items() if suffix in (".shp", ".prj")}
    archive = _zipped(tmp_path / "parts.zip", pieces)
    with pytest.raises(ConfigurationError, match=r"parts\.zip's data lacks its \.shx"):
        batches(archive)


def test_a_parquet_map_is_a_dict_for_a_json_column(tmp_path: Path) -> None:
    """Overture's names.common is a map<string, string>: it came as a list of pairs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = pa.struct([("primary", pa.string()), ("common", pa.map_(pa.string(), pa.string()))])
    table = pa.table(
        {
            "name": pa.array(
                [{"primary": "X", "common": [("en", "Ex"), ("fr", "Ix")]}, None], names
            ),
            "geom": pa.array(shapely.to_wkb([shapely.Point(1, 2), shapely.Point(3, 4)])),
        }
    )
    pq.write_table(table, tmp_path / "maps.parquet")
    (batch,) = batches(tmp_path / "maps.parquet")
    assert batch.columns["name"] == [{"primary": "X", "common": {"en": "Ex", "fr": "Ix"}}, None]


def test_a_csvs_coordinate_columns_make_points(tmp_path: Path) -> None:
    """Longitude and latitude (EPSG:4326 by their names), x and y, or the columns given."""
    lonlat = write_csv(
        tmp_path / "cities.csv",
        [["name", "Latitude", "LONGITUDE"], ["Berlin", "52.52", "13.405"], ["None", "", ""]],
    )
    (batch,) = batches(lonlat, columns=["name", "geom"])
    assert batch.columns["name"] == ["Berlin", "None"] and batch.crs == {"geom": 4326}
    assert shapely.to_wkt(batch.columns["geom"]).tolist() == ["POINT (13.405 52.52)", None]
    (kept,) = batches(lonlat, columns=["name", "latitude", "geom"])  # a column of its name
    assert kept.columns["latitude"] == ["52.52", None]
    xy = write_csv(tmp_path / "xy.csv", [["id", "x", "y"], ["1", "500000", "5700000"]])
    (batch,) = batches(xy, columns=["id", "geom"])
    assert shapely.to_wkt(batch.columns["geom"]).tolist() == ["POINT (500000 5700000)"]
    assert batch.crs == {}
    european = tmp_path / "orte.csv"  # a spreadsheet's where 52,52 is a number
    european.write_text("name;lat;lon\nBerlin;52,52;13,405\nRom;41.9;12.5\n")
    (batch,) = batches(european, columns=["name", "geom"])
    assert shapely.to_wkt(batch.columns["geom"]).tolist() == [
        "POINT (13.405 52.52)",
        "POINT (12.5 41.9)",
    ]
    given = write_csv(tmp_path / "given.csv", [["id", "e", "n"], ["1", "abc", "2"]])
    (batch,) = batches(given, columns=["id", "geom"], xy_columns=("e", "n"))
    (unreadable,) = batch.columns["geom"]  # the check refuses it, with this reason
    assert (unreadable.reason, str(unreadable)) == (
        "e 'abc' is not a number (a point needs e and n)",
        "e=abc; n=2",
    )
    with pytest.raises(ConfigurationError, match=r"xy_columns names 'north', which .* does not"):
        batches(given, columns=["id", "geom"], xy_columns=("e", "north"))
    wkt = write_csv(tmp_path / "wkt.csv", [["x", "y", "wkt"], ["1", "2", "POINT (1 2)"]])
    with pytest.raises(ConfigurationError, match=r"has the WKT column 'wkt', and xy_columns="):
        batches(wkt, columns=["x", "y", "geom"], xy_columns=("x", "y"))
    with pytest.raises(ConfigurationError, match=r"the table has none or several"):
        batches(xy, columns=["id", "a", "b"], geometry_column=None)
    with pytest.raises(ConfigurationError, match=r"and the target has a column for it"):
        batches(frame(2), xy_columns=("x", "y"))  # a GeoDataFrame's geometries are there
    (rows,) = batches([{"id": 1, "x": 1, "y": 2}], xy_columns=("x", "y"))  # dict rows too
    assert [p.wkt for p in column([rows], "geom")] == ["POINT (1 2)"] and "x" not in rows.columns
    vector = tmp_path / "vector.gpkg"
    pyogrio.write_dataframe(frame(1, crs=4326), vector)
    (arrow,) = batches(pa.table({"x": [1], "y": [2]}), xy_columns=("x", "y"))  # Arrow data too
    assert [p.wkt for p in column([arrow], "geom")] == ["POINT (1 2)"]
    with pytest.raises(ConfigurationError, match=r"and the target has a column for it"):
        batches(str(vector), xy_columns=("x", "y"))  # a vector file's geometries are there


def test_fields_the_table_lacks_are_left_out_when_asked(tmp_path: Path) -> None:
    """A county's Shapefile of forty fields into a table of five had to be cut down first."""
    gpkg = tmp_path / "parcels.gpkg"
    pyogrio.write_dataframe(frame(3).assign(owner="x", zoning="R1"), gpkg)
    parquet = tmp_path / "parcels.parquet"
    frame(3).assign(owner="x").to_parquet(parquet)
    csv_path = write_csv(tmp_path / "p.csv", [["name", "owner", "wkt"], ["a", "x", "POINT (1 2)"]])
    rows = [{"name": "a", "owner": "x", "geom": None}]
    for source, extra in [
        (gpkg, {"owner", "zoning"}),
        (parquet, {"owner"}),
        (csv_path, {"owner"}),
        (frame(2).assign(owner="x"), {"owner"}),
        (rows, {"owner"}),
    ]:
        left_out: set[str] = set()
        found = batches(source, left_out=left_out)
        assert left_out == extra, source
        assert all("owner" not in batch.columns for batch in found)
        assert column(found, "name")[:1] in (["p0"], ["a"])


@pytest.mark.parametrize("suffix", [".kml", ".kmz", ".gpx"])
def test_kml_and_gpx_files_are_read_by_gdal(tmp_path: Path, suffix: str) -> None:
    """Google Earth's and GPS devices' files; GPX has five layers, one chosen by name."""
    places = gpd.GeoDataFrame(
        {"name": ["Berlin", "Paris"]},
        geometry=[shapely.Point(13.4, 52.5), shapely.Point(2.35, 48.85)],
        crs=4326,
    )
    path = tmp_path / f"places{suffix}"
    driver = {".kml": "KML", ".kmz": "LIBKML", ".gpx": "GPX"}[suffix]
    places.to_file(path, driver=driver, layer="waypoints" if suffix == ".gpx" else "places")
    left_out: set[str] = set()  # GPX's routes and tracks are empty: its waypoints are read
    (batch,) = batches(path, columns=["name", "geom"], left_out=left_out)
    assert batch.columns["name"] == ["Berlin", "Paris"] and batch.crs == {"geom": 4326}
    assert shapely.from_wkb(batch.columns["geom"][0]).equals(shapely.Point(13.4, 52.5))
    assert left_out  # KML's description, GPX's ele, time...
