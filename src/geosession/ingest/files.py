"""Ingest sources that are files: vector files through pyogrio, GeoParquet, and CSV.

- Vector files stream through ``pyogrio.open_arrow(batch_size=...)``: one open, one
  sequential pass. Measured (batch 10,000, polygons with two fields), peak RSS above the
  import baseline: GeoPackage +45 MB for 200,000 and for 1,000,000 features; FlatGeobuf
  +18 MB; GeoJSON +29 MB at 200,000, +69 MB at 1,000,000 (GDAL's reader keeps ~60 B per
  feature). The baseline itself is heavy: ``import pyogrio`` imports pandas and geopandas
  when installed, about 220 MB with geosession and pyarrow. ``read_dataframe`` with
  ``skip_features`` was rejected: it reopens the file per batch and is quadratic on
  GeoJSON (20 s against 1.8 s for 200,000 features). Hence pyarrow in the ``geo`` extra.
- GeoParquet and Arrow IPC files are read by :mod:`.columnar_files`.
- Geometries arrive as the WKB the driver read, and the batch carries the layer's EPSG
  SRID (None when the CRS has no EPSG code) for geometries without one.
- CSV files are read by :mod:`.delimited`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from geosession.compression import SUFFIXES as COMPRESSION_SUFFIXES
from geosession.errors import ConfigurationError
from geosession.ingest.archives import (
    ARCHIVE_SUFFIXES,
    GEODATABASE,
    GdalSource,
    gdal_source,
    shapefile_folder,
)
from geosession.ingest.arrow_files import ARROW_FILE_SUFFIXES, arrow_file_length
from geosession.ingest.batches import Batch, Landing
from geosession.ingest.columnar_files import (
    FILE_BATCH,
    arrow_batches,
    arrow_file_batches,
    parquet_batches,
)
from geosession.ingest.compressed import (
    data_of,
    decompressed,
    gdal_gzip,
    inner_suffix,
    is_compressed,
)
from geosession.ingest.crs import source_crs
from geosession.ingest.delimited import csv_batches
from geosession.ingest.encodings import (
    check_encoding,
    layer_text,
)
from geosession.ingest.file_read import FileRead, renamer
from geosession.ingest.gdal_batches import Reread, mended
from geosession.ingest.geo_columns import coordinate_fields
from geosession.ingest.geojson_ids import has_integer_ids
from geosession.ingest.json_records import record_members, records_further_on
from geosession.read.layer_types import measured_types, name_types_pyogrio_lacks
from geosession.urls import is_web, url_in

_GDAL_SUFFIXES = (
    ".gpkg",
    ".gdb",
    ".tab",
    ".mif",
    ".sqlite",
    ".shp",
    ".geojson",
    ".json",
    ".fgb",
    ".kml",
    ".kmz",
    ".gpx",
    ".xlsx",
    ".ods",
    *ARCHIVE_SUFFIXES,
)
SEQUENCE_SUFFIXES = (".geojsonl", ".geojsons", ".jsonl", ".ndjson")
"""GeoJSON Lines (GDAL's GeoJSONSeq, read a feature at a time), as export writes them."""
VECTOR_SUFFIXES = _GDAL_SUFFIXES + SEQUENCE_SUFFIXES
"""Files read through GDAL (pyogrio)."""
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
SUPPORTED = (
    "GeoPackage, Shapefile, GeoJSON, FlatGeobuf, KML, GPX, File Geodatabase, MapInfo, "
    "SpatiaLite, spreadsheets of coordinates (in a zip or tar archive too: "
    + ", ".join(_GDAL_SUFFIXES)
    + "), GeoJSON Lines ("
    + ", ".join(SEQUENCE_SUFFIXES)
    + "), GeoParquet (.parquet), Arrow IPC ("
    + ", ".join(ARROW_FILE_SUFFIXES)
    + ") or .csv; any of them compressed ("
    + ", ".join(COMPRESSION_SUFFIXES)
    + ")"
)
_NAMED_ID_SUFFIXES = (".gpkg", ".gdb")
"""Files whose layers name their id column, so their ids are data (GDAL numbers the
features of the others itself; asking pyogrio for those ids may clash with a field)."""
_GEOJSON_SUFFIXES = (".geojson", ".json", *SEQUENCE_SUFFIXES)
"""Files GDAL reads whole to open (GeoJSON: a first pass finds the fields' types) or to
count: asking their layers or length costs a pass over the file each time."""
_ONE_LAYER_SUFFIXES = (".shp", ".fgb", *_GEOJSON_SUFFIXES)


def file_length(path: Path, layer: str | None = None) -> int | None:
    """A vector or Parquet file's row count, read from its header; None for a CSV or a
    GeoJSON file (their rows are unknown without a full pass) or a file that cannot say."""
    suffix = path.suffix.lower()
    if suffix not in VECTOR_SUFFIXES + PARQUET_SUFFIXES + ARROW_FILE_SUFFIXES:
        return None
    if suffix in _GEOJSON_SUFFIXES or not is_source_file(path):
        return None
    try:
        if suffix in ARROW_FILE_SUFFIXES:
            return arrow_file_length(path)
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


def refuse_url(source: str | Path) -> None:
    """A source named by a URL is refused saying how to read it: the ingest reads local
    files, whose size and time name a resumable load."""
    found = url_in(source)
    if found is None:
        return
    url, scheme = found
    if is_web(scheme):
        how = (
            f"download it first, or pipe it in (curl -sL '{url}' | geosession ingest - "
            "TABLE); a web API's GeoJSON loads from its response: db.ingest(table, "
            "httpx.get(url).json())"
        )
    else:
        how = "copy it here first (aws s3 cp, gcloud storage cp...), or pipe it in (-)"
    raise ConfigurationError(f"cannot ingest {url}: sources are local files; {how}")


def refuse_empty(path: Path) -> None:
    """A file of 0 bytes (a download that failed, a copy cut short at its start) is refused
    by name: GDAL's words for it are "not recognized as being in a supported file format",
    and with create=True a CSV would make a table of no columns. GeoJSON Lines of no
    features are 0 bytes (an export of no rows writes them): those load no rows."""
    if _is_empty(path) and not empty_sequence(path):
        file_kind(path)  # a type read nowhere says so first
        raise ConfigurationError(f"{path} is empty (0 bytes): nothing to load")


def empty_sequence(path: Path) -> bool:
    """Whether ``path`` is GeoJSON Lines of no features, which GDAL refuses to open (also
    gzipped)."""
    return inner_suffix(path) in SEQUENCE_SUFFIXES and _is_empty(path)


def _is_empty(path: Path) -> bool:
    try:
        if not path.is_file():
            return False
        with data_of(path) as data:
            return not data.read(1)
    except OSError:  # no file's name (a GeoJSON text given as a str)
        return False


def unreadable_file(path: Path, error: Exception) -> ConfigurationError:
    """GDAL's refusal of ``path``, with what may read it: for a large JSON object whose
    first megabyte shows no records, layer= naming the member further on that holds them."""
    hint = (
        "; if a member of this JSON object further on holds its records (an array of "
        "objects), name it with layer= (CLI: --layer MEMBER)"
        if records_further_on(path)
        else ""
    )
    named = _FORMAT_NAMES.get(path.suffix.lower())
    if isinstance(error, IndexError):  # pyogrio's, for a file with no layer GDAL can list
        error = ValueError("GDAL finds no layer in it")
    if named is not None and not hint:
        return ConfigurationError(
            f"cannot read {path} as a {named} file: {error}. It is damaged or cut short (a "
            "copy or download that did not finish?), or not that format"
        )
    return ConfigurationError(f"cannot read {path} as {SUPPORTED}: {error}{hint}")


_FORMAT_NAMES = {
    ".gpkg": "GeoPackage",
    ".fgb": "FlatGeobuf",
    ".shp": "Shapefile",
    ".geojson": "GeoJSON",
    ".kml": "KML",
    ".kmz": "KMZ",
    ".gpx": "GPX",
    ".tab": "MapInfo",
    ".mif": "MapInfo",
    ".sqlite": "SpatiaLite",
    ".xlsx": "spreadsheet",
    ".ods": "spreadsheet",
}
"""The format a file's suffix names, for the refusal of one GDAL cannot open."""


def is_source_file(path: Path) -> bool:
    """A file, an Esri File Geodatabase (a folder named .gdb, which GDAL opens whole), or
    a folder of Shapefiles."""
    geodatabase = path.suffix.lower() == GEODATABASE and path.is_dir()
    return path.is_file() or geodatabase or shapefile_folder(path)


def file_kind(path: Path) -> str:
    """ "csv", "vector", "parquet", "arrow" or "compressed" (which the load decompresses
    first: :mod:`.compressed`; a compressed CSV and gzipped GeoJSON are read as they
    decompress); a file of no kind read here is refused."""
    suffix = path.suffix.lower()
    if gdal_gzip(path):  # gzipped GeoJSON: GDAL reads it as it decompresses
        return "vector"
    if is_compressed(path):  # a CSV is read as it decompresses
        return "csv" if inner_suffix(path) == ".csv" else "compressed"
    if suffix == ".csv":
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in ARROW_FILE_SUFFIXES:
        return "arrow"
    if suffix in VECTOR_SUFFIXES or shapefile_folder(path):
        return "vector"
    raise ConfigurationError(f"cannot ingest {path}: unsupported file type; use {SUPPORTED}")


def file_batches(path: Path, landing: Landing, read: FileRead | None = None) -> Iterator[Batch]:
    read = read or FileRead()
    kind = file_kind(path)
    if not is_source_file(path):
        raise ConfigurationError(f"cannot ingest {path}: no such file")
    read.check(kind, str(path))
    check_encoding(read.encoding, path)
    if kind == "csv":
        return csv_batches(path, landing, read)
    if kind == "parquet":
        try:
            import pyarrow.parquet
        except ImportError as error:
            raise ConfigurationError(
                f"reading {path} needs pyarrow: pip install 'geosession[geo]'"
            ) from error
        return parquet_batches(pyarrow.parquet, path, landing, read)
    if kind == "arrow":
        return arrow_file_batches(path, landing, read)
    if empty_sequence(path):
        return iter(())
    try:
        import pyarrow
        import pyogrio
    except ImportError as error:
        raise ConfigurationError(
            f"reading {path} needs pyogrio and pyarrow: pip install 'geosession[geo]'"
        ) from error
    return _vector_batches(pyogrio, path, landing, read)


def _vector_batches(pyogrio: Any, path: Path, landing: Landing, read: FileRead) -> Iterator[Batch]:
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
        geojson_ids = _geojson_ids(source)  # the user's: loaded whether the table is empty
        feature_ids = geojson_ids or (read.feature_ids and source.suffix in _NAMED_ID_SUFFIXES)
        text = layer_text(pyogrio, source, layer, read.encoding)
        spatial = read.spatial_filter()  # the bbox, or its halves over the antimeridian
        opened = pyogrio.open_arrow(
            source.name,
            layer=layer,
            encoding=text.open_with,
            where=read.where,
            **spatial,
            batch_size=FILE_BATCH,
            use_pyarrow=True,
            return_fids=feature_ids,
        )
        with _not_utf8_refused(path, source, read.encoding), contextlib.ExitStack() as stack:
            with (  # only while it opens
                measured_types(),
                filtering(read, path),
                _heights_as_z(pyogrio, source, landing),
                _no_layer_is_unreadable(pyogrio),
            ):
                meta, reader = stack.enter_context(opened)
            geometry = meta["geometry_name"] or "wkb_geometry"  # pyogrio's name for no name
            fields = [str(name) for name in reader.schema.names]
            renamed = renamer(read, fields, path)
            if geojson_ids and "id" not in fields:  # GDAL's FIDs: the features' "id"s
                renamed = _ids_as(fields[0], "id", renamed)
            if feature_ids and not (  # the layer's own ids (first), with a column to go to
                meta.get("fid_column")
                and landing.column_for(renamed(fields[0]), geometry) in landing.columns
            ):
                fields = fields[1:]
            loaded = [renamed(f) for f in fields]  # without geometries coordinates make points
            given = geometry in fields or landing.geometry_column in loaded
            points = coordinate_fields(fields, renamed, landing, given, read.xy_columns, str(path))
            names = {f: landing.column_for(renamed(f), geometry) for f in fields}
            names = landing.land(names, points, str(path))
            read.check_crossing(meta["crs"], path)
            crs = source_crs(meta["crs"])
            known = {names[geometry]: crs} if crs is not None and geometry in names else {}
            known |= landing.points_crs(points)
            with filtering(read, path):  # some drivers apply the condition as they read
                unfiltered = read.where is None and not spatial
                declared = file_length(path, layer) if source.suffix == ".fgb" else None
                features = _read_through(
                    reader,
                    path,
                    filtered=read.where is not None,
                    declared=declared if unfiltered else None,
                )
                if geometry in fields:
                    again = rereader(pyogrio, source, layer, text.open_with, read.where, spatial)
                    features = mended(features, geometry, again, path)
                yield from arrow_batches(
                    features, names, landing, known, text.fallback, points=points
                )
    except unreadable as error:
        raise unreadable_file(path, error) from error


@contextlib.contextmanager
def _not_utf8_refused(path: Path, source: GdalSource, encoding: str | None) -> Iterator[None]:
    """Text GDAL hands over undecoded (not UTF-8 where the file says or implies it is) as
    a refusal naming the file and what to do, not Python's UnicodeDecodeError."""
    try:
        yield
    except UnicodeDecodeError as error:
        read_as = encoding or "UTF-8"
        remedy = (
            "give the encoding it is in with encoding= (CLI: --encoding latin1, cp1252...)"
            if source.shapefiles
            else "a file of this format is UTF-8 by its specification: convert it "
            f"(iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}) and load that"
        )
        raise ConfigurationError(
            f"{path} holds text that is not {read_as} (byte {error.object[error.start]:#04x}"
            f" of a value): {remedy}"
        ) from error


@contextlib.contextmanager
def _no_layer_is_unreadable(pyogrio: Any) -> Iterator[None]:
    """pyogrio's IndexError for a file GDAL opens and finds no layer in (a FlatGeobuf cut
    inside its header) as the refusal of an unreadable file."""
    try:
        yield
    except IndexError as error:
        raise pyogrio.errors.DataSourceError("GDAL finds no layer in it") from error


def rereader(
    pyogrio: Any,
    source: GdalSource,
    layer: str | None,
    encoding: str | None = None,
    where: str | None = None,
    spatial_filter: Mapping[str, Any] | None = None,
) -> Reread:
    """Reads a span of the layer's geometries again, where GDAL's Arrow reader failed them
    (:mod:`.gdal_batches`): through its feature API, or its Arrow reader (``arrow``)."""
    options: dict[str, Any] = {
        "layer": layer,
        "encoding": encoding,
        "columns": [],
        "where": where,
        **(spatial_filter or {}),
    }

    def again(skip: int, count: int, *, arrow: bool = False) -> Sequence[bytes | None]:
        span = {"skip_features": skip, "max_features": count}
        if not arrow:
            geometries: Sequence[bytes | None] = pyogrio.raw.read(source.name, **options, **span)[2]
            return geometries
        meta, table = pyogrio.read_arrow(source.name, **options, **span)
        column = table.column(meta.get("geometry_name") or "wkb_geometry")
        column.validate(full=True)  # pyarrow's ArrowInvalid if GDAL failed them again
        found: Sequence[bytes | None] = column.to_pylist()
        return found

    return again


def _read_through(
    reader: Any, path: Path, *, filtered: bool, declared: int | None = None
) -> Iterator[Any]:
    """A layer's record batches; GDAL's failure to read one (a file cut short or damaged)
    is refused naming the file and how far it was read (``filtered``: left to the where=
    condition's refusal, which it may be), and so is an end before the ``declared``
    features a FlatGeobuf's header counts (GDAL reads a file cut inside its spatial index
    as one of no features, without a word)."""
    features = 0
    batches = iter(reader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            if declared is not None and features < declared:
                raise damaged(
                    path, f"its header declares {declared:,} features", features
                ) from None
            return
        except (OSError, ValueError) as error:
            if filtered:
                raise
            raise damaged(path, f"GDAL: {error}", features) from error
        features += batch.num_rows
        yield batch


def refuse_cut_in_its_index(
    pyogrio: Any, source: GdalSource, layer: str | None, path: Path, declared: int
) -> None:
    """Refuses a FlatGeobuf whose header declares features of which GDAL reads none (a
    file cut inside its spatial index reads as one of no features, without a word)."""
    try:
        with measured_types():  # pyogrio's warning that it names no M type
            _, first = pyogrio.read_arrow(source.name, layer=layer, columns=[], max_features=1)
    except OSError as error:
        raise damaged(path, f"GDAL: {error}", 0) from error
    if first.num_rows == 0:
        raise damaged(path, f"its header declares {declared:,} features", 0)


def damaged(path: Path, why: str, features: int | None = None) -> ConfigurationError:
    """The refusal of a file GDAL cannot read to its end, ``why``, after ``features``."""
    past = f" past its feature {features:,}" if features is not None else ""
    resume = (
        "; the chunks read before committed: load the repaired file with the same "
        "ingest_id to resume after them"
        if features
        else ""
    )
    return ConfigurationError(
        f"cannot read {path}{past}: {why}. The file is damaged or cut short (a copy or "
        f"download that did not finish?){resume}"
    )


@contextlib.contextmanager
def filtering(read: FileRead, path: Path) -> Iterator[None]:
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


@contextlib.contextmanager
def _heights_as_z(pyogrio: Any, source: GdalSource, landing: Landing) -> Iterator[None]:
    """GDAL reads a GPX file's elevations (``<ele>``) as a field unless told to make them
    the geometries' Z, which a geometry column with Z needs (a track's points' heights are
    in no field at all). Its GPX driver reads the setting as it opens a layer. The setting
    is process-wide: it is made inside :func:`.measured_types`, under whose lock
    geosession opens, lists and counts GPX layers, so its other threads open none meanwhile."""
    if source.suffix != ".gpx" or not landing.geometry_z:
        yield
        return
    before = pyogrio.get_gdal_config_option("GPX_ELE_AS_25D")
    pyogrio.set_gdal_config_options({"GPX_ELE_AS_25D": True})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"GPX_ELE_AS_25D": before})


