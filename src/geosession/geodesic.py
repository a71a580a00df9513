"""Lengths and areas on the ellipsoid, as PostGIS measures a ``geography``.

PostGIS computes ST_Area, ST_Length and ST_Perimeter of a geography on the spheroid of
its SRID with GeographicLib; pyproj's ``Geod`` wraps the same library, so a value
computed here agrees with the server's to about 1e-13 relative. Needs pyproj (the ``geo``
extra). As in PostGIS, area counts polygons, length lines and perimeter polygon rings
(holes included); of a GeometryCollection, PostGIS's length and perimeter both count the
lines and the rings (unlike a geometry's), and so do these.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import shapely
from shapely.geometry.polygon import orient

from geosession.errors import ConfigurationError


def area(shape: shapely.Geometry, srid: int) -> float:
    """Square metres of the polygonal parts (ST_Area of a geography)."""
    geod = _geod(srid)
    return sum((abs(geod.geometry_area_perimeter(orient(p))[0]) for p in _parts(shape, 2)), 0.0)


def length(shape: shapely.Geometry, srid: int) -> float:
    """Metres along the linear parts (ST_Length of a geography)."""
    return _linear(shape, srid, lines=True, rings=_is_collection(shape))


def perimeter(shape: shapely.Geometry, srid: int) -> float:
    """Metres around the polygonal parts' rings (ST_Perimeter of a geography)."""
    return _linear(shape, srid, lines=_is_collection(shape), rings=True)


def _linear(shape: shapely.Geometry, srid: int, *, lines: bool, rings: bool) -> float:
    geod = _geod(srid)
    measured = [*(_parts(shape, 1) if lines else ())]
    if rings:
        measured += [ring for p in _parts(shape, 2) for ring in (p.exterior, *p.interiors)]
    return sum((float(geod.geometry_length(line)) for line in measured), 0.0)


def _is_collection(shape: shapely.Geometry) -> bool:
    return bool(shapely.get_type_id(shape) == shapely.GeometryType.GEOMETRYCOLLECTION)


def _parts(shape: shapely.Geometry, dimension: int) -> list[shapely.Geometry]:
    """The single geometries of one topological dimension in ``shape`` (1 lines, 2
    polygons), multi-geometries and collections taken apart."""
    if shape.is_empty:
        return []
    if hasattr(shape, "geoms"):
        return [single for part in shape.geoms for single in _parts(part, dimension)]
    return [shape] if shapely.get_dimensions(shape) == dimension else []


@cache
def _geod(srid: int) -> Any:
    """The ellipsoid of ``srid`` (EPSG's), WGS 84 when it names none PROJ knows."""
    try:
        from pyproj import CRS, Geod
        from pyproj.exceptions import CRSError
    except ImportError:
        raise ConfigurationError(
            "measuring a geography in Python (area, length, perimeter on the ellipsoid) "
            "needs pyproj: pip install 'geosession[geo]'"
        ) from None
    try:
        return CRS.from_epsg(srid).get_geod() or Geod(ellps="WGS84")
    except CRSError:
        return Geod(ellps="WGS84")
