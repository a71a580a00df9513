"""Geometry validation before the server sees a row, vectorized with shapely.

PostGIS accepts some bad input silently (unclosed rings in hex EWKB, bow-ties, NaN
coordinates, a missing SRID taken as the column's), so every geometry is checked here
against the column it is written to. Each bad value becomes a :class:`Reject` naming the
source row, the column and the reason; the rest of the chunk goes on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
import shapely

from geosession.errors import ConfigurationError, InvalidGeometry
from geosession.geometry import (
    GEOJSON_SRID,
    TYPE_NAMES,
    is_geojson,
    is_valid,
    not_in_geos,
    object_array,
)
from geosession.ingest.crs import SourceCrs, crs_label, horizontal_code
from geosession.ingest.geometry_values import nulls, parse_geometries
from geosession.ingest.reproject import reprojected
from geosession.ingest.target import Column, GeometrySpec
from geosession.srs import same_crs
from geosession.wkb import as_wkb, with_srid

OnInvalid = Literal["quarantine", "raise", "repair", "skip"]

_TYPE_IDS = {
    "POINT": {0},
    "LINESTRING": {1},
    "POLYGON": {3},
    "MULTIPOINT": {4},
    "MULTILINESTRING": {5},
    "MULTIPOLYGON": {6},
    "GEOMETRYCOLLECTION": {7},
}
_PROMOTE = {
    "MULTIPOINT": (0, shapely.multipoints),
    "MULTILINESTRING": (1, shapely.multilinestrings),
    "MULTIPOLYGON": (3, shapely.multipolygons),
}
_DEMOTE = {"POINT": 4, "LINESTRING": 5, "POLYGON": 6}
"""Single types, and the type id of their multi type, whose one-part geometries are it."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A source row that was not loaded, and why. Slotted, its texts shared between the
    rejects that repeat them: a load of a wrong SRID rejects every row with one reason."""

    row: int
    column: str | None
    kind: str
    """null, unparsable, empty, type, srid, dimension, out_of_range (geography),
    non_finite, too_few_points, unclosed_ring, invalid, or server (rejected by the server
    itself)."""
    reason: str
    value: str | None = None
    """The original value as text (WKT, hex or JSON), truncated to 2,000 characters."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", sys.intern(self.reason))


@dataclass
class Checked:
    """One batch after validation: which rows to keep and their encoded geometries."""

    keep: np.ndarray[Any, np.dtype[np.bool_]]
    moved: np.ndarray[Any, np.dtype[np.bool_]]
    """Which geometries were reprojected into the column's SRID."""
    assumed: np.ndarray[Any, np.dtype[np.bool_]]
    """Which geometries took the column's SRID because nothing said theirs."""
    flattened: np.ndarray[Any, np.dtype[np.bool_]]
    """Which geometries had Z all 0 and were made 2D for a 2D column."""
    beyond: np.ndarray[Any, np.dtype[np.bool_]]
    """Which geometries, bound for a column of longitudes and latitudes, reach beyond
    latitude ±90 (:func:`_beyond_latitudes`)."""
    encoded: dict[str, list[bytes | None]] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    repaired: list[Reject] = field(default_factory=list)


