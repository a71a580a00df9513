"""Exports to files: GeoJSON and GeoJSON Lines here, GeoPackage and FlatGeobuf via pyogrio,
GeoParquet and CSV via pyarrow.

Everything is checked before the query runs (format, options, destination), and a file
appears at the destination only once it is complete.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from geosession.errors import ConfigurationError
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

FORMATS = ("geojson", "geojsonl", "gpkg", "fgb", "parquet", "csv")
"""Export formats: GeoJSON FeatureCollection, GeoJSON Lines, GeoPackage, FlatGeobuf,
GeoParquet, CSV with WKT."""

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
    ".parquet": "parquet",
    ".geoparquet": "parquet",
    ".csv": "csv",
}
"""The format a destination's suffix names."""

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
    chosen = BY_SUFFIX.get(Path(os.fspath(dest)).suffix.lower())
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
) -> ExportResult:
    """Streams the rows of ``statement`` into ``dest`` in ``format`` (by default the one
    its suffix names); ``layer`` names a GeoPackage's layer (others in the file stay);
    ``progress``: True for a bar on stderr, or a function given the features written;
    ``spatial_index=False`` leaves a GeoPackage's or FlatGeobuf's spatial index out."""
    format = format_for(dest, format)
    path = None if hasattr(dest, "write") else os.fspath(dest)
    if layer is not None and format not in ("gpkg", "fgb"):
        raise ConfigurationError(
            f"layer={layer!r} names a layer of a GeoPackage or FlatGeobuf file; a {format} "
            "file has none: leave it out"
        )
    if not spatial_index and format not in ("gpkg", "fgb"):
        raise ConfigurationError(
            f"spatial_index=False is for GeoPackage and FlatGeobuf files; a {format} file "
            "has no spatial index: leave it out"
        )
    if path is None and format not in ("geojson", "geojsonl", "csv"):
        raise ConfigurationError(f"format={format!r} needs a file path, not a file object")
    with progress_callback(progress) as advance:
        return _export(
            connect, statement, dest, path, format, options, params, advance, layer, spatial_index
        )


def _export(
    connect: Connect,
    statement: Any,
    dest: Destination,
    path: str | None,
    format: str,
    options: ReadOptions,
    params: Mapping[str, Any] | None,
    progress: Progress | None,
    layer: str | None,
    spatial_index: bool,
) -> ExportResult:
    """The export itself, once its arguments are checked."""
    if format in ("parquet", "csv", "gpkg", "fgb"):  # from Arrow batches of plain rows
        stream = GeometryStream(connect, statement, replace(options, output="row"), params)
        count = _write_file(
            stream,
            dest,
            path,
            format=format,
            progress=progress,
            layer=layer,
            spatial_index=spatial_index,
        )
        return ExportResult(count, path, format)
    stream = GeometryStream(connect, statement, options.for_features(), params)
    with stream, atomic_output(dest) as sink:
        chunks = geojson_chunks(stream.batches(), newline_delimited=format == "geojsonl")
        write_chunks(chunks, sink, count=lambda: stream.rows_read, progress=progress)
    return ExportResult(stream.rows_read, path, format)


def _write_file(
    stream: GeometryStream,
    dest: Destination,
    path: str | None,
    *,
    format: str,
    progress: Progress | None,
    layer: str | None,
    spatial_index: bool,
) -> int:
    """Writes a CSV (to ``dest``, a path or a file), GeoParquet, GeoPackage or FlatGeobuf
    file (to ``path``); returns the rows."""
    if format == "csv":
        from geosession.read.delimited import write_csv

        return write_csv(stream, dest, progress=progress)
    assert path is not None  # checked by export
    if format == "parquet":
        from geosession.read.parquet import write_parquet

        return write_parquet(stream, path, progress=progress)
    from geosession.read.ogr import write_ogr

    return write_ogr(
        stream, path, format=format, progress=progress, layer=layer, spatial_index=spatial_index
    )
