"""Which field of a source holds its geometries when nothing declares or names one.

A field (a DataFrame's object, text or bytes column, a text or binary field of Arrow data
without GeoArrow or GeoParquet metadata, a CSV's field, a dict row's key) holds
geometries when its first values (nulls aside) all are: shapely objects, WKB or EWKB
bytes of a known geometry type (as read_sql gives), WKT, EWKT or hex EWKB text (as a CSV
holds), or GeoJSON geometry objects (a web API's records). One such field is the
geometry column of the table create=True makes, under its own name, or lands in the
target's one geometry column when no field names it; two make no guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import shapely

from geosession.geometry import GEOJSON_SRID, srid_of, stated_srid
from geosession.ingest.geometry_values import GEOJSON_TYPES
from geosession.ingest.text_types import TextKinds
from geosession.wkb import wkb_srid, wkb_type_name

SAMPLE = 1000
"""Values a field is judged by."""

_SMALLEST_WKB = 21
"""Bytes of the smallest WKB geometry (a point: byte order, type, two doubles)."""

ARROW_CANDIDATES = (
    "string",
    "large_string",
    "string_view",
    "binary",
    "large_binary",
    "binary_view",
)
"""Arrow types a field of geometries has without an extension: text and bytes (polars'
are views)."""


def geometry_field(samples: Mapping[str, list[Any]]) -> str | None:
    """The one field whose sampled values all are geometries, else None."""
    found = [name for name, values in samples.items() if holds_geometries(values)]
    return found[0] if len(found) == 1 else None


def holds_geometries(values: list[Any]) -> bool:
    """Whether ``values`` (no nulls among them) are all geometries of one form."""
    if not values:
        return False
    if all(isinstance(v, shapely.Geometry) for v in values):
        return True
    if all(isinstance(v, bytes) for v in values):  # WKB of a known type, not other bytes
        return all(_known_wkb(v) for v in values)
    if all(isinstance(v, Mapping) for v in values):  # an API's GeoJSON geometries
        return all(v.get("type") in GEOJSON_TYPES for v in values)
    if not all(isinstance(v, str) for v in values):
        return False
    kinds = TextKinds(["values"], decimal_comma=False)
    kinds.see({"values": values})
    return kinds.wkt_fields() == ["values"]


def _known_wkb(value: bytes) -> bool:
    return len(value) >= _SMALLEST_WKB and not wkb_type_name(value).startswith("Unknown")


def srid_stated(values: list[Any]) -> int | None:
    """The SRID every value states (a shapely object's, EWKT's, EWKB's, GeoJSON's), if
    they agree on one; None where any states none."""
    stated = {_value_srid(v) for v in values}
    return stated.pop() if len(stated) == 1 and 0 not in stated else None


def _value_srid(value: Any) -> int:
    if isinstance(value, shapely.Geometry):
        return int(shapely.get_srid(value))
    if isinstance(value, Mapping):  # RFC 7946's, unless a legacy crs member names another
        return (srid_of(value) or 0) if "crs" in value else GEOJSON_SRID
    return wkb_srid(value) if isinstance(value, bytes) else stated_srid(value)


def frame_geometries(frame: Any, labels: Iterable[Any]) -> Any:
    """The label, among ``labels``, of a DataFrame's one object, text or bytes column that
    holds geometries, else None."""
    samples = {
        label: frame[label].dropna().head(SAMPLE).tolist()
        for label in labels
        if str(frame[label].dtype).startswith(_OBJECTS_TEXT_OR_BYTES)
    }
    return geometry_field(samples)


_OBJECTS_TEXT_OR_BYTES = ("object", "str", "string", "large_string", "binary", "large_binary")
"""Dtypes of a column of Python objects, text or bytes: pandas' string dtypes (its default
for text since 3.0) and Arrow's (``dtype_backend="pyarrow"``: ``string[pyarrow]``)."""


def arrow_geometries(
    schema: Any, names: Iterable[str], first_batches: Callable[[], Iterable[Any]]
) -> tuple[str, list[Any]] | None:
    """The one field, among ``names``, of Arrow data of ``schema`` whose values in
    ``first_batches()`` are all geometries, and those values (for their SRID), else None.
    Only text and binary fields are read."""
    typed = [name for name in names if str(schema.field(name).type) in ARROW_CANDIDATES]
    if not typed:
        return None
    samples = arrow_samples(first_batches(), typed)
    found = geometry_field(samples)
    return None if found is None else (found, samples[found])


def arrow_samples(batches: Iterable[Any], names: list[str]) -> dict[str, list[Any]]:
    """The values of fields ``names`` in the first SAMPLE rows of record batches, nulls
    aside."""
    samples: dict[str, list[Any]] = {name: [] for name in names}
    rows = 0
    for batch in batches:
        part = batch.slice(0, SAMPLE - rows)
        for name in names:
            values = part.column(name).to_pylist()  # (drop_null has no view kernels)
            samples[name].extend(value for value in values if value is not None)
        rows += part.num_rows
        if rows >= SAMPLE:
            break
    return samples
