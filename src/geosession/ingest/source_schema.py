"""The columns a source's table needs (``create=True``), read from the source as
ogr2ogr would read them.

A file or DataFrame gives its schema: each field becomes a column of the matching type,
each geometry column the source's geometry type, dimensions and EPSG SRID, and the key is
named as the layer's own id column (a GeoPackage's fid) where it has one. Field names are
lowercased when that keeps them apart, so SQL need not quote them; the ingest matches
fields to columns in any case. Rows in an iterable have no schema to read, but dict rows
and GeoJSON Features are typed from their values as a DataFrame's are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain, count, islice
from pathlib import Path
from typing import Any

import shapely

from geosession.errors import ConfigurationError
from geosession.ingest.archives import gdal_source
from geosession.ingest.arrow_files import open_arrow_file
from geosession.ingest.arrow_streams import is_arrow_stream, opened_once
from geosession.ingest.batches import repeated
from geosession.ingest.crs import crs_label, geographic_2d, sidecar_crs, source_crs
from geosession.ingest.delimited import (
    csv_field_values,
    csv_header,
    quoted_fields,
    wkt_column_of,
)
from geosession.ingest.encodings import check_encoding, layer_text
from geosession.ingest.features import (
    FRAME_SAMPLE,
    as_features,
    as_records,
    features_frame,
    later_kinds,
    later_record_kinds,
    records_frame,
)
from geosession.ingest.field_types import arrow_type, ogr_type, series_type
from geosession.ingest.file_read import FileRead, check_rename
from geosession.ingest.files import (
    damaged,
    empty_sequence,
    file_kind,
    id_column,
    is_source_file,
    refuse_cut_in_its_index,
    unreadable_file,
    vector_layer,
)
from geosession.ingest.found_types import curved_types, feature_types
from geosession.ingest.geo_columns import parquet_arrow_schema, schema_geometry, usual_geometry
from geosession.ingest.held_geometries import (
    SAMPLE,
    arrow_geometries,
    frame_geometries,
    srid_stated,
)
from geosession.ingest.json_records import RecordsForm, json_rows, records_form
from geosession.ingest.options import IngestOptions
from geosession.ingest.points import NEW_Z_NAMES, PointColumns, point_columns
from geosession.ingest.progress import counted, counting
from geosession.ingest.row_estimate import rows_counted
from geosession.ingest.seen_types import FoundTypes, arrow_value_types
from geosession.ingest.sources import is_dataframe
from geosession.ingest.text_types import TextKinds
from geosession.read.layer_types import measured_types
from geosession.srs import authority

_MULTI = {"POLYGON": "MULTIPOLYGON", "LINESTRING": "MULTILINESTRING"}


@dataclass
class SourceSchema:
    """The columns a source's table needs, in source order: (name, SQL type) pairs; the
    geometry columns' types are ``geometry(...)``."""

    columns: list[tuple[str, str]] = field(default_factory=list)
    geometries: list[str] = field(default_factory=list)
    key: str = "fid"
    """The identity primary key's name: the layer's id column where it names one."""
    by_values: str | None = None
    """The field found by its values to hold the geometries (:mod:`.held_geometries`)."""
    rows: int | None = None
    """The source's rows, where reading it for its types counted every one (a JSON
    array's, whose count nothing else gives): the load's progress bar shows them."""

    def add(self, name: str, sql_type: str) -> None:
        self.columns.append((name, sql_type))

    def without_srid(self) -> list[str]:
        """The geometry columns of no SRID (a geography's is 4326 without one)."""
        types = dict(self.columns)
        return [
            g for g in self.geometries if types[g].startswith("geometry(") and "," not in types[g]
        ]

    def retype(self, name: str, sql_type: str) -> None:
        """Column ``name`` of type ``sql_type``: its type changed, or a column added."""
        at = next((i for i, (column, _) in enumerate(self.columns) if column == name), None)
        if at is None:
            self.add(name, sql_type)
        else:
            self.columns[at] = (name, sql_type)

    def free_name(self) -> str:
        """A name for a geometry the source does not name, that no field has."""
        taken = {name.casefold() for name, _ in self.columns}
        names = chain(("geom", "wkb_geometry", "geometry"), (f"geom_{n}" for n in count(2)))
        return next(name for name in names if name not in taken)

    def add_geometry(
        self, name: str, types: list[str], srid: int | None, *, multi: bool, geography: bool = False
    ) -> None:
        """A geometry column (``geography``: of spherical edges, GeoParquet's "spherical")."""
        self.geometries.append(name)
        declared = geometry_type(types, srid, multi=multi)
        self.columns.append(
            (name, "geography" + declared.removeprefix("geometry") if geography else declared)
        )


