"""Declarative helpers: a checked geometry column and hybrid properties for geometry.

The hybrid properties let derived values (area, centroid, bounding box ...) be computed
where it is cheapest: on a loaded row in Python (shapely), or inside a query in PostGIS so
that only the small result crosses the wire instead of whole geometries. Both sides follow
PostGIS's semantics, so they agree: planar in the column's units for ``geometry``; for
``geography``, area, length and perimeter in metres on the ellipsoid (see
:mod:`geosession.geodesic`) and the others of the longitudes and latitudes.

Example::

    class Parcel(SpatialMixin, Base):
        __tablename__ = "parcel"
        id: Mapped[int] = mapped_column(primary_key=True)
        geom: Mapped[WKBElement] = geometry_column("POLYGON", 4326)

    session.scalars(select(Parcel.area).where(Parcel.num_points > 100))
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import geoalchemy2
import geoalchemy2.comparator
import shapely
from sqlalchemy import ColumnElement, Dialect, Float, case, cast, func, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import MappedColumn, QueryableAttribute, mapped_column
from sqlalchemy.sql.expression import Grouping

from geosession import geodesic
from geosession.errors import ConfigurationError, GeoSessionError, InvalidGeometry
from geosession.geometry import (
    is_geojson,
    srid_mismatch,
    to_element,
    to_geography_element,
    to_shape,
)

_BASE_TYPES = (
    "GEOMETRY",
    "POINT",
    "LINESTRING",
    "POLYGON",
    "MULTIPOINT",
    "MULTILINESTRING",
    "MULTIPOLYGON",
    "GEOMETRYCOLLECTION",
)
_SUFFIX_DIMENSION = {"": 2, "Z": 3, "M": 3, "ZM": 4}
_DIMENSION_SUFFIX = {2: "", 3: "Z", 4: "ZM"}  # PostGIS's reading of a bare dimension
GEOMETRY_TYPES: frozenset[str] = frozenset(
    base + suffix for base in _BASE_TYPES for suffix in _SUFFIX_DIMENSION
)
"""The PostGIS geometry type names :func:`geometry_column` accepts."""

_MAX_SRID = 999_999  # PostGIS's SRID_MAXIMUM
# float8[] indexed from 0 in SQLAlchemy expressions and read as a tuple, like the Python one.
_BOUNDS_TYPE = ARRAY(Float(precision=53), dimensions=1, zero_indexes=True, as_tuple=True)


class _Comparator(geoalchemy2.comparator.Comparator):
    """GeoAlchemy2's comparator, whose functions (``Parcel.geom.ST_DWithin(shape, 10)``)
    take shapely geometries, WKB and GeoJSON as their column binds them."""

    def __getattr__(self, name: str) -> Any:
        function = super().__getattr__(name)
        converted = self.type.converted  # type: ignore[attr-defined]

        def call(*args: Any, **kwargs: Any) -> Any:
            return function(*map(converted, args), **kwargs)

        return call


class _TakesShapes:
    """What geosession's spatial types add to GeoAlchemy2's: shapely geometries, WKB or
    EWKB bytes and GeoJSON dicts bound as values and as the column's function arguments
    (:meth:`_element` makes each a GeoAlchemy2 element); an error names the column's
    type. Text and GeoAlchemy2 elements bind as GeoAlchemy2 binds them."""

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        bind = super().bind_processor(dialect)  # type: ignore[misc]
        return lambda value: bind(self.converted(value))

    def converted(self, value: Any) -> Any:
        """``value`` as GeoAlchemy2 binds it: shapely, WKB and GeoJSON as an element, text
        and elements with the column's SRID."""
        try:
            if isinstance(value, str):
                return self._text(value)
            if isinstance(value, geoalchemy2.elements._SpatialElement):
                self._check_srid(int(value.srid), value)
                return value
            if isinstance(value, shapely.Geometry | bytes | bytearray | memoryview | Mapping):
                return self._element(value)
            if isinstance(value, tuple | list):  # the server's "parse error at position 2"
                raise InvalidGeometry(
                    f"{_shown(value)} is a {type(value).__name__} of coordinates, not a "
                    "geometry: give a shapely geometry (shapely.Point(x, y)), WKT or GeoJSON"
                )
            return value
        except GeoSessionError as error:
            declared = f"{self.name}({self.geometry_type}, {self._srid})"  # type: ignore[attr-defined]
            error.reword(f"{error.message} (for a {declared} column)")
            raise

    def _text(self, text: str) -> Any:
        """WKT gets the column's SRID: bound with none (SRID 0), which an INSERT stamps
        with the column's, a comparison found nothing and a function refused it. EWKT of
        another SRID is SRIDMismatch (&& compares no SRIDs: it matched in any). Hex WKB
        and GeoJSON text are read as bytes and dicts are."""
        if _HEX.fullmatch(text) or is_geojson(text):
            return self._element(text)
        stated = _EWKT_SRID.match(text)
        if stated is None:
            return f"SRID={self._srid};{text.strip()}" if self._srid else text
        self._check_srid(int(stated.group(1)), text)
        return text

    def _check_srid(self, srid: int, value: Any) -> None:
        if srid > 0 and self._srid > 0 and srid != self._srid:
            raise srid_mismatch(srid, self._srid, _shown(value))

    @property
    def _srid(self) -> int:
        return max(int(self.srid), 0)  # type: ignore[attr-defined]

    def _element(self, value: Any) -> Any:
        raise NotImplementedError


