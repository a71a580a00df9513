"""A progress bar on stderr for long ingests (off for small or non-interactive runs)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from geosession.ingest.report import IngestReport


class Progress:
    """Advances by source rows written; shows rows/s and rejects as it goes."""

    def __init__(self, enabled: bool, total: int | None, report: IngestReport) -> None:
        self.report = report
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._bar = RichProgress(
                TextColumn("[bold]ingest[/bold] {task.fields[target]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rejected]} rejected"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task("", total=total, target=report.target, rejected=0)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, rows: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=rows, rejected=len(self.report.rejected))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
