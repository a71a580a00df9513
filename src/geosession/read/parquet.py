"""GeoParquet files from a stream (``geo`` extra), in row groups of gathered batches.

The columns' Arrow types come from ``read.arrow``; geometries are ISO WKB. The ``geo``
metadata (GeoParquet 1.1: geometry types, bounding box, CRS as PROJJSON) is known only
once every row is written, so it goes into the footer as the file is closed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, Any

import numpy as np
import shapely

from geosession.geometry import TYPE_NAMES
from geosession.read.arrow import GEOPARQUET_VERSION, Chunk, projjson, pyarrow, record_batches
from geosession.read.geojson import Progress, temporary_path
from geosession.read.query import ReadPlan
from geosession.read.stream import GeometryStream

_ROW_GROUP = 65_536
"""Rows gathered into one row group: a fetched batch alone makes groups too small for
readers to skip by statistics, and this many rows of polygons is tens of megabytes."""


def write_parquet(
    stream: GeometryStream, dest: str | os.PathLike[str] | IO[bytes], *, progress: Progress | None
) -> int:
    """Writes ``stream`` as a GeoParquet file to ``dest`` (a path, or a binary file such as
    standard output: Parquet's footer comes last, nothing is written twice); returns the
    row count."""
    pa = pyarrow()
    if hasattr(dest, "write"):
        with stream:
            return _write(pa, stream, dest, progress)
    target = Path(os.fspath(dest))
    temporary = temporary_path(target, ".parquet")  # pyarrow writes a path natively
    try:
        count = _write(pa, stream, temporary, progress)
        os.replace(temporary, target)
    finally:
        stream.close()
        temporary.unlink(missing_ok=True)
    return count


def _write(pa: Any, stream: GeometryStream, sink: Any, progress: Progress | None) -> int:
    geo = _GeoMetadata()
    count = 0
    boxes: list[Any] = []  # the latest chunk's, for its record batch's covering column

    def on_chunk(chunk: Chunk) -> None:
        nonlocal count
        for name, geometries in chunk.geometries.items():
            geo.add(name, geometries, chunk.crs_by_column[name])
        boxes[:] = [shapely.bounds(chunk.geometry)]
        count += chunk.rows
        if progress is not None:
            progress(count)

    plan, schema, batches = record_batches(pa, stream, on_chunk, decimals=True)
    covering = _covering_name(plan)
    if covering is not None:
        geo.covering = {plan.geometry.name: covering}
        schema = schema.append(pa.field(covering, _box_type(pa)))
    # without the Arrow schema in the file, readers take the footer's metadata: 'geo'
    with pa.parquet.ParquetWriter(sink, schema, store_schema=False) as writer:
        pending: list[Any] = []
        for batch in batches:
            if covering is not None:
                batch = _with_boxes(pa, batch, covering, boxes[0])
            pending.append(batch)
            if sum(map(len, pending)) >= _ROW_GROUP:
                writer.write_table(pa.Table.from_batches(pending))
                pending.clear()
        if pending:
            writer.write_table(pa.Table.from_batches(pending))
        writer.add_key_value_metadata({"geo": geo.encode(plan)})
    return count


def _covering_name(plan: ReadPlan) -> str | None:
    """The covering bbox column's name: ``bbox`` as GeoParquet suggests, else
    ``<geometry>_bbox``; None when the query has columns of both names, and for points,
    whose box is the point again (it would double a file of points)."""
    kind = plan.options.projection.kind
    declared = plan.geometry.geometry_type or ""
    if kind == "centroid" or (declared.startswith("Point") and kind != "envelope"):
        return None
    taken = set(plan.names)
    return next((n for n in ("bbox", f"{plan.geometry.name}_bbox") if n not in taken), None)


def _box_type(pa: Any) -> Any:
    return pa.struct([(side, pa.float64()) for side in _SIDES])


def _with_boxes(pa: Any, batch: Any, name: str, bounds: Any) -> Any:
    """The batch with each row's box (xmin, ymin, xmax, ymax; null for no geometry) in a
    struct column: GeoParquet 1.1's covering, which readers (DuckDB, GDAL, geosession's
    bbox=) filter by, and by its statistics skip whole row groups."""
    missing = np.isnan(bounds[:, 0])
    sides = [pa.array(bounds[:, i], mask=missing) for i in range(4)]
    boxes = pa.StructArray.from_arrays(sides, names=list(_SIDES), mask=pa.array(missing))
    return pa.RecordBatch.from_arrays([*batch.columns, boxes], names=[*batch.schema.names, name])


_SIDES = ("xmin", "ymin", "xmax", "ymax")


class _GeoMetadata:
    """GeoParquet's ``geo`` metadata, gathered chunk by chunk: each geometry column's
    types, bounding box and CRS, and the covering bbox column of the primary one."""

    def __init__(self) -> None:
        self.columns: dict[str, dict[str, Any]] = {}
        self.covering: dict[str, str] = {}

    def add(self, name: str, geometries: Any, crs: str | None) -> None:
        entry = self.columns.setdefault(
            name, {"types": set(), "bbox": [math.inf, math.inf, -math.inf, -math.inf]}
        )
        present = geometries[~shapely.is_missing(geometries)]
        if not len(present):
            return
        kinds = zip(shapely.get_type_id(present), shapely.has_z(present), strict=True)
        entry["types"] |= {TYPE_NAMES[kind] + (" Z" if z else "") for kind, z in kinds}
        bounds = shapely.bounds(present)  # not total_bounds, which catches warnings
        bounds = np.vstack([bounds[~np.isnan(bounds).any(axis=1)], [entry["bbox"]]])
        entry["bbox"] = [*bounds[:, :2].min(axis=0), *bounds[:, 2:].max(axis=0)]
        if crs is not None and "crs" not in entry:  # PROJ reads a CRS once per column
            entry["crs"] = projjson(crs)

    def encode(self, plan: ReadPlan) -> str:
        """The metadata as JSON; every geometry column has an entry, rows or none."""
        columns = {}
        for column in plan.columns:
            if not column.spatial:
                continue
            entry = self.columns.get(column.name, {"types": set(), "bbox": [math.nan] * 4})
            described: dict[str, Any] = {
                "encoding": "WKB",
                "geometry_types": sorted(entry["types"]),
                "crs": entry.get("crs") or projjson(plan.crs_for(column.srid)),  # null: unknown
            }
            if column.spatial == "geography":
                described["edges"] = "spherical"
            if all(math.isfinite(v) for v in entry["bbox"]):
                described["bbox"] = [float(v) for v in entry["bbox"]]
            if column.name in self.covering:
                box = self.covering[column.name]
                described["covering"] = {"bbox": {side: [box, side] for side in _SIDES}}
            columns[column.name] = described
        document = {"version": GEOPARQUET_VERSION, "primary_column": plan.geometry.name}
        return json.dumps({**document, "columns": columns})
