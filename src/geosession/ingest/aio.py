"""db.async_ingest: the same ingest pipeline, awaited from an event loop.

The pipeline's COPY connections and GEOS work block, and run on threads anyway; so the
async version runs the same pipeline on a thread of its own and awaits it, and every
guarantee (ledger, retries, quarantine, resume) is the same code. An async iterable
source is pulled from the loop a batch of rows at a time. Cancelling the awaiting task
stops the ingest as Ctrl-C does: the chunks being written commit or roll back, committed
chunks stay, a rerun with the same ingest_id resumes, and the task's CancelledError is
raised only once the pipeline has stopped and its connections are back in the pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any

from geosession.ingest.pipeline import Ingest
from geosession.ingest.report import IngestReport

PULL = 10_000
"""Rows taken from an async source per trip to the event loop."""


class AsyncRows:
    """An async iterable's rows, for the pipeline's reading thread.

    With a flush interval, the rows of a trip still under way are also handed over every
    half interval, so a source that trickles is not held until PULL rows have come.
    """

    def __init__(
        self,
        source: AsyncIterable[Any],
        loop: asyncio.AbstractEventLoop,
        flush_interval: float | None = None,
    ) -> None:
        self.rows: AsyncIterator[Any] = aiter(source)
        self.loop = loop
        self.handover = flush_interval / 2 if flush_interval else None
        self.taken: list[Any] = []  # rows of the trip under way (touched on the loop only)
        self.stopped = False
        self.pending: concurrent.futures.Future[Any] | None = None
        self.trip: asyncio.Task[Any] | None = None  # the loop's side of pending

    @classmethod
    def of(
        cls, source: Any, loop: asyncio.AbstractEventLoop, flush_interval: float | None = None
    ) -> Any:
        """``source`` wrapped when it is an async iterable; any other source as it is."""
        return cls(source, loop, flush_interval) if hasattr(source, "__aiter__") else source

    def __iter__(self) -> Iterator[Any]:
        while not self.stopped:
            if self.pending is None:
                self.pending = asyncio.run_coroutine_threadsafe(self._take(), self.loop)
                if self.stopped:  # stop() came between the check and the trip
                    self.pending.cancel()
            try:
                taken, more, error = self.pending.result(timeout=self.handover)
            except concurrent.futures.CancelledError:
                return  # stopped while the source was quiet
            except TimeoutError:  # the trip goes on: pass on what it has so far
                yield from asyncio.run_coroutine_threadsafe(self._handed(), self.loop).result()
                continue
            self.pending = None
            yield from taken
            if error is not None:
                raise error
            if not more:
                return

    async def _take(self) -> tuple[list[Any], bool, Exception | None]:
        """Up to PULL rows; whether more may follow; the source's error, after its rows."""
        self.trip = asyncio.current_task()
        more, error = True, None
        try:
            while len(self.taken) < PULL:
                row = await anext(self.rows)  # before naming the list: a handover swaps it
                self.taken.append(row)
        except StopAsyncIteration:
            more = False
        except Exception as exc:  # the rows before it still load, as with a generator
            more, error = False, exc
        return await self._handed(), more, error

    async def _handed(self) -> list[Any]:
        """The rows taken and not yet handed over (on the loop, so never twice)."""
        taken, self.taken = self.taken, []
        return taken

    def stop(self) -> None:
        """Stops pulling rows, also from a source that is waiting for its next row."""
        self.stopped = True
        if self.pending is not None:
            self.pending.cancel()

    async def aclose(self) -> None:
        """Closes an async generator that the ingest stopped reading early (after the trip
        still waiting for its next row: a running generator cannot be closed)."""
        self.stop()
        if self.trip is not None and not self.trip.done():
            self.trip.cancel()
            await asyncio.wait({self.trip})
        close = getattr(self.rows, "aclose", None)
        if close is not None:
            await close()


async def run_awaited(ingest: Ingest, rows: Any) -> IngestReport:
    """Runs the ingest on a thread of its own (not the loop's executor: a load can take
    hours); when the await is cancelled, stops the ingest and its async source, waits
    for it to stop, then raises the CancelledError (with ``ingest_report``)."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[IngestReport] = loop.create_future()

    def run() -> None:
        try:
            report = ingest.run()
        except BaseException as error:  # Cancelled after a cancel; anything else is raised
            loop.call_soon_threadsafe(_settle, outcome, None, error)
        else:
            loop.call_soon_threadsafe(_settle, outcome, report, None)

    thread = threading.Thread(target=run, name="geosession-ingest", daemon=True)
    thread.start()
    try:
        return await asyncio.shield(outcome)
    except asyncio.CancelledError as cancelled:
        ingest.cancel()
        if isinstance(rows, AsyncRows):
            rows.stop()
        while not outcome.done():  # a second cancel does not leave the pipeline running
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({outcome})
        if not outcome.cancelled():
            outcome.exception()  # retrieved: the Cancelled it raised is expected
        cancelled.ingest_report = ingest.report  # type: ignore[attr-defined]  # how far it got
        raise
    finally:
        thread.join()  # it has settled the outcome: nothing is left for it to do


def _settle(
    outcome: asyncio.Future[IngestReport], report: IngestReport | None, error: BaseException | None
) -> None:
    if outcome.done():
        return
    if error is not None:
        outcome.set_exception(error)
    else:
        assert report is not None
        outcome.set_result(report)
