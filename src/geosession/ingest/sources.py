"""Ingest sources: whatever the user passes, as column-wise batches of bounded size.

A source is never read whole: iterables are pulled ``batch_size`` rows at a time, a
GeoDataFrame is sliced, and files are streamed, so memory stays flat whatever the size.

- Geometries from GeoDataFrames arrive as shapely objects, from vector files as the WKB
  the driver read, and the batch carries the layer's EPSG SRID (None when the CRS has no
  EPSG code) for geometries without one, instead of a copy of each geometry stamped with
  it. Iterables pass their values through untouched; CSV geometry stays WKT text.
- Vector files stream through ``pyogrio.open_arrow(batch_size=...)``: one open, one
  sequential pass. Measured (batch 10,000, polygons with two fields), peak RSS above the
  import baseline: GeoPackage +45 MB for 200,000 and for 1,000,000 features; FlatGeobuf
  +18 MB; GeoJSON +29 MB at 200,000, +69 MB at 1,000,000 (GDAL's reader keeps ~60 B per
  feature). The baseline itself is heavy: ``import pyogrio`` imports pandas and geopandas
  when installed, about 220 MB with geosession and pyarrow. ``read_dataframe`` with
  ``skip_features`` was rejected: it reopens the file per batch and is quadratic on
  GeoJSON (20 s against 1.8 s for 200,000 features). Hence pyarrow in the ``geo`` extra.
- CSV values are ``str``, or None when empty: the writer uses binary COPY, so it must
  cast each value by its column's type.
- Batch columns follow the target's column order and hold only the columns the source
  has, so columns it lacks keep their server defaults; a dict lacking a key that other
  rows in its batch have gets None. Unset attributes of new mapped instances are lacking.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import itertools
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Column, inspect
from sqlalchemy.orm import InstanceState

from geosession.errors import ConfigurationError
from geosession.ingest.stages import timed_batches

VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "wkt_geom")
"""A CSV's geometry column, when the header has one of these names in any case."""
_SUPPORTED = (
    "GeoPackage, Shapefile, GeoJSON, FlatGeobuf (" + ", ".join(VECTOR_SUFFIXES) + ") or .csv"
)
_CSV_DELIMITERS = ",;\t|"
"""In order of preference when a header has as many of one as of another (or none)."""
_CSV_FIELD_LIMIT = 2**31 - 1  # WKT of a large polygon exceeds csv's default 128 KiB
_FILE_BATCH = 10_000
"""Features per record batch read from a vector file; cut to the batch size asked for."""


class CheckFields(Protocol):
    """Checks a source's field names against the target (``_check_fields``, bound)."""

    def __call__(self, names: list[str], *, where: str) -> None: ...


@dataclass(frozen=True)
class Batch:
    """Consecutive source rows, column-wise: target column name -> values."""

    first_row: int
    columns: dict[str, list[Any]]
    srids: dict[str, int] = field(default_factory=dict)
    """Column -> the SRID of its geometries that carry none (the layer's CRS), if known."""
    flush: bool = False
    """Cut short by ``flush_interval``: its rows, and any waiting with them, go out now."""

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``[start, stop)`` of this batch, keeping their source row numbers."""
        columns = {k: v[start:stop] for k, v in self.columns.items()}
        return Batch(self.first_row + start, columns, self.srids, self.flush)


def iter_batches(
    source: Any,
    *,
    columns: Sequence[str],
    geometry_column: str | None,
    batch_size: int | Callable[[], int] = 10_000,
    wkt_column: str | None = None,
    flush_interval: float | None = None,
    stopped: Callable[[], bool] = lambda: False,
    computed: Collection[str] = (),
) -> Iterator[Batch]:
    """Batches of at most ``batch_size`` rows from ``source``, in source order.

    ``batch_size`` may be a function, asked before each batch, so that a caller can
    shrink batches once it knows how large the rows are. With ``flush_interval``, a batch
    of an iterable is cut short (and marked ``flush``) once its first row has waited that
    many seconds, also while the source waits for its next row (and ``stopped()`` then
    ends the batches without waiting for it). Cheap checks (file present and supported,
    DataFrame or CSV header fields) raise here; a vector file's fields are checked when
    it is opened, before its first batch. ``columns`` are those a source may fill;
    ``computed`` names the target's generated columns, for the error when a source has them.
    """
    if (isinstance(batch_size, int) and batch_size < 1) or not columns:
        raise ConfigurationError("iter_batches needs batch_size >= 1 and the target's columns")
    size = batch_size if callable(batch_size) else (lambda: batch_size)
    check = functools.partial(_check_fields, columns=columns, computed=frozenset(computed))
    csv_file = isinstance(source, str | os.PathLike) and Path(source).suffix.lower() == ".csv"
    if wkt_column is not None and not csv_file:
        raise ConfigurationError(
            f"wkt_column={wkt_column!r} names a column of a CSV file, and the source is not "
            "one: leave it out (other sources' geometry columns are known by their type)"
        )
    if isinstance(source, str | os.PathLike):
        return _file_batches(Path(source), columns, geometry_column, size, wkt_column, check)
    if _is_dataframe(source):
        return _dataframe_batches(source, columns, geometry_column, size, check)
    if hasattr(source, "__aiter__") and not isinstance(source, Iterable):
        raise ConfigurationError(
            f"cannot ingest a {type(source).__name__} with db.ingest: it is an async "
            "iterable, so load it with `await db.async_ingest(...)`"
        )
    if isinstance(source, bytes | bytearray | Mapping) or not isinstance(source, Iterable):
        raise ConfigurationError(
            f"cannot ingest a {type(source).__name__}: pass an iterable of rows "
            f"(dicts, tuples or mapped instances), a GeoDataFrame or a path to a {_SUPPORTED} file"
        )
    return _iterable_batches(source, columns, size, flush_interval, stopped, check)


def source_length(source: Any) -> int | None:
    """How many rows ``source`` has, when that is known without reading it; else None."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.suffix.lower() not in VECTOR_SUFFIXES or not path.is_file():
            return None  # CSV rows are unknown without a full pass (quoted newlines)
        try:
            import pyogrio

            count = int(pyogrio.read_info(path)["features"])
        except Exception:
            return None
        return count if count >= 0 else None
    if isinstance(source, Sequence) or _is_dataframe(source):
        return len(source)
    return None


