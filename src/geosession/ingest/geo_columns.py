"""Where Arrow data keeps its geometries: GeoParquet's ``geo`` metadata, GeoArrow
extension types, Parquet's own GEOMETRY and GEOGRAPHY types, or else a field of a usual
geometry name; with each geometry column's CRS, geometry types and encoding. Read for
(Geo)Parquet and Arrow IPC files (:mod:`.columnar_files`), Arrow data in memory
(:mod:`.arrow_streams`) and the tables ``create=True`` makes (:mod:`.source_schema`)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geosession.errors import ConfigurationError
from geosession.geometry import authority_code
from geosession.ingest.batches import Landing
from geosession.ingest.columnar_bbox import bbox_covering
from geosession.ingest.crs import SourceCrs, source_crs
from geosession.ingest.geoarrow import native_encoding, native_type
from geosession.ingest.points import PointColumns

_PANDAS_INDEX = re.compile(r"__index_level_\d+__")
"""A column pandas stores for a DataFrame's index: not the data's."""
_GEOARROW_ENCODINGS = frozenset({"geoarrow.wkb", "geoarrow.wkt", "ogc.wkb"})
"""GeoArrow extensions whose values are WKB or WKT, as the readers take geometries."""


@dataclass(frozen=True)
class GeoParquetColumns:
    """What a Parquet file's or Arrow schema's metadata (GeoParquet's ``geo``, GeoArrow
    extensions) says of its geometry columns; nothing for plain Parquet, where a column
    named as the geometry column is read."""

    primary: str | None = None
    crs: dict[str, SourceCrs | None] = field(default_factory=dict)
    """Each geometry column's CRS: its EPSG SRID, else its PROJJSON (None: unknown)."""
    types: dict[str, list[str]] = field(default_factory=dict)
    """Each geometry column's geometry types ("Polygon", "Point Z"; empty: any)."""
    derived: frozenset[str] = frozenset()
    """Columns derived from the geometries (a covering bbox): not data."""
    native: dict[str, str] = field(default_factory=dict)
    """Columns in a GeoArrow native encoding ("polygon"...), the others being WKB or WKT."""
    spherical: frozenset[str] = frozenset()
    """Columns whose edges are spherical (``"edges": "spherical"``): geography."""
    coverings: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    """Each geometry column's covering bbox: xmin ... ymax as (struct column, field)."""

    def fields(self, names: Iterable[str]) -> list[str]:
        """The columns that are data: not derived, nor pandas' stored index."""
        return [n for n in names if n not in self.derived and not _PANDAS_INDEX.fullmatch(n)]

    def targets(
        self,
        names: Iterable[str],
        landing: Landing,
        where: str,
        renamed: Callable[[str], str] = str,
        xy_columns: Sequence[str] | None = None,
        held: Callable[[list[str]], str | None] | None = None,
    ) -> tuple[dict[str, str], dict[str, SourceCrs], PointColumns | None]:
        """The data fields to read, each with the column it lands in (checked by the
        landing's check; those left out are not read), the CRS each geometry column's
        values have, and the coordinate fields that make the points of the geometry column
        where no field holds geometries (:mod:`.points`, under their own names). ``held``:
        which of the fields (by the source's names) no column takes holds geometries, for
        a geometry column that no field names (:mod:`.held_geometries`)."""
        fields = self.fields(names)
        primary = self.primary
        loaded = [renamed(f) for f in fields]
        if primary is None and landing.geometry_column not in loaded:  # a usual name then
            primary = usual_geometry(loaded)
        if primary is None and held is not None and landing.geometry_column not in loaded:
            primary = _held_field(fields, renamed, landing, (xy_columns, where), held)
        given = primary is not None or landing.geometry_column in loaded
        points = coordinate_fields(fields, renamed, landing, given, xy_columns, where)
        lands = {f: landing.column_for(renamed(f), primary) for f in fields}
        lands = landing.land(lands, points, where)
        known = {lands[f]: crs for f, crs in self.crs.items() if crs is not None and f in lands}
        return lands, known | landing.points_crs(points), points


