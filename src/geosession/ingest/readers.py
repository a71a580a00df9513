"""How a source value is read as one PostgreSQL type, as the server would read it.

One reader per type (or family): text as its input syntax, Python and numpy values of
the kinds that mean the same thing, anything else refused with :class:`Unreadable`
saying why. psycopg's binary dumpers take what they are given (its time and interval
dumpers any object, its bool one any value's truthiness, its bytea one 5 as five zero
bytes) and its text loaders read PostgreSQL's output forms, not every input form, so
nothing reaches them that these readers have not read. Which reader a column gets is
decided in :mod:`geosession.ingest.values`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import numbers
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, SupportsInt, cast

import numpy as np
import psycopg
import shapely
from psycopg.adapt import Transformer
from psycopg.pq import Format
from psycopg.types.hstore import HstoreLoader
from psycopg.types.range import Range

from geosession.errors import InvalidGeometry
from geosession.geometry import from_geojson
from geosession.ingest.intervals import Interval, parse_interval

_BOOLEANS = {
    **dict.fromkeys(("t", "true", "1", "yes", "y", "on"), True),
    **dict.fromkeys(("f", "false", "0", "no", "n", "off"), False),
}


class Unreadable(ValueError):
    """Why a value cannot be read, in words worth showing (a parser's own are not)."""


def to_bool(value: Any) -> Any:
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
    raise Unreadable("only true, false, 1 and 0 (and their spellings in text) are booleans")


def _not_a_number() -> Unreadable:
    """Python's bool is an int, PostgreSQL's boolean no number: an INSERT refuses it."""
    return Unreadable(
        "a boolean is no number to PostgreSQL (it casts one only when told): make the "
        "column boolean, or give 1 and 0"
    )


def to_integer(value: Any) -> Any:
    """A whole number of any numeric type as an int (3.0 from a pandas column that has
    NaNs); a fraction is refused, where encoding it as an integer would cut it silently."""
    if isinstance(value, str):
        return int(value)
    if isinstance(value, bool | np.bool_):
        raise _not_a_number()
    if isinstance(value, int) or not isinstance(value, numbers.Real | decimal.Decimal):
        return value  # anything else is left to the dumper, which names what it refuses
    whole = int(cast(SupportsInt, value))  # NaN and infinities raise here
    if whole != value:
        raise Unreadable("not a whole number; round it in the source if that is meant")
    return whole


INTEGER_RANGES = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),
}
"""What each integer type holds: numpy and psycopg's dumpers would wrap a value beyond it
(2**40 sent as an int4 is 0)."""


def out_of_range(type_name: str) -> Unreadable:
    low, high = INTEGER_RANGES[type_name]
    return Unreadable(f"out of range for {type_name} ({low} to {high})")


def to_integer_of(type_name: str, value: Any) -> Any:
    """:func:`to_integer`, refusing a whole number ``type_name`` cannot hold."""
    whole = to_integer(value)
    low, high = INTEGER_RANGES[type_name]
    if isinstance(whole, int) and not low <= whole <= high:
        raise out_of_range(type_name)
    return whole


def to_float(text: str) -> float:
    number = float(text)
    if math.isinf(number) and "inf" not in text.lower():
        raise Unreadable("out of range for float8")
    return number


def to_real(value: Any) -> Any:
    """Text read as a float column reads it; anything else but a boolean as it is."""
    if isinstance(value, str):
        return to_float(value)
    if isinstance(value, bool | np.bool_):
        raise _not_a_number()
    return value


def to_decimal(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        raise _not_a_number()
    return decimal.Decimal(str(value)) if isinstance(value, float | int | str) else value


class Infinite:
    """PostgreSQL's infinity (``sign`` 1) or -infinity (-1) for a date or a time: what
    every driver reads back as ``date.max``/``datetime.max`` (``.min``)."""

    __slots__ = ("sign",)

    def __init__(self, sign: int) -> None:
        self.sign = sign

    def __str__(self) -> str:
        return "infinity" if self.sign > 0 else "-infinity"

    def binary(self, width: int) -> bytes:
        """Its binary COPY form in a ``width``-byte date (4) or timestamp (8)."""
        bound: int = 2 ** (8 * width - 1)
        return (bound - 1 if self.sign > 0 else -bound).to_bytes(width, "big", signed=True)


INFINITY, MINUS_INFINITY = Infinite(1), Infinite(-1)
_INFINITE_TEXT = {"infinity": INFINITY, "+infinity": INFINITY, "-infinity": MINUS_INFINITY}
LAST_AND_FIRST = {
    "date": (dt.date.max, dt.date.min),
    "timestamp": (dt.datetime.max, dt.datetime.min),
    "timestamptz": (dt.datetime.max.replace(tzinfo=dt.UTC), dt.datetime.min.replace(tzinfo=dt.UTC)),
}
"""Python's last and first instant of each type, as the drivers read infinity and
-infinity (an array's elements are written as infinity from them, see ``binary``)."""
INFINITE_MOMENTS = tuple(
    (moment, bound)
    for last, first in LAST_AND_FIRST.values()
    for moment, bound in ((last, INFINITY), (first, MINUS_INFINITY))
)


def infinity_named(value: Any) -> Infinite | None:
    """The infinity text names in the server's spellings (any case, spaces around)."""
    return _INFINITE_TEXT.get(value.strip().lower()) if isinstance(value, str) else None


_FIVE_DIGIT_YEAR = re.compile(r"\s*\+?\d{5,}-")


def _moment(value: Any) -> Any:
    """Text and numpy datetimes as datetime (NaT as None); anything else as it is."""
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            if _FIVE_DIGIT_YEAR.match(value):
                raise Unreadable(
                    "a year after 9999, which Python's dates and times cannot hold: load "
                    "it into a text column and cast it in SQL"
                ) from None
            raise
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[us]").item()
    return value


def to_timestamptz(timezone: dt.tzinfo, value: Any) -> Any:
    """A time without a zone is one in the session's TimeZone, as the server reads it."""
    moment = _moment(value)
    if isinstance(moment, dt.datetime):
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone)
    if isinstance(moment, dt.date):
        return dt.datetime.combine(moment, dt.time(), timezone)
    return moment


