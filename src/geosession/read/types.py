"""What each PostgreSQL column type becomes in a GeoDataFrame and in an Arrow file, in one
table by type OID, so frames and exported files agree on every column.

The types come from the column, never from a chunk's values: integers with a NULL would
be floats, booleans with one objects, and a chunk of NULLs objects. Timestamps keep
PostgreSQL's microseconds (and its range, which nanoseconds lack). Types missing here are
left to pandas, and are text in Arrow files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg.postgres import types as postgres_types


@dataclass(frozen=True)
class ColumnType:
    dtype: str | None
    """The pandas dtype of every chunk (None: pandas infers it from the values)."""
    arrow: Callable[[Any], Any]
    """The Arrow type, given the pyarrow module (imported only when a file is written)."""


_BY_NAME = {
    "bool": ColumnType("boolean", lambda pa: pa.bool_()),
    "int2": ColumnType("Int16", lambda pa: pa.int16()),
    "int4": ColumnType("Int32", lambda pa: pa.int32()),
    "int8": ColumnType("Int64", lambda pa: pa.int64()),
    "float4": ColumnType("float32", lambda pa: pa.float32()),
    "float8": ColumnType("float64", lambda pa: pa.float64()),
    # GeoPackage has no decimal type either; frames keep the driver's Decimals
    "numeric": ColumnType(None, lambda pa: pa.float64()),
    "bytea": ColumnType(None, lambda pa: pa.binary()),
    "date": ColumnType(None, lambda pa: pa.date32()),
    "time": ColumnType(None, lambda pa: pa.time64("us")),
    "timestamp": ColumnType("datetime64[us]", lambda pa: pa.timestamp("us")),
    # frames: in the session's TimeZone (see frames.py); files: in UTC, GeoPackage's form
    "timestamptz": ColumnType(None, lambda pa: pa.timestamp("us", tz="UTC")),
}


def _oid(name: str) -> int:
    info = postgres_types.get(name)
    assert info is not None, name  # built-in types psycopg always knows
    return info.oid


def _array_oid(name: str) -> int:
    info = postgres_types.get(name)
    assert info is not None, name
    return info.array_oid


COLUMN_TYPES = {_oid(name): column_type for name, column_type in _BY_NAME.items()}
_AS_POSTGRES_WRITES = (
    "json",  # exact: a JSON string keeps its quotes, a number its digits (2**64 included)
    "jsonb",
    "interval",
    "timetz",
    "int4range",
    "int8range",
    "numrange",
    "daterange",
    "tsrange",
    "tstzrange",
)
POSTGRES_TEXT = frozenset(_oid(name) for name in _AS_POSTGRES_WRITES)
"""Types a file holds as PostgreSQL's text of them (as GeoJSON does, by to_json), since
their Python values print otherwise ("1 day, 0:00:00") or lose a part (psycopg reads a
month of an interval as 30 days)."""
POSTGRES_JSON = frozenset(_array_oid(name) for name in _AS_POSTGRES_WRITES)
"""Arrays of those: a file holds them as the JSON to_json writes (["1 day"]), as it holds
other arrays as JSON."""
BYTEA = _oid("bytea")
NUMERIC = _oid("numeric")
TIMESTAMPTZ = _oid("timestamptz")
TEXT_ARRAY = _array_oid("text")
