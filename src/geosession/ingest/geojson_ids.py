"""Whether a GeoJSON file's features carry integer ids.

RFC 7946 puts a feature's identifier beside its properties (``"id": 17``). GDAL reads an
integer one as the feature's FID, not as a field, and numbers the features of a file
without ids 0, 1, 2 ... the same way, so what GDAL gives cannot tell the two apart. The
file's first feature can: it is read from the file's first megabyte.
"""

from __future__ import annotations

import tarfile
import zipfile

import orjson

from geosession.ingest.archives import GdalSource, archive_member
from geosession.ingest.compressed import data_of

_PEEK = 1 << 20
"""Bytes read to find the first feature (a feature larger than this: no ids assumed)."""
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = b"{", b"}", b'"', b"\\"


def has_integer_ids(source: GdalSource, *, sequence: bool) -> bool:
    """Whether the first feature of the GeoJSON file (``sequence``: GeoJSON Lines) has an
    integer ``id`` member."""
    head = _head(source)
    feature = _first_line(head) if sequence else _first_feature(head)
    if feature is None:
        return False
    try:
        value = orjson.loads(feature)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and type(value.get("id")) is int


def _head(source: GdalSource) -> bytes:
    """The first bytes of the file's data (gzipped too), or of the member of a zip or tar
    archive GDAL is given."""
    inside = archive_member(str(source.name), source.path)
    try:
        if inside is None:
            with data_of(source.path) as data:
                return data.read(_PEEK)
        if inside[0] == "zip":
            with zipfile.ZipFile(source.path) as archive, archive.open(inside[1]) as f:
                return f.read(_PEEK)
        with tarfile.open(source.path) as tar:
            member = tar.extractfile(inside[1])
            return member.read(_PEEK) if member is not None else b""
    except (OSError, KeyError, EOFError, zipfile.BadZipFile, tarfile.TarError):
        return b""


def _first_line(head: bytes) -> bytes | None:
    """The first feature of GeoJSON Lines (or of a GeoJSON Text Sequence)."""
    for line in head.replace(b"\x1e", b"\n").splitlines():
        if line.strip():
            return line
    return None


def _first_feature(head: bytes) -> bytes | None:
    """The text of the first object in a FeatureCollection's ``features`` array."""
    key = head.find(b'"features"')
    start = head.find(_OPEN, head.find(b"[", key + 1) + 1) if key >= 0 else -1
    end = _object_end(head, start) if start >= 0 else None
    return None if end is None else head[start:end]


def _object_end(head: bytes, start: int) -> int | None:
    """Where the JSON object that opens at ``start`` ends (None: beyond ``head``)."""
    depth, in_string, escaped = 0, False, False
    for position in range(start, len(head)):
        char = head[position : position + 1]
        if in_string:
            if escaped:
                escaped = False
            elif char == _BACKSLASH:
                escaped = True
            elif char == _QUOTE:
                in_string = False
        elif char == _QUOTE:
            in_string = True
        elif char == _OPEN:
            depth += 1
        elif char == _CLOSE:
            depth -= 1
            if depth == 0:
                return position + 1
    return None
