"""PostgreSQL's infinite dates and times, read as psycopg2 and asyncpg read them.

``'infinity'`` and ``'-infinity'`` (a ``valid_to`` that never ends) have no Python date:
psycopg 3's loaders refuse them ("timestamp too large (after year 10K)"), where psycopg2
and asyncpg give ``date.max`` and ``date.min`` (``datetime.max`` and ``.min``). A result
psycopg 3 refuses so is loaded again with loaders that do the same, so that every driver
reads them alike; only such results pay for loaders written in Python. A year before 1
or after 9999, or the time 24:00:00, which no driver reads, is an error that says what to
query instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.adapt import AdaptersMap, Transformer
from psycopg.types import datetime as loaders

from geosession.errors import DatabaseError

_TEMPORAL = {1082: "date", 1114: "timestamp", 1184: "timestamptz", 1083: "time", 1266: "timetz"}
_TEMPORAL_ARRAYS = {
    1182: "date[]",
    1115: "timestamp[]",
    1185: "timestamptz[]",
    1183: "time[]",
    1270: "timetz[]",
}
_UTC_MAX = dt.datetime.max.replace(tzinfo=dt.UTC)
_UTC_MIN = dt.datetime.min.replace(tzinfo=dt.UTC)
_INT64_MAX, _INT64_MIN = b"\x7f" + b"\xff" * 7, b"\x80" + bytes(7)  # how infinities are sent


class _DateBinary(loaders.DateBinaryLoader):
    def load(self, data: Any) -> dt.date:
        ends = {b"\x7f\xff\xff\xff": dt.date.max, b"\x80\x00\x00\x00": dt.date.min}
        return ends.get(bytes(data)) or super().load(data)


class _TimestampBinary(loaders.TimestampBinaryLoader):
    def load(self, data: Any) -> dt.datetime:
        return _end(data, dt.datetime.max, dt.datetime.min) or super().load(data)


class _TimestamptzBinary(loaders.TimestamptzBinaryLoader):
    def load(self, data: Any) -> dt.datetime:
        return _end(data, _UTC_MAX, _UTC_MIN) or super().load(data)


class _DateText(loaders.DateLoader):
    def load(self, data: Any) -> dt.date:
        ends = {b"infinity": dt.date.max, b"-infinity": dt.date.min}
        return ends.get(bytes(data)) or super().load(data)


class _TimestampText(loaders.TimestampLoader):
    def load(self, data: Any) -> dt.datetime:
        ends = {b"infinity": dt.datetime.max, b"-infinity": dt.datetime.min}
        return ends.get(bytes(data)) or super().load(data)


class _TimestamptzText(loaders.TimestamptzLoader):
    def load(self, data: Any) -> dt.datetime:
        ends = {b"infinity": _UTC_MAX, b"-infinity": _UTC_MIN}
        return ends.get(bytes(data)) or super().load(data)


def _end(data: Any, latest: dt.datetime, earliest: dt.datetime) -> dt.datetime | None:
    """A timestamp's infinity (the largest int64) or -infinity (the smallest)."""
    raw = bytes(data)
    return (
        latest if raw == b"\x7f" + b"\xff" * 7 else earliest if raw == b"\x80" + bytes(7) else None
    )


_LOADERS = {
    "date": (_DateBinary, _DateText),
    "timestamp": (_TimestampBinary, _TimestampText),
    "timestamptz": (_TimestamptzBinary, _TimestamptzText),
}


@dataclass
class _Context:
    """psycopg's AdaptContext: the cursor's connection (its TimeZone), with the loaders
    above."""

    adapters: AdaptersMap
    connection: Any


def all_rows(result: Any) -> list[Any]:
    """Every row of an executed SQLAlchemy result as the driver loads them (then closed);
    infinite dates and times as ``date.max``/``.min`` on every driver."""
    cursor = result.cursor
    refused = (result.context.dialect.loaded_dbapi.DataError, ValueError, OverflowError)
    try:
        return list(cursor.fetchall())
    except refused as error:  # a value the driver cannot load, in its words
        reloaded = _reloaded(cursor) if isinstance(error, psycopg.DataError) else None
        if reloaded is None:
            raise unreadable(error, cursor.description) from error
        return reloaded
    finally:
        result.close()


def _reloaded(cursor: Any) -> list[Any] | None:
    """The cursor's whole result loaded again with the infinity-reading loaders; None when
    a value is still unreadable (a year before 1), or the cursor keeps no result."""
    pgresult = getattr(cursor, "pgresult", None)
    if pgresult is None:
        return None
    adapters = AdaptersMap(cursor.adapters)
    for name, (binary, text) in _LOADERS.items():
        adapters.register_loader(name, binary)  # type: ignore[type-abstract]
        adapters.register_loader(name, text)  # type: ignore[type-abstract]
    transformer = Transformer(_Context(adapters, cursor.connection))
    transformer.set_pgresult(pgresult)
    try:
        return transformer.load_rows(0, pgresult.ntuples, tuple)
    except psycopg.DataError:
        return None


def unreadable(error: Exception, description: Sequence[Any] | None) -> DatabaseError:
    """A value of the result the driver cannot make a Python object of, naming the date and
    time columns it may be in and how to select them."""
    columns = [
        (column[0], _TEMPORAL.get(column[1]) or _TEMPORAL_ARRAYS.get(column[1]))
        for column in description or ()
    ]
    named = [f"{name} ({type_name})" for name, type_name in columns if type_name]
    first = next((name for name, type_name in columns if type_name), "the_column")
    kept = f"CASE WHEN extract(year FROM {first}) BETWEEN 1 AND 9999 THEN {first} END"
    return DatabaseError(
        f"a value of the result cannot be read into Python ({error}): "
        + (f"the date and time columns are {', '.join(named)}; " if named else "")
        + "a year before 1 or after 9999, or the time 24:00:00, has no Python value. Query "
        "such a column as text "
        f"({first}::text), or without those values ({kept})"
    )
