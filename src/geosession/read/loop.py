"""The read loop without I/O: what to send next and what a received batch becomes.

The sync and async shells differ only in how they execute statements; both drive a
:class:`ReadLoop` (and :func:`make_plan` for the describe step), so the algorithm exists
once: cursor mode sends FETCHes on a declared cursor, keyset mode sends one page select
after the last key seen, and both stop at the first short batch.

Keyset paging skips rows silently when its key is not unique (``WHERE key > last`` jumps
over the rest of the last key's rows) or NULL (no comparison reaches it). So each page asks
one row more than it returns, which shows a key repeated across the page's end, equal
neighbours show one within it, and after the last page one more select looks for a NULL
key; either ends the read with an error instead of a short result.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Select, Subquery

from geosession.errors import ConfigurationError, PostGISNotInstalled
from geosession.postgis_errors import INSTALL_POSTGIS, postgis_off_search_path
from geosession.read.decode import BatchSizer, Rows, batch_decoder
from geosession.read.plan import ReadOptions, describe_columns
from geosession.read.query import DeclareCursor, ReadPlan, fetch_sql


def spatial_types(rows: Rows) -> dict[int, Any]:
    """PostGIS's type OIDs in this database (:data:`~geosession.read.query.SPATIAL_TYPES_SQL`);
    PostGISNotInstalled when it has none, a ConfigurationError when they are in a schema
    the session does not search."""
    rows = list(rows)
    found = {int(oid): str(name) for oid, name in rows if oid is not None}
    if any(name in ("geometry", "geography") for name in found.values()):
        return found
    elsewhere = next((str(schema) for oid, schema in rows if oid is None), None)
    if elsewhere is not None:
        raise ConfigurationError(
            f"This session finds no geometry type: {postgis_off_search_path(elsewhere)}"
        )
    raise PostGISNotInstalled(
        f"PostGIS is not installed in this database (there is no geometry type): {INSTALL_POSTGIS}"
    )


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
        self._checking_nulls = False
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
        if self._checking_nulls:
            return self.plan.null_keys(self._source)
        if self.paged:  # one row more: a key repeated across the page's end shows
            return self.plan.statement(self._source, after=self._after, limit=self._size + 1)
        return fetch_sql(self._size, self.plan.cursor_name)

    def receive(self, rows: Rows) -> list[Any]:
        """Decodes the rows the last request returned; a short batch ends the read."""
        if self._checking_nulls:
            if rows:
                raise self._unpageable("is NULL in some rows, which no page reaches")
            self.done = True
            return []
        if self.paged:
            rows = self._page(rows)
        else:
            self.done = len(rows) < self._size
        if not rows:
            return []
        self._sizer.observe(rows)
        if self.paged:
            self._after = rows[-1][self.plan.key_position]
        self.rows_read += len(rows)
        return self._decode(rows)

    def _page(self, rows: Rows) -> Rows:
        """A page without its look-ahead row, its keys checked; the last page is followed
        by the NULL check."""
        keys = [row[self.plan.key_position] for row in rows]
        if None in keys:
            raise self._unpageable("is NULL in some rows, which no page reaches")
        for key, following in itertools.pairwise(keys):
            if key == following:
                shown = repr(key) if len(repr(key)) <= 60 else repr(key)[:57] + "..."
                raise self._unpageable(
                    f"is not unique: several rows have {shown}, and a page that ends at one "
                    "would skip the others"
                )
        if len(rows) <= self._size:
            self._checking_nulls = True
        return rows[: self._size]

    def _unpageable(self, why: str) -> ConfigurationError:
        name = self.plan.options.pages_by
        after = "<" if self.plan.options.pages_descending else ">"
        return ConfigurationError(
            f"pages_by={name!r} {why} (each page reads WHERE {name} {after} the last key): page by "
            "a unique column without NULLs, such as the primary key, or leave pages_by out "
            "(a server-side cursor reads every row)"
        )
