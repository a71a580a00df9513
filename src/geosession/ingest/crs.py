"""A source's CRS as an ingest needs it: the EPSG code that is a PostGIS SRID, or, for a
CRS without one, its definition (to refuse it, or to reproject from it).

GDAL, geopandas and GeoParquet name a CRS in several ways (``EPSG:<code>``, WKT,
PROJJSON, a pyproj CRS); PROJ identifies the EPSG code behind them where there is one.
OGC's CRS84 family counts as EPSG's (:func:`geosession.geometry.authority_code`).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from geosession.geometry import authority_code

SourceCrs = int | str
"""An EPSG code (the SRID), or the definition (WKT, PROJJSON) of a CRS without one."""


def source_crs(crs: Any) -> SourceCrs | None:
    """``crs`` (a string GDAL or GeoParquet gives, or a pyproj CRS) as its EPSG code when
    PROJ can tell one, else as its definition; None for none."""
    if crs is None or (isinstance(crs, str) and not crs.strip()):
        return None
    if isinstance(crs, str) and (match := re.fullmatch(r"EPSG:(\d+)", crs)):
        return int(match.group(1))
    try:
        import pyproj
    except ImportError:  # without PROJ only the EPSG:<code> form is known
        return crs if isinstance(crs, str) else None
    try:
        parsed = crs if isinstance(crs, pyproj.CRS) else pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError:
        return str(crs)
    code = parsed.to_epsg()
    if code is not None:
        return int(code)
    authority = parsed.to_authority()
    code = authority_code(*authority) if authority is not None else None
    if code is not None:
        return code
    return crs if isinstance(crs, str) else str(parsed.to_wkt())


def epsg_code(crs: Any) -> int | None:
    """The EPSG code of ``crs`` (as :func:`source_crs` reads it), or None."""
    found = source_crs(crs)
    return found if isinstance(found, int) else None


def crs_label(crs: SourceCrs) -> str:
    """How messages name a CRS: EPSG:<code>, or the name its definition gives it."""
    if isinstance(crs, int):
        return f"EPSG:{crs}"
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return f"{json.loads(crs)['name']!r} (no EPSG code)"
    named = re.match(r'\s*\w+\[\s*"([^"]*)"', crs)  # WKT: PROJCS["name", ...
    return f"{named.group(1)!r} (no EPSG code)" if named else "a CRS without an EPSG code"
