"""The checklist ``geosession doctor`` is made of: a :class:`Check` for each line, and
what every check function is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection

from geosession.settings import DatabaseSettings

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    """What to do, with the SQL to run where there is one (all of ``statements``)."""
    statements: tuple[str, ...] = ()
    """The SQL of the fix, a statement (or a pair that goes together) for each object."""

    @classmethod
    def with_sql(
        cls, name: str, status: Status, detail: str, statements: Sequence[str], advice: str = ""
    ) -> Check:
        """A check whose fix is SQL to run, one statement per object it names."""
        fix = " ".join([advice, *statements]) if advice else " ".join(statements)
        return cls(name, status, detail, fix, tuple(statements))

    @property
    def advice(self) -> str:
        """What the fix says besides its statements (:meth:`with_sql` puts them last)."""
        return self.fix.removesuffix(" ".join(self.statements)).strip()


LISTED = 10
"""Objects a result names before it counts the rest (the fix's statements name all)."""


def listed(names: Sequence[str], separator: str = ", ") -> str:
    """The first :data:`LISTED` names, and how many more there are."""
    if len(names) <= LISTED:
        return separator.join(names)
    return f"{separator.join(names[:LISTED])} and {len(names) - LISTED} more"


@dataclass(frozen=True)
class CheckContext:
    """What the checks are asked to look at: the settings, the schemas (None: all),
    and how long a query or an idle transaction may take before it is named."""

    settings: DatabaseSettings
    schemas: list[str] | None
    long_running: float
    idle_after: float


CheckFunction = Callable[[Connection, CheckContext], Check]
