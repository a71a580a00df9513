"""PostgreSQL binary COPY rows built column-wise with numpy instead of row by row.

A binary COPY row is a field count, then a length and the bytes of each field. For a
chunk, every run of fixed-width fields (the count, integers and floats, and the length
of the next variable field) is one numpy structured array, so the per-row Python work
is only slicing those records and joining them with the variable payloads (text and
EWKB). That is several times cheaper than formatting each field of each row, and it
leaves one buffer (with row offsets, so part of a chunk can be sent again) that the writer
sends with ``Copy.write``, releasing the GIL while the server works.

Columns of other types (numeric, dates, uuid, json, arrays ...) are dumped a column at a
time by psycopg's binary dumpers, the ones ``Copy.write_row`` would use, so a value they
refuse is found here, named with its column, before the server sees the chunk.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

from geosession.ingest.intervals import Interval
from geosession.ingest.readers import INFINITY, LAST_AND_FIRST, MINUS_INFINITY, Infinite
from geosession.ingest.values import TEXT_TYPES

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"

_FIXED = {
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float4": ">f4",
    "float8": ">f8",
    "bool": "?",
}
_EXACT = {
    **dict.fromkeys(("int2", "int4", "int8"), frozenset({int})),
    **dict.fromkeys(("float4", "float8"), frozenset({float, int, np.float64, np.float32})),
    "bool": frozenset({bool}),
}
"""Python types whose values a fixed-width column takes as they are."""
_BYTES = frozenset({"bytea"})
HSTORE = "hstore"
"""An extension's type psycopg dumps only with the database's OID: encoded here instead
(binary COPY fields carry no OID)."""
_BUFFERS = frozenset({bytes, bytearray, memoryview})


@dataclass(frozen=True)
class Encoded:
    """COPY rows of a chunk in one buffer: row ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""

    data: bytes
    offsets: np.ndarray[Any, np.dtype[np.int64]]

    def rows(self, start: int, stop: int) -> memoryview:
        return memoryview(self.data)[int(self.offsets[start]) : int(self.offsets[stop])]


NO_ROWS = Encoded(b"", np.zeros(1, dtype=np.int64))


@dataclass(frozen=True)
class Refused:
    """Values the column's dumper refuses, by row: the column's position and the error."""

    values: dict[int, tuple[int, Exception]]


def encode_rows(columns: list[list[Any]], copy_types: tuple[str, ...]) -> Encoded | Refused:
    """Binary COPY rows for column-wise values, or the values that cannot be sent."""
    count = len(columns[0]) if columns else 0
    segments, payloads, refused = _segments(columns, copy_types, count)
    if refused:
        return Refused(refused)
    pieces: list[Any] = [None] * (count * (len(segments) + len(payloads)))
    stride = len(segments) + len(payloads)
    lengths = np.zeros(count, dtype=np.int64)
    for position, segment in enumerate(segments):
        pieces[2 * position :: stride] = _records(segment)
        lengths += segment.dtype.itemsize
    for position, (payload, sizes) in enumerate(payloads):
        pieces[2 * position + 1 :: stride] = payload
        lengths += sizes
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Encoded(b"".join(pieces), offsets)


def _segments(
    columns: list[list[Any]], copy_types: tuple[str, ...], count: int
) -> tuple[
    list[np.ndarray[Any, Any]],
    list[tuple[list[bytes], np.ndarray[Any, Any]]],
    dict[int, tuple[int, Exception]],
]:
    """Fixed-width record arrays, alternating with variable payloads (and their sizes), and
    the values refused (the first column's by row)."""
    fields: list[tuple[str, str, Any]] = [("n", ">i2", len(columns))]
    segments: list[np.ndarray[Any, Any]] = []
    payloads: list[tuple[list[bytes], np.ndarray[Any, Any]]] = []
    refused: dict[int, tuple[int, Exception]] = {}
    for index, (values, copy_type) in enumerate(zip(columns, copy_types, strict=True)):
        fixed = _FIXED.get(copy_type)
        if fixed is not None and _fits(set(map(type, values)), copy_type):
            try:
                array = np.asarray(values, fixed)
            except OverflowError:  # e.g. 2**40 for an int4: the dumper names the value
                pass
            else:
                width = np.dtype(fixed).itemsize
                fields += [(f"l{index}", ">i4", width), (f"v{index}", fixed, array)]
                continue
        payload, sizes, refusals = _variable(values, copy_type)
        for row, cause in refusals.items():
            refused.setdefault(row, (index, cause))
        fields.append((f"l{index}", ">i4", sizes))
        segments.append(_record_array(fields, count))
        payloads.append((payload, np.maximum(sizes, 0)))
        fields = []
    if fields:
        segments.append(_record_array(fields, count))
    return segments, payloads, refused


