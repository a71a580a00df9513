"""The async twin of :mod:`geosession.read.stream`: the same plan and loop, awaited.

Only the I/O differs: statements are awaited on an ``AsyncConnection`` and geometries
always travel as ``ST_AsEWKB`` bytea (asyncpg has no binary codec for PostGIS types).
Use ``async with`` (or ``contextlib.aclosing``) for release at the exact point a loop is
left; an abandoned async iterator is closed by the event loop on its next turn.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from itertools import count
from typing import Any, Self, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

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

AsyncConnect = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
_T = TypeVar("_T")


class AsyncGeometryStream:
    """``async for row in db.async_stream(...)``; ``batches()`` for lists of rows."""

    def __init__(
        self,
        connect: AsyncConnect,
        statement: Any,
        options: ReadOptions,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self._connect = connect
        self._source = as_subquery(statement, params)
        self.options = paged_options(self._source.element, options)
        self.plan: ReadPlan | None = None
        self.rows_read = 0
        self._open: weakref.WeakSet[AsyncGenerator[Any, None]] = weakref.WeakSet()
        # Inside ``async with``, iterations are also held strongly: an async generator left
        # by ``break`` is otherwise finalized on a later turn of the event loop, and would
        # already be gone from the weak set when the block ends.
        self._held: list[AsyncGenerator[Any, None]] | None = None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._track(self._rows())

    def batches(self) -> AsyncIterator[list[Any]]:
        """Lists of rows as fetched (one FETCH or one page each)."""
        return self._track(self._batches())

    async def aclose(self) -> None:
        """Ends every iteration still open: cursor closed, transaction rolled back."""
        for generator in {*self._open, *(self._held or ())}:
            await generator.aclose()

    async def __aenter__(self) -> Self:
        self._held = []
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.aclose()
        finally:
            self._held = None

    def _track(self, generator: AsyncGenerator[_T, None]) -> AsyncGenerator[_T, None]:
        self._open.add(generator)
        if self._held is not None:
            self._held.append(generator)
        return generator

    async def _rows(self) -> AsyncGenerator[Any, None]:
        async with aclosing(self._batches()) as batches:  # closed with this generator
            async for batch in batches:
                for row in batch:
                    yield row

    async def _batches(self) -> AsyncGenerator[list[Any], None]:
        connected = False
        for attempt in count(1):
            delivered = False
            try:
                async with read_transaction(
                    self._connect, self.options.transaction_settings
                ) as connection:
                    connected = True
                    loop = ReadLoop(await self._describe(connection), self._source)
                    if not loop.paged:
                        cursor = self._cursor_batches(connection, loop)
                        async with aclosing(cursor):  # closed with this generator
                            async for batch in cursor:
                                delivered = True
                                yield batch
                        return
                break
            except GeoSessionError as error:
                delay = read_again_after(
                    error, attempt, connected=connected, delivered=delivered, what="the read"
                )
            await asyncio.sleep(delay)
        while not loop.done:
            batch = loop.receive(await self._page(loop.request()))
            self.rows_read += len(batch)
            if batch:
                yield batch

    async def _cursor_batches(
        self, connection: AsyncConnection, loop: ReadLoop
    ) -> AsyncGenerator[list[Any], None]:
        await connection.execute(loop.declare())
        while not loop.done:
            batch = loop.receive(await fetch(connection, loop.request()))
            self.rows_read += len(batch)
            if batch:
                yield batch

    async def _page(self, statement: Any) -> Rows:
        """One page's rows, in a transaction of its own, read again if it is lost."""
        for attempt in count(1):
            try:
                async with read_transaction(
                    self._connect, self.options.transaction_settings
                ) as connection:
                    return await fetch(connection, statement)
            except GeoSessionError as error:
                delay = read_again_after(
                    error, attempt, connected=True, delivered=False, what="a page"
                )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _describe(self, connection: AsyncConnection) -> ReadPlan:
        lookup_key = key_lookup(self._source, self.options)
        if lookup_key is not None:
            self.options = with_key(self.options, await fetch(connection, lookup_key))
        spatial_rows = await fetch(connection, SPATIAL_TYPES_SQL)
        result = await connection.execute(describe_statement(self._source))
        try:
            description = result.cursor.description
            lookup = typmod_lookup(
                description, self._source, spatial_types(spatial_rows), _pgresult(result)
            )
        finally:
            result.close()
        rows = await fetch(connection, lookup.query) if lookup.query is not None else []
        plan = make_plan(self.options, description, spatial_rows, typmods=lookup.complete(rows))
        if plan.srids:
            plan = plan.with_spatial_refs(await fetch(connection, spatial_refs_sql(plan.srids)))
        self.plan = plan
        return plan


@asynccontextmanager
async def read_transaction(
    connect: AsyncConnect, local: Mapping[str, str] | None = None
) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in a READ ONLY transaction, rolled back and returned at exit;
    ``local``: settings for the transaction alone (the read's statement_timeout)."""
    async with connect() as connection:
        await connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        if local:
            await connection.execute(*set_local(local))
        try:
            yield connection
        finally:
            if connection.in_transaction() and not connection.invalidated:
                await connection.rollback()


async def fetch(connection: AsyncConnection, statement: Any) -> Rows:
    """All rows of ``statement`` as the driver adapter returns them."""
    if isinstance(statement, str):
        result = await connection.exec_driver_sql(statement)
    else:
        result = await connection.execute(statement)
    return all_rows(result)


def _pgresult(result: Any) -> Any:
    """psycopg 3's result of the describe step, through SQLAlchemy's async adapter (its
    cursor's ``_cursor``: not public, so None where it is not there, as with asyncpg)."""
    return getattr(getattr(result.cursor, "_cursor", None), "pgresult", None)
