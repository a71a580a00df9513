"""The CRS of a PostGIS SRID as PROJ reads it, and the SRID of a CRS, for reads and loads.

An SRID names a row of the database's ``spatial_ref_sys``, not always an EPSG code:
PostGIS ships ESRI's codes (102003 is ESRI's USA Contiguous Albers), and users add their
own. The row's authority and code name the CRS when PROJ knows them, else its WKT, else
its PROJ string. Rows are fetched with a read's plan or a load's columns; PROJ reads them
only when a file, DataFrame or reprojection asks, so plain row streams never import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import TextClause, bindparam, text

SpatialRef = tuple[int, str | None, int | None, str | None, str | None]
"""A spatial_ref_sys row: srid, auth_name, auth_srid, srtext, proj4text."""

_SPATIAL_REFS_SQL = text(
    "SELECT srid, auth_name, auth_srid, srtext, proj4text FROM spatial_ref_sys "
    "WHERE srid = ANY(CAST(:srids AS integer[]))"
)


def spatial_refs_sql(srids: Sequence[int]) -> TextClause:
    """The spatial_ref_sys rows of ``srids``."""
    return _SPATIAL_REFS_SQL.bindparams(bindparam("srids", value=sorted(set(srids))))


def crs_of(srid: float | None, refs: Sequence[SpatialRef]) -> str | None:
    """What PROJ calls the CRS of ``srid`` in this database (None: no SRID, or none PROJ
    reads). An SRID not among ``refs`` (one only the rows carried, as an expression's) is
    taken as EPSG's code, else ESRI's, which is how PostGIS's spatial_ref_sys numbers
    them."""
    if not srid:
        return None
    for ref in refs:
        if ref[0] == srid:
            return _definition(*ref[1:])
    return _definition("EPSG", int(srid), None, None) or _definition("ESRI", int(srid), None, None)


@cache
def _definition(
    auth_name: str | None, auth_srid: int | None, srtext: str | None, proj4text: str | None
) -> str | None:
    named = f"{auth_name}:{auth_srid}" if auth_name and auth_srid else None
    for candidate in (named, srtext, proj4text):
        if candidate and candidate.strip() and _proj_reads(candidate):
            return candidate
    return None


def same_crs(definition: str, other: str | None) -> bool:
    """Whether PROJ finds two CRS definitions equivalent (axis order aside: PostGIS's x is
    always the longitude or easting)."""
    return other is not None and _same_crs(definition, other)


@cache
def _same_crs(definition: str, other: str) -> bool:
    try:
        import pyproj
    except ImportError:  # without PROJ, only EPSG codes are compared
        return False
    try:
        return bool(pyproj.CRS(definition).equals(pyproj.CRS(other), ignore_axis_order=True))
    except pyproj.exceptions.CRSError:
        return False


def authority(definition: str) -> tuple[str, int] | None:
    """The authority name and numeric code PROJ finds for a CRS (("ESRI", 102003)), which
    spatial_ref_sys files it under; None for none."""
    import pyproj

    try:
        found = pyproj.CRS(definition).to_authority()
    except pyproj.exceptions.CRSError:
        return None
    if found is None or not found[1].isdigit():
        return None
    return found[0], int(found[1])


SRID_BY_AUTHORITY_SQL = (
    "SELECT min(srid) FROM spatial_ref_sys "
    "WHERE upper(auth_name) = upper(%(name)s) AND auth_srid = %(code)s"
)
"""The SRID this database files an authority's code under (psycopg parameters)."""


def _proj_reads(definition: str) -> bool:
    try:
        import pyproj  # geopandas's dependency, as is every output that asks for a CRS
    except ImportError:  # nothing here reads it then
        return True
    try:
        pyproj.CRS.from_user_input(definition)
    except pyproj.exceptions.CRSError:
        return False
    return True


def in_degrees(ref: SpatialRef | None) -> bool:
    """Whether a spatial_ref_sys row's coordinates are longitudes and latitudes (a
    geographic CRS, as its WKT or PROJ string says)."""
    if ref is None:
        return False
    srtext, proj4text = ref[3] or "", ref[4] or ""
    return srtext.lstrip().startswith(("GEOGCS", "GEOGCRS")) or "+proj=longlat" in proj4text


def spatial_ref(row: Sequence[Any]) -> SpatialRef:
    """A fetched row as a SpatialRef."""
    srid, auth_name, auth_srid, srtext, proj4text = row
    return int(srid), auth_name, auth_srid, srtext, proj4text
