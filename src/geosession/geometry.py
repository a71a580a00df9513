"""Geometry conversion and SRID checks: pure functions, no database.

Everything a user may hand geosession (shapely objects, WKB/EWKB, hex, WKT/EWKT, GeoJSON,
GeoAlchemy2 elements) goes in through :func:`to_shape`. Everything geosession sends to
PostGIS goes out as EWKB (:func:`to_ewkb`, :func:`encode_ewkb`, :func:`to_element`): binary
is exact and compact, carries the SRID, and the server decodes it without parsing text.

A geometry's SRID travels on the shapely object (``shapely.get_srid``); 0 or a negative
value means "unknown". When two sources state different SRIDs the functions raise
:class:`~geosession.errors.SRIDMismatch` rather than silently relabel coordinates.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import shapely
import shapely.errors
import shapely.geometry
from geoalchemy2.elements import WKBElement, WKTElement

from geosession.errors import ConfigurationError, InvalidGeometry, SRIDMismatch
from geosession.wkb import NOT_IN_GEOS, type_code, wkb_srid

GeometryLike: TypeAlias = Any
"""Anything :func:`to_shape` reads (shapely is untyped, so this cannot be narrower)."""

_REPR_LIMIT = 80
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# GEOS writes WKT with a fixed number of decimals; 20 keeps every double exact
# (shapely's default of 6, and even -1 = "full", lose the last bits).
_WKT_DECIMALS = 20
# Little-endian EWKB: what PostGIS itself emits, so bytes compare equal to ST_AsEWKB.
_LITTLE_ENDIAN = 1
GEOJSON_SRID = 4326
"""The SRID of GeoJSON that names no CRS: RFC 7946 fixes its coordinates to WGS 84
longitude/latitude, and PostGIS's ST_GeomFromGeoJSON assumes the same."""
_OGC_CRS = {"CRS84": 4326, "CRS83": 4269, "CRS27": 4267}
TYPE_NAMES = (
    "Point",
    "LineString",
    "LinearRing",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
    "GeometryCollection",
)
"""Geometry type names by shapely's type id (``shapely.get_type_id``), as OGC and
GeoParquet spell them."""

Bbox: TypeAlias = tuple[float, float, float, float]
"""A bounding box: minx, miny, maxx, maxy."""


def is_bbox(box: Sequence[float]) -> bool:
    """Four finite numbers with miny <= maxy, and minx <= maxx unless the box crosses the
    antimeridian: RFC 7946 writes such a box from its western edge (minx, the larger
    longitude) to its eastern one, both from -180 to 180."""
    if len(box) != 4 or not all(map(math.isfinite, box)):
        return False
    minx, miny, maxx, maxy = box
    return miny <= maxy and (minx <= maxx or -180 <= maxx < minx <= 180)


def bbox_parts(box: Bbox) -> list[Bbox]:
    """The box, or its two halves on either side of the antimeridian when it crosses it."""
    minx, miny, maxx, maxy = box
    if minx <= maxx:
        return [box]
    return [(minx, miny, 180.0, maxy), (-180.0, miny, maxx, maxy)]


def to_shape(value: GeometryLike, *, srid: int | None = None) -> shapely.Geometry:
    """Read any supported geometry value into shapely, keeping or applying its SRID.

    ``srid`` is applied when the value carries none; when it carries a different one,
    :class:`SRIDMismatch` is raised. GeoJSON always carries one: the EPSG code its legacy
    ``crs`` member names, else 4326 (RFC 7946; :func:`from_geojson` reads GeoJSON written
    in another CRS). Unreadable values raise :class:`InvalidGeometry`.
    """
    if isinstance(value, shapely.Geometry):
        return _apply_srid(value, srid, value)
    if isinstance(value, WKBElement | WKTElement):
        geom = _parse(value.data, value)
        geom = _apply_srid(geom, _known(value.srid), value)
        return _apply_srid(geom, srid, value)
    if is_geojson(value):
        return _apply_srid(from_geojson(value), srid, value)
    return _apply_srid(_parse(value, value), srid, value)


