"""What a plan says about spatial indexes and statistics, in plain language.

Spatial predicates are found in the plan's condition texts (Filter, Join Filter, Index
Cond, ...): a PostGIS predicate function (ST_Intersects, ST_DWithin, ...) or a bounding-box
operator (&&, ~, @, <->) next to a geometry/geography column of a scanned table. With
VERBOSE every column is written ``alias.column``; the scan nodes map aliases to tables.
The catalog then tells which of those columns have a spatial index and which tables were
never analyzed. All catalog queries take names as bind parameters; the SQL in the advice
quotes identifiers the way PostgreSQL does.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from geosession.diagnose.catalog import INVALID_INDEX_CAUSE, PlanFacts
from geosession.diagnose.nodes import PlanNode
from geosession.diagnose.plan_text import (
    COLUMN_REF,
    PREDICATE_NAME,
    PREDICATES,
    SPATIAL_CONDITION,
    closing_paren,
    qualified,
    quote,
    unquote,
)

_CALL_BEFORE = re.compile(r"(\w+)\(\s*$")
_CAST_AFTER = re.compile(r"^\)::(\w+)")
_MISESTIMATE = 10.0
_MISESTIMATE_MIN_ROWS = 100
_JIT_NOTABLE_MS = 10.0
_JIT_NOTABLE_SHARE = 0.2
_POSTGIS_CALL = re.compile(r"\b_?st_\w+\(", re.IGNORECASE)


@dataclass(frozen=True)
class _Ref:
    """A geometry column used by a spatial predicate, and what wraps it, if anything."""

    alias: str
    column: str
    wrapper: str | None
    """``st_transform()`` or ``a cast to geography``."""
    expression: str | None
    """The wrapping expression as SQL on the bare column, e.g. ``st_transform(geom, 3857)``."""
    negated: bool = False
    """Whether the predicate is negated (NOT st_intersects(...)): no index finds its rows."""


def analyse(
    root: PlanNode, facts: PlanFacts, *, analyzed: bool
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Tables scanned sequentially despite a spatial predicate, and the advice."""
    nodes = list(root.walk())
    scans = {n.alias: n for n in nodes if n.alias and n.table and n.schema}
    refs_by_alias: dict[str, list[_Ref]] = defaultdict(list)
    for ref in _spatial_refs(nodes, scans, facts):
        refs_by_alias[ref.alias].append(ref)
    seq_scans: list[str] = []
    advice: list[str] = []
    for node in nodes:
        if node.is_seq_scan and node.alias in refs_by_alias and node.table:
            seq_scans.append(node.table)
            advice.extend(_scan_advice(node, refs_by_alias[node.alias], facts))
    advice.extend(_distance_advice(nodes, scans, facts))
    advice.extend(_derived_advice(nodes, facts))
    advice.extend(_stats_advice(nodes, facts, refs_by_alias, analyzed=analyzed))
    return tuple(dict.fromkeys(seq_scans)), tuple(dict.fromkeys(advice))


def spatially_filtered(root: PlanNode) -> bool:
    """Whether any step of the plan filters, joins or orders rows by a spatial predicate
    or operator: a plan without one has no use for a spatial index."""
    texts = (t for n in root.walk() for t in (*n.conditions, *n.sort_keys, n.order_by) if t)
    return any(SPATIAL_CONDITION.search(text) for text in texts)


