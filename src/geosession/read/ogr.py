"""GeoPackage and FlatGeobuf files from a stream (``geo`` extra), through GDAL's Arrow API.

The stream's record batches go to ``pyogrio.raw.write_arrow`` as one Arrow stream: GDAL
creates the layer once, with field types from the columns' Arrow types (``read.arrow``),
and builds the GeoPackage's spatial index after the last row. Appending chunk by chunk
instead reopened the file per chunk and updated the R-tree per row: 1,000,000 polygons
took 67 s that way. FlatGeobuf's spatial index cannot hold NULL or empty geometries, which are
known only at the end, so it is written from a temporary GeoPackage, again through Arrow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from geosession.errors import ConfigurationError
from geosession.geometry import TYPE_NAMES
from geosession.read.arrow import pyarrow, record_batches
from geosession.read.geojson import Progress, temporary_path
from geosession.read.stream import GeometryStream


def write_ogr(
    stream: GeometryStream,
    path: str,
    *,
    format: str,
    progress: Progress | None,
    layer: str | None = None,
    spatial_index: bool = True,
) -> int:
    """Writes ``stream`` as a GeoPackage or FlatGeobuf file at ``path``; returns the count.

    A named ``layer`` is added to an existing GeoPackage, or replaces the layer of that
    name, and its other layers stay: the file is copied, written and renamed back, so a
    failed export leaves it as it was. Without one, the layer is named after the file.
    Without ``spatial_index``, the file has none: quicker to write, and a FlatGeobuf
    export's memory no longer grows with its features.
    """
    pa = pyarrow()
    target = Path(path)
    package = temporary_path(target, ".gpkg")
    _check_writable(package)
    try:
        if format == "gpkg" and layer is not None and target.is_file():
            _check_geopackage(target, layer)
            shutil.copyfile(target, package)
        name = layer or target.stem or "features"
        indexed = spatial_index and format == "gpkg"  # FlatGeobuf's is its own
        count, unindexable = _write_package(pa, stream, package, name, progress, indexed=indexed)
        if format == "fgb":
            flat = temporary_path(target, ".fgb")
            try:
                _package_to_flatgeobuf(
                    package, flat, name, spatial_index=spatial_index and not unindexable
                )
                os.replace(flat, target)
            finally:
                flat.unlink(missing_ok=True)
        else:
            os.replace(package, target)
    finally:
        stream.close()
        package.unlink(missing_ok=True)
    return count


_KEEPS_TYPE = ("full", "simplify", "transform")
"""Projections after which the column's declared type still holds (not an envelope, which
may be a point, a line or a polygon, nor a centroid)."""


class _Layer:
    """What the layer's declaration needs from the rows: the CRS of the first chunk, which
    GDAL takes before the first row; the geometry types of every chunk when nothing
    declares the type; the count, and the NULL or empty geometries (which FlatGeobuf's
    spatial index cannot hold)."""

    def __init__(self, progress: Progress | None, declared: str | None) -> None:
        self.progress = progress
        self.declared = declared
        self.count = self.unindexable = 0
        self.kinds: set[str] = set()
        self.crs: Any = None

    def see(self, frame: Any) -> None:
        if not self.count:
            self.crs = frame.crs
        geometries = frame.geometry.to_numpy()
        if self.declared is None:
            self.kinds |= _geometry_kinds(geometries)
        self.count += len(frame)
        self.unindexable += int(
            (shapely.is_missing(geometries) | shapely.is_empty(geometries)).sum()
        )
        if self.progress is not None:
            self.progress(self.count)

    @property
    def one_kind(self) -> str | None:
        """The one geometry type of every row, when nothing declared it."""
        return next(iter(self.kinds)) if self.declared is None and len(self.kinds) == 1 else None


def _write_package(
    pa: Any,
    stream: GeometryStream,
    package: Path,
    layer: str,
    progress: Progress | None,
    *,
    indexed: bool,
) -> tuple[int, int]:
    """Writes the layer in one Arrow stream; returns the rows, and those whose geometry
    is NULL or empty."""
    from pyogrio.raw import write_arrow

    seen = _Layer(progress, None)
    plan, schema, batches = record_batches(pa, stream, seen.see)  # frames are seen lazily
    seen.declared = _declared_type(plan)
    first = next(batches, None)  # the layer's CRS is its
    if first is None and plan.geometry.srid:
        seen.crs = f"EPSG:{plan.geometry.srid}"
    rows = chain([first] if first is not None else [], batches)
    write_arrow(
        pa.RecordBatchReader.from_batches(schema, rows),
        package,
        layer=layer,
        driver="GPKG",
        geometry_name=plan.geometry.name,
        geometry_type=seen.declared or "Unknown",
        crs=_wkt(seen.crs),
        layer_options={
            "SPATIAL_INDEX": "YES" if indexed else "NO",
            "GEOMETRY_NAME": plan.geometry.name,
        },
    )
    if seen.one_kind is not None:
        _narrow_declared_type(package, layer, seen.one_kind)
    return seen.count, seen.unindexable


def _declared_type(plan: Any) -> str | None:
    """GDAL's name of the layer's geometry type when it is known before any row: the
    column's (kept by the projection; "Unknown" for ``geometry(Geometry)``), or Point for
    centroids and the envelopes of points. None when the rows must tell (an expression's
    column has no declared type; an envelope is a point, a line or a polygon)."""
    kind, column = plan.options.projection.kind, plan.geometry.geometry_type
    if kind in _KEEPS_TYPE:
        return str(column) if column is not None else None
    if kind == "centroid" or (column or "").upper().startswith("POINT"):
        return "Point"  # both are 2D
    return None


def _geometry_kinds(geometries: np.ndarray[Any, Any]) -> set[str]:
    """GDAL's names of the chunk's geometry types (with " Z"); "Unknown" for a type whose
    geometries are 2D and 3D both."""
    present = geometries[~shapely.is_missing(geometries)]
    if not len(present):
        return set()
    codes = np.unique(shapely.get_type_id(present) * 2 + shapely.has_z(present))
    kinds = {TYPE_NAMES[code // 2] + (" Z" if code % 2 else "") for code in codes.tolist()}
    flat = [kind.removesuffix(" Z") for kind in kinds]
    return {"Unknown"} if len(set(flat)) != len(flat) else kinds


def _narrow_declared_type(package: Path, layer: str, kind: str) -> None:
    """Declares the one type every row turned out to have: the layer was written as
    GEOMETRY, since no chunk could tell that a later one would not differ (a FlatGeobuf
    file made from a layer of one type refuses rows of another, and GeoPackage readers
    trust the declaration)."""
    if kind == "Unknown":
        return
    name, _, z = kind.partition(" ")
    with contextlib.closing(sqlite3.connect(package)) as connection, connection:
        connection.execute(
            "UPDATE gpkg_geometry_columns SET geometry_type_name = ?, z = ? WHERE table_name = ?",
            (name.upper(), 1 if z else 0, layer),
        )


def _wkt(crs: Any) -> str | None:
    """The CRS as WKT, which GDAL's Arrow writer takes (pyproj, a geopandas dependency)."""
    if crs is None:
        return None
    from pyproj import CRS

    return str(CRS.from_user_input(crs).to_wkt())