def id_column(source: GdalSource, fid_column: Any) -> str:
    """The name of the column that holds a layer's own feature ids: a GeoPackage's fid, a
    File Geodatabase's OBJECTID, "id" for a GeoJSON file whose features have integer ids
    (which GDAL takes as its FIDs); "" when GDAL numbers the features itself."""
    if _geojson_ids(source):
        return "id"
    return str(fid_column or "") if source.suffix in _NAMED_ID_SUFFIXES else ""


def _geojson_ids(source: GdalSource) -> bool:
    """Whether a GeoJSON file's features have integer ids (GDAL's FIDs, not a field)."""
    if source.suffix not in _GEOJSON_SUFFIXES:
        return False
    return has_integer_ids(source, sequence=source.suffix in SEQUENCE_SUFFIXES)


def _ids_as(fid_field: str, name: str, renamed: Callable[[str], str]) -> Callable[[str], str]:
    """``renamed``, with the FID field pyogrio puts first loaded as ``name``."""
    return lambda field: name if field == fid_field else renamed(field)


def vector_layer(pyogrio: Any, source: GdalSource, layer: str | None) -> str | None:
    """The layer to read: the one asked for, or the file's only one with geometries, or
    with features (a GeoPackage may hold several, and loading the first of them unasked
    would load the wrong data; tables without geometries, such as QGIS's layer_styles, do
    not count, nor the empty layers of a GPX file's five). None for a file of one layer by
    its format (GeoJSON, FlatGeobuf, a Shapefile), whose layers are not listed: a GeoJSON
    file would be read whole for it."""
    name_types_pyogrio_lacks()  # a layer of several types with Z (FlatGeobuf makes them)
    path = source.path
    if layer is None and inner_suffix(path) in _ONE_LAYER_SUFFIXES:  # parcels.geojson.gz too
        return None
    try:
        with measured_types():
            listed = pyogrio.list_layers(source.name)
            layers = [(str(name), kind) for name, kind in listed]
    except pyogrio.errors.DataSourceError as error:
        raise unreadable_file(path, error) from error
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