@dataclass(frozen=True)
class Srids:
    """How a new geometry column gets its SRID: the EPSG code of the source's CRS, else
    the SRID this database files the CRS's authority code under (ESRI:102003 is SRID
    102003 in PostGIS's spatial_ref_sys), else ``given`` (srid=)."""

    given: int | None
    filed: Callable[[str, int], int | None]
    """The SRID this database files an authority's code under (``"ESRI", "102003"``)."""
    wanted: int | None = None
    """The SRID reproject= names: every new geometry column's, whatever the source's."""

    def column(self, crs: Any, whose: str, column: str) -> int | None:
        """The SRID for ``column`` of a source whose CRS is ``crs``. A CRS that is none of
        the above is refused unless srid= names its SRID (0 for none): a column made
        without one would lose the CRS unseen, and exports would have none."""
        if self.wanted is not None:
            return self.wanted
        found = crs if isinstance(crs, int) else source_crs(crs)
        found = geographic_2d(found) if isinstance(found, int) else found
        if isinstance(found, str) and self.given is None:
            found = self._filed(found) or found
        if isinstance(found, int) or found is None or self.given is not None:
            return found if isinstance(found, int) else self.given
        raise ConfigurationError(
            f"{whose} is {crs_label(found)}, so create=True cannot tell which SRID to give "
            f"column {column}: pass srid= (CLI: --srid) with the SRID that is this CRS (an "
            "EPSG code, or one you added to spatial_ref_sys), srid=0 for a column without an "
            "SRID, or reproject the source to an EPSG CRS first (GeoDataFrame.to_crs; for a "
            "file, ogr2ogr -t_srs EPSG:<code>)"
        )

    def held(self, values: list[Any]) -> int | None:
        """The SRID for a column found holding geometries (held_geometries): the one
        reproject= names, else srid=, else the one its values state, else none."""
        given = next((s for s in (self.wanted, self.given) if s is not None), None)
        return given if given is not None else srid_stated(values)

    def _filed(self, definition: str) -> int | None:
        code = authority(definition)
        return None if code is None else self.filed(*code)


def source_schema(source: Any, options: IngestOptions, srids: Srids, *, table: str) -> SourceSchema:
    """The columns for ``source``'s fields; refused for sources that do not declare them."""
    if isinstance(source, str | os.PathLike) and (
        form := records_form(Path(source), options.layer)
    ):
        schema = _json_schema(Path(source), form, options, srids)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        schema = _file_schema(path, options, srids)
        return _lowercased(_renamed(schema, options.rename or {}, path), keep=options.rename)
    elif is_dataframe(source):
        schema = _frame_schema(source, srids, options.xy_columns)
    elif (features := as_features(source)) is not None:
        schema = _features_schema(features[:FRAME_SAMPLE], features[FRAME_SAMPLE:], srids)
    elif (records := as_records(source)) is not None:
        rest = records[FRAME_SAMPLE:]
        schema = _records_schema(records[:FRAME_SAMPLE], rest, srids, options.xy_columns)
    elif is_arrow_stream(source):
        opened = opened_once(source)
        remedy = "or mark the WKB field as GeoArrow WKB (geoarrow.pyarrow's as_wkb)"
        source_is = (opened.where, "Arrow data", remedy)
        schema = _arrow_schema(
            opened.reader.schema,
            srids,
            source_is,
            options.xy_columns,
            partial(opened.read_ahead, SAMPLE),
            lambda names: opened.read_ahead(SAMPLE),  # read once: its first rows say
        )
    else:
        raise ConfigurationError(
            f"Table {table} does not exist, and create=True cannot make it from "
            f"{_described(source)}: its rows declare no column types. Create the table "
            "first, or load a file, a (Geo)DataFrame, Arrow data, GeoJSON Features or dict "
            "rows (whose keys name the columns)"
        )
    return _lowercased(schema, keep=options.rename)


def _features_schema(sample: list[Any], rest: Iterable[Any], srids: Srids) -> SourceSchema:
    """GeoJSON Features' columns: the ``sample``'s frame, widened by the ``rest``'s kinds
    of value (:func:`.features.later_kinds`); their ids, if they have them, the key."""
    frame, identified = features_frame(sample)
    later = later_kinds(sample, rest)
    schema = _frame_schema(frame, srids, later_geometry_types=later.geometry_types)
    for name, sql_type in later.properties.items():
        schema.retype(name, sql_type)
    schema.key = "id" if identified else schema.key
    return schema


