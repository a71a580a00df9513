"""GeoParquet files from a stream (``geo`` extra): one Arrow table per fetched batch.

Each column's Arrow type comes from its PostgreSQL type, not from a chunk's values, so
every row group has the file's schema even where a chunk holds only NULLs (and an empty
result still writes one). Geometries are ISO WKB; the ``geo`` metadata (GeoParquet 1.1:
geometry types, bounding box, CRS as PROJJSON) is known only once every row is written,
so it goes into the footer as the file is closed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import shapely

from geosession.errors import ConfigurationError
from geosession.read.frames import frames
from geosession.read.geojson import Progress, temporary_path
from geosession.read.plan import Column
from geosession.read.query import ReadPlan
from geosession.read.stream import GeometryStream

_TYPE_NAMES = (
    "Point",
    "LineString",
    "LinearRing",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
    "GeometryCollection",
)
"""GeoParquet's names of shapely's type ids."""
_ROW_GROUP = 65_536
"""Rows gathered into one row group: a fetched batch alone makes groups too small for
readers to skip by statistics, and this many rows of polygons is tens of megabytes."""
_GEOPARQUET_VERSION = "1.1.0"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigurationError(
            "GeoParquet export needs pyarrow: pip install 'geosession[geo]'"
        ) from None
    return pyarrow


def write_parquet(stream: GeometryStream, path: str, *, progress: Progress | None) -> int:
    """Writes ``stream`` as a GeoParquet file at ``path``; returns the row count."""
    pa = _pyarrow()
    target = Path(path)
    temporary = temporary_path(target, ".parquet")
    try:
        count = _write(pa, stream, temporary, progress)
        os.replace(temporary, target)
    finally:
        stream.close()
        temporary.unlink(missing_ok=True)
    return count


def _write(pa: Any, stream: GeometryStream, temporary: Path, progress: Progress | None) -> int:
    writer: Any = None
    geo = _GeoMetadata()
    pending: list[Any] = []
    count = 0
    try:
        for frame in frames(stream):
            assert stream.plan is not None
            if writer is None:
                schema = pa.schema([_field(pa, c) for c in stream.plan.columns])
                writer = pa.parquet.ParquetWriter(temporary, schema, store_schema=False)
            pending.append(_table(pa, writer.schema, stream.plan.columns, frame, geo))
            count += len(frame)
            if sum(map(len, pending)) >= _ROW_GROUP:
                writer.write_table(pa.concat_tables(pending))
                pending.clear()
            if progress is not None:
                progress(count)
        if writer is None:  # no rows: the plan is known once the query ran
            assert stream.plan is not None
            schema = pa.schema([_field(pa, c) for c in stream.plan.columns])
            writer = pa.parquet.ParquetWriter(temporary, schema, store_schema=False)
        if pending:
            writer.write_table(pa.concat_tables(pending))
        assert stream.plan is not None
        writer.add_key_value_metadata({"geo": geo.encode(stream.plan)})
    finally:
        if writer is not None:
            writer.close()
    return count


def _field(pa: Any, column: Column) -> Any:
    """The Arrow field of a column: by its type OID; geometries are WKB binary."""
    if column.spatial:
        return pa.field(column.name, pa.binary())
    if column.as_text:
        return pa.field(column.name, pa.string())
    types: dict[int, Callable[[], Any]] = {
        16: pa.bool_,
        21: pa.int16,
        23: pa.int32,
        20: pa.int64,
        700: pa.float32,
        701: pa.float64,
        1700: pa.float64,  # numeric: as a float, like GeoPackage (no precision per column)
        17: pa.binary,
        1082: pa.date32,
        1083: lambda: pa.time64("us"),
        1114: lambda: pa.timestamp("us"),
        1184: lambda: pa.timestamp("us", tz="UTC"),
    }
    make = types.get(column.type_oid, pa.string)
    return pa.field(column.name, make())


def _table(pa: Any, schema: Any, columns: tuple[Column, ...], frame: Any, geo: Any) -> Any:
    arrays = []
    for column, field in zip(columns, schema, strict=True):
        series = frame[column.name]
        if column.spatial:
            geometries = series.to_numpy()
            geo.add(column.name, geometries, series.crs)
            values: Any = shapely.to_wkb(geometries, flavor="iso")
        elif field.type == pa.string():
            values = [_text(v) for v in series]
        elif pa.types.is_floating(field.type) and series.dtype == object:
            values = [None if v is None else float(v) for v in series]  # numeric's Decimals
        elif pa.types.is_binary(field.type):
            values = [None if v is None else bytes(v) for v in series]
        else:
            values = series
        arrays.append(pa.array(values, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def _text(value: Any) -> str | None:
    """A value of a type without an Arrow equivalent as text: JSON as JSON, the rest as
    Python prints it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)  # a UUID, an interval, an address...


class _GeoMetadata:
    """GeoParquet's ``geo`` metadata, gathered chunk by chunk: each geometry column's
    types, bounding box and CRS."""

    def __init__(self) -> None:
        self.columns: dict[str, dict[str, Any]] = {}

    def add(self, name: str, geometries: Any, crs: Any) -> None:
        entry = self.columns.setdefault(
            name, {"types": set(), "bbox": [math.inf, math.inf, -math.inf, -math.inf]}
        )
        present = geometries[~shapely.is_missing(geometries)]
        if not len(present):
            return
        kinds = zip(shapely.get_type_id(present), shapely.has_z(present), strict=True)
        entry["types"] |= {_TYPE_NAMES[kind] + (" Z" if z else "") for kind, z in kinds}
        low_x, low_y, high_x, high_y = shapely.total_bounds(present)
        box = entry["bbox"]
        entry["bbox"] = [
            min(box[0], low_x),
            min(box[1], low_y),
            max(box[2], high_x),
            max(box[3], high_y),
        ]
        if crs is not None:
            entry["crs"] = crs.to_json_dict()

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
                "crs": entry.get("crs") or _projjson(column.srid),  # null: unknown
            }
            if column.spatial == "geography":
                described["edges"] = "spherical"
            if all(math.isfinite(v) for v in entry["bbox"]):
                described["bbox"] = [float(v) for v in entry["bbox"]]
            columns[column.name] = described
        document = {"version": _GEOPARQUET_VERSION, "primary_column": plan.geometry.name}
        return json.dumps({**document, "columns": columns})


def _projjson(srid: int | None) -> Any:
    """The PROJJSON of an EPSG code (pyproj, a geopandas dependency); None if unknown."""
    if not srid:
        return None
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_epsg(srid).to_json_dict()
    except CRSError:
        return None
