"""GeoPackage and FlatGeobuf files from a stream (``geo`` extra), through GDAL's Arrow API.

The stream's record batches go to ``pyogrio.raw.write_arrow`` as one Arrow stream: GDAL
creates the layer once, with field types from the columns' Arrow types (``read.arrow``),
and builds the GeoPackage's spatial index after the last row. Appending chunk by chunk
instead reopened the file per chunk and updated the R-tree per row: 1,000,000 polygons
took 67 s that way. FlatGeobuf's spatial index cannot hold NULL or empty geometries,
which are known only at the end, so the rows go to a FlatGeobuf file without an index
first, then are copied (again through Arrow) into one with its index if they allow it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import chain, count
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from geosession.errors import ConfigurationError, ExportFailed
from geosession.read.arrow import Chunk, pyarrow, record_batches
from geosession.read.geojson import Progress, temporary_path
from geosession.read.layer_types import (
    UNKNOWN,
    layer_kind,
    one_base,
    presence,
    pyogrio_name,
    row_kinds,
)
from geosession.read.passthrough import unindexable
from geosession.read.stream import GeometryStream
from geosession.warning_filters import quieted, recorded, shown


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
    target = Path(path)
    name = layer or target.stem or "features"
    with gdal_failures(target, stream):
        if format == "fgb":
            return _write_flatgeobuf(stream, target, name, progress, spatial_index)
        added = layer is not None and target.is_file()  # the file's other layers stay
        return _write_geopackage(stream, target, name, progress, spatial_index, added=added)


@contextlib.contextmanager
def gdal_failures(target: Path, stream: GeometryStream) -> Iterator[None]:
    """GDAL's refusals as ExportFailed naming ``target``; the stream is closed either way."""
    try:
        yield
    except _ValueNotWritten as error:
        raise ExportFailed(
            f"Writing {target} failed: {error}; {target} is left as it was"
        ) from None
    except _gdal_errors() as error:
        raise _export_failed(error, target, stream) from error
    finally:
        stream.close()


def _gdal_errors() -> tuple[type[Exception], ...]:
    from pyogrio import errors

    return (
        errors.DataSourceError,
        errors.DataLayerError,
        errors.FieldError,
        errors.FeatureError,
        errors.GeometryError,
    )


_DISK_FULL = ("no space left", "disk is full", "disk quota")
"""GDAL's and SQLite's words for a full disk."""


def _export_failed(error: Exception, target: Path, stream: GeometryStream) -> ExportFailed:
    """GDAL's refusal in geosession's words: the file, GDAL's message, what to do."""
    message = " ".join(str(error).split())
    names = stream.plan.names if stream.plan is not None else ()
    fid = next((n for n in names if n.casefold() == "fid"), None)
    if fid is not None and "UNIQUE constraint failed" in message:
        advice = (
            f"Column {fid} becomes the GeoPackage's feature id, whose values must be unique "
            f"and one repeats: make it unique, or rename it in the query ({fid} AS source_fid)"
        )
    elif any(words in message.lower() for words in _DISK_FULL):
        advice = f"Free space in {target.parent} or write elsewhere"
    else:
        advice = "Fix what GDAL names, or choose another format (GeoParquet holds any column)"
    return ExportFailed(
        f"Writing {target} failed: GDAL: {message}. {advice}; {target} is left as it was"
    )


def _write_geopackage(
    stream: GeometryStream,
    target: Path,
    layer: str,
    progress: Progress | None,
    indexed: bool,
    *,
    added: bool,
) -> int:
    """A new file, or (``added``) a copy of ``target`` with the layer added or replaced;
    renamed onto ``target`` when done."""
    package = temporary_path(target, ".gpkg")
    check_writable(package)
    try:
        if added:
            _check_geopackage(target, layer)
            shutil.copyfile(target, package)
        rows = open_rows(stream, progress, curves=True)
        seen = write_rows(rows, package, layer, driver="GPKG", indexed=indexed)
        if seen.declared is None:
            _narrow_declared_type(package, layer, seen.kinds)
        os.replace(package, target)
    finally:
        package.unlink(missing_ok=True)
    return seen.count


