"""What PostGIS's messages mean. PostGIS reports most of its errors under generic codes
(XX000 internal_error, 22023 invalid_parameter_value, 42883 undefined_function), so its
words tell a geometry it cannot read or take, two SRIDs that do not meet, a function
geography lacks, or PostGIS itself missing or off the search_path: each with what to do.
:func:`geosession.errors.classify` asks here first."""

from __future__ import annotations

import re
from typing import Any

from geosession.errors import (
    FUNCTION_ARGUMENTS_ADVICE,
    ConfigurationError,
    DatabaseError,
    Diagnostics,
    GeoSessionError,
    PostGISNotInstalled,
    PostGISPlace,
    SRIDMismatch,
    capitalized,
)

_GEOMETRY_STATES = ("22023", "XX000", "22P02", "22000")
"""The codes PostGIS refuses a geometry under (its words then say why)."""
_SRID_MISMATCH = re.compile(r"Geometry SRID \((-?\d+)\) does not match column SRID \((-?\d+)\)")
_MIXED_SRIDS = re.compile(
    r"(?:(\w+): )?Operation on mixed SRID geometries(?: \(\w+, (-?\d+)\) != \(\w+, (-?\d+)\))?"
)
_UNKNOWN_SRID = re.compile(
    r"Cannot find SRID \((-?\d+)\) in spatial_ref_sys|Invalid reserved SRID \((-?\d+)\)"
)
"""An SRID spatial_ref_sys lacks, or one of PostGIS's own reserved range (999000 up)."""
_TRANSFORM_SRID_ZERO = re.compile(r"Input geometry has unknown \(0\) SRID")
_GEOGRAPHY_NOT_LONLAT = re.compile(r"Only lon/lat coordinate systems are supported in geography")
_PROJ_REFUSED = re.compile(
    r"transform: (?:Invalid coordinate|Point outside of projection domain"
    r"|latitude or longitude exceeded limits|couldn't project point)",
    re.IGNORECASE,
)
_INVALID_GEOMETRY = re.compile(
    r"does not match column type|has Z dimension|has M dimension|parse error|invalid geometry"
    r"|Invalid endian|Unknown WKB type|requires more points|must have at least|Invalid hex"
    r"|TopologyException|not closed|non-closed|GEOS\w+\(\)|lwgeom|GeoJSON|must have type POINT"
    r"|WKB structure",
    re.IGNORECASE,
)
_UNREADABLE_GEOMETRY = re.compile(
    r"parse error|Invalid hex|Invalid endian|Unknown WKB type|GeoJSON|WKB structure",
    re.IGNORECASE,
)
_NOT_FOR_GEOGRAPHY = re.compile(
    r"function (st_\w+)\([^)]*\bgeography\b[^)]*\) does not exist", re.IGNORECASE
)
_ON_GEOGRAPHY = {
    "st_contains": "ST_Covers(a, b) says what ST_Contains(a, b) would; or ",
    "st_within": "ST_CoveredBy(a, b) says what ST_Within(a, b) would; or ",
}
"""The geography function that answers what a geometry-only predicate asks."""
_GEOGRAPHY_FORMS = frozenset(
    [
        "st_area",
        "st_asbinary",
        "st_asewkt",
        "st_asgeojson",
        "st_asgml",
        "st_askml",
        "st_assvg",
        "st_astext",
        "st_azimuth",
        "st_buffer",
        "st_centroid",
        "st_coveredby",
        "st_covers",
        "st_distance",
        "st_dwithin",
        "st_intersection",
        "st_intersects",
        "st_length",
        "st_perimeter",
        "st_project",
        "st_segmentize",
        "st_summary",
    ]
)
"""Functions PostGIS (3.0 on) has for geography: given one, other arguments were wrong."""
_DIMENSION_REFUSED = re.compile(
    r"has [ZM] dimension but column does not|Column has [ZM] dimension but geometry does not",
    re.IGNORECASE,
)
_TOO_FEW_POINTS = re.compile(r"requires more points|must have at least", re.IGNORECASE)
_CURVES_REFUSED = re.compile(
    r"\b(?:CircularString|CompoundCurve|CurvePolygon|MultiCurve|MultiSurface)\b"
    r"|lwgeom_get_basic_type: Invalid type \((?:8|9|10|11|12)\)",
    re.IGNORECASE,
)
"""A PostGIS function that takes no curves refusing one (ST_AsGeoJSON, ST_Simplify,
ST_AsMVTGeom...): its message names the type, or its number."""
_POSTGIS_TYPE_MISSING = re.compile(
    r'type "(geometry|geography|box2d|raster)" does not exist'
    r'|relation "(geometry_columns|geography_columns|spatial_ref_sys)" does not exist'
)
"""PostGIS's types and tables, which a session finds on its search_path, or not at all."""
_POSTGIS_MISSING = re.compile(  # a call with a geometry argument: PostGIS is there
    rf"{_POSTGIS_TYPE_MISSING.pattern}"
    r"|function st_\w+\((?![^)]*\b(?:geometry|geography|box2d|box3d|raster)\b)[^)]*\)"
    r" does not exist",
    re.IGNORECASE,
)


