"""Source values converted to what each column's binary COPY dumper takes.

An INSERT hands the server text or typed parameters and the server converts them; binary
COPY sends the column's own format, so the conversions the server would make (text from a
CSV, a whole float for an integer) are made here, and a value that cannot be converted is
refused by row, naming the column, before the server sees the chunk.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import ipaddress
import json
import math
import numbers
import re
import uuid
from collections.abc import Callable, Mapping
from types import NoneType
from typing import Any, SupportsInt, cast

import numpy as np
import psycopg
from psycopg.adapt import Transformer
from psycopg.pq import Format
from psycopg.types.hstore import HstoreLoader
from psycopg.types.json import Json, Jsonb
from psycopg.types.range import Range

from geosession.ingest.intervals import Interval, parse_interval

_BOOLEANS = {
    **dict.fromkeys(("t", "true", "1", "yes", "y", "on"), True),
    **dict.fromkeys(("f", "false", "0", "no", "n", "off"), False),
}
_FLOAT4 = "out of range (magnitudes up to 3.4e38, down to 1.4e-45): use a float8 column"


class _Unreadable(ValueError):
    """Why a value cannot be read, in words worth showing (a parser's own are not)."""


def _to_bool(value: Any) -> Any:
    """PostgreSQL's spellings of a boolean, and 0 and 1; anything else is not one (its
    dumper would take any value's truthiness: 2, 0.5 and "false" as True)."""
    if isinstance(value, bool | np.bool_):
        return value
    if isinstance(value, str):
        try:
            return _BOOLEANS[value.strip().lower()]
        except KeyError:
            raise ValueError(value) from None
    if isinstance(value, numbers.Real | decimal.Decimal) and value in (0, 1):
        return value == 1
    raise _Unreadable("only true, false, 1 and 0 (and their spellings in text) are booleans")


def _to_integer(value: Any) -> Any:
    """A whole number of any numeric type as an int (3.0 from a pandas column that has
    NaNs); a fraction is refused, where encoding it as an integer would cut it silently."""
    if isinstance(value, str):
        return int(value)
    if isinstance(value, int) or not isinstance(value, numbers.Real | decimal.Decimal):
        return value  # anything else is left to the dumper, which names what it refuses
    whole = int(cast(SupportsInt, value))  # NaN and infinities raise here
    if whole != value:
        raise _Unreadable("not a whole number; round it in the source if that is meant")
    return whole


def _to_float(text: str) -> float:
    number = float(text)
    if math.isinf(number) and "inf" not in text.lower():
        raise _Unreadable("out of range for float8")
    return number


def _to_decimal(value: Any) -> Any:
    return decimal.Decimal(str(value)) if isinstance(value, float | int | str) else value


def _moment(value: Any) -> Any:
    """Text and numpy datetimes as datetime (NaT as None); anything else as it is."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[us]").item()
    return value


def _to_timestamptz(timezone: dt.tzinfo, value: Any) -> Any:
    """A time without a zone is one in the session's TimeZone, as the server reads it."""
    moment = _moment(value)
    if isinstance(moment, dt.datetime):
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone)
    if isinstance(moment, dt.date):
        return dt.datetime.combine(moment, dt.time(), timezone)
    return moment


def _to_timestamp(timezone: dt.tzinfo, value: Any) -> Any:
    """A time with a zone becomes the local time in the session's TimeZone, as the server
    stores it."""
    moment = _moment(value)
    if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
        return moment.astimezone(timezone).replace(tzinfo=None)
    if type(moment) is dt.date:
        return dt.datetime.combine(moment, dt.time())
    return moment


def _to_date(timezone: dt.tzinfo, value: Any) -> Any:
    """Text, numpy datetimes and times as their date (a time with a zone, its date in the
    session's TimeZone), as the server casts them to date."""
    moment = _moment(value)
    if isinstance(moment, dt.datetime):
        return (moment.astimezone(timezone) if moment.tzinfo else moment).date()
    return moment


def _to_time(timezone: dt.tzinfo, value: Any) -> Any:
    """A time of day: text (12:30, 12:30:00.5), a datetime's time (one with a zone, in
    the session's TimeZone), numpy datetime64. psycopg's time dumper reads any object as
    if it were a time, so anything else is refused here rather than stored as garbage."""
    if type(value) is dt.time:
        return value.replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, str):
        try:
            return dt.time.fromisoformat(value.strip()).replace(tzinfo=None)
        except ValueError:
            raise _Unreadable("not a time of day such as 12:30 or 12:30:00.5") from None
    moment = _moment(value)
    if isinstance(moment, dt.datetime):
        return (moment.astimezone(timezone) if moment.tzinfo else moment).time()
    raise _Unreadable(f"a time column takes a time or a datetime, not {type(value).__name__}")


