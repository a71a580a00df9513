"""Streaming geometry reads and exports in bounded memory.

``db.stream`` / ``db.async_stream`` iterate any select through a server-side cursor (or
keyset pages), with the geometry projection pushed into SQL; ``db.stream_frames`` yields
GeoDataFrames; ``db.export_geojson`` and ``db.export`` write GeoJSON, GeoJSON Lines,
GeoPackage, FlatGeobuf, Shapefile, GeoParquet and CSV files that appear only once complete;
``db.iter_geojson`` / ``db.async_iter_geojson`` stream GeoJSON bytes to HTTP responses.
"""

from geosession.read.aio import AsyncGeometryStream
from geosession.read.export import FORMATS, export
from geosession.read.geojson import (
    ExportResult,
    async_geojson_chunks,
    geojson_chunks,
    tell_if_held,
)
from geosession.read.plan import OUTPUTS, PROJECTIONS, Projection, ReadOptions
from geosession.read.source import raw_sql, source_query
from geosession.read.stream import GeometryStream

__all__ = [
    "FORMATS",
    "OUTPUTS",
    "PROJECTIONS",
    "AsyncGeometryStream",
    "ExportResult",
    "GeometryStream",
    "Projection",
    "ReadOptions",
    "async_geojson_chunks",
    "export",
    "geojson_chunks",
    "raw_sql",
    "source_query",
    "tell_if_held",
]