def check_geometries(
    values: list[Any],
    column: Column,
    *,
    first_row: int,
    on_invalid: OnInvalid,
    default_srid: int | None,
    reproject: bool = False,
    source_crs: str | None = None,
) -> Checked:
    """Parses, checks (and maybe reprojects or repairs) one geometry column of a batch;
    encodes EWKB. ``source_crs``: the definition of the CRS of geometries without an SRID,
    when it has no EPSG code (reprojected from it)."""
    spec = column.geometry
    assert spec is not None
    geoms, problems, wkb = parse_geometries(values, default_srid)
    assumed = np.zeros(len(geoms), dtype=bool)
    if spec.srid != 0 and default_srid is None and source_crs is None:  # PostGIS's silence
        assumed = (geoms != None) & (shapely.get_srid(geoms) == 0)  # noqa: E711
    moving = reproject and spec.srid != 0
    if default_srid and (spec.srid == 0 or moving):  # else the SRID check assumes it
        geoms = _apply_default_srid(geoms, default_srid)
    moved = np.zeros(len(geoms), dtype=bool)
    if moving:
        geoms, moved, unmoved = reprojected(geoms, spec, source_crs)
        problems.update(unmoved)
    geoms, changed = _fit_multi(geoms, spec)
    changed |= moved
    flattened = np.zeros(len(geoms), dtype=bool)
    if not (spec.has_z or spec.measured or spec.unconstrained):
        flattened = _drop_flat_z(geoms)
        changed |= flattened
    problems.update(_problems(geoms, values, column, spec, problems, default_srid))
    through = _curves_through(values, problems, column, default_srid, moving=moving)
    keep = np.ones(len(values), dtype=bool)
    beyond = _beyond_latitudes(geoms, column)
    checked = Checked(keep, moved, assumed, flattened, beyond)
    if on_invalid == "repair":
        geoms = _repair(geoms, problems, spec, first_row, column.name, checked.repaired)
        changed[[r.row - first_row for r in checked.repaired]] = True
    for index, (kind, reason) in sorted(problems.items()):
        checked.keep[index] = False
        checked.rejects.append(
            Reject(first_row + index, column.name, kind, reason, as_text(values[index]))
        )
    encoded = _encode(geoms, wkb, checked.keep, changed, spec)
    for index, data in through.items():
        encoded[index] = data
    checked.encoded[column.name] = encoded
    return checked


_TAKES_CURVES = frozenset(
    {"GEOMETRY", "GEOMETRYCOLLECTION", "CIRCULARSTRING", "COMPOUNDCURVE", "CURVEPOLYGON"}
    | {"MULTICURVE", "MULTISURFACE", "POLYHEDRALSURFACE", "TIN", "TRIANGLE"}
)
"""Geometry column types that hold curves or surfaces (as PostGIS names them)."""


def _curves_through(
    values: list[Any],
    problems: dict[int, tuple[str, str]],
    column: Column,
    source_srid: int | None,
    *,
    moving: bool,
) -> dict[int, bytes]:
    """Curves and surfaces in (E)WKB, which shapely cannot hold, into a geometry column
    that takes them: sent as they came (removed from ``problems``). The server checks
    their type, dimension and SRID against the column; their validity goes unchecked, as
    PostGIS checks no curve's. They cannot be reprojected on the client."""
    spec = column.geometry
    if spec is None or column.type_name != "geometry" or spec.geometry_type not in _TAKES_CURVES:
        return {}
    through: dict[int, bytes] = {}
    for index, (kind, _) in list(problems.items()):
        data = as_wkb(values[index]) if kind == "unparsable" else None
        if data is None or not_in_geos(data) is None:
            continue
        if moving:
            problems[index] = (
                "srid",
                f"a {not_in_geos(data)} cannot be reprojected on the client: load it in its "
                "own SRID, then ST_Transform it in PostGIS",
            )
            continue
        stamp = source_srid if spec.srid == 0 else None if spec.stamps_srid else spec.srid
        through[index] = with_srid(data, stamp) if stamp else data
        del problems[index]
    return through


def column_crs(column: Column, source: SourceCrs | None) -> SourceCrs | None:
    """The source's CRS, or the column's SRID when the source's CRS has no EPSG code but
    is the one the database files under that SRID (ESRI:102003 as SRID 102003, say), or
    is a 3D CRS whose horizontal part is the column's (EPSG:4979 for a 4326 column: the
    heights are the geometries' Z as they are)."""
    spec = column.geometry
    if isinstance(source, int) and spec is not None and spec.srid not in (0, source):
        return spec.srid if horizontal_code(source) == spec.srid else source
    if isinstance(source, str) and spec is not None and spec.srid and same_crs(source, spec.crs):
        return spec.srid
    return source


