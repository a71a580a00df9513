"""geosession.models: the geometry column's DDL and the hybrid properties on PostGIS."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import shapely
from geoalchemy2 import Geography, WKBElement
from sqlalchemy import insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from geosession import SpatialDatabase
from geosession.errors import ConfigurationError, InvalidGeometry, SRIDMismatch
from geosession.geometry import to_element, to_geography_element, to_shape
from geosession.models import GEOMETRY_TYPES, SpatialMixin, geography_column, geometry_column

SRID = 3857


class Base(DeclarativeBase):
    pass


class Shape(SpatialMixin, Base):
    __tablename__ = "gs_models_shape"
    id: Mapped[int] = mapped_column(primary_key=True)
    geom: Mapped[WKBElement | None] = geometry_column("GEOMETRY", SRID)


class Parcel(SpatialMixin, Base):
    __tablename__ = "gs_models_parcel"
    __geometry_column__ = "boundary"
    id: Mapped[int] = mapped_column(primary_key=True)
    boundary: Mapped[WKBElement] = geometry_column("polygon", 4326, nullable=False)


class Zone(SpatialMixin, Base):
    """A geography column: measures in metres on the ellipsoid."""

    __tablename__ = "gs_models_zone"
    id: Mapped[int] = mapped_column(primary_key=True)
    geom: Mapped[WKBElement | None] = mapped_column(Geography("GEOMETRY", 4326))


class Beacon(SpatialMixin, Base):
    """A geography with heights: its planar properties cast it to geometry in SQL."""

    __tablename__ = "gs_models_beacon"
    id: Mapped[int] = mapped_column(primary_key=True)
    geom: Mapped[WKBElement | None] = geography_column("POINT", dimension=3)


class Sensor(Base):
    __tablename__ = "gs_models_sensor"
    id: Mapped[int] = mapped_column(primary_key=True)
    location: Mapped[WKBElement] = geometry_column("POINT", 4326, dimension=3)
    track: Mapped[WKBElement] = geometry_column("LINESTRINGM", 4326, spatial_index=False)


class HasLocation:
    """A geometry column declared once on a plain mixin, copied into each table."""

    location: Mapped[WKBElement] = geometry_column("POINT", 4326)


class Depot(HasLocation, Base):
    __tablename__ = "gs_models_depot"
    id: Mapped[int] = mapped_column(primary_key=True)


class Store(HasLocation, Base):
    __tablename__ = "gs_models_store"
    id: Mapped[int] = mapped_column(primary_key=True)


@pytest.fixture
def tables(db: SpatialDatabase) -> Iterator[SpatialDatabase]:
    Base.metadata.drop_all(db.engine)
    Base.metadata.create_all(db.engine)
    try:
        yield db
    finally:
        Base.metadata.drop_all(db.engine)


# --- DDL ------------------------------------------------------------------------------


def test_create_all_makes_exactly_one_gist_index_per_indexed_column(
    tables: SpatialDatabase,
) -> None:
    query = text(
        "SELECT tablename, indexdef FROM pg_indexes "
        "WHERE tablename LIKE 'gs_models_%' AND indexname NOT LIKE '%_pkey' ORDER BY 1"
    )
    with tables.session() as session:
        indexes = session.execute(query).all()
    assert [(table, "USING gist" in definition) for table, definition in indexes] == [
        ("gs_models_beacon", True),
        ("gs_models_depot", True),
        ("gs_models_parcel", True),
        ("gs_models_sensor", True),
        ("gs_models_shape", True),
        ("gs_models_store", True),
        ("gs_models_zone", True),  # GeoAlchemy2's Geography, indexed by default too
    ]
    assert "(location)" in indexes[3][1], "the unindexed track column has none"


def test_columns_have_the_declared_type_srid_and_dimension(tables: SpatialDatabase) -> None:
    query = text(
        "SELECT f_table_name, f_geometry_column, type, coord_dimension, srid "
        "FROM geometry_columns WHERE f_table_name LIKE 'gs_models_%' ORDER BY 1, 2"
    )
    with tables.session() as session:
        columns = [tuple(row) for row in session.execute(query)]
        not_null = session.scalar(
            text(
                "SELECT attnotnull FROM pg_attribute "
                "WHERE attrelid = 'gs_models_parcel'::regclass AND attname = 'boundary'"
            )
        )
    assert columns == [
        ("gs_models_depot", "location", "POINT", 2, 4326),
        ("gs_models_parcel", "boundary", "POLYGON", 2, 4326),
        ("gs_models_sensor", "location", "POINT", 3, 4326),
        ("gs_models_sensor", "track", "LINESTRINGM", 3, 4326),
        ("gs_models_shape", "geom", "GEOMETRY", 2, SRID),
        ("gs_models_store", "location", "POINT", 2, 4326),
    ]
    assert not_null is True


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (("point z",), {}, ("POINTZ", 3)),
        (("MultiPolygonZM",), {}, ("MULTIPOLYGONZM", 4)),
        (("POINT",), {"dimension": 3}, ("POINTZ", 3)),
        (("POINT",), {"dimension": 4}, ("POINTZM", 4)),
        (("POINTM",), {"dimension": 3}, ("POINTM", 3)),
        (("GEOMETRYCOLLECTION",), {}, ("GEOMETRYCOLLECTION", 2)),
        ((), {}, ("GEOMETRY", 2)),
    ],
)
def test_geometry_type_and_dimension_are_normalised(
    args: tuple[Any, ...], kwargs: dict[str, Any], expected: tuple[str, int]
) -> None:
    spatial_type: Any = geometry_column(*args, **kwargs).column.type
    assert (spatial_type.geometry_type, spatial_type.dimension) == expected
    assert spatial_type.srid == 4326


def test_every_accepted_type_name_is_a_postgis_typmod() -> None:
    assert len(GEOMETRY_TYPES) == 32
    assert {"POINT", "MULTIPOLYGONZ", "GEOMETRYM", "GEOMETRYCOLLECTIONZM"} <= GEOMETRY_TYPES


def test_srid_zero_is_allowed() -> None:
    spatial_type: Any = geometry_column("POINT", 0).column.type
    assert spatial_type.srid == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "names"),
    [
        (("CIRCLE",), {}, ["geometry_type", "POINT", "MULTIPOLYGON", "ZM", "'CIRCLE'"]),
        (("POINTQ",), {}, ["geometry_type"]),
        ((42,), {}, ["geometry_type", "42"]),
        (("POINT", -1), {}, ["srid", "0 to 999999", "-1"]),
        (("POINT", 1_000_000), {}, ["srid"]),
        (("POINT", "4326"), {}, ["srid", "'4326'"]),
        (("POINT", True), {}, ["srid"]),
        (("POINT",), {"dimension": 1}, ["dimension", "2, 3 or 4", "1"]),
        (("POINT",), {"dimension": 5}, ["dimension"]),
        (("POINTZ",), {"dimension": 2}, ["dimension=2", "'POINTZ'", "3"]),
        (("POINTZM",), {"dimension": 3}, ["dimension=3", "'POINTZM'"]),
    ],
)
def test_invalid_arguments_raise_configuration_error(
    args: tuple[Any, ...], kwargs: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as info:
        geometry_column(*args, **kwargs)
    for name in names:
        assert name in str(info.value)


# --- hybrid properties: Python agrees with PostGIS ----------------------------------------


def star_polygon(rng: random.Random, cx: float, cy: float, radius: float) -> Any:
    """A simple (valid) polygon: vertices at sorted angles around the centre."""
    count = rng.randint(3, 40)
    angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(count))
    if len(set(angles)) < 3:
        angles = [0.0, 2.0, 4.0]
    ring = [
        (cx + r * math.cos(a), cy + r * math.sin(a))
        for a in angles
        for r in [rng.uniform(0.2 * radius, radius)]
    ]
    return shapely.Polygon(ring)


def random_geometry(rng: random.Random) -> Any:
    cx, cy = rng.uniform(-2e6, 2e6), rng.uniform(-2e6, 2e6)
    radius = 10 ** rng.uniform(0, 4)
    kind = rng.random()
    if kind < 0.35:
        return star_polygon(rng, cx, cy, radius)
    if kind < 0.6:
        steps = [(cx, cy)]
        for _ in range(rng.randint(1, 50)):
            steps.append((steps[-1][0] + rng.gauss(0, radius), steps[-1][1] + rng.gauss(0, radius)))
        return shapely.LineString(steps)
    if kind < 0.75:
        return shapely.Point(cx, cy)
    if kind < 0.95:
        count = rng.randint(1, 4)
        parts = [star_polygon(rng, cx + 3 * radius * i, cy, radius) for i in range(count)]
        return shapely.MultiPolygon(parts)
    return shapely.GeometryCollection(
        [
            shapely.Point(cx, cy),
            shapely.LineString([(cx, cy), (cx + radius, cy - radius)]),
            star_polygon(rng, cx, cy + 3 * radius, radius),
        ]
    )


SPECIAL = [
    shapely.LineString([(0, 5), (7, 5)]),  # horizontal: envelope is a LineString
    shapely.LineString([(3, 0), (3, 4), (3, 1)]),  # vertical
    shapely.MultiPoint([(1, 1), (1, 1)]),  # envelope is a Point
    shapely.from_wkt("POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 2 3, 3 3, 2 2))"),
    shapely.from_wkt("MULTILINESTRING ((0 0, 1 1), (2 2, 3 1))"),
]


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def close_geometry(python: Any, sql: WKBElement) -> bool:
    from_sql = to_shape(sql)
    if shapely.get_type_id(python) != shapely.get_type_id(from_sql):
        return False
    if shapely.get_srid(python) != shapely.get_srid(from_sql):
        return False
    ours, theirs = shapely.get_coordinates(python), shapely.get_coordinates(from_sql)
    return ours.shape == theirs.shape and all(
        close(float(a), float(b)) for a, b in zip(ours.flat, theirs.flat, strict=True)
    )


def test_a_mixin_without_its_column_says_which_to_name() -> None:
    """SpatialMixin reads ``geom`` unless told otherwise: a class whose column has another
    name raised a bare AttributeError ('Area' object has no attribute 'geom')."""

    class Unmapped(DeclarativeBase):
        pass

    class Area(SpatialMixin, Unmapped):
        __tablename__ = "gs_models_area"
        id: Mapped[int] = mapped_column(primary_key=True)
        outline: Mapped[WKBElement] = geometry_column("POLYGON", 4326)

    expected = r"Area has no attribute 'geom'.* set __geometry_column__ = 'outline'"
    with pytest.raises(ConfigurationError, match=expected):
        select(Area.area)
    with pytest.raises(ConfigurationError, match=expected):
        _ = Area(id=1, outline="SRID=4326;POLYGON((0 0,1 0,1 1,0 0))").area


def test_hybrid_properties_agree_between_python_and_postgis(tables: SpatialDatabase) -> None:
    rng = random.Random(20240611)
    geoms: list[Any] = [random_geometry(rng) for _ in range(3000)] + SPECIAL + [None]
    rows = [
        {"id": i, "geom": None if g is None else to_element(g, SRID)} for i, g in enumerate(geoms)
    ]
    query = select(
        Shape,
        Shape.area,
        Shape.length,
        Shape.perimeter,
        Shape.num_points,
        Shape.bounds,
        Shape.centroid,
        Shape.envelope,
    ).order_by(Shape.id)
    results = _stored_then_selected(tables, Shape, rows, query)

    assert len(results) == len(geoms)
    kinds = {shapely.get_type_id(g) for g in geoms if g is not None}
    assert {0, 1, 3, 6, 7} <= kinds, "points, lines, polygons, multipolygons, collections"
    for shape, area, length, perimeter, num_points, bounds, centroid, envelope in results:
        where = f"row {shape.id}: {shape.geom}"
        assert close(shape.area, area), where
        assert close(shape.length, length), where
        assert close(shape.perimeter, perimeter), where
        assert shape.num_points == num_points, where
        if shape.geom is None:
            assert (bounds, centroid, envelope) == (None, None, None)
            assert (shape.bounds, shape.centroid, shape.envelope) == (None, None, None)
            continue
        assert isinstance(shape.bounds, tuple) and isinstance(bounds, tuple)  # both sides
        assert all(close(a, b) for a, b in zip(shape.bounds, bounds, strict=True)), where
        assert close_geometry(shape.centroid, centroid), where
        assert close_geometry(shape.envelope, envelope), where


def test_geography_measures_agree_with_postgis_in_metres(tables: SpatialDatabase) -> None:
    """ST_Area/ST_Length/ST_Perimeter of a geography are geodesic on WGS 84, as pyproj's
    Geod computes them (both GeographicLib); the rest are of the longitudes and latitudes."""
    rng = random.Random(20261204)
    degrees = [
        shapely.affinity.scale(random_geometry(rng), 1 / 30_000, 1 / 30_000, origin=(0, 0))
        for _ in range(600)
    ]  # the planar test's shapes shrunk into longitudes and latitudes (within ±67°)
    holed = shapely.from_wkt("POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 2 3, 3 3, 2 2))")
    geoms: list[Any] = [*degrees, holed, shapely.Point(179.5, -60), None]
    rows = [
        {"id": i, "geom": None if g is None else to_geography_element(g)}
        for i, g in enumerate(geoms)
    ]
    query = select(
        Zone, Zone.area, Zone.length, Zone.perimeter, Zone.num_points, Zone.bounds, Zone.centroid
    ).order_by(Zone.id)
    results = _stored_then_selected(tables, Zone, rows, query)
    assert len(results) == len(geoms)
    for zone, area, length, perimeter, num_points, bounds, centroid in results:
        where = f"row {zone.id}: {zone.geom}"
        assert close(zone.area, area), where
        assert close(zone.length, length), where
        assert close(zone.perimeter, perimeter), where
        assert zone.num_points == num_points, where
        if zone.geom is not None:
            assert all(close(a, b) for a, b in zip(zone.bounds, bounds, strict=True)), where
            assert close_geometry(zone.centroid, centroid), where
    square = Zone(id=0, geom=to_geography_element("POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))"))
    assert square.area == pytest.approx(12_308_778_361, rel=1e-9)  # m², not 1 square degree
    assert square.perimeter == pytest.approx(443_770.917, rel=1e-9)


def _stored_then_selected(
    db: SpatialDatabase, model: Any, rows: list[dict[str, Any]], query: Any
) -> list[Any]:
    with db.session() as session:
        session.execute(insert(model), rows)
        session.commit()
        return list(session.execute(query).all())


def test_polygon_length_is_zero_and_perimeter_is_separate() -> None:
    square = Shape(id=1, geom=to_element("POLYGON ((0 0, 4 0, 4 4, 0 4, 0 0))", SRID))
    assert (square.area, square.length, square.perimeter) == (16.0, 0.0, 16.0)
    assert square.num_points == 5
    assert square.bounds == (0.0, 0.0, 4.0, 4.0)
    assert square.centroid is not None and square.centroid.equals(shapely.Point(2, 2))
    assert shapely.get_srid(square.centroid) == SRID
    line = Shape(id=2, geom=to_element("LINESTRING (0 0, 3 4)", SRID))
    assert (line.area, line.length, line.perimeter) == (0.0, 5.0, 0.0)
    empty = Shape(id=3, geom=None)
    assert (empty.area, empty.length, empty.centroid, empty.bounds) == (None, None, None, None)


def test_properties_read_unflushed_values_of_any_kind() -> None:
    parcel = Parcel(id=1, boundary="SRID=4326;POLYGON ((0 0, 2 0, 2 1, 0 0))")
    assert parcel.area == 1.0
    parcel.boundary = shapely.box(0, 0, 3, 3)
    assert parcel.area == 9.0


def test_shapely_geometries_wkb_and_geojson_bind_to_geosessions_columns(
    tables: SpatialDatabase,
) -> None:
    """GeoAlchemy2 binds text and its elements only: Parcel(boundary=shapely.box(...))
    failed at the flush ("cannot adapt type 'Polygon'"), WKB bytes with "function
    st_geomfromewkt(bytea) does not exist". Values without an SRID take the column's."""
    square = shapely.box(0, 0, 1, 1)
    values: list[Any] = [
        square,
        shapely.set_srid(shapely.box(0, 0, 2, 2), 4326),
        shapely.to_wkb(shapely.box(0, 0, 3, 3)),
        to_element(shapely.box(0, 0, 4, 4), 4326).data,  # EWKB bytes
        {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [0, 0]]]},
        "POLYGON((0 0,6 0,6 6,0 0))",  # text as GeoAlchemy2 binds it
    ]
    with tables.transaction() as s:
        s.add_all(Parcel(id=n, boundary=value) for n, value in enumerate(values, 1))
        s.execute(insert(Parcel), [{"id": 10, "boundary": shapely.box(0, 0, 7, 7)}])
    with tables.transaction() as s:
        s.get_one(Parcel, 1).boundary = shapely.box(0, 0, 8, 8)  # an update
    with tables.session() as s:
        stored = s.execute(select(Parcel.id, Parcel.area).order_by(Parcel.id)).all()
        assert [tuple(row) for row in stored] == [
            (1, 64.0),
            (2, 4.0),
            (3, 9.0),
            (4, 16.0),
            (5, 12.5),
            (6, 18.0),
            (10, 49.0),
        ]
        assert s.scalar(text("SELECT DISTINCT ST_SRID(boundary) FROM gs_models_parcel")) == 4326
        found = s.scalars(select(Parcel.id).where(Parcel.boundary == shapely.box(0, 0, 2, 2)))
        assert found.all() == [2]
        near = s.scalars(select(Parcel.id).where(Parcel.boundary.intersects(square)))
        assert sorted(near) == [1, 2, 3, 4, 5, 6, 10]
        inside = shapely.Point(6.5, 0.5)  # the column's functions take them too
        covering = s.scalars(select(Parcel.id).where(Parcel.boundary.ST_Intersects(inside)))
        assert sorted(covering) == [1, 10]
        gaps = select(Parcel.boundary.ST_Distance(shapely.to_wkb(inside))).order_by(Parcel.id)
        assert s.scalars(gaps).all() == [0.0, 4.5, 3.5, 2.5, 1.5, 0.5, 0.0]
    mismatch = r"SRID 4326 was expected.*for a geometry\(POLYGON, 4326\) column"
    with pytest.raises(SRIDMismatch, match=mismatch), tables.transaction() as s:
        s.add(Parcel(id=11, boundary=shapely.set_srid(square, 3857)))
    unreadable = pytest.raises(InvalidGeometry, match="; in INSERT INTO gs_models_parcel")
    with unreadable, tables.transaction() as s:
        s.add(Parcel(id=12, boundary=b"\x01\x03"))