def _write_flatgeobuf(
    stream: GeometryStream, target: Path, layer: str, progress: Progress | None, indexed: bool
) -> int:
    """The rows into a FlatGeobuf file without an index, then copied into one with its
    index (and the one geometry type the rows turned out to have) where they allow it.

    FlatGeobuf declares the type and dimensions before the first row and holds no other:
    when no column declares them, the rows go to a GeoPackage first, which holds any.
    """
    flat = temporary_path(target, ".fgb")
    check_writable(flat)
    rows = open_rows(stream, progress, curves=True, empty_as_null=True)  # FlatGeobuf has none
    direct = rows.seen.declared is not None
    plain = temporary_path(target, ".plain.fgb" if direct else ".gpkg")
    try:
        driver = "FlatGeobuf" if direct else "GPKG"
        seen = write_rows(rows, plain, layer, driver=driver, indexed=False, staged=not direct)
        indexable = indexed and seen.count > 0 and not seen.unindexable
        if indexable or not direct:
            copy_layer(
                plain,
                flat,
                layer,
                driver="FlatGeobuf",
                kind=seen.kind,
                options={"SPATIAL_INDEX": "YES" if indexable else "NO"},
            )
            os.replace(flat, target)
        else:
            os.replace(plain, target)
    finally:
        plain.unlink(missing_ok=True)
        flat.unlink(missing_ok=True)
    return seen.count