def check_source_crs(
    column: Column, source: SourceCrs | None, table: str, *, srid: int | None, reproject: bool
) -> None:
    """A file's or GeoDataFrame's CRS against the column's SRID: a mismatch is the whole
    source's, so it is refused before any row instead of quarantining every one (unless
    the ingest reprojects). A CRS without an EPSG code cannot be compared: it is refused
    unless ``srid`` says which it is. An ``srid`` that contradicts the source's EPSG code
    is refused in any case."""
    spec = column.geometry
    if isinstance(source, int) and srid not in (None, 0, source):
        raise ConfigurationError(
            f"srid={srid} contradicts the source's CRS, EPSG:{source}: srid= names the CRS "
            "of geometries that have none, and this source's have one. If the source's CRS "
            f"is wrong, correct it first (GeoDataFrame.set_crs({srid}, allow_override=True); "
            f"for a file, ogr2ogr -a_srs EPSG:{srid}); else leave srid= (--srid) out"
        )
    if spec is None or source is None or reproject or spec.srid in (0, source):
        return
    if isinstance(source, str):
        if srid is not None:
            return
        raise ConfigurationError(
            f"The source's CRS is {crs_label(source)}, which PROJ does not find the same as "
            f"SRID {spec.srid} of column {column.name} of {table}: pass reproject=True (CLI: "
            "--reproject) to transform it, or reproject the source first; if it is that "
            f"CRS under another definition, give srid={spec.srid} (CLI: --srid {spec.srid})"
        )
    raise ConfigurationError(
        f"The source's CRS is EPSG:{source}, but column {column.name} of {table} has "
        f"SRID {spec.srid}: pass reproject=True (CLI: --reproject) to transform it while "
        f"loading, reproject the source first (GeoDataFrame.to_crs({spec.srid}); for a "
        f"file, ogr2ogr -t_srs EPSG:{spec.srid}), or load it into a column of SRID "
        f"{source}"
    )


def _encode(
    geoms: np.ndarray[Any, Any],
    wkb: np.ndarray[Any, Any],
    keep: np.ndarray[Any, np.dtype[np.bool_]],
    changed: np.ndarray[Any, np.dtype[np.bool_]],
    spec: GeometrySpec,
) -> list[bytes | None]:
    """EWKB of the kept geometries (None elsewhere), reusing the source's WKB where it can.

    A column with an SRID stamps it on geometries that have none (PostGIS's typmod check),
    so plain WKB is enough there: WKB that came in and passed every check is sent as it
    came, and the rest is written without an SRID, which saves copying every geometry just
    to set it. Geometries with M values are always rewritten, as before they were checked.
    A column whose SRID is a CHECK constraint stamps none: each gets the column's SRID,
    which every kept one has or lacks by now.
    """
    stamped = spec.srid != 0 and spec.stamps_srid
    if stamped:
        reuse = keep & ~changed & (wkb != None) & ~shapely.has_m(geoms)  # noqa: E711
    else:
        reuse = np.zeros(len(geoms), dtype=bool)
    write = keep & ~reuse
    encoded = np.full(len(geoms), None, dtype=object)
    encoded[reuse] = wkb[reuse]
    if write.any():
        written = (
            geoms[write] if stamped or spec.srid == 0 else shapely.set_srid(geoms[write], spec.srid)
        )
        encoded[write] = shapely.to_wkb(written, include_srid=not stamped, flavor="extended")
    return list(encoded.tolist())


def invalid_geometry_error(reject: Reject) -> InvalidGeometry:
    """The error for on_invalid="raise": names the row, the column and the reason."""
    return InvalidGeometry(
        f"Row {reject.row}, column {reject.column}: {reject.reason}. Fix the source, or pass "
        "on_invalid='quarantine' (CLI: --on-invalid quarantine) to load the other rows and "
        "keep this one aside"
    )


def _apply_default_srid(geoms: np.ndarray[Any, Any], srid: int) -> np.ndarray[Any, Any]:
    """Geometries without an SRID (plain WKB, WKT, shapely) take the column's (or ``srid``)."""
    present = geoms != None  # noqa: E711 - elementwise on an object array
    unset = present & (shapely.get_srid(geoms) == 0)
    if unset.any():
        geoms = geoms.copy()
        geoms[unset] = shapely.set_srid(geoms[unset], srid)
    return geoms


