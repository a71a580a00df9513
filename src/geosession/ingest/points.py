"""Points from coordinate columns (a CSV's, a DataFrame's): longitude and latitude, or x
and y.

Many CSV files (and the DataFrames read from them) carry a place as two numbers rather
than as WKT. A file whose header (or a DataFrame without geometries whose columns) has
no WKT column but a pair of coordinate columns, named as people name them (``longitude``
and ``latitude``, ``lon``/``lng``/``long`` and ``lat``, ``x`` and ``y``, ``easting`` and
``northing``, in any case) or given as ``xy_columns=``, loads each row as a point.
Longitude and latitude are EPSG:4326 by their names, so the load refuses or reprojects
them for a column of another SRID as it does a file's CRS; x and y, eastings and
northings say nothing of theirs (``srid=`` does). A third field of heights (``z``, or
``elevation``, ``altitude``, ``alt``, ``ele``: a GPS log's) makes the points 3D where
the geometry column has Z; a ``z`` field alone makes a new table's points 3D.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from geosession.errors import ConfigurationError
from geosession.ingest.geometry_values import Unreadable
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
Z_NAMES = ("z", "elevation", "altitude", "alt", "ele")
"""A point's height, in order of preference: a third coordinate for a column with Z."""
NEW_Z_NAMES = ("z",)
"""The height field that makes a new table's points 3D (create=True): an elevation
beside longitude and latitude stays a number column of its own there."""


@dataclass(frozen=True)
class PointColumns:
    """The fields of a row's point (z: None for 2D points), and the SRID their names imply
    (None: unsaid)."""

    x: str
    y: str
    srid: int | None
    z: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.x, self.y) if self.z is None else (self.x, self.y, self.z)


def point_values(
    coordinates: Sequence[Sequence[str | None]],
    fields: Sequence[str],
    *,
    decimal_comma: bool = False,
) -> list[Any]:
    """Each row's point from the text of its coordinates (``fields``: x, y and maybe z):
    shapely points made in one call where every number reads as one, None where all are
    empty; else one row at a time (:func:`_rows_points`). A row missing x or y makes no
    point: it is :class:`Unreadable`, saying which (an empty height is NaN, which the
    geometry check sets aside as non-finite, or repairs). ``decimal_comma``: a number with
    one comma and no point has a decimal comma (a semicolon-separated file, as
    spreadsheets write them where 52,52 is a number)."""
    if decimal_comma:
        coordinates = [list(map(with_decimal_point, values)) for values in coordinates]
    try:
        arrays = [
            np.array([value or "nan" for value in values], dtype=np.float64)
            for values in coordinates
        ]
    except ValueError:
        return _rows_points(coordinates, fields)
    return _numeric_points(arrays, fields)


def series_points(coordinates: Sequence[Any], fields: Sequence[str]) -> list[Any]:
    """Each row's point from pandas Series of numbers (NaN where missing); of other
    values, as :func:`point_values` reads text."""
    try:
        arrays = [xs.to_numpy(dtype=np.float64, na_value=np.nan) for xs in coordinates]
    except (TypeError, ValueError):
        return _text_points(coordinates, fields)
    return _numeric_points(arrays, fields)


def value_points(coordinates: Sequence[Sequence[Any]], fields: Sequence[str]) -> list[Any]:
    """Each row's point from lists of numbers (dict rows' values; None where missing), or
    of text, as :func:`point_values` reads it."""
    try:
        arrays = [
            np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            for values in coordinates
        ]
    except (TypeError, ValueError):
        return _text_points(coordinates, fields)
    return _numeric_points(arrays, fields)


def arrow_points(coordinates: Sequence[Any], fields: Sequence[str]) -> list[Any]:
    """Each row's point from Arrow arrays of numbers (nulls: missing), or of text, as
    :func:`point_values` reads it."""
    import pyarrow

    try:
        arrays = [
            values.cast(pyarrow.float64()).to_numpy(zero_copy_only=False) for values in coordinates
        ]
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError):
        return _text_points([values.to_pylist() for values in coordinates], fields)
    return _numeric_points(arrays, fields)


def _numeric_points(arrays: Sequence[np.ndarray[Any, Any]], fields: Sequence[str]) -> list[Any]:
    points = shapely.points(*arrays)
    missing = np.isnan(np.stack(arrays[:2]))
    points[np.logical_and.reduce([np.isnan(values) for values in arrays])] = None
    for row in np.flatnonzero(missing.any(axis=0) & ~missing.all(axis=0)):
        given = ["" if np.isnan(values[row]) else repr(float(values[row])) for values in arrays]
        points[row] = _unreadable(fields, given)
    return list(points)


def _text_points(coordinates: Sequence[Iterable[Any]], fields: Sequence[str]) -> list[Any]:
    """Values that are not all numbers, read as text (None and NaN: empty)."""
    return point_values(
        [[None if v is None or v != v else str(v) for v in values] for values in coordinates],
        fields,
    )


