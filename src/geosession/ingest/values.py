"""Source values converted to what each column's binary COPY dumper takes.

An INSERT hands the server text or typed parameters and the server converts them; binary
COPY sends the column's own format, so the conversions the server would make (text from a
CSV, a whole float for an integer) are made here, and a value that cannot be converted is
refused by row, naming the column, before the server sees the chunk. Which reader of
:mod:`geosession.ingest.readers` each column's values go through is decided here, and
pandas' missing values become NULL.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import ipaddress
import math
import numbers
import uuid
from collections.abc import Callable
from types import NoneType
from typing import Any

import numpy as np
from psycopg.types.json import Json, Jsonb

from geosession.ingest.readers import (
    INFINITE_MOMENTS,
    INTEGER_RANGES,
    LAST_AND_FIRST,
    Infinite,
    Unreadable,
    array_parser,
    as_is,
    if_text,
    infinity_named,
    out_of_range,
    to_array,
    to_bool,
    to_bytes,
    to_cast_text,
    to_date,
    to_decimal,
    to_geometry_text,
    to_hstore,
    to_integer,
    to_integer_of,
    to_interval,
    to_interval_element,
    to_json,
    to_range,
    to_real,
    to_text,
    to_time,
    to_timestamp,
    to_timestamptz,
    to_timetz,
    to_uuid,
)

_FLOAT4 = "out of range (magnitudes up to 3.4e38, down to 1.4e-45): use a float8 column"
_FLOAT8 = "out of range (magnitudes up to 1.8e308, down to 4.9e-324): use a numeric column"


_RANGE_BOUNDS: dict[str, Callable[[dt.tzinfo], Callable[[str], Any]]] = {
    "int4range": lambda _: int,
    "int8range": lambda _: int,
    "numrange": lambda _: decimal.Decimal,
    "daterange": lambda timezone: functools.partial(to_date, timezone),
    "tsrange": lambda timezone: functools.partial(to_timestamp, timezone),
    "tstzrange": lambda timezone: functools.partial(to_timestamptz, timezone),
}
"""How a range's bounds are read, in the session's TimeZone for times."""


_FROM_TEXT: dict[str, Callable[[Any], Any]] = {
    "inet": ipaddress.ip_interface,  # 10.0.0.1 or 10.0.0.0/8, as inet reads them
    "cidr": ipaddress.ip_network,  # host bits set are refused, as by cidr
}
"""Columns whose dumper takes any value but text as it is."""


_FROM_ANY: dict[str, tuple[Callable[[Any], Any], tuple[type, ...]]] = {
    **dict.fromkeys(("int2", "int4", "int8"), (to_integer, (int, NoneType))),
    "numeric": (to_decimal, (decimal.Decimal, NoneType)),
    **dict.fromkeys(("float4", "float8"), (to_real, (float, int, NoneType))),
    "bool": (to_bool, (bool, np.bool_, NoneType)),
    "hstore": (to_hstore, (NoneType,)),
    "interval": (to_interval, (NoneType,)),
    "bytea": (to_bytes, (bytes, NoneType)),
    "uuid": (to_uuid, (uuid.UUID, NoneType)),
}
"""Columns whose values of every type are converted, and the types that need no pass."""


TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name"})
"""Columns whose binary format is the value's text."""


_SCALARS = (str, NoneType, numbers.Number, decimal.Decimal, dt.date, dt.time, uuid.UUID)
"""What a text column takes as ``str()`` gives it, without a pass."""


