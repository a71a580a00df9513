"""GeoJSON Features as rows: what a web API or ``__geo_interface__`` gives.

A Feature (``{"type": "Feature", "geometry": ..., "properties": {...}, "id": ...}``, or an
object whose ``__geo_interface__`` is one, such as a geojson-pydantic model or a Fiona
record) is the row of its properties, its geometry in the target's geometry column, and
its id in the column ``id`` when the table has one and the properties do not, as a
GeoJSON file's ids load. A FeatureCollection (a dict, an object's ``__geo_interface__``,
or GeoJSON text such as an HTTP response's body) is the iterable of its features. GeoJSON
geometries carry EPSG:4326 (RFC 7946), as GeoJSON values always do here.

For create=True, Features and dict rows (an API's records) are typed from their first
10,000 as a DataFrame, widened by the rest of a list; a generator's first rows are read
ahead for it and loaded first (:func:`first_rows`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

import orjson

from geosession.errors import ConfigurationError
from geosession.geometry import srid_of
from geosession.ingest.arrow_streams import is_arrow_stream


def _geo_interface(value: Any, kind: str) -> Mapping[str, Any] | None:
    """``value`` (or its ``__geo_interface__``) when it is GeoJSON of type ``kind``."""
    if not isinstance(value, Mapping):
        value = getattr(value, "__geo_interface__", None)
        if not isinstance(value, Mapping):
            return None
    return value if value.get("type") == kind else None


def is_geojson_text(source: Any) -> bool:
    """Whether ``source`` is GeoJSON as text or bytes (an HTTP response's body), not a path."""
    if isinstance(source, bytes | bytearray):
        return source.lstrip()[:1] == b"{"
    return isinstance(source, str) and source.lstrip()[:1] == "{"


def feature_collection(source: Any) -> Any:
    """A FeatureCollection's features (a list, so its length is known), from a dict, an
    object's ``__geo_interface__`` or GeoJSON text; any other source as it is."""
    if is_geojson_text(source):
        source = _parsed(source)
        if _geo_interface(source, "Feature") is not None:
            return [source]
    collection = _geo_interface(source, "FeatureCollection")
    if collection is None:
        return source
    features = collection.get("features")
    if not isinstance(features, list | tuple):
        raise ConfigurationError(
            "the FeatureCollection has no list of features: GeoJSON's FeatureCollection "
            'holds them as "features": [...]'
        )
    crs = collection.get("crs")
    if crs is None:
        return list(features)
    return [_in_crs(feature, crs) for feature in features]


def _in_crs(feature: Any, crs: Any) -> Any:
    """A Feature of a collection that names its CRS (GeoJSON 2008, as QGIS writes one in
    another CRS than WGS 84), its geometry naming that CRS too: never read as 4326."""
    feature = _geo_interface(feature, "Feature") or feature
    geometry = feature.get("geometry") if isinstance(feature, Mapping) else None
    if not isinstance(geometry, Mapping) or "crs" in geometry:
        return feature
    return {**feature, "geometry": {**geometry, "crs": crs}}


def _parsed(text: str | bytes | bytearray) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ConfigurationError(
            f"the source looks like GeoJSON text but is not JSON ({error}); pass a "
            "FeatureCollection, its features, or a path to a .geojson file"
        ) from None


def feature_values(
    row: Any, number: int, geometry_column: str | None, columns: Collection[str]
) -> Mapping[str, Any] | None:
    """A Feature's values by column (None when ``row`` is no Feature); ``columns`` are
    those the target takes."""
    if isinstance(row, Mapping) and ("type" in columns or "properties" in columns):
        return None  # a table with such columns takes such dicts as they are
    feature = _geo_interface(row, "Feature")
    if feature is None:
        return None
    properties = feature.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise ConfigurationError(f"row {number} is a Feature whose properties are no object")
    if geometry_column is None:
        raise ConfigurationError(
            f"row {number} is a Feature, and its geometry needs the target's geometry column: "
            "the target has none or several; give rows of column names instead"
        )
    values = {**properties, geometry_column: feature.get("geometry")}
    if feature.get("id") is not None and "id" in columns and "id" not in properties:
        values["id"] = feature["id"]
    return values


FRAME_SAMPLE = 10_000
"""Features looked at to make a table for them (create=True)."""


def as_features(source: Any) -> list[Any] | None:
    """``source`` as a list of Features (what a FeatureCollection becomes), else None."""
    if not isinstance(source, list) or not source:
        return None
    return source if _geo_interface(source[0], "Feature") is not None else None


def features_frame(features: list[Any]) -> tuple[Any, bool]:
    """A GeoDataFrame of the first features, in their CRS, with its geometry column named
    ``geom``, for create=True to make the table from; and whether they carry ids of their
    own (``"id"`` beside the properties), which the table's key then takes."""
    import geopandas  # the geo extra, as create=True needs for frames

    sample = [_geo_interface(feature, "Feature") or feature for feature in features[:FRAME_SAMPLE]]
    geometry = next((f["geometry"] for f in sample if f.get("geometry")), None)
    frame = geopandas.GeoDataFrame.from_features(sample)
    if geometry is not None:
        frame = frame.set_crs(srid_of(geometry), allow_override=True)
    if "geom" not in frame.columns:
        frame = frame.rename_geometry("geom")
    properties = sample[0].get("properties") or {}
    return frame, sample[0].get("id") is not None and "id" not in properties


@dataclass
class LaterKinds:
    """What the features past the sample hold that the sample did not foresee (a float
    after integers, text after numbers, a property first seen late, another geometry
    type): the load would set such rows aside, or stop at a property no column takes."""

    properties: dict[str, str] = field(default_factory=dict)
    """Column types, over every feature, of the properties the sample typed too narrowly
    or not at all."""
    geometry_types: set[str] = field(default_factory=set)
    """Geometry types ("LineString") past the sample's."""


def later_kinds(sample: list[Any], rest: Iterable[Any]) -> LaterKinds:
    """What the features past the ``sample`` add to its kinds of value (a pass over them
    in Python: about 1 s per million features)."""
    found = LaterKinds()
    sample_kinds, sample_types = _kinds(sample)
    later, later_types = _kinds(rest)
    for name, kinds in later.items():
        if name not in sample_kinds or not kinds <= sample_kinds[name]:
            found.properties[name] = _json_type(sample_kinds.get(name, set()) | kinds)
    found.geometry_types = later_types - sample_types
    return found


def as_records(source: Any) -> list[Any] | None:
    """``source`` as a list of dict rows (an API's JSON records), else None."""
    if not isinstance(source, list) or not source:
        return None
    return source if all(isinstance(row, Mapping) for row in source) else None


def records_frame(records: list[Any]) -> Any:
    """A DataFrame of the first records, for create=True to make the table from: of
    Python objects, typed by their values as an INSERT of them would be (integers with
    None stay integers)."""
    import pandas

    return pandas.DataFrame(records[:FRAME_SAMPLE], dtype=object)


def later_record_kinds(sample: list[Any], rest: Iterable[Any]) -> dict[str, str]:
    """Column types, over every record, of the keys the ``sample`` (of
    :func:`records_frame`) typed too narrowly (a float after integers) or not at all (a
    key first seen late)."""
    sample_kinds, later = _value_kinds(sample), _value_kinds(rest)
    return {
        name: _json_type(sample_kinds.get(name, set()) | kinds)
        for name, kinds in later.items()
        if name not in sample_kinds or not kinds <= sample_kinds[name]
    }


def _value_kinds(rows: Iterable[Mapping[str, Any]]) -> dict[str, set[type]]:
    """The Python types of each key's values (None aside)."""
    kinds: dict[str, set[type]] = {}
    for row in rows:
        for name, value in row.items():
            seen = kinds.setdefault(name, set())
            if value is not None:
                seen.add(type(value))
    return kinds


def _kinds(features: Iterable[Any]) -> tuple[dict[str, set[type]], set[str]]:
    """The Python types of each property's values (None aside), and the geometry types."""
    geometry_types: set[str] = set()

    def properties() -> Iterator[Mapping[str, Any]]:
        for each in features:
            feature = _geo_interface(each, "Feature") or each
            if geometry := feature.get("geometry"):
                geometry_types.add(str(geometry.get("type")))
            yield feature.get("properties") or {}

    return _value_kinds(properties()), geometry_types


_JSON_TYPES = {
    frozenset({bool}): "boolean",
    frozenset({int}): "bigint",
    frozenset({float}): "double precision",
    frozenset({int, float}): "double precision",
}
"""Column types of JSON values of these kinds; objects and arrays are jsonb, any other
mix (numbers and text) text."""


def _json_type(kinds: set[type]) -> str:
    if kinds and kinds <= {dict, list}:
        return "jsonb"
    return _JSON_TYPES.get(frozenset(kinds), "text")


def first_rows(source: Any, within: float | None = None) -> tuple[Any, Any]:
    """What to type a table from, and the source to load then: for rows read once (a
    generator, an async iterable's) of dicts or GeoJSON Features, the first 10,000 as a
    list (those come ``within`` a flush interval, for a source that trickles), and those
    followed by the rest; any other source twice as it is."""
    if not _read_once(source):
        return source, source
    rows = iter(source)
    head = next(rows, None)
    if head is None:
        return source, rows  # nothing to type a table from: refused as such
    if not (isinstance(head, Mapping) or as_features([head])):
        return source, chain([head], rows)  # tuples, geometries: no names for columns
    sample, started = [head], time.monotonic()
    for row in islice(rows, FRAME_SAMPLE - 1):
        sample.append(row)
        if within is not None and time.monotonic() - started >= within:
            break
    return sample, chain(sample, rows)


def _read_once(source: Any) -> bool:
    """Whether ``source`` gives its rows once, as a generator does (not a collection, a
    file, a path or Arrow data)."""
    if isinstance(source, Sized | str | bytes | os.PathLike) or hasattr(source, "read"):
        return False
    return isinstance(source, Iterable) and not is_arrow_stream(source)