def from_geojson(obj: Mapping[str, Any] | str, *, srid: int | None = None) -> shapely.Geometry:
    """Read a GeoJSON geometry (or Feature) given as a dict or a JSON string.

    Its SRID is the EPSG code a legacy ``crs`` member names (GeoJSON 2008), else ``srid``,
    which says what CRS GeoJSON written against RFC 7946 is in, else 4326: RFC 7946 GeoJSON
    is longitude/latitude, as PostGIS's ST_GeomFromGeoJSON assumes. A ``crs`` member that
    disagrees with ``srid`` raises :class:`SRIDMismatch`.
    """
    geom = _parse_geojson(obj, obj)
    if _known(int(shapely.get_srid(geom))) is None:
        return shapely.set_srid(geom, _known(srid) or GEOJSON_SRID)
    return _apply_srid(geom, srid, obj)


def is_valid(geoms: Any) -> Any:
    """``shapely.is_valid`` without the ``warnings.catch_warnings`` it wraps GEOS's check
    in, which is not thread-safe (:mod:`geosession.warning_filters`): validating threads
    racing through it left an "ignore every warning" filter in force for good. GEOS's
    validity check warns of nothing (its reasons are :func:`shapely.is_valid_reason`'s)."""
    return shapely.lib.is_valid(geoms)


def is_geojson(value: Any) -> bool:
    """Whether :func:`to_shape` reads ``value`` as GeoJSON: a mapping, or JSON text."""
    return isinstance(value, Mapping) or (isinstance(value, str) and _is_json_text(value))


def to_ewkb(geom: GeometryLike, srid: int) -> bytes:
    """Encode one geometry as EWKB with ``srid`` (checked against any SRID it carries)."""
    shape = to_shape(geom, srid=_check_srid_arg(srid))
    data: bytes = shapely.to_wkb(shape, include_srid=True, byte_order=_LITTLE_ENDIAN)
    return data


def object_array(items: Sequence[Any]) -> np.ndarray[Any, Any]:
    """An object array of ``items`` as they are (10x faster than slice assignment, which
    asks each shapely geometry whether it is a sequence)."""
    return np.fromiter(items, dtype=object, count=len(items))


def encode_ewkb(geoms: Sequence[Any], srid: int) -> list[bytes | None]:
    """Encode many shapely geometries as EWKB in one vectorized call.

    This is the bulk-ingest hot path: besides building the array there is no per-row
    Python work. ``None`` entries stay ``None`` (SQL NULL). Items must already be shapely
    geometries (use :func:`to_shape` first); an item with another SRID raises
    :class:`SRIDMismatch` naming its index.
    """
    srid = _check_srid_arg(srid)
    arr = object_array(geoms)
    try:
        current = shapely.get_srid(arr)
    except TypeError:
        index = next(i for i, g in enumerate(arr) if not _is_geometry_or_none(g))
        raise InvalidGeometry(
            f"item {index} is {_describe(arr[index])}: encode_ewkb needs shapely geometries "
            "or None; convert other values with geosession.geometry.to_shape"
        ) from None
    conflicts = np.flatnonzero((current > 0) & (current != srid))
    if conflicts.size:
        index = int(conflicts[0])
        raise srid_mismatch(int(current[index]), srid, f"item {index}")
    encoded = shapely.to_wkb(
        shapely.set_srid(arr, srid), include_srid=True, byte_order=_LITTLE_ENDIAN
    )
    result: list[bytes | None] = encoded.tolist()
    return result


def to_element(geom: GeometryLike, srid: int) -> WKBElement:
    """Wrap a geometry as an extended (EWKB) GeoAlchemy2 element for binding.

    GeoAlchemy2's ``from_shape`` defaults to ``extended=False``; binding such an element
    makes GeoAlchemy2 parse the WKB again and send EWKT text, which costs a parse and a
    format per value and is larger on the wire. An extended element is sent as hex EWKB,
    which PostGIS decodes exactly and directly.
    """
    return WKBElement(to_ewkb(geom, srid), srid=srid, extended=True)


