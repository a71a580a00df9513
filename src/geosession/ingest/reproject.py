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

_local = threading.local()
"""Transformers by (source, destination) SRID, per thread: a pyproj Transformer is not
safe to share between threads, and batches are checked on several."""

Problems = dict[int, tuple[str, str]]


def reprojected(
    geoms: np.ndarray[Any, Any], srid: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.bool_]], Problems]:
    """``geoms`` with those of another known SRID moved into ``srid``; which moved; and the
    rows that could not be (an SRID PROJ does not know, a geometry with M values)."""
    present = geoms != None  # noqa: E711 - elementwise on an object array
    srids = np.where(present, shapely.get_srid(geoms), 0)
    moving = present & (srids != 0) & (srids != srid)
    problems: Problems = {}
    if not moving.any():
        return geoms, moving, problems
    measured = moving & shapely.has_m(geoms)
    for index in np.flatnonzero(measured):
        problems[int(index)] = (
            "srid",
            f"SRID {srids[index]} where the column has SRID {srid}, and a geometry with M "
            "values cannot be reprojected here (its M values would be lost): reproject it "
            "before loading",
        )
    moving &= ~measured
    geoms = geoms.copy()
    for source in np.unique(srids[moving]):
        rows = moving & (srids == source)
        try:
            transformer = _transformer(int(source), srid)
        except ValueError as error:
            for index in np.flatnonzero(rows):
                problems[int(index)] = ("srid", f"cannot reproject SRID {source}: {error}")
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


def _transformer(source: int, destination: int) -> Any:
    """The thread's PROJ transformer from EPSG ``source`` to ``destination``; ValueError
    when PROJ does not know one of them."""
    try:
        from pyproj import Transformer
        from pyproj.exceptions import CRSError
    except ImportError:
        raise ConfigurationError(
            "reproject=True needs pyproj: pip install 'geosession[geo]'"
        ) from None
    cache: dict[tuple[int, int], Any] = _local.__dict__.setdefault("transformers", {})
    key = (source, destination)
    if key not in cache:
        try:
            cache[key] = Transformer.from_crs(
                f"EPSG:{source}", f"EPSG:{destination}", always_xy=True
            )
        except CRSError as error:
            raise ValueError(str(error).splitlines()[0]) from error
    return cache[key]
