"""JSON that is not GeoJSON, an API's records saved or piped in, loaded as dict rows.

A JSON array of objects (``[{"name": ..., "lat": ..., "lon": ...}, ...]``, as ``curl``
saves an API's answer) is read an item at a time by ijson's streaming parser, so memory
stays flat however long the array; JSON Lines of objects (``.jsonl``, ``.ndjson``) a line
at a time. Their rows load as dict rows do (coordinate keys or a key of geometries make
the geometry; create=True types the table from them, over the whole file); an array of
GeoJSON Features loads as Features. GeoJSON itself (a FeatureCollection, a Feature per
line) and any other JSON object (Esri JSON) are left to GDAL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson
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


def json_rows(path: Path, form: str) -> Iterator[dict[str, Any]]:
    """The rows of a JSON file of records of ``form`` (:func:`records_form`), one at a
    time, from each call anew."""
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


def _array(path: Path) -> Iterator[dict[str, Any]]:
    number = 0
    with path.open("rb") as handle:
        try:
            for number, row in enumerate(ijson.items(handle, "item", use_float=True), start=1):
                if not isinstance(row, dict):
                    raise ConfigurationError(
                        f"{path}, item {number} of its array: a JSON {_json_kind(row)}, where "
                        "geosession loads an array of objects (records, whose keys name the "
                        "columns, or GeoJSON Features)"
                    )
                yield row
        except ijson.JSONError as error:
            reason = str(error).splitlines()[0]
            raise ConfigurationError(
                f"{path} is not JSON after item {number} of its array: {reason}"
            ) from error


def _json_kind(value: Any) -> str:
    """A JSON value's kind as JSON names it."""
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


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
                    f"{path}, line {number}: a JSON {_json_kind(row)}, where each line "
                    "must hold one JSON object (a record)"
                )
            yield row
