"""Source values converted to what each column's binary COPY dumper takes.

An INSERT hands the server text or typed parameters and the server converts them; binary
COPY sends the column's own format, so the conversions the server would make (text from a
CSV, a whole float for an integer) are made here, and a value that cannot be converted is
refused by row, naming the column, before the server sees the chunk.
"""

from __future__ import annotations

import datetime as dt
import decimal
import numbers
import uuid
from collections.abc import Callable
from types import NoneType
from typing import Any, SupportsInt, cast

from psycopg.types.json import Json, Jsonb

_BOOLEANS = {
    **dict.fromkeys(("t", "true", "1", "yes", "y", "on"), True),
    **dict.fromkeys(("f", "false", "0", "no", "n", "off"), False),
}


def _parse_bool(text: str) -> bool:
    """PostgreSQL's spellings of a boolean; anything else is not one (not False)."""
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


def _to_integer(value: Any) -> Any:
    """A whole number of any numeric type as an int (3.0 from a pandas column that has
    NaNs); a fraction is refused, where encoding it as an integer would cut it silently."""
    if isinstance(value, str):
        return int(value)
    if isinstance(value, int) or not isinstance(value, numbers.Real | decimal.Decimal):
        return value  # anything else is left to the dumper, which names what it refuses
    whole = int(cast(SupportsInt, value))  # NaN and infinities raise here
    if whole != value:
        raise ValueError("not a whole number; round it in the source if that is meant")
    return whole


_FROM_TEXT: dict[str, Callable[[Any], Any]] = {
    "int2": _to_integer,
    "int4": _to_integer,
    "int8": _to_integer,
    "float4": float,
    "float8": float,
    "numeric": decimal.Decimal,
    "bool": _parse_bool,
    "date": dt.date.fromisoformat,
    "timestamp": dt.datetime.fromisoformat,
    "timestamptz": dt.datetime.fromisoformat,
    "uuid": uuid.UUID,
    # text for a JSON column is JSON already (as in an INSERT): sent as it is, and checked
    # by the server, instead of being dumped again as one JSON string
    "json": lambda text: Json(text, dumps=_as_is),
    "jsonb": lambda text: Jsonb(text, dumps=_as_is),
}


def _as_is(text: str) -> str:
    return text


def coerce_values(values: list[Any], copy_type_name: str) -> tuple[list[Any], dict[int, str]]:
    """Converts text (CSV, or JSON for a JSON column), whole numbers for integers and
    floats for numeric to what the column's binary dumper takes.

    Also returns, by position, why a text could not be read as the column's type: those
    rows are set aside before the COPY, naming the column, instead of being found by
    bisecting chunks on the server. Other values that do not fit are left as they are.
    """
    parse = _FROM_TEXT.get(copy_type_name)
    if parse is None:
        return values, {}
    kinds = set(map(type, values))  # one pass in C over the column, then a check per type
    if copy_type_name == "numeric":
        parse = _to_decimal
    elif copy_type_name in _INTEGERS:
        if all(issubclass(kind, int | NoneType) for kind in kinds):
            return values, {}
    elif not any(issubclass(kind, str) for kind in kinds):
        return values, {}
    converted: list[Any] = []
    unreadable: dict[int, str] = {}
    for index, value in enumerate(values):
        try:
            converted.append(_convert(parse, value))
        except (ValueError, ArithmeticError) as error:
            converted.append(value)
            why = "" if isinstance(value, str) else f": {error}"
            unreadable[index] = f"cannot read {str(value)[:200]!r} as {copy_type_name}{why}"
    return converted, unreadable


def _to_decimal(value: Any) -> Any:
    return decimal.Decimal(str(value)) if isinstance(value, float | int | str) else value


_INTEGERS = frozenset({"int2", "int4", "int8"})
_ANY_VALUE = (_to_decimal, _to_integer)
"""Conversions for values of every type, not only for text."""


def _convert(parse: Callable[[Any], Any], value: Any) -> Any:
    if value is None:
        return None
    return parse(value) if isinstance(value, str) or parse in _ANY_VALUE else value