class _Layer:
    """What the layer's declaration needs from the rows: the CRS of the first chunk, which
    GDAL takes before the first row; the geometry types of every chunk when nothing
    declares the type; the count, and the NULL or empty geometries (which FlatGeobuf's
    spatial index cannot hold)."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.declared: str | None = None  # the type known before any row (layer_types)
        self.count = self.unindexable = 0
        self.kinds: set[str] = set()
        self.crs: Any = None

    def see(self, chunk: Chunk) -> None:
        if not self.count:
            self.crs = chunk.crs
        geometries = chunk.geometry
        if self.declared is None:
            self.kinds |= row_kinds(geometries)
        self.count += chunk.rows
        self.unindexable += unindexable(geometries)
        if self.progress is not None:
            self.progress(self.count)

    @property
    def kind(self) -> str:
        """The layer's type: the declared one, else the one type of all rows (with every
        dimension any row has), else Unknown (with them)."""
        return self.declared if self.declared is not None else layer_kind(self.kinds)


@dataclass
class Rows:
    """A stream's rows as Arrow batches, its plan and schema, and what is seen of the
    rows as they pass (the first batch is read, so the layer's CRS is known)."""

    plan: Any
    schema: Any
    batches: Iterator[Any]
    seen: _Layer


def open_rows(
    stream: GeometryStream,
    progress: Progress | None,
    *,
    curves: bool = False,
    empty_as_null: bool = False,
) -> Rows:
    """Runs the query and reads its first batch; ``curves``: the file takes geometries
    shapely cannot hold, passed through as WKB (:mod:`.passthrough`); ``empty_as_null``:
    it holds no empty geometry, so each is NULL."""
    seen = _Layer(progress)
    plan, schema, batches = record_batches(
        pyarrow(), stream, seen.see, curves=curves, empty_as_null=empty_as_null
    )
    seen.declared = plan.options.projection.declared(plan.geometry.geometry_type)
    first = next(batches, None)
    if first is None:
        seen.crs = plan.crs_for(plan.geometry.srid)
    return Rows(plan, schema, chain([first] if first is not None else [], batches), seen)


def write_rows(
    rows: Rows,
    path: Path,
    layer: str,
    *,
    driver: str,
    indexed: bool,
    staged: bool = False,
    options: Mapping[str, str] | None = None,
) -> _Layer:
    """Writes the layer in one Arrow stream, with GDAL's layer ``options``; returns what
    was seen of its rows. ``staged``: a GeoPackage on the way to a file of one type."""
    geometry = rows.plan.geometry.name
    layer_options = {"SPATIAL_INDEX": "YES" if indexed else "NO", **(options or {})}
    if driver == "GPKG":
        layer_options |= _geopackage_options(rows.schema, geometry, staged=staged)
    schema, floored = _in_milliseconds(rows.schema, rows.batches)
    batches = _Relayed(floored)
    with batches.relayed():
        _write_arrow(
            pyarrow().RecordBatchReader.from_batches(schema, batches),
            path,
            layer=layer,
            driver=driver,
            geometry_name=geometry,
            geometry_type=pyogrio_name(rows.seen.declared or UNKNOWN),
            crs=_wkt(rows.seen.crs),
            layer_options=layer_options,
        )
    return rows.seen


def _in_milliseconds(schema: Any, batches: Iterator[Any]) -> tuple[Any, Iterator[Any]]:
    """Times floored to the millisecond, which GDAL keeps: it rounded the rest, writing
    12:59:59.9996 as 12:59:60 into a GeoPackage or a Shapefile (a second no clock shows,
    read back as the next minute or not at all) and PostgreSQL's infinity as year 10000."""
    pa = pyarrow()
    import pyarrow.compute as pc

    timed = [
        index
        for index, field in enumerate(schema)
        if pa.types.is_timestamp(field.type) or pa.types.is_time64(field.type)
    ]
    if not timed:
        return schema, batches
    for index in timed:
        field = schema.field(index)
        if pa.types.is_timestamp(field.type):
            schema = schema.set(index, field.with_type(pa.timestamp("ms", field.type.tz)))
        else:
            schema = schema.set(index, field.with_type(pa.time32("ms")))

    def floored(batch: Any) -> Any:
        columns = list(batch.columns)
        for index in timed:
            whole = pc.floor_temporal(columns[index], unit="millisecond")
            columns[index] = whole.cast(schema.field(index).type)
        return pa.RecordBatch.from_arrays(columns, schema=schema)

    return schema, map(floored, batches)


class _Relayed:
    """Batches whose failure (the server's error, a lost connection, Ctrl-C) reaches the
    caller as raised: GDAL reads them through Arrow's C stream and reports any failure as
    "Error while accessing batch from stream"."""

    def __init__(self, batches: Iterator[Any]) -> None:
        self.batches = batches
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self.batches
        except BaseException as error:
            self.error = error
            raise

    @contextlib.contextmanager
    def relayed(self) -> Iterator[None]:
        try:
            yield
        except RuntimeError:
            if self.error is None:
                raise
            raise self.error from None


def _geopackage_options(schema: Any, geometry: str, *, staged: bool) -> dict[str, str]:
    """The geometry column's name, and the feature id's when a column named fid is not an
    integer (GDAL makes a column of that name the feature id, which must be one) or the
    GeoPackage is ``staged`` (a copy leaves feature ids out). Names that differ only in
    case are refused: SQLite's, and so a GeoPackage's, ignore case."""
    seen: dict[str, str] = {}
    for name in schema.names:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise ConfigurationError(
                f"columns {other!r} and {name!r} differ only in case, and a GeoPackage's "
                "names ignore case: rename one in the query (... AS another_name), "
                + (
                    "or cast the geometry to its type (geometry(Polygon, 4326), say): a "
                    "FlatGeobuf file of an undeclared type is made through a GeoPackage"
                    if staged
                    else "or export to FlatGeobuf or GeoParquet"
                )
            )
    options = {"GEOMETRY_NAME": geometry}
    fid = seen.get("fid")
    if fid is not None and (staged or not pyarrow().types.is_integer(schema.field(fid).type)):
        options["FID"] = next(f"fid_{n}" for n in count(1) if f"fid_{n}" not in seen)
    return options


class _ValueNotWritten(Exception):
    """A value GDAL could not write as it is (:data:`_NOT_WRITTEN`), in geosession's words."""


_NOT_WRITTEN = re.compile(
    r"Value (?P<value>\S+) of field (?P<field>.+) of feature (?P<feature>\d+) not "
    r"successfully written"
)
"""GDAL's warning for a value its format's field cannot hold (a Shapefile's numbers are
24 characters wide): the file would hold another value in its place."""


def _write_arrow(reader: Any, path: Path, **options: Any) -> None:
    """pyogrio's write_arrow, without its warning that a layer has no CRS (geometries of
    SRID 0 have none to give it), and failing where GDAL says it wrote a value wrong."""
    from pyogrio.raw import write_arrow

    with recorded() as caught:
        write_arrow(reader, path, **options)
    for warning in caught:
        text = str(warning.message)
        if (wrong := _NOT_WRITTEN.match(text)) is not None:
            raise _ValueNotWritten(
                f"field {wrong['field']} of feature {int(wrong['feature']) + 1:,} holds "
                f"{wrong['value']}, which the file's field is too narrow to hold (GDAL "
                "would have written another number): scale or round it in the query, or "
                "export to GeoPackage or GeoParquet, which hold any double"
            )
        if not (options.get("crs") is None and text.startswith("'crs' was not provided")):
            shown(warning)


def _narrow_declared_type(package: Path, layer: str, kinds: set[str]) -> None:
    """Declares the type the rows turned out to have (the one type, else GEOMETRY) and
    whether they have Z and M: the layer was written as GEOMETRY, since no chunk could
    tell that a later one would not differ (a FlatGeobuf file made from a layer of one
    type refuses rows of another, and GeoPackage readers trust the declaration)."""
    base = one_base(kinds)
    z, m = presence(kinds)
    if base == UNKNOWN:  # GDAL reads GEOMETRY with z or m 1 as a type pyogrio cannot name
        z, m = min(z, 1) * 2, min(m, 1) * 2
    name = "GEOMETRY" if base == UNKNOWN else base.upper()
    with contextlib.closing(sqlite3.connect(package)) as connection, connection:
        connection.execute(
            "UPDATE gpkg_geometry_columns SET geometry_type_name = ?, z = ?, m = ? "
            "WHERE table_name = ?",
            (name, z, m, layer),
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


def check_writable(package: Path) -> None:
    try:
        package.touch(exist_ok=False)
        package.unlink()
    except OSError as error:
        raise ConfigurationError(
            f"cannot write in {package.parent}: {error.strerror}; choose a writable directory"
        ) from None


_COPY_BATCH = 8192
"""Features per Arrow batch when a layer is copied into a FlatGeobuf file or Shapefile: as
fast as GDAL's default of 65,536, at a fraction of the memory (~120 MB less at 1M
polygons)."""


def copy_layer(
    source: Path,
    dest: Path,
    layer: str,
    *,
    driver: str,
    kind: str,
    options: Mapping[str, str],
    points_as_multi: bool = False,
) -> None:
    """Streams a FlatGeobuf file or a GeoPackage layer into a file of GDAL's ``driver`` in
    Arrow batches (GDAL >= 3.8), declared of the geometry type ``kind``, with GDAL's
    layer ``options``. ``points_as_multi``: each point becomes a multipoint of one, for a
    Shapefile of multipoints (GDAL refuses a point there)."""
    from pyogrio.raw import open_arrow

    opened = open_arrow(source, use_pyarrow=points_as_multi, batch_size=_COPY_BATCH)
    with contextlib.ExitStack() as stack:
        with quieted(r"Measured \(M\) geometry types"):  # its WKB keeps the M values
            meta, reader = stack.enter_context(opened)
        geometry = meta["geometry_name"] or "geometry"
        _write_arrow(
            _multipoints(reader, geometry) if points_as_multi else reader,
            dest,
            layer=layer,
            driver=driver,
            geometry_name=geometry,
            geometry_type=pyogrio_name(kind),
            crs=meta["crs"],
            layer_options=dict(options),
        )


def _multipoints(reader: Any, geometry: str) -> Any:
    """``reader``'s batches with each point of the WKB column ``geometry`` a multipoint."""
    pa = pyarrow()

    def batches() -> Iterator[Any]:
        for batch in reader:
            index = batch.schema.get_field_index(geometry)
            shapes = shapely.from_wkb(batch.column(index).to_numpy(zero_copy_only=False))
            single = np.flatnonzero(shapely.get_type_id(shapes) == shapely.GeometryType.POINT)
            if len(single):
                shapes[single] = shapely.multipoints(shapes[single], indices=np.arange(len(single)))
            column = pa.array(shapely.to_wkb(shapes, flavor="iso"), batch.column(index).type)
            yield batch.set_column(index, batch.schema.field(index), column)

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
