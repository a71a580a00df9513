"""Exports to files: GeoJSON and GeoJSON Lines here, GeoPackage, FlatGeobuf and Shapefiles
via pyogrio, GeoParquet and CSV via pyarrow.

Everything is checked before the query runs (format, options, destination), and a file
appears at the destination only once it is complete.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO, Any, cast

from geosession.compression import compression_suffix, compressor
from geosession.errors import ConfigurationError, ExportFailed, GeoSessionError
from geosession.read.geojson import (
    ExportResult,
    Progress,
    atomic_output,
    geojson_chunks,
    write_chunks,
)
from geosession.read.plan import ReadOptions
from geosession.read.progress import progress_callback
from geosession.read.stream import Connect, GeometryStream
from geosession.sidecar import refuse_a_shapefiles_prj, write_prj

FORMATS = ("geojson", "geojsonl", "gpkg", "fgb", "shp", "parquet", "arrow", "csv")
"""Export formats: GeoJSON FeatureCollection, GeoJSON Lines, GeoPackage, FlatGeobuf,
Shapefile, GeoParquet, Arrow IPC (Feather), CSV with WKT."""

BY_SUFFIX = {
    ".geojson": "geojson",
    ".json": "geojson",
    ".geojsonl": "geojsonl",
    ".geojsons": "geojsonl",
    ".geojsonseq": "geojsonl",
    ".ndjson": "geojsonl",
    ".jsonl": "geojsonl",
    ".gpkg": "gpkg",
    ".fgb": "fgb",
    ".shp": "shp",
    ".parquet": "parquet",
    ".geoparquet": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".csv": "csv",
}
"""The format a destination's suffix names (and ``.shp.zip``: a zipped Shapefile)."""

Destination = str | os.PathLike[str] | IO[bytes]


def format_for(dest: Destination, format: str | None, *, option: str = "format=") -> str:
    """``format``, or the one a path's suffix names (GeoJSON for a file object); errors
    name the choice as ``option`` spells it (``--format `` on the command line)."""
    if format is not None:
        if format not in FORMATS:
            raise ConfigurationError(
                f"{option}{format!r} is not an export format; use one of {', '.join(FORMATS)}"
            )
        return format
    if hasattr(dest, "write"):
        return "geojson"
    name = Path(os.fspath(dest)).name.lower()
    if compression_suffix(name) is not None:
        name = Path(name).stem  # parcels.geojson.gz is GeoJSON, compressed as it is written
    chosen = "shp" if name.endswith(".shp.zip") else BY_SUFFIX.get(Path(name).suffix)
    if chosen is None:
        raise ConfigurationError(
            f"cannot tell the format of {os.fspath(dest)!r} from its suffix; give "
            f"{option.strip()} ({', '.join(FORMATS)}) or a suffix such as .geojson, .gpkg, "
            ".parquet or .csv"
        )
    return chosen


def export(
    connect: Connect,
    statement: Any,
    dest: Destination,
    *,
    format: str | None = None,
    options: ReadOptions,
    params: Mapping[str, Any] | None = None,
    progress: bool | Progress | None = None,
    layer: str | None = None,
    spatial_index: bool = True,
    coordinates: bool = False,
) -> ExportResult:
    """Streams the rows of ``statement`` into ``dest`` in ``format`` (by default the one
    its suffix names); ``layer`` names a GeoPackage's layer (others in the file stay);
    ``progress``: True for a bar on stderr, or a function given the features written;
    ``spatial_index=False`` leaves a GeoPackage's, FlatGeobuf's or Shapefile's spatial
    index out; ``coordinates`` writes a CSV's points as two number columns."""
    chosen = format_for(dest, format)
    path = None if isinstance(dest, IO) or hasattr(dest, "write") else os.fspath(dest)
    compression = None if path is None else compression_suffix(path)
    if chosen == "csv" and path is not None:
        refuse_a_shapefiles_prj(path)
    if path is not None and compression is not None:
        written = partial(
            export,
            connect,
            statement,
            format=chosen,
            options=options,
            params=params,
            progress=progress,
            layer=layer,
            spatial_index=spatial_index,
            coordinates=coordinates,
        )
        result = _compressed(written, path, chosen, compression)
    else:
        output = _Output(dest, chosen, layer, spatial_index, coordinates)
        result = _export_plain(connect, statement, output, options, params, progress)
    if result.format == "csv" and path is not None:
        write_prj(path, result.crs)  # a CSV's CRS: parcels.prj
    return result


def _export_plain(
    connect: Connect,
    statement: Any,
    output: _Output,
    options: ReadOptions,
    params: Mapping[str, Any] | None,
    progress: bool | Progress | None,
) -> ExportResult:
    """An export written as it is, to a path or a file."""
    with progress_callback(progress) as advance, _file_failures(output):
        if output.format in ("geojson", "geojsonl"):
            return _write_geojson(connect, statement, options, params, output, advance)
        by_row = replace(options, output="row", postgres_text=True)
        stream = GeometryStream(connect, statement, by_row, params)
        return _write_file(stream, output, advance)  # from Arrow batches of plain rows


def _compressed(
    written: Callable[[IO[bytes]], ExportResult], path: str, format: str, compression: str
) -> ExportResult:
    """An export of a format written front to back, compressed as it is written into
    ``path`` (``parcels.geojsonl.gz``), which appears only once complete."""
    if format not in _STREAMED:
        inner = Path(path).stem
        raise ConfigurationError(
            f"cannot write {path}: a {format} file is finished in place after its rows, so "
            f"it is not compressed as it is written; export {inner}, then compress it, or "
            f"choose {', '.join(_STREAMED[:-1])} or {_STREAMED[-1]}"
        )
    output = _Output(path, format, None, spatial_index=True)
    with (
        _file_failures(output),
        atomic_output(path) as sink,
        _naming(sink.name, path),
        compressor(sink, compression) as packed,
    ):
        result = written(cast(IO[bytes], packed))
    return replace(result, path=path)


