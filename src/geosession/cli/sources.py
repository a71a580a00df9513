"""What ``geosession ingest`` reads: files, named pipes and standard input (spooled to a
temporary file first, since the readers need a file)."""

import contextlib
import functools
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from geosession.errors import ConfigurationError

STDIN = Path("-")


def check_arguments(sources: list[Path], table: str) -> None:
    """The sources, then the table: a file given last (``ingest a.gpkg b.gpkg``, the
    table forgotten) is a usage error saying that the last argument is the table."""
    if table == str(STDIN) or Path(table).is_file():
        given = " ".join(shlex.quote(str(source)) for source in [*sources, Path(table)])
        raise typer.BadParameter(
            f"{table!r}, the last argument, is a file; the last argument names the table to "
            f"load into (geosession ingest {given} TABLE)",
            param_hint="TABLE",
        )
    _check_each_source(sources)


def _check_each_source(sources: list[Path]) -> None:
    """Every source is a file (or a File Geodatabase's folder), a named pipe, or -
    (standard input, once, and not a terminal)."""
    from geosession.ingest.files import is_source_file, refuse_url

    for source in sources:
        try:
            refuse_url(source)
        except ConfigurationError as error:
            raise typer.BadParameter(error.message, param_hint="SOURCES") from None
        if source == STDIN:
            if sources.count(STDIN) > 1:
                raise typer.BadParameter(
                    "- (standard input) can be read once", param_hint="SOURCES"
                )
            if sys.stdin.isatty():
                raise typer.BadParameter(
                    "- reads standard input, which is a terminal here: pipe the data in "
                    "(curl -sL URL | geosession ingest - TABLE) or name a file",
                    param_hint="SOURCES",
                )
        elif not (is_source_file(source) or is_pipe(source)):
            reason = "is a directory" if source.is_dir() else "does not exist"
            raise typer.BadParameter(f"file {str(source)!r} {reason}", param_hint="SOURCES")


def is_pipe(source: Path) -> bool:
    """A named pipe: bash's <(command), mkfifo's; read once, as standard input is."""
    return source.is_fifo()


@contextlib.contextmanager
def readable(source: Path, console: Any) -> Iterator[tuple[Path, str, str]]:
    """The file to read, its name for messages and what identifies its data."""
    from geosession.ingest.identity import file_identity

    if source != STDIN and not is_pipe(source):
        yield source, str(source), file_identity(source)
        return
    name = "standard input" if source == STDIN else str(source)
    with (
        tempfile.TemporaryDirectory(prefix="geosession-stdin-") as directory,
        contextlib.nullcontext(sys.stdin.buffer)
        if source == STDIN
        else source.open("rb") as stream,
    ):
        spooled = _spool_stream(console, stream, name, Path(directory))
        yield spooled.path, name, f"stdin|{spooled.digest}"


def _spool_stream(console: Any, stream: Any, name: str, directory: Path) -> Any:
    """Standard input or a pipe copied to a file in ``directory``, with a byte count while
    it comes."""
    from rich.progress import (
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    from geosession.ingest.spool import spool

    columns = (
        SpinnerColumn(),
        TextColumn(f"reading {name}"),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    try:
        with Progress(
            *columns, console=console, transient=True, disable=not console.is_terminal
        ) as progress:
            task = progress.add_task("stdin", total=None)
            advance = functools.partial(progress.advance, task)
            return spool(stream, directory, name=name, on_block=advance)
    except OSError as error:
        raise ConfigurationError(
            f"Could not copy {name} to {directory}: {error.strerror or error}. Point "
            "TMPDIR at a disk with room for the data, or save it to a file and name that"
        ) from error