def _invalid_geometry_advice(message: str) -> str:
    """What to do about a geometry PostGIS refused, by what its message names."""
    return next(
        (advice for pattern, advice in _GEOMETRY_ADVICE if pattern.search(message)),
        "fix or drop the geometry; shapely.make_valid repairs many",
    )


_GEOMETRY_ADVICE: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        _CURVES_REFUSED,
        "this function takes no curves (CircularString arcs): straighten them in the "
        "query first, ST_CurveToLine(geom)",
    ),
    (
        re.compile("non-closed rings"),
        "close each polygon ring: its last point must be the same as its first "
        "(POLYGON((0 0, 1 0, 1 1, 0 0)))",
    ),
    (
        _UNREADABLE_GEOMETRY,
        "the server could not read the geometry's text or bytes: check the WKT, WKB or "
        "GeoJSON where the message points (a POINT takes two or three numbers; "
        "ST_GeomFromGeoJSON takes a geometry object, not a Feature)",
    ),
    (
        re.compile("does not match column type"),
        "the geometry's type is not one the column takes: ST_Multi(geom) makes a Point a "
        "MultiPoint (and a Polygon a MultiPolygon), ST_CollectionExtract(geom, 3) takes a "
        "collection's polygons; or load it into a column of its type",
    ),
    (
        _DIMENSION_REFUSED,
        "the geometry's dimensions are not the column's: ST_Force2D(geom) drops Z and M, "
        "ST_Force3D(geom) adds Z (0); or make the column take them, geometry(PointZ, <srid>)",
    ),
    (
        re.compile("must have type POINT"),
        "ST_X, ST_Y and ST_Z take points only: give them a point of the geometry, "
        "ST_X(ST_Centroid(geom)) or ST_X(ST_StartPoint(line))",
    ),
    (
        _TOO_FEW_POINTS,
        "a line needs two points and a polygon ring four, its last the same as its first: "
        "fix or drop the geometry",
    ),
)
"""The first that matches a message says what to do; otherwise it is an invalid geometry."""


INSTALL_POSTGIS = "connect as its owner or a superuser and run CREATE EXTENSION postgis;"


def postgis_off_search_path(schema: str) -> str:
    """What to do when PostGIS is installed in ``schema`` and a session cannot find it."""
    return (
        f"PostGIS is installed in schema {schema}, which must be on the search_path "
        f'(ALTER DATABASE ... SET search_path = "$user", public, {schema}), or its names '
        f"qualified ({schema}.geometry)"
    )


def _postgis_missing(
    message: str, postgis: PostGISPlace | None
) -> tuple[type[GeoSessionError], str]:
    """A PostGIS type, or an ST_ function of no spatial argument, that the server cannot
    find: PostGIS is not installed, unless the engine found it when it first connected;
    then it is out of the search_path, or no form of the function takes those arguments
    (ST_X(1.5), ST_MakeEnvelope(0, 0, 1): the server's message is the same)."""
    if postgis is None or postgis.schema is None:
        return PostGISNotInstalled, f"PostGIS is not installed in this database: {INSTALL_POSTGIS}"
    outside = postgis_off_search_path(postgis.schema)
    if _POSTGIS_TYPE_MISSING.search(message):
        return ConfigurationError, outside
    inside = "" if postgis.schema == "public" else f"; {outside}"
    return DatabaseError, FUNCTION_ARGUMENTS_ADVICE + inside


