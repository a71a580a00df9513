"""GeoJSON output: RFC 7946 FeatureCollections and GeoJSON Lines, written as they stream.

PostGIS builds each Feature (``ST_AsGeoJSON(record)``: coordinates with up to 15
decimals, properties from the other columns with PostgreSQL's JSON rules: numerics as
exact JSON numbers, dates and timestamps as ISO 8601 strings, UUIDs as strings, json
as nested JSON). This side only joins the Features of a batch and writes them, so the
writer costs about what a hand-written ``ST_AsGeoJSON`` stream costs.

Files are written to a temporary file beside the destination and renamed at the end:
an export that fails leaves no partial file behind pretending to be complete. (There is no
fsync: it would cost about a tenth of an export's time, and guards only against the whole
machine losing power in the seconds after the rename.)
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from geosession.errors import ConfigurationError
from geosession.observe.leaks import capture_stack
from geosession.read.plan import ReadOptions
from geosession.urls import url_in

log = logging.getLogger("geosession.read")
_TOLD: set[tuple[str, int, str]] = set()
_TOLD_LOCK = threading.Lock()
_HEADER = b'{"type":"FeatureCollection","features":[\n'
_FOOTER = b"\n]}\n"
_EMPTY = b'{"type":"FeatureCollection","features":[]}\n'
_WRITE_BUFFER = 1 << 20

Progress = Callable[[int], None]
"""Called after each batch with the number of features written so far."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote; ``renamed``: the columns a Shapefile's 10-byte field names
    shortened (column: field)."""

    features: int
    path: str | None
    format: str
    renamed: Mapping[str, str] = field(default_factory=dict)
    crs: str | None = None
    """The CRS of a CSV's geometry column, which the file cannot hold (its ``.prj``'s)."""


class Framing:
    """The bytes around and between batches of Features: a FeatureCollection's header,
    separators and footer, or GeoJSON Lines' newlines. The sync and async chunk streams
    share it, so the document is built in one place."""

    def __init__(self, *, newline_delimited: bool) -> None:
        self.newline_delimited = newline_delimited
        self.started = False

    def chunk(self, batch: list[str]) -> bytes:
        """One batch's bytes; the first carries the collection's header."""
        if self.newline_delimited:
            return "\n".join(batch).encode() + b"\n"
        opening = b",\n" if self.started else _HEADER
        self.started = True
        return opening + ",\n".join(batch).encode()

    def end(self) -> bytes:
        """What closes the document (an empty collection when no batch came)."""
        if self.newline_delimited:
            return b""
        return _FOOTER if self.started else _EMPTY


def tell_if_held(options: ReadOptions, method: str) -> None:
    """A response read by a cursor holds its pooled connection and READ ONLY transaction
    until the client has read all of it: where ``pages_by="auto"`` found no key to page
    by, that is said once per place."""
    if options.pages_by is not None or not options.pages_by_auto:
        return
    frames = capture_stack(1)
    where = frames[0] if frames else ("an unknown place", 0, "?")
    with _TOLD_LOCK:
        if where in _TOLD:
            return
        _TOLD.add(where)
    log.warning(
        "db.%s at %s:%d in %s reads with a server-side cursor: its pooled connection and "
        "READ ONLY transaction are held until the client has read the whole response "
        "(a slow client holds them for minutes). No key to page by was found (a table's "
        "name, or a select of one table's rows with its one-column primary key, in no "
        "other order): pass pages_by= a unique, non-null column of the query",
        method,
        *where,
    )


def geojson_chunks(batches: Iterator[list[str]], *, newline_delimited: bool) -> Iterator[bytes]:
    """The bytes of a FeatureCollection (or GeoJSON Lines), one chunk per batch.

    Nothing is produced before the first batch is fetched, so a bad query raises before
    any output (an HTTP response can still report a proper error).
    """
    framing = Framing(newline_delimited=newline_delimited)
    for batch in batches:
        yield framing.chunk(batch)
    if last := framing.end():
        yield last


async def async_geojson_chunks(
    batches: AsyncIterator[list[str]], *, newline_delimited: bool
) -> AsyncIterator[bytes]:
    """The async twin of :func:`geojson_chunks`, over an async stream's batches."""
    framing = Framing(newline_delimited=newline_delimited)
    async for batch in batches:
        yield framing.chunk(batch)
    if last := framing.end():
        yield last


def write_chunks(
    chunks: Iterator[bytes], sink: IO[bytes], *, count: Callable[[], int], progress: Progress | None
) -> None:
    for chunk in chunks:
        sink.write(chunk)
        if progress is not None:
            progress(count())


@contextmanager
def atomic_output(dest: str | os.PathLike[str] | IO[bytes], suffix: str = "") -> Iterator[Any]:
    """A binary file to write: ``dest`` itself if it is a file object, else a temporary
    file beside the path ``dest``, renamed onto it only when the block succeeds."""
    if hasattr(dest, "write"):
        yield dest
        return
    path = Path(os.fspath(dest))
    temporary = temporary_path(path, suffix)
    try:
        sink = open(_create(temporary, path), "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    try:
        with sink:
            yield sink
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def temporary_path(path: Path, suffix: str = "") -> Path:
    """A hidden, unique name beside ``path``; checks the destination can be written."""
    if path.is_dir():
        raise ConfigurationError(f"cannot write {path}: it is a directory; give a file name")
    parent = path.parent
    url = url_in(path)
    if url is not None and not parent.is_dir():
        raise ConfigurationError(
            f"cannot write {url[0]}: exports write local files; write it here, then copy it "
            "there (aws s3 cp, gcloud storage cp, an upload), or write to - (stdout) and pipe it"
        )
    if not parent.is_dir():
        raise ConfigurationError(f"cannot write {path}: directory {parent} does not exist")
    return parent / f".{path.name}.{secrets.token_hex(4)}.part{suffix}"


def _create(temporary: Path, path: Path) -> int:
    """Creates the temporary file (mode 0666 less the umask, like a plain open())."""
    try:
        return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise ConfigurationError(
            f"cannot write {path}: {error.strerror} (a temporary file in {path.parent} is "
            "renamed onto it at the end); choose a writable directory"
        ) from None