def _to_timetz(timezone: dt.tzinfo, value: Any) -> Any:
    """A time of day with its UTC offset: text (12:30+02), a time; one without an offset
    takes the session's TimeZone's offset today, as PostgreSQL's input does."""
    if isinstance(value, str):
        try:
            value = dt.time.fromisoformat(value.strip())
        except ValueError:
            raise _Unreadable("not a time of day such as 12:30+02 or 12:30:00") from None
    elif isinstance(value, dt.datetime):
        value = value.timetz()
    if not isinstance(value, dt.time):
        raise _Unreadable(f"a timetz column takes a time, not {type(value).__name__}")
    today = dt.datetime.now(timezone).date()
    offset = dt.datetime.combine(today, value, value.tzinfo or timezone).utcoffset()
    return value.replace(tzinfo=dt.timezone(offset or dt.timedelta()))


def _to_interval(value: Any) -> Any:
    """A duration as months, days and microseconds: text as PostgreSQL reads it (see
    intervals.py), timedelta (pandas' Timedelta is one) or numpy timedelta64. psycopg's
    interval dumper reads any object as if it were a timedelta, and has no months."""
    if isinstance(value, str):
        try:
            return parse_interval(value)
        except ValueError as error:
            raise _Unreadable(
                f"not an interval such as '1 day 02:00:00', '90 minutes' or 'P1DT2H' ({error})"
            ) from None
    if isinstance(value, dt.timedelta):
        return Interval.of(value)
    if isinstance(value, np.timedelta64):
        return None if np.isnat(value) else Interval.of(value.astype("timedelta64[us]").item())
    raise _Unreadable(
        f"an interval column takes text, a timedelta or numpy timedelta64, not "
        f"{type(value).__name__}"
    )


def _to_interval_element(value: Any) -> Any:
    """An interval[] element: psycopg sends those from timedeltas, without months."""
    interval = _to_interval(value)
    try:
        return None if interval is None else interval.timedelta()
    except ValueError as error:
        raise _Unreadable(str(error)) from None


def _to_hstore(value: Any) -> Any:
    """An hstore column's value as a dict of text: text in hstore's own syntax
    (``"name"=>"Café", "fee"=>NULL``, as GDAL writes OpenStreetMap's other_tags) or a JSON
    object (as exports write an hstore) is parsed, a mapping's values become their text
    (None stays NULL)."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        value = _json_object(value)  # as exports and to_json write an hstore
    if isinstance(value, str):
        try:
            return _HSTORE_TEXT.load(value.encode())
        except psycopg.DataError as error:
            raise _Unreadable(f"not hstore text ({error})") from None
    if isinstance(value, Mapping):
        return {str(k): None if v is None else str(v) for k, v in value.items()}
    return value


def _json_array(text: str) -> Any:
    """A JSON array's text as a list."""
    try:
        value = json.loads(text)
    except ValueError:
        raise _Unreadable(
            "not a JSON array such as [1,2], nor {1,2} as PostgreSQL writes one"
        ) from None
    if not isinstance(value, list):
        raise _Unreadable("not a JSON array such as [1,2]")
    return value


def _json_object(text: str) -> Any:
    """A JSON object's text as a dict; other text as it is (left to hstore's parser)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


_HSTORE_TEXT = HstoreLoader(0)


def _as_is(text: str) -> str:
    return text


def _to_text(value: Any) -> Any:
    """Lists and mappings (a GeoJSON property, a Parquet list) as JSON text, as a JSON
    column would hold them, and bytes as the UTF-8 text they hold, rather than Python's
    repr of them ("b'ab'"); other values as they are."""
    value = _plain(value) if isinstance(value, np.ndarray) else value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            raise _Unreadable(
                "bytes for a text column are read as UTF-8 text, and these are not: "
                "load them into a bytea column"
            ) from None
    return value


def _to_bytes(value: Any) -> bytes:
    """bytea text as the server reads its hex form (``\\x0102``); text without a
    backslash is its UTF-8 bytes, and the old escape form is refused. Anything but bytes
    and text is refused too: psycopg's bytea dumper would send 5 as five zero bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if not isinstance(value, str):
        raise _Unreadable(f"a bytea column takes bytes or text, not {type(value).__name__}")
    if value.startswith("\\x"):
        return bytes.fromhex(value[2:])
    if "\\" in value:
        raise _Unreadable("only bytea's hex form is read: \\x followed by hex digits")
    return value.encode()