# -- iterables -------------------------------------------------------------------------


def _iterable_batches(
    rows: Iterable[Any],
    columns: Sequence[str],
    size: Callable[[], int],
    flush_interval: float | None,
    stopped: Callable[[], bool],
    check: CheckFields,
) -> Iterator[Batch]:
    """Pull rows lazily: a generator is never consumed past the batch being built (nor,
    with a flush interval, past the two batches its pulling thread gathers ahead)."""
    allowed = frozenset(columns)
    first = 1
    for raw, cut in _pulled(iter(rows), size, flush_interval, stopped):
        if not raw:  # a quiet source: send on what came before
            yield Batch(first, {}, flush=True)
            continue
        batch = _fast_batch(raw, first, columns, allowed) or _columnar(
            [_row_values(row, first + i, columns, allowed, check) for i, row in enumerate(raw)],
            first,
            columns,
        )
        yield dataclasses.replace(batch, flush=True) if cut else batch
        first += len(raw)


def _pulled(
    iterator: Iterator[Any],
    size: Callable[[], int],
    flush_interval: float | None,
    stopped: Callable[[], bool],
) -> Iterator[tuple[list[Any], bool]]:
    """Lists of rows, and whether each was cut short by the flush interval."""
    if flush_interval is not None:
        yield from timed_batches(iterator, size, flush_interval, stopped)
        return
    while raw := list(itertools.islice(iterator, size())):
        yield raw, False


def _fast_batch(
    raw: list[Any], first: int, columns: Sequence[str], allowed: frozenset[str]
) -> Batch | None:
    """A batch of plain dicts or full-width tuples, checked once per batch instead of per row.

    None when the batch needs the row-by-row path (which also names a faulty row).
    """
    if all(type(row) is tuple and len(row) == len(columns) for row in raw):
        return Batch(first, dict(zip(columns, map(list, zip(*raw, strict=True)), strict=True)))
    if not all(type(row) is dict and row for row in raw):
        return None
    present: set[str] = set().union(*raw)
    if not present <= allowed:
        return None
    names = [name for name in columns if name in present]
    return Batch(first, {name: [row.get(name) for row in raw] for name in names})


def _row_values(
    row: Any, number: int, columns: Sequence[str], allowed: frozenset[str], check: CheckFields
) -> Mapping[str, Any]:
    if type(row) is dict or isinstance(row, Mapping):  # the exact-type test is the fast path
        values: Mapping[str, Any] = row
    elif isinstance(row, tuple | list):
        if len(row) != len(columns):
            raise ConfigurationError(
                f"row {number} has {len(row)} values; the target has {len(columns)} columns: "
                f"{', '.join(columns)}"
            )
        return dict(zip(columns, row, strict=True))
    else:
        values = _instance_values(row, number)
    if not values.keys() <= allowed:
        check(list(values), where=f"row {number}")
    if not values:
        raise ConfigurationError(f"row {number} has no value for any column of the target")
    return values