def _spatial_refs(
    nodes: list[PlanNode], scans: dict[str, PlanNode], facts: PlanFacts
) -> list[_Ref]:
    refs = []
    owners = _spatial_index_owners(nodes, facts.spatial_indexes)
    for node, condition in ((n, c) for n in nodes for c in n.conditions):
        if not SPATIAL_CONDITION.search(condition):
            continue
        for match in COLUMN_REF.finditer(condition):
            alias, column = unquote(match.group(1)), unquote(match.group(2))
            if owners.get(id(node), alias) != alias:
                continue  # the value another table's spatial index is searched with (a join)
            scan = scans.get(alias)
            table = facts.tables.get((scan.schema or "", scan.table or "")) if scan else None
            if table is not None and column in table.geo_columns:
                wrapper, expression = _wrapper(condition, match.start(), match.end())
                if wrapper == f"a cast to {table.base_types.get(column)}":  # a domain's
                    wrapper = expression = None  # read as its base type: the index serves it
                if expression is not None:
                    expression = expression.replace(match.group(1) + ".", "")
                negated = _negated(condition, match.start())
                refs.append(_Ref(alias, column, wrapper, expression, negated))
    return refs


def _spatial_index_owners(nodes: list[PlanNode], spatial_indexes: set[str]) -> dict[int, str]:
    """The alias of the table whose spatial index serves each node that uses one (by the
    node's id): an index scan, a bitmap heap scan and its bitmap index scans."""
    owners: dict[int, str] = {}
    for node in nodes:
        if node.alias is None:
            continue
        bitmaps = list(node.walk())[1:] if node.node_type == "Bitmap Heap Scan" else []
        if node.index in spatial_indexes or any(b.index in spatial_indexes for b in bitmaps):
            owners.update((id(served), node.alias) for served in [node, *bitmaps])
    return owners


_PREDICATE_CALL = re.compile(rf"\b({PREDICATES})\s*\(", re.IGNORECASE)
_NOT_BEFORE = re.compile(r"\bNOT\s*\(?\s*$", re.IGNORECASE)
_FALSE_AFTER = re.compile(r"\s*IS\s+(?:NOT\s+TRUE|FALSE)\b", re.IGNORECASE)


def _negated(condition: str, at: int) -> bool:
    """Whether the predicate call around position ``at`` is negated: NOT before it, or
    IS NOT TRUE / IS FALSE after it."""
    around = [
        (call.start(), close)
        for call in _PREDICATE_CALL.finditer(condition, 0, at)
        if (close := closing_paren(condition, call.end() - 1)) is not None and close > at
    ]
    if not around:
        return False
    start, close = around[-1]
    before = condition[max(0, start - 8) : start]
    return bool(_NOT_BEFORE.search(before) or _FALSE_AFTER.match(condition, close + 1))


def _wrapper(condition: str, start: int, end: int) -> tuple[str | None, str | None]:
    """The function or cast applied to the column reference at ``start:end``, and its text."""
    window_start = max(0, start - 80)
    call = _CALL_BEFORE.search(condition[window_start:start])
    if call is not None and not PREDICATE_NAME.fullmatch(call.group(1)):
        call_start = window_start + call.start()
        close = closing_paren(condition, window_start + call.end() - 1)
        return f"{call.group(1)}()", condition[call_start : close + 1] if close else None
    cast = _CAST_AFTER.match(condition[end:])
    if cast is not None and condition[:start].endswith("("):
        return f"a cast to {cast.group(1)}", condition[start - 1 : end + cast.end()]
    return None, None


