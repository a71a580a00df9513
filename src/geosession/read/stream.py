"""Streaming reads on the sync engine: a server-side cursor, or keyset pages.

Cursor mode (the default) holds one pooled connection and one read-only transaction for
as long as the caller iterates: the program itself is the consumer, so it decides how
long that is. Keyset mode (``pages_by=``) reads one page per short transaction and holds
no connection between pages: use it when the consumer is slow or remote (an HTTP client).

Either way the connection goes back to the pool, rolled back, the moment iteration ends:
normally, by ``break``, by an exception in the loop, by ``close()`` or the ``with``
block's end, or when the abandoned iterator is garbage collected.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from itertools import chain, count
from typing import Any, Self, TypeVar
from zoneinfo import ZoneInfo

from psycopg.pq import Format
from sqlalchemy import Connection, event

from geosession.errors import GeoSessionError
from geosession.read.decode import Rows
from geosession.read.infinity import all_rows
from geosession.read.loop import ReadLoop, make_plan, spatial_types
from geosession.read.plan import ReadOptions
from geosession.read.query import SPATIAL_TYPES_SQL, ReadPlan
from geosession.read.rerun import read_again_after
from geosession.read.source import (
    as_subquery,
    describe_statement,
    key_lookup,
    paged_options,
    with_key,
)
from geosession.read.typmods import typmod_lookup
from geosession.settings import set_local
from geosession.srs import spatial_refs_sql

Connect = Callable[[], AbstractContextManager[Connection]]
_T = TypeVar("_T")

_LEFT_OPEN: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()
"""The iterations still open, of every stream."""


@atexit.register
def _close_left_open() -> None:
    """Iterations a script left open are closed as it exits, before the interpreter tears
    its modules down: closed by the garbage collector during that teardown, their cleanup
    (rollback, the connection's return) met modules already gone and printed tracebacks."""
    for generator in list(_LEFT_OPEN):
        with contextlib.suppress(Exception):  # one running in another thread, still
            generator.close()


class GeometryStream:
    """An iterable over the rows of one query, read in bounded memory.

    Iterate it (rows), or call :meth:`batches` (lists of rows, for vectorized work).
    Each iteration runs the query anew. ``with`` closes every iteration still open.
    """

    def __init__(
        self,
        connect: Connect,
        statement: Any,
        options: ReadOptions,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self._connect = connect
        self._source = as_subquery(statement, params)
        self.options = paged_options(self._source.element, options)
        self.plan: ReadPlan | None = None
        """Columns and choices of the latest iteration (set before its first row)."""
        self.rows_read = 0
        """Rows fetched so far, over every iteration."""
        self._open: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()

    def __iter__(self) -> Iterator[Any]:
        # chain (C) rather than a generator: no Python frame per row; dropping the chain
        # drops the batches generator, which closes it at once
        return chain.from_iterable(self.batches())

    def batches(self) -> Iterator[list[Any]]:
        """Lists of rows as fetched (one FETCH or one page each)."""
        return self._track(self._batches())

    def close(self) -> None:
        """Ends every iteration still open: cursor closed, transaction rolled back."""
        for generator in list(self._open):
            generator.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _track(self, generator: Generator[_T, None, None]) -> Generator[_T, None, None]:
        self._open.add(generator)
        _LEFT_OPEN.add(generator)
        return generator

    def _batches(self) -> Generator[list[Any], None, None]:
        connected = False
        for attempt in count(1):
            delivered = False
            try:
                with read_transaction(self._connect, self.options.transaction_settings) as conn:
                    connected = True
                    loop = ReadLoop(self._describe(conn), self._source)
                    if not loop.paged:
                        for batch in self._cursor_batches(conn, loop):
                            delivered = True
                            yield batch
                        return
                break
            except GeoSessionError as error:
                delay = read_again_after(
                    error, attempt, connected=connected, delivered=delivered, what="the read"
                )
            time.sleep(delay)
        yield from self._page_batches(loop)  # the first page opens its own transaction

    def _cursor_batches(self, connection: Connection, loop: ReadLoop) -> Iterator[list[Any]]:
        connection.execute(loop.declare())
        while not loop.done:
            batch = loop.receive(fetch(connection, loop.request()))
            self.rows_read += len(batch)
            if batch:
                yield batch

    def _page_batches(self, loop: ReadLoop) -> Iterator[list[Any]]:
        while not loop.done:
            rows = self._page(loop.request())
            # the connection is back in the pool while the caller works on the page
            batch = loop.receive(rows)
            self.rows_read += len(batch)
            if batch:
                yield batch

    def _page(self, statement: Any) -> Rows:
        """One page's rows, in a transaction of its own, read again if it is lost."""
        for attempt in count(1):
            try:
                with read_transaction(self._connect, self.options.transaction_settings) as conn:
                    return fetch(conn, statement)
            except GeoSessionError as error:
                delay = read_again_after(
                    error, attempt, connected=True, delivered=False, what="a page"
                )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _describe(self, connection: Connection) -> ReadPlan:
        lookup_key = key_lookup(self._source, self.options)
        if lookup_key is not None:
            self.options = with_key(self.options, fetch(connection, lookup_key))
        result = connection.execute(describe_statement(self._source))
        try:
            cursor = result.cursor
            spatial_rows = list(fetch(connection, SPATIAL_TYPES_SQL))
            lookup = typmod_lookup(
                cursor.description,
                self._source,
                spatial_types(spatial_rows),
                getattr(cursor, "pgresult", None),
            )
            plan = make_plan(
                self.options,
                cursor.description,
                spatial_rows,
                typmods=lookup.complete(
                    fetch(connection, lookup.query) if lookup.query is not None else []
                ),
                binary_check=_binary_check(connection),
                timezone=session_timezone(connection),
            )
        finally:
            result.close()
        if plan.srids:
            plan = plan.with_spatial_refs(fetch(connection, spatial_refs_sql(plan.srids)))
        self.plan = plan
        return plan


@contextmanager
def read_transaction(
    connect: Connect, local: Mapping[str, str] | None = None
) -> Iterator[Connection]:
    """A pooled connection in a READ ONLY transaction, rolled back and returned at exit;
    ``local``: settings for the transaction alone (the read's statement_timeout).

    With psycopg 3, results come in binary: geometries arrive as EWKB bytes with no
    text encoding on the server nor decoding here.
    """
    with connect() as connection:
        if connection.dialect.driver == "psycopg":
            event.listen(connection, "before_cursor_execute", _binary_results)
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        if local:
            connection.execute(*set_local(local))
        try:
            yield connection
        finally:
            if connection.in_transaction() and not connection.invalidated:
                connection.rollback()


def fetch(connection: Connection, statement: Any) -> Rows:
    """All rows of ``statement`` as the driver returns them (no SQLAlchemy Row objects)."""
    if isinstance(statement, str):
        result = connection.exec_driver_sql(statement)
    else:
        result = connection.execute(statement)
    return all_rows(result)


def _binary_results(connection: Any, cursor: Any, *args: Any) -> None:
    cursor.format = Format.BINARY


def _binary_check(connection: Connection) -> Callable[[int], bool] | None:
    """Whether psycopg 3 loads a type OID in binary (None: text-protocol driver)."""
    if connection.dialect.driver != "psycopg":
        return None
    adapters = connection.connection.driver_connection.adapters  # type: ignore[union-attr]
    return lambda oid: adapters.get_loader(oid, Format.BINARY) is not None


def session_timezone(connection: Connection) -> dt.tzinfo:
    """The session's TimeZone, which the driver gives timestamptz values in (else UTC)."""
    driver = connection.connection.driver_connection
    if connection.dialect.driver == "psycopg":
        return driver.info.timezone  # type: ignore[union-attr,no-any-return]
    try:  # psycopg2 reports it too, as a name
        return ZoneInfo(driver.get_parameter_status("TimeZone"))  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):  # unknown to Python, or no such report
        return dt.UTC