def to_geography_element(geom: GeometryLike, srid: int = 4326) -> WKTElement:
    """Wrap a geometry as an EWKT GeoAlchemy2 element for a ``geography`` column.

    GeoAlchemy2 binds a geography through ``ST_GeogFromText``, which reads text only, so
    an EWKB element (:func:`to_element`) fails there with "parse error". Every double is
    written exactly. A geometry of another SRID is :class:`SRIDMismatch`, as in
    :func:`to_element`.
    """
    shape = to_shape(geom, srid=_check_srid_arg(srid))
    return WKTElement(f"SRID={srid};{to_wkt(shape)}", srid=srid, extended=True)


def to_wkt(geom: GeometryLike) -> str:
    """Return WKT with every double written exactly (no SRID; see :func:`srid_of`)."""
    text: str = shapely.to_wkt(to_shape(geom), rounding_precision=_WKT_DECIMALS, trim=True)
    return text


def wkt_array(geoms: Any) -> Any:
    """WKT of an array of shapely geometries (None for None), every double exact."""
    return shapely.to_wkt(geoms, rounding_precision=_WKT_DECIMALS, trim=True)


def to_geojson(geom: GeometryLike) -> dict[str, Any]:
    """Return a GeoJSON geometry dict (plain lists, full precision; M values dropped),
    polygons turned to RFC 7946's right-hand rule as the exports write them."""
    shape = shapely.orient_polygons(to_shape(geom), exterior_cw=False)
    data: dict[str, Any] = json.loads(shapely.to_geojson(shape))
    return data


_HEX_GEOMETRY = re.compile(r"\b0[01](?:[0-9A-F]{2}){20,}\b")
"""A geometry as the server writes it in a message: hex EWKB, hundreds of characters."""


def hex_as_wkt(message: str, width: int = 80) -> str:
    """The server's message with each geometry as the start of its WKT ("Key (geom)=(0103...)
    conflicts with existing key": which parcel?)."""

    def wkt(match: re.Match[str]) -> str:
        try:
            text = str(shapely.from_wkb(match[0]).wkt)
        except shapely.errors.ShapelyError:
            return match[0]
        return text if len(text) <= width else text[: width - 3] + "..."

    return _HEX_GEOMETRY.sub(wkt, message)


def srid_of(value: GeometryLike) -> int | None:
    """Return the SRID a value carries, or None when it carries none (0 or -1); GeoJSON
    carries 4326 unless its ``crs`` member names another."""
    if isinstance(value, shapely.Geometry):
        return _known(int(shapely.get_srid(value)))
    if isinstance(value, WKBElement | WKTElement) and _known(value.srid) is not None:
        return int(value.srid)
    return _known(int(shapely.get_srid(to_shape(value))))


# --- parsing --------------------------------------------------------------------------


def _parse(data: Any, original: Any) -> shapely.Geometry:
    """Dispatch on the raw value's type; ``original`` is what the user passed."""
    if isinstance(data, bytes | bytearray | memoryview):
        return _load(shapely.from_wkb, bytes(data), original)
    if isinstance(data, str):
        return _parse_text(data, original)
    if isinstance(data, Mapping):
        return _parse_geojson(data, original)
    raise InvalidGeometry(
        f"cannot read a geometry from {_describe(original)}: unsupported type "
        f"{type(original).__name__} (expected shapely geometry, WKB/EWKB bytes or hex, "
        "WKT/EWKT, GeoJSON, or a GeoAlchemy2 element)"
    )