def _fit_multi(
    geoms: np.ndarray[Any, Any], spec: GeometrySpec
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.bool_]]]:
    """A Polygon written to a MULTIPOLYGON column becomes a one-part MultiPolygon, and a
    MultiPolygon of one part written to a POLYGON column its part (points and lines
    alike): neither loses anything. A multi of several parts stays, for the type check.

    Also returns which geometries were replaced, so their source WKB is not reused.
    """
    fitted = np.zeros(len(geoms), dtype=bool)
    if spec.geometry_type in _PROMOTE:
        single_id, make_multi = _PROMOTE[spec.geometry_type]
        fitted = (shapely.get_type_id(geoms) == single_id) & ~shapely.is_empty(geoms)
        if fitted.any():
            geoms = geoms.copy()
            fit = object_array([make_multi([g]) for g in geoms[fitted]])
            geoms[fitted] = shapely.set_srid(fit, shapely.get_srid(geoms[fitted]))
    elif spec.geometry_type in _DEMOTE:
        multi_id = _DEMOTE[spec.geometry_type]
        fitted = (shapely.get_type_id(geoms) == multi_id) & (shapely.get_num_geometries(geoms) == 1)
        if fitted.any():
            geoms = geoms.copy()
            part = shapely.get_geometry(geoms[fitted], 0)
            geoms[fitted] = shapely.set_srid(part, shapely.get_srid(geoms[fitted]))
    return geoms, fitted


def _wrong_type(geometry: Any, column: str, wanted: str) -> str:
    """Why a geometry's type does not fit: a multi of several parts for a single type
    says how many, and how to load them."""
    found = TYPE_NAMES[shapely.get_type_id(geometry)]
    reason = f"{found} where column {column} takes {wanted}"
    if wanted in _DEMOTE and shapely.get_type_id(geometry) == _DEMOTE[wanted]:
        parts = shapely.get_num_geometries(geometry)
        reason += (
            f" ({parts} parts: a one-part {found} would be loaded as its part; make the "
            f"column MULTI{wanted}, or split the parts into rows first, e.g. with "
            "GeoDataFrame.explode())"
        )
    return reason


def _problems(
    geoms: np.ndarray[Any, Any],
    values: list[Any],
    column: Column,
    spec: GeometrySpec,
    skip: dict[int, tuple[str, str]],
    default_srid: int | None,
) -> dict[int, tuple[str, str]]:
    """Every check in order; the first failing one names the row's problem."""
    found: dict[int, tuple[str, str]] = {}

    def mark(mask: Any, kind: str, reason: Any) -> None:
        for index in np.flatnonzero(mask):
            if index not in skip and index not in found:
                found[int(index)] = (kind, reason(int(index)) if callable(reason) else reason)

    missing = nulls(values)
    if column.not_null:
        mark(missing, "null", f"NULL in NOT NULL column {column.name}")
    present = ~missing & (geoms != None)  # noqa: E711
    mark(present & shapely.is_empty(geoms), "empty", "empty geometry")
    type_ids = shapely.get_type_id(geoms)
    allowed = _TYPE_IDS.get(spec.geometry_type)
    if allowed is not None:
        wrong = present & ~np.isin(type_ids, list(allowed))
        mark(wrong, "type", lambda i: _wrong_type(geoms[i], column.name, spec.geometry_type))
    dimensions = shapely.has_z(geoms), shapely.has_m(geoms)
    if not spec.unconstrained:
        _check_srid(geoms, values, present, column, spec, mark, default_srid)
        _check_dimension(dimensions, present, column, spec, mark)
    mark(*_non_finite_heights(geoms, present, dimensions))
    if column.type_name == "geography":
        _check_geographic_range(geoms, present, column, mark)
    checkable = present.copy()
    checkable[list(found) + list(skip)] = False
    for index in np.flatnonzero(checkable & ~is_valid(geoms)):
        found[int(index)] = _invalid_problem(shapely.is_valid_reason(geoms[index]))
    return found


def _invalid_problem(reason: str) -> tuple[str, str]:
    """GEOS's validity reason, with the too-few-points case named as its own kind."""
    if reason.lower().startswith("too few points"):
        return "too_few_points", f"too few points: {reason}"
    if reason.lower().startswith("invalid coordinate"):  # GEOS: NaN or infinite x or y
        return "non_finite", f"non-finite coordinate (NaN or infinity): {reason}"
    return "invalid", f"invalid geometry: {reason}"