def _variable(
    values: list[Any], copy_type: str
) -> tuple[list[bytes], np.ndarray[Any, Any], dict[int, Exception]]:
    """Bytes of each value (b"" for NULL) and its length (-1 for NULL), and the values
    the column's dumper refuses, by row.

    A column of only str (or only bytes) takes a pass in C; the rest goes value by value.
    """
    kinds = set(map(type, values))
    nulls = values.count(None) if type(None) in kinds else 0
    refusals: dict[int, Exception] = {}
    payload: list[Any]
    if copy_type in TEXT_TYPES:
        payload, refusals = _text(values, kinds)
    elif copy_type in _BYTES and kinds <= _BUFFERS | {type(None)}:
        payload = values if kinds == {bytes} else [b"" if v is None else v for v in values]
    elif copy_type in _FIXED and _fits(kinds - {type(None)}, copy_type):
        dtype = np.dtype(_FIXED[copy_type])
        try:
            payload = [b"" if v is None else np.asarray(v, dtype).tobytes() for v in values]
        except OverflowError:
            payload, refusals = _dumped(values, copy_type)
    elif copy_type == HSTORE:
        payload, refusals = _each(values, _hstore)
    elif copy_type == "interval":  # values.py made each an Interval, months included
        payload, refusals = _each(values, Interval.binary)
    elif Infinite in kinds or copy_type in _DATED_ARRAYS:
        payload, refusals = _with_infinities(values, copy_type)
    elif isinstance(copy_type, TextArrayOf):
        payload, refusals = _dumped(values, copy_type)
        element = copy_type.element_oid.to_bytes(4, "big")
        payload = [v[:8] + element + v[12:] if v else v for v in payload]  # header: 3 ints
    else:
        payload, refusals = _dumped(values, copy_type)
    sizes = np.fromiter(map(len, payload), dtype=np.int64, count=len(payload))
    if nulls:
        sizes[np.fromiter((v is None for v in values), dtype=bool, count=len(values))] = -1
    return payload, sizes, refusals


def _text(values: list[Any], kinds: set[type]) -> tuple[list[bytes], dict[int, Exception]]:
    """Each value as UTF-8 (b"" for NULL), and those UTF-8 cannot hold (a lone surrogate,
    as json.loads makes of "\\ud800") or PostgreSQL's text cannot (a NUL), by row."""
    refusals: dict[int, Exception] = {}
    try:
        if kinds == {str}:
            payload = list(map(str.encode, values))
        else:
            payload = [b"" if v is None else _utf8(v) for v in values]
    except (UnicodeEncodeError, TypeError):  # found again value by value
        payload, refusals = _each(values, _utf8)
    if b"\x00" in b"".join(payload):  # one pass in C
        nul = {row: _NUL for row, value in enumerate(payload) if b"\x00" in value}
        refusals = nul | refusals
    return payload, refusals


def _utf8(value: Any) -> bytes:
    if type(value) is str:
        return value.encode()
    try:
        text = str(value)
    except Exception as error:  # an object's own __str__: whatever it raises
        raise TypeError(f"its str() raised {type(error).__name__}: {error}") from error
    return text.encode()


_NUL = ValueError("PostgreSQL text cannot hold the NUL character (0x00): remove or replace it")


def _each(values: list[Any], encode: Any) -> tuple[list[bytes], dict[int, Exception]]:
    """Each value encoded (b"" for NULL), and the ones ``encode`` refuses, by row."""
    payload: list[bytes] = []
    refusals: dict[int, Exception] = {}
    for row, value in enumerate(values):
        try:
            payload.append(b"" if value is None else encode(value))
        except (TypeError, AttributeError, UnicodeError) as error:
            payload.append(b"")
            refusals[row] = error
    return payload, refusals


def _hstore(pairs: dict[str, str | None]) -> bytes:
    """hstore_recv's format: the count, then each key's and value's length and UTF-8
    bytes (a NULL value's length -1)."""
    parts = [len(pairs).to_bytes(4, "big")]
    for key, value in pairs.items():
        encoded = key.encode()
        parts += [len(encoded).to_bytes(4, "big"), encoded]
        if value is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            encoded = value.encode()
            parts += [len(encoded).to_bytes(4, "big"), encoded]
    return b"".join(parts)


def _fits(kinds: set[type], copy_type: str) -> bool:
    """Whether numpy converts values of these types to the column's without changing
    them (it would cut 1.5 to 1 for an integer, and read any string as True)."""
    return kinds <= _EXACT[copy_type]


def _dumped(values: list[Any], copy_type: str) -> tuple[list[Any], dict[int, Exception]]:
    """The column dumped by psycopg's binary dumper for its type (b"" for NULL), and each
    value the dumper refuses, by row (when there are any, the chunk is not sent)."""
    try:
        dumped = _dump(values, copy_type)
    except Exception:  # any dumper error is a value's: find each one
        return [b""] * len(values), _refusals(values, copy_type)
    return [b"" if d is None else d for d in dumped], {}


