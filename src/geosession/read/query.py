"""The statements a streaming read runs: pure SQL building, shared by sync and async.

``ReadPlan.statement`` wraps the caller's subquery ``q`` in the select that runs: the
geometry column projected (and, for GeoJSON, transformed to EPSG:4326 and turned into a
Feature by PostGIS's ``ST_AsGeoJSON(record)``), an optional bounding-box filter on the
raw column (so the GiST index is used), and, in keyset mode, one page after a key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
from geoalchemy2 import Geography
from sqlalchemy import (
    BindParameter,
    ClauseElement,
    ColumnElement,
    Executable,
    Float,
    Integer,
    Select,
    Subquery,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from geosession.errors import ConfigurationError, SRIDMismatch
from geosession.geometry import GEOJSON_SRID, Bbox, bbox_parts
from geosession.read.passthrough import srids as srids_of
from geosession.read.plan import (
    FEATURE_TEXT,
    Column,
    ReadOptions,
    choose_geometry,
    column_index,
    quote_identifier,
)
from geosession.read.types import POSTGRES_JSON, POSTGRES_TEXT, TEXT_ARRAY
from geosession.srs import SpatialRef, crs_of, in_degrees, spatial_ref

CURSOR_NAME = "geosession_stream"
"""One stream per connection and transaction: the cursor is named after the shape of its
rows (:attr:`ReadPlan.cursor_name`), so a FETCH's text names one shape. asyncpg prepares
and caches each statement with its row description; one FETCH text for every stream
made the second stream of another shape on a pooled connection fail ("the number of
columns in the result row is different from what was described")."""

SPATIAL_TYPES_SQL = text(
    "SELECT t.oid::int, t.typname::text FROM pg_type t "
    "WHERE t.oid IN (to_regtype('geometry'), to_regtype('geography')) "
    "UNION ALL SELECT t.typarray::int, t.typname || '[]' FROM pg_type t "
    "WHERE t.oid IN (to_regtype('geometry'), to_regtype('geography')) "
    "UNION ALL SELECT NULL, n.nspname::text FROM pg_extension e "
    "JOIN pg_namespace n ON n.oid = e.extnamespace "
    "WHERE e.extname = 'postgis' AND to_regtype('geometry') IS NULL "
    "UNION ALL SELECT t.typarray::int, 'enum[]' FROM pg_type t WHERE t.typtype = 'e'"
)
"""The OIDs of PostGIS's types (and of their arrays, ``geometry[]``) in this database (they
differ between databases), as the session's search_path finds them; where it finds none,
the schema PostGIS is in (with no OID), if any. Then the arrays of enums, which the drivers
read as PostgreSQL's text of the array (``'{walk,bus}'``): read as ``text[]``, lists."""


def fetch_sql(size: int, cursor: str) -> str:
    """The FETCH for the next ``size`` rows of the stream's cursor."""
    return f"FETCH FORWARD {int(size)} FROM {cursor}"


class DeclareCursor(Executable, ClauseElement):
    """``DECLARE <cursor> NO SCROLL CURSOR FOR <select>``, binds processed by SQLAlchemy;
    rows are then read with :func:`fetch_sql` in the same transaction."""

    inherit_cache = False

    def __init__(self, statement: Select[Any], cursor: str) -> None:
        self.statement = statement
        self.cursor = cursor


@compiles(DeclareCursor)
def _compile_declare(element: DeclareCursor, compiler: SQLCompiler, **kw: Any) -> str:
    select_sql = compiler.process(element.statement, **kw)
    return f"DECLARE {element.cursor} NO SCROLL CURSOR FOR {select_sql}"


_START: Any = object()  # keyset mode: before the first page
_NULL_GEOMETRY = r'^\{"type": "Feature", "geometry": \{"type": null\}'
_NULL_FIXED = '{"type": "Feature", "geometry": null'


@dataclass(frozen=True)
class ReadPlan:
    """One read, planned: the options, the described columns and the choices made."""

    options: ReadOptions
    columns: tuple[Column, ...]
    geometry_index: int
    key_index: int | None
    geometry_bytea: bool  # True: send ST_AsEWKB (text-protocol drivers); False: binary geometry
    timezone: dt.tzinfo = dt.UTC  # the session's TimeZone, which timestamptz values are in
    spatial_refs: tuple[SpatialRef, ...] = ()  # spatial_ref_sys rows of the SRIDs below
    rows_srids: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    """The SRID the rows of each column without a declared one have shown so far."""

    START = _START

    @classmethod
    def make(
        cls,
        options: ReadOptions,
        columns: Sequence[Column],
        *,
        geometry_bytea: bool,
        timezone: dt.tzinfo = dt.UTC,
    ) -> ReadPlan:
        """Chooses the geometry and key columns; refuses contradictory options."""
        columns = tuple(columns)
        geometry_index = choose_geometry(columns, options.geometry_column)
        key_index = None
        if options.pages_by is not None:
            key_index = column_index(columns, options.pages_by, "pages_by")
            if columns[key_index].spatial:
                raise ConfigurationError(
                    f"pages_by={options.pages_by!r} is a geometry column; page by a unique "
                    "key such as the primary key"
                )
        if options.output in ("geojson", FEATURE_TEXT) and options.projection.kind == "transform":
            raise ConfigurationError(
                f"geometry='transform:{options.projection.value}' does not apply to GeoJSON: "
                "RFC 7946 coordinates are always EPSG:4326, which geosession transforms to"
            )
        return cls(options, columns, geometry_index, key_index, geometry_bytea, timezone)

    @property
    def features(self) -> bool:
        """Whether rows are GeoJSON Features built by PostGIS."""
        return self.options.output in ("geojson", FEATURE_TEXT)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def geometry(self) -> Column:
        return self.columns[self.geometry_index]

    @cached_property
    def cursor_name(self) -> str:
        """The stream's cursor, named after the shape of its rows (see CURSOR_NAME)."""
        shape = repr((self.columns, self.options, self.geometry_bytea, self.geometry_index))
        return f"{CURSOR_NAME}_{hashlib.blake2b(shape.encode(), digest_size=8).hexdigest()}"

    @property
    def srids(self) -> list[int]:
        """The SRIDs the columns declare, and the one ``transform:<srid>`` asks for."""
        srids = [column.srid for column in self.columns if column.srid]
        projection = self.options.projection
        if projection.kind == "transform" and isinstance(projection.value, int):
            srids.append(projection.value)
        if self._bbox_parts[1:]:  # halves at the antimeridian: its CRS must be in degrees
            srids.append(self.options.bbox_srid)
        return srids

    def with_spatial_refs(self, rows: Sequence[Sequence[Any]]) -> ReadPlan:
        """The plan with the spatial_ref_sys rows of its SRIDs; ``transform:<srid>`` of
        an SRID the database does not know is refused."""
        refs = tuple(spatial_ref(row) for row in rows)
        projection, bbox_srid = self.options.projection, self.options.bbox_srid
        if projection.kind == "transform" and projection.value not in {r[0] for r in refs}:
            raise ConfigurationError(
                f"geometry='transform:{projection.value}': SRID {projection.value} is not in "
                "spatial_ref_sys; use an SRID that PostGIS knows (listed in the "
                "spatial_ref_sys table)"
            )
        if self._bbox_parts[1:]:
            _check_antimeridian(self.options, next((r for r in refs if r[0] == bbox_srid), None))
        return replace(self, spatial_refs=refs)

    def crs_for(self, srid: float | None) -> str | None:
        """What PROJ calls the CRS of ``srid`` in this database (None: none it reads)."""
        return crs_of(srid, self.spatial_refs)

    def column_crs(self, column: Column, geometries: Any, *, active: bool) -> str | None:
        """A geometry column's CRS: its declared SRID's (the projection's for the active
        column), else its rows' (one for all: a frame's or a file's column has one)."""
        projection = self.options.projection
        srid = projection.value if active and projection.kind == "transform" else column.srid
        if srid is None:
            srid = self._rows_srid(column, geometries)
        return self.crs_for(srid)

    def _rows_srid(self, column: Column, geometries: Any) -> int | None:
        """The one SRID (other than 0, unknown) of a column that declares none, in this
        batch and every batch before; several are refused rather than given one CRS."""
        srids = {int(s) for s in np.unique(srids_of(geometries)) if s > 0}
        earlier = self.rows_srids.get(column.name)
        srids |= {earlier} if earlier is not None else set()
        if len(srids) > 1:
            first, *others = sorted(srids, key=lambda s: (s != earlier, s))
            listed = ", ".join(map(str, others))
            raise SRIDMismatch(
                f"Column {column.name} declares no SRID and holds geometries of SRID {first} "
                f"and {listed}: a frame's, an Arrow column's or a file layer's geometries have "
                "one CRS, so they would all be read as one. Transform them into one in the "
                f"query (ST_Transform({column.name}, {first})), or pass "
                f"geometry='transform:{first}' (CLI: --geometry transform:{first})"
            )
        if srids:
            self.rows_srids[column.name] = srids.pop()
        return self.rows_srids.get(column.name)

    @property
    def key_position(self) -> int:
        """Where the page key sits in a fetched row."""
        assert self.key_index is not None
        return 1 if self.features else self.key_index

    def statement(
        self, source: Subquery, *, after: Any = _START, limit: int | None = None
    ) -> Select[Any]:
        """The select to run on ``source`` (the caller's statement as subquery ``q``)."""
        rows = select(*self._columns()).select_from(source)
        if self.options.bbox is not None:
            rows = rows.where(self._bbox_filter())
        descending = self.options.pages_descending
        if self.key_index is not None:
            key = _ref(self.columns[self.key_index].name)
            if after is not _START:
                last: BindParameter[Any] = bindparam("geosession_after", after)
                rows = rows.where(key < last if descending else key > last)
            rows = rows.order_by(key.desc() if descending else key).limit(limit)
        if not self.features:
            return rows
        feature = rows.subquery("f")
        outer = select(self._feature()).select_from(feature)
        if self.key_index is not None:
            key = literal_column(f"f.{quote_identifier(self.columns[self.key_index].name)}")
            outer = outer.add_columns(key).order_by(key.desc() if descending else key)
        return outer

    def null_keys(self, source: Subquery) -> Select[Any]:
        """One row when some row's page key is NULL: paging past keys never reaches it."""
        assert self.key_index is not None
        rows = select(literal(1)).select_from(source)
        if self.options.bbox is not None:
            rows = rows.where(self._bbox_filter())
        return rows.where(_ref(self.columns[self.key_index].name).is_(None)).limit(1)

    def _feature(self) -> ColumnElement[Any]:
        """``ST_AsGeoJSON(f.*, ...)``: the Feature text of row ``f`` (``f.*``, as a bare ``f``
        would be a column of that name, if the query has one).

        PostGIS 3.3 writes a NULL geometry as ``{"type": null}``; RFC 7946 wants ``null``.
        The fix is anchored at the start of the text, so property values are never touched.
        """
        name = self.geometry.name
        digits = cast(literal(self.options.precision), Integer)
        feature = func.ST_AsGeoJSON(literal_column("f.*"), literal(name), digits)
        fixed = func.regexp_replace(feature, literal(_NULL_GEOMETRY), literal(_NULL_FIXED))
        is_null = literal_column(f"f.{quote_identifier(name)}").is_(None)
        return case((is_null, fixed), else_=feature)

    def _columns(self) -> list[ColumnElement[Any]]:
        selected: list[ColumnElement[Any]] = []
        for index, column in enumerate(self.columns):
            if index == self.geometry_index:
                value = self._geometry_value()
            elif column.spatial:
                value = self._other_geometry(column)
            elif column.array_of is not None:
                value = self._geometry_array(column)
            elif column.type_oid == TEXT_ARRAY:  # an array of enums too: a list of labels
                value = literal_column(f"q.{quote_identifier(column.name)}::text[]")
            elif self._as_text(column) and not self.features:
                value = literal_column(f"q.{quote_identifier(column.name)}::text")
            elif self._as_json(column) and not self.features:
                value = literal_column(f"to_json(q.{quote_identifier(column.name)})::text")
            else:
                value = _ref(column.name)
            selected.append(value.label(column.name))
        return selected

    def _as_text(self, column: Column) -> bool:
        """Cast to text on the server: the driver cannot load it, or a file wants its text."""
        return column.as_text or (self.options.postgres_text and column.type_oid in POSTGRES_TEXT)

    def _as_json(self, column: Column) -> bool:
        """An array of a type a file holds as PostgreSQL's text: its to_json, for a file."""
        return self.options.postgres_text and column.type_oid in POSTGRES_JSON

    def _geometry_value(self) -> ColumnElement[Any]:
        column = self.geometry
        geom = _ref(column.name)
        if column.spatial == "geography":
            geom = literal_column(f"q.{quote_identifier(column.name)}::geometry")
        geom = self.options.projection.apply(geom)
        if self.features:
            wgs84 = geom if column.srid == GEOJSON_SRID else _to_wgs84(geom, _ref(column.name))
            points = (column.geometry_type or "").split(" ")[0] in ("Point", "MultiPoint")
            return wgs84 if points else _right_hand_rule(wgs84)  # no rings to turn
        return func.ST_AsEWKB(geom) if self.geometry_bytea else geom

    def _other_geometry(self, column: Column) -> ColumnElement[Any]:
        """Geometry columns besides the chosen one: EWKT in Features, EWKB in rows (a
        geography's through geometry: PostGIS has no ST_AsEWKB of a geography)."""
        if self.features:
            return func.ST_AsEWKT(_ref(column.name))
        if not self.geometry_bytea:
            return _ref(column.name)
        if column.spatial == "geography":
            return func.ST_AsEWKB(literal_column(f"q.{quote_identifier(column.name)}::geometry"))
        return func.ST_AsEWKB(_ref(column.name))

    def _geometry_array(self, column: Column) -> ColumnElement[Any]:
        """An array of geometries (``array_agg(geom)``), which no driver loads: a list of
        EWKB in rows, as other geometry columns come; in a file, the JSON of a list of
        GeoJSON geometries, as in Features (a geography's through geometry: PostGIS casts
        a geography to neither bytea nor json)."""
        array = f"q.{quote_identifier(column.name)}"
        if column.array_of == "geography":
            array = f"{array}::geometry[]"
        if self.features:
            return literal_column(array)  # ST_AsGeoJSON writes its GeoJSON
        if self.options.postgres_text:
            return literal_column(f"to_json({array})::text")
        return literal_column(f"{array}::bytea[]")

    @property
    def _bbox_parts(self) -> list[Bbox]:
        """The bbox, or its halves on either side of the antimeridian."""
        return bbox_parts(self.options.bbox) if self.options.bbox is not None else []

    def _bbox_filter(self) -> ColumnElement[bool]:
        """``geom && box`` (or of either half of a box across the antimeridian), on the raw
        column so that its GiST index serves the filter."""
        return or_(*(self._meets(part) for part in self._bbox_parts))

    def _meets(self, part: Bbox) -> ColumnElement[bool]:
        column, bbox_srid = self.geometry, self.options.bbox_srid
        geom = _ref(column.name)
        corners = [cast(literal(value), Float) for value in part]
        box = func.ST_MakeEnvelope(*corners, cast(literal(bbox_srid), Integer))
        if column.spatial == "geography":
            return geom.op("&&")(
                cast(func.ST_Transform(_dense(box, part), GEOJSON_SRID), Geography)
            )
        if column.srid == bbox_srid:
            return geom.op("&&")(box)
        if column.srid is not None:
            srid_value = cast(literal(column.srid), Integer)
            return geom.op("&&")(func.ST_Transform(_dense(box, part), srid_value))
        srid = func.ST_SRID(geom)  # unknown column SRID: per row (no index)
        per_row = case(
            (srid.in_([0, bbox_srid]), func.ST_SetSRID(box, srid)),
            else_=func.ST_Transform(_dense(box, part), srid),
        )
        return geom.op("&&")(per_row)


def _dense(box: ColumnElement[Any], part: Bbox) -> ColumnElement[Any]:
    """The box with points along its sides: transformed, its edges bend (a longitude and
    latitude box is curved in a conic projection), and four corners alone would leave out
    what the curved edges enclose (a world box held nothing)."""
    low_x, low_y, high_x, high_y = part
    step = max(high_x - low_x, high_y - low_y) / _BBOX_SEGMENTS
    return func.ST_Segmentize(box, cast(literal(step), Float)) if step > 0 else box


def _check_antimeridian(options: ReadOptions, ref: SpatialRef | None) -> None:
    """A box with minx > maxx crosses the antimeridian only in longitudes and latitudes;
    in a projected CRS it is a mistake (its corners given in the wrong order)."""
    if not in_degrees(ref):
        srid = f"bbox_srid={options.bbox_srid} is " + (
            "not a geographic CRS" if ref else "not in spatial_ref_sys"
        )
        raise ConfigurationError(
            f"bbox={options.bbox!r} has minx > maxx, which only a box in longitudes and "
            f"latitudes crossing the antimeridian can have, and {srid}; give minx <= maxx"
        )


_BBOX_SEGMENTS = 32
"""Points per side of a bounding box transformed into another SRID."""


def _ref(name: str) -> ColumnElement[Any]:
    return literal_column(f"q.{quote_identifier(name)}")


def _right_hand_rule(geom: ColumnElement[Any]) -> ColumnElement[Any]:
    """RFC 7946's orientation: exterior rings counterclockwise, holes clockwise (a
    Shapefile's polygons turn the other way, which spherical renderers such as d3 draw as
    the rest of the globe). Checked first: ST_ForcePolygonCCW copies every geometry, which
    cost an export a sixth of its speed where nothing needed turning."""
    return case((func.ST_IsPolygonCCW(geom), geom), else_=func.ST_ForcePolygonCCW(geom))


def _to_wgs84(geom: ColumnElement[Any], raw: ColumnElement[Any]) -> ColumnElement[Any]:
    """``geom`` in EPSG:4326 unless it already is, or has no SRID to transform from.

    The SRID is read from the raw column (projections keep it), so that the projection
    is computed once per row whichever branch is taken.
    """
    srid = func.ST_SRID(raw)
    return case((srid.in_([0, GEOJSON_SRID]), geom), else_=func.ST_Transform(geom, GEOJSON_SRID))
