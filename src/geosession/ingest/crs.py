"""A source's CRS as an ingest needs it: the EPSG code that is a PostGIS SRID, or, for a
CRS without one, its definition (to refuse it, or to reproject from it).

GDAL, geopandas and GeoParquet name a CRS in several ways (``EPSG:<code>``, WKT,
PROJJSON, a pyproj CRS); PROJ identifies the EPSG code behind them where there is one.
OGC's CRS84 family counts as EPSG's (:func:`geosession.geometry.authority_code`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosession.errors import ConfigurationError
from geosession.geometry import authority_code
from geosession.sidecar import prj_path

if TYPE_CHECKING:
    from geosession.ingest.options import IngestOptions

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


def sidecar_crs(path: Path) -> tuple[Path, SourceCrs] | None:
    """The ``.prj`` beside a CSV file (GeoCSV's sidecar, which geosession's export and
    GDAL's writers leave) and the CRS it holds, else None."""
    prj = prj_path(path)
    if not prj.is_file():
        return None
    crs = source_crs(prj.read_text(encoding="utf-8", errors="replace"))
    return (prj, crs) if crs is not None else None


@functools.cache
def geographic_2d(code: int) -> int:
    """A geographic 3D CRS's 2D counterpart (EPSG:4979's 4326), which PostGIS users store
    heights under: GDAL reads a GeoJSON file with heights as EPSG:4979 where geosession
    reads GeoJSON objects as 4326 (and OGC's CRS84h counts as 4326); ``code`` for others."""
    crs = _epsg_crs(code)
    if crs is None or crs.type_name != "Geographic 3D CRS":
        return code
    return int(crs.to_2d().to_epsg() or code)


@functools.cache
def horizontal_code(code: int) -> int | None:
    """The EPSG code of a 3D CRS's horizontal part: a geographic 3D CRS's 2D one, a
    compound CRS's horizontal one (EPSG:7405's 27700); None for other CRSs."""
    crs = _epsg_crs(code)
    if crs is None or not crs.is_compound:
        flat = geographic_2d(code)
        return flat if flat != code else None
    found = crs.sub_crs_list[0].to_epsg()
    return int(found) if found is not None else None


def _epsg_crs(code: int) -> Any:
    """PROJ's CRS of an EPSG code; None where PROJ lacks it (or is not installed)."""
    try:
        import pyproj
    except ImportError:
        return None
    try:
        return pyproj.CRS.from_epsg(code)
    except pyproj.exceptions.CRSError:
        return None


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


def refuse_unknown_srids(cursor: Any, options: IngestOptions) -> None:
    """Refuses, before a table is made or a row read, srid= or reproject= naming an SRID
    spatial_ref_sys does not hold where it would be needed: a column made of it, or a
    transformation from or into it (PROJ finds no CRS, so every row would be rejected)."""
    wanted = options.reproject_srid
    given = options.srid if options.srid and (options.create or options.reprojecting) else None
    asked = {srid for srid in (wanted, given) if srid is not None}
    if not asked:
        return
    cursor.execute("SELECT srid FROM spatial_ref_sys WHERE srid = ANY(%s)", (sorted(asked),))
    unknown = asked - {row[0] for row in cursor.fetchall()}
    for srid, option, flag in ((wanted, "reproject", "--reproject-to"), (given, "srid", "--srid")):
        if srid in unknown:
            raise ConfigurationError(
                f"{option}={srid} (CLI: {flag} {srid}) names SRID {srid}, which this "
                "database's spatial_ref_sys does not hold, so no column can be made of it "
                "and PROJ cannot transform geometries from or into it: check the number "
                "(an EPSG code, such as 4326 or 3857), or add the CRS to spatial_ref_sys "
                f"first (a row of srid {srid} with its srtext and proj4text)"
            )