def _rows_points(coordinates: Sequence[Sequence[str | None]], fields: Sequence[str]) -> list[Any]:
    """Each row's point read alone (some coordinate of the batch is no number): None where
    all are empty, :class:`Unreadable` where x or y is empty or no number, or z no number."""
    points: list[Any] = []
    for values in zip(*coordinates, strict=True):
        texts = [(value or "").strip() for value in values]
        if not any(texts):
            points.append(None)
            continue
        try:
            numbers = [float(text) if text else float("nan") for text in texts]
        except ValueError:
            points.append(_unreadable(fields, texts))
            continue
        if any(not text for text in texts[:2]):
            points.append(_unreadable(fields, texts))
        else:
            points.append(shapely.Point(numbers))
    return points


def _unreadable(fields: Sequence[str], texts: Sequence[str]) -> Unreadable:
    """Why a row's coordinates (``texts``, as given) make no point."""
    problems = []
    for index, (name, text) in enumerate(zip(fields, texts, strict=True)):
        if not text and index < 2:
            problems.append(f"{name} is missing")
        elif text and not _is_number(text):
            problems.append(f"{name} {text!r} is not a number")
    needs = " and ".join(fields[:2])
    given = "; ".join(f"{name}={text}" for name, text in zip(fields, texts, strict=True))
    return Unreadable(f"{'; '.join(problems)} (a point needs {needs})", given)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def coordinates_for(
    header: Sequence[str],
    geometry_column: str | None,
    *,
    given_geometry: bool,
    xy_columns: Sequence[str] | None,
    where: str,
    heights: Sequence[str] = (),
    measured: bool = False,
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
    return point_columns(
        header, xy_columns, where, heights, z_required=bool(heights), measured=measured
    )


def point_columns(
    header: Sequence[str],
    given: Sequence[str] | None,
    path: Path | str,
    heights: Sequence[str] = (),
    *,
    z_required: bool = False,
    measured: bool = False,
) -> PointColumns | None:
    """The coordinate fields of a CSV header (or a DataFrame's columns): those ``given``
    (x, y and maybe z), else a pair named as longitude and latitude, else x and y; None
    when it has neither. ``heights``: the names of a z field to look for (none where the
    points are 2D: a third given name is then refused); ``z_required``: the points'
    column has Z, so coordinates without heights are refused (every 2D point would be a
    dimension reject); ``measured``: the column has M, which no coordinates give."""
    points = (
        _named_columns(header, heights)
        if given is None
        else _given_columns(header, given, path, heights)
    )
    if points is not None and measured:
        raise ConfigurationError(
            f"{path}'s coordinates {_listed(points.fields)} make points without M, "
            "and the table's geometry column has M values: load geometries that carry M "
            "(WKT such as POINT M (1 2 3), WKB, a vector file's), or into a column without "
            "M (e.g. geometry(PointZ, 4326))"
        )
    if points is not None and points.z is None and z_required:
        x, y = points.fields
        raise ConfigurationError(
            f"{path}'s coordinates {x} and {y} make 2D points, and the table's geometry "
            f"column has Z: name the field of their heights as the third of xy_columns "
            f"(CLI: --xy-columns {x},{y},HEIGHTS), or name it {', '.join(Z_NAMES[:-1])} or "
            f"{Z_NAMES[-1]}"
        )
    return points


def _listed(names: Sequence[str]) -> str:
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _given_columns(
    header: Sequence[str], given: Sequence[str], path: Path | str, heights: Sequence[str]
) -> PointColumns:
    missing = [name for name in given if name not in header]
    if missing:
        raise ConfigurationError(
            f"xy_columns names {', '.join(map(repr, missing))}, which {path} does not "
            f"have; its fields: {', '.join(header)}"
        )
    if len(given) == 3 and not heights:
        raise ConfigurationError(
            f"xy_columns names a z field, {given[2]!r}, and the table's geometry column "
            "has no Z: name x and y alone (the heights then load into a column of their "
            "name, if there is one), or load into a column with Z, e.g. "
            "geometry(PointZ, 4326)"
        )
    z = given[2] if len(given) == 3 else _height(header, given, heights)
    return PointColumns(given[0], given[1], None, z)


def _named_columns(header: Sequence[str], heights: Sequence[str]) -> PointColumns | None:
    folded = {name.casefold(): name for name in reversed(header)}  # the first of a case
    for pairs, srid in ((_LONGITUDE_LATITUDE, _WGS84), (_X_Y, None)):
        for x, y in pairs:
            if x in folded and y in folded:
                pair = (folded[x], folded[y])
                return PointColumns(*pair, srid, _height(header, pair, heights))
    return None


def _height(header: Sequence[str], pair: Sequence[str], heights: Sequence[str]) -> str | None:
    """The field of the points' heights: the first in ``header`` named as ``heights``
    names one (in any case), other than x and y."""
    folded = {name.casefold(): name for name in reversed(header) if name not in pair}
    return next((folded[name] for name in heights if name in folded), None)
