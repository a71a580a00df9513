"""JSON that is not GeoJSON, an API's records saved or piped in, loaded as dict rows.

A JSON array of objects (``[{"name": ..., "lat": ..., "lon": ...}, ...]``, as ``curl``
saves an API's answer), or such an array in a JSON object (``{"count": 2, "results":
[...]}``: the member that is one, or the one ``layer=`` names of several), is read an item at
a time by ijson's streaming parser, so memory stays flat however long the array; JSON
Lines of objects (``.jsonl``, ``.ndjson``) a line at a time. Their rows load as dict rows
do (coordinate keys or a key of geometries make the geometry; create=True types the
table from them, over the whole file); an array of GeoJSON Features loads as Features.
One object of no such shape is one record. GeoJSON itself (a FeatureCollection, a
geometry, a Feature per line), TopoJSON and Esri JSON are left to GDAL.
"""

from __future__ import annotations

import collections
import functools
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import ijson
import orjson

from geosession.errors import ConfigurationError
from geosession.ingest.compressed import data_of, inner_suffix

RECORD_SUFFIXES = (".json", ".jsonl", ".ndjson")
_LINES = (".jsonl", ".ndjson")
_HEAD = 1 << 16
"""Bytes read to tell records from GeoJSON: the first line of JSON Lines must fit."""
_OBJECT_HEAD = 1 << 20
"""Bytes of a JSON object read for the member that holds its records."""
_BLANK = b" \t\r\n\xef\xbb\xbf"  # and a UTF-8 byte order mark
_GEOJSON_TYPES = ("Feature", "FeatureCollection")
_GDAL_TYPES = (
    *_GEOJSON_TYPES,
    *("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon"),
    *("GeometryCollection", "Topology"),
)
"""The "type" of a JSON object GDAL reads: GeoJSON's (a geometry too), TopoJSON's."""
_GDAL_KEYS = ("features", "geometryType", "spatialReference", "arcs")
"""Members of a JSON object GDAL reads (GeoJSON's and Esri JSON's features, Esri JSON's
geometry type and CRS, TopoJSON's arcs)."""


@dataclass(frozen=True)
class RecordsForm:
    """How a JSON file holds its records: an array, lines, or an array in an object."""

    kind: str
    """"array", "lines", "object" (an array in a member) or "record" (one object)."""
    key: str | None = None
    """The object's member whose array holds the records."""

    @property
    def items(self) -> str:
        """ijson's prefix of the records."""
        if self.kind == "record":
            return ""
        return "item" if self.key is None else f"{self.key}.item"

    @property
    def array(self) -> str:
        if self.kind == "record":
            return "its object"
        return "its array" if self.key is None else f"its {self.key!r} array"


def records_form(path: Path, layer: str | None = None) -> RecordsForm | None:
    """How a JSON file of records holds them, else None: the file is GeoJSON, TopoJSON,
    Esri JSON, an object whose first megabyte shows no records, no JSON at all, or not
    there (its reader says so). ``layer`` names the member of an object that holds them."""
    suffix = inner_suffix(path)  # api.json.gz is JSON too
    if suffix not in RECORD_SUFFIXES or not path.is_file():
        return None
    start = _start(path)
    if start.head.startswith(b"["):
        return RecordsForm("array")
    if suffix in _LINES and is_record_line(start.head[:_HEAD]):
        return RecordsForm("lines")
    if suffix != ".json" or start.scan is None:
        return None
    return _object_form(path, start, layer)


def _object_form(path: Path, start: _Start, layer: str | None) -> RecordsForm | None:
    """How a .json file that starts with an object holds its records (see
    :func:`records_form`)."""
    found = start.scan
    if found is None or found.gdal:
        return None
    if found.trailing and is_record_line(start.head[:_HEAD]):
        return RecordsForm("lines")  # JSON Lines saved as .json
    if layer is None and found.complete and not (found.record_keys or found.trailing):
        return RecordsForm("record")  # one API record (GET /stops/5)
    if not (key := layer or next(iter(found.record_keys), None)):
        return None
    if layer is None and len(found.record_keys) > 1:
        held = " and ".join(map(repr, found.record_keys))
        raise ConfigurationError(
            f"{path} is a JSON object whose members {held} each hold an array of objects: "
            f"name the one to load with layer= (CLI: --layer {found.record_keys[0]}), or "
            f"load each into a table of its own: geosession ingest {path} '{{layer}}' --create"
        )
    if found.complete and key not in found.record_keys:
        held = ", ".join(map(repr, found.record_keys)) or "none"
        raise ConfigurationError(
            f"layer={key!r} names no member of {path} holding an array of objects (its "
            f"records); the members that do: {held}"
        )
    return RecordsForm("object", key)


def record_members(path: Path) -> list[str] | None:
    """The members of a .json file's object that hold arrays of objects (records), as
    its first megabyte shows them, where there are several: the file's layers. None for
    any other file."""
    if inner_suffix(path) != ".json" or not path.is_file():
        return None
    found = _start(path).scan
    if found is None or found.gdal or found.trailing or len(found.record_keys) < 2:
        return None
    return found.record_keys


class _Start:
    """The start of a JSON file: its first megabyte, from its first character (blanks
    and a BOM skipped), and the scan of the object it starts, if one."""

    def __init__(self, path: Path) -> None:
        with data_of(path) as handle:
            self.head = handle.read(_OBJECT_HEAD).lstrip(_BLANK)

    @functools.cached_property
    def scan(self) -> ObjectScan | None:
        return ObjectScan.of(self.head) if self.head.startswith(b"{") else None


