"""A progress bar on stderr for long ingests (off for small or non-interactive runs).

Rows written advance the first line; after a load into an empty table, each deferred
index build and the ANALYZE get a line of their own, in table blocks (or tuples) as the
server reports them, so the minutes a large GiST build takes are not a silent wait at 100 %.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from geosession.ingest.report import IngestReport

Count = Callable[[Callable[[], bool]], int | None]
"""A count of a source's rows that stops when its argument says so (:mod:`.row_estimate`)."""

Build = tuple[str, str, int, int]
"""Server work after a load as a line of the bar: what (``index <name>``, ``analyze``),
the server's phase, and the work done and in all (table blocks, or tuples)."""


class _Counting:
    """``count`` run on a thread of its own; ``found`` is given what it finds. Closing it
    tells the count to give up, and joins the thread."""

    def __init__(self, count: Count, found: Callable[[int], None]) -> None:
        self._closing = threading.Event()

        def run() -> None:
            total = count(self._closing.is_set)
            if total is not None:
                found(total)

        self._thread = threading.Thread(target=run, name="geosession-ingest-count")
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._thread.join()


class Progress:
    """Advances by source rows written; shows rows/s and rejects as it goes. Rows an
    earlier run of the ingest id committed (``report.already_committed``) are not in its
    total: this run skips them."""

    def __init__(
        self, enabled: bool, total: int | None, report: IngestReport, console: Console | None = None
    ) -> None:
        self.report = report
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._builds: dict[str, TaskID] = {}
        self._final = False  # completed() set the total: a count comes too late
        self._lock = threading.Lock()
        self._counting: _Counting | None = None
        if enabled:
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
            )
            self._task = self._bar.add_task(
                f"[bold]ingest[/bold] {report.target}", total=self._left(total), note="0 rejected"
            )

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def total_from(self, count: Count) -> None:
        """Gives a bar without a total the one ``count`` finds (an estimate), counted on a
        thread while the load runs, which the bar's exit stops and joins."""
        if self._bar is None or self._of(self._task).total is not None:
            return

        def found(total: int) -> None:
            with self._lock:
                if not self._final:
                    self._set_total(self._left(total))

        self._counting = _Counting(count, found)

    def completed(self) -> None:
        """The load read every row: the bar is full, whatever the estimate said."""
        with self._lock:
            self._final = True
            if self._bar is not None:
                self._set_total(self._of(self._task).completed)

    def _left(self, total: int | None) -> int | None:
        return None if total is None else max(0, total - self.report.already_committed)

    def _of(self, task: TaskID | None) -> Task:
        assert self._bar is not None
        return next(t for t in self._bar.tasks if t.id == task)

    def _set_total(self, total: float | None) -> None:
        assert self._bar is not None and self._task is not None
        self._bar.update(self._task, total=total)

    def advance(self, rows: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=rows, note=f"{len(self.report.rejected)} rejected")

    def show_builds(self, builds: list[Build]) -> None:
        """One line per index build or ANALYZE the server reports; those it no longer
        reports are done."""
        if self._bar is None:
            return
        for what, phase, done, total in builds:
            if what not in self._builds:
                self._builds[what] = self._bar.add_task(f"[bold]{what}[/bold]", total=None, note="")
            self._bar.update(self._builds[what], completed=done, total=total or None, note=phase)
        for what, task in self._builds.items():
            if what not in {build[0] for build in builds}:
                self._finish(task)

    def builds_done(self) -> None:
        for task in self._builds.values():
            self._finish(task)

    def _finish(self, task: TaskID) -> None:
        assert self._bar is not None
        total = self._of(task).total or 1
        self._bar.update(task, total=total, completed=total, note="done")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._counting is not None:
            self._counting.close()
        if self._bar is not None:
            self._bar.stop()


class Tally:
    """Rows of work done, and what each step advances (a line of :func:`counting`)."""

    def __init__(self, advance: Callable[[int], None] = lambda rows: None) -> None:
        self.rows = 0
        self._advance = advance

    def __call__(self, rows: int) -> None:
        self.rows += rows
        self._advance(rows)


@contextmanager
def counting(
    enabled: bool, description: str, console: Console | None = None, *, total: Count | None = None
) -> Iterator[Tally]:
    """A line counting the rows of work done before a load starts (reading a CSV for its
    fields' types), gone when it ends; the tally advances it by rows. With ``total``,
    the rows in all are counted on a thread, for a bar and the time left."""
    if not enabled:
        yield Tally()
        return
    line = RichProgress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f} rows"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
    )
    with line:
        task = line.add_task(description, total=None)
        counts = _Counting(total, lambda rows: line.update(task, total=rows)) if total else None
        try:
            yield Tally(lambda rows: line.advance(task, rows))
        finally:
            if counts is not None:
                counts.close()


Row = TypeVar("Row")


def counted(
    rows: Iterable[Row], advance: Callable[[int], None], every: int = 10_000
) -> Iterator[Row]:
    """``rows`` as they come, advancing a :func:`counting` line by each ``every`` of them
    (a line redrawn per row would cost more than reading it)."""
    done = 0
    for done, row in enumerate(rows, start=1):
        yield row
        if done % every == 0:
            advance(every)
    advance(done % every)