def shapes_from_text(texts: Sequence[str]) -> np.ndarray[Any, Any]:
    """Many WKT, EWKT and hex (E)WKB texts read with one shapely call per form.

    None where a text is in another form (GeoJSON) or does not parse: :func:`to_shape`,
    one value at a time, reads those or says why not. A CSV's WKT column is read this way,
    without the cost of a shapely call per value.
    """
    shapes = np.full(len(texts), None, dtype=object)
    wkt: dict[int, tuple[str, int]] = {}  # by position: the WKT and its SRID (0: none)
    hexes: dict[int, str] = {}
    for index, text in enumerate(texts):
        stripped = text.strip()
        form = _text_form(stripped)
        if form == "hex":
            hexes[index] = stripped
        elif form == "wkt":
            wkt[index] = (stripped, 0)
        elif form == "ewkt" and (srid := _ewkt_srid(stripped)) is not None:
            wkt[index] = (stripped.partition(";")[2], _known(srid) or 0)
    if wkt:
        texts_and_srids = list(zip(*wkt.values(), strict=True))
        parsed = from_wkt_each(list(texts_and_srids[0]))
        shapes[list(wkt)] = shapely.set_srid(parsed, list(texts_and_srids[1]))
    if hexes:
        shapes[list(hexes)] = from_wkb_each(list(hexes.values()))
    return shapes


def _parse_text(text: str, original: Any) -> shapely.Geometry:
    stripped = text.strip()
    form = _text_form(stripped)
    if form == "empty":
        raise InvalidGeometry(f"cannot read a geometry from {_describe(original)}: it is empty")
    if form == "geojson":
        return _parse_geojson(stripped, original)
    if form == "hex":
        return _load(shapely.from_wkb, stripped, original)
    if form == "ewkt":
        header, _, wkt = stripped.partition(";")
        srid = _ewkt_srid(header)
        if srid is None:
            raise _unreadable(original, f"bad EWKT SRID prefix {header!r}")
        return _apply_srid(_load(shapely.from_wkt, wkt, original), _known(srid), original)
    return _load(shapely.from_wkt, stripped, original)


def _text_form(stripped: str) -> str:
    """empty, geojson, hex ((E)WKB), ewkt (SRID=...;WKT) or wkt."""
    if not stripped:
        return "empty"
    if _is_json_text(stripped):
        return "geojson"
    if stripped[:2] in ("00", "01") and _HEX_DIGITS.issuperset(stripped):
        return "hex"
    return "ewkt" if stripped[:5].upper() == "SRID=" else "wkt"


def _is_json_text(text: str) -> bool:
    return text.lstrip().startswith("{")


def _ewkt_srid(text: str) -> int | None:
    """The SRID of an EWKT prefix ("SRID=4326" or the whole "SRID=4326;POINT(...)")."""
    try:
        return int(text.partition(";")[0][5:])
    except ValueError:
        return None


def _parse_geojson(obj: Mapping[str, Any] | str, original: Any) -> shapely.Geometry:
    try:
        data = json.loads(obj) if isinstance(obj, str) else obj
        if not isinstance(data, Mapping):
            raise ValueError(f"JSON value is a {type(data).__name__}, not an object")
        if not isinstance(data.get("type"), str):
            raise ValueError('it has no "type" member naming a geometry, such as "Point"')
        srid = _geojson_crs(data)
        if data.get("type") == "Feature":
            data = data.get("geometry")
            if data is None:
                raise ValueError("the Feature has no geometry")
            srid = _geojson_crs(data) or srid
        members = ("geometries",) if data.get("type") == "GeometryCollection" else ("coordinates",)
        missing = [member for member in members if member not in data]
        if missing:
            raise ValueError(f'its {data.get("type")} has no "{missing[0]}" member')
        geom = shapely.geometry.shape(data)
        return shapely.set_srid(geom, srid) if srid else geom
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise _unreadable(original, f"invalid GeoJSON ({_plain(exc)})") from exc
    except shapely.errors.ShapelyError as exc:
        raise _unreadable(original, f"invalid GeoJSON ({_plain(exc)})") from exc