def test_text_and_elements_take_the_columns_srid_or_say_theirs_differs(
    tables: SpatialDatabase,
) -> None:
    """WKT went with SRID 0: INSERT stamped it with the column's, but `==` found nothing
    and ST_Intersects refused it; EWKT or an element of another SRID went through
    intersects() (&& compares no SRIDs) matching rows of any."""
    with tables.transaction() as s:
        s.add(Parcel(id=1, boundary="POLYGON((0 0,1 0,1 1,0 0))"))
        s.add(Parcel(id=2, boundary=shapely.box(5, 5, 6, 6)))
    wkt = "POLYGON((0 0,1 0,1 1,0 0))"
    hex_wkb = shapely.to_wkb(shapely.box(0, 0, 1, 1), hex=True)
    geojson = '{"type": "Point", "coordinates": [0.5, 0.25]}'
    curve = "CURVEPOLYGON(CIRCULARSTRING(0 0, 1 1, 2 0, 1 -1, 0 0))"  # shapely reads none
    with tables.session() as s:
        assert s.scalars(select(Parcel.id).where(Parcel.boundary == wkt)).all() == [1]
        for value in (wkt, hex_wkb, geojson, curve, f"SRID=4326;{wkt}"):
            found = s.scalars(select(Parcel.id).where(Parcel.boundary.ST_Intersects(value)))
            assert found.all() == [1], value
        near = Parcel.boundary.ST_DWithin("POINT(5 5)", 0.5)
        assert s.scalars(select(Parcel.id).where(near)).all() == [2]
    mismatch = r"has SRID 3857 but SRID 4326 was expected.*for a geometry\(POLYGON, 4326\)"
    for other in (f"SRID=3857;{wkt}", to_element(shapely.box(0, 0, 1, 1), 3857)):
        with pytest.raises(SRIDMismatch, match=mismatch), tables.session() as s:
            s.scalars(select(Parcel.id).where(Parcel.boundary.intersects(other))).all()


