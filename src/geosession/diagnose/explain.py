"""EXPLAIN a statement and tell whether the planner uses a spatial index, and what to fix.

The statement is wrapped in an ``EXPLAIN (...)`` construct and executed through SQLAlchemy
like any other statement, so its bind parameters go through their types' bind processing
(GeoAlchemy2 geometry elements, shapely shapes via ``from_shape``, IN lists, JSON ...)
exactly as when the statement itself runs. The plan comes back as JSON (``FORMAT JSON,
VERBOSE``: VERBOSE adds the schema of each scanned table and qualifies every column with
its table alias, which :mod:`geosession.diagnose.advice` uses to tie predicates to tables).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, TextClause, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from geosession.diagnose.advice import analyse, jit_advice, spatially_filtered
from geosession.diagnose.catalog import PlanFacts
from geosession.diagnose.nodes import PlanNode, parse_plan
from geosession.diagnose.srids import (
    degree_measure_advice,
    distance_unit_advice,
    mixed_srid_advice,
)
from geosession.errors import ConfigurationError
from geosession.placeholders import mismatch, unbound
from geosession.sql_text import one_statement

_BUFFER_KEYS = {
    "shared_hit": "Shared Hit Blocks",
    "shared_read": "Shared Read Blocks",
    "shared_dirtied": "Shared Dirtied Blocks",
    "shared_written": "Shared Written Blocks",
    "temp_read": "Temp Read Blocks",
    "temp_written": "Temp Written Blocks",
}


@dataclass(frozen=True)
class PlanReport:
    """A parsed plan: its tree, the indexes it scans, which are spatial, and advice."""

    plan: dict[str, Any]
    """The plan's root node as PostgreSQL returned it (JSON format, parsed)."""
    indexes: tuple[str, ...] = ()
    """Every index scanned, in plan order."""
    spatial_indexes: tuple[str, ...] = ()
    """Those of a GiST, SP-GiST or BRIN operator class on geometry or geography."""
    sequential_scans: tuple[str, ...] = ()
    """Tables read by a sequential scan."""
    lines: tuple[str, ...] = field(default=(), repr=False)
    """The tree as indented text lines."""
    root: PlanNode | None = field(default=None, repr=False)
    """The tree as :class:`PlanNode` objects."""
    spatial_seq_scans: tuple[str, ...] = ()
    """Tables read sequentially although a spatial predicate filters them."""
    advice: tuple[str, ...] = ()
    """What to do, in plain language, with the exact SQL where there is one."""
    analyzed: bool = False
    """Whether the statement was executed (EXPLAIN ANALYZE): actual rows and times are real."""
    planning_ms: float | None = None
    execution_ms: float | None = None
    buffers: dict[str, int] = field(default_factory=dict)
    """Block counts of the whole statement (with analyze and buffers): shared_hit ..."""
    jit_ms: float | None = None
    """Time spent compiling the plan (JIT), part of execution_ms (with analyze)."""
    spatial_predicate: bool = True
    """Whether the plan filters, joins or orders by a spatial predicate or operator: one
    without has no use for a spatial index."""

    @property
    def uses_spatial_index(self) -> bool:
        """True when a GiST/SP-GiST/BRIN index on geometry or geography is scanned."""
        return bool(self.spatial_indexes)

    def as_dict(self) -> dict[str, Any]:
        """Everything but the text lines, for JSON output."""
        return {
            "uses_spatial_index": self.uses_spatial_index,
            "spatial_predicate": self.spatial_predicate,
            "indexes": list(self.indexes),
            "spatial_indexes": list(self.spatial_indexes),
            "sequential_scans": list(self.sequential_scans),
            "spatial_seq_scans": list(self.spatial_seq_scans),
            "advice": list(self.advice),
            "analyzed": self.analyzed,
            "planning_ms": self.planning_ms,
            "execution_ms": self.execution_ms,
            "jit_ms": self.jit_ms,
            "buffers": self.buffers,
            "plan": self.plan,
        }

    @property
    def verdict(self) -> str:
        """The spatial index used, or why none is."""
        if self.spatial_indexes:
            return f"uses a spatial index ({', '.join(self.spatial_indexes)})"
        if not self.spatial_predicate:
            return "no spatial index used: the statement has no predicate one serves"
        return "no spatial index used"

    def __str__(self) -> str:
        advice = [f"- {line}" for line in self.advice]
        return "\n".join([*self.lines, self.verdict, *advice])


