"""geosession.geometry: every input kind, SRID handling, error messages, EWKB on PostGIS."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import shapely
from geoalchemy2 import Geometry
from geoalchemy2.elements import WKBElement, WKTElement
from geoalchemy2.shape import from_shape
from sqlalchemy import LargeBinary, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from geosession import SpatialDatabase
from geosession.errors import ConfigurationError, InvalidGeometry, SRIDMismatch
from geosession.geometry import (
    GEOJSON_SRID,
    encode_ewkb,
    from_geojson,
    hex_as_wkt,
    shapes_from_text,
    srid_of,
    to_element,
    to_ewkb,
    to_geography_element,
    to_geojson,
    to_shape,
    to_wkt,
)

SAMPLES = {
    "point": "POINT (1.5 -2.25)",
    "point_z": "POINT Z (1 2 3)",
    "point_m": "POINT M (1 2 7)",
    "point_zm": "POINT ZM (1 2 3 4)",
    "line": "LINESTRING (0 0, 0.1 0.2, 10.000000000000002 3)",
    "polygon_hole": "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 2 3, 3 3, 2 2))",
    "multipoint": "MULTIPOINT ((0 0), (1 1))",
    "multiline": "MULTILINESTRING ((0 0, 1 1), (2 2, 3 1))",
    "multipolygon": "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))",
    "collection": "GEOMETRYCOLLECTION (POINT (1 1), LINESTRING (0 0, 1 2))",
    "empty_polygon": "POLYGON EMPTY",
}

# Each kind turns (geometry, srid) into an input value; the bool says whether the value
# itself carries the SRID.
KINDS: dict[str, tuple[Callable[[Any, int], Any], bool]] = {
    "shapely": (lambda g, s: g, False),
    "shapely_srid": (lambda g, s: shapely.set_srid(g, s), True),
    "wkb": (lambda g, s: shapely.to_wkb(g), False),
    "ewkb": (lambda g, s: shapely.to_wkb(shapely.set_srid(g, s), include_srid=True), True),
    "ewkb_bytearray": (
        lambda g, s: bytearray(shapely.to_wkb(shapely.set_srid(g, s), include_srid=True)),
        True,
    ),
    "ewkb_memoryview": (
        lambda g, s: memoryview(shapely.to_wkb(shapely.set_srid(g, s), include_srid=True)),
        True,
    ),
    "hex_wkb": (lambda g, s: shapely.to_wkb(g, hex=True), False),
    "hex_ewkb_lower": (
        lambda g, s: shapely.to_wkb(shapely.set_srid(g, s), hex=True, include_srid=True).lower(),
        True,
    ),
    "wkt": (lambda g, s: to_wkt(g), False),
    "ewkt": (lambda g, s: f"SRID={s};{to_wkt(g)}", True),
    "ewkt_padded": (lambda g, s: f"  srid={s};{to_wkt(g)}\n", True),
    "geojson_dict": (lambda g, s: to_geojson(g), False),
    "geojson_str": (lambda g, s: json.dumps(to_geojson(g)), False),
    "geojson_feature": (
        lambda g, s: {"type": "Feature", "properties": {}, "geometry": to_geojson(g)},
        False,
    ),
    "wkb_element": (lambda g, s: from_shape(g, srid=s), True),
    "ewkb_element": (lambda g, s: from_shape(g, srid=s, extended=True), True),
    "hex_ewkb_element": (lambda g, s: WKBElement(to_element(g, s).desc, extended=True), True),
    "wkt_element": (lambda g, s: WKTElement(to_wkt(g), srid=s), True),
    "ewkt_element": (lambda g, s: WKTElement(f"SRID={s};{to_wkt(g)}"), True),
    "our_element": (lambda g, s: to_element(g, s), True),
}
GEOJSON_KINDS = {"geojson_dict", "geojson_str", "geojson_feature"}


def same(a: Any, b: Any) -> bool:
    """Identical coordinates (all of Z and M) and type, SRID aside."""
    return bool(shapely.to_wkb(a, include_srid=False) == shapely.to_wkb(b, include_srid=False))


@pytest.mark.parametrize(
    ("kind", "sample"),
    [
        (kind, sample)
        for kind in sorted(KINDS)
        for sample in sorted(SAMPLES)
        if not (kind in GEOJSON_KINDS and sample.endswith(("_m", "_zm")))  # GeoJSON has no M
    ],
)
def test_every_input_kind_round_trips(kind: str, sample: str) -> None:
    geom = shapely.from_wkt(SAMPLES[sample])
    make, carries_srid = KINDS[kind]
    value = make(geom, 3857)

    result = to_shape(value)

    carried = 3857 if carries_srid else GEOJSON_SRID if kind in GEOJSON_KINDS else 0
    assert same(result, geom), (kind, sample, result)
    assert shapely.get_srid(result) == carried
    assert srid_of(value) == (carried or None)
    if kind in GEOJSON_KINDS:  # RFC 7946: longitude/latitude; from_geojson reads others
        assert shapely.get_srid(from_geojson(value, srid=3857)) == 3857
        with pytest.raises(SRIDMismatch, match="SRID 4326 but SRID 3857"):
            to_shape(value, srid=3857)
    else:
        assert shapely.get_srid(to_shape(value, srid=3857)) == 3857


def test_to_wkt_is_exact_for_doubles_of_every_magnitude() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        point = shapely.Point(
            rng.uniform(-1, 1) * 10 ** rng.randint(-12, 9),
            rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300),
        )
        assert same(to_shape(to_wkt(point)), point), to_wkt(point)


def test_to_geojson_is_plain_json_at_full_precision() -> None:
    point = shapely.Point(0.1 + 0.2, 1 / 3, 7)
    data = to_geojson(point)
    assert data == {"type": "Point", "coordinates": [0.1 + 0.2, 1 / 3, 7.0]}
    assert json.loads(json.dumps(data)) == data
    assert same(from_geojson(data), point)
    assert shapely.get_srid(from_geojson(json.dumps(data), srid=4326)) == 4326
    clockwise = shapely.from_wkt("POLYGON((0 0, 0 2, 2 2, 2 0, 0 0), (1 1, 1.5 1, 1.5 1.5, 1 1))")
    turned = shapely.geometry.shape(to_geojson(clockwise))  # RFC 7946, as the exports write
    assert shapely.is_ccw(turned.exterior) and not shapely.is_ccw(turned.interiors[0])
    assert turned.equals(clockwise)


@pytest.mark.parametrize(
    ("name", "srid"),
    [
        ("EPSG:3857", 3857),
        ("urn:ogc:def:crs:EPSG::2154", 2154),
        ("urn:ogc:def:crs:EPSG:6.6:27700", 27700),
        ("urn:ogc:def:crs:OGC:1.3:CRS84", 4326),
        ("OGC:CRS83", 4269),
    ],
)
def test_geojson_crs_member_names_the_srid(name: str, srid: int) -> None:
    crs = {"type": "name", "properties": {"name": name}}
    point = {"type": "Point", "coordinates": [1, 2], "crs": crs}
    feature = {"type": "Feature", "properties": {}, "geometry": point, "crs": crs}
    for value in (point, json.dumps(point), feature, {**feature, "geometry": {**point}}):
        assert shapely.get_srid(to_shape(value)) == srid
        assert shapely.get_srid(from_geojson(value, srid=srid)) == srid
    other = 3395
    with pytest.raises(SRIDMismatch, match=f"SRID {srid} but SRID {other}"):
        from_geojson(point, srid=other)


@pytest.mark.parametrize(
    "crs",
    [
        {"type": "name", "properties": {"name": "ESRI:102100"}},
        {"type": "link", "properties": {"href": "http://example.com/crs/42"}},
        "EPSG:3857",
    ],
)
def test_geojson_crs_member_without_an_epsg_code_is_refused(crs: Any) -> None:
    with pytest.raises(InvalidGeometry, match="invalid GeoJSON.*crs member") as info:
        to_shape({"type": "Point", "coordinates": [1, 2], "crs": crs})
    assert not isinstance(info.value, SRIDMismatch)


def test_geojson_drops_m() -> None:
    assert to_geojson("POINT ZM (1 2 3 4)") == {"type": "Point", "coordinates": [1.0, 2.0, 3.0]}


def test_srid_argument_applies_and_embedded_srid_is_kept() -> None:
    point = shapely.Point(1, 2)
    assert shapely.get_srid(to_shape(point, srid=4326)) == 4326
    assert shapely.get_srid(point) == 0, "the caller's object is not modified"
    assert shapely.get_srid(to_shape("SRID=4326;POINT (1 2)", srid=4326)) == 4326
    assert shapely.get_srid(to_shape("SRID=4326;POINT (1 2)", srid=None)) == 4326
    for unknown in (0, -1):
        assert shapely.get_srid(to_shape("SRID=4326;POINT (1 2)", srid=unknown)) == 4326
        assert srid_of(WKBElement(shapely.to_wkb(point), srid=unknown)) is None
    assert srid_of("SRID=0;POINT (1 2)") is None


@pytest.mark.parametrize(
    "value",
    [
        "SRID=3857;POINT (1 2)",
        shapely.set_srid(shapely.Point(1, 2), 3857),
        WKTElement("POINT (1 2)", srid=3857),
        to_ewkb(shapely.Point(1, 2), 3857),
    ],
)
def test_conflicting_srid_raises_mismatch(value: Any) -> None:
    with pytest.raises(SRIDMismatch, match="SRID 3857 but SRID 4326") as info:
        to_shape(value, srid=4326)
    assert (info.value.geometry_srid, info.value.column_srid) == (3857, 4326)
    with pytest.raises(SRIDMismatch):
        to_ewkb(value, 4326)


def test_element_whose_srid_contradicts_its_ewkb_raises() -> None:
    element = WKBElement(to_ewkb(shapely.Point(1, 2), 3857), srid=4326, extended=True)
    with pytest.raises(SRIDMismatch):
        to_shape(element)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "unsupported type NoneType"),
        (42, "unsupported type int"),
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("POINT (1", "ParseException"),
        ("POLYGON ((0 0, 1 1))", "do not form a closed linestring"),
        ("not a geometry", "ParseException"),
        (b"\x01\x02", "ParseException"),
        ("0101000000", "ParseException"),
        ("SRID=abc;POINT (1 2)", "bad EWKT SRID prefix"),
        ("SRID=4326;", "ParseException"),
        ({"type": "Pointless", "coordinates": [1, 2]}, "invalid GeoJSON"),
        ({"type": "Point"}, "invalid GeoJSON"),
        ({"type": "Feature", "geometry": None}, "the Feature has no geometry"),
        (  # it quoted numpy's repr of the value, np.str_('x')
            {"type": "Point", "coordinates": ["x", 1]},
            "invalid GeoJSON (could not convert string to float: 'x')",
        ),
        ('{"type": "Point", "coordinates": [1, 2]', "invalid GeoJSON"),
        ("[1, 2]", "ParseException"),
        (WKTElement("POINT (1"), "ParseException"),
        (WKBElement(b"\x00"), "ParseException"),
    ],
)
def test_unreadable_input_names_the_value_and_the_reason(value: Any, reason: str) -> None:
    with pytest.raises(InvalidGeometry) as info:
        to_shape(value)
    message = str(info.value)
    assert message.startswith(f"cannot read a geometry from {repr(value)[:40]}")
    assert reason in message


def test_error_message_truncates_huge_inputs() -> None:
    huge = "POINT (" + "1" * 100_000
    with pytest.raises(InvalidGeometry) as info:
        to_shape(huge)
    message = str(info.value)
    assert len(message) < 300
    assert "'POINT (111" in message
    assert "..." in message
    with pytest.raises(InvalidGeometry) as info:
        to_shape(b"\x01" * 100_000)
    assert len(str(info.value)) < 300


def test_to_ewkb_writes_little_endian_ewkb_with_the_srid() -> None:
    data = to_ewkb("POINT (1 2)", 4326)
    assert data[0] == 1, "little-endian, as PostGIS writes it"
    assert int.from_bytes(data[1:5], "little") & 0x20000000, "SRID flag set"
    assert int.from_bytes(data[5:9], "little") == 4326
    assert srid_of(data) == 4326
    assert same(to_shape(data), shapely.Point(1, 2))


def test_to_element_is_extended_ewkb() -> None:
    element = to_element(shapely.Point(1, 2), 4326)
    assert isinstance(element, WKBElement)
    assert element.extended is True
    assert element.srid == 4326
    assert element.desc == to_ewkb(shapely.Point(1, 2), 4326).hex()
    assert shapely.get_srid(to_shape(element)) == 4326


def test_to_geography_element_refuses_a_geometry_of_another_srid() -> None:
    """It wrote the SRID it was given over the geometry's own (a relabelling, not a
    transformation)."""
    element = to_geography_element(shapely.Point(1, 2))
    assert element.desc == "SRID=4326;POINT (1 2)"
    with pytest.raises(SRIDMismatch, match="has SRID 4269 but SRID 4326 was expected"):
        to_geography_element(shapely.set_srid(shapely.Point(1, 2), 4269))


def test_numpy_integers_are_srids_and_geojson_and_surfaces_are_explained() -> None:
    """NumPy's integers were "not an integer"; GeoJSON without its members said
    "('coordinates')" or "'NoneType' object has no attribute 'lower'"; a TIN was told to
    take ST_CurveToLine, which returns it as it is."""
    point = shapely.Point(1, 2)
    assert to_ewkb(point, np.int32(4326)) == to_ewkb(point, 4326)
    assert to_geography_element(point, np.int64(4326)).desc == "SRID=4326;POINT (1 2)"
    said = {
        "{}": 'it has no "type" member naming a geometry',
        '{"type": "Point"}': 'its Point has no "coordinates" member',
        '{"type": "GeometryCollection"}': 'its GeometryCollection has no "geometries" member',
    }
    for given, words in said.items():
        with pytest.raises(InvalidGeometry, match=words):
            to_shape(json.loads(given))
    with pytest.raises(InvalidGeometry, match="make its faces polygons first .ST_ForceCollection"):
        to_shape("TIN(((0 0 0,0 1 0,1 0 0,0 0 0)))")


@pytest.mark.parametrize("srid", [-1, 1.5, "4326", True])
def test_bad_srid_argument_is_a_configuration_error(srid: Any) -> None:
    with pytest.raises(ConfigurationError, match="srid"):
        to_ewkb(shapely.Point(1, 2), srid)
    with pytest.raises(ConfigurationError, match="srid"):
        encode_ewkb([shapely.Point(1, 2)], srid)


def random_geometries(count: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    geoms: list[Any] = []
    for i in range(count):
        x, y = rng.uniform(-180, 180), rng.uniform(-90, 90)
        match i % 4:
            case 0:
                geoms.append(shapely.Point(x, y))
            case 1:
                geoms.append(shapely.Point(x, y, rng.uniform(-1e3, 1e3)))
            case 2:
                steps = [(x + rng.random(), y + rng.random()) for _ in range(rng.randint(2, 20))]
                geoms.append(shapely.LineString(steps))
            case _:
                geoms.append(shapely.box(x, y, x + rng.random(), y + rng.random()))
    return geoms


def test_encode_ewkb_equals_per_geometry_ewkb() -> None:
    geoms = random_geometries(2000, seed=1)
    geoms[5] = shapely.set_srid(geoms[5], 4326)  # the same SRID is fine
    assert encode_ewkb(geoms, 4326) == [to_ewkb(g, 4326) for g in geoms]
    assert encode_ewkb(tuple(geoms[:3]), 4326) == [to_ewkb(g, 4326) for g in geoms[:3]]
    assert encode_ewkb([], 4326) == []


def test_encode_ewkb_keeps_none_and_names_bad_items() -> None:
    point = shapely.Point(1, 2)
    assert encode_ewkb([None, point, None], 3857) == [None, to_ewkb(point, 3857), None]
    with pytest.raises(InvalidGeometry, match=r"item 2 is 'POINT \(1 2\)'.*to_shape"):
        encode_ewkb([point, point, "POINT (1 2)"], 3857)
    with pytest.raises(SRIDMismatch, match="item 1 has SRID 4326 but SRID 3857") as info:
        encode_ewkb([point, shapely.set_srid(point, 4326)], 3857)
    assert info.value.geometry_srid == 4326


def test_shapes_from_text_reads_many_texts_as_to_shape_reads_each() -> None:
    """WKT, EWKT and hex (E)WKB in one call per form; None for what to_shape alone reads
    (GeoJSON) or refuses (it says why)."""
    geoms = random_geometries(300, seed=2)
    texts = [shapely.to_wkt(g, rounding_precision=-1) for g in geoms[:100]]
    texts += [f" SRID=4326;{shapely.to_wkt(g, rounding_precision=-1)} " for g in geoms[100:200]]
    texts += [to_ewkb(g, 3857).hex() for g in geoms[200:250]]
    texts += [shapely.to_wkb(g, hex=True) for g in geoms[250:]]
    readable = [*texts, "srid=0;POINT (1 2)", "SRID=-1;POINT (1 2)"]
    shapes = shapes_from_text(readable)
    expected = [to_shape(t) for t in readable]
    assert all(shapely.equals_exact(shapes, expected, tolerance=0) | shapely.is_empty(shapes))
    assert shapely.get_srid(shapes).tolist() == [int(shapely.get_srid(e)) for e in expected]
    assert shapely.get_srid(shapes[[0, 100, 200, 250]]).tolist() == [0, 4326, 3857, 0]
    others = ['{"type": "Point", "coordinates": [1, 2]}', "", "POINT (1", "SRID=x;POINT (1 2)"]
    assert shapes_from_text(others).tolist() == [None] * 4
    assert shapes_from_text([]).tolist() == []


# --- PostGIS reads what we write --------------------------------------------------------


def test_postgis_parses_encoded_ewkb(db: SpatialDatabase) -> None:
    geoms = random_geometries(1000, seed=2) + [shapely.from_wkt(w) for w in SAMPLES.values()]
    blobs = encode_ewkb(geoms, 3857)
    query = text(
        "SELECT ST_SRID(g), ST_AsEWKB(g), ST_AsText(g) "
        "FROM unnest(:blobs) WITH ORDINALITY AS t(b, n), ST_GeomFromEWKB(b) AS g ORDER BY n"
    ).bindparams(bindparam("blobs", type_=ARRAY(LargeBinary)))
    with db.session() as session:
        rows = session.execute(query, {"blobs": blobs}).all()
        single = session.execute(
            text("SELECT ST_AsText(ST_GeomFromEWKB(:b)), ST_SRID(ST_GeomFromEWKB(:b))"),
            {"b": to_ewkb("POLYGON ((0 0, 1 0, 1 1, 0 0))", 4326)},
        ).one()
    assert len(rows) == len(geoms)
    for geom, blob, (srid, echoed, wkt) in zip(geoms, blobs, rows, strict=True):
        assert srid == 3857
        assert bytes(echoed) == blob, "PostGIS writes back exactly the bytes we sent"
        assert shapely.get_type_id(shapely.from_wkt(wkt)) == shapely.get_type_id(geom)
    assert tuple(single) == ("POLYGON((0 0,1 0,1 1,0 0))", 4326)


def test_geoalchemy2_binds_our_element_as_exact_ewkb(db: SpatialDatabase) -> None:
    geom = shapely.Point(0.1 + 0.2, 1 / 3)
    element = to_element(geom, 4326)
    stmt = select(func.ST_AsEWKB(bindparam("g", element, type_=Geometry(srid=4326))))
    with db.session() as session:
        echoed = session.scalar(stmt)
    assert echoed is not None
    assert bytes(echoed) == to_ewkb(geom, 4326)


def test_hex_geometries_in_a_server_message_read_as_wkt() -> None:
    point = to_ewkb(shapely.Point(1, 2), 4326).hex().upper()
    square = to_ewkb(shapely.box(0, 0, 1000, 1000).segmentize(10), 4326).hex().upper()
    message = f"Key (geom)=({point}) conflicts with existing key (geom)=({square})."
    readable = hex_as_wkt(message)
    assert readable.startswith("Key (geom)=(POINT (1 2)) conflicts with existing key (geom)=(")
    assert readable.endswith("...).") and len(readable) < 150
    not_wkb = "Failing row contains (01" + "AB" * 30 + ")."
    assert hex_as_wkt(not_wkb) == not_wkb  # hex that is no geometry stays
