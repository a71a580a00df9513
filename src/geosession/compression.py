"""gzip, bzip2, xz and zstd, told by a file's suffix or a stream's first bytes: what the
ingest decompresses before it reads (``buildings.geojsonl.gz``) and the export compresses
as it writes. Python's own modules; zstd through pyarrow (the ``geo`` extra), whose codec
streams it."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from geosession.errors import ConfigurationError

KINDS = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}
"""Each compression's suffix and name."""
SUFFIXES = tuple(KINDS)
_MAGIC = (
    (b"\x1f\x8b", ".gz"),
    (b"BZh", ".bz2"),
    (b"\xfd7zXZ\x00", ".xz"),
    (b"\x28\xb5\x2f\xfd", ".zst"),
)


class Stream(Protocol):
    """A compressing or decompressing stream, closed at the end of its ``with`` block."""

    def read(self, size: int = -1, /) -> bytes: ...

    def write(self, data: bytes, /) -> Any: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> Any: ...


def compression_suffix(path: str | os.PathLike[str]) -> str | None:
    """The compression a path's suffix names (``.gz``), if any."""
    suffix = Path(os.fspath(path)).suffix.lower()
    return suffix if suffix in KINDS else None


def compression_of(head: bytes) -> str | None:
    """The suffix of the compression that data starting with ``head`` is in, if any."""
    return next((suffix for magic, suffix in _MAGIC if head.startswith(magic)), None)


def decompressor(raw: Any, suffix: str) -> Stream:
    """A reader of the decompressed data of binary stream ``raw``; its caller closes it."""
    if suffix == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if suffix == ".bz2":
        return bz2.BZ2File(raw, "rb")
    if suffix == ".xz":
        return lzma.LZMAFile(raw, "rb")
    return _zstd().CompressedInputStream(raw, "zstd")  # type: ignore[no-any-return]


def compressor(raw: Any, suffix: str) -> Stream:
    """A writer compressing into binary stream ``raw``, finished when closed; gzip at
    level 6, as the gzip command, for its speed."""
    if suffix == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
    if suffix == ".bz2":
        return bz2.BZ2File(raw, "wb")
    if suffix == ".xz":
        return lzma.LZMAFile(raw, "wb")
    return _zstd().CompressedOutputStream(raw, "zstd")  # type: ignore[no-any-return]


def _zstd() -> Any:
    """pyarrow, whose codecs read and write zstd."""
    try:
        import pyarrow
    except ImportError as error:
        raise ConfigurationError(
            "zstd (.zst) data needs pyarrow: pip install 'geosession[geo]'"
        ) from error
    return pyarrow
