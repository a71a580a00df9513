"""The nodes of a JSON query plan, as a typed tree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_CONDITION_KEYS = ("Index Cond", "Recheck Cond", "Filter", "Join Filter", "Hash Cond")
_SEQ_SCANS = ("Seq Scan", "Parallel Seq Scan")


@dataclass(frozen=True)
class PlanNode:
    """One step of a plan: what it reads, how many rows were expected and found."""

    node_type: str
    schema: str | None
    table: str | None
    """The table scanned (for scan nodes)."""
    alias: str | None
    """The table's alias in the query; VERBOSE qualifies columns with it."""
    index: str | None
    """The index scanned (index and bitmap index scans)."""
    estimated_rows: float
    """Rows the planner expected per loop."""
    actual_rows: float | None
    """Rows found per loop (EXPLAIN ANALYZE only)."""
    loops: int | None
    conditions: tuple[str, ...]
    """Index Cond, Recheck Cond, Filter, Join Filter and Hash Cond texts."""
    shared_hit: int | None
    shared_read: int | None
    sort_keys: tuple[str, ...] = ()
    """A Sort node's keys."""
    order_by: str | None = None
    """What an index scan returns rows ordered by (a KNN search: ``geom <-> <point>``)."""
    outputs: tuple[str, ...] = ()
    """The expressions the node returns (VERBOSE's Output)."""
    children: tuple[PlanNode, ...] = ()

    @property
    def relation(self) -> str | None:
        """``schema.table`` of the scanned table."""
        if self.table is None:
            return None
        return f"{self.schema}.{self.table}" if self.schema else self.table

    @property
    def is_seq_scan(self) -> bool:
        return self.node_type in _SEQ_SCANS

    @property
    def misestimate(self) -> float:
        """How many times off the row estimate was (1.0 when exact or not analyzed)."""
        if self.actual_rows is None:
            return 1.0
        low, high = sorted((self.estimated_rows, self.actual_rows))
        return high / max(low, 1.0)

    def walk(self) -> Iterator[PlanNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    def summary(self) -> str:
        target = self.index or self.relation or ""
        if self.index and self.relation:
            target = f"{self.index} on {self.relation}"
        rows = f"estimated rows {self.estimated_rows:g}"
        if self.actual_rows is not None:
            rows += f", actual rows {self.actual_rows:g}"
            if self.loops and self.loops > 1:
                rows += f" x {self.loops} loops"
        if self.shared_hit is not None or self.shared_read is not None:
            rows += f", buffers hit {self.shared_hit or 0} read {self.shared_read or 0}"
        return f"{self.node_type}{' on ' + target if target else ''} ({rows})"


def parse_plan(node: dict[str, Any]) -> PlanNode:
    """The tree of a JSON plan's ``Plan`` object."""
    return PlanNode(
        node_type=node["Node Type"],
        schema=node.get("Schema"),
        table=node.get("Relation Name"),
        alias=node.get("Alias"),
        index=node.get("Index Name"),
        estimated_rows=float(node.get("Plan Rows", 0)),
        actual_rows=float(node["Actual Rows"]) if "Actual Rows" in node else None,
        loops=node.get("Actual Loops"),
        conditions=tuple(node[key] for key in _CONDITION_KEYS if key in node),
        shared_hit=node.get("Shared Hit Blocks"),
        shared_read=node.get("Shared Read Blocks"),
        sort_keys=tuple(node.get("Sort Key", ())),
        order_by=node.get("Order By"),
        outputs=tuple(node.get("Output", ())),
        children=tuple(parse_plan(child) for child in node.get("Plans", ())),
    )
