"""PostgreSQL's infinite dates and times, read as psycopg2 reads them on every driver.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.adapt import AdaptersMap, Loader, Transformer
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
_ENDS: dict[str, tuple[type[Loader], int, Any, Any]] = {
    # type: its binary loader and size (streams read binary results), then what its
    # infinity (the largest integer of that size) and -infinity (the smallest) read as
    "date": (loaders.DateBinaryLoader, 4, dt.date.max, dt.date.min),
    "timestamp": (loaders.TimestampBinaryLoader, 8, dt.datetime.max, dt.datetime.min),
    "timestamptz": (loaders.TimestamptzBinaryLoader, 8, _UTC_MAX, _UTC_MIN),
}


def _infinite_loaders() -> Iterator[tuple[str, type[Loader]]]:
    """Each type's binary loader, reading its infinities as ``_ENDS`` says."""
    for name, (base, size, latest, earliest) in _ENDS.items():
        ends = {b"\x7f" + b"\xff" * (size - 1): latest, b"\x80" + bytes(size - 1): earliest}
        yield name, _reading(base, ends)


def _reading(base: type[Loader], ends: dict[bytes, Any]) -> type[Loader]:
    """``base``, reading the values sent as ``ends``' keys as theirs."""

    def load(self: Loader, data: Any) -> Any:
        return ends.get(bytes(data)) or base.load(self, data)

    return type(f"Infinite{base.__name__}", (base,), {"load": load})


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
        rows = list(cursor.fetchall())
    except refused as error:  # a value the driver cannot load, in its words
        if not isinstance(error, psycopg.DataError):
            raise unreadable(error, cursor.description) from error
        try:
            reloaded = _reloaded(cursor)
        except psycopg.DataError as still:  # no infinity: a year before 1, a time of 24:00
            raise unreadable(still, cursor.description) from still
        if reloaded is None:
            raise unreadable(error, cursor.description) from error
        return reloaded
    finally:
        result.close()
    if result.context.dialect.driver == "asyncpg":
        return _in_utc(rows, cursor.description)
    return rows


def _reloaded(cursor: Any) -> list[Any] | None:
    """The cursor's whole result loaded again with the infinity-reading loaders (a value
    still unreadable raises psycopg's DataError); None when the cursor keeps no result."""
    pgresult = getattr(cursor, "pgresult", None)
    if pgresult is None:
        return None
    adapters = AdaptersMap(cursor.adapters)
    for name, loader in _infinite_loaders():
        adapters.register_loader(name, loader)
    transformer = Transformer(_Context(adapters, cursor.connection))
    transformer.set_pgresult(pgresult)
    return transformer.load_rows(0, pgresult.ntuples, tuple)


def _in_utc(rows: list[Any], description: Sequence[Any] | None) -> list[Any]:
    """asyncpg reads a timestamptz's infinities as the naive ``datetime.max`` and ``.min``,
    beside its other values in UTC (a comparison of the two fails): made UTC's, as
    psycopg's and psycopg2's are."""
    columns = [i for i, column in enumerate(description or ()) if column[1] in (1184, 1185)]
    if not columns:
        return rows
    return [_row_in_utc(row, columns) for row in rows]


def _row_in_utc(row: Any, columns: list[int]) -> Any:
    values = list(row)
    for i in columns:
        value = values[i]
        values[i] = [_utc(v) for v in value] if isinstance(value, list) else _utc(value)
    return tuple(values)


def _utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return (
            _UTC_MAX
            if value == dt.datetime.max
            else _UTC_MIN
            if value == dt.datetime.min
            else value
        )
    return value


def unreadable(error: Exception, description: Sequence[Any] | None) -> DatabaseError:
    """A value of the result the driver cannot make a Python object of, naming the date and
    time columns it may be in and how to select them."""
    columns = [
        (column[0], _TEMPORAL.get(column[1]) or _TEMPORAL_ARRAYS.get(column[1]))
        for column in description or ()
    ]
    named = [f"{name} ({type_name})" for name, type_name in columns if type_name]
    hour_24 = "hour=24" in str(error)  # psycopg's words for a time of 24:00:00
    first = next(
        (
            name
            for name, type_name in columns
            if type_name and type_name.startswith("time") == hour_24 and "stamp" not in type_name
        ),
        next((name for name, type_name in columns if type_name), "the_column"),
    )
    kept = (
        f"NULLIF({first}, '24:00')"
        if hour_24
        else f"CASE WHEN extract(year FROM {first}) BETWEEN 1 AND 9999 THEN {first} END"
    )
    return DatabaseError(
        f"a value of the result cannot be read into Python ({error}): "
        + (f"the date and time columns are {', '.join(named)}; " if named else "")
        + "a year before 1 or after 9999, or the time 24:00:00, has no Python value. Query "
        "such a column as text "
        f"({first}::text), or without those values ({kept})"
    )
