"""What ``geosession activity``, ``explain`` and ``doctor`` print: rich tables and trees.

Every value that comes from the server (queries, names) is shown as plain text, never
parsed as rich markup.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from rich.console import (
    Console,
    ConsoleOptions,
    Group,
    OverflowMethod,
    RenderableType,
    RenderResult,
)
from rich.live import Live
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from geosession.database import SpatialDatabase
from geosession.diagnose.activity import (
    LockWait,
    SessionActivity,
    hidden_sessions,
    see_all_advice,
)
from geosession.diagnose.checklist import Check
from geosession.diagnose.doctor import DoctorReport
from geosession.diagnose.explain import PlanReport
from geosession.diagnose.nodes import PlanNode

_STATUS = {
    "ok": ("✔", "green"),
    "warn": ("!", "yellow"),
    "fail": ("✘", "bold red"),
    "skip": ("-", "dim"),
}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def _state_style(session: SessionActivity) -> str:
    if session.hidden:
        return "dim"
    if session.idle_in_transaction:
        return "bold red"
    if session.blocked_by or session.long_running:
        return "yellow"
    return "green" if session.state == "active" else ""


@dataclass
class _FittedTable:
    """A table whose ``flexible`` column (the query) takes the width the other columns
    leave, sized when it is printed: each other column as wide as its longest value (at
    most ``cell_width``), then with its header wrapped at spaces, then, on a terminal
    still too narrow, without the columns of ``optional`` in turn, so that the flexible
    column stays readable (left to rich, every column folded to a few characters on 80
    columns, the query the most). Other columns' long words are cut with an ellipsis, or
    folded when ``fold`` (SQL that must stay whole)."""

    title: str
    columns: dict[str, list[Text]]
    optional: tuple[str, ...] = ()
    caption: str | None = None
    flexible: str = "query"
    cell_width: int = 24
    fold: bool = False

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        flexible = self.columns[self.flexible]
        needed = min(_width(self.flexible, flexible, whole_header=True), _FLEXIBLE_WIDTH)
        shown = [name for name in self.columns if name != self.flexible]
        left_out = list(self.optional)
        while True:
            widths = self._widths(shown, whole_headers=True)
            if _room(widths, options.max_width) >= needed:
                break
            widths = self._widths(shown, whole_headers=False)
            if _room(widths, options.max_width) >= needed or not left_out:
                break
            dropped = left_out.pop(0)
            shown = [name for name in shown if name != dropped]
        room = _room(widths, options.max_width)
        whole = _width(self.flexible, flexible, whole_header=True)
        widths = {**widths, self.flexible: max(min(whole, room), len(self.flexible))}
        table = Table(
            title=self.title, title_justify="left", caption=self.caption, caption_justify="left"
        )
        others: OverflowMethod = "fold" if self.fold else "ellipsis"
        order = [name for name in self.columns if name in widths]
        for name in order:
            table.add_column(
                name, width=widths[name], overflow="fold" if name == self.flexible else others
            )
        for row in zip(*(self.columns[name] for name in order), strict=True):
            table.add_row(*row)
        yield table

    def _widths(self, shown: list[str], *, whole_headers: bool) -> dict[str, int]:
        return {
            name: _width(name, self.columns[name], whole_header=whole_headers, cap=self.cell_width)
            for name in shown
        }


def _width(name: str, cells: list[Text], *, whole_header: bool, cap: int | None = None) -> int:
    """A column's width for its longest value (at most ``cap``) and its header, whole or
    wrapped at spaces ("query age" on two lines)."""
    longest = max((cell.cell_len for cell in cells), default=0)
    header = len(name) if whole_header else max((len(word) for word in name.split()), default=0)
    return max(header, longest if cap is None else min(longest, cap))


def _room(widths: dict[str, int], max_width: int) -> int:
    """What is left for the flexible column: each column has a border and a space on
    either side."""
    return max_width - sum(widths.values()) - 3 * (len(widths) + 1) - 1


_FLEXIBLE_WIDTH = 30
"""The narrowest flexible column left before other columns are left out (with none left
to leave out, it gets what there is)."""


def activity_table(
    sessions: list[SessionActivity], *, all_databases: bool = False, role: str = "this role"
) -> _FittedTable:
    """Sessions as a table; idle in transaction in red, waiting or long-running in yellow;
    sessions whose state ``role`` may not see are named so under the table. On a narrow
    terminal the user, the transaction's age and the application are left out first."""
    hidden = sum(s.hidden for s in sessions)
    caption = (
        f"{hidden} session(s) of other roles hide their state and query from {role}: "
        f"{see_all_advice(role)}"
        if hidden
        else None
    )
    columns: dict[str, list[Text]] = {
        "pid": [Text(str(s.pid)) for s in sessions],
        "database": [Text(s.database or "") for s in sessions],
        "application": [Text(s.application) for s in sessions],
        "user": [Text(s.user or "") for s in sessions],
        "state": [
            Text(
                "hidden" if s.hidden else (s.state or "") + (" (long)" if s.long_running else ""),
                style=_state_style(s),
            )
            for s in sessions
        ],
        "xact age": [Text(_age(s.transaction_age)) for s in sessions],
        "query age": [Text(_age(s.query_age)) for s in sessions],
        "wait": [Text(s.wait_event or "") for s in sessions],
        "blocked by": [Text(", ".join(map(str, s.blocked_by)), style="yellow") for s in sessions],
        "query": [Text(" ".join(s.query.split())[:120]) for s in sessions],
    }
    if not all_databases:
        del columns["database"]
    title = f"Server sessions ({len(sessions)})"
    optional = ("user", "xact age", "database", "application", "wait")
    return _FittedTable(title, columns, optional, caption)