def coerce_values(
    values: list[Any],
    copy_type_name: str,
    timezone: dt.tzinfo = dt.UTC,
    *,
    decimal_comma: bool = False,
) -> tuple[list[Any], dict[int, str]]:
    """Converts values to what the column's binary dumper takes, as the server would read
    them in an INSERT, pandas' missing values (NaN, NA, NaT) to NULL as a GeoDataFrame's
    are read (a row from ``to_dict`` stored "nan" as text, and refused NaN for an
    integer): text (CSV, or JSON for a JSON column), whole numbers for integers,
    0 and 1 for booleans, floats for numeric, times for a column with or without a zone
    (``timezone``: the session's TimeZone).

    Also returns, by position, why a value could not be read as the column's type: those
    rows are set aside before the COPY, naming the column, instead of being refused by
    the server one failed COPY at a time or stored changed (a float4 beyond its range as
    infinity). Other values that do not fit are left for the dumper, which names them.
    ``decimal_comma``: text for a float or numeric column may have a decimal comma.
    """
    if decimal_comma and copy_type_name in _FRACTIONAL:
        values = [with_decimal_point(value) for value in values]
    convert, settled = _conversion(copy_type_name, timezone)
    kinds = set(map(type, values))  # one pass in C over the column, then a check per type
    if kinds & _MAYBE_MISSING or any(kind.__name__ in _PANDAS_MISSING for kind in kinds):
        values = _missing_as_null(values, kinds)
        kinds = set(map(type, values))
    unreadable: dict[int, str] = {}
    if copy_type_name in _WITH_INFINITY and kinds & _MAYBE_INFINITE:
        values = _infinities(values, kinds)
        kinds = set(map(type, values))
    exact = _EXACT.get(copy_type_name)  # a subclass (a datetime for a date) needs the pass
    if convert is not None and _needs_pass(kinds, settled) and not (exact and kinds <= exact):
        converted: list[Any] = []
        for index, value in enumerate(values):
            try:
                converted.append(None if value is None else convert(value))
            except (ValueError, ArithmeticError) as error:
                converted.append(value)
                unreadable[index] = _unreadable(value, copy_type_name, error)
        values = converted
        if copy_type_name in _WITH_INFINITY and str in kinds:  # text of the last instant
            values = _infinities(values, set(map(type, values)))  # (a CSV export's infinity)
    return values, _beyond_range(values, copy_type_name) | unreadable


_FRACTIONAL = frozenset({"float4", "float8", "numeric"})


def with_decimal_point(value: Any) -> Any:
    """Text of a number with one comma and no point, with a decimal point (52,52 in a
    spreadsheet where a comma is the decimal mark); any other value as it is."""
    if type(value) is str and value.count(",") == 1 and "." not in value:
        return value.replace(",", ".")
    return value


_MAYBE_MISSING = frozenset({float, np.float64, np.float32, np.datetime64})


_PANDAS_MISSING = frozenset({"NAType", "NaTType"})


def _missing_as_null(values: list[Any], kinds: set[type]) -> list[Any]:
    """NaN, NA and NaT as None (a column of floats and None is checked by numpy)."""
    if kinds <= {float, NoneType}:
        nan = np.flatnonzero(np.isnan(np.asarray(values, dtype=np.float64)))  # None too
        if not len(nan):
            return values
        values = list(values)
        for index in nan.tolist():
            values[index] = None
        return values
    return [None if _missing(value) else value for value in values]


def _missing(value: Any) -> bool:
    if type(value).__name__ in _PANDAS_MISSING:
        return True
    return isinstance(value, float | np.floating | np.datetime64) and value != value


_WITH_INFINITY = frozenset({"date", "timestamp", "timestamptz"})
_MAYBE_INFINITE = frozenset({str, dt.datetime, dt.date})


def _infinities(values: list[Any], kinds: set[type]) -> list[Any]:
    """The values with infinity where text says so or Python's last date or time stands
    for it (as the drivers read infinity back), -infinity for the first."""
    found: dict[int, Infinite] = {}
    if str in kinds:
        for index, value in enumerate(values):
            if (bound := infinity_named(value)) is not None:
                found[index] = bound
    ends = {kind: _ends(values, kinds, kind) for kind in (dt.datetime, dt.date) if kind in kinds}
    for moment, bound in INFINITE_MOMENTS:
        kind = type(moment)
        if kind in ends and moment in ends[kind]:
            found.update(
                (i, bound) for i, v in enumerate(values) if type(v) is kind and v == moment
            )
    return [found.get(i, v) for i, v in enumerate(values)] if found else values


