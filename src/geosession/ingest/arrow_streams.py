"""Ingest sources that are Arrow data in memory: a pyarrow Table, RecordBatch or
RecordBatchReader, or anything that exports the Arrow C stream interface
(``__arrow_c_stream__``: a polars DataFrame, a DuckDB result), read a record batch at a
time as a GeoParquet file is.

Geometry columns are told by their GeoArrow extension (``geoarrow.wkb`` is WKB,
``geoarrow.wkt`` text, the CRS in the extension's metadata), by GeoParquet's ``geo``
schema metadata (a Table read from a GeoParquet file keeps it), or else by name, as in a
plain Parquet file; their values are read as the WKB or text they hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from geosession.errors import ConfigurationError
from geosession.ingest.batches import Batch, Landing
from geosession.ingest.columnar_files import arrow_batches, extension_storage
from geosession.ingest.geo_columns import schema_geometry
from geosession.ingest.held_geometries import SAMPLE, arrow_geometries
from geosession.read.arrow import ArrowStream

_GATHER = 10_000
"""Rows a record batch is joined up to (as many as a file's record batch holds)."""


@dataclass(frozen=True)
class OpenedArrow:
    """An Arrow source opened once, as a pyarrow RecordBatchReader: the table made for it
    (create=True) reads the reader's schema and the load its batches, since a stream, or a
    DuckDB result's query, gives its rows once."""

    reader: Any
    kind: str
    """The source's type, which messages name (DataFrame, DuckDBPyRelation...)."""
    num_rows: int | None
    """Its rows when it held them (a Table, a polars DataFrame), for the progress bar."""
    ahead: list[Any] = field(default_factory=list, compare=False, repr=False)
    """Record batches read ahead (for create=True to sample), which the load reads first."""

    @property
    def where(self) -> str:
        return f"the {self.kind}"

    def read_ahead(self, rows: int) -> list[Any]:
        """The first record batches, of ``rows`` rows or more (fewer at the end of the
        data), read now and kept for :meth:`batches`."""
        while sum(batch.num_rows for batch in self.ahead) < rows:
            try:
                self.ahead.append(self.reader.read_next_batch())
            except StopIteration:
                break
        return list(self.ahead)

    def batches(self) -> Iterator[Any]:
        """Every record batch once: those read ahead, then the rest."""
        while self.ahead:
            yield self.ahead.pop(0)
        yield from self.reader

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        reader = self.reader
        if self.ahead:
            import pyarrow

            reader = pyarrow.RecordBatchReader.from_batches(reader.schema, self.batches())
        return reader.__arrow_c_stream__(requested_schema)


def is_arrow_stream(source: Any) -> bool:
    """Whether ``source`` exports Arrow data (the C stream interface)."""
    return hasattr(source, "__arrow_c_stream__")


def opened_once(source: Any) -> Any:
    """An Arrow source as an :class:`OpenedArrow` (opened here, once); any other as it is."""
    if not is_arrow_stream(source) or isinstance(source, OpenedArrow):
        return source
    try:
        import pyarrow
    except ImportError as error:
        raise ConfigurationError(
            f"reading a {type(source).__name__} (Arrow data) needs pyarrow: "
            "pip install 'geosession[geo]'"
        ) from error
    reader = _own_reader(pyarrow, source)
    if reader is None:  # anything else is read through the C stream interface
        reader = pyarrow.RecordBatchReader.from_stream(source)
    return OpenedArrow(reader, type(source).__name__, arrow_length(source))


def _own_reader(pyarrow: Any, source: Any) -> Any:
    """The pyarrow reader a RecordBatchReader or db.stream_arrow's stream is, read as it
    is: through the C stream interface an error of its source (a lost connection) would
    arrive as an ArrowInvalid holding the error's text, not as the error."""
    if isinstance(source, ArrowStream):
        return source.reader
    return source if isinstance(source, pyarrow.RecordBatchReader) else None


def arrow_stream_batches(
    source: Any, landing: Landing, xy_columns: tuple[str, ...] | None = None
) -> Iterator[Batch]:
    """Batches of ``size()`` rows of an Arrow source, its fields checked first; without a
    geometry field, coordinate fields make points (``xy_columns``, :mod:`.points`)."""
    opened = opened_once(source)  # imports pyarrow, or says how to install it
    import pyarrow

    where, schema = opened.where, opened.reader.schema
    geo = schema_geometry(schema, where)
    read = partial(opened.read_ahead, SAMPLE)  # kept for the load

    def held(names: list[str]) -> str | None:
        found = arrow_geometries(schema, names, read)
        return None if found is None else found[0]

    names, known, points = geo.targets(
        schema.names, landing, where, xy_columns=xy_columns, held=held
    )
    batches = (extension_storage(pyarrow, b) for b in _gathered(pyarrow, opened.batches()))
    return arrow_batches(batches, names, landing, known, native=geo.native, points=points)


def _gathered(pyarrow: Any, reader: Iterable[Any]) -> Iterator[Any]:
    """The reader's record batches, small ones joined into one of at least _GATHER rows:
    a stream of one-row batches (a producer that sends rows as they come) would otherwise
    cost a pipeline pass per row."""
    waiting: list[Any] = []
    rows = 0
    try:
        for batch in reader:
            waiting.append(batch)
            rows += batch.num_rows
            if rows >= _GATHER:
                yield _joined(pyarrow, waiting)
                waiting, rows = [], 0
    except Exception:  # a failing source's rows read before its error load too
        if waiting:
            yield _joined(pyarrow, waiting)
        raise
    if waiting:
        yield _joined(pyarrow, waiting)


def _joined(pyarrow: Any, batches: list[Any]) -> Any:
    if len(batches) == 1:
        return batches[0]
    table = pyarrow.Table.from_batches(batches).combine_chunks()
    return table.to_batches()[0] if table.num_rows else batches[0]


def arrow_length(source: Any) -> int | None:
    """Rows of an Arrow source that holds them (a pyarrow Table's num_rows, a polars
    DataFrame's height); else None. Not len(): a DuckDB relation's runs its query, and
    again for the load, which finds a one-time source (a stream it reads) spent."""
    for attribute in ("num_rows", "height"):
        rows = getattr(source, attribute, None)
        if isinstance(rows, int):
            return rows
    return None