def _held_field(
    fields: list[str],
    renamed: Callable[[str], str],
    landing: Landing,
    points: tuple[Sequence[str] | None, str],
    held: Callable[[list[str]], str | None],
) -> str | None:
    """The field (renamed) holding the geometries of the target's one geometry column,
    which no field names, unless coordinate fields make its points (taken first, as
    create=True does); ``points``: the xy_columns asked for, and where, for their check."""
    original = {renamed(f): f for f in fields}
    xy_columns, where = points

    def judge(unnamed: list[str]) -> str | None:
        return held([original[name] for name in unnamed])

    found = landing.held_field(list(original), judge, where, xy_columns)
    return None if found is None else renamed(found)


def coordinate_fields(
    fields: Sequence[str],
    renamed: Callable[[str], str],
    landing: Landing,
    given_geometry: bool,
    xy_columns: Sequence[str] | None,
    where: str,
) -> PointColumns | None:
    """The fields (under the source's own names) whose coordinates make the points of the
    geometry column, for a source without a geometry field (:mod:`.points`)."""
    loaded = [renamed(f) for f in fields]
    points = landing.coordinate_fields(loaded, given_geometry, xy_columns, where)
    if points is None:
        return None
    original = {renamed(f): f for f in fields}
    z = None if points.z is None else original[points.z]
    return PointColumns(original[points.x], original[points.y], points.srid, z)


_USUAL_GEOMETRY_NAMES = frozenset({"geometry", "geom", "wkb_geometry", "the_geom", "wkb", "shape"})
"""What a geometry field is usually named (geopandas', GDAL's, older PostGIS tools', Esri's):
without metadata, the first field so named (in any case) lands in the table's geometry
column, as ogr2ogr's geometry does whatever its name."""


def usual_geometry(names: Iterable[str]) -> str | None:
    """The first of ``names`` that is a usual geometry field's name, if any."""
    return next((name for name in names if name.casefold() in _USUAL_GEOMETRY_NAMES), None)


def schema_geometry(schema: Any, where: str | Path) -> GeoParquetColumns:
    """What an Arrow schema says of its geometry columns: GeoParquet's ``geo`` metadata,
    else the GeoArrow extensions of its fields (pyarrow is imported by then)."""
    import pyarrow

    geo = geoparquet_columns(schema.metadata, where)
    extensions, native = geoarrow_columns(pyarrow, schema, where)
    native = {**native, **geo.native}
    declared = {  # a native column's type is its encoding's (M refused here)
        name: native_type(schema.field(name).type, encoding, name)
        for name, encoding in native.items()
    }
    types = {name: geo.types.get(name) or [kind] for name, kind in declared.items()}
    return dataclasses.replace(
        geo,
        primary=geo.primary or next(iter(extensions), None),
        crs={**extensions, **geo.crs},
        types={**geo.types, **types},
        native=native,
    )


def geoparquet_columns(metadata: dict[bytes, bytes] | None, path: Path | str) -> GeoParquetColumns:
    """The ``geo`` metadata of a (Geo)Parquet file (or of Arrow data read from one, named
    ``path`` in messages): WKB columns, and those in a GeoArrow native encoding."""
    if not metadata or b"geo" not in metadata:
        return GeoParquetColumns()
    geo = json.loads(metadata[b"geo"])
    crs: dict[str, SourceCrs | None] = {}
    types: dict[str, list[str]] = {}
    derived: set[str] = set()
    native: dict[str, str] = {}
    spherical: set[str] = set()
    coverings = {}
    for name, column in geo.get("columns", {}).items():
        if column.get("edges") == "spherical":
            spherical.add(name)
        for paths in column.get("covering", {}).values():
            derived.update(str(steps[0]) for steps in paths.values() if steps)
        if (covering := bbox_covering(column.get("covering", {}).get("bbox"))) is not None:
            coverings[name] = covering
        encoding = str(column.get("encoding", "WKB"))
        if encoding.upper() != "WKB":
            native[name] = _native_encoding(encoding, f"{path}: geometry column {name}")
        crs[name] = projjson_crs(column["crs"]) if "crs" in column else 4326  # CRS84
        types[name] = [str(kind) for kind in column.get("geometry_types") or []]
    primary = geo.get("primary_column")
    return GeoParquetColumns(
        primary, crs, types, frozenset(derived), native, frozenset(spherical), coverings
    )


