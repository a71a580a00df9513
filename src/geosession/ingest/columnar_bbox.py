"""``bbox=`` for (Geo)Parquet and Arrow files, which geosession reads with pyarrow, not GDAL.

A row is kept when its geometry's box meets the bbox, as GDAL's spatial filter keeps a
feature of a vector file (a box over the antimeridian: either half); a row without a
geometry is left out. A GeoParquet 1.1 covering bbox column (Overture's ``bbox``) gives
each row's box without parsing its geometry, and its statistics let row groups that lie
elsewhere be skipped unread; without one, each geometry's box is read from its WKB, WKT or
GeoArrow coordinates. A file of coordinate columns (longitude and latitude, :mod:`.points`)
is filtered on them as a covering of points, its row groups skipped by their statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from geosession.errors import ConfigurationError
from geosession.geometry import Bbox, bbox_parts
from geosession.ingest.geoarrow import native_geometries

if TYPE_CHECKING:
    from geosession.ingest.geo_columns import GeoParquetColumns

_SIDES = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class BoxFilter:
    """The rows of one geometry field that meet a bbox."""

    bbox: Bbox
    field: str
    covering: dict[str, tuple[str, ...]] | None
    """Each side's column: (struct column, field) in the covering bbox, if the file has
    one; (column,) for coordinate columns."""
    native: str | None = None
    """The field's GeoArrow native encoding; None for WKB or WKT."""

    @classmethod
    def of_points(cls, bbox: Bbox, x: str, y: str) -> BoxFilter:
        """The filter on the points coordinate columns make: each is its own box."""
        return cls(bbox, x, {"xmin": (x,), "ymin": (y,), "xmax": (x,), "ymax": (y,)})

    @classmethod
    def of(cls, bbox: Bbox, primary: str | None, geo: GeoParquetColumns, path: Path) -> BoxFilter:
        """The filter on ``primary`` (the geometry field the load reads), with its
        covering; refused for a file without a geometry field."""
        if primary is None:
            raise ConfigurationError(
                f"bbox={bbox!r} filters by geometry, and {path} has no geometry column "
                "(GeoParquet metadata, a GeoArrow field, or a field named geometry or geom)"
            )
        return cls(bbox, primary, geo.coverings.get(primary), geo.native.get(primary))

    @property
    def fields(self) -> list[str]:
        """The fields the filter reads: the covering bbox (or coordinates), else the
        geometry."""
        if self.covering is None:
            return [self.field]
        return list(dict.fromkeys(steps[0] for steps in self.covering.values()))

    def row_groups(self, metadata: Any) -> list[int] | None:
        """The row groups whose covering statistics meet the bbox (None: every one, for a
        file without a covering or its statistics)."""
        if self.covering is None:
            return None
        paths = {side: ".".join(steps) for side, steps in self.covering.items()}
        kept = []
        for number in range(metadata.num_row_groups):
            group = metadata.row_group(number)
            ranges = _statistics(group, paths)
            if ranges is None or self._meets(*ranges):
                kept.append(number)
        return kept

    def kept(self, batches: Iterable[Any]) -> Iterator[Any]:
        """Each record batch with only its rows whose box meets the bbox."""
        import pyarrow

        for batch in batches:
            mask = self._meets(*self._boxes(batch))
            yield batch.filter(pyarrow.array(mask))

    def _boxes(self, batch: Any) -> tuple[np.ndarray[Any, Any], ...]:
        """xmin, ymin, xmax, ymax of each row (NaN for a row without a geometry)."""
        import pyarrow

        if self.covering is not None:
            return tuple(_numbers(pyarrow, batch, self.covering[side]) for side in _SIDES)

        values = batch.column(self.field)
        if self.native is not None:
            geometries = np.array(native_geometries(values, self.native), dtype=object)
        else:
            text = pyarrow.types.is_string(values.type) or pyarrow.types.is_large_string(
                values.type
            )
            read = shapely.from_wkt if text else shapely.from_wkb
            raw = values.to_numpy(zero_copy_only=False)
            geometries = read(raw, on_invalid="ignore")  # an unreadable one: a reject later
        bounds = shapely.bounds(geometries)
        return bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3]

    def _meets(self, xmin: Any, ymin: Any, xmax: Any, ymax: Any) -> Any:
        """Whether boxes meet the bbox (either half of one over the antimeridian); a NaN
        side (no geometry) meets nothing."""
        met: Any = False
        for minx, miny, maxx, maxy in bbox_parts(self.bbox):
            met = met | ((xmin <= maxx) & (xmax >= minx) & (ymin <= maxy) & (ymax >= miny))
        return met


def _numbers(pyarrow: Any, batch: Any, steps: tuple[str, ...]) -> np.ndarray[Any, Any]:
    """A covering side's (or a coordinate column's) values as floats: NaN for a null, or
    for text that is no number (such a row meets no box, as a row without a geometry)."""
    values = batch.column(steps[0])
    for step in steps[1:]:
        values = values.field(step)
    try:
        values = values.cast(pyarrow.float64())
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError):
        return np.array([_number(value) for value in values.to_pylist()], dtype=float)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=float)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def bbox_covering(sides: Any) -> dict[str, tuple[str, ...]] | None:
    """GeoParquet 1.1's covering bbox (``"covering": {"bbox": ...}``): each side as
    (column, field) of one struct column; None for none, or one of another shape."""
    if not isinstance(sides, dict) or set(sides) != set(_SIDES):
        return None
    paths = {side: tuple(map(str, steps)) for side, steps in sides.items()}
    if any(len(steps) != 2 for steps in paths.values()):
        return None
    if len({column for column, _ in paths.values()}) != 1:
        return None
    return {side: (steps[0], steps[1]) for side, steps in paths.items()}


def _statistics(group: Any, paths: dict[str, str]) -> tuple[float, ...] | None:
    """The row group's smallest xmin and ymin and largest xmax and ymax, if recorded as
    numbers (text's are in the order of text: "10" before "9")."""
    found = {}
    for number in range(group.num_columns):
        column = group.column(number)
        for side, path in paths.items():
            if column.path_in_schema == path and column.is_stats_set:
                statistics = column.statistics
                if statistics.has_min_max and not isinstance(statistics.min, str | bytes):
                    found[side] = statistics.min if side in ("xmin", "ymin") else statistics.max
    if set(found) != set(_SIDES):
        return None
    return tuple(float(found[side]) for side in _SIDES)