def _instance_values(obj: Any, number: int) -> dict[str, Any]:
    """Column values of a mapped instance; attributes a new instance never set are left out."""
    state = inspect(obj, raiseerr=False)
    if not isinstance(state, InstanceState):
        raise ConfigurationError(
            f"row {number} is a {type(obj).__name__}: rows must be dicts, tuples, lists "
            "or mapped instances"
        )
    new = state.key is None  # transient or pending: unset means "use the default"
    values: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        column = attr.columns[0]
        if isinstance(column, Column) and (not new or attr.key in state.dict):
            values[column.name] = state.dict[attr.key] if new else getattr(obj, attr.key)
    return values


def _columnar(rows: list[Mapping[str, Any]], first: int, columns: Sequence[str]) -> Batch:
    present = set().union(*(row.keys() for row in rows))
    names = [name for name in columns if name in present]
    return Batch(first, {name: [row.get(name) for row in rows] for name in names})


# -- DataFrames ------------------------------------------------------------------------


def _is_dataframe(source: Any) -> bool:
    module = type(source).__module__
    return module.startswith(("geopandas", "pandas")) and hasattr(source, "iloc")


def _dataframe_batches(
    frame: Any,
    columns: Sequence[str],
    geometry_column: str | None,
    size: Callable[[], int],
    check: CheckFields,
) -> Iterator[Batch]:
    active = getattr(getattr(frame, "geometry", None), "name", None)
    names = {label: _target_name(str(label), active, columns, geometry_column) for label in frame}
    check(list(names.values()), where="the DataFrame")
    series = {label: frame[label] for label in names}
    epsg = {names[label]: _epsg(column) for label, column in series.items()}
    srids = {name: srid for name, srid in epsg.items() if srid is not None}

    def batches() -> Iterator[Batch]:
        start = 0
        while start < len(frame):
            stop = start + size()
            values = {names[label]: _values(s.iloc[start:stop]) for label, s in series.items()}
            yield Batch(start + 1, {c: values[c] for c in columns if c in values}, srids)
            start = min(stop, len(frame))

    return batches()


def _values(part: Any) -> list[Any]:
    """Geometry columns: shapely objects; others: Python values, pandas NA -> None."""
    if str(part.dtype) == "geometry":
        return list(part.to_numpy().tolist())
    if not part.hasnans:  # the common case: no second pass over the values
        return list(part.tolist())
    return list(part.astype(object).where(part.notna(), None).tolist())


def _epsg(series: Any) -> int | None:
    if str(series.dtype) != "geometry" or series.crs is None:
        return None
    code = series.crs.to_epsg()
    return int(code) if code is not None else None


# -- files -----------------------------------------------------------------------------


def _file_batches(
    path: Path,
    columns: Sequence[str],
    geometry_column: str | None,
    size: Callable[[], int],
    wkt_column: str | None,
    check: CheckFields,
) -> Iterator[Batch]:
    suffix = path.suffix.lower()
    if suffix != ".csv" and suffix not in VECTOR_SUFFIXES:
        raise ConfigurationError(f"cannot ingest {path}: unsupported file type; use {_SUPPORTED}")
    if not path.is_file():
        raise ConfigurationError(f"cannot ingest {path}: no such file")
    if suffix == ".csv":
        return _csv_batches(path, columns, geometry_column, size, wkt_column, check)
    try:
        import pyarrow  # noqa: F401  (open_arrow needs it)
        import pyogrio
    except ImportError as error:
        raise ConfigurationError(
            f"reading {path} needs pyogrio and pyarrow: pip install 'geosession[geo]'"
        ) from error
    return _vector_batches(pyogrio, path, columns, geometry_column, size, check)


def _vector_batches(
    pyogrio: Any,
    path: Path,
    columns: Sequence[str],
    geometry_column: str | None,
    size: Callable[[], int],
    check: CheckFields,
) -> Iterator[Batch]:
    """The layer's record batches, cut into batches of ``size()`` rows without copying."""
    unreadable = (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError)
    try:
        with pyogrio.open_arrow(path, batch_size=_FILE_BATCH, use_pyarrow=True) as (meta, reader):
            geometry = meta["geometry_name"] or "wkb_geometry"  # pyogrio's name for no name
            fields = [str(name) for name in reader.schema.names]
            names = {f: _target_name(f, geometry, columns, geometry_column) for f in fields}
            check(list(names.values()), where=str(path))
            srid, first = _crs_code(meta["crs"]), 1
            srids = {names[geometry]: srid} if srid is not None and geometry in names else {}
            for record_batch in reader:
                offset = 0
                while offset < record_batch.num_rows:
                    part = record_batch.slice(offset, size())
                    values = {names[f]: part.column(f).to_pylist() for f in names}  # WKB
                    yield Batch(first, {c: values[c] for c in columns if c in values}, srids)
                    first += part.num_rows
                    offset += part.num_rows
    except unreadable as error:
        raise ConfigurationError(f"cannot read {path} as {_SUPPORTED}: {error}") from error


