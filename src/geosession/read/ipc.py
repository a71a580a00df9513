"""Arrow IPC files (Feather v2) from a stream (``geo`` extra), a record batch per fetch.

The batches and schema are :func:`read.arrow.arrow_stream`'s: geometries as GeoArrow WKB
with their CRS, and GeoParquet's ``geo`` metadata from the columns' declared types, which
geopandas' ``read_feather`` reads. The schema comes first in the file, so that metadata
holds what is known before the rows (no bounding box).
"""

from __future__ import annotations

import os
from typing import IO, Any

from geosession.read.arrow import arrow_stream, pyarrow
from geosession.read.geojson import Progress, atomic_output
from geosession.read.stream import GeometryStream

_COMPRESSION = "lz4"
"""As Feather's writers compress by default (readers decompress a batch at a time)."""


def write_arrow_file(
    stream: GeometryStream, dest: str | os.PathLike[str] | IO[bytes], *, progress: Progress | None
) -> int:
    """Writes ``stream`` as an Arrow IPC file to ``dest`` (a path, or a binary file such as
    standard output: the footer comes last, nothing is written twice); returns the rows."""
    pa = pyarrow()
    with stream, atomic_output(dest, ".arrow") as sink:
        return _write(pa, stream, sink, progress)


def _write(pa: Any, stream: GeometryStream, sink: Any, progress: Progress | None) -> int:
    count = 0
    options = pa.ipc.IpcWriteOptions(compression=_COMPRESSION)
    with (
        arrow_stream(stream) as batches,
        pa.ipc.new_file(sink, batches.schema, options=options) as writer,
    ):
        for batch in batches:
            writer.write_batch(batch)
            count += batch.num_rows
            if progress is not None:
                progress(count)
    return count
