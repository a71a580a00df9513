"""GeoPackage and FlatGeobuf files from a stream (``geo`` extra), through GDAL's Arrow API.

The stream's record batches go to ``pyogrio.raw.write_arrow`` as one Arrow stream: GDAL
creates the layer once, with field types from the columns' Arrow types (``read.arrow``),
and builds the GeoPackage's spatial index after the last row. Appending chunk by chunk
instead reopened the file per chunk and updated the R-tree per row: 1,000,000 polygons
took 67 s that way. FlatGeobuf's spatial index cannot hold NULL geometries, which are
known only at the end, so it is written from a temporary GeoPackage, again through Arrow.
"""

from __future__ import annotations

import os
import shutil
from itertools import chain
from pathlib import Path
from typing import Any

import shapely

from geosession.errors import ConfigurationError
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
) -> int:
    """Writes ``stream`` as a GeoPackage or FlatGeobuf file at ``path``; returns the count.

    A named ``layer`` is added to an existing GeoPackage, or replaces the layer of that
    name, and its other layers stay: the file is copied, written and renamed back, so a
    failed export leaves it as it was. Without one, the layer is named after the file.
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
        count, nulls = _write_package(pa, stream, package, name, progress)
        if format == "fgb":
            flat = temporary_path(target, ".fgb")
            try:
                _package_to_flatgeobuf(package, flat, name, spatial_index=not nulls)
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
may be a point or a line, nor a centroid)."""


class _Layer:
    """What the layer's declaration needs from the rows: the first chunk's geometry type
    (unless the column declares one) and CRS, which GDAL takes before the first row; the
    count, the NULL geometries."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.count = self.nulls = 0
        self.type: str | None = None
        self.crs: Any = None

    def see(self, frame: Any) -> None:
        if not self.count:
            self.type = self.type or _geometry_type(frame.geometry)
            self.crs = frame.crs
        self.count += len(frame)
        self.nulls += int(frame.geometry.isna().sum())
        if self.progress is not None:
            self.progress(self.count)


def _write_package(
    pa: Any, stream: GeometryStream, package: Path, layer: str, progress: Progress | None
) -> tuple[int, int]:
    """Writes the layer in one Arrow stream; returns the rows and NULL geometries."""
    from pyogrio.raw import write_arrow

    seen = _Layer(progress)
    plan, schema, batches = record_batches(pa, stream, seen.see)
    if plan.options.projection.kind in _KEEPS_TYPE:
        seen.type = plan.geometry.geometry_type
    first = next(batches, None)  # the layer is declared from it
    if first is None and plan.geometry.srid:
        seen.crs = f"EPSG:{plan.geometry.srid}"
    rows = chain([first] if first is not None else [], batches)
    write_arrow(
        pa.RecordBatchReader.from_batches(schema, rows),
        package,
        layer=layer,
        driver="GPKG",
        geometry_name=plan.geometry.name,
        geometry_type=seen.type or "Unknown",
        crs=_wkt(seen.crs),
        layer_options={"SPATIAL_INDEX": "YES", "GEOMETRY_NAME": plan.geometry.name},
    )
    return seen.count, seen.nulls


def _geometry_type(geometries: Any) -> str:
    """GDAL's name of the chunk's one geometry type (with " Z"), else "Unknown"."""
    present = geometries[geometries.notna()]
    kinds = set(present.geom_type)
    if len(kinds) != 1:
        return "Unknown"
    (kind,) = kinds
    return f"{kind} Z" if bool(shapely.has_z(present.to_numpy()).any()) else str(kind)


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


def _package_to_flatgeobuf(package: Path, flat: Path, layer: str, *, spatial_index: bool) -> None:
    """Streams the GeoPackage layer into FlatGeobuf in Arrow batches (GDAL >= 3.8).

    FlatGeobuf's spatial index cannot hold NULL geometries: with any, it is left out.
    """
    from pyogrio.raw import open_arrow, write_arrow

    with open_arrow(package, use_pyarrow=False) as (meta, reader):
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