def _scan_advice(node: PlanNode, refs: list[_Ref], facts: PlanFacts) -> list[str]:
    schema, table = node.schema or "", node.table or ""
    name, sql_name = f"{schema}.{table}", qualified(schema, table)
    geo_columns = facts.tables[(schema, table)].geo_columns
    advice = []
    for column in dict.fromkeys(ref.column for ref in refs):
        wrapped = [ref for ref in refs if ref.column == column and ref.wrapper]
        if wrapped:
            labels = ", ".join(sorted({str(ref.wrapper) for ref in wrapped}))
            indexed = "indexed " if geo_columns.get(column, False) else ""
            expression = wrapped[0].expression or "<the same expression>"
            instead = _instead_of({str(ref.wrapper) for ref in wrapped}, column)
            advice.append(
                f"the predicate wraps the {indexed}column {name}.{column} in a function "
                f"({labels}): an index on {column} cannot serve it. {instead}; or index that "
                f"expression: CREATE INDEX ON {sql_name} USING gist (({expression}));"
            )
        elif invalid := facts.tables[(schema, table)].invalid_indexes.get(column):
            advice.append(
                f"the spatial index on {name}.{column} is INVALID ({', '.join(invalid)}): "
                f"{INVALID_INDEX_CAUSE}. Rebuild it: "
                + " ".join(f"REINDEX INDEX CONCURRENTLY {qualified(schema, i)};" for i in invalid)
            )
        elif not geo_columns.get(column, False):
            advice.append(
                f"table {name} has no spatial index on {column}: "
                f"CREATE INDEX ON {sql_name} USING gist ({quote(column)});"
            )
        elif all(ref.negated for ref in refs if ref.column == column):
            advice.append(
                f"the spatial predicate on {name}.{column} is negated (NOT ..., IS NOT "  # noqa: S608 (advice, not SQL run)
                "TRUE): it keeps the rows the spatial index would not find, so every row is "
                "read, as expected. For rows outside any of another table's shapes, NOT "
                "EXISTS (SELECT 1 FROM <shapes> s WHERE ST_Intersects(s.geom, "
                f"{quote(column)})) has that table's spatial index serve each search"
            )
        elif facts.tables[(schema, table)].analyzed:
            advice.append(
                f"{name}.{column} has a spatial index but {name} was read sequentially: "
                "normal for small tables or predicates matching most rows; if the table is "
                f"large, refresh its statistics (ANALYZE {sql_name};) and compare again"
            )
    return advice


_INSTEAD_OF = {
    "st_buffer()": "ST_DWithin({column}, <the other geometry>, <distance>) keeps the same "
    "rows without building a buffer, and uses the index",
    "st_expand()": "ST_DWithin({column}, <the other geometry>, <distance>) keeps the rows "
    "within that distance and uses the index",
    "st_envelope()": "Compare bounding boxes with the operators the index serves: "
    "{column} && <the other geometry> (boxes meet), {column} ~ <it> (box contains it)",
    "st_transform()": "Apply the function to the other operand instead (ST_Transform the "
    "search geometry to the column's SRID)",
}


def _instead_of(wrappers: set[str], column: str) -> str:
    """What to write instead of wrapping ``column`` in ``wrappers``."""
    if all(wrapper.startswith("a cast") for wrapper in wrappers):
        return "Compare in the column's own type where the meaning allows"
    if len(wrappers) == 1 and (known := _INSTEAD_OF.get(next(iter(wrappers)))):
        return known.format(column=quote(column))
    return "Write the condition on the bare column where the meaning allows"


def _stats_advice(
    nodes: list[PlanNode],
    facts: PlanFacts,
    refs_by_alias: dict[str, list[_Ref]],
    *,
    analyzed: bool,
) -> list[str]:
    advice = []
    for (schema, table), entry in facts.tables.items():
        if not entry.analyzed:
            advice.append(
                f"stats are missing for {schema}.{table} (never analyzed), so row estimates "
                f"are guesses: ANALYZE {qualified(schema, table)};"
            )
    for node in nodes if analyzed else ():
        scanned = facts.tables.get((node.schema or "", node.table or ""))
        rows = max(node.estimated_rows, node.actual_rows or 0.0)
        if scanned is None or not scanned.analyzed or rows < _MISESTIMATE_MIN_ROWS:
            continue
        if node.misestimate < _MISESTIMATE:
            continue
        off = (
            f"{node.node_type} on {node.relation}: estimated {node.estimated_rows:g} rows, "
            f"found {node.actual_rows:g} ({node.misestimate:.0f}x off)"
        )
        wrapped = [ref for ref in refs_by_alias.get(node.alias or "", []) if ref.expression]
        if wrapped:
            ref = wrapped[0]
            advice.append(
                f"{off}: the planner has no statistics for {ref.expression}, only for "
                f"{ref.column}, so it guesses, and ANALYZE alone does not help; with an index on "
                "the expression ANALYZE measures it too: CREATE INDEX ON "
                f"{qualified(node.schema, node.table or '')} USING gist (({ref.expression}));"
            )
        else:
            advice.append(
                f"{off}; the statistics may be stale: "
                f"ANALYZE {qualified(node.schema, node.table or '')};"
            )
    return advice