class Layers(NamedTuple):
    """A file's layers, as a load of each into its own table sees them."""

    filled: list[str]
    """With geometries and features."""
    empty: list[str]
    """With geometries, and no feature."""
    without_geometries: tuple[str, ...] = ()
    """Attribute tables (a GeoPackage's lookup tables), but QGIS's layer_styles."""


def filled_layers(path: Path) -> Layers | None:
    """A file's layers (:class:`Layers`); None for a file of one layer by its format
    (GeoJSON, FlatGeobuf, a Shapefile, CSV, Parquet, Arrow), or for a file of several
    whose layers hold no geometries. A compressed file's are those of the data it holds
    (decompressed here to list them, and by each load). A JSON object's members that
    hold records are its layers where there are several."""
    if inner_suffix(path) == ".json":  # a compressed one read as it decompresses
        members = record_members(path)
        return None if members is None else Layers(members, [])
    if is_compressed(path):
        if _one_layer_by_name(Path(path.stem)):  # parcels.geojson.gz: nothing to list
            return None
        with decompressed(path) as copy:
            return filled_layers(copy)
    if file_kind(path) != "vector" or _one_layer_by_name(path):
        return None
    try:
        import pyogrio
    except ImportError as error:
        raise ConfigurationError(
            f"reading {path} needs pyogrio and pyarrow: pip install 'geosession[geo]'"
        ) from error
    source = gdal_source(path)
    try:
        with measured_types():
            listed = [(str(name), kind) for name, kind in pyogrio.list_layers(source.name)]
    except pyogrio.errors.DataSourceError as error:
        raise unreadable_file(path, error) from error
    spatial = [name for name, kind in listed if kind is not None]
    if not spatial:
        return None
    counts = {name: _feature_count(pyogrio, source, name) for name in spatial}
    tables = [name for name, kind in listed if kind is None and name not in _STYLE_TABLES]
    return Layers(
        [n for n in spatial if counts[n] != 0],
        [n for n in spatial if counts[n] == 0],
        tuple(tables),
    )


_STYLE_TABLES = ("layer_styles",)
"""Tables a GIS keeps beside the data (QGIS's styles), not data to load."""


def _one_layer_by_name(path: Path) -> bool:
    """Whether a file's suffix names a format of one layer (a CSV, a GeoJSON ...)."""
    suffix = path.suffix.lower()
    return suffix in (*_ONE_LAYER_SUFFIXES, ".csv", *PARQUET_SUFFIXES, *ARROW_FILE_SUFFIXES)


def _feature_count(pyogrio: Any, source: GdalSource, layer: str) -> int:
    """A layer's features, counted (GPX and KML files are read for it)."""
    with measured_types():
        info = pyogrio.read_info(source.name, layer=layer, force_feature_count=True)
    return int(info["features"])
