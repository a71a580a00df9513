"""CSV sources: the header's separator, the geometry column (WKT, or coordinates that make
points: :mod:`.points`), and batches of text values.

Values are ``str``, or None when empty: the writer uses binary COPY, so it casts each value
by its column's type; a CSV's geometry stays WKT text until the geometry check reads it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from itertools import chain, islice
from pathlib import Path

from geosession.errors import ConfigurationError
from geosession.ingest.batches import Batch, Landing
from geosession.ingest.compressed import text_of
from geosession.ingest.crs import SourceCrs, sidecar_crs
from geosession.ingest.encodings import text_codec, undecodable_refused
from geosession.ingest.file_read import FileRead, renamer
from geosession.ingest.held_geometries import SAMPLE, geometry_field
from geosession.ingest.points import PointColumns, point_columns, point_values

WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "wkt_geom")
"""A CSV's geometry column, when the header has one of these names in any case."""
_CSV_DELIMITERS = ",;\t|"
"""In order of preference when a header has as many of one as of another (or none)."""
_CSV_FIELD_LIMIT = 2**31 - 1  # WKT of a large polygon exceeds csv's default 128 KiB


def csv_batches(path: Path, landing: Landing, read: FileRead) -> Iterator[Batch]:
    columns, geometry_column = landing.columns, landing.geometry_column
    encoding = read.encoding
    header, delimiter = csv_header(path, encoding)
    wkt = wkt_column_of(header, geometry_column, read.wkt_column, path)
    points = _csv_points(header, wkt, landing, read, path)
    renamed = renamer(read, header, path)
    if wkt is None and points is None:
        wkt = _held_wkt(path, encoding, header, landing, renamed)
    names = [landing.column_for(renamed(h), wkt) for h in header]
    made: dict[str, list[int]] = {}  # the column the coordinates make points for
    crs: dict[str, SourceCrs] = {}
    stated = sidecar_crs(path)  # the .prj beside it
    if points is not None and geometry_column is not None:
        made[geometry_column] = [header.index(name) for name in points.fields]
        srid = stated[1] if stated is not None else points.srid
        crs = {geometry_column: srid} if srid is not None else {}
    elif wkt is not None and stated is not None:
        crs = {landing.column_for(renamed(wkt), wkt): stated[1]}
    loaded = [  # coordinates load as numbers too only into columns of their names
        i
        for i, h in enumerate(header)
        if points is None or h not in points.fields or names[i] in columns
    ]
    landing.check([names[i] for i in loaded] + list(made), where=str(path))

    def batches() -> Iterator[Batch]:
        for first, chunk in _chunks(path, encoding, (header, delimiter), landing.size):
            values = {names[i]: [row[i] or None for row in chunk] for i in loaded}
            for column, fields in made.items():
                coordinates = [[row[i] for row in chunk] for i in fields]
                values[column] = point_values(
                    coordinates, [header[i] for i in fields], decimal_comma=delimiter == ";"
                )
            kept = {c: values[c] for c in columns if c in values}
            yield Batch(first, kept, crs, decimal_comma=delimiter == ";")

    return batches()


def _held_wkt(
    path: Path,
    encoding: str | None,
    header: list[str],
    landing: Landing,
    renamed: Callable[[str], str],
) -> str | None:
    """The one field that no column takes whose values in the first rows are all WKT,
    EWKT or hex EWKB (empty ones aside), for the target's one geometry column that no
    field names: an export of a geometry column named otherwise."""
    original = {renamed(name): name for name in header}

    def judge(unnamed: list[str]) -> str | None:
        fields = [original[name] for name in unnamed]
        _, values = next(csv_field_values(path, encoding, lambda: fields, SAMPLE), (0, {}))
        return geometry_field({name: [v for v in column if v] for name, column in values.items()})

    return landing.held_field(list(original), judge, str(path))


def csv_field_values(
    path: Path, encoding: str | None, fields: Callable[[], list[str]], size: int = 50_000
) -> Iterator[tuple[int, dict[str, list[str]]]]:
    """The values of the fields ``fields()`` names ('' where empty), a batch of rows at a
    time, with the batch's number of rows; it ends early when ``fields()`` names none."""
    header, delimiter = csv_header(path, encoding)
    for _, chunk in _chunks(path, encoding, (header, delimiter), lambda: size):
        if not (wanted := fields()):
            return
        at = {name: header.index(name) for name in wanted}
        yield len(chunk), {name: [row[i] for row in chunk] for name, i in at.items()}


def _chunks(
    path: Path, encoding: str | None, layout: tuple[list[str], str], size: Callable[[], int]
) -> Iterator[tuple[int, list[list[str]]]]:
    """The file's rows after the header, ``size()`` at a time, each chunk with the number
    of its first row; a row of another width than the header's is refused."""
    header, delimiter = layout
    with text_of(path, text_codec(encoding, path)) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        with undecodable_refused(path, encoding):
            next(reader, None)
            rows = (row for row in reader if row)  # blank lines are not rows
            first = 1
            while chunk := list(islice(rows, size())):
                _check_widths(chunk, len(header), first, path)
                yield first, chunk
                first += len(chunk)


