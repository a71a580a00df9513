"""The column types of a CSV's fields, for the table ``create=True`` makes for it.

Every value of the file is looked at, so that the type fits them all: a field's values
that all read as one kind make a column of it (integer or bigint, double precision,
boolean, date, timestamp, timestamptz, time), any other field stays text; a field of WKT
or hex WKB values is told apart (:meth:`TextKinds.wkt_fields`) for a geometry column.
Each kind is written as the load reads text into that type (:mod:`.readers`), no wider,
so no row is refused for the type its own file gave: numbers with leading zeros (postal
codes), numbers beyond bigint (identifiers) and NULL spelt as text (NA) keep a field
text, and a decimal comma counts only in a file separated by semicolons, as the load
reads it. Numbers that double precision would round (more significant digits than it
keeps, a whole number past 2**53 among decimals) make numeric, which keeps every digit.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from geosession.geometry import stated_srid
from geosession.ingest.readers import INTEGER_RANGES
from geosession.ingest.seen_types import FoundTypes
from geosession.wkb import wkb_type_name

_MOMENT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
_ZONE = r"(?:Z|[-+][0-9]{2}(?::?[0-9]{2})?)"
_WKT = (
    r"(?i:(?:SRID=[0-9]+;)?(?:(?:MULTI)?(?:POINT|LINESTRING|POLYGON|CURVE|SURFACE)"
    r"|GEOMETRYCOLLECTION|CIRCULARSTRING|COMPOUNDCURVE|CURVEPOLYGON|TRIANGLE|TIN"
    r"|POLYHEDRALSURFACE) ?(?:ZM|Z|M)? ?(?:\([^\n]*\)|EMPTY))"
)
"""A geometry's WKT or EWKT by its shape (its type word, then parentheses or EMPTY): with
hex (E)WKB (psql's COPY ... CSV writes geometries so), what makes a field a geometry
column when no field is named as one (the load parses it)."""
_GEOMETRY_KINDS = frozenset({"wkt", "hexwkb"})


def _shapes(decimal_mark: str) -> dict[str, str]:
    """Each kind's values as the load reads them from text, in the order tried."""
    return {
        "integer": r"[-+]?(?:0|[1-9][0-9]*)",
        "float": rf"[-+]?(?:(?:0|[1-9][0-9]*)(?:[{decimal_mark}][0-9]*)?|[{decimal_mark}][0-9]+)"
        r"(?:[eE][-+]?[0-9]+)?|(?i:[-+]?(?:nan|inf|infinity))",
        "boolean": r"(?i:t|f|true|false)",
        "date": r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "timestamp": _MOMENT,
        "timestamptz": _MOMENT + _ZONE,
        "time": r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?",
        "wkt": _WKT,
        "hexwkb": r"0[01](?:[0-9A-Fa-f]{2}){20,}",
    }


@dataclass(frozen=True)
class _Patterns:
    one: re.Pattern[str]
    """A value of any kind, the kind its group's name."""
    all_of: dict[str, re.Pattern[str]]
    """Values of one kind, joined by newlines: a batch checked in one match."""

    @classmethod
    def of(cls, decimal_mark: str) -> _Patterns:
        shapes = _shapes(decimal_mark)
        one = "|".join(f"(?P<{kind}>{shape})" for kind, shape in shapes.items())
        all_of = {k: re.compile(f"(?:{s})(?:\n(?:{s}))*") for k, s in shapes.items()}
        return cls(re.compile(one), all_of)


_PATTERNS: Final = {False: _Patterns.of("."), True: _Patterns.of(".,")}
"""By whether the file may have decimal commas."""
_TEXT = "text"
_INT4_DIGITS = 9
"""Digits that every int4 holds."""
_FINITE_DIGITS = 300
"""Characters of a plain decimal (no exponent) short enough for float8 to hold it."""
_FLOAT8_DIGITS = 15
"""Significant digits that float8 keeps of every decimal (DBL_DIG): a value of no more
characters than these needs no check that it reads back as written."""
_FLOAT8_WHOLE = 2**53
"""Whole numbers up to this one in size are exact in float8."""
_NUMBER_KINDS = frozenset({"integer", "bigint", "wide", "float", "exact"})
"""Kinds of number: "wide" is a bigint beyond float8's whole numbers, "exact" a decimal of
more digits than float8 keeps."""
_TYPES: Final[dict[frozenset[str], str]] = {
    frozenset({"boolean"}): "boolean",
    frozenset({"date"}): "date",
    frozenset({"timestamp"}): "timestamp",
    frozenset({"date", "timestamp"}): "timestamp",
    frozenset({"timestamptz"}): "timestamptz",
    frozenset({"time"}): "time",
}
"""The column type for the kinds a field's values came in; any other mix is text."""


class TextKinds:
    """The kinds of value seen so far in each field of a file, batch by batch."""

    def __init__(
        self, fields: Sequence[str], *, decimal_comma: bool, geometry: str | None = None
    ) -> None:
        self._kinds: dict[str, set[str]] = {name: set() for name in fields}
        self._geometry = geometry
        """A field that is a geometry by its name: only its values' SRIDs and types are read."""
        names = [*fields, geometry] if geometry is not None else fields
        self._srids: dict[str, set[int]] = {name: set() for name in names}
        """The SRIDs the values of a field of geometries state (0: none), up to two."""
        self._shapes: dict[str, FoundTypes] = {name: FoundTypes() for name in names}
        """The geometry types of a field of geometries' values."""
        self._patterns = _PATTERNS[decimal_comma]

    @property
    def open_fields(self) -> list[str]:
        """The fields whose kind a value may still change (text is settled), and the
        geometry field, whose every value's type is read."""
        fields = [name for name, kinds in self._kinds.items() if _TEXT not in kinds]
        return fields if self._geometry is None else [*fields, self._geometry]

    def see(self, values: Mapping[str, Iterable[str]]) -> None:
        """Takes a batch's values by field ('' for an empty one)."""
        for name, column in values.items():
            distinct = set(column) - {""}
            if name == self._geometry:
                self._see_geometries(name, distinct)
                continue
            kinds = self._kinds[name]
            if _TEXT not in kinds and distinct:
                kinds |= self._batch_kinds(distinct)
                if kinds <= _GEOMETRY_KINDS:
                    self._see_geometries(name, distinct)

    def _see_geometries(self, name: str, values: set[str]) -> None:
        if self._reading_srids(name):
            self._srids[name].update(stated_srid(value) for value in values)
        self._shapes[name].see_text(values)

    def geometry_types(self, name: str) -> list[str]:
        """The geometry types of a field of geometries' values ("Polygon", "Point Z")."""
        return self._shapes[name].types

    def _reading_srids(self, name: str) -> bool:
        """Whether a field's values could still state one SRID (none yet says none, or
        another)."""
        srids = self._srids[name]
        return len(srids) < 2 and 0 not in srids

    def wkt_fields(self) -> list[str]:
        """The fields whose every value (but empty ones) is a geometry's WKT, EWKT or hex
        (E)WKB."""
        return [n for n, kinds in self._kinds.items() if kinds and kinds <= _GEOMETRY_KINDS]

    def srid_of(self, name: str) -> int | None:
        """The SRID every value of a field of geometries states (EWKT, EWKB), if one."""
        srids = self._srids[name]
        return next(iter(srids)) if len(srids) == 1 and 0 not in srids else None

    def sql_types(self) -> dict[str, str]:
        """Each field's column type: text for a field of no values, or of mixed kinds."""
        return {name: _sql_type(kinds) for name, kinds in self._kinds.items()}

    def _batch_kinds(self, values: set[str]) -> set[str]:
        """The kinds of a batch's distinct values: all of one shape in one match (the
        usual case), else value by value until one is text."""
        joined = "\n".join(values)
        shape = next((k for k, p in self._patterns.all_of.items() if p.fullmatch(joined)), None)
        if shape == "integer" and max(map(len, values)) <= _INT4_DIGITS:
            return {"integer"}
        if shape in ("boolean", "wkt"):
            return {shape}
        if shape == "float" and _finite(joined, values):
            return {"float"} if _float8_keeps(values) else {"float", "exact"}
        kinds: set[str] = set()
        for value in values:
            kinds.add(self._kind(value))
            if _TEXT in kinds:
                break
        return kinds

    def _kind(self, value: str) -> str:
        match = self._patterns.one.fullmatch(value)
        kind = match.lastgroup if match is not None else None
        if kind is None:
            return _TEXT
        if kind == "integer":
            return _integer_kind(int(value))
        if not _readable(kind, value):
            return _TEXT
        return "exact" if kind == "float" and not _float8_keeps([value]) else kind


def _sql_type(kinds: set[str]) -> str:
    """The column type of a field whose values came in these kinds: numbers in the
    narrowest type that holds them all, digit for digit."""
    if not kinds or not kinds <= _NUMBER_KINDS:
        return _TYPES.get(frozenset(kinds), _TEXT)
    if kinds == {"integer"}:
        return "integer"
    if kinds <= {"integer", "bigint", "wide"}:
        return "bigint"
    return "numeric" if kinds & {"wide", "exact"} else "double precision"


def _float8_keeps(values: Iterable[str]) -> bool:
    """Whether decimals read back from float8 as written, every digit (a float's shortest
    form, as Python and PostgreSQL print it, or that with trailing zeros)."""
    texts = [v.replace(",", ".") for v in values if len(v) > _FLOAT8_DIGITS]
    shortest = list(map(repr, map(float, texts)))
    return shortest == texts or all(map(_same_number, shortest, texts))


def _same_number(shortest: str, text: str) -> bool:
    if shortest == text or shortest in ("inf", "-inf", "nan"):
        return True
    return decimal.Decimal(shortest) == decimal.Decimal(text)


def _finite(joined: str, values: set[str]) -> bool:
    """Whether values of the float shape are all within double precision's range: no
    exponent, and digits enough for none to overflow."""
    return "e" not in joined and "E" not in joined and max(map(len, values)) <= _FINITE_DIGITS


def _integer_kind(number: int) -> str:
    for kind, type_name in (("integer", "int4"), ("bigint", "int8")):
        low, high = INTEGER_RANGES[type_name]
        if low <= number <= high:
            return "wide" if abs(number) > _FLOAT8_WHOLE else kind
    return _TEXT  # an identifier of more digits than bigint holds


def _readable(kind: str, value: str) -> bool:
    """Whether the load reads the value of that shape as its kind (a 13th month, a float
    beyond double precision's range are not)."""
    try:
        if kind == "float":
            number = float(value.replace(",", "."))
            return math.isfinite(number) or "n" in value.lower()  # nan, inf: as written
        if kind in ("date", "timestamp", "timestamptz"):
            dt.datetime.fromisoformat(value)
        elif kind == "time":
            dt.time.fromisoformat(value)
        elif kind == "hexwkb":  # a hex identifier is no geometry of a known type
            return not wkb_type_name(bytes.fromhex(value[:10])).startswith("Unknown")
    except ValueError:
        return False
    return True