def _plain(error: Exception) -> str:
    """An error's words without numpy's reprs of the values it quotes (np.str_('x'))."""
    return re.sub(r"np\.(?:str_|float64|int64)\((.*?)\)", r"\1", str(error))


def _geojson_crs(data: Mapping[str, Any]) -> int | None:
    """The EPSG code a legacy (GeoJSON 2008) ``crs`` member names: {"type": "name",
    "properties": {"name": "EPSG:3857"}}, or its URN and OGC CRS84 forms."""
    crs = data.get("crs")
    if crs is None:
        return None
    name = crs.get("properties", {}).get("name") if isinstance(crs, Mapping) else None
    if not isinstance(name, str):
        raise ValueError(f"its crs member {crs!r} names no CRS")
    code = _crs_name_code(name)
    if code is None:
        raise ValueError(
            f"its crs member names {name!r}, not an EPSG code: remove the member and pass srid="
        )
    return code


def _crs_name_code(name: str) -> int | None:
    """The SRID of "EPSG:3857", "urn:ogc:def:crs:EPSG::3857" or "urn:ogc:def:crs:OGC:1.3:CRS84"."""
    parts = name.strip().upper().removeprefix("URN:OGC:DEF:CRS:").split(":")
    return authority_code(parts[0], parts[-1]) if len(parts) > 1 else None


def authority_code(authority: str, code: str) -> int | None:
    """The EPSG SRID an authority's code names: EPSG's own, or OGC's CRS84 family's
    (EPSG's CRS with longitude first, which is PostGIS's order for those SRIDs anyway)."""
    if authority.upper() == "EPSG" and code.isdigit() and int(code) > 0:
        return int(code)
    return _OGC_CRS.get(code.upper()) if authority.upper() == "OGC" else None


def _load(loader: Any, data: Any, original: Any) -> shapely.Geometry:
    """Run a shapely reader, turning its errors into InvalidGeometry (and a number past a
    float's range into infinity, for the non-finite check, without numpy's warning)."""
    try:
        with np.errstate(all="ignore"):
            return loader(data)
    except NotImplementedError:  # shapely's "Nonlinear geometry types"
        raise _unreadable(original, _not_in_geos(not_in_geos(data) or "curve")) from None
    except (shapely.errors.ShapelyError, ValueError, TypeError) as exc:
        kind = not_in_geos(data)
        if kind is not None:  # GEOS's "Unknown WKB type 16" says less
            raise _unreadable(original, _not_in_geos(kind)) from None
        raise _unreadable(original, str(exc)) from exc


_SURFACES = ("PolyhedralSurface", "TIN", "Triangle")


def _not_in_geos(kind: str) -> str:
    if kind in _SURFACES:  # ST_CurveToLine returns them as they are
        return (
            f"it is a {kind}, which shapely (GEOS) cannot hold: make its faces polygons "
            "first (ST_ForceCollection in PostGIS, ogr2ogr -nlt CONVERT_TO_LINEAR)"
        )
    return (
        f"it is a {kind}, which shapely (GEOS) cannot hold: make it linear first "
        "(ST_CurveToLine in PostGIS, ogr2ogr -nlt CONVERT_TO_LINEAR)"
    )


def not_in_geos(value: Any) -> str | None:
    """The type of an (E)WKB value (bytes or hex) or a WKT text when shapely cannot hold
    it, else None."""
    text = value.strip() if isinstance(value, str) else ""
    form = _text_form(text)
    if form in ("wkt", "ewkt"):
        wkt = text.partition(";")[2] if form == "ewkt" else text
        first = wkt.strip().split("(")[0].split(" ")[0].upper()
        return next((name for name in NOT_IN_GEOS.values() if name.upper() == first), None)
    try:
        data = bytes.fromhex(value[:10]) if isinstance(value, str) else bytes(value[:5])
    except (TypeError, ValueError):
        return None
    if len(data) < 5 or data[0] not in (0, 1):
        return None
    return NOT_IN_GEOS.get(type_code(data))


