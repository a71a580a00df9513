"""JSON that is not GeoJSON, an API's records saved or piped in, loaded as dict rows.

A JSON array of objects (``[{"name": ..., "lat": ..., "lon": ...}, ...]``, as ``curl``
saves an API's answer) is read whole: JSON gives no way to take an array's items one at
a time without a streaming parser. JSON Lines of objects (``.jsonl``, ``.ndjson``) are
read a line at a time. Their rows load as dict rows do (coordinate keys or a key of
geometries make the geometry; create=True types the table from them); an array of
GeoJSON Features loads as Features. GeoJSON itself (a FeatureCollection, a Feature per
line) and any other JSON object (Esri JSON) are left to GDAL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from geosession.errors import ConfigurationError

_SUFFIXES = (".json", ".jsonl", ".ndjson")
_LINES = (".jsonl", ".ndjson")
_HEAD = 1 << 16
"""Bytes read to tell records from GeoJSON: the first line of JSON Lines must fit."""
_BLANK = b" \t\r\n\xef\xbb\xbf"  # and a UTF-8 byte order mark
_GEOJSON_TYPES = ("Feature", "FeatureCollection")


def records_form(path: Path) -> str | None:
    """ "array" or "lines" for a JSON file of records, else None: the file is GeoJSON, no
    JSON at all, or not there (its reader says so)."""
    if path.suffix.lower() not in _SUFFIXES or not path.is_file():
        return None
    with path.open("rb") as handle:
        head = handle.read(_HEAD).lstrip(_BLANK)
    if head.startswith(b"["):
        return "array"
    if path.suffix.lower() in _LINES and is_record_line(head):
        return "lines"
    return None


def json_rows(path: Path, form: str) -> list[Any] | Iterator[Any]:
    """The rows of a JSON file of records of ``form`` (:func:`records_form`): a list of an
    array's objects, or a line at a time."""
    return _array(path) if form == "array" else _lines(path)


def is_record_line(text: bytes) -> bool:
    """Whether the first line is a whole JSON object of no GeoJSON or Esri JSON shape
    (a record, so the rest are lines of them)."""
    try:
        value = orjson.loads(text.split(b"\n", 1)[0])
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(value, dict)
        and value.get("type") not in _GEOJSON_TYPES
        and "features" not in value
    )


def _array(path: Path) -> list[Any]:
    try:
        rows = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise ConfigurationError(f"{path} is not JSON: {error}") from error
    kinds = {type(row).__name__ for row in rows if not isinstance(row, dict)}
    if kinds:
        raise ConfigurationError(
            f"{path} is a JSON array holding {', '.join(sorted(kinds))} values: geosession "
            "loads an array of objects (records, whose keys name the columns, or GeoJSON "
            "Features)"
        )
    return rows  # type: ignore[no-any-return]


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip(_BLANK):
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise ConfigurationError(
                    f"{path}, line {number}: not JSON ({error}); each line must hold one "
                    "JSON object"
                ) from error
            if not isinstance(row, dict):
                raise ConfigurationError(
                    f"{path}, line {number}: a JSON {type(row).__name__}, where each line "
                    "must hold one JSON object (a record)"
                )
            yield row
