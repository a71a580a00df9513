"""Exports to files: GeoJSON and GeoJSON Lines here, GeoPackage and FlatGeobuf via pyogrio.

Everything is checked before the query runs (format, options, destination), and a file
appears at the destination only once it is complete.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
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
from geosession.read.stream import Connect, GeometryStream

FORMATS = ("geojson", "geojsonl", "gpkg", "fgb")
"""Export formats: GeoJSON FeatureCollection, GeoJSON Lines, GeoPackage, FlatGeobuf."""

Destination = str | os.PathLike[str] | IO[bytes]


def export(
    connect: Connect,
    statement: Any,
    dest: Destination,
    *,
    format: str = "geojson",
    options: ReadOptions,
    params: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Streams the rows of ``statement`` into ``dest`` in ``format``."""
    if format not in FORMATS:
        raise ConfigurationError(
            f"format={format!r} is not an export format; use one of "
            + ", ".join(repr(name) for name in FORMATS)
        )
    path = None if hasattr(dest, "write") else os.fspath(dest)
    if format in ("gpkg", "fgb"):
        from geosession.read.frames import write_ogr

        if path is None:
            raise ConfigurationError(f"format={format!r} needs a file path, not a file object")
        stream = GeometryStream(connect, statement, replace(options, output="row"), params)
        count = write_ogr(stream, path, format=format, progress=progress)
        return ExportResult(count, path, format)
    stream = GeometryStream(connect, statement, options.for_features(), params)
    with stream, atomic_output(dest) as sink:
        chunks = geojson_chunks(stream.batches(), newline_delimited=format == "geojsonl")
        write_chunks(chunks, sink, count=lambda: stream.rows_read, progress=progress)
    return ExportResult(stream.rows_read, path, format)
