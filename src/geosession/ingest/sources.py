"""Ingest sources: whatever the user passes, as column-wise batches of bounded size.

A source is never read whole: iterables are pulled ``batch_size`` rows at a time, a
GeoDataFrame is sliced, and files are streamed (:mod:`geosession.ingest.files`), so
memory stays flat whatever the size.

- Geometries from GeoDataFrames arrive as shapely objects, and the batch carries the
  frame's EPSG SRID for geometries without one; iterables pass their values through
  untouched.
- Batch columns follow the target's column order and hold only the columns the source
  has, so columns it lacks keep their server defaults; what rows of an iterable may be is
  :mod:`geosession.ingest.iterables`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.sql import ClauseElement

from geosession.errors import ConfigurationError
from geosession.geometry import Bbox
from geosession.ingest.arrow_streams import (
    arrow_length,
    arrow_stream_batches,
    is_arrow_stream,
    opened_once,
)
from geosession.ingest.batches import Batch, Landing, check_fields, geometry_field, repeated
from geosession.ingest.crs import SourceCrs, source_crs
from geosession.ingest.features import feature_collection, is_geojson_text
from geosession.ingest.file_read import FileRead, check_rename
from geosession.ingest.files import (
    SUPPORTED,
    file_batches,
    file_kind,
    file_length,
    refuse_empty,
    refuse_url,
)
from geosession.ingest.held_geometries import frame_geometries
from geosession.ingest.iterables import iterable_batches
from geosession.ingest.json_records import RecordsForm, json_rows, record_keys, records_form
from geosession.ingest.points import series_points


def iter_batches(
    source: Any,
    *,
    columns: Sequence[str],
    geometry_column: str | None,
    batch_size: int | Callable[[], int] = 10_000,
    wkt_column: str | None = None,
    layer: str | None = None,
    flush_interval: float | None = None,
    stopped: Callable[[], bool] = lambda: False,
    computed: Mapping[str, str] | None = None,
    attributes: Mapping[str, str] | None = None,
    feature_ids: bool = False,
    encoding: str | None = None,
    where: str | None = None,
    bbox: Bbox | None = None,
    rename: Mapping[str, str] | None = None,
    xy_columns: tuple[str, ...] | None = None,
    left_out: set[str] | None = None,
    found: set[str] | None = None,
    defaulted: frozenset[str] = frozenset(),
    geometry_z: bool = False,
    geometry_m: bool = False,
    typed_from: int = 0,
) -> Iterator[Batch]:
    """Batches of at most ``batch_size`` rows from ``source``, in source order.

    ``batch_size`` may be a function, asked before each batch, so that a caller can
    shrink batches once it knows how large the rows are. With ``flush_interval``, a batch
    of an iterable is cut short (and marked ``flush``) once its first row has waited that
    many seconds, also while the source waits for its next row (and ``stopped()`` then
    ends the batches without waiting for it). Cheap checks (file present and supported,
    DataFrame or CSV header fields) raise here; a vector file's fields are checked when
    it is opened, before its first batch. ``columns`` are those a source may fill;
    ``computed`` maps the target's generated columns to what generates them, for the error
    when a source has them (or, with ``left_out``, to leave them out).
    ``attributes`` maps a mapped class's attribute names to their columns' names where they
    differ, so dict rows may be keyed either way (as in an ORM bulk insert).
    ``feature_ids`` loads a vector file's feature ids, where its layer names its id column
    (a GeoPackage's fid), into the column of that name, if there is one. ``encoding``
    is the text encoding of a Shapefile or CSV file (see :mod:`.encodings`); ``where``
    and ``bbox`` filter a vector file's features, ``rename`` maps a file's field names
    to columns, and ``xy_columns`` names the coordinate columns of a CSV, a DataFrame or dict
    rows (:mod:`.points`; :class:`.files.FileRead`), whose points are 3D with a field of
    heights where ``geometry_z`` (the geometry column has Z), and refused where
    ``geometry_m`` (it has M).
    ``left_out``: fields that are no column of the target (or a generated one) are added
    to it and not loaded, instead of refused. ``found``: where the field found by its
    values to hold the geometries is noted (:mod:`.held_geometries`). ``defaulted``:
    columns with a default (Python's, or the table's), whose value a dict row or new
    instance lacks is MISSING (not None) for :mod:`.defaults` or the server
    (:mod:`.lacking`) to fill.
    """
    if (isinstance(batch_size, int) and batch_size < 1) or not columns:
        raise ConfigurationError("iter_batches needs batch_size >= 1 and the target's columns")
    size = batch_size if callable(batch_size) else (lambda: batch_size)
    check = functools.partial(
        check_fields,
        columns=columns,
        computed=computed or {},
        left_out=left_out,
        typed_from=typed_from,
    )
    read = FileRead(wkt_column, layer, encoding, where, bbox, feature_ids, rename, xy_columns)
    landing = Landing(columns, geometry_column, size, check, geometry_z, geometry_m, found)
    if isinstance(source, str | os.PathLike):
        form = records_checked(Path(source), read)
        if form is None:
            return file_batches(Path(source), landing, read)
        source = json_rows(Path(source), form, read.rename)
    else:
        check_read(source, read)
    if is_dataframe(source):
        return _dataframe_batches(source, landing, xy_columns)
    if is_arrow_stream(source):
        return arrow_stream_batches(source, landing, xy_columns)
    if hasattr(source, "__aiter__") and not isinstance(source, Iterable):
        raise ConfigurationError(
            f"cannot ingest a {type(source).__name__} with db.ingest: it is an async "
            "iterable, so load it with `await db.async_ingest(...)`"
        )
    if isinstance(source, bytes | bytearray | Mapping) or not isinstance(source, Iterable):
        statement = (
            "; a statement's rows: pass db.stream(statement) (within one database, "
            "INSERT ... SELECT moves them without leaving the server)"
            if isinstance(source, ClauseElement)
            else ""
        )
        raise ConfigurationError(
            f"cannot ingest a {type(source).__name__}: pass an iterable of rows "
            f"(dicts, tuples, mapped instances, GeoJSON Features or shapely geometries), a "
            f"GeoJSON FeatureCollection, a GeoDataFrame, Arrow data (a pyarrow Table or "
            f"RecordBatchReader) or a path to a {SUPPORTED} file{statement}"
        )
    return iterable_batches(
        source, landing, flush_interval, stopped, attributes, defaulted, xy_columns
    )


_NO_OPTIONS = FileRead()


def opened(source: Any, read: FileRead = _NO_OPTIONS) -> Any:
    """``source`` as the load (and create=True) reads it: Arrow data opened once, since a
    stream gives its rows once (DataFrames, which export Arrow too, are read as frames);
    a GeoJSON FeatureCollection as its features; a path as it is.
    Options ``read`` holds that do not apply to it are refused here, before create=True
    makes a table for it."""
    if isinstance(source, str | os.PathLike) and not is_geojson_text(source):
        path = Path(source)
        refuse_url(str(source))
        refuse_empty(path)
        records_checked(path, read)
        return source
    check_read(source, read)
    if is_dataframe(source):  # its __geo_interface__ is a FeatureCollection too
        return _as_frame(source)
    return opened_once(feature_collection(source))


def records_checked(path: Path, read: FileRead) -> RecordsForm | None:
    """How a file of JSON records (an API's, not GeoJSON: :mod:`.json_records`) holds
    them, read as dict rows; None for any other file. The options of ``read`` that do not
    apply to the file are refused (``layer`` names an object's member of records)."""
    form = records_form(path, read.layer)
    if form is None:
        read.check(file_kind(path), str(path))
        return None
    read.check("json object" if form.kind == "object" else "json", f"{path} (JSON records)")
    if read.rename:
        check_rename(read.rename, record_keys(path, form), path)
    return form


def check_read(source: Any, read: FileRead) -> None:
    """Refuses the options of ``read`` that do not apply to a source that is no file."""
    kind = "arrow data" if is_arrow_stream(source) else "rows"  # takes xy_columns alone
    read.check("frame" if is_dataframe(source) else kind, f"the source (a {type(source).__name__})")


def _as_frame(source: Any) -> Any:
    """A DataFrame as it is; a GeoSeries as the frame of its geometries (its CRS kept)."""
    if hasattr(source, "columns"):
        return source
    if type(source).__name__ == "GeoSeries":
        import geopandas

        return geopandas.GeoDataFrame(geometry=source)
    raise ConfigurationError(
        f"cannot ingest a pandas {type(source).__name__}: it is one column; pass "
        "series.to_frame('<column>') or a DataFrame"
    )


def source_length(source: Any, layer: str | None = None, *, filtered: bool = False) -> int | None:
    """How many rows ``source`` has, when that is known without reading it; else None
    (also for a ``filtered`` file: GDAL counts a layer's features, not those a filter keeps)."""
    if isinstance(source, str | os.PathLike):
        return None if filtered else file_length(Path(source), layer)
    if isinstance(source, Sequence) or is_dataframe(source):
        return len(source)
    return arrow_length(source) if is_arrow_stream(source) else None


# -- DataFrames ------------------------------------------------------------------------


def is_dataframe(source: Any) -> bool:
    module = type(source).__module__
    return module.startswith(("geopandas", "pandas")) and hasattr(source, "iloc")


def _dataframe_batches(
    frame: Any, landing: Landing, xy_columns: tuple[str, ...] | None = None
) -> Iterator[Batch]:
    columns, size = landing.columns, landing.size
    _check_frame_labels(frame, landing)
    active = getattr(getattr(frame, "geometry", None), "name", None)
    if active is None and xy_columns is None:  # a DataFrame's WKT or WKB column
        active = geometry_field([str(label) for label in frame], landing) or _held(frame, landing)
    names = {label: landing.column_for(str(label), active) for label in frame}
    points = landing.coordinate_fields(
        [str(label) for label in frame],
        landing.geometry_column in names.values(),
        xy_columns,
        "the DataFrame",
    )
    if active is not None and names.get(active) not in columns and landing.geometry_column is None:
        raise ConfigurationError(
            f"the GeoDataFrame's geometry column {active!r} is not a column of the target, "
            "which has several geometry columns (or none) for it to land in: name it after "
            f"the one it is for, e.g. frame.rename_geometry('geom'); the target's columns: "
            f"{', '.join(columns)}"
        )
    names = landing.land(names, points, "the DataFrame")
    series = {label: frame[label] for label in names}
    found = {names[label]: crs_of(column) for label, column in series.items()}
    known = {name: crs for name, crs in found.items() if crs is not None}
    known |= landing.points_crs(points)  # longitude and latitude: 4326

    def batches() -> Iterator[Batch]:
        start = 0
        while start < len(frame):
            stop = start + size()
            values = {names[label]: _values(s.iloc[start:stop]) for label, s in series.items()}
            if points is not None:
                coordinates = [frame[name].iloc[start:stop] for name in points.fields]
                values[str(landing.geometry_column)] = series_points(coordinates, points.fields)
            yield Batch(start + 1, {c: values[c] for c in columns if c in values}, known)
            start = min(stop, len(frame))

    return batches()


def _held(frame: Any, landing: Landing) -> str | None:
    """The name of a DataFrame's one column of geometries under a name of its own, for the
    target's one geometry column that no column of the frame names."""
    labels = {str(label): label for label in frame.columns}

    def judge(unnamed: list[str]) -> str | None:
        found = frame_geometries(frame, [labels[name] for name in unnamed])
        return None if found is None else str(found)

    return landing.held_field(list(labels), judge, "the DataFrame")


def _check_frame_labels(frame: Any, landing: Landing) -> None:
    """Refuses column labels that repeat (which column would land?) and an index named
    after a column of the target that the frame has no column for: as in to_postgis, the
    index is not loaded, so its values would be left behind unseen."""
    labels = [str(label) for label in frame.columns]
    twice = repeated(labels)
    if twice:
        raise ConfigurationError(
            f"the DataFrame has more than one column named {twice[0]!r}: keep one "
            f"(frame.loc[:, ~frame.columns.duplicated()]) or rename the others"
        )
    landed = {landing.column_for(label, None) for label in labels}
    named = [str(name) for name in frame.index.names if name is not None]
    indexed = {name: landing.column_for(name, None) for name in named}
    left = [
        n for n, column in indexed.items() if column in landing.columns and column not in landed
    ]
    if left:
        raise ConfigurationError(
            f"the DataFrame's index is named {left[0]!r}, a column of the target, and the "
            "index is not loaded (as in GeoDataFrame.to_postgis): load it with "
            "frame.reset_index(), or leave it out with frame.reset_index(drop=True)"
        )


def _values(part: Any) -> list[Any]:
    """Geometry columns: shapely objects; others: Python values, pandas NA -> None."""
    if str(part.dtype) == "geometry":
        return list(part.to_numpy().tolist())
    if not part.hasnans:  # the common case: no second pass over the values
        return list(part.tolist())
    return list(part.astype(object).where(part.notna(), None).tolist())


def crs_of(series: Any) -> SourceCrs | None:
    """A GeoSeries's CRS (None: none, or not geometries)."""
    return source_crs(series.crs) if str(series.dtype) == "geometry" else None
