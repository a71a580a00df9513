"""Planning a streaming read: pure functions, no I/O, shared by the sync and async shells.

A read wraps the caller's statement as a subquery ``q``, learns its columns from a
``LIMIT 0`` describe (no row is read), picks the geometry column, and builds the
statement that actually runs, with the geometry projection (envelope, centroid, ...)
pushed into SQL so that less crosses the wire. Every identifier is quoted here.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    cast,
    func,
    literal,
)
from sqlalchemy.dialects import postgresql

from geosession.errors import ConfigurationError, refuse_unknown_options
from geosession.geometry import GEOJSON_SRID, is_bbox
from geosession.read.types import TEXT_ARRAY
from geosession.settings import local_settings

OUTPUTS = ("shapely", "wkb", "geojson", "row")
"""What :meth:`SpatialDatabase.stream` yields per row (see :class:`ReadOptions`)."""
PROJECTIONS = ("full", "envelope", "centroid", "simplify:<tolerance>", "transform:<srid>")
"""The accepted ``geometry=`` forms."""

FEATURE_TEXT = "feature_text"  # internal output: one GeoJSON Feature as text per row
FULL_PRECISION = 15  # ST_AsGeoJSON's most decimals (older PostGIS): 1e-10 m in degrees

_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
_MAX_SRID = 999_999


def not_a_projection(spec: object) -> str:
    """Why ``spec`` is refused, and the forms a projection takes."""
    return (
        f"{spec!r} is not a projection; use one of "
        + ", ".join(repr(form) for form in PROJECTIONS)
        + " (tolerance a number >= 0 in the geometry's units, srid a positive integer)"
    )


def quote_identifier(name: str) -> str:
    """``name`` as a PostgreSQL identifier, quoted when it needs to be."""
    quoted: str = _PREPARER.quote(name)
    return quoted


# --- projections ---------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """What to compute from each geometry before it is sent: ``geometry=`` parsed."""

    kind: Literal["full", "envelope", "centroid", "simplify", "transform"]
    value: float | int | None = None

    @classmethod
    def parse(cls, spec: str) -> Projection:
        """``"full"``, ``"envelope"``, ``"centroid"``, ``"simplify:0.5"``, ``"transform:3857"``."""
        name, _, argument = spec.partition(":") if isinstance(spec, str) else ("", "", "")
        name = name.strip().lower()
        if name in ("full", "envelope", "centroid") and not argument:
            return cls(name)  # type: ignore[arg-type]
        if name == "simplify" and argument:
            tolerance = _number(argument)
            if tolerance is not None and math.isfinite(tolerance) and tolerance >= 0:
                return cls("simplify", tolerance)
        if name == "transform" and argument.strip().isdigit():
            srid = int(argument)
            if 0 < srid <= _MAX_SRID:
                return cls("transform", srid)
        raise ConfigurationError(f"geometry={not_a_projection(spec)}")

    def apply(self, geom: ColumnElement[Any]) -> ColumnElement[Any]:
        """The SQL expression computing this projection of ``geom``."""
        if self.kind == "envelope":
            return func.ST_Envelope(geom)
        if self.kind == "centroid":
            return func.ST_Centroid(geom)
        if self.kind == "simplify":
            return func.ST_SimplifyPreserveTopology(geom, cast(literal(self.value), Float))
        if self.kind == "transform":
            return func.ST_Transform(geom, cast(literal(self.value), Integer))
        return geom

    def declared(self, column_type: str | None) -> str | None:
        """The type of a column declaring ``column_type`` ("Polygon", "Point Z") after this
        projection, when known before any row: the column's one type (kept but by envelopes
        and centroids), or Point for centroids and the envelopes of points (both 2D). None
        when the rows must tell: an expression's column declares none, ``geometry(Geometry)``
        any, and an envelope is a point, line or polygon."""
        if self.kind in ("full", "simplify", "transform"):
            return None if column_type is None or column_type.startswith("Unknown") else column_type
        if self.kind == "centroid" or (column_type or "").upper().startswith("POINT"):
            return "Point"
        return None


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


# --- options -------------------------------------------------------------------------


AUTO_KEY = "auto"
"""``pages_by="auto"``: the primary key of the one table a select reads, else a cursor."""


@dataclass(frozen=True)
class ReadOptions:
    """Everything the caller chose for one read, validated at construction (no I/O)."""

    projection: Projection = field(default_factory=lambda: Projection("full"))
    output: str = "shapely"
    geometry_column: str | None = None
    batch_size: int | None = None  # None: adapt to the rows' size
    pages_by: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    bbox_srid: int = GEOJSON_SRID
    precision: int = FULL_PRECISION
    transaction_settings: dict[str, str] = field(default_factory=dict)
    """What the read's transactions SET LOCAL: its own statement_timeout ("5min", else the
    database's: a cursor's each FETCH, a page's each query, must end within it) and the
    ``settings`` given (a tenant's search_path, a row-level security key)."""
    postgres_text: bool = False
    """Read the types of ``types.POSTGRES_TEXT`` as PostgreSQL's text (file exports)."""
    pages_descending: bool = False
    """Pages go down the key (the statement is ordered by it descending)."""
    pages_by_auto: bool = False
    """``pages_by="auto"`` was given: the key found in the statement, else a cursor."""

    @classmethod
    def build(cls, **options: Any) -> ReadOptions:
        """The options of one read (``db.stream(..., **options)`` and its kin), each
        checked; a keyword that is none is refused naming the option it resembles."""
        known = list(inspect.signature(cls._checked).parameters)
        refuse_unknown_options(options, known, "A read (db.stream, db.export and their kin)")
        return cls._checked(**options)

    @classmethod
    def _checked(
        cls,
        *,
        geometry: str = "full",
        output: str = "shapely",
        geometry_column: str | None = None,
        batch_size: int | str = "auto",
        pages_by: str | None = None,
        bbox: Sequence[float] | None = None,
        bbox_srid: int = GEOJSON_SRID,
        precision: int | None = None,
        statement_timeout: str | int | None = None,
        settings: Mapping[str, object] | None = None,
    ) -> ReadOptions:
        """Checks every argument and says which one is wrong and what is accepted."""
        if output not in (*OUTPUTS, FEATURE_TEXT):
            raise ConfigurationError(
                f"output={output!r} is not an output; use one of "
                + ", ".join(repr(name) for name in OUTPUTS)
            )
        for name, value in (("geometry_column", geometry_column), ("pages_by", pages_by)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{name} must be a column name, got {value!r}")
        return cls(
            projection=Projection.parse(geometry),
            output=output,
            geometry_column=geometry_column,
            batch_size=_check_batch_size(batch_size),
            pages_by=pages_by,
            pages_by_auto=pages_by == AUTO_KEY,
            bbox=_check_bbox(bbox),
            bbox_srid=_check_srid("bbox_srid", bbox_srid),
            precision=_check_precision(precision),
            transaction_settings=local_settings(settings, statement_timeout=statement_timeout),
        )

    def for_features(self) -> ReadOptions:
        """The same read producing GeoJSON Feature text (export, ``output="geojson"``)."""
        return replace(self, output=FEATURE_TEXT)


def _check_batch_size(value: int | str) -> int | None:
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ConfigurationError(
            f"batch_size={value!r} is not valid; use 'auto' or an integer from 1 to 1,000,000"
        )
    return value


def _check_bbox(bbox: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    if bbox is None:
        return None
    try:
        minx, miny, maxx, maxy = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"bbox={bbox!r} is not a bounding box; give four numbers minx, miny, maxx, maxy"
        ) from None
    if not is_bbox((minx, miny, maxx, maxy)):
        raise ConfigurationError(
            f"bbox={bbox!r} is not a bounding box: need finite minx <= maxx and miny <= maxy "
            "(minx > maxx only for a box crossing the antimeridian, in longitudes from -180 "
            "to 180)"
        )
    return minx, miny, maxx, maxy


def _check_srid(name: str, srid: int) -> int:
    if isinstance(srid, bool) or not isinstance(srid, int) or not 0 < srid <= _MAX_SRID:
        raise ConfigurationError(f"{name} must be a positive integer SRID, got {srid!r}")
    return srid


def _check_precision(precision: int | None) -> int:
    if precision is None:
        return FULL_PRECISION
    if isinstance(precision, bool) or not isinstance(precision, int):
        raise ConfigurationError(f"precision must be an integer from 0 to 15, got {precision!r}")
    if not 0 <= precision <= FULL_PRECISION:
        raise ConfigurationError(f"precision must be from 0 to 15 decimals, got {precision}")
    return precision


# --- columns -------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of the caller's result, as the server described it."""

    name: str
    type_oid: int
    spatial: Literal["geometry", "geography"] | None = None
    srid: int | None = None  # from the column's type modifier, where it is known
    as_text: bool = False  # the driver cannot load it in binary: cast to text
    geometry_type: str | None = None  # likewise, e.g. "Polygon" or "Point Z"; None: any
    precision: int | None = None  # numeric(precision, scale), as the driver describes it
    scale: int | None = None
    array_of: Literal["geometry", "geography"] | None = None  # geometry[]: read as bytea[]


def typmod_srid(typmod: int | None) -> int | None:
    """The SRID PostGIS encodes in a ``geometry(type, srid)`` type modifier (or None)."""
    if typmod is None or typmod < 0:
        return None
    srid = ((typmod & 0x0FFFFF00) - (typmod & 0x10000000)) >> 8  # 21 bits, signed
    return srid if srid > 0 else None


_TYPMOD_TYPES = (
    "Unknown",
    "Point",
    "LineString",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
    "GeometryCollection",
)
"""PostGIS's geometry type codes in a type modifier, as GDAL names them (0: any type)."""


def typmod_geometry_type(typmod: int | None) -> str | None:
    """The type a ``geometry(type, srid)`` modifier declares ("Point Z"; "Unknown" for
    ``geometry(Geometry, srid)``, "Unknown Z" for ``GeometryZ``); None without one."""
    if typmod is None or typmod < 0:
        return None
    code = (typmod & 0xFC) >> 2
    base = _TYPMOD_TYPES[code] if 0 < code < len(_TYPMOD_TYPES) else "Unknown"
    return base + {0: "", 1: " M", 2: " Z", 3: " ZM"}[typmod & 0x03]


def typmod_of(srid: int, geometry_type: str, dimension: int) -> int:
    """The type modifier ``geometry(type, srid)`` would have, from the SRID, type (POINTM
    for XYM, as ``GeometryType`` names it) and dimensions a column's CHECK constraints
    declare (PostGIS 1's columns have no type modifier, nor have their reads)."""
    measured = geometry_type.upper().endswith("M")
    base = geometry_type.upper().removesuffix("M") if measured else geometry_type.upper()
    codes = {name.upper(): code for code, name in enumerate(_TYPMOD_TYPES)}
    z = dimension == 4 or (dimension == 3 and not measured)
    m = dimension == 4 or measured
    return max(srid, 0) << 8 | codes.get(base, 0) << 2 | z << 1 | m


_TYPES: dict[str, Literal["geometry", "geography"]] = {
    "geometry": "geometry",
    "geography": "geography",
}
_ARRAYS: dict[str, Literal["geometry", "geography"]] = {
    "geometry[]": "geometry",
    "geography[]": "geography",
}
"""PostGIS's types and their arrays, as :data:`.query.SPATIAL_TYPES_SQL` names them."""


def describe_columns(
    description: Sequence[Sequence[Any]],
    spatial_oids: Mapping[int, str],
    typmods: Sequence[int | None] | None = None,
    binary_loadable: Any = None,
) -> tuple[Column, ...]:
    """Columns from a DB-API ``cursor.description``; duplicate names are refused."""
    columns = []
    seen: set[str] = set()
    for index, entry in enumerate(description):
        name, oid = str(entry[0]), int(entry[1])
        if name in seen:
            raise ConfigurationError(
                f"the query returns two columns named {name!r}; give one of them an alias "
                "(SELECT ... AS other_name)"
            )
        seen.add(name)
        found = spatial_oids.get(oid)
        oid = TEXT_ARRAY if found == "enum[]" else oid  # read as text[] (.query)
        array_of = _ARRAYS.get(found or "")
        spatial = None if array_of else _TYPES.get(found or "")
        typmod = typmods[index] if typmods is not None and spatial else None
        as_text = (
            not (spatial or array_of) and binary_loadable is not None and not binary_loadable(oid)
        )
        kind = typmod_geometry_type(typmod)
        precision, scale = (entry[4], entry[5]) if len(entry) > 5 else (None, None)
        srid = typmod_srid(typmod)
        columns.append(Column(name, oid, spatial, srid, as_text, kind, precision, scale, array_of))
    return tuple(columns)


def choose_geometry(columns: Sequence[Column], wanted: str | None) -> int:
    """Index of the geometry column: the one there is, or the one ``wanted`` names."""
    spatial = [i for i, column in enumerate(columns) if column.spatial]
    names = ", ".join(repr(columns[i].name) for i in spatial)
    if wanted is not None:
        index = column_index(columns, wanted, "geometry_column")
        if not columns[index].spatial:
            raise ConfigurationError(
                f"geometry_column={wanted!r} (CLI: --geometry-column) is not a geometry or "
                f"geography column (geometry columns: {names or 'none'})"
            )
        return index
    if not spatial:
        raise ConfigurationError(
            "the query has no geometry column: select one (a geometry or geography column, "
            "or an expression such as ST_Buffer(geom, 1) AS geom)"
        )
    if len(spatial) > 1:
        raise ConfigurationError(
            f"the query has {len(spatial)} geometry columns ({names}); say which to read "
            f"with geometry_column={columns[spatial[0]].name!r} (CLI: --geometry-column)"
        )
    return spatial[0]


def column_index(columns: Sequence[Column], name: str, role: str) -> int:
    """Index of the column ``name``, or a ConfigurationError naming ``role``."""
    for index, column in enumerate(columns):
        if column.name == name:
            return index
    raise ConfigurationError(
        f"{role}={name!r} (CLI: --{role.replace('_', '-')}) is not a column of the query; "
        "its columns are " + ", ".join(repr(column.name) for column in columns)
    )
