"""What names a load when the caller gives no ``ingest_id``.

The same file (its path, size and modification time; a folder's files for a File
Geodatabase or a folder of Shapefiles), read with the same layer and filters into the same
table, is the same load: running it again resumes after the rows it committed, and a
changed file is a new load. Other sources (rows, frames, streams, a named pipe) give no
such promise, so each run of theirs is a load of its own.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

from geosession.ingest.features import is_geojson_text


def file_identity(source: Path) -> str:
    """The file's path, size and modification time (a folder's: its files')."""
    files = sorted(source.iterdir()) if source.is_dir() else [source]
    stats = [path.stat() for path in files]
    size = sum(stat.st_size for stat in stats)
    changed = max((stat.st_mtime_ns for stat in stats), default=0)
    return f"{source.resolve()}|{size}|{changed}"


def ingest_id_for(
    identity: str,
    table: str,
    layer: str | None,
    where: str | None,
    bbox: Any,
    *,
    prefix: str,
) -> str:
    """The same data (``identity``), layer and filters into the same table: the same id."""
    key = f"{identity}|{table}"
    key += f"|{layer}" if layer is not None else ""  # ids of loads without one stay as they were
    key += f"|where {where}" if where is not None else ""
    key += f"|bbox {bbox}" if bbox is not None else ""
    return prefix + hashlib.sha1(key.encode()).hexdigest()[:16]


def default_ingest_id(
    source: Any, table: str, layer: str | None, where: str | None, bbox: Any
) -> str:
    """Derived from a file or folder ``source``; a fresh random id for anything else."""
    if isinstance(source, str | os.PathLike) and not is_geojson_text(source):
        path = Path(source)
        if path.is_file() or path.is_dir():
            return ingest_id_for(file_identity(path), table, layer, where, bbox, prefix="file-")
    return uuid.uuid4().hex
