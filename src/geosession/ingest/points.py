"""Points from coordinate columns (a CSV's, a DataFrame's): longitude and latitude, or x
and y.

Many CSV files (and the DataFrames read from them) carry a place as two numbers rather
than as WKT. A file whose header (or a DataFrame without geometries whose columns) has
no WKT column but a pair of coordinate columns, named as people name them (``longitude``
and ``latitude``, ``lon``/``lng``/``long`` and ``lat``, ``x`` and ``y``, ``easting`` and
``northing``, in any case) or given as ``xy_columns=``, loads each row as a point.
Longitude and latitude are EPSG:4326 by their names, so the load refuses or reprojects
them for a column of another SRID as it does a file's CRS; x and y, eastings and
northings say nothing of theirs (``srid=`` does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from geosession.errors import ConfigurationError
from geosession.ingest.values import with_decimal_point

_WGS84 = 4326
"""The SRID of longitude and latitude as GPS, web maps and most CSV files give them."""

_LONGITUDE_LATITUDE = (
    ("longitude", "latitude"),
    ("lon", "lat"),
    ("lng", "lat"),
    ("long", "lat"),
)
_X_Y = (("x", "y"), ("easting", "northing"))


@dataclass(frozen=True)
class PointColumns:
    """The fields of a row's point, and the SRID their names imply (None: unsaid)."""

    x: str
    y: str
    srid: int | None

    @property
    def fields(self) -> tuple[str, str]:
        return self.x, self.y


def point_values(
    xs: Sequence[str | None], ys: Sequence[str | None], *, decimal_comma: bool = False
) -> list[Any]:
    """Each row's point: shapely points made in one call where every number reads as
    one (an empty one is NaN, which the geometry check sets aside as non-finite), None
    where both are empty; else WKT (:func:`point_texts`), for GEOS to name what is wrong.
    ``decimal_comma``: a number with one comma and no point has a decimal comma (a
    semicolon-separated file, as spreadsheets write them where 52,52 is a number)."""
    if decimal_comma:
        xs, ys = list(map(with_decimal_point, xs)), list(map(with_decimal_point, ys))
    try:
        x = np.array([value or "nan" for value in xs], dtype=np.float64)
        y = np.array([value or "nan" for value in ys], dtype=np.float64)
    except ValueError:
        return point_texts(xs, ys)
    points = shapely.points(x, y)
    points[[not a and not b for a, b in zip(xs, ys, strict=True)]] = None
    return list(points)


def series_points(xs: Any, ys: Any) -> list[Any]:
    """Each row's point from two pandas Series of numbers (NaN where missing: a point
    with one is set aside as non-finite, None where both are); of other values, as
    :func:`point_values` reads text."""
    try:
        x = xs.to_numpy(dtype=np.float64, na_value=np.nan)
        y = ys.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        return _text_points(xs, ys)
    return _numeric_points(x, y)


def value_points(xs: Sequence[Any], ys: Sequence[Any]) -> list[Any]:
    """Each row's point from two lists of numbers (dict rows' values; None where missing),
    or of text, as :func:`point_values` reads it."""
    try:
        x = np.array([np.nan if v is None else v for v in xs], dtype=np.float64)
        y = np.array([np.nan if v is None else v for v in ys], dtype=np.float64)
    except (TypeError, ValueError):
        return _text_points(xs, ys)
    return _numeric_points(x, y)


def _numeric_points(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> list[Any]:
    points = shapely.points(x, y)
    points[np.isnan(x) & np.isnan(y)] = None
    return list(points)


def _text_points(xs: Iterable[Any], ys: Iterable[Any]) -> list[Any]:
    """Values that are not all numbers, read as text (None and NaN: empty)."""
    texts = [[None if v is None or v != v else str(v) for v in values] for values in (xs, ys)]
    return point_values(texts[0], texts[1])


def point_texts(xs: Sequence[str | None], ys: Sequence[str | None]) -> list[str | None]:
    """Each row's point as WKT; None where both numbers are empty (a NULL geometry). A
    number that is not one makes WKT that does not parse, which the geometry check sets
    aside with GEOS's words ("Expected number but encountered word: 'abc'")."""
    return [
        None if not x and not y else f"POINT ({(x or '').strip()} {(y or '').strip()})"
        for x, y in zip(xs, ys, strict=True)
    ]


def coordinates_for(
    header: Sequence[str],
    geometry_column: str | None,
    *,
    given_geometry: bool,
    xy_columns: Sequence[str] | None,
    where: str,
) -> PointColumns | None:
    """The coordinate fields of a DataFrame or of dict rows that make the points of the
    target's one geometry column: None where the source gives that column itself (or the
    target has not one), which ``xy_columns`` then may not name."""
    if geometry_column is None or given_geometry:
        if xy_columns is not None:
            reason = "has a column for it" if given_geometry else "has no one geometry column"
            raise ConfigurationError(
                f"xy_columns={xy_columns!r} makes points for the target's geometry column, "
                f"and the target {reason}: leave xy_columns out"
            )
        return None
    return point_columns(header, xy_columns, where)


def point_columns(
    header: Sequence[str], given: Sequence[str] | None, path: Path | str
) -> PointColumns | None:
    """The coordinate fields of a CSV header (or a DataFrame's columns): those ``given``
    (x, y), else a pair named as longitude and latitude, else x and y; None when it has
    neither."""
    if given is not None:
        missing = [name for name in given if name not in header]
        if missing:
            raise ConfigurationError(
                f"xy_columns names {', '.join(map(repr, missing))}, which {path} does not "
                f"have; its fields: {', '.join(header)}"
            )
        return PointColumns(given[0], given[1], None)
    folded = {name.casefold(): name for name in reversed(header)}  # the first of a case
    for pairs, srid in ((_LONGITUDE_LATITUDE, _WGS84), (_X_Y, None)):
        for x, y in pairs:
            if x in folded and y in folded:
                return PointColumns(folded[x], folded[y], srid)
    return None
