"""Reprojecting a batch's geometries into their column's SRID (``reproject=True``).

Done on the client with PROJ (pyproj), before the checks, so a geometry the
transformation breaks is set aside like any invalid one instead of reaching the server.
Axis order is PostGIS's: x is the longitude or easting, y the latitude or northing.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import shapely

from geosession.errors import ConfigurationError
from geosession.ingest.crs import SourceCrs, crs_label
from geosession.ingest.target import GeometrySpec
from geosession.srs import crs_of

_local = threading.local()
"""Transformers by (source, destination) SRID, per thread: a pyproj Transformer is not
safe to share between threads, and batches are checked on several."""

Problems = dict[int, tuple[str, str]]


def reprojected(
    geoms: np.ndarray[Any, Any], column: GeometrySpec, source_crs: str | None = None
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.bool_]], Problems]:
    """``geoms`` with those of another known SRID (or without one, from ``source_crs``,
    a CRS definition) moved into the column's SRID (its CRS as spatial_ref_sys defines
    it); which moved; and the rows that could not be (a CRS PROJ does not know, a
    geometry with M values)."""
    srid = column.srid
    present = geoms != None  # noqa: E711 - elementwise on an object array
    srids = np.where(present, shapely.get_srid(geoms), 0)
    moving = present & (srids != srid) & ((srids != 0) | (source_crs is not None))
    problems: Problems = {}
    if not moving.any():
        return geoms, moving, problems
    measured = moving & shapely.has_m(geoms)
    for index in np.flatnonzero(measured):
        problems[int(index)] = (
            "srid",
            f"{_label(int(srids[index]), source_crs)} where the column has SRID {srid}, and "
            "a geometry with M values cannot be reprojected here (its M values would be "
            "lost): reproject it before loading",
        )
    moving &= ~measured
    geoms = geoms.copy()
    for code in np.unique(srids[moving]):
        rows = moving & (srids == code)
        source: SourceCrs = int(code) if code else str(source_crs)
        try:
            transformer = _transformer(source, column)
        except ValueError as error:
            reason = f"cannot reproject {_label(int(code), source_crs)}: {error}"
            for index in np.flatnonzero(rows):
                problems[int(index)] = ("srid", reason)
            moving &= ~rows
            continue
        geoms[rows] = _transformed(geoms[rows], transformer, srid)
    return geoms, moving, problems


def _transformed(geoms: np.ndarray[Any, Any], transformer: Any, srid: int) -> Any:
    """The geometries through ``transformer`` (with their Z where they have one)."""
    has_z = shapely.has_z(geoms)
    out = geoms.copy()
    for with_z in (False, True):
        which = has_z == with_z
        if which.any():
            out[which] = shapely.transform(
                geoms[which],
                transformer.transform,
                include_z=with_z,
                interleaved=False,
            )
    return shapely.set_srid(out, srid)


def _label(code: int, source_crs: str | None) -> str:
    """A geometry's SRID as messages name it (the source's CRS for one without)."""
    return f"SRID {code}" if code or source_crs is None else f"CRS {crs_label(source_crs)}"


def _transformer(source: SourceCrs, column: GeometrySpec) -> Any:
    """The thread's PROJ transformer from ``source`` (an EPSG code or a definition) to
    the column's CRS; ValueError when PROJ cannot make one."""
    try:
        from pyproj import Transformer
        from pyproj.exceptions import ProjError
    except ImportError:
        raise ConfigurationError(
            "reproject=True needs pyproj: pip install 'geosession[geo]'"
        ) from None
    cache: dict[tuple[SourceCrs, int], Any] = _local.__dict__.setdefault("transformers", {})
    key = (source, column.srid)
    if key not in cache:
        crs = source if isinstance(source, str) else crs_of(source, ()) or f"EPSG:{source}"
        destination = column.crs
        if destination is None:
            raise ValueError(f"PROJ cannot read the CRS spatial_ref_sys gives SRID {column.srid}")
        try:
            cache[key] = Transformer.from_crs(crs, destination, always_xy=True)
        except ProjError as error:
            raise ValueError(str(error).splitlines()[0]) from error
    return cache[key]