def test_planar_properties_of_a_geography_with_heights_read_in_sql(
    tables: SpatialDatabase,
) -> None:
    """centroid, envelope, bounds and num_points cast a geography to geometry(GEOMETRY,
    -1), which takes no Z: "Geometry has Z dimension but column does not"."""
    with tables.transaction() as s:
        s.add(Beacon(id=1, geom=shapely.Point(10, 20, 30)))
    with tables.session() as s:
        in_sql = select(Beacon.centroid, Beacon.envelope, Beacon.bounds, Beacon.num_points)
        centroid, envelope, bounds, points = s.execute(in_sql).one()
        beacon = s.get_one(Beacon, 1)
        centroid = to_shape(centroid)
        assert (centroid.x, centroid.y) == (10.0, 20.0) == (beacon.centroid.x, beacon.centroid.y)
        assert tuple(bounds) == beacon.bounds == (10.0, 20.0, 10.0, 20.0)
        assert points == beacon.num_points == 1 and envelope is not None


def test_coordinates_and_numpy_srids(tables: SpatialDatabase) -> None:
    """A tuple of coordinates went to the server ("parse error at position 2"); NumPy's
    integer SRIDs (shapely.get_srid gives one) were refused as no integer."""
    coordinates = r"\(5, 5\) is a tuple of coordinates, not a"
    with pytest.raises(InvalidGeometry, match=coordinates), tables.transaction() as s:
        s.add(Parcel(id=1, boundary=(5, 5)))
    column = geometry_column("POINT", np.int64(4326))
    assert column.column.type.srid == 4326
    srid = shapely.get_srid(shapely.set_srid(shapely.Point(1, 2), 4326))
    assert to_element(shapely.Point(1, 2), srid).srid == 4326