def _ends(values: list[Any], kinds: set[type], kind: type) -> Any:
    """The first and last values of ``kind``: two scans in C (naive times compared with
    aware ones are slow), or all of them where the two are mixed."""
    of_kind = values if len(kinds) == 1 else [v for v in values if type(v) is kind]
    try:
        return {min(of_kind), max(of_kind)}
    except TypeError:  # naive and aware times: no order
        return of_kind


_ZONED: dict[str, Callable[[dt.tzinfo, Any], Any]] = {
    "timestamptz": to_timestamptz,
    "timestamp": to_timestamp,
    "time": to_time,
    "timetz": to_timetz,
    "date": to_date,
}
"""Columns whose values are read in the session's TimeZone."""


_EXACT = {"date": frozenset({dt.date, NoneType})}
"""Columns whose values of exactly these types need no pass."""


def _conversion(
    copy_type_name: str, timezone: dt.tzinfo
) -> tuple[Callable[[Any], Any] | None, tuple[type, ...] | None]:
    """How each value of a column is converted, and the types that need no pass."""
    cast_to = getattr(copy_type_name, "cast_to", None)  # binary.TextCast: the server casts
    if cast_to is not None:
        if copy_type_name.endswith("[]"):
            elements = _cast_element(cast_to)
            return functools.partial(to_array, array_parser("text[]"), elements), (NoneType,)
        return to_cast_text, (str, NoneType)
    if copy_type_name in _ZONED:  # every value is read: a datetime is a date, too
        return functools.partial(_ZONED[copy_type_name], timezone), (NoneType,)
    if copy_type_name in _FROM_ANY:
        return _FROM_ANY[copy_type_name]
    if copy_type_name in _RANGE_BOUNDS:  # text only: a Range is sent as it is
        return functools.partial(to_range, _RANGE_BOUNDS[copy_type_name](timezone)), None
    if copy_type_name in TEXT_TYPES:
        return to_text, _SCALARS
    if copy_type_name.endswith("[]"):
        return _array_conversion(copy_type_name, timezone)
    if copy_type_name in _JSON:
        return functools.partial(to_json, _JSON[copy_type_name]), (dict, list, NoneType)
    parse = _FROM_TEXT.get(copy_type_name)
    if parse is None:
        return None, None
    return functools.partial(if_text, parse), None


def _cast_element(cast_to: str) -> Callable[[Any], str]:
    """How an element of an array the server casts from text[] is made text: shapely,
    WKB and GeoJSON too for an array of geometries."""
    if cast_to in ("geometry[]", "geography[]"):
        return functools.partial(to_geometry_text, cast_to == "geography[]")
    return to_cast_text


def _array_conversion(
    copy_type_name: str, timezone: dt.tzinfo
) -> tuple[Callable[[Any], Any], tuple[type, ...]]:
    """Arrays as lists; the elements of types whose psycopg dumpers check little (time and
    interval take any object, bool any value's truthiness: "false" as true) or which are
    read in the session's TimeZone, each read as a value of their own column would be."""
    element = copy_type_name.removesuffix("[]")
    convert: Callable[[Any], Any] | None = None
    if element in _WITH_INFINITY:
        read = functools.partial(_ZONED[element], timezone)
        convert = functools.partial(_element_or_bound, LAST_AND_FIRST[element], read)
    elif element in _ZONED:
        convert = functools.partial(_ZONED[element], timezone)
    elif element in _ELEMENTS:
        convert = _ELEMENTS[element]
    if convert is None:
        return functools.partial(to_array, array_parser(copy_type_name), None), (list, NoneType)
    # psycopg's loaders read PostgreSQL's output forms and misread some input ones (P1D as
    # 60 s, 00:00+02 as 00:00:02 UTC): the array's text gives strings, read as a column's
    return functools.partial(to_array, array_parser("text[]"), convert), (NoneType,)


def _element_or_bound(bounds: tuple[Any, Any], read: Callable[[Any], Any], value: Any) -> Any:
    """An array's date or time, its text ``infinity`` as the last instant and
    ``-infinity`` as the first (which binary COPY then writes as infinity, as it writes
    every last instant)."""
    bound = infinity_named(value)
    if bound is None:
        return read(value)
    return bounds[0] if bound.sign > 0 else bounds[1]


