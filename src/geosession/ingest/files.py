"""Ingest sources that are files: vector files through pyogrio, GeoParquet, and CSV.

- Vector files stream through ``pyogrio.open_arrow(batch_size=...)``: one open, one
  sequential pass. Measured (batch 10,000, polygons with two fields), peak RSS above the
  import baseline: GeoPackage +45 MB for 200,000 and for 1,000,000 features; FlatGeobuf
  +18 MB; GeoJSON +29 MB at 200,000, +69 MB at 1,000,000 (GDAL's reader keeps ~60 B per
  feature). The baseline itself is heavy: ``import pyogrio`` imports pandas and geopandas
  when installed, about 220 MB with geosession and pyarrow. ``read_dataframe`` with
  ``skip_features`` was rejected: it reopens the file per batch and is quadratic on
  GeoJSON (20 s against 1.8 s for 200,000 features). Hence pyarrow in the ``geo`` extra.
- GeoParquet is read with pyarrow (the GDAL in pyogrio's wheels has no Parquet driver)
  in record batches, a megabyte of a column chunk at a time; its WKB is read as it was
  stored. Measured: 1,000,000 polygons in one row group, read in batches of 20,000 in
  0.6 s with the peak RSS 137 MB above the baseline; loaded into an empty indexed table
  in 6.1 s (2.1 s of it the index rebuild).
- Geometries arrive as the WKB the driver read, and the batch carries the layer's EPSG
  SRID (None when the CRS has no EPSG code) for geometries without one.
- CSV values are ``str``, or None when empty: the writer uses binary COPY, so it must
  cast each value by its column's type; CSV geometry stays WKT text.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from geosession.errors import ConfigurationError
from geosession.geometry import authority_code
from geosession.ingest.archives import ARCHIVE_SUFFIXES, GdalSource, gdal_source
from geosession.ingest.batches import Batch, CheckFields, target_name
from geosession.ingest.crs import SourceCrs, source_crs
from geosession.ingest.encodings import (
    check_encoding,
    column_values,
    layer_text,
    text_codec,
    undecodable_refused,
)
from geosession.ingest.points import PointColumns, point_columns, point_texts
from geosession.read.layer_types import measured_types, name_unknown_with_dimensions

_GDAL_SUFFIXES = (
    ".gpkg",
    ".shp",
    ".geojson",
    ".json",
    ".fgb",
    ".kml",
    ".kmz",
    ".gpx",
    *ARCHIVE_SUFFIXES,
)
_SEQUENCE_SUFFIXES = (".geojsonl", ".geojsons", ".jsonl", ".ndjson")
"""GeoJSON Lines (GDAL's GeoJSONSeq, read a feature at a time), as export writes them."""
VECTOR_SUFFIXES = _GDAL_SUFFIXES + _SEQUENCE_SUFFIXES
"""Files read through GDAL (pyogrio)."""
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "wkt_geom")
"""A CSV's geometry column, when the header has one of these names in any case."""
SUPPORTED = (
    "GeoPackage, Shapefile, GeoJSON, FlatGeobuf, KML, GPX (zipped too: "
    + ", ".join(_GDAL_SUFFIXES)
    + "), GeoJSON Lines ("
    + ", ".join(_SEQUENCE_SUFFIXES)
    + "), GeoParquet (.parquet) or .csv"
)
_NAMED_ID_SUFFIXES = (".gpkg",)
"""Files whose layers name their id column, so their ids are data (GDAL numbers the
features of the others itself; asking pyogrio for those ids may clash with a field)."""
_PARQUET_BUFFER = 1 << 20
"""Bytes pyarrow reads of a column chunk at a time: without it (and with pre-buffering) a
1M-row row group of polygons raised the peak RSS by ~290 MB, with it by ~105 MB."""
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")
"""A column pandas stores for a DataFrame's index: not the data's."""
_CSV_DELIMITERS = ",;\t|"
"""In order of preference when a header has as many of one as of another (or none)."""
_CSV_FIELD_LIMIT = 2**31 - 1  # WKT of a large polygon exceeds csv's default 128 KiB
_FILE_BATCH = 10_000
"""Features per record batch read from a vector file; cut to the batch size asked for."""
_GEOJSON_SUFFIXES = (".geojson", ".json", *_SEQUENCE_SUFFIXES)
"""Files GDAL reads whole to open (GeoJSON: a first pass finds the fields' types) or to
count: asking their layers or length costs a pass over the file each time."""
_ONE_LAYER_SUFFIXES = (".shp", ".fgb", *_GEOJSON_SUFFIXES)