def jit_advice(output: dict[str, Any], root: PlanNode, *, analyzed: bool) -> list[str]:
    """JIT compilation that costs more than it saves. PostgreSQL compiles a plan whose
    estimated cost passes jit_above_cost, and PostGIS declares its predicates and
    ST_Transform at 10,000 per call, so short spatial queries often qualify."""
    jit = output.get("JIT")
    if not jit:
        return []
    cost = f"{output['Plan'].get('Total Cost', 0):,.0f}"
    conditions = " ".join(c for node in root.walk() for c in node.conditions)
    why = (
        ", mostly from the declared costs of PostGIS functions"
        if _POSTGIS_CALL.search(conditions)
        else ""
    )
    off = (
        'turn JIT off for them: SET jit = off; (server_settings={"jit": "off"} for '
        "geosession's connections, or ALTER DATABASE ... SET jit = off;)"
    )
    if not analyzed:
        return [
            f"the plan will be JIT-compiled (its estimated cost {cost} passes jit_above_cost): "
            "compiling can take longer than a spatial query runs; --analyze (analyze=True) "
            "measures it"
        ]
    compile_ms = float(jit.get("Timing", {}).get("Total", 0.0))
    execution_ms = float(output.get("Execution Time", 0.0))
    if compile_ms < _JIT_NOTABLE_MS or compile_ms < _JIT_NOTABLE_SHARE * execution_ms:
        return []
    return [
        f"JIT compilation took {compile_ms:.1f} ms of the {execution_ms:.1f} ms execution (the "
        f"plan's estimated cost {cost} passes jit_above_cost{why}); if such queries are "
        f"short: {off}"
    ]


_DISTANCE_CALL = re.compile(r"\bst_distance(?:sphere|spheroid)?\(", re.IGNORECASE)
_BELOW = re.compile(r"\s*<=?\s")


def _distance_advice(
    nodes: list[PlanNode], scans: dict[str, PlanNode], facts: PlanFacts
) -> list[str]:
    """ST_Distance where an index-assisted form says the same: ``ST_Distance(a, b) < d``
    in a condition (ST_DWithin), and rows sorted by ST_Distance (KNN, ``<->``). Both
    compute the distance of every row; the rewrites let a spatial index find the rows."""
    advice = []
    indexed = _spatial_index_owners(nodes, facts.spatial_indexes)
    for node in nodes:
        texts = [(c, False) for c in node.conditions] + [(k, True) for k in node.sort_keys]
        for expression, sorting in texts:
            for call in _DISTANCE_CALL.finditer(expression):
                close = closing_paren(expression, call.end() - 1)
                if close is None or not (sorting or _BELOW.match(expression[close + 1 :])):
                    continue
                found = _geo_column(expression[call.end() : close], scans, facts)
                if found is None:
                    continue
                if sorting:
                    advice.append(
                        f"rows of {found.table} are sorted by ST_Distance({found.subject}, "
                        "...), computed for every row: for the nearest ones, ORDER BY "
                        f"{found.subject} <-> {found.other} LIMIT <k> returns them nearest "
                        f"first and {found.served}"
                    )
                else:
                    advice.append(_distance_filter_advice(found, id(node) in indexed))
    return advice


def _distance_filter_advice(found: _Measured, indexed: bool) -> str:
    """ST_Distance(...) < d: computed for every row, or for those a box the query adds
    (&&, ST_Expand) let the index find."""
    rows = (
        "for each row the spatial index found by the box the query adds (&&, ST_Expand)"
        if indexed
        else "for every row, and no index serves it"
    )
    sphere = " (ST_DistanceSphere inlines to it)" if found.as_geography else ""
    return (
        f"ST_Distance({found.subject}, ...){sphere} < <distance> on {found.table} is "
        f"computed {rows}: ST_DWithin({found.subject}, {found.other}, <distance>) selects "
        f"the same rows and {found.served}"
    )


