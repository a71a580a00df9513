"""gzip, bzip2 and xz, told by a file's suffix or a stream's first bytes: what the ingest
decompresses before it reads (``buildings.geojsonl.gz``) and the export compresses as it
writes. Python's own modules: no dependency."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from pathlib import Path
from typing import Any

KINDS = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz"}
"""Each compression's suffix and name."""
SUFFIXES = tuple(KINDS)
_MAGIC = ((b"\x1f\x8b", ".gz"), (b"BZh", ".bz2"), (b"\xfd7zXZ\x00", ".xz"))


def compression_suffix(path: str | os.PathLike[str]) -> str | None:
    """The compression a path's suffix names (``.gz``), if any."""
    suffix = Path(os.fspath(path)).suffix.lower()
    return suffix if suffix in KINDS else None


def compression_of(head: bytes) -> str | None:
    """The suffix of the compression that data starting with ``head`` is in, if any."""
    return next((suffix for magic, suffix in _MAGIC if head.startswith(magic)), None)


def decompressor(raw: Any, suffix: str) -> io.BufferedIOBase:
    """A reader of the decompressed data of binary stream ``raw``; its caller closes it."""
    if suffix == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if suffix == ".bz2":
        return bz2.BZ2File(raw, "rb")
    return lzma.LZMAFile(raw, "rb")


def compressor(raw: Any, suffix: str) -> io.BufferedIOBase:
    """A writer compressing into binary stream ``raw`` (closing it finishes the data,
    not ``raw``); gzip at level 6, as the gzip command, for its speed."""
    if suffix == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
    if suffix == ".bz2":
        return bz2.BZ2File(raw, "wb")
    return lzma.LZMAFile(raw, "wb")