class _Explain(Executable, ClauseElement):
    """``EXPLAIN (options) <statement>``, compiled and executed like the statement itself."""

    inherit_cache = False  # the options differ per call; nothing worth caching

    def __init__(self, statement: Any, explain_options: str) -> None:
        self.statement = statement
        self.sql_prefix = f"EXPLAIN ({explain_options}) "
        """What precedes the statement's SQL: errors count positions from after it."""


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    sql = compiler.process(element.statement, **kw)
    # the result is the plan, not the rows of an INSERT/UPDATE/DELETE: no DML result handling
    compiler.isinsert = compiler.isupdate = compiler.isdelete = False
    return element.sql_prefix + sql


def explain_statement(
    connection: Connection,
    statement: Any,
    *,
    analyze: bool,
    buffers: bool = True,
    params: Mapping[str, Any] | None = None,
) -> PlanReport:
    """Runs EXPLAIN (FORMAT JSON) on ``connection``; the caller owns the transaction."""
    if isinstance(statement, str):
        statement = text(statement)
    if not isinstance(statement, ClauseElement):
        raise TypeError(f"cannot EXPLAIN {type(statement).__name__}; pass a select() or SQL text")
    if isinstance(statement, TextClause):  # a script's later statements would run unexplained
        quoting = connection.exec_driver_sql("SHOW standard_conforming_strings").scalar()
        one_statement(statement.text, what="explain", backslash_quotes=quoting == "off")
    _check_values(statement, params or {}, connection)
    options = ["VERBOSE", "FORMAT JSON"]
    if analyze:
        options[:0] = ["ANALYZE", "BUFFERS"] if buffers else ["ANALYZE"]
    explain = _Explain(statement, ", ".join(options))
    raw = connection.execute(explain, dict(params or {})).scalar_one()
    output = (raw if isinstance(raw, list) else _loads(raw))[0]
    return _report(connection, output, analyze=analyze)


def _check_values(
    statement: ClauseElement, params: Mapping[str, Any], connection: Connection
) -> None:
    """Every ``:name`` placeholder has a value (a plan depends on them), and every value a
    placeholder."""
    problem = mismatch(statement, params, connection.dialect)
    if problem is None:
        return
    missing = unbound(statement, params, connection.dialect)
    flags = " ".join(f"--param {key}=VALUE" for key in missing)
    raise ConfigurationError(
        f"Cannot explain: {problem}" + (f" (geosession explain: {flags})" if missing else "")
    )


def _report(connection: Connection, output: dict[str, Any], *, analyze: bool) -> PlanReport:
    plan = output["Plan"]
    root = parse_plan(plan)
    nodes = list(root.walk())
    facts = PlanFacts.load(connection, root)
    spatial_seq_scans, advice = analyse(root, facts, analyzed=analyze)
    return PlanReport(
        plan=plan,
        indexes=tuple(n.index for n in nodes if n.index is not None),
        spatial_indexes=tuple(n.index for n in nodes if n.index in facts.spatial_indexes),
        sequential_scans=tuple(n.table for n in nodes if n.is_seq_scan and n.table),
        lines=tuple(_describe(root)),
        root=root,
        spatial_seq_scans=spatial_seq_scans,
        advice=(
            *mixed_srid_advice(root, facts),
            *distance_unit_advice(root, facts),
            *degree_measure_advice(root, facts),
            *advice,
            *jit_advice(output, root, analyzed=analyze),
        ),
        analyzed=analyze,
        planning_ms=output.get("Planning Time"),
        execution_ms=output.get("Execution Time"),
        buffers={name: plan[key] for name, key in _BUFFER_KEYS.items() if key in plan},
        jit_ms=output.get("JIT", {}).get("Timing", {}).get("Total"),
        spatial_predicate=spatially_filtered(root),
    )


def _loads(raw: Any) -> Any:
    import orjson

    return orjson.loads(raw)


def _describe(node: PlanNode, depth: int = 0) -> Iterator[str]:
    yield "  " * depth + node.summary()
    for child in node.children:
        yield from _describe(child, depth + 1)
