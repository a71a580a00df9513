"""PostgreSQL binary COPY rows built column-wise with numpy instead of row by row.

A binary COPY row is a field count, then a length and the bytes of each field. For a
chunk, every run of fixed-width fields (the count, integers and floats, and the length
of the next variable field) is one numpy structured array, so the per-row Python work
is only slicing those records and joining them with the variable payloads (text and
EWKB). That is several times cheaper than formatting each field of each row, and it
leaves one buffer (with row offsets, so a chunk can still be bisected) that the writer
sends with ``Copy.write``, releasing the GIL while the server works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
_TEXT = frozenset({"text", "varchar", "bpchar", "name"})
_BYTES = frozenset({"bytea"})
SUPPORTED = frozenset(_FIXED) | _TEXT | _BYTES


@dataclass(frozen=True)
class Encoded:
    """COPY rows of a chunk in one buffer: row ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""

    data: bytes
    offsets: np.ndarray[Any, np.dtype[np.int64]]

    def rows(self, start: int, stop: int) -> memoryview:
        return memoryview(self.data)[int(self.offsets[start]) : int(self.offsets[stop])]


def supports(copy_types: tuple[str, ...]) -> bool:
    """Whether every column has a vectorized encoder (else rows go through write_row)."""
    return all(t in SUPPORTED for t in copy_types)


def encode_rows(columns: list[list[Any]], copy_types: tuple[str, ...]) -> Encoded | None:
    """Binary COPY rows for column-wise values; None when a value does not fit its type."""
    count = len(columns[0]) if columns else 0
    try:
        segments, payloads = _segments(columns, copy_types, count)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None  # e.g. a str in an integer column: let write_row report it
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
) -> tuple[list[np.ndarray[Any, Any]], list[tuple[list[bytes], np.ndarray[Any, Any]]]]:
    """Fixed-width record arrays, alternating with variable payloads (and their sizes)."""
    fields: list[tuple[str, str, Any]] = [("n", ">i2", len(columns))]
    segments: list[np.ndarray[Any, Any]] = []
    payloads: list[tuple[list[bytes], np.ndarray[Any, Any]]] = []
    for index, (values, copy_type) in enumerate(zip(columns, copy_types, strict=True)):
        fixed = _FIXED.get(copy_type)
        if fixed is not None and _fits(set(map(type, values)), copy_type):
            width = np.dtype(fixed).itemsize
            fields += [(f"l{index}", ">i4", width), (f"v{index}", fixed, np.asarray(values, fixed))]
            continue
        payload, sizes = _variable(values, copy_type)
        fields.append((f"l{index}", ">i4", sizes))
        segments.append(_record_array(fields, count))
        payloads.append((payload, np.maximum(sizes, 0)))
        fields = []
    if fields:
        segments.append(_record_array(fields, count))
    return segments, payloads


def _variable(values: list[Any], copy_type: str) -> tuple[list[bytes], np.ndarray[Any, Any]]:
    """Bytes of each value (b"" for NULL) and its length (-1 for NULL).

    A column of only str (or only bytes) takes a pass in C; the rest goes value by value.
    """
    nulls = values.count(None)
    kinds = set(map(type, values))
    payload: list[Any]
    if copy_type in _TEXT:
        if not nulls and kinds == {str}:
            payload = list(map(str.encode, values))
        else:
            payload = [
                b"" if v is None else (v if type(v) is str else str(v)).encode() for v in values
            ]
    elif copy_type in _BYTES:
        payload = (
            values
            if not nulls and kinds == {bytes}
            else [b"" if v is None else bytes(v) for v in values]
        )
    else:  # a fixed-width column with NULLs
        if not _fits(kinds - {type(None)}, copy_type):
            raise TypeError(f"values of types {kinds} for a {copy_type} column")
        dtype = np.dtype(_FIXED[copy_type])
        payload = [b"" if v is None else np.asarray(v, dtype).tobytes() for v in values]
    sizes = np.fromiter(map(len, payload), dtype=np.int64, count=len(payload))
    if nulls:
        sizes[np.fromiter((v is None for v in values), dtype=bool, count=len(values))] = -1
    return payload, sizes


def _fits(kinds: set[type], copy_type: str) -> bool:
    """Whether numpy converts values of these types to the column's without changing
    them (it would cut 1.5 to 1 for an integer, and read any string as True)."""
    return kinds <= _EXACT[copy_type]


def _record_array(fields: list[tuple[str, str, Any]], count: int) -> np.ndarray[Any, Any]:
    records = np.empty(count, dtype=[(name, dtype) for name, dtype, _ in fields])
    for name, _, value in fields:
        records[name] = value
    return records


def _records(segment: np.ndarray[Any, Any]) -> list[bytes]:
    """Each record of a structured array as its own bytes object (opaque records do it in C)."""
    return list(segment.view(np.dtype((np.void, segment.dtype.itemsize))).tolist())
