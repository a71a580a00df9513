"""A geometry column's source values read into shapely geometries, before they are checked.

Values come as shapely objects, WKB or EWKB bytes, WKT, EWKT or hex EWKB text, GeoJSON
geometry dicts, or :class:`Unreadable` (coordinates a reader could make no point of):
each kind is read in one vectorized call where it can be, value by value where it must
(which also words why a value could not be read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import shapely

from geosession.errors import InvalidGeometry
from geosession.geometry import (
    GEOJSON_SRID,
    from_geojson,
    from_wkb_each,
    is_geojson,
    object_array,
    shapes_from_text,
    to_shape,
)

_REASON_LIMIT = 500
"""Characters of a parser's message a reject's reason keeps."""


@dataclass(frozen=True)
class Unreadable:
    """A value a reader could make no geometry of (coordinates that are missing or no
    numbers), with why; ``text``, the value as given, is the reject's value."""

    reason: str
    text: str

    def __str__(self) -> str:
        return self.text


def parse_geometries(
    values: list[Any], default_srid: int | None
) -> tuple[np.ndarray[Any, Any], dict[int, tuple[str, str]], np.ndarray[Any, Any]]:
    """shapely geometries (None for NULL), the rows that could not be parsed, and the WKB
    of the rows that came as WKB (None elsewhere). GeoJSON that names no CRS is in
    ``default_srid`` when given, else 4326 (RFC 7946), never silently the column's."""
    kinds = set(map(type, values))  # one pass in C, then a check per distinct type
    wkb = np.full(len(values), None, dtype=object)
    if all(kind is type(None) or issubclass(kind, shapely.Geometry) for kind in kinds):
        return object_array(values), {}, wkb
    if kinds <= {bytes, type(None)}:  # a vector file's WKB: no per-value dispatch
        wkb = object_array(values)
    else:
        binary = [i for i, v in enumerate(values) if isinstance(v, bytes | bytearray | memoryview)]
        wkb[binary] = [bytes(values[i]) for i in binary]
    geoms = from_wkb_each(wkb)
    if str in kinds:
        texts = [i for i, v in enumerate(values) if type(v) is str]
        geoms[texts] = shapes_from_text([values[i] for i in texts])
    problems: dict[int, tuple[str, str]] = {}
    pending = (geoms == None) & ~nulls(values)  # noqa: E711
    if dict in kinds:
        _geojson_geometries(values, geoms, pending, default_srid)
    for index in np.flatnonzero(pending & (geoms == None)):  # noqa: E711
        if isinstance(values[index], Unreadable):
            problems[int(index)] = ("unparsable", values[index].reason)
            continue
        try:
            with np.errstate(all="ignore"):  # NaN, 1e400: the non-finite check judges them
                value = values[index]
                geoms[index] = (
                    from_geojson(value, srid=default_srid) if is_geojson(value) else to_shape(value)
                )
        except InvalidGeometry as error:
            problems[int(index)] = _parse_problem(_parser_words(error))
    wkb[pending] = None  # unparsable WKB is rejected, and other values are not WKB
    return geoms, problems, wkb


GEOJSON_TYPES = frozenset(
    {
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "GeometryCollection",
    }
)
"""The types of a GeoJSON geometry object (a Feature's, or a record's from a web API)."""


def _geojson_geometries(
    values: list[Any], geoms: np.ndarray[Any, Any], pending: np.ndarray[Any, Any], srid: int | None
) -> None:
    """GeoJSON geometry dicts (a web API's, a Feature's) read in one vectorized GEOS call
    into ``geoms``, in ``srid`` or 4326 (RFC 7946). Those naming a legacy ``crs``, those
    GEOS does not read (an unclosed ring, which shapely closes) and anything else are left
    for the reading of one value at a time, which also words the errors."""
    plain = [
        int(i)
        for i in np.flatnonzero(pending)
        if type(values[i]) is dict
        and values[i].get("type") in GEOJSON_TYPES
        and "crs" not in values[i]
    ]
    if not plain:
        return
    texts = []
    for i in plain:
        try:
            texts.append(orjson.dumps(values[i]))
        except TypeError:  # a value JSON cannot hold (a Decimal): read alone
            texts.append(b"null")
    read = shapely.from_geojson(object_array(texts), on_invalid="ignore")  # None: unread
    geoms[plain] = shapely.set_srid(read, srid or GEOJSON_SRID)


def _parser_words(error: InvalidGeometry) -> str:
    """GEOS's own message for WKB or WKT it could not read (the value is stored beside
    the reason, so it is not repeated); else geosession's, which says what was expected."""
    cause = error.__cause__
    text = str(cause) if isinstance(cause, shapely.errors.GEOSException) else str(error)
    return text[:_REASON_LIMIT]


def nulls(values: list[Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which values are None (a pass in C when there are none)."""
    if values.count(None) == 0:
        return np.zeros(len(values), dtype=bool)
    return np.fromiter((v is None for v in values), dtype=bool, count=len(values))


def _parse_problem(message: str) -> tuple[str, str]:
    lowered = message.lower()
    if "closed linestring" in lowered or "not closed" in lowered:
        return "unclosed_ring", f"unclosed ring: {message}"
    if "must be 0 or >" in lowered or "at least" in lowered or "0 or >1" in lowered:
        return "too_few_points", f"too few points: {message}"
    return "unparsable", message
