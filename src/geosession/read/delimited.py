"""CSV files from a stream (``geo`` extra): the geometry as WKT, the rest as text.

The stream's Arrow record batches (``read.arrow``, so every column keeps one type
whatever a chunk holds) are written by pyarrow's CSV writer, with the geometries as
WKT (every double exact) in the columns of their names, the form spreadsheets, QGIS's
delimited-text layers and ``geosession ingest`` read. bytea is written as PostgreSQL
prints it (``\\x`` and hex). The SRID is not in the file: say it when loading (``--srid``).
"""

from __future__ import annotations

import os
from typing import IO

from geosession.read.arrow import Chunk, pyarrow, record_batches
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

    def on_chunk(chunk: Chunk) -> None:
        nonlocal count
        count += chunk.rows
        if progress is not None:
            progress(count)

    with stream, atomic_output(dest, ".csv") as sink:
        _, schema, batches = record_batches(pa, stream, on_chunk, text=True)
        with csv.CSVWriter(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
    return count