def file_length(path: Path, layer: str | None = None) -> int | None:
    """A vector or Parquet file's row count, read from its header; None for a CSV or a
    GeoJSON file (their rows are unknown without a full pass) or a file that cannot say."""
    suffix = path.suffix.lower()
    if suffix not in VECTOR_SUFFIXES + PARQUET_SUFFIXES or not path.is_file():
        return None
    if suffix in _GEOJSON_SUFFIXES:
        return None
    try:
        if suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet

            return int(pyarrow.parquet.ParquetFile(path).metadata.num_rows)
        import pyogrio

        with measured_types():
            source = gdal_source(path)
            info = pyogrio.read_info(source.name, layer=vector_layer(pyogrio, source, layer))
        count = int(info["features"])
    except Exception:
        return None
    return count if count >= 0 else None


Bbox = tuple[float, float, float, float]


@dataclass(frozen=True)
class FileRead:
    """How to read a source file: the options that apply to some kinds of file only."""

    wkt_column: str | None = None
    layer: str | None = None
    encoding: str | None = None
    where: str | None = None
    """An OGR SQL condition on a vector layer's fields: only the features it keeps load."""
    bbox: Bbox | None = None
    """Only a vector layer's features that intersect it load (in the layer's CRS)."""
    feature_ids: bool = False
    rename: Mapping[str, str] | None = None
    xy_columns: tuple[str, str] | None = None
    """A CSV's coordinate columns (x, y), when their names do not say them (:mod:`.points`)."""
    """Source field -> target column, for names the file cannot hold (a Shapefile's ten
    bytes: classifica -> classification_code)."""

    def check(self, kind: str, source: str) -> None:
        """Refuses an option given for a source (``kind``: "csv", "vector", "parquet" or
        "rows") it does not apply to, and a bbox that is no box."""
        for name, (kinds, purpose) in _FILE_OPTIONS.items():
            value = getattr(self, name)
            if value is not None and kind not in kinds:
                raise ConfigurationError(
                    f"{name}={value!r} {purpose}, and {source} is not one: leave it out"
                )
        box = self.bbox
        if box is not None and not (
            len(box) == 4 and all(map(math.isfinite, box)) and box[0] <= box[2] and box[1] <= box[3]
        ):
            raise ConfigurationError(
                f"bbox={box!r} is not (minx, miny, maxx, maxy) with min <= max, in the CRS of "
                "the file's layer"
            )


_FILE_OPTIONS = {
    "wkt_column": (("csv",), "names the geometry column of a CSV file"),
    "layer": (("vector",), "names a layer of a vector file (GeoPackage, ...)"),
    "encoding": (("csv", "vector"), "is the text encoding of a Shapefile or CSV file"),
    "where": (("vector",), "filters the features of a vector file (GeoPackage, Shapefile, ...)"),
    "bbox": (("vector",), "filters the features of a vector file (GeoPackage, Shapefile, ...)"),
    "xy_columns": (("csv",), "names the coordinate columns of a CSV file"),
    "rename": (
        ("csv", "vector", "parquet"),
        "renames a file's fields (a DataFrame's columns or rows' keys are renamed in Python)",
    ),
}


