"""Interval text read as PostgreSQL reads it: months, days and microseconds kept apart.

psycopg sends an interval from a timedelta, which has no months ("1 mon" would become 30
days), and has no parser for interval input. This reads the forms a CSV or a file written
by PostgreSQL holds: its own output (``1 year 2 mons 3 days 04:05:06.5``, ``-1 days
+02:00:00``, ``@ 1 day 2 hours ago``), units in words (``90 minutes``, ``1.5 days``,
``1h30m``), SQL's year-month (``1-2``) and ISO 8601 durations (``P1Y2M3DT4H5M6S``, and
the alternative ``P0001-02-03T04:05:06``), with PostgreSQL's rules for fractions (a
fraction of a month is days of 30, of a day hours of 24) and for a number without a unit
(seconds, alone or last). The result is sent in interval's binary form, so ``1 mon``
stays one month.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from decimal import Decimal
from typing import NamedTuple

_DAY_US = 86_400_000_000
_UNIT_WORDS = (
    (("microsecond", "microseconds", "us", "usec", "usecs"), "us", 1),
    (("millisecond", "milliseconds", "ms", "msec", "msecs"), "us", 1_000),
    (("second", "seconds", "s", "sec", "secs"), "us", 1_000_000),
    (("minute", "minutes", "m", "min", "mins"), "us", 60_000_000),
    (("hour", "hours", "h", "hr", "hrs"), "us", 3_600_000_000),
    (("day", "days", "d"), "days", 1),
    (("week", "weeks", "w"), "days", 7),
    (("month", "months", "mon", "mons"), "months", 1),
    (("year", "years", "y", "yr", "yrs"), "months", 12),
    (("decade", "decades"), "months", 120),
    (("century", "centuries"), "months", 1_200),
    (("millennium", "millennia", "millenniums"), "months", 12_000),
)
_UNITS = {word: (field, Decimal(size)) for words, field, size in _UNIT_WORDS for word in words}
"""Unit word -> (field, how many of the field's unit one is): months, days or us."""

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_QUANTITY = re.compile(rf"({_NUMBER})\s*([a-z]+)")
_SECONDS = re.compile(_NUMBER)
"""A number without a unit: days before a time ("1 02:00"), seconds when alone or last."""
_CLOCK = re.compile(r"([+-]?)(\d+):(\d{1,2})(?::(\d{1,2}(?:\.\d*)?))?")
_YEAR_MONTH = re.compile(r"([+-]?)(\d+)-(\d+)")
"""SQL's year-month interval: "1-2" is 1 year 2 months."""
_Form = tuple[re.Pattern[str], tuple[str, ...]]
_ISO_DATE_FORMS: tuple[_Form, _Form] = (
    (
        re.compile(rf"(?:({_NUMBER})y)?(?:({_NUMBER})m)?(?:({_NUMBER})w)?(?:({_NUMBER})d)?"),
        ("year", "month", "week", "day"),
    ),
    (re.compile(r"(\d+)(?:-(\d+)(?:-(\d+))?)?"), ("year", "month", "day")),
)
_ISO_TIME_FORMS: tuple[_Form, _Form] = (
    (
        re.compile(rf"(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?"),
        ("hour", "minute", "second"),
    ),
    (re.compile(r"(\d+)(?::(\d+)(?::(\d+(?:\.\d*)?))?)?"), ("hour", "minute", "second")),
)
"""An ISO 8601 duration part's two forms: by designator (1Y2M3D, 4H5M6S), and the
alternative (0001-02-03, 04:05:06); each with the units of its numbers."""


class Interval(NamedTuple):
    """An interval's three parts, as PostgreSQL keeps them."""

    months: int
    days: int
    microseconds: int

    @classmethod
    def of(cls, delta: dt.timedelta) -> Interval:
        """A timedelta's days as days, the rest as time (what psycopg would send)."""
        return cls(0, delta.days, delta.seconds * 1_000_000 + delta.microseconds)

    def binary(self) -> bytes:
        """interval_recv's format: microseconds, days, months."""
        return struct.pack(">qii", self.microseconds, self.days, self.months)

    def timedelta(self) -> dt.timedelta:
        """As a timedelta, for what takes only those (the elements of an interval[])."""
        if self.months:
            raise ValueError("months cannot be sent in an interval[] element; give days")
        return dt.timedelta(days=self.days, microseconds=self.microseconds)


def parse_interval(text: str) -> Interval:
    """``text`` as PostgreSQL's interval input reads it; ValueError when it cannot."""
    words = " ".join(text.lower().split())
    if words.startswith("p"):
        return _iso(words)
    negate = words.endswith(" ago")
    words = words.removesuffix(" ago").removeprefix("@").strip()
    if not words:
        raise ValueError("empty")
    parts = [Decimal(0), Decimal(0), Decimal(0)]  # months, days, us
    position, clocked = 0, False
    while position < len(words):
        if words[position] in " ,":
            position += 1
            continue
        clock = _CLOCK.match(words, position)
        if clock is not None and _ends(words, clock.end()):
            parts[2] += _clock_us(clock)
            position, clocked = clock.end(), True
            continue
        year_month = _YEAR_MONTH.match(words, position)
        if year_month is not None and _ends(words, year_month.end()):
            sign, years, months = year_month.groups()
            parts[0] += (-1 if sign == "-" else 1) * (int(years) * 12 + int(months))
            position = year_month.end()
            continue
        quantity = _QUANTITY.match(words, position)
        if quantity is None or quantity.group(2) not in _UNITS or not _follows(words, quantity):
            position = _unitless(words, position, parts, clocked=clocked)
            continue
        _add(parts, Decimal(quantity.group(1)), quantity.group(2))
        position = quantity.end()
    interval = _settled(parts)
    return Interval(*(-part for part in interval)) if negate else interval


def _unitless(words: str, position: int, parts: list[Decimal], *, clocked: bool) -> int:
    """Adds the number without a unit at ``position``: days before a time ("1 02:00", as
    SQL writes them), else seconds when it is alone or last (not after a time); returns
    where it ends."""
    bare = _SECONDS.match(words, position)
    if bare is None or not _ends(words, bare.end()):
        raise ValueError(f"cannot read {words[position:]!r}")
    after = _CLOCK.match(words, bare.end() + 1)
    if after is not None and _ends(words, after.end()) and " day" not in words:
        _add(parts, Decimal(bare.group()), "day")
    elif bare.end() == len(words) and not clocked:
        parts[2] += Decimal(bare.group()) * 1_000_000
    else:
        raise ValueError(f"a number without a unit in {words!r}")
    return bare.end()


def _ends(words: str, end: int) -> bool:
    return end == len(words) or words[end] in " ,"


def _follows(words: str, quantity: re.Match[str]) -> bool:
    """Whether a unit's word ends where the next field may start: a blank, the end, or
    the next number of "1h30m"."""
    end = quantity.end()
    return _ends(words, end) or words[end].isdigit()


def _clock_us(match: re.Match[str]) -> Decimal:
    sign, hours, minutes, seconds = match.groups()
    value = (Decimal(hours) * 60 + Decimal(minutes)) * 60 + Decimal(seconds or 0)
    return (-value if sign == "-" else value) * 1_000_000


def _add(parts: list[Decimal], number: Decimal, unit: str) -> None:
    """Adds ``number`` of ``unit``; a fraction cascades down as PostgreSQL's does."""
    field, size = _UNITS[unit]
    amount = number * size
    if field == "months":
        whole = int(amount)
        parts[0] += whole
        amount = (amount - whole) * 30
        field = "days"
    if field == "days":
        whole = int(amount)
        parts[1] += whole
        amount = (amount - whole) * _DAY_US
    parts[2] += amount


def _settled(parts: list[Decimal]) -> Interval:
    return Interval(int(parts[0]), int(parts[1]), int(parts[2].to_integral_value()))


def _iso(words: str) -> Interval:
    """P, then the date's fields by designator (1Y2M3D) or in the alternative form
    (0001-02-03), then T and the time's (4H5M6S, or 04:05:06)."""
    date, _, time = words[1:].partition("t")
    fields = [*_iso_fields(date, *_ISO_DATE_FORMS), *_iso_fields(time, *_ISO_TIME_FORMS)]
    if not fields and "t" not in words:  # "PT" is no time at all, "P" nothing
        raise ValueError(f"not an ISO 8601 duration: {words!r}")
    parts = [Decimal(0), Decimal(0), Decimal(0)]
    for number, unit in fields:
        _add(parts, Decimal(number), unit)
    return _settled(parts)


def _iso_fields(text: str, designated: _Form, alternative: _Form) -> list[tuple[str, str]]:
    """The (number, unit) pairs of an ISO 8601 duration's date or time part."""
    if not text:
        return []
    pattern, units = designated
    match = pattern.fullmatch(text)
    if match is None or not any(match.groups()):
        pattern, units = alternative
        match = pattern.fullmatch(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 duration part: {text!r}")
    pairs = zip(match.groups(), units, strict=True)
    return [(number, unit) for number, unit in pairs if number is not None]
