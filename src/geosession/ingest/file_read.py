"""The options that apply to some kinds of source file only, and the renaming of a file's
fields, shared by the readers of each kind (:mod:`.files`, :mod:`.delimited`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely

from geosession.errors import ConfigurationError
from geosession.geometry import Bbox, bbox_parts, is_bbox


@dataclass(frozen=True)
class FileRead:
    """How to read a source file: the options that apply to some kinds of file only."""

    wkt_column: str | None = None
    layer: str | None = None
    encoding: str | None = None
    where: str | None = None
    """An OGR SQL condition on a vector layer's fields: only the features it keeps load."""
    bbox: Bbox | None = None
    """Only a vector layer's features that intersect it load (in the layer's CRS)."""
    feature_ids: bool = False
    rename: Mapping[str, str] | None = None
    """Source field -> target column, for names the file cannot hold (a Shapefile's ten
    bytes: classifica -> classification_code)."""
    xy_columns: tuple[str, ...] | None = None
    """The coordinate columns (x, y, maybe z) of a CSV, Parquet or Arrow file without a
    geometry column, when their names do not say them (:mod:`.points`)."""

    def check(self, kind: str, source: str) -> None:
        """Refuses an option given for a source (``kind``: "csv", "vector", "parquet",
        "arrow" (a file), "arrow data", "frame", "rows", "json" (a file of JSON records) or
        "json object" (records in a member of one) it does not apply to, and a bbox that is
        no box."""
        for name, (kinds, purpose) in _FILE_OPTIONS.items():
            value = getattr(self, name)
            if value is not None and kind not in kinds:
                raise ConfigurationError(
                    f"{name}={value!r} {purpose}, and {source} is not one: leave it out"
                )
        if self.bbox is not None and not is_bbox(self.bbox):
            raise ConfigurationError(
                f"bbox={self.bbox!r} is not (minx, miny, maxx, maxy) with min <= max, in the "
                "CRS of the file's layer (minx > maxx only for a box crossing the antimeridian, "
                "in longitudes from -180 to 180)"
            )

    def spatial_filter(self) -> dict[str, Any]:
        """GDAL's spatial filter (pyogrio's keyword): the bbox, or for a box crossing the
        antimeridian its two halves as a mask, since GDAL's rectangle cannot wrap."""
        if self.bbox is None:
            return {}
        parts = bbox_parts(self.bbox)
        if len(parts) == 1:
            return {"bbox": self.bbox}
        return {"mask": shapely.MultiPolygon([shapely.box(*part) for part in parts])}

    def check_crossing(self, crs: Any, path: Path) -> None:
        """Refuses a box crossing the antimeridian for a layer in a projected CRS, where
        minx > maxx is corners given in the wrong order."""
        if self.bbox is None or len(bbox_parts(self.bbox)) == 1 or crs is None:
            return
        import pyproj  # pyogrio's companion in the geo extra

        if not pyproj.CRS.from_user_input(crs).is_geographic:
            raise ConfigurationError(
                f"bbox={self.bbox!r} has minx > maxx, which only a box in longitudes and "
                f"latitudes crossing the antimeridian can have, and {path} holds geometries "
                f"of a projected CRS ({crs}); give minx <= maxx in their coordinates"
            )


_FILE_OPTIONS = {
    "wkt_column": (("csv",), "names the geometry column of a CSV file"),
    "layer": (
        ("vector", "json object"),
        "names a layer of a vector file (GeoPackage, ...) or the member of a JSON object "
        "that holds its records",
    ),
    "encoding": (("csv", "vector"), "is the text encoding of a Shapefile or CSV file"),
    "where": (("vector",), "filters the features of a vector file (GeoPackage, Shapefile, ...)"),
    "bbox": (
        ("vector", "parquet", "arrow"),
        "filters the features of a file (GeoPackage, Shapefile, GeoParquet, ...)",
    ),
    "xy_columns": (
        (
            *("csv", "vector", "parquet", "arrow", "json", "json object"),
            *("frame", "rows", "arrow data"),
        ),
        "names the coordinate columns of a file, a DataFrame, Arrow data or dict rows "
        "without geometries",
    ),
    "rename": (
        ("csv", "vector", "json", "json object", "parquet", "arrow"),
        "renames a file's fields or a JSON records file's keys (a DataFrame's columns or "
        "rows' keys are renamed in Python)",
    ),
}


def renamer(read: FileRead, fields: Sequence[str], path: Path) -> Callable[[str], str]:
    """The name a field is loaded under: ``read.rename``'s, else its own."""
    rename = dict(read.rename or {})
    check_rename(rename, fields, path)
    return lambda field: rename.get(field, field)


def check_rename(rename: Mapping[str, str], fields: Sequence[str], path: Path) -> None:
    """Refuses a rename of a field the file does not have, naming the fields it has."""
    missing = [name for name in rename if name not in fields]
    if missing:
        raise ConfigurationError(
            f"rename names {', '.join(map(repr, missing))}, which {path} does not have as a "
            f"field; its fields: {', '.join(fields)}"
        )