def _records_schema(
    sample: list[Any], rest: Iterable[Any], srids: Srids, xy_columns: tuple[str, ...] | None
) -> SourceSchema:
    """Dict rows' columns: the ``sample``'s frame of Python objects, widened by the
    ``rest``'s kinds of value (:func:`.features.later_record_kinds`)."""
    frame = records_frame(sample)
    schema = _frame_schema(frame, srids, xy_columns)
    taken = {column for column, _ in schema.columns} - set(schema.geometries)
    for name, sql_type in later_record_kinds(sample, rest).items():
        if name in taken or name not in frame.columns:  # not a geometry, nor a point's
            schema.retype(name, sql_type)
    return schema


def _json_schema(
    path: Path, form: RecordsForm, options: IngestOptions, srids: Srids
) -> SourceSchema:
    """A JSON records file's columns, as for a list of its rows: a pass over the whole
    file, counted with ``progress=True``, before the load reads it again."""
    rows = json_rows(path, form, options.rename)
    sample = list(islice(rows, FRAME_SAMPLE))
    if not sample:
        raise ConfigurationError(
            f"{path} holds no records, which declare no columns to create the table from; "
            "create the table first, or load it once it holds records"
        )
    reading = f"reading the types of {path.name}'s records"
    total = rows_counted(path, options.layer)
    with counting(options.progress, reading, total=total) as tally:
        tally(len(sample))
        rest = counted(rows, tally)
        if as_features(sample) is not None:
            schema = _features_schema(sample, rest, srids)
        else:
            schema = _records_schema(sample, rest, srids, options.xy_columns)
    schema.rows = tally.rows  # every record was read
    return schema


def _described(source: Any) -> str:
    """``source`` as the refusal names it: "a generator", "an async iterable", "a list"."""
    from geosession.ingest.aio import AsyncRows  # it runs the pipeline, which makes tables

    if isinstance(source, AsyncRows):
        return "an async iterable"
    name = type(source).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _file_schema(path: Path, options: IngestOptions, srids: Srids) -> SourceSchema:
    """A file's columns, read as the load reads its kind of file (files.file_kind)."""
    if not is_source_file(path):
        raise ConfigurationError(f"cannot ingest {path}: no such file")
    kind = file_kind(path)  # an unsupported one is refused
    if kind == "csv":
        return _csv_schema(path, options, srids)
    if kind == "parquet":
        return _parquet_schema(path, srids, options.xy_columns)
    if kind == "arrow":
        remedy = "or write it with GeoDataFrame.to_feather, which adds GeoParquet metadata"
        source_is = (str(path), "an Arrow IPC file", remedy)
        reader = open_arrow_file(path)
        every = partial(_arrow_file_columns, path)
        schema = reader.schema
        return _arrow_schema(schema, srids, source_is, options.xy_columns, lambda: reader, every)
    if empty_sequence(path):
        raise ConfigurationError(
            f"{path} is empty (0 bytes): GeoJSON Lines of no features, which declare no "
            "columns to create the table from; create the table first, or load it once it "
            "holds features"
        )
    return _vector_schema(path, srids, options.file_read, options.progress)


def geometry_type(types: list[str], srid: int | None, *, multi: bool = False) -> str:
    """``geometry(TYPE, srid)`` for a source's geometry types ("Polygon", "Point Z"...):
    one type, or a type and its Multi form (as Multi), else GEOMETRY; ``multi`` makes a
    single polygon or line type Multi (a Shapefile's declared type says either)."""
    dimensions = {_dimensions(t) for t in types}
    bases = {t.upper().split(" ")[0] for t in types}
    singles = {b.removeprefix("MULTI") for b in bases}
    base = "GEOMETRY"
    if len(singles) == 1 and not {"UNKNOWN", "GEOMETRY", "GEOMETRYCOLLECTION"} & bases:
        (single,) = singles
        base = f"MULTI{single}" if len(bases) > 1 else bases.pop()
        if multi:
            base = _MULTI.get(base, base)
    suffix = dimensions.pop() if len(dimensions) == 1 else ""
    return f"geometry({base}{suffix}, {srid})" if srid else f"geometry({base}{suffix})"


def _dimensions(geometry_type: str) -> str:
    words = geometry_type.upper().split(" ")
    return words[-1] if len(words) > 1 and words[-1] in ("Z", "M", "ZM") else ""


