"""(E)WKB headers read and changed without parsing the geometry: its type and
dimensions, its SRID, whether it is empty.

EWKB (PostGIS's) flags Z, M and an SRID in the type word's top bits; ISO WKB (GDAL's,
shapely's) counts Z and M in its thousands. Both are read here, so values shapely cannot
hold (curves, surfaces) are still told apart and passed through whole.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

NOT_IN_GEOS = {
    8: "CircularString",
    9: "CompoundCurve",
    10: "CurvePolygon",
    11: "MultiCurve",
    12: "MultiSurface",
    15: "PolyhedralSurface",
    16: "TIN",
    17: "Triangle",
}
"""The (E)WKB type codes of the PostGIS types shapely (GEOS) cannot hold: curves (shapely
raises NotImplementedError for a whole array holding one), surfaces and TINs."""


def _type_word(wkb: bytes) -> tuple[Literal["little", "big"], int]:
    """An (E)WKB header's byte order and type word: EWKB's flags in its top bits (Z, M,
    SRID), ISO's dimensions in its thousands."""
    order: Literal["little", "big"] = "little" if wkb[0] == 1 else "big"
    return order, int.from_bytes(wkb[1:5], order)


_WKB_TYPES = {
    1: "Point",
    2: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
    **NOT_IN_GEOS,
}
WKT_TYPE_NAMES = {name.upper(): name for name in _WKB_TYPES.values()}
"""The types by WKT's word for them (MULTIPOLYGON: MultiPolygon)."""


def type_code(wkb: bytes) -> int:
    """The base type an (E)WKB header declares (1 for Point ... 17 for Triangle), without
    its dimensions or flags."""
    return (_type_word(wkb)[1] & 0x0FFFFFFF) % 1000


def wkb_type_name(wkb: bytes) -> str:
    """The type an (E)WKB header declares, with its dimensions ("CurvePolygon", "Polygon
    Z"): EWKB's flags or ISO's thousands."""
    code = _type_word(wkb)[1]
    iso = (code & 0x0FFFFFFF) // 1000
    z = bool(code & 0x80000000) or iso in (1, 3)
    m = bool(code & 0x40000000) or iso in (2, 3)
    suffix = ("Z" if z else "") + ("M" if m else "")
    base = _WKB_TYPES.get(type_code(wkb), "Unknown")
    return f"{base} {suffix}" if suffix else base


def as_wkb(value: Any) -> bytes | None:
    """``value`` as (E)WKB bytes: bytes as they are, hex text decoded; None otherwise."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return bytes.fromhex(value.strip())
        except ValueError:
            return None
    return None


_SRID_FLAG = 0x20000000
"""EWKB's flag on the type word: an SRID follows it."""


def with_srid(wkb: bytes, srid: int) -> bytes:
    """(E)WKB with ``srid`` in its header, unless it has one (PostGIS reads the flag on ISO
    type codes too, so a curve shapely cannot parse keeps its SRID)."""
    order, kind = _type_word(wkb)
    if kind & _SRID_FLAG:
        return wkb
    header = wkb[:1] + (kind | _SRID_FLAG).to_bytes(4, order) + srid.to_bytes(4, order)
    return header + wkb[5:]


def wkb_srid(wkb: bytes) -> int:
    """The SRID in an EWKB header (0: none)."""
    order, kind = _type_word(wkb)
    return int.from_bytes(wkb[5:9], order) if kind & _SRID_FLAG else 0


def without_srid(wkb: bytes) -> bytes:
    """(E)WKB without an SRID in its header (GDAL reads EWKB's Z and M flags, not its
    SRID)."""
    order, kind = _type_word(wkb)
    if not kind & _SRID_FLAG:
        return wkb
    return wkb[:1] + (kind & ~_SRID_FLAG).to_bytes(4, order) + wkb[9:]


def wkb_is_empty(wkb: bytes) -> bool:
    """Whether an (E)WKB value is empty: a point of NaN coordinates (as WKB writes POINT
    EMPTY), or anything else of no parts, rings or points."""
    order, kind = _type_word(wkb)
    body = 9 if kind & _SRID_FLAG else 5
    if (kind & 0x0FFFFFFF) % 1000 == 1:
        return bool(np.isnan(np.frombuffer(wkb, "<f8" if order == "little" else ">f8", 1, body)[0]))
    return int.from_bytes(wkb[body : body + 4], order) == 0
