"""(Geo)Parquet and Arrow IPC files, read with pyarrow a record batch at a time, and Arrow
record batches cut into the ingest's batches (also for Arrow data in memory,
:mod:`.arrow_streams`).

GeoParquet is read with pyarrow (the GDAL in pyogrio's wheels has no Parquet driver) in
record batches, a megabyte of a column chunk at a time; its WKB is read as it was stored.
Measured: 1,000,000 polygons in one row group, read in batches of 20,000 in 0.6 s with the
peak RSS 137 MB above the baseline; loaded into an empty indexed table in 6.1 s (2.1 s of
it the index rebuild).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from geosession.errors import ConfigurationError
from geosession.ingest.arrow_files import open_arrow_file
from geosession.ingest.batches import Batch, Landing
from geosession.ingest.columnar_bbox import BoxFilter
from geosession.ingest.crs import SourceCrs
from geosession.ingest.encodings import column_values
from geosession.ingest.file_read import FileRead, renamer
from geosession.ingest.geo_columns import parquet_arrow_schema, schema_geometry, usual_geometry
from geosession.ingest.geoarrow import native_geometries
from geosession.ingest.held_geometries import SAMPLE, arrow_geometries
from geosession.ingest.points import PointColumns, arrow_points

_PARQUET_BUFFER = 1 << 20
"""Bytes pyarrow reads of a column chunk at a time: without it (and with pre-buffering) a
1M-row row group of polygons raised the peak RSS by ~290 MB, with it by ~105 MB."""
FILE_BATCH = 10_000
"""Rows per record batch read from a file (a Parquet file here, a vector file in
:mod:`.files`); cut to the batch size asked for."""


def parquet_batches(parquet: Any, path: Path, landing: Landing, read: FileRead) -> Iterator[Batch]:
    """A (Geo)Parquet file's record batches, cut into batches of ``size()`` rows."""
    try:
        handle = parquet.ParquetFile(path, pre_buffer=False, buffer_size=_PARQUET_BUFFER)
        schema = parquet_arrow_schema(handle)
        first = partial(handle.iter_batches, batch_size=SAMPLE)
        names, known, points, native = _columnar_targets(schema, path, landing, read, first)
        box = _box_filter(schema, path, read, points, _landing_field(names, landing))
        groups = box.row_groups(handle.metadata) if box else None
        coordinates = points.fields if points else []
        columns = list(dict.fromkeys([*names, *coordinates, *(box.fields if box else [])]))
        reader = handle.iter_batches(batch_size=FILE_BATCH, columns=columns, row_groups=groups)
        kept = box.kept(reader) if box else reader
        yield from arrow_batches(kept, names, landing, known, native=native, points=points)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigurationError(f"cannot read {path} as Parquet: {error}") from error


def arrow_file_batches(path: Path, landing: Landing, read: FileRead) -> Iterator[Batch]:
    """An Arrow IPC file's record batches, cut into batches of ``size()`` rows."""
    import pyarrow

    reader = open_arrow_file(path)
    first = partial(open_arrow_file, path)  # read again from its start, to sample
    names, known, points, native = _columnar_targets(reader.schema, path, landing, read, first)
    box = _box_filter(reader.schema, path, read, points, _landing_field(names, landing))
    try:
        batches = (extension_storage(pyarrow, batch) for batch in reader)
        kept = box.kept(batches) if box else batches
        yield from arrow_batches(kept, names, landing, known, native=native, points=points)
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read {path} as an Arrow IPC file: {error}") from error


def _box_filter(
    schema: Any, path: Path, read: FileRead, points: PointColumns | None, held: str | None
) -> BoxFilter | None:
    """``read.bbox`` on a Parquet or Arrow file's geometry field (:mod:`.columnar_bbox`),
    or on the coordinate fields that make its points, checked against their CRS (minx >
    maxx only in longitudes and latitudes); ``held``: the field that lands in the target's
    geometry column, where nothing else names one."""
    if read.bbox is None:
        return None
    if points is not None:
        read.check_crossing(points.srid, path)
        return BoxFilter.of_points(read.bbox, points.x, points.y)
    geo = schema_geometry(schema, path)
    primary = geo.primary or usual_geometry(geo.fields(schema.names)) or held
    read.check_crossing(geo.crs.get(primary) if primary else None, path)
    return BoxFilter.of(read.bbox, primary, geo, path)


def _landing_field(names: Mapping[str, str], landing: Landing) -> str | None:
    """The field that lands in the target's one geometry column, if one does."""
    geometry = landing.geometry_column
    return next((field for field, column in names.items() if column == geometry), None)


def _columnar_targets(
    schema: Any,
    path: Path,
    landing: Landing,
    read: FileRead,
    first_batches: Callable[[], Iterable[Any]],
) -> tuple[dict[str, str], dict[str, SourceCrs], PointColumns | None, dict[str, str]]:
    """A Parquet or Arrow file's fields to read, with their columns (renamed as asked),
    the CRS of each geometry column's values, the coordinate fields that make points,
    and the fields in a native encoding; ``first_batches``: the file's batches from its
    start, read for a field of geometries under a name of its own."""
    geo = schema_geometry(schema, path)
    renamed = renamer(read, geo.fields(schema.names), path)

    def held(names: list[str]) -> str | None:
        found = arrow_geometries(schema, names, first_batches)
        return None if found is None else found[0]

    targets = geo.targets(schema.names, landing, str(path), renamed, read.xy_columns, held)
    return *targets, geo.native


def extension_storage(pyarrow: Any, batch: Any) -> Any:
    """The batch with registered extension columns as their storage (WKB bytes, text)."""
    if not any(isinstance(kind, pyarrow.BaseExtensionType) for kind in batch.schema.types):
        return batch
    arrays = [
        column.storage if isinstance(column.type, pyarrow.BaseExtensionType) else column
        for column in batch.columns
    ]
    return pyarrow.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def arrow_batches(
    record_batches: Iterable[Any],
    names: dict[str, str],
    landing: Landing,
    crs: dict[str, SourceCrs],
    text_encoding: str | None = None,
    native: Mapping[str, str] | None = None,
    points: PointColumns | None = None,
) -> Iterator[Batch]:
    """Arrow record batches cut into batches of ``size()`` rows without copying.

    ``text_encoding`` decodes text that is not UTF-8 (see :mod:`.encodings`); ``native``
    names the fields in a GeoArrow native encoding, read as shapely geometries; ``points``
    the coordinate fields that make the points of the geometry column."""
    first = 1
    for record_batch in record_batches:
        offset = 0
        while offset < record_batch.num_rows:
            part = record_batch.slice(offset, landing.size())
            values = {
                names[f]: _field_values(part.column(f), f, text_encoding, native or {})
                for f in names
            }
            if points is not None:
                coordinates = [part.column(name) for name in points.fields]
                values[str(landing.geometry_column)] = arrow_points(coordinates, points.fields)
            yield Batch(first, {c: values[c] for c in landing.columns if c in values}, crs)
            first += part.num_rows
            offset += part.num_rows


def _field_values(
    column: Any, name: str, text_encoding: str | None, native: Mapping[str, str]
) -> list[Any]:
    encoding = native.get(name)
    if encoding is not None:
        return native_geometries(column, encoding)
    return column_values(column, text_encoding)
