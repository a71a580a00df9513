"""Compressed sources (gzip, bzip2, xz, zstd: ``points.csv.gz``, ``buildings.geojsonl.gz``).

A CSV or a file of JSON records, which geosession's own readers read front to back, is
read as it decompresses (:func:`data_of`), and so is gzipped GeoJSON, which GDAL reads
through its /vsigzip/: no copy, however large. The other formats' readers need the file
itself: a GeoPackage is a database, GDAL reads no bzip2, xz or zstd. So their data is
decompressed in blocks (memory stays flat
whatever its size) into a temporary directory, under the name it has inside
(``buildings.geojsonl``; a name without a format's suffix, ``data.gz``, gets the one its
first bytes show), and loaded from there. The load's default id follows the compressed
file (its path, size and time) either way, so running it again resumes.
"""

from __future__ import annotations

import io
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
from geosession.sidecar import prj_path

BLOCK = 1 << 20
_GDAL_STREAMED = (".geojson", ".geojsonl", ".geojsons", ".json", ".jsonl", ".ndjson")
"""GDAL's GeoJSON data, read front to back: gzipped, through /vsigzip/ (GDAL has no such
reader of bzip2, xz or zstd)."""
CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError)
"""What the decompressors raise for damaged or cut data (gzip's BadGzipFile is an
OSError; a file cut short is an EOFError)."""


class Reader(Protocol):
    """A binary stream as the copies read it."""

    def read(self, size: int = -1, /) -> bytes: ...


def is_compressed(source: Any) -> bool:
    """Whether ``source`` is the path of a gzip, bzip2, xz or zstd file (by its suffix)."""
    from geosession.ingest.features import is_geojson_text  # its imports reach this module

    if not isinstance(source, str | os.PathLike) or is_geojson_text(source):
        return False
    return compression_suffix(source) is not None


def streamed(path: Path, layer: str | None = None) -> bool:
    """Whether compressed file ``path`` is read as it decompresses: a CSV or JSON records
    (``layer`` names an object's member of records), or gzipped GeoJSON, which GDAL reads
    through its /vsigzip/ (:func:`gdal_gzip`)."""
    from geosession.ingest.json_records import RECORD_SUFFIXES, records_form

    if gdal_gzip(path):
        return True
    suffix = inner_suffix(path)
    if suffix in RECORD_SUFFIXES:
        return records_form(path, layer) is not None
    return suffix == ".csv"


def gdal_gzip(path: Path) -> bool:
    """Whether ``path`` is gzipped GeoJSON or GeoJSON Lines, which GDAL reads as it
    decompresses (a .json.gz may hold JSON records instead, which are asked for first and
    read by :mod:`.json_records`, as they decompress too)."""
    return path.suffix.lower() == ".gz" and inner_suffix(path) in _GDAL_STREAMED


def inner_suffix(path: Path) -> str:
    """The suffix of a file's data: ``.csv`` for ``points.csv.gz`` as for ``points.csv``."""
    return (Path(path.stem) if is_compressed(path) else path).suffix.lower()


@contextmanager
def data_of(path: Path) -> Iterator[IO[bytes]]:
    """The bytes of ``path``'s data: a compressed file's as they decompress (damaged or
    cut data refused naming the file), any other's as they are."""
    if not is_compressed(path):
        with path.open("rb") as file:
            yield file
        return
    compression = path.suffix.lower()
    with path.open("rb") as raw, decompressor(raw, compression) as stream:
        yield io.BufferedReader(_Refusing(stream, str(path), compression), BLOCK)


@contextmanager
def text_of(path: Path, encoding: str) -> Iterator[IO[str]]:
    """The text of ``path``'s data (:func:`data_of`), lines ending as they do in it, as
    the csv module wants them."""
    with data_of(path) as data, io.TextIOWrapper(data, encoding=encoding, newline="") as text:
        yield text


class _Refusing(io.RawIOBase):
    """A decompressing stream as a file, whose damaged data is refused naming the file."""

    def __init__(self, stream: Reader, name: str, compression: str) -> None:
        self._stream, self._name, self._compression = stream, name, compression

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = read_block(
            self._stream, self._name, self._compression, by_suffix=True, size=len(buffer)
        )
        buffer[: len(data)] = data
        return len(data)


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


def read_block(
    stream: Reader, name: str, compression: str, *, by_suffix: bool = False, size: int = BLOCK
) -> bytes:
    """The next block of decompressed data; damaged data is refused naming ``name`` (a
    file whose ``compression`` its suffix says, ``by_suffix``, may be no such data)."""
    try:
        return stream.read(size)
    except CORRUPT as error:
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
    temporary file (removed by :meth:`close`), unless it is read as it decompresses
    (:func:`streamed`); any other source as it is."""

    def __init__(self, source: Any, *, progress: bool, layer: str | None = None) -> None:
        self.source = source
        self._files = ExitStack()
        self._copy: Path | None = None
        compressed = is_compressed(source) and Path(source).is_file()  # else refused as any
        if compressed and not streamed(Path(source), layer):
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
