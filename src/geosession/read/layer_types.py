"""A GDAL layer's geometry type, with its dimensions, from a column's declaration or rows.

Types are named as PostGIS's type modifiers read ("Point", "Polygon Z", "Point M",
"LineString ZM", "Unknown" for several types), and given to pyogrio under its own names
("PointM", "Measured 3D LineString"). A layer's dimensions matter: FlatGeobuf writes
the dimensions its header declares for every row, so a layer declared 2D drops Z and M.
pyogrio names no "Unknown" with Z or M (GDAL's wkbUnknown with wkb25DBit, ISO's Geometry
M and ZM), which a layer of several types with Z needs; they are added to its tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
import shapely

from geosession.errors import ExportFailed
from geosession.geometry import TYPE_NAMES
from geosession.read.passthrough import PassedThrough
from geosession.warning_filters import recorded, shown
from geosession.wkb import NOT_IN_GEOS

UNKNOWN = "Unknown"
_UNNAMED_CODES = {
    "Unknown Z": 0x80000000,
    "Unknown M": 2000,
    "Unknown ZM": 3000,
    **{
        f"{base}{suffix}": code + offset
        for code, base in NOT_IN_GEOS.items()
        for suffix, offset in (("", 0), (" Z", 1000), (" M", 2000), (" ZM", 3000))
    },
}
"""GDAL's codes of the types pyogrio has no name for: Unknown with Z or M, and the curves
and surfaces (ISO codes, as GDAL gives these types)."""


def dimensions(kind: str) -> tuple[str, bool, bool]:
    """("Point", has Z, has M) of a type name such as "Point ZM"."""
    base, _, suffix = kind.partition(" ")
    return base, "Z" in suffix, "M" in suffix


def named(base: str, z: bool, m: bool) -> str:
    """The type name of ``base`` with these dimensions ("Point", True, False: "Point Z")."""
    suffix = ("Z" if z else "") + ("M" if m else "")
    return f"{base} {suffix}" if suffix else base


def row_kinds(geometries: Any) -> set[str]:
    """The type names (with dimensions) of the present geometries in a chunk."""
    if isinstance(geometries, PassedThrough):
        return geometries.kinds()
    present = geometries[~shapely.is_missing(geometries)]
    if not len(present):
        return set()
    codes = shapely.get_type_id(present) * 4 + shapely.has_z(present) * 2 + shapely.has_m(present)
    return {
        named(TYPE_NAMES[code // 4], bool(code & 2), bool(code & 1))
        for code in np.unique(codes).tolist()
    }


def layer_kind(kinds: set[str]) -> str:
    """The type of a layer holding rows of these types: their one type, else Unknown with
    every dimension any row has (FlatGeobuf's header declares the dimensions of all rows
    and a typed layer refuses rows of others; a 2D row in a Z layer reads back with Z 0)."""
    if len(kinds) == 1:
        return next(iter(kinds))
    parts = [dimensions(kind) for kind in kinds]
    return named(UNKNOWN, any(z for _, z, _ in parts), any(m for _, _, m in parts))


def one_base(kinds: Iterable[str]) -> str:
    """The one base type of rows of these types, whatever their dimensions; else Unknown."""
    bases = {dimensions(kind)[0] for kind in kinds}
    return bases.pop() if len(bases) == 1 else UNKNOWN


def presence(kinds: Iterable[str]) -> tuple[int, int]:
    """GeoPackage's z and m flags for rows of these types: 0 none, 1 all, 2 some."""
    parts = [dimensions(kind) for kind in kinds]

    def flag(has: list[bool]) -> int:
        return 1 if has and all(has) else 2 if any(has) else 0

    return flag([z for _, z, _ in parts]), flag([m for _, _, m in parts])


def from_pyogrio_name(name: str) -> str:
    """A type in this module's names from pyogrio's ("PointM": "Point M")."""
    if name == "PointM":
        return "Point M"
    if name.startswith("Measured 3D "):
        return name.removeprefix("Measured 3D ") + " ZM"
    if name.startswith("Measured "):
        return name.removeprefix("Measured ") + " M"
    return name


_MEASURED = re.compile(r"Measured \(M\) geometry types are not supported\. Original type '([^']+)'")


@contextmanager
def measured_types() -> Iterator[list[str]]:
    """Around pyogrio opening a layer: pyogrio names no type with M and warns that it
    reports another (its WKB keeps the M values). The warning is not shown; the layer's
    type, in this module's names ("Point M"), is added to the list this yields."""
    found: list[str] = []
    with recorded() as caught:
        yield found
    for warning in caught:
        match = _MEASURED.match(str(warning.message))
        if match is None:
            shown(warning)
        elif from_pyogrio_name(match.group(1)) not in found:
            found.append(from_pyogrio_name(match.group(1)))


def pyogrio_name(kind: str) -> str:
    """pyogrio's name of a type: "Point Z", "PointM", "Measured 3D Polygon", "Unknown Z",
    "CurvePolygon Z" (the last two named by :func:`name_types_pyogrio_lacks`)."""
    base, z, m = dimensions(kind)
    curved = base in NOT_IN_GEOS.values()
    if (base == UNKNOWN and (z or m)) or curved:
        if not name_types_pyogrio_lacks():
            raise ExportFailed(
                f"This pyogrio cannot declare a layer of {kind}: "
                + (
                    "straighten the curves in the query (ST_CurveToLine(geom))"
                    if curved
                    else "export to GeoPackage, GeoParquet or GeoJSON, or select one "
                    "geometry type, since one without its Z or M would lose them"
                )
            )
        return named(base, z, m)
    if m:
        if z:
            return f"Measured 3D {base}"
        return "PointM" if base == "Point" else f"Measured {base}"
    return named(base, z, False)


@cache
def name_types_pyogrio_lacks() -> bool:
    """Adds GDAL's codes of Unknown with Z, M and ZM, and of the curves and surfaces, to
    pyogrio's tables of type names, so such layers can be written and read (False: this
    pyogrio keeps no such tables)."""
    from pyogrio import _geometry

    codes = getattr(_geometry, "GEOMETRY_TYPE_CODES", None)
    names = getattr(_geometry, "GEOMETRY_TYPES", None)
    if not isinstance(codes, dict) or not isinstance(names, dict):
        return False
    for name, code in _UNNAMED_CODES.items():
        codes.setdefault(name, code)
        names.setdefault(code, name)
    return True
