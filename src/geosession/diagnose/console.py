"""What ``geosession activity``, ``explain`` and ``doctor`` print: rich tables and trees.

Every value that comes from the server (queries, names) is shown as plain text, never
parsed as rich markup.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import orjson
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
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


class _FittedActivity:
    """The sessions table with the columns the terminal's width has room for: below
    ``_ROOMY`` characters the user and the transaction's age are left out, so the query
    stays readable (on 80 columns every column folded to a few characters)."""

    def __init__(self, sessions: list[SessionActivity], all_databases: bool, role: str) -> None:
        self.sessions, self.all_databases, self.role = sessions, all_databases, role

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        narrow = options.max_width < _ROOMY
        omit = ("user", "xact age") if narrow else ()
        yield activity_table(
            self.sessions, all_databases=self.all_databases, role=self.role, omit=omit
        )


_ROOMY = 110


def activity_table(
    sessions: list[SessionActivity],
    *,
    all_databases: bool = False,
    role: str = "this role",
    omit: tuple[str, ...] = (),
) -> Table:
    """Sessions as a table; idle in transaction in red, waiting or long-running in yellow;
    sessions whose state ``role`` may not see are named so under the table. ``omit``:
    columns left out."""
    hidden = sum(s.hidden for s in sessions)
    caption = (
        f"{hidden} session(s) of other roles hide their state and query from {role}: "
        f"{see_all_advice(role)}"
        if hidden
        else None
    )
    table = Table(
        title=f"Server sessions ({len(sessions)})",
        title_justify="left",
        caption=caption,
        caption_justify="left",
    )
    names = ["pid", "database", "application", "user", "state", "xact age", "query age"]
    names += ["wait", "blocked by", "query"]
    shown = [n not in omit and (n != "database" or all_databases) for n in names]
    for name, show in zip(names, shown, strict=True):
        if show:
            table.add_column(name, overflow="fold", no_wrap=name in ("pid", "state"))
    for s in sessions:
        flags = " (long)" if s.long_running else ""
        cells = [
            Text(str(s.pid)),
            Text(s.database or ""),
            Text(s.application),
            Text(s.user or ""),
            Text("hidden" if s.hidden else (s.state or "") + flags, style=_state_style(s)),
            Text(_age(s.transaction_age)),
            Text(_age(s.query_age)),
            Text(s.wait_event or ""),
            Text(", ".join(map(str, s.blocked_by)), style="yellow"),
            Text(" ".join(s.query.split())[:120]),
        ]
        table.add_row(*(cell for cell, show in zip(cells, shown, strict=True) if show))
    return table


def locks_table(waits: list[LockWait]) -> Table:
    """Lock waits: who waits, for what, and who holds it."""
    table = Table(title=f"Lock waits ({len(waits)})", title_justify="left")
    for name in ("pid", "application", "lock", "relation", "waiting", "blocked by", "query"):
        table.add_column(name, overflow="fold")
    for w in waits:
        blockers = "; ".join(f"{b.pid} {b.application} ({b.state})" for b in w.blockers)
        table.add_row(
            Text(str(w.pid)),
            Text(w.application),
            Text(f"{w.mode} ({w.lock_type})"),
            Text(w.relation or ""),
            Text(_age(w.waiting)),
            Text(blockers or ", ".join(map(str, w.blocked_by)), style="yellow"),
            Text(" ".join(w.query.split())[:120]),
        )
    return table


def activity_view(db: SpatialDatabase, *, all_databases: bool, long_running: float) -> Group:
    """One snapshot: the sessions table, and the lock waits table when there are any."""
    sessions = db.activity(all_databases=all_databases, long_running=long_running)
    waits = db.locks(all_databases=all_databases)
    role = "this role"
    if any(s.hidden for s in sessions):
        with db.session() as s:
            role = hidden_sessions(s.connection())[1]
    parts: list[RenderableType] = [_FittedActivity(sessions, all_databases, role)]
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
        verdict = Text("No spatial index is used: the statement has no spatial predicate.")
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


def doctor_table(report: DoctorReport) -> Table:
    """The checklist: a mark, the check, what was found, and the fix (a fix of several
    statements: how many, printed below by :func:`print_doctor`)."""
    verdict = "all checks pass" if report.ok else f"{len(report.failed)} check(s) failed"
    table = Table(title=f"geosession doctor: {verdict}", title_justify="left")
    for name in ("", "check", "result", "fix"):
        table.add_column(name, overflow="fold")
    for check in report.checks:
        mark, style = _STATUS[check.status]
        fix = check.fix
        if len(check.statements) > 1:
            below = f"the {len(check.statements)} statements below"
            fix = f"{check.advice} {below}" if check.advice else below.capitalize()
        table.add_row(Text(mark, style=style), Text(check.name), Text(check.detail), Text(fix))
    return table


def print_json(value: object) -> None:
    """``value`` as indented JSON on stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
