"""Streaming geometry reads and exports in bounded memory.

``db.stream`` / ``db.async_stream`` iterate any select through a server-side cursor (or
keyset pages), with the geometry projection pushed into SQL; ``db.stream_frames`` yields
GeoDataFrames; ``db.export_geojson`` and ``db.export`` write GeoJSON, GeoJSON Lines,
GeoPackage and FlatGeobuf files that appear only once complete.
"""

from geosession.read.aio import AsyncGeometryStream
from geosession.read.export import FORMATS, export
from geosession.read.geojson import ExportResult, geojson_chunks
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
    "export",
    "geojson_chunks",
    "raw_sql",
    "source_query",
]
