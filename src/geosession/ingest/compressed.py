"""Compressed sources (gzip, bzip2, xz, zstd: ``buildings.geojsonl.gz``), decompressed first.

The readers need the file itself: GDAL reads a GeoJSON twice (once for its fields), a CSV
is sniffed before it is read, a GeoPackage is a database. So the data is decompressed in
blocks (memory stays flat whatever its size) into a temporary directory, under the name it
has inside (``buildings.geojsonl``; a name without a format's suffix, ``data.gz``, gets
the one its first bytes show), and loaded from there. The load's default id still follows
the compressed file (its path, size and time), so running it again resumes.
"""

from __future__ import annotations

import lzma
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from geosession.compression import KINDS, compression_suffix, decompressor
from geosession.errors import ConfigurationError, GeoSessionError
from geosession.ingest.features import is_geojson_text
from geosession.sidecar import prj_path

BLOCK = 1 << 20
_CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError)
"""What the decompressors raise for damaged or cut data (gzip's BadGzipFile is an
OSError; a file cut short is an EOFError)."""


class Reader(Protocol):
    """A binary stream as the copies read it."""

    def read(self, size: int = -1, /) -> bytes: ...


def is_compressed(source: Any) -> bool:
    """Whether ``source`` is the path of a gzip, bzip2, xz or zstd file (by its suffix)."""
    if not isinstance(source, str | os.PathLike) or is_geojson_text(source):
        return False
    return compression_suffix(source) is not None


def decompressing(head: bytes, stream: Reader, compression: str) -> Reader:
    """The decompressed data of a stream (standard input's) whose first bytes, ``head``,
    were read to tell its ``compression``."""
    return decompressor(_Prefixed(head, stream), compression)


class _Prefixed:
    """``head`` and then the rest of ``stream``, for a reader that reads, never seeks."""

    closed = False  # pyarrow's codec streams ask

    def __init__(self, head: bytes, stream: Reader) -> None:
        self._head, self._stream = head, stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size < 0:
            data, self._head = self._head + self._stream.read(), b""
        else:
            data, self._head = self._head[:size], self._head[size:]
        return data


@contextmanager
def decompressed(path: Path, *, progress: bool = False) -> Iterator[Path]:
    """The data of compressed file ``path``, in a temporary file removed at exit;
    ``progress`` shows a bar of the compressed bytes read."""
    from geosession.ingest.spool import suffix_of

    with tempfile.TemporaryDirectory(prefix="geosession-") as directory:
        compression = path.suffix.lower()
        with path.open("rb") as raw, decompressor(raw, compression) as stream:
            head = read_block(stream, str(path), compression, by_suffix=True)
            name = Path(path.stem)  # parcels.csv for parcels.csv.gz
            if not name.suffix:  # data.gz: named by what it holds
                name = name.with_name(name.name + suffix_of(head, str(path)))
            copy = Path(directory) / name.name
            _check_kind(copy, path)
            with _bytes_read(path, raw, progress) as advance:
                _write(stream, head, copy, path, advance)
        if (prj := prj_path(path)).is_file():  # a CSV's CRS, as the export leaves it
            shutil.copyfile(prj, prj_path(copy))
        yield copy


def _check_kind(copy: Path, path: Path) -> None:
    """A type read nowhere is refused before the work, naming the compressed file."""
    from geosession.ingest.files import SUPPORTED, file_kind

    try:
        file_kind(copy)
    except ConfigurationError as error:
        raise ConfigurationError(
            f"cannot ingest {path}: it holds {copy.name}, a file type geosession does not "
            f"read; use {SUPPORTED}"
        ) from error


def read_block(stream: Reader, name: str, compression: str, *, by_suffix: bool = False) -> bytes:
    """The next block of decompressed data; damaged data is refused naming ``name`` (a
    file whose ``compression`` its suffix says, ``by_suffix``, may be no such data)."""
    try:
        return stream.read(BLOCK)
    except _CORRUPT as error:
        kind = KINDS[compression]
        named = f"; a file that is not {kind} data is named without {compression}" * by_suffix
        raise ConfigurationError(
            f"cannot decompress {name}: {error or type(error).__name__}. The {kind} data is "
            f"damaged or cut short (a download that did not finish): fetch it again{named}"
        ) from error


def _write(
    stream: Reader, head: bytes, copy: Path, path: Path, advance: Callable[[], None]
) -> None:
    """Writes ``head`` and the rest of ``stream`` to ``copy``."""
    block = head
    try:
        with copy.open("wb") as out:
            while block:
                out.write(block)
                advance()
                block = read_block(stream, str(path), path.suffix.lower(), by_suffix=True)
    except OSError as error:  # the copy's writes: damaged data is refused by read_block
        raise ConfigurationError(
            f"Could not decompress {path} into {copy.parent}: {error.strerror or error}. "
            "Point TMPDIR at a disk with room for the data uncompressed, or decompress it "
            "yourself and name that file"
        ) from error


@contextmanager
def _bytes_read(path: Path, raw: IO[bytes], enabled: bool) -> Iterator[Callable[[], None]]:
    """A bar of the compressed file read so far, gone when done."""
    if not enabled:
        yield lambda: None
        return
    bar = RichProgress(
        SpinnerColumn(),
        TextColumn(f"decompressing {path.name}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task("decompressing", total=path.stat().st_size)
        yield lambda: bar.update(task, completed=raw.tell())


class Unpacked:
    """A source as the readers take it: a compressed file's data decompressed into a
    temporary file (removed by :meth:`close`), any other source as it is."""

    def __init__(self, source: Any, *, progress: bool) -> None:
        self.source = source
        self._files = ExitStack()
        self._copy: Path | None = None
        if is_compressed(source) and Path(source).is_file():  # else refused as any file
            self._copy = self._files.enter_context(decompressed(Path(source), progress=progress))

    @property
    def readable(self) -> Any:
        """What the readers are given: the copy, or the source itself."""
        return self.source if self._copy is None else self._copy

    def name_in(self, error: BaseException) -> None:
        """Names the compressed file where an error names its temporary copy."""
        if self._copy is not None and isinstance(error, GeoSessionError):
            error.reword(error.message.replace(str(self._copy), str(self.source)))

    def close(self) -> None:
        self._files.close()