def to_timestamp(timezone: dt.tzinfo, value: Any) -> Any:
    """A time with a zone becomes the local time in the session's TimeZone, as the server
    stores it."""
    moment = _moment(value)
    if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
        return moment.astimezone(timezone).replace(tzinfo=None)
    if type(moment) is dt.date:
        return dt.datetime.combine(moment, dt.time())
    return moment


def to_date(timezone: dt.tzinfo, value: Any) -> Any:
    """Text, numpy datetimes and times as their date (a time with a zone, its date in the
    session's TimeZone), as the server casts them to date."""
    moment = _moment(value)
    if isinstance(moment, dt.datetime):
        return (moment.astimezone(timezone) if moment.tzinfo else moment).date()
    return moment


def to_time(timezone: dt.tzinfo, value: Any) -> Any:
    """A time of day: text (12:30, 12:30:00.5), a datetime's time (one with a zone, in
    the session's TimeZone), numpy datetime64. psycopg's time dumper reads any object as
    if it were a time, so anything else is refused here rather than stored as garbage."""
    if type(value) is dt.time:
        return value.replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, str):
        try:
            return dt.time.fromisoformat(value.strip()).replace(tzinfo=None)
        except ValueError:
            raise Unreadable("not a time of day such as 12:30 or 12:30:00.5") from None
    moment = _moment(value)
    if isinstance(moment, dt.datetime):
        return (moment.astimezone(timezone) if moment.tzinfo else moment).time()
    raise Unreadable(f"a time column takes a time or a datetime, not {type(value).__name__}")


def to_timetz(timezone: dt.tzinfo, value: Any) -> Any:
    """A time of day with its UTC offset: text (12:30+02), a time; one without an offset
    takes the session's TimeZone's offset today, as PostgreSQL's input does."""
    if isinstance(value, str):
        try:
            value = dt.time.fromisoformat(value.strip())
        except ValueError:
            raise Unreadable("not a time of day such as 12:30+02 or 12:30:00") from None
    elif isinstance(value, dt.datetime):
        value = value.timetz()
    if not isinstance(value, dt.time):
        raise Unreadable(f"a timetz column takes a time, not {type(value).__name__}")
    today = dt.datetime.now(timezone).date()
    offset = dt.datetime.combine(today, value, value.tzinfo or timezone).utcoffset()
    return value.replace(tzinfo=dt.timezone(offset or dt.timedelta()))


def to_interval(value: Any) -> Any:
    """A duration as months, days and microseconds: text as PostgreSQL reads it (see
    intervals.py), timedelta (pandas' Timedelta is one) or numpy timedelta64. psycopg's
    interval dumper reads any object as if it were a timedelta, and has no months."""
    if isinstance(value, str):
        try:
            return parse_interval(value)
        except ValueError as error:
            raise Unreadable(
                f"not an interval such as '1 day 02:00:00', '90 minutes' or 'P1DT2H' ({error})"
            ) from None
    if isinstance(value, dt.timedelta):
        return Interval.of(value)
    if isinstance(value, np.timedelta64):
        return None if np.isnat(value) else Interval.of(value.astype("timedelta64[us]").item())
    raise Unreadable(
        f"an interval column takes text, a timedelta or numpy timedelta64, not "
        f"{type(value).__name__}"
    )


def to_interval_element(value: Any) -> Any:
    """An interval[] element: psycopg sends those from timedeltas, without months."""
    interval = to_interval(value)
    try:
        return None if interval is None else interval.timedelta()
    except ValueError as error:
        raise Unreadable(str(error)) from None