def file_kind(path: Path) -> str:
    """ "csv", "vector" or "parquet"; a file of no kind read here is refused."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in VECTOR_SUFFIXES:
        return "vector"
    raise ConfigurationError(f"cannot ingest {path}: unsupported file type; use {SUPPORTED}")


def file_batches(
    path: Path,
    columns: Sequence[str],
    geometry_column: str | None,
    size: Callable[[], int],
    check: CheckFields,
    read: FileRead = FileRead(),
) -> Iterator[Batch]:
    kind = file_kind(path)
    if not path.is_file():
        raise ConfigurationError(f"cannot ingest {path}: no such file")
    read.check(kind, str(path))
    check_encoding(read.encoding, path)
    if kind == "csv":
        return _csv_batches(path, columns, geometry_column, size, check, read)
    if kind == "parquet":
        try:
            import pyarrow.parquet
        except ImportError as error:
            raise ConfigurationError(
                f"reading {path} needs pyarrow: pip install 'geosession[geo]'"
            ) from error
        return _parquet_batches(pyarrow.parquet, path, columns, geometry_column, size, check, read)
    try:
        import pyarrow
        import pyogrio
    except ImportError as error:
        raise ConfigurationError(
            f"reading {path} needs pyogrio and pyarrow: pip install 'geosession[geo]'"
        ) from error
    return _vector_batches(pyogrio, path, columns, geometry_column, size, check, read)


def _vector_batches(
    pyogrio: Any,
    path: Path,
    columns: Sequence[str],
    geometry_column: str | None,
    size: Callable[[], int],
    check: CheckFields,
    read: FileRead,
) -> Iterator[Batch]:
    """The layer's record batches, cut into batches of ``size()`` rows without copying.

    With ``read.feature_ids``, a layer that names its id column (a GeoPackage's fid) loads
    its ids into the column of that name, as ogr2ogr keeps them when it creates a table;
    pyogrio then puts them first. ``read.where`` and ``read.bbox`` are GDAL's filters, so
    a FlatGeobuf's or GeoPackage's spatial index serves the box.
    """
    unreadable = (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError)
    try:
        source = gdal_source(path)
        layer = vector_layer(pyogrio, source, read.layer)
        feature_ids = read.feature_ids and source.suffix in _NAMED_ID_SUFFIXES
        text = layer_text(pyogrio, source, layer, read.encoding)
        opened = pyogrio.open_arrow(
            source.name,
            layer=layer,
            encoding=text.open_with,
            where=read.where,
            bbox=read.bbox,
            batch_size=_FILE_BATCH,
            use_pyarrow=True,
            return_fids=feature_ids,
        )
        with contextlib.ExitStack() as stack:
            with measured_types(), _filtering(read, path):  # only while it opens
                meta, reader = stack.enter_context(opened)
            geometry = meta["geometry_name"] or "wkb_geometry"  # pyogrio's name for no name
            fields = [str(name) for name in reader.schema.names]
            renamed = _renamer(read, fields, path)
            if feature_ids and not (  # the layer's own ids (first), with a column to go to
                meta.get("fid_column")
                and target_name(renamed(fields[0]), geometry, columns, geometry_column) in columns
            ):
                fields = fields[1:]
            names = {f: target_name(renamed(f), geometry, columns, geometry_column) for f in fields}
            check(list(names.values()), where=str(path))
            names = {f: name for f, name in names.items() if name in columns}  # left out
            crs = source_crs(meta["crs"])
            known = {names[geometry]: crs} if crs is not None and geometry in names else {}
            with _filtering(read, path):  # some drivers apply the condition as they read
                features = _read_through(reader, path, filtered=read.where is not None)
                yield from _arrow_batches(features, names, columns, size, known, text.fallback)
    except unreadable as error:
        raise ConfigurationError(f"cannot read {path} as {SUPPORTED}: {error}") from error


def _renamer(read: FileRead, fields: Sequence[str], path: Path) -> Callable[[str], str]:
    """The name a field is loaded under: ``read.rename``'s, else its own."""
    rename = dict(read.rename or {})
    check_rename(rename, fields, path)
    return lambda field: rename.get(field, field)


def check_rename(rename: Mapping[str, str], fields: Sequence[str], path: Path) -> None:
    """Refuses a rename of a field the file does not have, naming the fields it has."""
    missing = [name for name in rename if name not in fields]
    if missing:
        raise ConfigurationError(
            f"rename names {', '.join(map(repr, missing))}, which {path} does not have as a "
            f"field; its fields: {', '.join(fields)}"
        )


def _read_through(reader: Any, path: Path, *, filtered: bool) -> Iterator[Any]:
    """A layer's record batches; GDAL's failure to read one (a file cut short or damaged)
    is refused naming the file and how far it was read (``filtered``: left to the where=
    condition's refusal, which it may be)."""
    features = 0
    batches = iter(reader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, ValueError) as error:
            if filtered:
                raise
            raise ConfigurationError(
                f"cannot read {path} past its feature {features:,}: GDAL: {error}. The file "
                "is damaged or cut short (a copy or download that did not finish?); the "
                "chunks read before committed: load the repaired file with the same "
                "ingest_id to resume after them"
            ) from error
        features += batch.num_rows
        yield batch


@contextlib.contextmanager
def _filtering(read: FileRead, path: Path) -> Iterator[None]:
    """GDAL's refusal of a where= condition (an unknown field, bad syntax), said as such."""
    try:
        yield
    except (OSError, ValueError) as error:  # pyogrio raises either, by driver
        if read.where is None:
            raise
        raise ConfigurationError(
            f"where={read.where!r} cannot filter {path}: {error}. It is an OGR SQL condition "
            "on the layer's fields (ogrinfo -so FILE LAYER lists them), e.g. "
            "\"state = 'CA' AND area > 1000\""
        ) from error


def id_column(source: GdalSource, fid_column: Any) -> str:
    """The name of the column that holds a layer's own feature ids ("" when GDAL numbers
    the features itself, or takes an integer "id" field of a GeoJSON file as theirs)."""
    return str(fid_column or "") if source.suffix in _NAMED_ID_SUFFIXES else ""


def vector_layer(pyogrio: Any, source: GdalSource, layer: str | None) -> str | None:
    """The layer to read: the one asked for, or the file's only one with geometries, or
    with features (a GeoPackage may hold several, and loading the first of them unasked
    would load the wrong data; tables without geometries, such as QGIS's layer_styles, do
    not count, nor the empty layers of a GPX file's five). None for a file of one layer by
    its format (GeoJSON, FlatGeobuf, a Shapefile), whose layers are not listed: a GeoJSON
    file would be read whole for it."""
    name_unknown_with_dimensions()  # a layer of several types with Z (FlatGeobuf makes them)
    path = source.path
    if layer is None and path.suffix.lower() in _ONE_LAYER_SUFFIXES:
        return None
    try:
        with measured_types():
            listed = pyogrio.list_layers(source.name)
            layers = [(str(name), kind) for name, kind in listed]
    except pyogrio.errors.DataSourceError as error:
        raise ConfigurationError(f"cannot read {path} as {SUPPORTED}: {error}") from error
    names = [name for name, _ in layers]
    spatial = [name for name, kind in layers if kind is not None] or names
    if layer is None and len(spatial) == 1:
        return spatial[0]
    listed = ", ".join(names) or "none"
    if layer is None:
        counts = {name: _feature_count(pyogrio, source, name) for name in spatial}
        filled = [name for name, count in counts.items() if count != 0]
        if len(filled) == 1:
            return filled[0]
        described = ", ".join(f"{name}: {counts[name]:,}" for name in filled) or "none"
        raise ConfigurationError(
            f"{path} has {len(filled)} layers with features ({described}): choose one "
            "with layer= (on the command line: --layer)"
        )
    if layer not in names:
        raise ConfigurationError(f"{path} has no layer {layer!r}; its layers: {listed}")
    return layer


def _feature_count(pyogrio: Any, source: GdalSource, layer: str) -> int:
    """A layer's features, counted (GPX and KML files are read for it)."""
    with measured_types():
        info = pyogrio.read_info(source.name, layer=layer, force_feature_count=True)
    return int(info["features"])


def _parquet_batches(
    parquet: Any,
    path: Path,
    columns: Sequence[str],
    geometry_column: str | None,
    size: Callable[[], int],
    check: CheckFields,
    read: FileRead,
) -> Iterator[Batch]:
    """A (Geo)Parquet file's record batches, cut into batches of ``size()`` rows."""
    try:
        handle = parquet.ParquetFile(path, pre_buffer=False, buffer_size=_PARQUET_BUFFER)
        schema = handle.schema_arrow
        geo = geoparquet_columns(schema.metadata, path)
        fields = geo.fields(schema.names)
        renamed = _renamer(read, fields, path)
        names = {f: target_name(renamed(f), geo.primary, columns, geometry_column) for f in fields}
        check(list(names.values()), where=str(path))
        names = {f: name for f, name in names.items() if name in columns}  # left out: unread
        known = {names[c]: crs for c, crs in geo.crs.items() if crs is not None and c in names}
        reader = handle.iter_batches(batch_size=_FILE_BATCH, columns=list(names))
        yield from _arrow_batches(reader, names, columns, size, known)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigurationError(f"cannot read {path} as Parquet: {error}") from error


@dataclass(frozen=True)
class GeoParquetColumns:
    """What a Parquet file's ``geo`` metadata says of its columns (nothing for a plain
    Parquet file, where a column named as the geometry column is read)."""

    primary: str | None = None
    crs: dict[str, SourceCrs | None] = field(default_factory=dict)
    """Each geometry column's CRS: its EPSG SRID, else its PROJJSON (None: unknown)."""
    types: dict[str, list[str]] = field(default_factory=dict)
    """Each geometry column's geometry types ("Polygon", "Point Z"; empty: any)."""
    derived: frozenset[str] = frozenset()
    """Columns derived from the geometries (a covering bbox): not data."""

    def fields(self, names: Iterable[str]) -> list[str]:
        """The columns that are data: not derived, nor pandas' stored index."""
        return [n for n in names if n not in self.derived and not _PANDAS_INDEX.fullmatch(n)]


def geoparquet_columns(metadata: dict[bytes, bytes] | None, path: Path) -> GeoParquetColumns:
    """The ``geo`` metadata of a (Geo)Parquet file; GeoArrow-native encodings are refused."""
    if not metadata or b"geo" not in metadata:
        return GeoParquetColumns()
    geo = json.loads(metadata[b"geo"])
    crs: dict[str, SourceCrs | None] = {}
    types: dict[str, list[str]] = {}
    derived: set[str] = set()
    for name, column in geo.get("columns", {}).items():
        for paths in column.get("covering", {}).values():
            derived.update(str(steps[0]) for steps in paths.values() if steps)
        encoding = str(column.get("encoding", "WKB"))
        if encoding.upper() != "WKB":
            raise ConfigurationError(
                f"{path}: geometry column {name} is stored in GeoParquet's {encoding} "
                "encoding; geosession reads WKB. Rewrite it with "
                "GeoDataFrame.to_parquet(..., geometry_encoding='WKB')"
            )
        crs[name] = _projjson_crs(column["crs"]) if "crs" in column else 4326  # CRS84
        types[name] = [str(kind) for kind in column.get("geometry_types") or []]
    return GeoParquetColumns(geo.get("primary_column"), crs, types, frozenset(derived))


def _projjson_crs(crs: Any) -> SourceCrs | None:
    """A GeoParquet CRS (PROJJSON, or a string) as :func:`source_crs` reads it; None when
    it is null (unknown)."""
    if isinstance(crs, dict):  # its id read here: pyarrow may be installed without pyproj
        ident = crs.get("id", {})
        code = authority_code(str(ident.get("authority", "")), str(ident.get("code", "")))
        return code if code is not None else source_crs(json.dumps(crs))
    return source_crs(crs) if isinstance(crs, str) else None


def _arrow_batches(
    record_batches: Iterable[Any],
    names: dict[str, str],
    columns: Sequence[str],
    size: Callable[[], int],
    crs: dict[str, SourceCrs],
    text_encoding: str | None = None,
) -> Iterator[Batch]:
    """Arrow record batches cut into batches of ``size()`` rows without copying.

    ``text_encoding`` decodes text that is not UTF-8 (see :mod:`.encodings`)."""
    first = 1
    for record_batch in record_batches:
        offset = 0
        while offset < record_batch.num_rows:
            part = record_batch.slice(offset, size())
            values = {names[f]: column_values(part.column(f), text_encoding) for f in names}
            yield Batch(first, {c: values[c] for c in columns if c in values}, crs)
            first += part.num_rows
            offset += part.num_rows


def _csv_batches(
    path: Path,
    columns: Sequence[str],
    geometry_column: str | None,
    size: Callable[[], int],
    check: CheckFields,
    read: FileRead,
) -> Iterator[Batch]:
    encoding = read.encoding
    header, delimiter = csv_header(path, encoding)
    wkt = wkt_column_of(header, geometry_column, read.wkt_column, path)
    points = _csv_points(header, wkt, geometry_column, read, path)
    renamed = _renamer(read, header, path)
    names = [target_name(renamed(h), wkt, columns, geometry_column) for h in header]
    made: dict[str, tuple[int, int]] = {}  # the column the coordinates make points for
    crs: dict[str, SourceCrs] = {}
    if points is not None and geometry_column is not None:
        made[geometry_column] = (header.index(points.x), header.index(points.y))
        crs = {geometry_column: points.srid} if points.srid is not None else {}
    loaded = [  # coordinates load as numbers too only into columns of their names
        i
        for i, h in enumerate(header)
        if points is None or h not in points.fields or names[i] in columns
    ]
    check([names[i] for i in loaded] + list(made), where=str(path))

    def batches() -> Iterator[Batch]:
        with path.open(newline="", encoding=text_codec(encoding, path)) as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            with undecodable_refused(path, encoding):
                next(reader, None)
                rows = (row for row in reader if row)  # blank lines are not rows
                first = 1
                while chunk := list(islice(rows, size())):
                    _check_widths(chunk, len(header), first, path)
                    values = {names[i]: [row[i] or None for row in chunk] for i in loaded}
                    for column, (x, y) in made.items():
                        values[column] = point_texts(
                            [row[x] for row in chunk], [row[y] for row in chunk]
                        )
                    yield Batch(first, {c: values[c] for c in columns if c in values}, crs)
                    first += len(chunk)

    return batches()


def _csv_points(
    header: list[str], wkt: str | None, geometry_column: str | None, read: FileRead, path: Path
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
    points = point_columns(header, read.xy_columns, path)
    if points is not None and geometry_column is None:
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
        path.open(newline="", encoding=text_codec(encoding, path)) as handle,
    ):
        delimiter = _delimiter(handle.readline())
        handle.seek(0)
        return next(csv.reader(handle, delimiter=delimiter), []), delimiter


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