def stated_srid(text: str) -> int:
    """The SRID a geometry's text states: EWKT's ``SRID=`` prefix, or hex EWKB's header
    (0: none, as in WKT and WKB)."""
    if text[:5].upper() == "SRID=":
        return _ewkt_srid(text) or 0
    try:
        return wkb_srid(bytes.fromhex(text[:18])) if len(text) >= 18 else 0
    except ValueError:  # not hex: WKT
        return 0


def from_wkb_each(values: Any) -> np.ndarray[Any, Any]:
    """``shapely.from_wkb`` of many values, None for those it cannot read."""
    return _each(shapely.from_wkb, values)


def from_wkt_each(values: Any) -> np.ndarray[Any, Any]:
    """``shapely.from_wkt`` of many values, None for those it cannot read."""
    return _each(shapely.from_wkt, values)


def _each(loader: Any, values: Any) -> np.ndarray[Any, Any]:
    """One call of ``loader`` unless a value is a curve, for which shapely refuses the
    whole array: then a call per value. A number past a float's range reads as infinity
    (for the non-finite check) without numpy's warning."""
    with np.errstate(all="ignore"):
        try:
            return np.asarray(loader(values, on_invalid="ignore"), dtype=object)
        except NotImplementedError:
            shapes = np.full(len(values), None, dtype=object)
            for index, value in enumerate(values):
                with contextlib.suppress(NotImplementedError):
                    shapes[index] = loader(value, on_invalid="ignore")
            return shapes


# --- SRIDs ------------------------------------------------------------------------------


def _apply_srid(geom: shapely.Geometry, srid: int | None, original: Any) -> shapely.Geometry:
    """Give ``geom`` the SRID ``srid`` unless it already has it; refuse a different one."""
    wanted = _known(srid)
    if wanted is None:
        return geom
    current = _known(int(shapely.get_srid(geom)))
    if current is None:
        return shapely.set_srid(geom, wanted)
    if current != wanted:
        raise srid_mismatch(current, wanted, _describe(original))
    return geom


def _known(srid: int | None) -> int | None:
    """Normalise "unknown" SRIDs (None, 0, -1) to None."""
    return srid if srid is not None and srid > 0 else None


def _check_srid_arg(srid: int) -> int:
    """``srid`` as an int: NumPy's integers too (shapely.get_srid gives one)."""
    if isinstance(srid, bool) or not isinstance(srid, numbers.Integral) or srid < 0:
        raise ConfigurationError(f"srid must be an integer >= 0, got {srid!r}")
    return int(srid)


def srid_mismatch(current: int, wanted: int, what: str) -> SRIDMismatch:
    """The error for ``what``, of SRID ``current``, where SRID ``wanted`` was expected."""
    return SRIDMismatch(
        f"{what} has SRID {current} but SRID {wanted} was expected; "
        "transform it (ST_Transform or pyproj) instead of relabelling it",
        geometry_srid=current,
        column_srid=wanted,
    )


# --- messages ---------------------------------------------------------------------------


def _describe(value: Any) -> str:
    """A repr short enough for an error message."""
    return _shorten(repr(value), _REPR_LIMIT)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unreadable(original: Any, reason: str) -> InvalidGeometry:
    # Parser messages may quote the input back: shorten them too.
    return InvalidGeometry(
        f"cannot read a geometry from {_describe(original)}: {_shorten(reason, 2 * _REPR_LIMIT)}"
    )


def _is_geometry_or_none(value: Any) -> bool:
    return value is None or isinstance(value, shapely.Geometry)


__all__ = [
    "GeometryLike",
    "authority_code",
    "encode_ewkb",
    "from_geojson",
    "from_wkb_each",
    "from_wkt_each",
    "is_geojson",
    "not_in_geos",
    "shapes_from_text",
    "srid_of",
    "to_element",
    "to_ewkb",
    "to_geography_element",
    "to_geojson",
    "to_shape",
    "to_wkt",
]
