"""The options that apply to some kinds of source file only, and the renaming of a file's
fields, shared by the readers of each kind (:mod:`.files`, :mod:`.delimited`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from geosession.errors import ConfigurationError

Bbox = tuple[float, float, float, float]


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
    xy_columns: tuple[str, str] | None = None
    """A CSV's coordinate columns (x, y), when their names do not say them (:mod:`.points`)."""

    def check(self, kind: str, source: str) -> None:
        """Refuses an option given for a source (``kind``: "csv", "vector", "parquet",
        "arrow" or "rows") it does not apply to, and a bbox that is no box."""
        for name, (kinds, purpose) in _FILE_OPTIONS.items():
            value = getattr(self, name)
            if value is not None and kind not in kinds:
                raise ConfigurationError(
                    f"{name}={value!r} {purpose}, and {source} is not one: leave it out"
                )
        box = self.bbox
        if box is not None and not (
            len(box) == 4 and all(map(math.isfinite, box)) and box[0] <= box[2] and box[1] <= box[3]
        ):
            raise ConfigurationError(
                f"bbox={box!r} is not (minx, miny, maxx, maxy) with min <= max, in the CRS of "
                "the file's layer"
            )


_FILE_OPTIONS = {
    "wkt_column": (("csv",), "names the geometry column of a CSV file"),
    "layer": (("vector",), "names a layer of a vector file (GeoPackage, ...)"),
    "encoding": (("csv", "vector"), "is the text encoding of a Shapefile or CSV file"),
    "where": (("vector",), "filters the features of a vector file (GeoPackage, Shapefile, ...)"),
    "bbox": (("vector",), "filters the features of a vector file (GeoPackage, Shapefile, ...)"),
    "xy_columns": (
        ("csv", "frame", "rows"),
        "names the coordinate columns of a CSV file, a DataFrame or dict rows",
    ),
    "rename": (
        ("csv", "vector", "parquet", "arrow"),
        "renames a file's fields (a DataFrame's columns or rows' keys are renamed in Python)",
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