def locks_table(waits: list[LockWait]) -> _FittedTable:
    """Lock waits: who waits, for what, and who holds it."""
    columns: dict[str, list[Text]] = {
        "pid": [Text(str(w.pid)) for w in waits],
        "application": [Text(w.application) for w in waits],
        "lock": [Text(f"{w.mode} ({w.lock_type})") for w in waits],
        "relation": [Text(w.relation or "") for w in waits],
        "waiting": [Text(_age(w.waiting)) for w in waits],
        "blocked by": [Text(_blockers(w), style="yellow") for w in waits],
        "query": [Text(" ".join(w.query.split())[:120]) for w in waits],
    }
    return _FittedTable(f"Lock waits ({len(waits)})", columns, ("application", "lock"))


def _blockers(wait: LockWait) -> str:
    blockers = "; ".join(
        f"{b.pid} {b.application} ({'hidden' if b.hidden else b.state})"
        if b.hidden or b.state
        else f"{b.pid} {b.application}"
        for b in wait.blockers
    )
    return blockers or ", ".join(map(str, wait.blocked_by))


def activity_view(db: SpatialDatabase, *, all_databases: bool, long_running: float) -> Group:
    """One snapshot: the sessions table, and the lock waits table when there are any."""
    sessions = db.activity(all_databases=all_databases, long_running=long_running)
    waits = db.locks(all_databases=all_databases)
    role = "this role"
    if any(s.hidden for s in sessions):
        with db.session() as s:
            role = hidden_sessions(s.connection())[1]
    parts: list[RenderableType] = [activity_table(sessions, all_databases=all_databases, role=role)]
    if waits:
        parts.append(locks_table(waits))
    return Group(*parts)