def to_hstore(value: Any) -> Any:
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
            raise Unreadable(f"not hstore text ({error})") from None
    if isinstance(value, Mapping):
        return {str(k): None if v is None else str(v) for k, v in value.items()}
    return value


def _json_array(text: str) -> Any:
    """A JSON array's text as a list."""
    try:
        value = json.loads(text)
    except ValueError:
        raise Unreadable(
            "not a JSON array such as [1,2], nor {1,2} as PostgreSQL writes one"
        ) from None
    if not isinstance(value, list):
        raise Unreadable("not a JSON array such as [1,2]")
    return value


def _json_object(text: str) -> Any:
    """A JSON object's text as a dict; other text as it is (left to hstore's parser)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


_HSTORE_TEXT = HstoreLoader(0)


def as_is(text: str) -> str:
    return text


def to_text(value: Any) -> Any:
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
            raise Unreadable(
                "bytes for a text column are read as UTF-8 text, and these are not: "
                "load them into a bytea column"
            ) from None
    return value


def to_cast_text(value: Any) -> str:
    """A value of a type the server casts from text (macaddr, money, bit, tsvector, point,
    a composite): text as it is and a number as its text; any other object has no text the
    type is known to read (a tuple's would be Python's, not a composite's)."""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Number) and not isinstance(value, bool | np.bool_):
        return str(value)
    raise Unreadable(
        f"a {type(value).__name__} is no text for this type: give the value as PostgreSQL "
        "writes it (SELECT CAST(value AS text))"
    )


def to_geometry_text(geography: bool, value: Any) -> str:
    """An element of an array of geometries as text PostGIS's input reads: a GeoJSON
    object (as exports write such arrays) as its JSON for a geometry (whose input reads
    GeoJSON), as hex EWKB for a ``geography`` (whose input does not); a shapely geometry
    or WKB as hex EWKB, text (WKT, EWKT, hex) as it is."""
    if isinstance(value, Mapping) and not geography:
        return json.dumps(value)
    if isinstance(value, Mapping):
        try:
            value = from_geojson(value)
        except InvalidGeometry as error:
            raise Unreadable(str(error)) from None
    if isinstance(value, shapely.Geometry):
        return str(shapely.to_wkb(value, hex=True, include_srid=True))
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return to_cast_text(value)


def to_bytes(value: Any) -> bytes:
    """bytea text as the server reads its hex form (``\\x0102``); text without a
    backslash is its UTF-8 bytes, and the old escape form is refused. Anything but bytes
    and text is refused too: psycopg's bytea dumper would send 5 as five zero bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if not isinstance(value, str):
        raise Unreadable(f"a bytea column takes bytes or text, not {type(value).__name__}")
    if value.startswith("\\x"):
        return bytes.fromhex(value[2:])
    if "\\" in value:
        raise Unreadable("only bytea's hex form is read: \\x followed by hex digits")
    return value.encode()


def to_uuid(value: Any) -> Any:
    """A UUID from its text, or from its 16 bytes (Arrow's uuid type, a binary(16) key);
    other values are left to the dumper, which names them."""
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) != 16:
            raise Unreadable(f"a UUID is 16 bytes, not {len(value)}")
        return uuid.UUID(bytes=bytes(value))
    return uuid.UUID(value) if isinstance(value, str) else value


_RANGE_TEXT = re.compile(
    r'([\[(])\s*("(?:[^"\\]|\\.)*"|[^,]*?)\s*,\s*("(?:[^"\\]|\\.)*"|[^\])]*?)\s*([\])])'
)
"""A range's text: its bounds' brackets, and each bound bare, quoted or left out."""


def to_range(bound: Callable[[str], Any], value: Any) -> Any:
    """A range's text (``[1,5)``, ``["2026-01-01 00:00+02",)``, ``empty``) as a Range,
    each bound read as its column type's value would be; a Range as it is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() == "empty":
        return Range(empty=True)
    match = _RANGE_TEXT.fullmatch(text)
    if match is None:
        raise Unreadable("not a range such as [1,5), (,3] or empty")
    opening, lower, upper, closing = match.groups()
    return Range(_bound(bound, lower), _bound(bound, upper), opening + closing)


def _bound(read: Callable[[str], Any], text: str) -> Any:
    if not text:
        return None  # unbounded
    if text.startswith('"'):
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    if text.strip().lower() in ("infinity", "-infinity"):
        raise Unreadable("an infinite bound cannot be sent; leave the bound out instead")
    value = read(text.strip())
    if value is None:
        raise Unreadable(f"not a bound: {text!r}")
    return value


def to_json(wrap: Callable[[str], Any], value: Any) -> Any:
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


def to_array(
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


def array_parser(copy_type_name: str) -> Callable[[str], Any] | None:
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
            raise Unreadable(
                f'not an array as PostgreSQL writes one, such as {{1,2}} or {{a,"b c"}} ({error})'
            ) from None

    return parse


def if_text(parse: Callable[[str], Any], value: Any) -> Any:
    return parse(value) if isinstance(value, str) else value
