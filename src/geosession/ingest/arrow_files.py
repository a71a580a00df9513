"""Arrow IPC files: the file format (Feather v2, as geopandas' ``to_feather`` writes it,
GDAL's ``.arrow``) and the stream format (``.arrows``), read a record batch at a time
with pyarrow (not memory-mapped: the mapped pages would count in the process's RSS, 330 MB
against 160 MB for 1M polygons), their geometry told as in GeoParquet (``geo`` metadata,
or GeoArrow extensions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geosession.errors import ConfigurationError

ARROW_FILE_SUFFIXES = (".arrow", ".feather", ".ipc", ".arrows")


def open_arrow_file(path: Path) -> Any:
    """A pyarrow RecordBatchReader over the file's record batches (the file format's, one
    at a time, or the stream format's)."""
    pyarrow, ipc = _pyarrow(path)
    try:
        source = pyarrow.OSFile(str(path))
        try:
            file = ipc.open_file(source)
        except pyarrow.ArrowInvalid:  # no file footer: the stream format
            source.seek(0)
            return ipc.open_stream(source)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigurationError(f"cannot read {path} as an Arrow IPC file: {error}") from error
    batches = (file.get_batch(number) for number in range(file.num_record_batches))
    return pyarrow.RecordBatchReader.from_batches(file.schema, batches)


def arrow_file_length(path: Path) -> int | None:
    """The rows of a file in the file format, from its batches' headers; None for the
    stream format, which says only as it is read."""
    pyarrow, ipc = _pyarrow(path)
    try:
        with pyarrow.OSFile(str(path)) as source:
            return int(ipc.open_file(source).count_rows())
    except (OSError, ValueError):
        return None


def _pyarrow(path: Path) -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.ipc
    except ImportError as error:
        raise ConfigurationError(
            f"reading {path} needs pyarrow: pip install 'geosession[geo]'"
        ) from error
    return pyarrow, pyarrow.ipc
