"""EXPLAIN a statement and tell whether the planner uses a spatial index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, TextClause, text
from sqlalchemy.sql import ClauseElement

_INDEX_NODES = ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
_SPATIAL_METHODS = ("gist", "spgist", "brin")


@dataclass(frozen=True)
class PlanReport:
    """A parsed plan: its tree, the indexes it scans, and which of those are spatial."""

    plan: dict[str, Any]
    indexes: tuple[str, ...] = ()
    spatial_indexes: tuple[str, ...] = ()
    sequential_scans: tuple[str, ...] = ()
    lines: tuple[str, ...] = field(default=(), repr=False)

    @property
    def uses_spatial_index(self) -> bool:
        """True when a GiST, SP-GiST or BRIN index is scanned somewhere in the plan."""
        return bool(self.spatial_indexes)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def explain_statement(connection: Connection, statement: Any, *, analyze: bool) -> PlanReport:
    """Runs EXPLAIN (FORMAT JSON) on ``connection``; the caller owns the transaction."""
    sql, params = _compile(connection, statement)
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    raw = connection.exec_driver_sql(f"EXPLAIN ({options}) {sql}", params).scalar_one()
    plan = (raw if isinstance(raw, list) else _loads(raw))[0]["Plan"]
    nodes = list(_walk(plan))
    indexes = tuple(n["Index Name"] for n in nodes if n["Node Type"] in _INDEX_NODES)
    return PlanReport(
        plan=plan,
        indexes=indexes,
        spatial_indexes=_spatial(connection, indexes),
        sequential_scans=tuple(n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"),
        lines=tuple(_describe(plan)),
    )


def _compile(connection: Connection, statement: Any) -> tuple[str, Any]:
    if isinstance(statement, str):
        statement = text(statement)
    if isinstance(statement, TextClause | ClauseElement):
        compiled = statement.compile(dialect=connection.dialect)
        return str(compiled), (compiled.params or None)
    raise TypeError(f"cannot EXPLAIN {type(statement).__name__}; pass a select() or SQL text")


def _loads(raw: Any) -> Any:
    import orjson

    return orjson.loads(raw)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _walk(child)


def _spatial(connection: Connection, indexes: tuple[str, ...]) -> tuple[str, ...]:
    if not indexes:
        return ()
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
            "WHERE c.relname = ANY(:names) AND am.amname = ANY(:methods)"
        ),
        {"names": list(indexes), "methods": list(_SPATIAL_METHODS)},
    )
    spatial = {row[0] for row in rows}
    return tuple(name for name in indexes if name in spatial)


def _describe(node: dict[str, Any], depth: int = 0) -> Iterator[str]:
    target = node.get("Index Name") or node.get("Relation Name") or ""
    actual = f", actual rows {node['Actual Rows']}" if "Actual Rows" in node else ""
    yield (
        f"{'  ' * depth}{node['Node Type']}{' on ' + target if target else ''} "
        f"(estimated rows {node.get('Plan Rows', '?')}{actual})"
    )
    for child in node.get("Plans", ()):
        yield from _describe(child, depth + 1)