def watch(
    view: Callable[[], RenderableType],
    *,
    interval: float,
    count: int | None,
    console: Console,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Shows ``view()`` live, refreshed every ``interval`` s, ``count`` times or until Ctrl-C."""
    shown = 0
    with Live(view(), console=console, auto_refresh=False) as live:
        shown = 1
        try:
            while count is None or shown < count:
                sleep(interval)
                live.update(view(), refresh=True)
                shown += 1
        except KeyboardInterrupt:
            pass
    return shown


def plan_tree(report: PlanReport) -> RenderableType:
    """The plan as a tree, the verdict on spatial indexes, and the advice."""
    assert report.root is not None
    tree = Tree(Text(report.root.summary(), style=_node_style(report, report.root)))
    _add_children(tree, report.root, report)
    verdict = Text("No spatial index is used.", style="yellow")
    if report.uses_spatial_index:
        verdict = Text(f"Uses a spatial index: {', '.join(report.spatial_indexes)}", style="green")
    elif not report.spatial_predicate:
        verdict = Text("No spatial index is used: the statement has no predicate one serves.")
    parts: list[RenderableType] = [tree, verdict]
    if report.execution_ms is not None:
        parts.append(
            Text(
                f"Planning {report.planning_ms:.1f} ms, execution {report.execution_ms:.1f} ms"
                + (
                    f", of which JIT compilation {report.jit_ms:.1f} ms"
                    if report.jit_ms is not None
                    else ""
                )
                + " (the transaction was rolled back)"
            )
        )
    parts.extend(Text(f"• {line}", style="bold") for line in report.advice)
    return Group(*parts)


def _node_style(report: PlanReport, node: PlanNode) -> str:
    if node.index and node.index in report.spatial_indexes:
        return "green"
    if node.is_seq_scan and node.table in report.spatial_seq_scans:
        return "bold red"
    return ""


def _add_children(tree: Tree, node: PlanNode, report: PlanReport) -> None:
    for child in node.children:
        branch = tree.add(Text(child.summary(), style=_node_style(report, child)))
        _add_children(branch, child, report)


def print_doctor(report: DoctorReport, console: Console) -> None:
    """The checklist, then the SQL of fixes of several statements, one per line (folded
    into a table cell, forty CREATE INDEXes could not be read or copied)."""
    console.print(doctor_table(report))
    listed = [check for check in report.checks if len(check.statements) > 1]
    if listed:
        console.print("\nThe fixes, a statement per line:")
    for check in listed:
        advice = f": {check.advice}" if check.advice else ""
        console.print(Text(f"-- {check.name}{advice}"), soft_wrap=True)
        for statement in check.statements:
            console.print(Text(statement), soft_wrap=True)


def doctor_table(report: DoctorReport) -> RenderableType:
    """The checklist: a mark, the check, what was found, and the fix (a fix of several
    statements: how many, printed below by :func:`print_doctor`)."""
    return _DoctorTable(report)


@dataclass
class _DoctorTable:
    """The checklist in four columns on a wide terminal; below ``_ROOMY`` characters each
    fix goes under what was found, which then has the width the fix column took."""

    report: DoctorReport

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        report = self.report
        verdict = "all checks pass" if report.ok else f"{len(report.failed)} check(s) failed"
        marks = [Text(*_STATUS[check.status]) for check in report.checks]
        fixes = [_fix(check) for check in report.checks]
        results = [Text(check.detail) for check in report.checks]
        if options.max_width < _ROOMY:
            for result, fix in zip(results, fixes, strict=True):
                if fix:
                    result.append(f"\nfix: {fix}", style="cyan")
        columns = {"": marks, "check": [Text(check.name) for check in report.checks]}
        columns["result"] = results
        if options.max_width >= _ROOMY:
            columns["fix"] = [Text(fix) for fix in fixes]
        title = f"geosession doctor: {verdict}"
        yield _FittedTable(title, columns, flexible="result", cell_width=40, fold=True)


def _fix(check: Check) -> str:
    """The fix, or for several statements (printed below the table) how many there are."""
    if len(check.statements) <= 1:
        return str(check.fix)
    below = f"the {len(check.statements)} statements below"
    return f"{check.advice} {below}" if check.advice else below.capitalize()


_ROOMY = 120


def print_json(value: object) -> None:
    """``value`` as indented JSON on stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