def _start(path: Path) -> _Start:
    """The file's start, read once for a load's several questions (the load, create=True's
    pass, the row count's thread: each asks how the file holds its records) while the file
    stays as it was."""
    stat = path.stat()
    return _start_of(path, (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=2)  # a megabyte each, kept: the file of a load, and one more
def _start_of(path: Path, identity: tuple[int, ...]) -> _Start:
    """``identity``: the file's device, inode, size and modification time, so a file
    written again is read again."""
    return _Start(path)


def json_rows(
    path: Path, form: RecordsForm, rename: Mapping[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """The rows of a JSON file of records held as ``form`` says, one at a time, from each
    call anew; their keys renamed as ``rename`` says (as a file's fields are)."""
    rows = _lines(path) if form.kind == "lines" else _items(path, form)
    if not rename:
        return rows
    return ({rename.get(key, key): value for key, value in row.items()} for row in rows)


def record_keys(path: Path, form: RecordsForm) -> list[str]:
    """The keys of the file's first records (:data:`KEYS_SAMPLE` of them), in order."""
    keys: dict[str, None] = {}
    for row in islice(json_rows(path, form), KEYS_SAMPLE):
        keys.update(dict.fromkeys(row))
    return list(keys)


KEYS_SAMPLE = 1_000
"""Records whose keys a rename= of a JSON records file is checked against."""


@dataclass
class ObjectScan:
    """What the start of a JSON object shows: the members holding arrays of objects
    (records), whether GDAL reads it, and whether it ended there with nothing after it."""

    record_keys: list[str] = field(default_factory=list)
    gdal: bool = False
    complete: bool = False
    trailing: bool = False
    """Something follows the object: JSON Lines, not one object."""
    _array: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, head: bytes) -> ObjectScan:
        """The scan of ``head``, to its end or until GDAL's members show (a GeoJSON
        object's "type" may follow an array of objects in its metadata)."""
        scan = cls()
        try:
            for prefix, event, value in ijson.parse(io.BytesIO(head)):
                scan._see(prefix, event, value)
                if scan.gdal or scan.trailing:
                    break
        except ijson.JSONError:  # the head ends inside the object, or after it
            scan.trailing = scan.complete
        return scan

    def _see(self, prefix: str, event: str, value: Any) -> None:
        """Notes one event of the parser."""
        if self.complete:
            self.trailing = True
        elif prefix == "" and event == "end_map":
            self.complete = True
        elif prefix == "" and event == "map_key":
            self.gdal |= value in _GDAL_KEYS
        elif prefix == "type" and event == "string":
            self.gdal |= value in _GDAL_TYPES
        elif prefix and "." not in prefix and event == "start_array":
            self._array = prefix
        elif self._array is not None and prefix == f"{self._array}.item" and event == "start_map":
            self.record_keys.append(self._array)
            self._array = None


def record_mark(path: Path, form: RecordsForm) -> bytes | None:
    """What stands between two records of a file's array of them: the end of one, the
    comma and the opening of the next up to its first key, spaced as the file spaces them
    (``},{"id"``, ``},\\n  {\\n    "id"``), to count the records without parsing them
    (an array of objects in each record whose first key is the same, spaced alike, counts
    too; an object that is a member's value does not); None where the file's first
    megabyte shows no two records."""
    if form.kind not in ("array", "object"):
        return None
    head = _start(path).head
    try:
        key = next(
            value
            for prefix, event, value in ijson.parse(io.BytesIO(head))
            if prefix == form.items and event == "map_key"
        )
    except (ijson.JSONError, StopIteration):  # no key of a record in the first megabyte
        return None
    written = (orjson.dumps(key), json.dumps(key).encode())  # raw UTF-8, or \\u escapes
    between = re.compile(rb"\}\s*,\s*\{\s*(?:%b|%b)" % tuple(map(re.escape, written)))
    seen = collections.Counter(between.findall(head))  # the records' spacing is most seen
    return max(seen, key=seen.__getitem__, default=None)


def is_api_answer(head: bytes) -> bool:
    """Whether ``head`` starts one JSON object (nothing after it: not JSON Lines) of no
    shape GDAL reads, holding records in a member or being one: an API's answer."""
    found = ObjectScan.of(head)
    return bool(found.record_keys or found.complete) and not (found.gdal or found.trailing)


def records_further_on(path: Path) -> bool:
    """Whether ``path`` is a JSON object too large to scan whole that shows neither records
    nor GDAL's members in its first megabyte: a member further on may hold its records."""
    if inner_suffix(path) != ".json" or not path.is_file():
        return False
    found = _start(path).scan or ObjectScan(gdal=True)
    return not (found.gdal or found.complete or found.record_keys)


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


def _items(path: Path, form: RecordsForm) -> Iterator[dict[str, Any]]:
    number = 0
    with data_of(path) as handle:
        try:
            items = ijson.items(handle, form.items, use_float=True)
            for number, row in enumerate(items, start=1):
                if not isinstance(row, dict):
                    raise ConfigurationError(
                        f"{path}, item {number} of {form.array}: a JSON {_json_kind(row)}, "
                        "where geosession loads an array of objects (records, whose keys name "
                        "the columns, or GeoJSON Features)"
                    )
                yield row
        except ijson.JSONError as error:
            reason = str(error).splitlines()[0]
            raise ConfigurationError(
                f"{path} is not JSON after item {number} of {form.array}: {reason}"
            ) from error


def _json_kind(value: Any) -> str:
    """A JSON value's kind as JSON names it."""
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with data_of(path) as handle:
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
