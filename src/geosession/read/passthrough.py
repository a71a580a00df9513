"""Geometries shapely cannot hold, passed through as their WKB to the files that take them.

PostGIS stores curves (CircularString, CompoundCurve, CurvePolygon, MultiCurve,
MultiSurface) that GEOS, and so shapely, cannot parse. GDAL writes them to GeoPackage and
FlatGeobuf as they are, so a batch holding any reaches those writers as its WKB (each
header's SRID taken out: GDAL reads EWKB's Z and M flags, not its SRID), and what the
layer needs to know of the rows is read from their headers: type, SRID, emptiness. The
other formats (GeoJSON, GeoParquet, Shapefile, CSV) hold no curves: there the batch is
refused as before, saying to straighten them (ST_CurveToLine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from geosession.errors import InvalidGeometry
from geosession.geometry import not_in_geos
from geosession.wkb import without_srid, wkb_is_empty, wkb_srid, wkb_type_name


@dataclass(frozen=True)
class PassedThrough:
    """A batch's geometries as the EWKB the server sent (None for NULL)."""

    values: list[bytes | None]

    def wkb(self) -> list[bytes | None]:
        """The geometries as GDAL takes them: without the SRID in their headers."""
        return [None if value is None else without_srid(value) for value in self.values]

    def kinds(self) -> set[str]:
        """The type names, with dimensions, of the present geometries ("CurvePolygon Z")."""
        return {wkb_type_name(value) for value in self.values if value is not None}


def passed_through(
    values: Sequence[Any], refused: InvalidGeometry, *, empty_as_null: bool = False
) -> PassedThrough:
    """The batch whose decoding failed with ``refused``, passed through when it holds
    geometries shapely cannot (else that failure is raised); with ``empty_as_null``, an
    empty geometry is None."""
    wkb = list(values)
    if not any(not_in_geos(value) for value in wkb if value is not None):
        raise refused
    if empty_as_null:
        wkb = [None if value is None or wkb_is_empty(value) else value for value in wkb]
    return PassedThrough(wkb)


def srids(geometries: Any) -> np.ndarray[Any, Any]:
    """The SRID of each geometry (0 for none, or NULL)."""
    if isinstance(geometries, PassedThrough):
        return np.array([0 if v is None else wkb_srid(v) for v in geometries.values], dtype=int)
    found: np.ndarray[Any, Any] = shapely.get_srid(geometries)
    return found


def unindexable(geometries: Any) -> int:
    """How many geometries are NULL or empty (a FlatGeobuf spatial index holds neither)."""
    if isinstance(geometries, PassedThrough):
        return sum(value is None or wkb_is_empty(value) for value in geometries.values)
    return int((shapely.is_missing(geometries) | shapely.is_empty(geometries)).sum())