def test_geography_columns_bind_shapely_as_text_and_measure_in_metres(
    db: SpatialDatabase,
) -> None:
    """geography_column: GeoAlchemy2 binds a geography's parameter with ST_GeogFromText,
    which reads text only, so shapely, WKB and GeoJSON go as EWKT."""

    class Own(DeclarativeBase):
        pass

    class Field(SpatialMixin, Own):
        __tablename__ = "gs_models_field"
        id: Mapped[int] = mapped_column(primary_key=True)
        geom: Mapped[WKBElement] = geography_column("POLYGON")

    Own.metadata.drop_all(db.engine)
    Own.metadata.create_all(db.engine)
    try:
        degree = shapely.box(0, 0, 1, 1)
        with db.transaction() as s:
            s.add_all(
                [
                    Field(id=1, geom=degree),
                    Field(id=2, geom=shapely.to_wkb(degree)),
                    Field(id=3, geom=json.loads(shapely.to_geojson(degree))),
                    Field(id=4, geom="SRID=4326;POLYGON((0 0,1 0,1 1,0 1,0 0))"),
                ]
            )
        with db.session() as s:
            areas = s.execute(select(Field.id, Field.area).order_by(Field.id)).all()
            declared = s.scalar(
                text(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'gs_models_field'::regclass AND attname = 'geom'"
                )
            )
            indexes = s.scalar(
                text(
                    "SELECT count(*) FROM pg_indexes "
                    "WHERE tablename = 'gs_models_field' AND indexdef LIKE '%gist%'"
                )
            )
            loaded = s.get_one(Field, 1)
            assert loaded.area == pytest.approx(areas[0][1], rel=1e-9)
        assert declared == "geography(Polygon,4326)" and indexes == 1
        assert {round(area) for _, area in areas} == {12308778361}  # m² of 1° by 1°, equator
        with db.session() as s:
            near = select(Field.id).where(Field.geom.ST_DWithin(shapely.Point(0, -0.01), 1200))
            assert s.scalars(near.order_by(Field.id)).all() == [1, 2, 3, 4]
        mismatch = pytest.raises(SRIDMismatch, match=r"for a geography\(POLYGON, 4326\) column")
        with mismatch, db.transaction() as s:
            s.add(Field(id=5, geom=shapely.set_srid(degree, 4269)))
    finally:
        Own.metadata.drop_all(db.engine)


