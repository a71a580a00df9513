"""A stream as Arrow record batches, for the file writers (GeoParquet, GDAL's formats).

Each column's Arrow type comes from its PostgreSQL type, never from a chunk's values, so
every batch has one schema even where a chunk holds only NULLs, and an empty result
still has it. Geometries are ISO WKB (what GeoParquet and GDAL read), or for text formats
(CSV) WKT, with bytea as PostgreSQL's ``\\x`` hex. Types Arrow has no equivalent for are
text: JSON and arrays as JSON, the rest (uuid, interval...) as Python prints them;
numeric is float64, as GeoPackage has no decimal type either.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

import orjson
import shapely

from geosession.errors import ConfigurationError
from geosession.geometry import wkt_array
from geosession.read.frames import frames
from geosession.read.plan import Column
from geosession.read.query import ReadPlan
from geosession.read.stream import GeometryStream
from geosession.read.types import BYTEA, COLUMN_TYPES

OnFrame = Callable[[Any], None]
"""Called with each GeoDataFrame before it becomes a record batch (counts, metadata)."""


def pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigurationError(
            "GeoParquet, GeoPackage, FlatGeobuf and CSV export need pyarrow: "
            "pip install 'geosession[geo]'"
        ) from None
    return pyarrow


def record_batches(
    pa: Any, stream: GeometryStream, on_frame: OnFrame, *, text: bool = False
) -> tuple[Any, Any, Iterator[Any]]:
    """The plan, the schema and the record batches of ``stream`` (with ``text``, no
    binary columns: geometries as WKT, bytea as hex); the query runs (and its first batch
    is read) here, since the schema comes from its columns."""
    chunks = frames(stream)
    first = next(chunks, None)
    plan = stream.plan
    assert plan is not None  # set before the first batch, or by an empty result
    schema = pa.schema([arrow_field(pa, column, text=text) for column in plan.columns])

    def batches() -> Iterator[Any]:
        for frame in chain([first] if first is not None else [], chunks):
            on_frame(frame)
            yield record_batch(pa, schema, plan, frame)

    return plan, schema, batches()


def arrow_field(pa: Any, column: Column, *, text: bool = False) -> Any:
    """The Arrow field of a column, by its type OID; geometries are WKB binary, and with
    ``text`` geometries and bytea are strings."""
    if column.spatial and not text:
        return pa.field(column.name, pa.binary())
    if column.spatial or column.as_text or (text and column.type_oid == BYTEA):
        return pa.field(column.name, pa.string())
    column_type = COLUMN_TYPES.get(column.type_oid)
    return pa.field(column.name, pa.string() if column_type is None else column_type.arrow(pa))


def record_batch(pa: Any, schema: Any, plan: ReadPlan, frame: Any) -> Any:
    """One frame as a record batch of ``schema``."""
    arrays = []
    for column, field in zip(plan.columns, schema, strict=True):
        series = frame[column.name]
        if column.spatial and field.type == pa.string():
            values: Any = wkt_array(series.to_numpy())
        elif column.spatial:
            values = shapely.to_wkb(series.to_numpy(), flavor="iso")
        elif field.type == pa.string() and str(series.dtype) not in ("str", "string"):
            values = [_text(v) for v in series]
        elif pa.types.is_floating(field.type) and series.dtype == object:  # Decimals
            values = [None if v is None else float(v) for v in series]
        elif pa.types.is_binary(field.type):
            values = [None if v is None else bytes(v) for v in series]
        else:
            values = series
        arrays.append(pa.array(values, type=field.type, from_pandas=True))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=_json_value).decode()
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()  # bytea as PostgreSQL prints it
    return str(value)


def _json_value(value: Any) -> Any:
    """What orjson cannot write itself, inside arrays: numerics as numbers (as PostgreSQL's
    to_json writes them), anything else (inet, interval, ranges, bytea) as its text."""
    if isinstance(value, decimal.Decimal):
        return (
            int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
        )
    return _text(value)