_RANGE_TEXT = re.compile(
    r'([\[(])\s*("(?:[^"\\]|\\.)*"|[^,]*?)\s*,\s*("(?:[^"\\]|\\.)*"|[^\])]*?)\s*([\])])'
)
"""A range's text: its bounds' brackets, and each bound bare, quoted or left out."""


def _to_range(bound: Callable[[str], Any], value: Any) -> Any:
    """A range's text (``[1,5)``, ``["2026-01-01 00:00+02",)``, ``empty``) as a Range,
    each bound read as its column type's value would be; a Range as it is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() == "empty":
        return Range(empty=True)
    match = _RANGE_TEXT.fullmatch(text)
    if match is None:
        raise _Unreadable("not a range such as [1,5), (,3] or empty")
    opening, lower, upper, closing = match.groups()
    return Range(_bound(bound, lower), _bound(bound, upper), opening + closing)


def _bound(read: Callable[[str], Any], text: str) -> Any:
    if not text:
        return None  # unbounded
    if text.startswith('"'):
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    if text.strip().lower() in ("infinity", "-infinity"):
        raise _Unreadable("an infinite bound cannot be sent; leave the bound out instead")
    value = read(text.strip())
    if value is None:
        raise _Unreadable(f"not a bound: {text!r}")
    return value


_RANGE_BOUNDS: dict[str, Callable[[dt.tzinfo], Callable[[str], Any]]] = {
    "int4range": lambda _: int,
    "int8range": lambda _: int,
    "numrange": lambda _: decimal.Decimal,
    "daterange": lambda timezone: functools.partial(_to_date, timezone),
    "tsrange": lambda timezone: functools.partial(_to_timestamp, timezone),
    "tstzrange": lambda timezone: functools.partial(_to_timestamptz, timezone),
}
"""How a range's bounds are read, in the session's TimeZone for times."""


_FROM_TEXT: dict[str, Callable[[Any], Any]] = {
    "float4": _to_float,
    "float8": _to_float,
    "uuid": uuid.UUID,
    "inet": ipaddress.ip_interface,  # 10.0.0.1 or 10.0.0.0/8, as inet reads them
    "cidr": ipaddress.ip_network,  # host bits set are refused, as by cidr
}
"""Columns whose dumper takes any value but text as it is."""
_FROM_ANY: dict[str, tuple[Callable[[Any], Any], tuple[type, ...]]] = {
    **dict.fromkeys(("int2", "int4", "int8"), (_to_integer, (int, NoneType))),
    "numeric": (_to_decimal, (decimal.Decimal, NoneType)),
    "bool": (_to_bool, (bool, np.bool_, NoneType)),
    "hstore": (_to_hstore, (NoneType,)),
    "interval": (_to_interval, (NoneType,)),
    "bytea": (_to_bytes, (bytes, NoneType)),
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
    rows are set aside before the COPY, naming the column, instead of being found by
    bisecting chunks on the server or stored changed (a float4 beyond its range as
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
    if copy_type_name == "float4":
        for index in _beyond_float4(values):
            unreadable[index] = f"cannot read {_shown(values[index])} as float4: {_FLOAT4}"
    return values, unreadable


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


_ZONED: dict[str, Callable[[dt.tzinfo, Any], Any]] = {
    "timestamptz": _to_timestamptz,
    "timestamp": _to_timestamp,
    "time": _to_time,
    "timetz": _to_timetz,
    "date": _to_date,
}
"""Columns whose values are read in the session's TimeZone."""
_EXACT = {"date": frozenset({dt.date, NoneType})}
"""Columns whose values of exactly these types need no pass."""


def _conversion(
    copy_type_name: str, timezone: dt.tzinfo
) -> tuple[Callable[[Any], Any] | None, tuple[type, ...] | None]:
    """How each value of a column is converted, and the types that need no pass."""
    if copy_type_name in _ZONED:  # every value is read: a datetime is a date, too
        return functools.partial(_ZONED[copy_type_name], timezone), (NoneType,)
    if copy_type_name in _FROM_ANY:
        return _FROM_ANY[copy_type_name]
    if copy_type_name in _RANGE_BOUNDS:  # text only: a Range is sent as it is
        return functools.partial(_to_range, _RANGE_BOUNDS[copy_type_name](timezone)), None
    if copy_type_name in TEXT_TYPES:
        return _to_text, _SCALARS
    if copy_type_name.endswith("[]"):
        return _array_conversion(copy_type_name, timezone)
    if copy_type_name in _JSON:
        return functools.partial(_to_json, _JSON[copy_type_name]), (dict, list, NoneType)
    parse = _FROM_TEXT.get(copy_type_name)
    if parse is None:
        return None, None
    return functools.partial(_if_text, parse), None