def _vector_schema(path: Path, srids: Srids, read: FileRead, progress: bool) -> SourceSchema:
    """A vector layer's fields and geometry column; a layer without one (a spreadsheet's
    sheet) gets a Point column for its coordinate fields, as a CSV does. The column's type
    is the layer's, else that of its features ``read`` keeps (:mod:`.found_types`)."""
    import pyogrio

    encoding, xy_columns = read.encoding, read.xy_columns

    check_encoding(encoding, path)
    source = gdal_source(path)
    layer = vector_layer(pyogrio, source, read.layer)
    text = layer_text(pyogrio, source, layer, encoding)  # field names as the load reads them
    names_in = text.open_with or ("UTF-8" if text.fallback else None)
    unreadable = (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, IndexError)
    try:  # (pyogrio's IndexError: a file GDAL opens and finds no layer in)
        with measured_types() as measured:  # pyogrio names no type with M: its own word
            info = pyogrio.read_info(source.name, layer=layer, encoding=names_in)
    except unreadable as error:
        raise unreadable_file(path, error) from error
    if source.suffix == ".fgb" and info["features"] > 0:
        refuse_cut_in_its_index(pyogrio, source, layer, path, info["features"])
    key = id_column(source, info["fid_column"])
    fields = [str(name) for name in info["fields"]]  # a GeoJSON file's ids and an id field
    schema = SourceSchema(key=key if key and key not in fields else "fid")
    points = None if info["geometry_type"] else point_columns(fields, xy_columns, path, NEW_Z_NAMES)
    kinds = zip(info["fields"], info["ogr_types"], info["ogr_subtypes"], strict=True)
    for name, kind, subtype in kinds:
        if points is not None and str(name) in points.fields:
            continue  # the point column's coordinates, as a CSV's
        schema.add(str(name), ogr_type(kind, subtype))
    if info["geometry_type"]:
        shapefile = info["driver"] == "ESRI Shapefile"
        name = info["geometry_name"] or schema.free_name()
        column = srids.column(info["crs"], f"{path}'s CRS", name)
        declared = measured or [info["geometry_type"]]
        try:
            if declared == ["Unknown"]:  # GeoJSON, KML: read the features' own
                types = feature_types(pyogrio, source, layer, read, progress=progress) or declared
            else:
                types = curved_types(pyogrio, source, layer) or declared
        except OSError as error:  # GDAL failed to read a feature: the file is cut short
            raise damaged(path, f"GDAL: {error}") from error
        schema.add_geometry(name, types, column, multi=shapefile)
    elif points is not None:
        _add_points(schema, points, srids.wanted, srids.given)
    return schema


def _parquet_schema(
    path: Path, srids: Srids, xy_columns: tuple[str, ...] | None = None
) -> SourceSchema:
    import pyarrow.parquet

    try:
        file = pyarrow.parquet.ParquetFile(path)
        arrow = parquet_arrow_schema(file)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigurationError(f"cannot read {path} as Parquet: {error}") from error
    remedy = "or write it with GeoDataFrame.to_parquet, which adds GeoParquet metadata"
    source_is = (str(path), "a Parquet file", remedy)
    first_batches = partial(file.iter_batches, batch_size=SAMPLE)
    every = partial(_parquet_columns, file)
    return _arrow_schema(arrow, srids, source_is, xy_columns, first_batches, every)


def _arrow_file_columns(path: Path, names: list[str]) -> Iterator[Any]:
    return (batch.select(names) for batch in open_arrow_file(path))


def _parquet_columns(file: Any, names: list[str]) -> Iterator[Any]:
    return iter(file.iter_batches(columns=names, batch_size=_TYPES_BATCH))


_TYPES_BATCH = 65_536
"""Rows per batch read for geometry types."""