_ELEMENTS: dict[str, Callable[[Any], Any]] = {
    "bool": to_bool,
    "interval": to_interval_element,
    **{name: functools.partial(to_integer_of, name) for name in INTEGER_RANGES},
}
"""Array elements converted as their scalar columns' values are (bar the zoned types)."""


_JSON: dict[str, Callable[[str], Any]] = {
    # text for a JSON column is JSON already (as in an INSERT): sent as it is, and checked
    # by the server, instead of being dumped again as one JSON string
    "json": lambda text: Json(text, dumps=as_is),
    "jsonb": lambda text: Jsonb(text, dumps=as_is),
}


def _needs_pass(kinds: set[type], settled: tuple[type, ...] | None) -> bool:
    """Whether a column of values of these types has any to convert (``settled`` None:
    only text). A bool is an int to Python, not to PostgreSQL: it is converted (or
    refused) unless the column settles bools by name."""
    if settled is None:
        return any(issubclass(kind, str) for kind in kinds)
    if bool in kinds and bool not in settled:
        return True
    return not all(issubclass(kind, settled) for kind in kinds)


def _unreadable(value: Any, copy_type_name: str, error: Exception) -> str:
    """ "cannot read 'x' as int4", with the reason when it says more than the parser's."""
    worded = isinstance(error, Unreadable) or not isinstance(value, str)
    type_name = getattr(copy_type_name, "cast_to", copy_type_name)  # binary.TextCast's
    return f"cannot read {_shown(value)} as {type_name}" + (f": {error}" if worded else "")


def _shown(value: Any) -> str:
    return repr(str(value)[:200])


def _beyond_range(values: list[Any], copy_type_name: str) -> dict[int, str]:
    """Why each number the column's type cannot hold is refused, by position."""
    if copy_type_name == "float4":
        beyond, reason = _beyond_float4(values), _FLOAT4
    elif copy_type_name == "float8":
        beyond, reason = _beyond_float8(values), _FLOAT8
    elif copy_type_name in INTEGER_RANGES:
        beyond = _beyond_integer(values, copy_type_name)
        reason = str(out_of_range(copy_type_name))
    else:
        return {}
    return {i: f"cannot read {_shown(values[i])} as {copy_type_name}: {reason}" for i in beyond}


def _beyond_integer(values: list[Any], type_name: str) -> list[int]:
    """Positions of whole numbers the integer type cannot hold (numpy and psycopg would
    send them wrapped: 2**40 as an int4 is 0)."""
    low, high = INTEGER_RANGES[type_name]
    try:
        wide = np.asarray(values, dtype=np.int64)  # a pass in C, the common case
    except (TypeError, ValueError, OverflowError):  # NULLs, values beyond int64, others
        whole = ((i, int(v)) for i, v in enumerate(values) if isinstance(v, numbers.Integral))
        return [i for i, v in whole if not low <= v <= high]
    return [int(i) for i in np.flatnonzero((wide < low) | (wide > high))]


def _beyond_float8(values: list[Any]) -> list[int]:
    """Positions of finite decimals that float8 holds only as infinity or zero (float()
    makes them so; the server refuses them): floats are float8 already."""
    if decimal.Decimal not in set(map(type, values)):  # one pass in C, the common case
        return []
    return [
        i
        for i, v in enumerate(values)
        if isinstance(v, decimal.Decimal)
        and v.is_finite()
        and not v.is_zero()
        and (math.isinf(float(v)) or float(v) == 0)
    ]


def _beyond_float4(values: list[Any]) -> list[int]:
    """Positions of finite numbers that float4 holds only as infinity or zero (numpy and
    psycopg send them so; the server refuses them in an INSERT)."""
    try:
        wide = np.asarray(values, dtype=np.float64)  # None as NaN
    except (TypeError, ValueError, OverflowError):  # values the dumper refuses and names
        return []
    with np.errstate(over="ignore", under="ignore"):
        narrow = wide.astype(np.float32)
    lost = (np.isinf(narrow) & np.isfinite(wide)) | ((narrow == 0) & (wide != 0))
    return [int(i) for i in np.flatnonzero(lost)]
