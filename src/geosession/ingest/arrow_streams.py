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

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from geosession.errors import ConfigurationError
from geosession.ingest.batches import Batch, CheckFields, target_name
from geosession.ingest.crs import SourceCrs
from geosession.ingest.files import arrow_batches, geoparquet_columns, projjson_crs

_GATHER = 10_000
"""Rows a record batch is joined up to (as many as a file's record batch holds)."""
_ENCODINGS = frozenset({"geoarrow.wkb", "geoarrow.wkt", "ogc.wkb"})
"""GeoArrow extensions whose values are WKB or WKT, as the readers take geometries."""


def is_arrow_stream(source: Any) -> bool:
    """Whether ``source`` exports Arrow data (the C stream interface)."""
    return hasattr(source, "__arrow_c_stream__")


def arrow_stream_batches(
    source: Any,
    columns: Sequence[str],
    geometry_column: str | None,
    size: Callable[[], int],
    check: CheckFields,
) -> Iterator[Batch]:
    """Batches of ``size()`` rows of an Arrow source, its fields checked first."""
    try:
        import pyarrow
    except ImportError as error:
        raise ConfigurationError(
            f"reading a {type(source).__name__} (Arrow data) needs pyarrow: "
            "pip install 'geosession[geo]'"
        ) from error
    where = f"the {type(source).__name__}"
    reader = pyarrow.RecordBatchReader.from_stream(source)
    geo = geoparquet_columns(reader.schema.metadata, where)
    extensions = _geoarrow_columns(pyarrow, reader.schema, where)
    crs = {**geo.crs, **extensions}
    primary = geo.primary or next(iter(extensions), None)
    fields = geo.fields(reader.schema.names)
    names = {f: target_name(f, primary, columns, geometry_column) for f in fields}
    check(list(names.values()), where=where)
    names = {f: name for f, name in names.items() if name in columns}  # left out: unread
    known = {names[c]: value for c, value in crs.items() if value is not None and c in names}
    batches = (_storage(pyarrow, batch) for batch in _gathered(pyarrow, reader))
    return arrow_batches(batches, names, columns, size, known)


def _gathered(pyarrow: Any, reader: Any) -> Iterator[Any]:
    """The reader's record batches, small ones joined into one of at least _GATHER rows:
    a stream of one-row batches (a producer that sends rows as they come) would otherwise
    cost a pipeline pass per row."""
    waiting: list[Any] = []
    rows = 0
    for batch in reader:
        waiting.append(batch)
        rows += batch.num_rows
        if rows >= _GATHER:
            yield _joined(pyarrow, waiting)
            waiting, rows = [], 0
    if waiting:
        yield _joined(pyarrow, waiting)


def _joined(pyarrow: Any, batches: list[Any]) -> Any:
    if len(batches) == 1:
        return batches[0]
    table = pyarrow.Table.from_batches(batches).combine_chunks()
    return table.to_batches()[0] if table.num_rows else batches[0]


def arrow_length(source: Any) -> int | None:
    """Rows of an Arrow source that knows them without being read (a Table, a DataFrame;
    not a stream)."""
    rows = getattr(source, "num_rows", None)
    if isinstance(rows, int):
        return rows
    return len(source) if hasattr(source, "__len__") else None


def _geoarrow_columns(pyarrow: Any, schema: Any, where: str) -> dict[str, SourceCrs | None]:
    """Each GeoArrow WKB or WKT column's CRS (None: unknown); GeoArrow's native encodings
    (separated coordinates) are refused."""
    found: dict[str, SourceCrs | None] = {}
    for field in schema:
        name, metadata = _extension(pyarrow, field)
        if name is None or not name.startswith(("geoarrow.", "ogc.")):
            continue
        if name not in _ENCODINGS:
            raise ConfigurationError(
                f"{where}: column {field.name} is in GeoArrow's {name} encoding; geosession "
                "reads geometries as WKB or WKT. Convert it first, e.g. with "
                "geoarrow.pyarrow's as_wkb, or select ST_AsWKB(geom) in DuckDB"
            )
        crs = json.loads(metadata).get("crs") if metadata else None
        found[field.name] = projjson_crs(crs)
    return found


def _extension(pyarrow: Any, field: Any) -> tuple[str | None, bytes | None]:
    """A field's extension name and metadata: its registered extension type's, else the
    field metadata an unregistered extension travels in."""
    if isinstance(field.type, pyarrow.ExtensionType):
        return field.type.extension_name, field.type.__arrow_ext_serialize__()
    metadata = field.metadata or {}
    name = metadata.get(b"ARROW:extension:name")
    return (name.decode() if name else None), metadata.get(b"ARROW:extension:metadata")


def _storage(pyarrow: Any, batch: Any) -> Any:
    """The batch with registered extension columns as their storage (WKB bytes, text)."""
    if not any(isinstance(kind, pyarrow.ExtensionType) for kind in batch.schema.types):
        return batch
    arrays = [
        column.storage if isinstance(column.type, pyarrow.ExtensionType) else column
        for column in batch.columns
    ]
    return pyarrow.RecordBatch.from_arrays(arrays, names=batch.schema.names)