def _arrow_schema(
    arrow: Any,
    srids: Srids,
    source: tuple[str, str, str],
    xy_columns: tuple[str, ...] | None = None,
    first_batches: Callable[[], Iterable[Any]] | None = None,
    read: Callable[[list[str]], Iterable[Any]] | None = None,
) -> SourceSchema:
    """The columns of Arrow data (a Parquet file's, a stream's): its geometry columns are
    those GeoParquet metadata or a GeoArrow extension declares, else a field of a usual
    geometry name, else a Point column for coordinate fields, else the one text or binary
    field whose values in ``first_batches()`` are all geometries. ``source``: where it
    comes from, what it is and how to declare its geometry, for the refusal. ``read``
    gives batches of the named fields, whose geometry types make a geometry column's type
    where no metadata declares it: every batch of a file, the first ones of a stream."""
    import pyarrow

    where, kind, remedy = source
    geo = schema_geometry(arrow, where)
    fields = geo.fields(arrow.names)
    named = usual_geometry(fields) if geo.primary is None else None
    undeclared = geo.primary is None and named is None
    points = point_columns(fields, xy_columns, where, NEW_Z_NAMES) if undeclared else None
    held = None
    if undeclared and points is None and first_batches is not None:
        held = arrow_geometries(arrow, fields, first_batches)
    if undeclared and points is None and held is None:
        raise ConfigurationError(
            f"{where} is {kind} that declares no geometry column (no GeoParquet metadata, "
            "no GeoArrow extension) and has no field named geometry, geom or wkb_geometry, "
            "nor coordinate fields (longitude and latitude, x and y), nor just one text or binary "
            "field of WKT or WKB values only, so create=True cannot tell which field holds "
            "geometries: name the WKB field so (with srid= for its CRS), give the "
            f"coordinates' as xy_columns=, create the table first, {remedy}"
        )
    crs = geo.crs if named is None else {named: None}  # a usual name's: srid=, or none
    untyped = [n for n in crs if not geo.types.get(n) and n not in geo.native]
    wanted = untyped + ([held[0]] if held else [])
    found = arrow_value_types(arrow, read, wanted) if read else {}
    schema = SourceSchema()
    for name in fields:
        if points is not None and name in points.fields:
            continue  # the point column's coordinates, as a CSV's
        if held is not None and name == held[0]:
            types = found.get(name) or ["Geometry"]
            schema.add_geometry(name, types, srids.held(held[1]), multi=False)
            schema.by_values = name
        elif name in crs:
            types = geo.types.get(name) or found.get(name) or ["Geometry"]
            column = srids.column(crs[name], f"{where}'s CRS", name)
            schema.add_geometry(name, types, column, multi=False, geography=name in geo.spherical)
        else:
            schema.add(name, arrow_type(pyarrow, arrow.field(name).type))
    if points is not None:
        _add_points(schema, points, srids.wanted, srids.given)
    return schema


def _frame_schema(
    frame: Any,
    srids: Srids,
    xy_columns: tuple[str, ...] | None = None,
    *,
    later_geometry_types: Collection[str] = (),
) -> SourceSchema:
    """The columns of a DataFrame; ``later_geometry_types``: types of geometries of the
    source's that the frame (a sample of it) does not hold."""
    schema = SourceSchema()
    spatial = any(str(frame[label].dtype) == "geometry" for label in frame.columns)
    labels = [str(c) for c in frame]
    points = None if spatial else point_columns(labels, xy_columns, "", NEW_Z_NAMES)
    held = None if spatial or points is not None else frame_geometries(frame, frame.columns)
    for label in frame.columns:
        series = frame[label]
        if points is not None and str(label) in points.fields:
            continue  # the point column's coordinates, as a CSV's
        if label == held:
            values = series.dropna().tolist()
            shapes = FoundTypes()
            shapes.see_values(values)
            srid = srids.held(values[:SAMPLE])
            schema.add_geometry(str(label), shapes.types or ["Geometry"], srid, multi=False)
            schema.by_values = str(label)
        elif str(series.dtype) == "geometry":
            types = [str(t) for t in series.geom_type.dropna().unique()]
            types += sorted(set(later_geometry_types) - set(types))
            z, m = bool(series.has_z.any()), bool(shapely.has_m(series.to_numpy()).any())
            suffix = ("Z" if z else "") + ("M" if m else "")
            types = [f"{t} {suffix}" for t in types] if suffix else types
            column = srids.column(series.crs, "the GeoDataFrame's CRS", str(label))
            schema.add_geometry(str(label), types, column, multi=False)
        else:
            schema.add(str(label), series_type(series))
    if points is not None:
        _add_points(schema, points, srids.wanted, srids.given)
    return schema