def _native_encoding(name: str, what: str) -> str:
    """The GeoArrow native encoding ``name`` is; another encoding is refused."""
    encoding = native_encoding(name)
    if encoding is None:
        raise ConfigurationError(
            f"{what} is in the {name} encoding, which geosession does not read: WKB, WKT "
            "and GeoArrow's point, linestring, polygon and multi types are read. Convert "
            "it first, e.g. with geoarrow.pyarrow's as_wkb, or ST_AsWKB(geom) in DuckDB"
        )
    return encoding


def geoarrow_columns(
    pyarrow: Any, schema: Any, where: str | Path
) -> tuple[dict[str, SourceCrs | None], dict[str, str]]:
    """The CRS of each column an Arrow schema marks as GeoArrow (None: unknown), and the
    native encoding of those not in WKB or WKT; other GeoArrow types are refused."""
    found: dict[str, SourceCrs | None] = {}
    native: dict[str, str] = {}
    for arrow_field in schema:
        name, metadata = _extension(pyarrow, arrow_field)
        if name is None or not name.startswith(("geoarrow.", "ogc.")):
            continue
        if name not in _GEOARROW_ENCODINGS:
            what = f"{where}: column {arrow_field.name}"
            native[arrow_field.name] = _native_encoding(name, what)
        crs = json.loads(metadata).get("crs") if metadata else None
        found[arrow_field.name] = projjson_crs(crs)
    return found, native


def _extension(pyarrow: Any, arrow_field: Any) -> tuple[str | None, bytes | None]:
    """A field's extension name and metadata: its registered extension type's, else the
    field metadata an unregistered extension travels in."""
    kind = arrow_field.type
    if isinstance(kind, pyarrow.BaseExtensionType):  # Arrow's own (arrow.uuid) keep theirs
        serialized = getattr(kind, "__arrow_ext_serialize__", None)
        return kind.extension_name, serialized() if serialized else None
    metadata = arrow_field.metadata or {}
    name = metadata.get(b"ARROW:extension:name")
    return (name.decode() if name else None), metadata.get(b"ARROW:extension:metadata")


def projjson_crs(crs: Any) -> SourceCrs | None:
    """A GeoParquet CRS (PROJJSON, or a string) as :func:`source_crs` reads it; None when
    it is null (unknown)."""
    if isinstance(crs, dict):  # its id read here: pyarrow may be installed without pyproj
        ident = crs.get("id", {})
        code = authority_code(str(ident.get("authority", "")), str(ident.get("code", "")))
        return code if code is not None else source_crs(json.dumps(crs))
    return source_crs(crs) if isinstance(crs, str) else None


def parquet_arrow_schema(handle: Any) -> Any:
    """A Parquet file's Arrow schema, its columns of Parquet's own GEOMETRY and GEOGRAPHY
    types (which DuckDB writes without GeoParquet metadata, and pyarrow reads as plain
    binary) marked as GeoArrow WKB with their CRS."""
    schema = handle.schema_arrow
    described = handle.metadata.schema
    for number in range(len(described)):
        column = described.column(number)
        index = schema.get_field_index(column.path)  # top-level columns only
        if column.logical_type.type not in ("GEOMETRY", "GEOGRAPHY") or index < 0:
            continue
        crs = json.loads(column.logical_type.to_json()).get("crs", "OGC:CRS84")
        extension = {"crs": _parquet_crs(crs, handle.metadata.metadata or {})}
        marked = schema.field(index).with_metadata(
            {
                b"ARROW:extension:name": b"geoarrow.wkb",
                b"ARROW:extension:metadata": json.dumps(extension).encode(),
            }
        )
        schema = schema.set(index, marked)
    return schema


def _parquet_crs(crs: str, metadata: dict[bytes, bytes]) -> Any:
    """The CRS a GEOMETRY column's ``crs`` names: inline PROJJSON, ``projjson:<key>`` (a
    file metadata key holding it), ``srid:<n>`` (read as EPSG), or an identifier."""
    if crs.startswith("projjson:"):
        crs = metadata.get(crs.removeprefix("projjson:").encode(), b"null").decode()
    elif crs.startswith("srid:"):
        return f"EPSG:{crs.removeprefix('srid:')}"
    try:
        return json.loads(crs)
    except ValueError:
        return crs
