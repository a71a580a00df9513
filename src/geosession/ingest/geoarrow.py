"""GeoArrow's native encodings (coordinates as Arrow lists of points, interleaved or one
array per dimension), as geopandas' ``to_arrow(geometry_encoding="geoarrow")`` and
GeoParquet 1.1 write them, read into shapely geometries a record batch at a time by
``shapely.from_ragged_array``."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from geosession.errors import ConfigurationError
from geosession.geometry import TYPE_NAMES

NATIVE_TYPES = {
    "point": (shapely.GeometryType.POINT, 0),
    "linestring": (shapely.GeometryType.LINESTRING, 1),
    "polygon": (shapely.GeometryType.POLYGON, 2),
    "multipoint": (shapely.GeometryType.MULTIPOINT, 1),
    "multilinestring": (shapely.GeometryType.MULTILINESTRING, 2),
    "multipolygon": (shapely.GeometryType.MULTIPOLYGON, 3),
}
"""A native encoding's name (GeoParquet's, and GeoArrow's after ``geoarrow.``): its
geometry type, and the levels of lists above its points."""


def native_encoding(name: str) -> str | None:
    """The native encoding a GeoArrow extension or GeoParquet encoding names, else None."""
    encoding = name.lower().removeprefix("geoarrow.")
    return encoding if encoding in NATIVE_TYPES else None


def native_type(arrow_type: Any, encoding: str, column: str) -> str:
    """The geometry type a native column holds, as GeoParquet names it ("Polygon Z");
    M coordinates, which shapely does not hold, are refused."""
    dimensions = _dimensions(_points_type(arrow_type, encoding))
    if "m" in dimensions:
        raise ConfigurationError(
            f"column {column} has M coordinates ({dimensions}), which shapely cannot hold: "
            "drop them, or write the data as WKB (geometry_encoding='WKB')"
        )
    return TYPE_NAMES[NATIVE_TYPES[encoding][0]] + (" Z" if "z" in dimensions else "")


def native_geometries(array: Any, encoding: str) -> list[Any]:
    """A natively encoded Arrow array (of a column :func:`native_type` took) as shapely
    geometries, None where it is null."""
    import pyarrow

    geometry_type, depth = NATIVE_TYPES[encoding]
    values = pyarrow.concat_arrays([array])  # offsets from 0, as from_ragged_array reads them
    offsets = []
    for _ in range(depth):
        offsets.append(np.asarray(values.offsets))
        values = values.values
    coordinates = _coordinates(values, len(_dimensions(values.type)))
    if len(coordinates):
        geometries = shapely.from_ragged_array(geometry_type, coordinates, tuple(offsets[::-1]))
    else:  # only empty or null geometries, which from_ragged_array cannot make alone
        geometries = shapely.empty(len(array), geom_type=geometry_type)
    geometries[np.asarray(array.is_null())] = None
    return list(geometries)


def _points_type(arrow_type: Any, encoding: str) -> Any:
    for _ in range(NATIVE_TYPES[encoding][1]):
        arrow_type = arrow_type.value_type
    return arrow_type


def _dimensions(points_type: Any) -> str:
    """ "xy", "xyz", "xym" or "xyzm": the interleaved list's field name, or the struct's."""
    if hasattr(points_type, "list_size"):  # interleaved: fixed_size_list<xyz: double>[3]
        name = points_type.value_field.name.lower()
        return name if set(name) <= set("xyzm") else "xyzm"[: points_type.list_size]
    return "".join(points_type.field(i).name.lower() for i in range(points_type.num_fields))


def _coordinates(points: Any, size: int) -> Any:
    """The points as an (n, size) float array."""
    if hasattr(points.type, "list_size"):
        return np.asarray(points.values).reshape(-1, size)
    return np.column_stack([np.asarray(points.field(i)) for i in range(size)])