def _check_geopackage(path: Path, layer: str) -> None:
    """A file a layer is added to must be a GeoPackage (GDAL would replace anything else):
    an SQLite database whose application id says GPKG (GP10, GP11 in older ones)."""
    with path.open("rb") as handle:
        header = handle.read(72)
    if header[:16] != b"SQLite format 3\x00" or header[68:72] not in (b"GPKG", b"GP10", b"GP11"):
        raise ConfigurationError(
            f"cannot add layer {layer!r} to {path}: it is not a GeoPackage; choose another "
            "file name, or remove the file"
        )


def _check_writable(package: Path) -> None:
    try:
        package.touch(exist_ok=False)
        package.unlink()
    except OSError as error:
        raise ConfigurationError(
            f"cannot write in {package.parent}: {error.strerror}; choose a writable directory"
        ) from None


_FLATGEOBUF_BATCH = 8192
"""Features per Arrow batch from the temporary GeoPackage to FlatGeobuf: as fast as
GDAL's default of 65,536, at a fraction of the memory."""


def _package_to_flatgeobuf(package: Path, flat: Path, layer: str, *, spatial_index: bool) -> None:
    """Streams the GeoPackage layer into FlatGeobuf in Arrow batches (GDAL >= 3.8).

    FlatGeobuf's spatial index cannot hold NULL or empty geometries: with any, it is left out.
    """
    from pyogrio.raw import open_arrow, write_arrow

    with open_arrow(package, use_pyarrow=False, batch_size=_FLATGEOBUF_BATCH) as (meta, reader):
        write_arrow(
            reader,
            flat,
            layer=layer,
            driver="FlatGeobuf",
            geometry_name=meta["geometry_name"] or "geometry",
            geometry_type=meta["geometry_type"],
            crs=meta["crs"],
            layer_options={"SPATIAL_INDEX": "YES" if spatial_index else "NO"},
        )