class Geometry(_TakesShapes, geoalchemy2.Geometry):
    """GeoAlchemy2's ``Geometry``, which also binds shapely geometries, WKB or EWKB bytes
    and GeoJSON dicts, so that ``Parcel(geom=shapely.box(0, 0, 1, 1))`` needs no
    ``from_shape``: each is sent as hex EWKB of the column's SRID where it carries none
    (another SRID is :class:`SRIDMismatch`, as PostGIS would refuse it). Named as its base,
    so migrations that Alembic renders with GeoAlchemy2's helpers use the base."""

    cache_ok = True
    comparator_factory = _Comparator

    def _element(self, value: Any) -> Any:
        return to_element(value, self._srid)


class Geography(_TakesShapes, geoalchemy2.Geography):
    """GeoAlchemy2's ``Geography``, which binds what :class:`Geometry` binds: as EWKT,
    since GeoAlchemy2 reads a geography's parameter with ``ST_GeogFromText`` (text only),
    written with every double exact."""

    cache_ok = True
    comparator_factory = _Comparator

    @property
    def _srid(self) -> int:
        return int(self.srid) if int(self.srid) > 0 else _GEOGRAPHY_SRID

    def _element(self, value: Any) -> Any:
        return to_geography_element(value, self._srid)


_GEOGRAPHY_SRID = 4326
"""The SRID of a geography column that names none (PostGIS's default)."""
_HEX = re.compile(r"\s*(?:[0-9A-Fa-f]{2})+\s*")
_EWKT_SRID = re.compile(r"\s*SRID=(-?\d+)\s*;", re.IGNORECASE)