def _array_conversion(
    copy_type_name: str, timezone: dt.tzinfo
) -> tuple[Callable[[Any], Any], tuple[type, ...]]:
    """Arrays as lists; the elements of types whose psycopg dumpers check little (time and
    interval take any object, bool any value's truthiness: "false" as true) or which are
    read in the session's TimeZone, each read as a value of their own column would be."""
    element = copy_type_name.removesuffix("[]")
    convert: Callable[[Any], Any] | None = None
    if element in _ZONED:
        convert = functools.partial(_ZONED[element], timezone)
    elif element in _ELEMENTS:
        convert = _ELEMENTS[element]
    if convert is None:
        return functools.partial(_to_array, _array_parser(copy_type_name), None), (list, NoneType)
    # psycopg's loaders read PostgreSQL's output forms and misread some input ones (P1D as
    # 60 s, 00:00+02 as 00:00:02 UTC): the array's text gives strings, read as a column's
    return functools.partial(_to_array, _array_parser("text[]"), convert), (NoneType,)


_ELEMENTS: dict[str, Callable[[Any], Any]] = {
    "bool": _to_bool,
    "interval": _to_interval_element,
}
"""Array elements converted as their scalar columns' values are (bar the zoned types)."""
_JSON: dict[str, Callable[[str], Any]] = {
    # text for a JSON column is JSON already (as in an INSERT): sent as it is, and checked
    # by the server, instead of being dumped again as one JSON string
    "json": lambda text: Json(text, dumps=_as_is),
    "jsonb": lambda text: Jsonb(text, dumps=_as_is),
}


def _to_json(wrap: Callable[[str], Any], value: Any) -> Any:
    """A JSON column's value: text as the JSON it is, numpy arrays as lists (the json
    module writes neither numpy arrays nor their scalars), anything else as it is."""
    if isinstance(value, str):
        return wrap(value)
    return _plain(value)


def _plain(value: Any) -> Any:
    """numpy arrays (of arrays, as pyarrow gives nested lists) and scalars as Python's."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value] if value.dtype == object else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _to_array(
    parse: Callable[[str], Any] | None, convert: Callable[[Any], Any] | None, value: Any
) -> Any:
    """An array column's value as a list: numpy arrays (geopandas reads list fields so)
    and tuples as lists, text in PostgreSQL's form parsed; anything else as it is.
    ``convert`` reads each element of a type whose dumper checks nothing (time, interval)."""
    if isinstance(value, np.ndarray):
        value = _plain(value)
    elif isinstance(value, tuple):
        value = list(value)
    elif isinstance(value, str) and value.lstrip().startswith("["):
        value = _json_array(value)  # as exports write arrays
    elif isinstance(value, str) and parse is not None:
        value = parse(value)
    if convert is not None and isinstance(value, list):
        return _elements(convert, value)
    return value


def _elements(convert: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``convert`` applied to every element of a (nested) list; None stays NULL."""
    return [
        None
        if item is None
        else _elements(convert, item)
        if isinstance(item, list)
        else convert(item)
        for item in items
    ]


@functools.cache
def _array_parser(copy_type_name: str) -> Callable[[str], Any] | None:
    """An array column's text ({1,2}, {a,"b c"}, from a CSV) read as the server reads it
    in an INSERT, by psycopg's loader of the array type; None for an element type psycopg
    does not know."""
    info = psycopg.postgres.types.get(copy_type_name.removesuffix("[]"))
    if info is None:
        return None
    loader = Transformer().get_loader(info.array_oid, Format.TEXT)

    def parse(text: str) -> Any:
        try:
            return loader.load(text.encode())
        except psycopg.Error as error:
            raise _Unreadable(
                f'not an array as PostgreSQL writes one, such as {{1,2}} or {{a,"b c"}} ({error})'
            ) from None

    return parse


def _needs_pass(kinds: set[type], settled: tuple[type, ...] | None) -> bool:
    """Whether a column of values of these types has any to convert (``settled`` None:
    only text)."""
    if settled is None:
        return any(issubclass(kind, str) for kind in kinds)
    return not all(issubclass(kind, settled) for kind in kinds)


def _if_text(parse: Callable[[str], Any], value: Any) -> Any:
    return parse(value) if isinstance(value, str) else value


def _unreadable(value: Any, copy_type_name: str, error: Exception) -> str:
    """ "cannot read 'x' as int4", with the reason when it says more than the parser's."""
    worded = isinstance(error, _Unreadable) or not isinstance(value, str)
    return f"cannot read {_shown(value)} as {copy_type_name}" + (f": {error}" if worded else "")


def _shown(value: Any) -> str:
    return repr(str(value)[:200])


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
