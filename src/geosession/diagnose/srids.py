"""What a plan's SRIDs say: comparisons of two SRIDs, distances read as degrees.

PostGIS refuses a predicate (ST_Intersects, ST_DWithin, ``<->`` ...) over geometries of
two SRIDs only when it runs ("Operation on mixed SRID geometries"), while its bounding-box
operators (``&&``, ``~``, ``@`` ...) compare the boxes as if both were in one SRID and
select wrong rows without an error. The usual cause is a search geometry given without an
SRID (WKT, a shape bound without ``srid=``: SRID 0). In a plan each side of such a
comparison is a column of a scanned table or a constant, folded to EWKB hex.

ST_DWithin measures in the units of the geometries' SRID: on a column of longitudes and
latitudes (EPSG:4326), ST_DWithin(geom, point, 1000) selects within 1000 degrees, the
whole Earth, where metres were meant; no error says so. ST_Area, ST_Length and
ST_Perimeter of such a column are in (square) degrees too, whose size changes with
latitude. (ST_Distance is left alone: its degrees rank the nearest rows well enough, and
a small bound on it, ST_Distance(...) < 0.01, says degrees were meant.)
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from geosession.diagnose.catalog import PlanFacts, TableFacts
from geosession.diagnose.nodes import PlanNode
from geosession.diagnose.plan_text import (
    IDENT,
    PREDICATES,
    closing_paren,
    qualified,
    quote,
    unquote,
)

_COLUMN = re.compile(rf"\(?({IDENT})\.({IDENT})(?:\)::(\w+))?")
_BARE_COLUMN = re.compile(rf"\(?()({IDENT})(?:\)::(\w+))?")
"""A column as VERBOSE writes it in the output of a plan of one table: unqualified."""
_CONSTANT = re.compile(r"'([0-9A-Fa-f]+)'::(geometry|geography)")
_OPERAND = rf"(?:\(?{IDENT}\.{IDENT}(?:\)::\w+)?|'[0-9A-Fa-f]+'::(?:geometry|geography))"
_CALL = re.compile(rf"\b({PREDICATES})\(({_OPERAND}), ({_OPERAND})[,)]", re.IGNORECASE)
_OPERATOR = re.compile(rf"\(({_OPERAND}) (<->|&&&|&&|~=|~|@|<#>) ({_OPERAND})\)")
_FAILING_OPERATORS = {"<->"}
"""Operators that compute on the geometries themselves, and so refuse mixed SRIDs."""
_EWKB_SRID_FLAG = 0x20000000


@dataclass(frozen=True)
class _Side:
    """One side of a comparison: what it is, in words, and its SRID."""

    label: str
    srid: int
    column: bool
    kind: str
    """geometry or geography."""
    place: tuple[str, str, str] = ("", "", "")
    """A column's schema, table and name."""


def mixed_srid_advice(root: PlanNode, facts: PlanFacts) -> list[str]:
    """What to fix where the plan compares geometries of two SRIDs: one line per pair of
    sides, the comparison that fails rather than the box operator an index serves it by."""
    nodes = list(root.walk())
    scans = _scans(nodes)
    found: dict[tuple[_Side, _Side], str] = {}
    for text in (t for n in nodes for t in (*n.conditions, *n.sort_keys, n.order_by) if t):
        for comparison, left, right in _comparisons(text):
            pair = _mixed(_side(left, scans, facts), _side(right, scans, facts))
            if pair is not None and (pair not in found or _fails(comparison)):
                found[pair] = comparison
    return [_advice(comparison, *pair) for pair, comparison in found.items()]


def _mixed(left: _Side | None, right: _Side | None) -> tuple[_Side, _Side] | None:
    """The two sides, the column first, when they are known to be in different SRIDs: not
    two constants, nor a column of any SRID."""
    if left is None or right is None or left.srid == right.srid:
        return None
    column, other = (left, right) if left.column else (right, left)
    if not column.column or column.srid == 0 or (other.column and other.srid == 0):
        return None
    return column, other


def _comparisons(condition: str) -> Iterator[tuple[str, str, str]]:
    """Each predicate call and box operator of ``condition`` whose two sides are each a
    column or a constant, as (its name, the left side's text, the right side's)."""
    for call in _CALL.finditer(condition):
        yield f"{call.group(1).lstrip('_').lower()}()", call.group(2), call.group(3)
    for operator in _OPERATOR.finditer(condition):
        yield operator.group(2), operator.group(1), operator.group(3)


def _scans(nodes: list[PlanNode]) -> dict[str, PlanNode]:
    """The plan's table scans by the alias VERBOSE qualifies their columns with."""
    return {n.alias: n for n in nodes if n.alias and n.table and n.schema}