def _drop_flat_z(geoms: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Makes 2D, in place, the geometries whose every Z is 0 (KML writes an altitude of 0
    by default: Google Earth's points are 13.4,52.5,0), for a 2D column, which loses
    nothing by it; any other Z stays, a dimension reject. Returns which were changed."""
    zero = flat_z(geoms)
    if zero.any():
        srids = shapely.get_srid(geoms[zero])
        geoms[zero] = shapely.set_srid(shapely.force_2d(geoms[zero]), srids)
    return zero


def flat_z(geoms: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which geometries have a Z of 0 at every point and no M: 2D in all but name."""
    flat = np.zeros(len(geoms), dtype=bool)
    candidates = np.flatnonzero(shapely.has_z(geoms))  # none, mostly: one pass in C
    candidates = candidates[~shapely.has_m(geoms[candidates])]
    if not len(candidates):
        return flat
    coordinates, owner = shapely.get_coordinates(
        geoms[candidates], include_z=True, return_index=True
    )
    raised = np.bincount(owner, weights=coordinates[:, 2] != 0, minlength=len(candidates))
    flat[candidates[raised == 0]] = True
    return flat


def _check_srid(
    geoms: np.ndarray[Any, Any],
    values: list[Any],
    present: Any,
    column: Column,
    spec: GeometrySpec,
    mark: Any,
    default_srid: int | None,
) -> None:
    srids = shapely.get_srid(geoms)
    if default_srid is not None:  # geometries without an SRID are said to have this one
        srids = np.where(srids == 0, default_srid, srids)
    else:
        srids = np.where(srids == 0, spec.srid, srids)
    if spec.srid != 0:
        mark(
            present & (srids != spec.srid),
            "srid",
            lambda i: (
                f"SRID {srids[i]} where column {column.name} has SRID {spec.srid}"
                + (_GEOJSON_HINT if srids[i] == GEOJSON_SRID and is_geojson(values[i]) else "")
            ),
        )


def _check_dimension(
    dimensions: tuple[Any, Any],
    present: Any,
    column: Column,
    spec: GeometrySpec,
    mark: Any,
) -> None:
    has_z, has_m = dimensions
    mark(
        present & ((has_z != spec.has_z) | (has_m != spec.measured)),
        "dimension",
        lambda i: (
            f"{_DIMENSIONS[has_z[i], has_m[i]]} geometry where column {column.name} is "
            f"{_DIMENSIONS[spec.has_z, spec.measured]}"
            + (
                f" (on_invalid='repair' drops {_EXTRA[has_z[i], has_m[i]]})"
                if spec.dimension == 2
                else ""
            )
        ),
    )


def _non_finite_heights(
    geoms: np.ndarray[Any, Any],
    present: np.ndarray[Any, np.dtype[np.bool_]],
    dimensions: tuple[Any, Any],
) -> tuple[np.ndarray[Any, np.dtype[np.bool_]], str, Callable[[int], str]]:
    """The geometries with a NaN or infinite Z or M (a height field left empty), which
    GEOS's validity check, of x and y alone, passes and PostGIS stores; for ``mark``.
    ``dimensions``: which have Z, which M."""
    has_z, has_m = dimensions
    rows = np.flatnonzero(present & (has_z | has_m))
    bad = np.zeros(len(geoms), dtype=bool)
    first: dict[int, str] = {}
    if len(rows):
        coordinates, owners = shapely.get_coordinates(
            geoms[rows], include_z=True, include_m=True, return_index=True
        )
        owners = rows[owners]
        odd = np.stack(
            [
                has_z[owners] & ~np.isfinite(coordinates[:, 2]),
                has_m[owners] & ~np.isfinite(coordinates[:, 3]),
            ],
            axis=1,
        )
        for at in np.flatnonzero(odd.any(axis=1))[::-1]:  # the first of each geometry last
            x, y, z, m = coordinates[at]
            name, value = ("Z", z) if odd[at, 0] else ("M", m)
            first[int(owners[at])] = f"{name} is {value} at ({x:.15g} {y:.15g})"
        bad[list(first)] = True
    return bad, "non_finite", lambda i: f"non-finite coordinate (NaN or infinity): {first[i]}"


_DIMENSIONS = {(False, False): "2D", (True, False): "3D", (False, True): "XYM", (True, True): "4D"}
_EXTRA = {(True, False): "the Z", (False, True): "the M", (True, True): "Z and M"}
"""What a 2D column cannot hold of a geometry with Z, M or both."""


_GEOJSON_HINT = (
    " (GeoJSON that names no CRS is longitude/latitude, RFC 7946: pass srid= if these "
    "coordinates are in another CRS, or reproject=True to transform them)"
)


def _check_geographic_range(
    geoms: np.ndarray[Any, Any], present: Any, column: Column, mark: Any
) -> None:
    """PostGIS wraps geography coordinates beyond longitude ±180 or latitude ±90 without
    an error: projected coordinates (metres) end up as points somewhere on the globe."""
    with np.errstate(invalid="ignore"):
        bounds = shapely.bounds(geoms)
        finite = np.isfinite(bounds).all(axis=1)  # NaN and infinity are reported by kind
        outside = (np.abs(bounds[:, [0, 2]]) > 180).any(axis=1) | (
            np.abs(bounds[:, [1, 3]]) > 90
        ).any(axis=1)
    mark(
        present & finite & outside,
        "out_of_range",
        lambda i: (
            f"coordinates outside longitude -180..180 or latitude -90..90 (bounds "
            f"{', '.join(f'{v:.12g}' for v in bounds[i])}) for geography column {column.name}: "
            "are they projected? Transform them to longitude/latitude first"
        ),
    )


def _beyond_latitudes(geoms: np.ndarray[Any, Any], column: Column) -> np.ndarray[Any, Any]:
    """Which geometries bound for a geometry column of longitudes and latitudes reach
    beyond latitude ±90: projected coordinates (metres) labelled with the column's SRID,
    or latitude and longitude swapped. PostGIS stores them (a geometry column takes any
    number), and so does the ingest; the report counts them. (Longitudes beyond ±180 are
    not counted: some data numbers them 0 to 360. A geography column refuses both.)"""
    if column.type_name != "geometry" or column.geometry is None or not column.geometry.in_degrees:
        return np.zeros(len(geoms), dtype=bool)
    with np.errstate(invalid="ignore"):
        bounds = shapely.bounds(geoms)  # NaN for a missing or empty geometry: not counted
        return np.asarray((np.abs(bounds[:, [1, 3]]) > 90).any(axis=1))


def _repair(
    geoms: np.ndarray[Any, Any],
    problems: dict[int, tuple[str, str]],
    spec: GeometrySpec,
    first_row: int,
    column: str,
    repaired: list[Reject],
) -> np.ndarray[Any, Any]:
    """make_valid for invalid geometries whose repaired form still fits the column, and
    the Z and M dropped from geometries bound for a 2D column (then made valid if need
    be)."""
    geoms = geoms.copy()
    allowed = _TYPE_IDS.get(spec.geometry_type)
    for index, (kind, reason) in list(problems.items()):
        done = ""
        if kind == "dimension" and spec.dimension == 2:
            geometry = geoms[index]
            extra = _EXTRA[bool(shapely.has_z(geometry)), bool(shapely.has_m(geometry))]
            geoms[index] = shapely.set_srid(shapely.force_2d(geometry), shapely.get_srid(geometry))
            done = f"{reason}: {extra.removeprefix('the ')} dropped"
            if is_valid(geoms[index]):
                repaired.append(Reject(first_row + index, column, "repaired", done))
                del problems[index]
                continue
            kind, reason = problems[index] = _invalid_problem(shapely.is_valid_reason(geoms[index]))
        if kind != "invalid":
            continue
        fixed = _fit_multi(object_array([shapely.make_valid(geoms[index])]), spec)[0][0]
        if allowed is None or shapely.get_type_id(fixed) in allowed:
            geoms[index] = shapely.set_srid(fixed, shapely.get_srid(geoms[index]))
            why = f"{done}; {reason}" if done else reason
            repaired.append(Reject(first_row + index, column, "repaired", why))
            del problems[index]
        else:
            problems[index] = (
                kind,
                f"{reason}; make_valid gives a {fixed.geom_type}, which "
                f"column {column} ({spec.geometry_type}) cannot hold",
            )
    return geoms


def as_text(value: Any) -> str | None:
    """The original value as text for the rejects table."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).hex()
    elif isinstance(value, shapely.Geometry):
        text = shapely.to_wkt(value, rounding_precision=-1)
    elif isinstance(value, dict):
        try:
            text = orjson.dumps(value, default=str).decode()
        except TypeError:  # what JSON cannot hold (a lone surrogate, a key not text)
            text = str(value)
    else:
        try:
            text = str(value)
        except Exception:  # an object's own __str__ (the reject's reason says what)
            text = object.__repr__(value)
    return text[:2000]