@contextlib.contextmanager
def _naming(temporary: object, path: str) -> Iterator[None]:
    """Errors name the file written, not its temporary name (which a sink opened from a
    file descriptor does not have: its name is the descriptor's number)."""
    try:
        yield
    except GeoSessionError as error:
        if isinstance(temporary, str):
            error.reword(error.message.replace(temporary, path))
        raise


@dataclass(frozen=True)
class _Output:
    """Where an export goes and in what form, checked before the query runs."""

    dest: Destination
    format: str
    layer: str | None
    spatial_index: bool
    coordinates: bool = False

    def __post_init__(self) -> None:
        if self.layer is not None and self.format not in ("gpkg", "fgb"):
            raise ConfigurationError(
                f"layer={self.layer!r} names a layer of a GeoPackage or FlatGeobuf file; a "
                f"{self.format} file has none: leave it out"
            )
        if not self.spatial_index and self.format not in ("gpkg", "fgb", "shp"):
            raise ConfigurationError(
                "spatial_index=False (--no-spatial-index) is for GeoPackage, FlatGeobuf and "
                f"Shapefiles; a {self.format} file has no spatial index: leave it out"
            )
        if self.coordinates and self.format != "csv":
            raise ConfigurationError(
                "coordinates=True (--coordinates) writes a CSV's points as two columns; a "
                f"{self.format} file holds geometries: write CSV (a .csv name, or "
                "format='csv', --format csv) or leave it out"
            )
        if isinstance(self.dest, io.TextIOBase):
            raise ConfigurationError(
                "the export writes bytes, and dest is a text stream: pass a binary one "
                "(sys.stdout.buffer, io.BytesIO(), open(path, 'wb')) or a path"
            )
        if self.path is None and self.format not in _STREAMED:
            raise ConfigurationError(
                f"format={self.format!r} needs a file path, not a file object or standard "
                "output: the file is finished in place (an index, a header) after the rows. "
                f"Write to a file, or choose {', '.join(_STREAMED[:-1])} or {_STREAMED[-1]}"
            )

    @property
    def path(self) -> str | None:
        return None if hasattr(self.dest, "write") else os.fspath(self.dest)


_STREAMED = ("geojson", "geojsonl", "csv", "parquet", "arrow")
"""Formats written front to back, so to a file object or standard output too (GeoParquet's
and Arrow's footers come last)."""


@contextlib.contextmanager
def _file_failures(output: _Output) -> Iterator[None]:
    """The file system's refusal while writing (a full disk, a quota, an I/O error) as
    ExportFailed naming the file; nothing partial is left (the writers clean up). A
    broken pipe is the reader's going away (``| head``), not a failure: it passes as is."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        name = output.path or getattr(output.dest, "name", None)
        where = str(name) if isinstance(name, str) else "the output"
        reason = error.strerror or str(error)
        room = f" in {Path(where).parent}" if output.path else ""
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        advice = f"free space{room} or write elsewhere" if full else "write elsewhere"
        raise ExportFailed(
            f"Writing {where} failed: {reason}: {advice}; {where} is left as it was"
        ) from error


def _write_geojson(
    connect: Connect,
    statement: Any,
    options: ReadOptions,
    params: Mapping[str, Any] | None,
    output: _Output,
    progress: Progress | None,
) -> ExportResult:
    """A FeatureCollection or GeoJSON Lines, the Features built by the server."""
    stream = GeometryStream(connect, statement, options.for_features(), params)
    with stream, atomic_output(output.dest) as sink:
        lines = output.format == "geojsonl"
        chunks = geojson_chunks(stream.batches(), newline_delimited=lines)
        write_chunks(chunks, sink, count=lambda: stream.rows_read, progress=progress)
    return ExportResult(stream.rows_read, output.path, output.format)


def _write_file(stream: GeometryStream, output: _Output, progress: Progress | None) -> ExportResult:
    """Writes a CSV, GeoParquet or Arrow file (to a path or a file), a GeoPackage,
    FlatGeobuf or Shapefile (to a path)."""
    if output.format == "shp":
        from geosession.read.shapefile import write_shapefile

        assert output.path is not None  # checked by _Output
        written = write_shapefile(
            stream, output.path, progress=progress, spatial_index=output.spatial_index
        )
        return ExportResult(written.count, output.path, output.format, written.renamed)
    if output.format == "csv":
        from geosession.read.delimited import write_csv

        count, crs = write_csv(
            stream, output.dest, progress=progress, coordinates=output.coordinates
        )
        return ExportResult(count, output.path, output.format, crs=crs)
    return ExportResult(_write_plain_file(stream, output, progress), output.path, output.format)


def _write_plain_file(stream: GeometryStream, output: _Output, progress: Progress | None) -> int:
    """Writes a file of a format without limits of its own on names; returns the rows."""
    if output.format == "parquet":
        from geosession.read.parquet import write_parquet

        return write_parquet(stream, output.dest, progress=progress)
    if output.format == "arrow":
        from geosession.read.ipc import write_arrow_file

        return write_arrow_file(stream, output.dest, progress=progress)
    path = output.path
    assert path is not None  # checked by _Output
    from geosession.read.ogr import write_ogr

    return write_ogr(
        stream,
        path,
        format=output.format,
        progress=progress,
        layer=output.layer,
        spatial_index=output.spatial_index,
    )