@dataclass(frozen=True)
class _Measured:
    """The column a distance is measured from, as a condition or a sort key has it."""

    table: str
    """``schema.table``, for messages."""
    sql_table: str
    column: str
    """Quoted."""
    as_geography: bool
    """Cast to geography (metres; what ST_DistanceSphere inlines to)."""

    @property
    def subject(self) -> str:
        return f"{self.column}::geography" if self.as_geography else self.column

    @property
    def other(self) -> str:
        return "<the other geometry>" + ("::geography" if self.as_geography else "")

    @property
    def served(self) -> str:
        """How the spatial index serves the rewrite: the column's own, or one on the cast
        expression, made by the statement given."""
        if not self.as_geography:
            return "uses the spatial index by itself"
        return (
            "is served by an index on that expression: CREATE INDEX ON "
            f"{self.sql_table} USING gist (({self.subject}));"
        )


_GEOGRAPHY_CALL_BEFORE = re.compile(r"\bgeography\(\s*$", re.IGNORECASE)
_GEOGRAPHY_CAST_AFTER = re.compile(r"\s*\)::geography\b", re.IGNORECASE)


def _geo_column(arguments: str, scans: dict[str, PlanNode], facts: PlanFacts) -> _Measured | None:
    """The first geometry or geography column in ``arguments``."""
    for match in COLUMN_REF.finditer(arguments):
        alias, column = unquote(match.group(1)), unquote(match.group(2))
        scan = scans.get(alias)
        table = facts.tables.get((scan.schema or "", scan.table or "")) if scan else None
        if scan is not None and table is not None and column in table.geo_columns:
            before, after = arguments[: match.start()], arguments[match.end() :]
            cast = bool(
                _GEOGRAPHY_CALL_BEFORE.search(before)
                or (before.rstrip().endswith("(") and _GEOGRAPHY_CAST_AFTER.match(after))
            )
            schema, name = scan.schema or "", scan.table or ""
            return _Measured(f"{schema}.{name}", qualified(schema, name), quote(column), cast)
    return None


_DERIVED = {
    "CTE Scan": (
        "the CTE {alias}",
        "(MATERIALIZED, or a CTE read more than once)",
        "Put the condition inside the CTE, or write WITH {alias} AS NOT MATERIALIZED (...) "
        "so that PostgreSQL applies it to the table under it",
    ),
    "Subquery Scan": (
        "subquery {alias}",
        "(its DISTINCT, LIMIT, window functions or set operations keep PostgreSQL from "
        "moving the condition inside)",
        "Filter inside the subquery",
    ),
}
"""Scans of rows a query makes itself, whose filters no index serves: what they are, why
the condition stays outside, and what to do."""


def _derived_advice(nodes: list[PlanNode], facts: PlanFacts) -> list[str]:
    """A spatial predicate filtering a CTE's or a subquery's rows once they are made,
    where no spatial index serves the rows under it."""
    advice = []
    for node in nodes:
        kind = _DERIVED.get(node.node_type)
        if kind is None or node.alias is None:
            continue
        if any(n.index in facts.spatial_indexes for n in node.walk()):
            continue
        columns = [
            unquote(match.group(2))
            for condition in node.conditions
            if SPATIAL_CONDITION.search(condition)
            for match in COLUMN_REF.finditer(condition)
            if unquote(match.group(1)) == node.alias
        ]
        if columns:
            what, why, instead = (part.format(alias=quote(node.alias)) for part in kind)
            advice.append(
                f"the spatial predicate on {quote(node.alias)}.{quote(columns[0])} filters "
                f"the rows of {what} once they are all made {why}: no index serves it "
                f"there. {instead}"
            )
    return advice