def srid_advice(message: str) -> tuple[type[GeoSessionError], str] | None:
    """PostGIS's words for a geometry written into a column of another SRID, two SRIDs in
    one operation, an SRID it does not know, and a transform of a geometry without one."""
    if _SRID_MISMATCH.search(message):
        return SRIDMismatch, "transform the geometry (ST_Transform / shapely) or fix its SRID"
    mixed = _MIXED_SRIDS.search(message)
    if mixed is not None:
        function, first, second = mixed.groups()
        srids = f"SRID {first} and SRID {second}" if first else "different SRIDs"
        return SRIDMismatch, (
            f"geometries of {srids} met in {function or 'one operation'}: transform one side "
            "into the other's SRID (ST_Transform(geom, <srid>)), choosing the side that is "
            "not an indexed column, so that its spatial index can still be used; write a "
            "literal in the column's SRID ('SRID=<srid>;POINT(...)')"
        )
    unknown = _UNKNOWN_SRID.search(message)
    if unknown is not None:
        return DatabaseError, (
            f"SRID {unknown.group(1) or unknown.group(2)} is not in this database's "
            "spatial_ref_sys, so PostGIS "
            "cannot place it: check the number (spatial_ref_sys lists the EPSG codes it "
            "knows), or add the CRS's row to spatial_ref_sys"
        )
    if _TRANSFORM_SRID_ZERO.search(message):
        return SRIDMismatch, (
            "the geometry has SRID 0 (none said), so there is nothing to transform from: say "
            "which it is first, ST_Transform(ST_SetSRID(geom, <its srid>), <target srid>), or "
            "fix the column (SELECT UpdateGeometrySRID(...))"
        )
    if "could not parse proj string" in message:
        return DatabaseError, (
            "ST_Transform takes the SRID of a spatial_ref_sys row (an integer: 3857), or a "
            "CRS PROJ can read; 'EPSG:<code>' text works only where PROJ's database has it"
        )
    if _PROJ_REFUSED.search(message):
        return DatabaseError, (
            "PROJ could not transform a coordinate: one beyond the range of the geometry's "
            "SRID (metres labelled 4326: compare ST_Extent(geom) with the SRID's bounds), or "
            "outside what the target projection maps (a UTM zone far from the point)"
        )
    if _GEOGRAPHY_NOT_LONLAT.search(message):
        return SRIDMismatch, (
            "a geometry of a projected SRID met a geography (a geography column, or a cast to "
            "geography), which holds longitudes and latitudes only: transform it first, "
            "ST_Transform(geom, 4326)::geography"
        )
    return None


def srid_mismatch(
    diag: Diagnostics, endpoint: str, statement: Any, table: str | None, advice: str
) -> SRIDMismatch | None:
    """The error for a geometry written into a column of another SRID, naming both SRIDs
    and the column where the statement's table says which (``table``: its name, if
    known); None when the message is not PostGIS's words for that."""
    match = _SRID_MISMATCH.search(diag.message)
    if match is None:
        return None
    geometry_srid, column_srid = int(match.group(1)), int(match.group(2))
    column = _geometry_column_with_srid(statement, column_srid)
    column_name = f"{table}.{column}" if table and column else column or "the geometry column"
    if not column and table:
        column_name = f"a geometry column of {table}"
    return SRIDMismatch(
        f"Geometry SRID {geometry_srid} does not match SRID {column_srid} of {column_name} "
        f"(on {endpoint}). {capitalized(advice)}",
        sqlstate=diag.sqlstate,
        column=column,
        geometry_srid=geometry_srid,
        column_srid=column_srid,
    )


def _geometry_column_with_srid(statement: Any, srid: int) -> str | None:
    """Names the target column when the statement's table has one geometry column of that SRID."""
    table = getattr(statement, "table", None)
    columns = getattr(table, "columns", ())
    matches = [c.name for c in columns if getattr(c.type, "srid", None) == srid]
    return matches[0] if len(matches) == 1 else None


def geometry_advice(state: str, message: str) -> str | None:
    """What to do about a geometry PostGIS refused (unreadable, of another type or
    dimension, too few points, a curve where none is taken), or None when the error is
    not about one."""
    if state not in _GEOMETRY_STATES or not _INVALID_GEOMETRY.search(message):
        return None
    return _invalid_geometry_advice(message)


def missing_advice(
    message: str, postgis: PostGISPlace | None
) -> tuple[type[GeoSessionError], str] | None:
    """A type, table or function the server cannot find that is PostGIS's: PostGIS not
    installed or off the search_path, or a function geography has no form of; None when
    the missing thing is not PostGIS's."""
    if _POSTGIS_MISSING.search(message):
        return _postgis_missing(message, postgis)
    geography = _NOT_FOR_GEOGRAPHY.search(message)
    if geography is None:
        return None
    function = geography.group(1).lower()
    if function in _GEOGRAPHY_FORMS:
        return DatabaseError, (
            f"PostGIS has {function} for geography, but no form of it takes these "
            f"arguments: check their number and types (psql's \\df {function} lists "
            "its forms)"
        )
    instead = _ON_GEOGRAPHY.get(function, "")
    return DatabaseError, (
        f"PostGIS has no {function} for geography, which takes fewer functions than "
        "geometry (ST_Intersects, ST_DWithin, ST_Covers, ST_CoveredBy, ST_Distance, "
        f"ST_Area, ST_Length, ST_Buffer ...): {instead}cast to geometry (col::geometry) "
        "where planar degrees are right"
    )