def _with_infinities(values: list[Any], copy_type: str) -> tuple[list[Any], dict[int, Exception]]:
    """A date or time column dumped with infinity and -infinity where values.py put them
    (no Python date or time is one); an array column of them, where its elements are the
    last or first instant."""
    if copy_type in _DATED_ARRAYS:
        payload, refusals = _dumped(values, copy_type)
        return [_infinite_elements(array, copy_type) for array in payload], refusals
    payload, refusals = _dumped([None if type(v) is Infinite else v for v in values], copy_type)
    width = 4 if copy_type == "date" else 8
    for row, value in enumerate(values):
        if type(value) is Infinite:
            payload[row] = value.binary(width)
    return payload, refusals


_DATED_ARRAYS = frozenset({"date[]", "timestamp[]", "timestamptz[]"})


def _infinite_elements(array: bytes, copy_type: str) -> bytes:
    """A binary array with its elements of the last and first instant as infinity and
    -infinity, as the drivers read those back (a scan in C finds the arrays that have one)."""
    swaps = _infinity_swaps(copy_type)
    if not any(found in array for found in swaps):
        return array
    edited = bytearray(array)
    offset = 12 + 8 * int.from_bytes(array[:4], "big")  # dimensions, flags, element type
    while offset < len(edited):
        length = max(int.from_bytes(edited[offset : offset + 4], "big", signed=True), 0)
        element = bytes(edited[offset : offset + 4 + length])
        edited[offset : offset + 4 + length] = swaps.get(element, element)
        offset += 4 + length
    return bytes(edited)


@functools.cache
def _infinity_swaps(copy_type: str) -> dict[bytes, bytes]:
    """The last and first instant as elements of a ``copy_type`` array (length and value),
    and infinity and -infinity in their place."""
    element = copy_type.removesuffix("[]")
    width = 4 if element == "date" else 8
    last, first = (bytes(value) for value in _dump(list(LAST_AND_FIRST[element]), element))
    prefix = width.to_bytes(4, "big")
    return {
        prefix + last: prefix + INFINITY.binary(width),
        prefix + first: prefix + MINUS_INFINITY.binary(width),
    }


def _refusals(values: list[Any], copy_type: str) -> dict[int, Exception]:
    refusals: dict[int, Exception] = {}
    for row, value in enumerate(values):
        try:
            _dump([value], copy_type)
        except Exception as error:
            refusals[row] = error
    return refusals


def _dump(values: list[Any], copy_type: str) -> list[Any]:
    transformer = Transformer()
    transformer.set_dumper_types([type_oid(copy_type)] * len(values), pq.Format.BINARY)
    return list(transformer.dump_sequence(values, [PyFormat.BINARY] * len(values)))


class TextArrayOf(str):
    """The copy type of an array sent as ``text[]`` whose header names another element
    type: an enum[] (the server reads each element's text, but checks the array's element
    OID). It is the string "text[]" for everything else that reads copy types."""

    element_oid: int

    def __new__(cls, element_oid: int) -> TextArrayOf:
        copy_type = super().__new__(cls, "text[]")
        copy_type.element_oid = element_oid
        return copy_type


class TextCast(str):
    """The copy type of a column whose type no dumper sends (macaddr, money, bit,
    tsvector, point, a composite; an array of one, or of a domain): its values travel as
    ``text`` (``text[]``) into a staging table, and the server casts them to ``cast_to``,
    the column's type without its typmod. It is the string "text" (or "text[]") for
    everything else that reads copy types."""

    cast_to: str

    def __new__(cls, cast_to: str, *, array: bool) -> TextCast:
        copy_type = super().__new__(cls, "text[]" if array else "text")
        copy_type.cast_to = cast_to
        return copy_type


def can_send(copy_type: str) -> bool:
    """Whether the column-wise encoders or psycopg's binary dumpers can send the type."""
    if copy_type in _FIXED or copy_type in TEXT_TYPES or copy_type in _BYTES:
        return True
    if copy_type == HSTORE:
        return True
    element = copy_type.removesuffix("[]")
    if psycopg.adapters.types.get(element) is None:
        return False
    if element != copy_type and not can_send(element):  # macaddr[]: its elements as text
        return False
    try:
        psycopg.adapters.get_dumper_by_oid(type_oid(copy_type), pq.Format.BINARY)
    except psycopg.ProgrammingError:  # known to psycopg, but not dumped (point, money)
        return False
    return True


def type_oid(copy_type: str) -> int:
    """The OID psycopg dumps a COPY type as ("text[]": text's array type)."""
    info = psycopg.adapters.types[copy_type]
    return int(info.array_oid if copy_type.endswith("[]") else info.oid)


def _record_array(fields: list[tuple[str, str, Any]], count: int) -> np.ndarray[Any, Any]:
    records = np.empty(count, dtype=[(name, dtype) for name, dtype, _ in fields])
    for name, _, value in fields:
        records[name] = value
    return records


def _records(segment: np.ndarray[Any, Any]) -> list[bytes]:
    """Each record of a structured array as its own bytes object (opaque records do it in C)."""
    return list(segment.view(np.dtype((np.void, segment.dtype.itemsize))).tolist())