def _csv_points(
    header: list[str], wkt: str | None, landing: Landing, read: FileRead, path: Path
) -> PointColumns | None:
    """The coordinate fields that make each row's point, when the file has no WKT column
    (see :mod:`.points`); refused for a table without one geometry column to hold them."""
    if wkt is not None:
        if read.xy_columns is not None:
            raise ConfigurationError(
                f"{path} has the WKT column {wkt!r}, and xy_columns= names coordinates too: "
                "give one of wkt_column= and xy_columns="
            )
        return None
    points = point_columns(
        header,
        read.xy_columns,
        path,
        landing.heights,
        z_required=landing.geometry_z,
        measured=landing.geometry_m,
    )
    if points is not None and landing.geometry_column is None:
        raise ConfigurationError(
            f"{path}'s {points.x} and {points.y} make points for the table's geometry "
            "column, and the table has none or several: load into a table with one"
        )
    return points


def csv_header(path: Path, encoding: str | None = None) -> tuple[list[str], str]:
    """A CSV file's field names and the separator its header uses."""
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    with (
        undecodable_refused(path, encoding),
        text_of(path, text_codec(encoding, path)) as handle,
    ):
        first = handle.readline()
        delimiter = _delimiter(first)
        return next(csv.reader(chain([first], handle), delimiter=delimiter), []), delimiter


def quoted_fields(path: Path, layout: tuple[list[str], str], encoding: str | None) -> set[str]:
    """The fields whose every value in the file's first records is in quotes while other
    fields' values are not: a writer that quotes text alone (geosession's own export,
    Arrow's, Python's csv.QUOTE_NONNUMERIC) says that such a field of digits (a postcode,
    "75001") is text. A file that quotes every field says nothing. Python's csv reader
    does not tell quoted values apart, so the first records are read here again."""
    header, delimiter = layout
    with text_of(path, text_codec(encoding, path)) as handle:
        sample = handle.read(_QUOTING_SAMPLE)
    always, seen, unquoted = [True] * len(header), [False] * len(header), False
    for record in islice(_quoting(sample, delimiter), 1, None):  # after the header
        if len(record) != len(header):
            continue  # a blank line
        for i, (quoted, empty) in enumerate(record):
            if not empty:
                seen[i], always[i] = True, always[i] and quoted
                unquoted = unquoted or not quoted
    if not unquoted:
        return set()
    return {
        name for name, quoted, some in zip(header, always, seen, strict=True) if quoted and some
    }


def _quoting(text: str, delimiter: str) -> Iterator[list[tuple[bool, bool]]]:
    """Each whole record of ``text``: for each field, whether it is quoted and empty."""
    field = re.compile(rf'"(?:[^"]|"")*"|[^{re.escape(delimiter)}"\r\n]*')
    record: list[tuple[bool, bool]] = []
    at = 0
    while (found := field.match(text, at)) is not None:
        token, at = found.group(), found.end()
        record.append((token.startswith('"'), token in ("", '""')))
        if text.startswith(delimiter, at):
            at += len(delimiter)
        elif text.startswith(("\r\n", "\n", "\r"), at):
            at += 2 if text.startswith("\r\n", at) else 1
            yield record
            record = []
        else:  # the sample's end, or a quote where none belongs: nothing more to tell
            return


_QUOTING_SAMPLE = 1 << 20
"""Characters read to tell which fields are quoted (thousands of records)."""


def _delimiter(header: str) -> str:
    """The separator the header line uses most (outside quotes): a comma unless it has
    none, then a semicolon (spreadsheets in comma-decimal locales), tab or bar."""
    return max(_CSV_DELIMITERS, key=re.sub(r'"[^"]*"', "", header).count)


def _check_widths(chunk: list[list[str]], width: int, first: int, path: Path) -> None:
    for offset, row in enumerate(chunk):
        if len(row) != width:
            raise ConfigurationError(
                f"{path}: row {first + offset} has {len(row)} fields; the header has {width}"
            )


def wkt_column_of(
    header: list[str], geometry_column: str | None, wkt_column: str | None, path: Path
) -> str | None:
    if wkt_column is not None:
        if wkt_column not in header:
            raise ConfigurationError(f"{path} has no column {wkt_column!r}: {', '.join(header)}")
        return wkt_column
    candidates = ((geometry_column,) if geometry_column else ()) + WKT_NAMES
    folded = {name.casefold(): name for name in reversed(header)}  # the first of a case
    return next((folded[c.casefold()] for c in candidates if c.casefold() in folded), None)