def _shown(value: Any) -> str:
    """A value in an error, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def geometry_column(
    geometry_type: str = "GEOMETRY",
    srid: int = 4326,
    *,
    nullable: bool = True,
    spatial_index: bool = True,
    dimension: int | None = None,
) -> MappedColumn[Any]:
    """A ``mapped_column`` of PostGIS type ``geometry(<geometry_type>, <srid>)``.

    Use as ``geom: Mapped[WKBElement] = geometry_column("POLYGON", 4326)``.

    ``spatial_index`` makes ``create_all`` build one GiST index (GeoAlchemy2 does it). There
    is deliberately no ``index`` argument: ``index=True`` would add a second, B-tree index
    that spatial operators cannot use and every write must maintain. ``dimension``
    defaults to what the type name says (``POINTZ`` is 3); on a plain name, 3 means ``Z``
    and 4 ``ZM``, as in PostGIS's ``AddGeometryColumn``. ``srid=0`` (unknown) is accepted
    but discouraged: the server then cannot catch geometries in the wrong reference system.
    """
    return _spatial_column(Geometry, geometry_type, srid, nullable, spatial_index, dimension)


def geography_column(
    geometry_type: str = "GEOMETRY",
    srid: int = _GEOGRAPHY_SRID,
    *,
    nullable: bool = True,
    spatial_index: bool = True,
    dimension: int | None = None,
) -> MappedColumn[Any]:
    """A ``mapped_column`` of PostGIS type ``geography(<geometry_type>, <srid>)``, as
    :func:`geometry_column` makes one of ``geometry``: one GiST index, the type and its
    dimension checked, shapely, WKB and GeoJSON bound. ``srid`` is a longitude/latitude
    CRS (EPSG:4326, the default; PostGIS refuses a projected one when the table is made);
    :class:`SpatialMixin` measures it in metres on the ellipsoid."""
    if _check_srid(srid) == 0:
        raise ConfigurationError(
            f"a geography column's srid is a longitude/latitude CRS (4326, the default), "
            f"got {srid!r}"
        )
    return _spatial_column(Geography, geometry_type, srid, nullable, spatial_index, dimension)


def _spatial_column(
    spatial_type: type[Geometry | Geography],
    geometry_type: str,
    srid: int,
    nullable: bool,
    spatial_index: bool,
    dimension: int | None,
) -> MappedColumn[Any]:
    type_name, dimension = _check_type(geometry_type, dimension)
    declared = spatial_type(
        geometry_type=type_name,
        srid=_check_srid(srid),
        dimension=dimension,
        spatial_index=spatial_index,
        nullable=nullable,
    )
    return mapped_column(declared, nullable=nullable)


def _check_type(geometry_type: str, dimension: int | None) -> tuple[str, int]:
    """Return the PostGIS type name and dimension, or raise ConfigurationError."""
    name = geometry_type.upper().replace(" ", "") if isinstance(geometry_type, str) else ""
    if name not in GEOMETRY_TYPES:
        raise ConfigurationError(
            f"geometry_type must be one of {', '.join(_BASE_TYPES)} "
            f"(optionally suffixed Z, M or ZM), got {geometry_type!r}"
        )
    base, suffix = _split_suffix(name)
    implied = _SUFFIX_DIMENSION[suffix]
    if dimension is None:
        return name, implied
    if isinstance(dimension, bool) or dimension not in (2, 3, 4):
        raise ConfigurationError(f"dimension must be 2, 3 or 4, got {dimension!r}")
    if not suffix:
        return base + _DIMENSION_SUFFIX[dimension], dimension
    if dimension != implied:
        raise ConfigurationError(
            f"dimension={dimension} contradicts geometry_type {name!r}, "
            f"which has dimension {implied}"
        )
    return name, dimension


def _split_suffix(name: str) -> tuple[str, str]:
    """``"POINTZM"`` -> ``("POINT", "ZM")``."""
    for suffix in ("ZM", "Z", "M"):
        if name.endswith(suffix) and name[: -len(suffix)] in _BASE_TYPES:
            return name[: -len(suffix)], suffix
    return name, ""


def _check_srid(srid: int) -> int:
    """``srid`` as an int (NumPy's integers too), in PostGIS's range."""
    if (
        isinstance(srid, bool)
        or not isinstance(srid, numbers.Integral)
        or not 0 <= srid <= _MAX_SRID
    ):
        raise ConfigurationError(
            f"srid must be an integer from 0 to {_MAX_SRID} (an EPSG code such as 4326; "
            f"0 means unknown and is discouraged), got {srid!r}"
        )
    return int(srid)


class SpatialMixin:
    """Hybrid properties over one geometry or geography column, named by
    ``__geometry_column__``.

    On an instance each property parses the column value with shapely (parsing again on
    every access: read what you need once). In a query each is a PostGIS expression.
    A NULL geometry gives None on both sides. On a geography column, area, length and
    perimeter are in (square) metres on the ellipsoid, on both sides; centroid, envelope,
    bounds and num_points are those of the longitudes and latitudes (the column cast to
    geometry in SQL, as PostGIS has no ST_Envelope of a geography).
    """

    __geometry_column__: ClassVar[str] = "geom"

    def _shape(self) -> shapely.Geometry | None:
        value = getattr(self, type(self)._geometry_sql().key)
        return None if value is None else to_shape(value)

    @classmethod
    def _geometry_sql(cls) -> QueryableAttribute[Any]:
        name = cls.__geometry_column__
        attribute: QueryableAttribute[Any] | None = getattr(cls, name, None)
        if attribute is None:
            raise ConfigurationError(_no_geometry_column(cls, name))
        return attribute

    @classmethod
    def _geography(cls) -> geoalchemy2.Geography | None:
        column_type = cls._geometry_sql().type
        return column_type if isinstance(column_type, geoalchemy2.Geography) else None

    @classmethod
    def _planar_sql(cls) -> ColumnElement[Any] | QueryableAttribute[Any]:
        """The column as geometry: a geography's longitudes and latitudes on a plane."""
        geometry = cls._geometry_sql()
        if cls._geography() is None:
            return geometry
        return cast(geometry, geoalchemy2.Geometry(geometry_type=None))  # not (GEOMETRY, -1): 2D

    def _measure(self, planar: Any, on_ellipsoid: Any) -> float | None:
        """``planar(shape)``, or for a geography ``on_ellipsoid(shape, srid)``."""
        shape = self._shape()
        if shape is None:
            return None
        geography = self._geography()
        if geography is None:
            return float(planar(shape))
        srid = shapely.get_srid(shape) or geography.srid
        return float(on_ellipsoid(shape, srid if srid and srid > 0 else 4326))

    @hybrid_property
    def area(self) -> float | None:
        """Planar area (ST_Area); 0 for points and lines. Square metres for a geography."""
        return self._measure(lambda shape: shape.area, geodesic.area)

    @area.inplace.expression
    @classmethod
    def _area_expression(cls) -> ColumnElement[float | None]:
        return func.ST_Area(cls._geometry_sql())

    @hybrid_property
    def length(self) -> float | None:
        """Length of the linear parts (ST_Length): 0 for polygons, see ``perimeter``."""
        return self._measure(lambda shape: _length_of_dimension(shape, 1), geodesic.length)

    @length.inplace.expression
    @classmethod
    def _length_expression(cls) -> ColumnElement[float | None]:
        return func.ST_Length(cls._geometry_sql())

    @hybrid_property
    def perimeter(self) -> float | None:
        """Boundary length of the polygonal parts (ST_Perimeter); 0 for points and lines."""
        return self._measure(lambda shape: _length_of_dimension(shape, 2), geodesic.perimeter)

    @perimeter.inplace.expression
    @classmethod
    def _perimeter_expression(cls) -> ColumnElement[float | None]:
        return func.ST_Perimeter(cls._geometry_sql())

    @hybrid_property
    def centroid(self) -> shapely.Geometry | None:
        """Centroid as a shapely Point (ST_Centroid; a WKBElement when selected)."""
        shape = self._shape()
        return None if shape is None else _same_srid(shapely.centroid(shape), shape)

    @centroid.inplace.expression
    @classmethod
    def _centroid_expression(cls) -> ColumnElement[Any]:
        return func.ST_Centroid(cls._planar_sql())

    @hybrid_property
    def envelope(self) -> shapely.Geometry | None:
        """Bounding box geometry (ST_Envelope), a Point or LineString when degenerate."""
        shape = self._shape()
        return None if shape is None else _same_srid(_envelope(shape), shape)

    @envelope.inplace.expression
    @classmethod
    def _envelope_expression(cls) -> ColumnElement[Any]:
        return func.ST_Envelope(cls._planar_sql())

    @hybrid_property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """``(minx, miny, maxx, maxy)``; in SQL a float8[] indexed from 0 the same way.

        None (NULL) for an empty geometry, which has no bounding box.
        """
        shape = self._shape()
        if shape is None or shape.is_empty:
            return None
        minx, miny, maxx, maxy = (float(v) for v in shape.bounds)
        return minx, miny, maxx, maxy

    @bounds.inplace.expression
    @classmethod
    def _bounds_expression(cls) -> ColumnElement[Any]:
        geom = cls._planar_sql()
        corners = array(
            [func.ST_XMin(geom), func.ST_YMin(geom), func.ST_XMax(geom), func.ST_YMax(geom)]
        )
        # IS FALSE: NULL for both a NULL and an empty geometry. The parentheses let a
        # query index the result (PostgreSQL rejects "CASE ... END[1]").
        nonempty = case((func.ST_IsEmpty(geom).is_(False), corners))
        return type_coerce(Grouping(nonempty), _BOUNDS_TYPE)

    @hybrid_property
    def num_points(self) -> int | None:
        """Number of vertices, ring closing points included (ST_NPoints)."""
        shape = self._shape()
        return None if shape is None else int(shapely.get_num_coordinates(shape))

    @num_points.inplace.expression
    @classmethod
    def _num_points_expression(cls) -> ColumnElement[int | None]:
        return func.ST_NPoints(cls._planar_sql())


def _no_geometry_column(cls: type, name: str) -> str:
    """Says that ``cls`` has no column ``name`` for SpatialMixin, naming the spatial
    columns it has."""
    columns = getattr(getattr(cls, "__table__", None), "columns", ())
    spatial = [
        c.key for c in columns if isinstance(c.type, geoalchemy2.Geometry | geoalchemy2.Geography)
    ]
    fix = (
        f"set __geometry_column__ = {spatial[0]!r} in the class"
        if len(spatial) == 1
        else f"set __geometry_column__ to one of {', '.join(map(repr, spatial))}"
        if spatial
        else "give it a geometry_column(...) attribute"
    )
    return (
        f"{cls.__name__} has no attribute {name!r}: SpatialMixin's properties read the "
        f"geometry column that __geometry_column__ names ({name!r} by default); {fix}"
    )


def _length_of_dimension(shape: shapely.Geometry, dimension: int) -> float:
    """Total length of the parts of one topological dimension (1 lines, 2 polygons).

    Shapely's ``length`` counts polygon boundaries; PostGIS splits that into ST_Length
    (lines only) and ST_Perimeter (polygons only), collections summed part by part.
    """
    if shapely.get_type_id(shape) == shapely.GeometryType.GEOMETRYCOLLECTION:
        return sum((_length_of_dimension(part, dimension) for part in shape.geoms), 0.0)
    return float(shape.length) if shapely.get_dimensions(shape) == dimension else 0.0


def _envelope(shape: shapely.Geometry) -> shapely.Geometry:
    """The bounding box built the way PostGIS's ST_Envelope builds it."""
    if shape.is_empty:
        return shape
    minx, miny, maxx, maxy = shape.bounds
    if minx == maxx and miny == maxy:
        return shapely.Point(minx, miny)
    if minx == maxx or miny == maxy:
        return shapely.LineString([(minx, miny), (maxx, maxy)])
    ring = [(minx, miny), (minx, maxy), (maxx, maxy), (maxx, miny), (minx, miny)]
    return shapely.Polygon(ring)


def _same_srid(result: shapely.Geometry, source: shapely.Geometry) -> shapely.Geometry:
    srid = shapely.get_srid(source)
    return shapely.set_srid(result, srid) if srid > 0 else result


__all__ = ["GEOMETRY_TYPES", "SpatialMixin", "geometry_column"]