def _in_degrees(arguments: list[str], scans: dict[str, PlanNode], facts: PlanFacts) -> _Side | None:
    """The first of ``arguments`` that is a geometry column of longitudes and latitudes."""
    sides = (_side(argument, scans, facts) for argument in arguments)
    return next(
        (
            s
            for s in sides
            if s and s.column and s.kind == "geometry" and s.srid in facts.degree_srids
        ),
        None,
    )


def _side(text: str, scans: dict[str, PlanNode], facts: PlanFacts) -> _Side | None:
    """A column of a scanned table with its declared SRID, or a constant with its own."""
    if constant := _CONSTANT.fullmatch(text):
        srid = _ewkb_srid(constant.group(1))
        kind = constant.group(2)
        return _Side(f"a constant {kind} of SRID {srid}", srid, column=False, kind=kind)
    column = _COLUMN.fullmatch(text) or _BARE_COLUMN.fullmatch(text)
    if column is None:
        return None
    name = unquote(column.group(2))
    found = _scanned(column.group(1), name, scans, facts)
    if found is None:
        return None
    scan, table = found
    if column.group(3) not in (None, table.base_types[name]):
        return None  # geom::geography is another type's value, not the column's
    place = (scan.schema or "", scan.table or "", name)
    label, kind = ".".join(place), table.base_types[name]
    return _Side(label, table.srids[name], column=True, kind=kind, place=place)


def _scanned(
    alias: str, name: str, scans: dict[str, PlanNode], facts: PlanFacts
) -> tuple[PlanNode, TableFacts] | None:
    """The scan and table a spatial column reference is of: by its alias, or, unqualified
    (as VERBOSE writes a plan of one table's output), the one table with such a column."""
    candidates = list(scans.values())
    if alias:
        candidates = [scans[unquote(alias)]] if unquote(alias) in scans else []
    found = []
    for scan in candidates:
        table = facts.tables.get((scan.schema or "", scan.table or ""))
        if table is not None and name in table.srids:
            found.append((scan, table))
    return found[0] if len({(s.schema, s.table) for s, _ in found}) == 1 else None


def _ewkb_srid(hex_text: str) -> int:
    """The SRID of EWKB written in hex: after the byte order and the type, when the type
    says one follows; 0 otherwise."""
    header = bytes.fromhex(hex_text[:18])
    if len(header) < 9:
        return 0
    kind, srid = struct.unpack_from("<Ii" if header[0] == 1 else ">Ii", header, 1)
    return int(srid) if kind & _EWKB_SRID_FLAG else 0


def _fails(comparison: str) -> bool:
    """Whether PostGIS refuses the comparison over two SRIDs (a box operator does not)."""
    return comparison in _FAILING_OPERATORS or comparison.endswith("()")


def _advice(comparison: str, column: _Side, other: _Side) -> str:
    with_other = f"{other.label} (SRID {other.srid})" if other.column else other.label
    outcome = (
        'running it fails with "Operation on mixed SRID geometries"'
        if _fails(comparison)
        else "the boxes are compared as if both were in one SRID: no error, but the rows "
        "selected are wrong"
    )
    return (
        f"{comparison} compares {column.label} (SRID {column.srid}) with {with_other}: "
        f"{outcome}. {_remedy(column, other)}"
    )


def _remedy(column: _Side, other: _Side) -> str:
    srid = column.srid
    as_geography = "::geography" if column.kind == "geography" else ""
    if other.column:
        moved = f"{other.label}::geometry" if other.kind == "geography" else other.label
        return (
            f"Transform one side into the other's SRID (ST_Transform({moved}, {srid})"
            f"{as_geography}): the side left as it is keeps its spatial index"
        )
    if other.srid == 0:
        return (
            f"Give the search geometry the column's SRID: ST_SetSRID(<geometry>, {srid}) when "
            f"its coordinates are in SRID {srid} already (EWKT 'SRID={srid};POINT(...)'; "
            f"GeoAlchemy2: from_shape(shape, srid={srid}))"
        )
    return (
        f"Transform the search geometry into the column's SRID: ST_Transform(<geometry>, "
        f"{srid}){as_geography} (transforming the column instead keeps its index from serving)"
    )


_DWITHIN = re.compile(r"\b_?st_dwithin\(", re.IGNORECASE)
_DISTANCE = re.compile(r"'?(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)'?(?:::[a-z ]+)?")
_DEGREES_MEANT = 10.0
"""A distance in degrees beyond which metres (or feet) were surely meant: 10 degrees
is some 1,100 km."""
_METRES_MEANT = 1.0
"""A geography distance in metres below which degrees were surely meant."""


