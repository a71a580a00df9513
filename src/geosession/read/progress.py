"""The export's progress on stderr: a count of features written (with a bar when the
total is known), cleared when the export ends so only the final line stays."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from geosession.errors import ConfigurationError

Advance = Callable[[int], None]
"""Called with the features written so far."""


@contextmanager
def export_progress(total: int | None = None, console: Console | None = None) -> Iterator[Advance]:
    """A transient bar of features written, out of ``total`` when the total is known."""
    columns = [
        SpinnerColumn(),
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("features"),
        TimeElapsedColumn(),
    ]
    bar = Progress(*columns, console=console or Console(stderr=True), transient=True)
    with bar:
        task = bar.add_task("export", total=total)

        def advance(done: int) -> None:
            if total is not None and done > total:  # the estimate was low
                bar.update(task, total=None)
            bar.update(task, completed=done)

        yield advance


@contextmanager
def progress_callback(progress: Any) -> Iterator[Advance | None]:
    """What ``progress=`` asks for: True, a bar on stderr; False or None, nothing; a
    function, called with the features written so far."""
    if progress is True:
        with export_progress() as advance:
            yield advance
    elif progress is None or progress is False:
        yield None
    elif callable(progress):
        yield progress
    else:
        raise ConfigurationError(
            f"progress={progress!r} is not True, False or a function; pass True for a "
            "progress bar on stderr, or a function called with the features written so far"
        )
