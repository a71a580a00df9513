"""The read loop without I/O: what to send next and what a received batch becomes.

The sync and async shells differ only in how they execute statements; both drive a
:class:`ReadLoop` (and :func:`make_plan` for the describe step), so the algorithm exists
once: cursor mode sends FETCHes on a declared cursor, keyset mode sends one page select
after the last key seen, and both stop at the first short batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Select, Subquery

from geosession.errors import PostGISNotInstalled
from geosession.read.decode import BatchSizer, Rows, batch_decoder
from geosession.read.plan import ReadOptions, describe_columns
from geosession.read.query import DeclareCursor, ReadPlan, fetch_sql


def spatial_types(rows: Rows) -> dict[int, Any]:
    """PostGIS's type OIDs in this database; PostGISNotInstalled when it has none."""
    found = {int(oid): str(name) for oid, name in rows}
    if not found:
        raise PostGISNotInstalled(
            "PostGIS is not installed in this database (there is no geometry type): connect "
            "as its owner or a superuser and run CREATE EXTENSION postgis;"
        )
    return found


def make_plan(
    options: ReadOptions,
    description: Sequence[Sequence[Any]],
    spatial_rows: Rows,
    *,
    typmods: Sequence[int | None] | None = None,
    binary_check: Callable[[int], bool] | None = None,
    timezone: dt.tzinfo = dt.UTC,
) -> ReadPlan:
    """The plan from the describe step: binary geometry only where the driver loads it."""
    columns = describe_columns(description, spatial_types(spatial_rows), typmods, binary_check)
    return ReadPlan.make(options, columns, geometry_bytea=binary_check is None, timezone=timezone)


class ReadLoop:
    """Batch after batch of one read: the next statement, then the decoded rows."""

    def __init__(self, plan: ReadPlan, source: Subquery) -> None:
        self.plan = plan
        self._source = source
        self._decode = batch_decoder(plan)
        self._sizer = BatchSizer.for_plan(plan)
        self._after: Any = ReadPlan.START
        self._size = 0
        self.done = False
        self.rows_read = 0

    @property
    def paged(self) -> bool:
        return self.plan.key_index is not None

    def declare(self) -> DeclareCursor:
        """Cursor mode: the DECLARE to run once, in the read's transaction."""
        return DeclareCursor(self.plan.statement(self._source), self.plan.cursor_name)

    def request(self) -> str | Select[Any]:
        """The next FETCH (cursor mode) or page select (keyset mode)."""
        self._size = self._sizer.next()
        if self.paged:
            return self.plan.statement(self._source, after=self._after, limit=self._size)
        return fetch_sql(self._size, self.plan.cursor_name)

    def receive(self, rows: Rows) -> list[Any]:
        """Decodes the rows the last request returned; a short batch ends the read."""
        self.done = len(rows) < self._size
        if not rows:
            return []
        self._sizer.observe(rows)
        if self.paged:
            self._after = rows[-1][self.plan.key_position]
        self.rows_read += len(rows)
        return self._decode(rows)