def distance_unit_advice(root: PlanNode, facts: PlanFacts) -> list[str]:
    """ST_DWithin with a distance in the wrong unit: on a column of longitudes and
    latitudes one no query in degrees would take (metres meant), on a geography column,
    which measures in metres, one below a metre (degrees meant, as before a column became
    geography: 0.01 is 1 cm, not 1.1 km)."""
    nodes = list(root.walk())
    scans = _scans(nodes)
    advice = []
    for condition in (c for n in nodes for c in n.conditions):
        for call in _DWITHIN.finditer(condition):
            arguments = _arguments(condition, call.end() - 1)
            if len(arguments) < 3 or not (distance := _DISTANCE.fullmatch(arguments[2])):
                continue
            given, value = distance.group(1), abs(float(distance.group(1)))
            column = _in_degrees(arguments[:2], scans, facts)
            if column is not None and value > _DEGREES_MEANT:
                advice.append(_degrees_advice(column, given))
            geography = _geography(arguments[:2], scans, facts)
            if geography is not None and 0 < value < _METRES_MEANT:
                advice.append(_metres_advice(geography, given))
    return list(dict.fromkeys(advice))


def _geography(arguments: list[str], scans: dict[str, PlanNode], facts: PlanFacts) -> _Side | None:
    """The first of ``arguments`` that is a geography column."""
    sides = (_side(argument, scans, facts) for argument in arguments)
    return next((s for s in sides if s and s.column and s.kind == "geography"), None)


def _metres_advice(column: _Side, distance: str) -> str:
    return (
        f"st_dwithin() on {column.label} (geography: metres) takes a distance of {distance} "
        f"in metres, under a metre; if it was meant in degrees, as on a geometry column of "
        f"longitudes and latitudes, give metres (a degree of latitude is some 111,000 m)"
    )


def _arguments(text: str, opening: int) -> list[str]:
    """The top-level arguments of the call whose parenthesis is at ``opening``."""
    close = closing_paren(text, opening)
    if close is None:
        return []
    arguments, depth, quoted, start = [], 0, False, opening + 1
    for index in range(opening + 1, close):
        char = text[index]
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and depth == 0 and char == ",":
            arguments.append(text[start:index].strip())
            start = index + 1
    return [*arguments, text[start:close].strip()]


def _degrees_advice(column: _Side, distance: str) -> str:
    schema, table, name = column.place
    return (
        f"st_dwithin() on {column.label} (SRID {column.srid}: longitudes and latitudes) takes "
        f"a distance of {distance} in degrees, the column's units, and selects rows up to "
        f"{distance} degrees away, not {distance} metres. For metres compare geographies: "
        f"ST_DWithin({quote(name)}::geography, <the other geometry>::geography, {distance}), "
        f"with an index for it: CREATE INDEX ON {qualified(schema, table)} USING gist "
        f"(({quote(name)}::geography)); or transform both sides into a projected SRID in metres"
    )


_MEASURE = re.compile(r"\b(st_area|st_length|st_perimeter)\(", re.IGNORECASE)
_MEASURED_IN = {
    "st_area": ("ST_Area", "square degrees", "square metres"),
    "st_length": ("ST_Length", "degrees", "metres"),
    "st_perimeter": ("ST_Perimeter", "degrees", "metres"),
}
"""Each measure's name, its unit on longitudes and latitudes, and on a geography."""


def degree_measure_advice(root: PlanNode, facts: PlanFacts) -> list[str]:
    """ST_Area, ST_Length and ST_Perimeter of a column of longitudes and latitudes,
    wherever the plan computes them (its output, conditions, sort keys)."""
    nodes = list(root.walk())
    scans = _scans(nodes)
    advice = []
    for text in (t for n in nodes for t in (*n.outputs, *n.conditions, *n.sort_keys)):
        for call in _MEASURE.finditer(text):
            column = _in_degrees(_arguments(text, call.end() - 1)[:1], scans, facts)
            if column is not None:
                advice.append(_measure_advice(call.group(1).lower(), column))
    return list(dict.fromkeys(advice))


def _measure_advice(function: str, column: _Side) -> str:
    spelt, degrees, metres = _MEASURED_IN[function]
    return (
        f"{function}() of {column.label} (SRID {column.srid}: longitudes and latitudes) is in "
        f"{degrees}, whose size on the ground shrinks away from the equator: for {metres}, "
        f"{spelt}({quote(column.place[2])}::geography)"
    )
