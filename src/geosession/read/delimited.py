"""CSV files from a stream (``geo`` extra): the geometry as WKT, the rest as text.

The stream's Arrow record batches (``read.arrow``, so every column keeps one type
whatever a chunk holds) are written by pyarrow's CSV writer, with the geometries as
WKT (every double exact) in the columns of their names, the form spreadsheets, QGIS's
delimited-text layers and ``geosession ingest`` read. bytea is written as PostgreSQL
prints it (``\\x`` and hex). The SRID is not in the file: say it when loading (``--srid``).
"""

from __future__ import annotations

import os
from typing import IO, Any

from geosession.read.arrow import pyarrow, record_batches
from geosession.read.geojson import Progress, atomic_output
from geosession.read.stream import GeometryStream


def write_csv(
    stream: GeometryStream,
    dest: str | os.PathLike[str] | IO[bytes],
    *,
    progress: Progress | None,
) -> int:
    """Writes ``stream`` as CSV to ``dest`` (a path, or a binary file); returns the count."""
    pa = pyarrow()
    from pyarrow import csv

    count = 0

    def on_frame(frame: Any) -> None:
        nonlocal count
        count += len(frame)
        if progress is not None:
            progress(count)

    with stream, atomic_output(dest, ".csv") as sink:
        _, schema, batches = record_batches(pa, stream, on_frame, geometry="wkt")
        text_schema = pa.schema([_as_text(pa, field) for field in schema])
        with csv.CSVWriter(sink, text_schema) as writer:
            for batch in batches:
                writer.write_batch(_hex_binary(pa, batch, text_schema))
    return count


def _as_text(pa: Any, field: Any) -> Any:
    return pa.field(field.name, pa.string()) if pa.types.is_binary(field.type) else field


def _hex_binary(pa: Any, batch: Any, schema: Any) -> Any:
    """bytea columns as PostgreSQL's hex text (the CSV writer has no form for bytes)."""
    arrays = [
        pa.array([None if v is None else "\\x" + v.hex() for v in column.to_pylist()], pa.string())
        if pa.types.is_binary(column.type)
        else column
        for column in batch.columns
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
