"""Standard input (or a named pipe) as a file, for ``curl ... | geosession ingest - TABLE``.

The readers need a file they can open: a GeoPackage is a database, GDAL reads a GeoJSON
twice (once for its fields), the CSV reader sniffs its dialect first. So the stream is
copied to a temporary file in blocks (memory stays flat whatever its size), decompressed
on the way if it is gzip, bzip2, xz or zstd data, the file's suffix chosen from its first
bytes, and its digest taken on the way: piping the same data again is then the same
load, which resumes after the chunks already committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from geosession.compression import compression_of
from geosession.errors import ConfigurationError
from geosession.ingest.compressed import BLOCK, Reader, decompressing, read_block
from geosession.ingest.json_records import is_api_answer, is_record_line

_SQLITE = b"SQLite format 3\x00"
_GEOPACKAGE_IDS = (b"GPKG", b"GP10", b"GP11")
"""A GeoPackage's SQLite application_id (header bytes 68-71); a SpatiaLite file has none."""
_ZIP = b"PK\x03\x04"
_TAR = b"ustar"
_ODS = b"application/vnd.oasis.opendocument.spreadsheet"
_MAGIC = (
    (b"PAR1", ".parquet"),
    (b"ARROW1", ".arrow"),  # the Arrow IPC file format (Feather v2)
    (b"\xff\xff\xff\xff", ".arrows"),  # the IPC stream format: a message's continuation mark
    (b"fgb\x03", ".fgb"),
)
_BLANK = b"\xef\xbb\xbf \t\r\n"
"""What may come before a text format's first character: a UTF-8 byte order mark, blanks."""


@dataclass(frozen=True)
class Spooled:
    """The copy of a stream: where it is, its SHA-256 and its size in bytes."""

    path: Path
    digest: str
    size: int


def spool(
    stream: IO[bytes],
    directory: Path,
    *,
    name: str = "standard input",
    on_block: Callable[[int], None] | None = None,
) -> Spooled:
    """Copies ``stream`` (``name``: what messages call it) into ``directory/stdin.<format>``,
    decompressed if it is compressed data; ``on_block`` gets each block's size."""
    head = stream.read(BLOCK)
    compression = compression_of(head)
    data: Reader = stream
    if compression is not None:
        data = decompressing(head, stream, compression)
        head = read_block(data, name, compression)

    def read() -> bytes:
        return data.read(BLOCK) if compression is None else read_block(data, name, compression)

    path = directory / f"stdin{suffix_of(head, name)}"
    digest = hashlib.sha256()
    size = 0
    with path.open("wb") as copy:
        block = head
        while block:
            copy.write(block)
            digest.update(block)
            size += len(block)
            if on_block is not None:
                on_block(len(block))
            block = read()
    return Spooled(path, digest.hexdigest(), size)


def _spreadsheet(head: bytes) -> str | None:
    """A zip that is a spreadsheet: an OpenDocument one names its type in its first
    entry, ``mimetype`` (stored, uncompressed); an Office Open XML workbook holds
    ``xl/workbook.xml`` among its first entries."""
    if head[30:38] == b"mimetype" and head[38:84].startswith(_ODS):
        return ".ods"
    return ".xlsx" if b"xl/workbook.xml" in head else None


def _signed_suffix(head: bytes) -> str | None:
    """The suffix of a binary format whose signature ``head`` starts with, if any."""
    if head.startswith(_SQLITE):
        return ".gpkg" if head[68:72] in _GEOPACKAGE_IDS else ".sqlite"
    if head.startswith(_ZIP):
        return _spreadsheet(head) or ".zip"
    if head[257:262] == _TAR:  # POSIX tar's header names its format there
        return ".tar"
    return next((suffix for magic, suffix in _MAGIC if head.startswith(magic)), None)


def suffix_of(head: bytes, name: str = "standard input") -> str:
    """The file suffix for data that starts with ``head``, by its signature or first text."""
    subject = name[:1].upper() + name[1:]
    binary = _signed_suffix(head)
    if binary is not None:
        return binary
    text = head.lstrip(_BLANK)
    if not text:
        raise ConfigurationError(
            f"{subject} is empty: nothing to load (a download that failed gives nothing; so "
            "does an export of no rows as GeoJSON Lines, whose format has no header: "
            "geosession export ... --format geojson writes an empty FeatureCollection, "
            "which loads no rows)"
        )
    if text.startswith(b"\x1e") or (text.startswith(b"{") and _is_feature_line(text)):
        return ".geojsonl"  # GeoJSON Text Sequence, or newline-delimited features
    if text.startswith(b"{") and is_api_answer(text):
        return ".json"  # an API's answer: records in a member of one object, or one record
    if text.startswith(b"{") and is_record_line(text):
        return ".jsonl"  # JSON Lines of an API's records
    if text.startswith(b"{"):
        return ".geojson"
    if text.startswith(b"["):
        return ".json"  # an array: of records, or of Features
    if text.startswith(b"<"):
        return _xml_suffix(text, subject)
    if b"\x00" in head:
        raise ConfigurationError(
            f"{subject} is binary data of no format geosession reads from a stream "
            "(GeoPackage, SpatiaLite, FlatGeobuf, GeoParquet, Arrow IPC, zip, tar; gzip, "
            "bzip2, xz or zstd of any). A Shapefile, being several files, must come in an "
            "archive; or give the file's path instead"
        )
    return ".csv"


def _is_feature_line(text: bytes) -> bool:
    """Whether the first line is a whole GeoJSON Feature (so the rest are lines of them)."""
    line = text.split(b"\n", 1)[0]
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and value.get("type") == "Feature"


def _xml_suffix(text: bytes, subject: str) -> str:
    lowered = text.lower()
    for tag, suffix in ((b"<gpx", ".gpx"), (b"<kml", ".kml")):
        if tag in lowered:
            return suffix
    raise ConfigurationError(
        f"{subject} is XML but neither KML nor GPX (no <kml> or <gpx> element in its "
        "first megabyte); geosession reads those two XML formats"
    )