def _csv_schema(path: Path, options: IngestOptions, srids: Srids) -> SourceSchema:
    """A column for each field, of the type all its values read as (:mod:`.text_types`),
    and a geometry column for the WKT column or the coordinates (a Point column, PointZ
    with a z field, EPSG:4326 for longitude and latitude unless srid= says otherwise).
    Without either, the one field whose values are all WKT is the geometry column, under
    its own name (a CSV export of a column named otherwise, loaded back). The column's
    SRID is that of the CRS in a ``.prj`` beside the file (as for a file of layers), else
    srid='s, else the one every value states (EWKT, hex EWKB), else none."""
    header, delimiter = csv_header(path, options.encoding)
    wkt = wkt_column_of(header, None, options.wkt_column, path)
    points = (
        None if wkt is not None else point_columns(header, options.xy_columns, path, NEW_Z_NAMES)
    )
    fields = [h for h in header if h != wkt and (points is None or h not in points.fields)]
    kinds = TextKinds(fields, decimal_comma=delimiter == ";", geometry=wkt)
    reading = f"reading the types of {path.name}'s fields"
    with counting(options.progress, reading, total=rows_counted(path, None)) as advance:
        for rows, values in csv_field_values(path, options.encoding, lambda: kinds.open_fields):
            kinds.see(values)
            advance(rows)
    types, schema = kinds.sql_types(), SourceSchema()
    sniffed = kinds.wkt_fields() if wkt is None and points is None else []
    for name in quoted_fields(path, (header, delimiter), options.encoding) & set(fields):
        types[name] = _QUOTED.get(types[name], types[name])
    for name in fields:  # a name twice is refused as before, when the schema is renamed
        if sniffed != [name]:
            schema.add(name, types[name])
    prj = sidecar_crs(path)
    if wkt is not None or len(sniffed) == 1:
        name = sniffed[0] if sniffed else schema.free_name()  # the load finds it by name
        schema.by_values = sniffed[0] if sniffed else None
        shapes = kinds.geometry_types(wkt or sniffed[0]) or ["Geometry"]
        if prj:
            srid = srids.column(prj[1], f"The CRS of {prj[0]}", name)
        else:  # reproject='s, srid='s, else the one every value states (EWKT, EWKB)
            stated = kinds.srid_of(wkt or sniffed[0])
            srid = next((s for s in (srids.wanted, srids.given, stated) if s is not None), None)
        schema.add_geometry(name, shapes, srid, multi=False)
    elif points is not None:
        srid = srids.column(prj[1], f"The CRS of {prj[0]}", "geometry") if prj else None
        _add_points(schema, points, srids.wanted if srid is None else srid, srids.given)
    return schema


_QUOTED = {"integer": "text", "bigint": "text", "double precision": "numeric"}
"""A field's type when a file quotes its values where it leaves numbers bare: digits so
quoted are a code (a postcode, "75001"), decimals exact (Python's Decimal, geosession's
export of numeric: every digit kept); dates, times and booleans are what they are."""


def _add_points(
    schema: SourceSchema, points: PointColumns, wanted: int | None, given: int | None
) -> None:
    """The geometry column coordinate fields make (PointZ with a field of heights): in the
    SRID reproject= or a CSV's ``.prj`` (``wanted``) or srid= names, else the one their
    names imply (4326 for longitude and latitude)."""
    srid = next((s for s in (wanted, given) if s is not None), points.srid)
    kind = "Point" if points.z is None else "Point Z"
    schema.add_geometry(schema.free_name(), [kind], srid, multi=False)


def _renamed(schema: SourceSchema, rename: Mapping[str, str], path: Path) -> SourceSchema:
    """The file's columns under the names ``rename`` gives its fields."""
    check_rename(rename, [name for name, _ in schema.columns], path)
    names = [rename.get(name, name) for name, _ in schema.columns]
    twice = repeated(names)
    if twice:
        raise ConfigurationError(
            f"rename={dict(rename)!r} gives {', '.join(twice)} to a field while {path} has a "
            "field of that name too: rename that one as well, or choose another name"
        )
    return replace(
        schema,
        columns=[(rename.get(name, name), sql_type) for name, sql_type in schema.columns],
        geometries=[rename.get(name, name) for name in schema.geometries],
    )


def _lowercased(schema: SourceSchema, keep: Mapping[str, str] | None = None) -> SourceSchema:
    """Names in lower case, unless two would then be the same or ``keep`` (a rename) gave
    the name."""
    given = set((keep or {}).values())
    folded = [name.lower() for name, _ in schema.columns]
    rename = {
        name: lower if folded.count(lower) == 1 and name not in given else name
        for (name, _), lower in zip(schema.columns, folded, strict=True)
    }
    return replace(
        schema,
        columns=[(rename[name], sql_type) for name, sql_type in schema.columns],
        geometries=[rename[name] for name in schema.geometries],
        key=schema.key.lower(),
    )
