"""The SQL type each field of a source gets in a table create=True makes: GDAL's field
types as ogr2ogr makes them, Arrow types (a Parquet file's, a polars DataFrame's), pandas
dtypes, and a DataFrame's object column by the Python values it holds."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import numpy as np

_OGR_TYPES = {
    ("OFTInteger", "OFSTBoolean"): "boolean",
    ("OFTInteger", "OFSTInt16"): "smallint",
    ("OFTInteger", "OFSTNone"): "integer",
    ("OFTInteger64", "OFSTNone"): "bigint",
    ("OFTReal", "OFSTFloat32"): "real",
    ("OFTReal", "OFSTNone"): "double precision",
    ("OFTDate", "OFSTNone"): "date",
    ("OFTTime", "OFSTNone"): "time",
    ("OFTDateTime", "OFSTNone"): "timestamptz",
    ("OFTBinary", "OFSTNone"): "bytea",
    ("OFTString", "OFSTJSON"): "jsonb",
    ("OFTString", "OFSTUUID"): "uuid",
    ("OFTIntegerList", "OFSTBoolean"): "boolean[]",
    ("OFTIntegerList", "OFSTInt16"): "smallint[]",
    ("OFTIntegerList", "OFSTNone"): "integer[]",
    ("OFTInteger64List", "OFSTNone"): "bigint[]",
    ("OFTRealList", "OFSTFloat32"): "real[]",
    ("OFTRealList", "OFSTNone"): "double precision[]",
    ("OFTStringList", "OFSTNone"): "text[]",
}
"""GDAL field types by (type, subtype), as ogr2ogr makes them (JSON as jsonb, which can
be indexed); any other (plain strings) is text."""
_DTYPES = {
    "bool": "boolean",
    "boolean": "boolean",
    "int8": "smallint",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "uint8": "smallint",
    "uint16": "integer",
    "uint32": "bigint",
    "uint64": "numeric",
    "float16": "real",
    "float32": "real",
    "float64": "double precision",
}
"""numpy, pandas (lowercased: Int64 is int64) and Arrow type names; datetimes are
timestamp, or timestamptz with a time zone; any other is text."""


def ogr_type(kind: str, subtype: str) -> str:
    """A GDAL field's type from its type and subtype (as pyogrio's read_info names them)."""
    return _OGR_TYPES.get((kind, subtype)) or _OGR_TYPES.get((kind, "OFSTNone"), "text")


def arrow_type(pyarrow: Any, field_type: Any) -> str:
    """An Arrow field's SQL type: lists as arrays (of arrays: jsonb), structs and maps as
    jsonb, a categorical as its values', an extension as its storage's (but Arrow's uuid
    and json)."""
    types = pyarrow.types
    if types.is_list(field_type) or types.is_large_list(field_type):
        element = arrow_type(pyarrow, field_type.value_type)
        return "jsonb" if element.endswith("[]") or element == "jsonb" else f"{element}[]"
    if types.is_struct(field_type) or types.is_map(field_type):
        return "jsonb"
    if types.is_dictionary(field_type):  # a categorical stored in Parquet
        return arrow_type(pyarrow, field_type.value_type)
    if isinstance(field_type, pyarrow.BaseExtensionType):
        known = _ARROW_EXTENSIONS.get(field_type.extension_name)
        return known or arrow_type(pyarrow, field_type.storage_type)
    return _arrow_scalar_type(types, field_type)


_ARROW_EXTENSIONS = {"arrow.uuid": "uuid", "arrow.json": "jsonb"}
_ARROW_TIMES = (("is_date", "date"), ("is_time", "time"), ("is_duration", "interval"))


def _arrow_scalar_type(types: Any, field_type: Any) -> str:
    if types.is_timestamp(field_type):
        return "timestamptz" if field_type.tz else "timestamp"
    if types.is_decimal(field_type):  # its precision and scale, as exported
        return f"numeric({field_type.precision}, {field_type.scale})"
    for test, sql_type in _ARROW_TIMES:
        if getattr(types, test)(field_type):
            return sql_type
    name = str(field_type)
    if name in ("binary", "large_binary", "binary_view"):  # polars' are views
        return "bytea"
    name = {"halffloat": "float32", "float": "float32", "double": "float64"}.get(name, name)
    return _DTYPES.get(name, "text")


def series_type(series: Any) -> str:
    """A DataFrame column's type from its dtype: numpy's, pandas' nullable ones, Arrow's
    (``dtype_backend="pyarrow"``), a categorical's categories', an object column's values."""
    dtype = series.dtype
    if hasattr(dtype, "pyarrow_dtype"):  # pandas.ArrowDtype
        import pyarrow

        return arrow_type(pyarrow, dtype.pyarrow_dtype)
    if str(dtype) == "category":
        return series_type(dtype.categories.to_series())
    if dtype.kind == "m":
        return "interval"
    if dtype.kind == "M":
        return "timestamptz" if getattr(dtype, "tz", None) else "timestamp"
    if str(dtype) == "object":
        return _object_type(series)
    return _DTYPES.get(str(dtype).lower(), "text")


_SAMPLE = 1000
"""Values of an object column its type is read from, when no later one is of another
Python type."""
_SCALAR_TYPES = (
    (bool, "boolean"),  # before int: a bool is an int
    (int, "bigint"),
    (float, "double precision"),
    (decimal.Decimal, "numeric"),
    (str, "text"),
    (bytes, "bytea"),
    (uuid.UUID, "uuid"),
    (dt.date, "date"),  # datetimes are told apart first
    (dt.time, "time"),
    (dt.timedelta, "interval"),
)


def _object_type(series: Any) -> str:
    """An object column's type from its first values, or from all of them where later
    ones are of other Python types (text after numbers, as a spreadsheet's column of codes
    and "n/a" reads): Python scalars of one kind (dates, Decimals, UUIDs, bytes, booleans
    with None...) are that type, as an INSERT of them would be; lists (or numpy arrays, as
    geopandas.read_file gives list fields) of one scalar kind are an array of it, mappings
    and other lists jsonb, anything else text."""
    present = series.dropna().tolist()
    values = present[:_SAMPLE]
    if set(map(type, present)) != set(map(type, values)):  # a pass in C
        values = present
    if not values:
        return "text"
    if all(isinstance(v, dict) for v in values):
        return "jsonb"
    if not all(isinstance(v, list | tuple | np.ndarray) for v in values):
        return _scalar_type(values) or "text"
    element = _scalar_type([e for v in values for e in v if e is not None])
    return f"{element}[]" if element else "jsonb"


def _scalar_type(values: list[Any]) -> str | None:
    """The SQL type of values all of one kind (integers among floats: floats), else None."""
    kinds = {_scalar_kind(v) for v in values}
    if kinds == {"bigint", "double precision"}:
        return "double precision"
    return kinds.pop() if len(kinds) == 1 else None


def _scalar_kind(value: Any) -> str | None:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dt.datetime):
        return "timestamptz" if value.tzinfo is not None else "timestamp"
    return next((sql_type for kind, sql_type in _SCALAR_TYPES if isinstance(value, kind)), None)