def _csv_batches(
    path: Path,
    columns: Sequence[str],
    geometry_column: str | None,
    size: Callable[[], int],
    wkt_column: str | None,
    check: CheckFields,
) -> Iterator[Batch]:
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    with _utf8(path), path.open(newline="", encoding="utf-8-sig") as handle:
        delimiter = _delimiter(handle.readline())
        handle.seek(0)
        header = next(csv.reader(handle, delimiter=delimiter), [])
    wkt = _wkt_column(header, geometry_column, wkt_column, path)
    names = [_target_name(h, wkt, columns, geometry_column) for h in header]
    check(names, where=str(path))
    order = sorted(range(len(names)), key=lambda i: columns.index(names[i]))

    def batches() -> Iterator[Batch]:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            with _utf8(path):
                next(reader, None)
                rows = (row for row in reader if row)  # blank lines are not rows
                first = 1
                while chunk := list(islice(rows, size())):
                    _check_widths(chunk, len(names), first, path)
                    values = {names[i]: [row[i] or None for row in chunk] for i in order}
                    yield Batch(first, values)
                    first += len(chunk)

    return batches()


def _delimiter(header: str) -> str:
    """The separator the header line uses most (outside quotes): a comma unless it has
    none, then a semicolon (spreadsheets in comma-decimal locales), tab or bar."""
    return max(_CSV_DELIMITERS, key=re.sub(r'"[^"]*"', "", header).count)


@contextlib.contextmanager
def _utf8(path: Path) -> Iterator[None]:
    """A file that is not UTF-8 is refused naming the line, instead of a decoding traceback."""
    try:
        yield
    except UnicodeDecodeError:
        line, byte = _first_undecodable(path)
        raise ConfigurationError(
            f"{path} is not UTF-8 text: byte 0x{byte:02x} on line {line} cannot be decoded. "
            f"Convert the file, e.g. iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}"
        ) from None


def _first_undecodable(path: Path) -> tuple[int, int]:
    """The line and byte where UTF-8 decoding first fails (a newline never splits a
    character, so lines decode on their own)."""
    with path.open("rb") as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return number, line[error.start]
    return 0, 0


def _check_widths(chunk: list[list[str]], width: int, first: int, path: Path) -> None:
    for offset, row in enumerate(chunk):
        if len(row) != width:
            raise ConfigurationError(
                f"{path}: row {first + offset} has {len(row)} fields; the header has {width}"
            )


def _wkt_column(
    header: list[str], geometry_column: str | None, wkt_column: str | None, path: Path
) -> str | None:
    if wkt_column is not None:
        if wkt_column not in header:
            raise ConfigurationError(f"{path} has no column {wkt_column!r}: {', '.join(header)}")
        return wkt_column
    candidates = ((geometry_column,) if geometry_column else ()) + WKT_NAMES
    folded = {name.casefold(): name for name in reversed(header)}  # the first of a case
    return next((folded[c.casefold()] for c in candidates if c.casefold() in folded), None)


# -- shared ----------------------------------------------------------------------------


def _target_name(
    name: str, geometry: str | None, columns: Sequence[str], geometry_column: str | None
) -> str:
    """The source's geometry field lands in the geometry column unless it names a column;
    another field lands in the column of its name, or of its name in any case when only one
    column has it (a Shapefile's NAME in name, as ogr2ogr's laundering does)."""
    if name in columns:
        return name
    if name == geometry and geometry_column is not None:
        return geometry_column
    folded = [column for column in columns if column.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else name


def _check_fields(
    names: list[str], *, where: str, columns: Sequence[str], computed: frozenset[str]
) -> None:
    generated = [name for name in names if name in computed]
    if generated:
        raise ConfigurationError(
            f"{where} has values for {', '.join(map(repr, generated))}: generated column(s) "
            "of the target (GENERATED ALWAYS), which the server computes or numbers. Leave "
            "them out of the source; to load your own values into an identity column, make "
            "it GENERATED BY DEFAULT (ALTER TABLE ... ALTER COLUMN ... SET GENERATED BY "
            "DEFAULT)"
        )
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise ConfigurationError(
            f"{where} has fields that are not columns of the target: "
            f"{', '.join(map(repr, unknown))}; the target's columns: {', '.join(columns)}. "
            "Add those columns to the table, or leave the fields out of the source"
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ConfigurationError(f"{where}: several fields map to {', '.join(duplicated)}")


def _crs_code(crs: str | None) -> int | None:
    match = re.fullmatch(r"EPSG:(\d+)", crs or "")
    return int(match.group(1)) if match else None