def test_a_geography_column_needs_a_longitude_latitude_srid() -> None:
    with pytest.raises(ConfigurationError, match="a geography column's srid"):
        geography_column("POINT", 0)


def test_hybrid_properties_filter_and_order_in_sql(tables: SpatialDatabase) -> None:
    geoms = [shapely.box(i, 0, 2 * i + 1, i + 1) for i in range(50)]
    rows = [{"id": i, "boundary": to_element(g, 4326)} for i, g in enumerate(geoms)]
    with tables.session() as session:
        session.execute(insert(Parcel), rows)
        session.commit()
        big = session.scalars(
            select(Parcel.id).where(Parcel.area > 100).order_by(Parcel.perimeter.desc())
        ).all()
        right = session.scalars(
            select(Parcel.id).where(Parcel.bounds[0] >= 10, Parcel.bounds[3] < 20)
        ).all()
        parcels = session.scalars(select(Parcel).order_by(Parcel.id)).all()
    assert big == sorted(
        (p.id for p in parcels if p.area is not None and p.area > 100),
        key=lambda i: -(parcels[i].perimeter or 0),
    )
    assert big and len(big) < len(parcels)
    assert sorted(right) == [
        p.id for p in parcels if p.bounds is not None and p.bounds[0] >= 10 and p.bounds[3] < 20
    ]
    assert right
