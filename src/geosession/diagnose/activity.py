"""Server sessions (pg_stat_activity) and lock waits (pg_locks), as plain objects.

Both read the statistics views in one short query each; the SQL is fixed and takes only
bind parameters. ``pg_blocking_pids`` is called only for sessions waiting on a lock (it
briefly takes the lock manager's locks). Without the ``pg_read_all_stats`` role, other
roles' sessions show only their pid, database, user and application: they are listed as
``hidden``, so that nobody reads "no session is idle in transaction" into a blind spot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, text

QUERY_CHARS = 300
"""How much of each query text is returned."""

_HIDDEN = "(a.backend_type IS NULL AND a.usename IS NOT NULL)"
"""Another role's backend, as pg_stat_activity shows it to a role without pg_read_all_stats."""
_HIDDEN_HERE = text(
    "SELECT count(*), current_user FROM pg_stat_activity a "  # noqa: S608 (constants only)
    f"WHERE a.pid <> pg_backend_pid() AND a.datname = current_database() AND {_HIDDEN}"
)
_ACTIVITY = text(
    "SELECT a.pid, a.datname, a.application_name, a.usename, a.client_addr::text, a.state, "  # noqa: S608
    "extract(epoch FROM clock_timestamp() - a.xact_start)::float8, "
    "extract(epoch FROM clock_timestamp() - a.query_start)::float8, "
    "extract(epoch FROM clock_timestamp() - a.state_change)::float8, "
    "a.wait_event_type, a.wait_event, "
    "CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) "
    "ELSE '{}'::int[] END, "
    "left(a.query, :chars), a.backend_type IS NULL "
    "FROM pg_stat_activity a "
    f"WHERE a.pid <> pg_backend_pid() AND (a.backend_type = 'client backend' OR {_HIDDEN}) "
    "AND (:all_databases OR a.datname = current_database()) "
    "ORDER BY a.xact_start NULLS LAST, a.query_start NULLS LAST, a.pid"
)

_LOCK_WAITS = text(
    "SELECT w.pid, w.application_name, w.usename, l.locktype, l.mode, "
    "CASE WHEN l.relation IS NOT NULL THEN l.relation::regclass::text END, "
    "extract(epoch FROM clock_timestamp() - w.query_start)::float8, "
    "pg_blocking_pids(w.pid), left(w.query, :chars), "
    "(SELECT coalesce(json_agg(json_build_object('pid', b.pid, 'application', "
    "  b.application_name, 'state', b.state, 'query', left(b.query, :chars), "
    "  'hidden', b.backend_type IS NULL) ORDER BY b.pid), '[]'::json) "
    " FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(w.pid))), "
    "w.backend_type IS NULL "
    "FROM pg_locks l JOIN pg_stat_activity w ON w.pid = l.pid "
    "WHERE NOT l.granted AND (:all_databases OR w.datname = current_database()) "
    "ORDER BY w.query_start, w.pid"
)


@dataclass(frozen=True)
class SessionActivity:
    """One server session (backend) as pg_stat_activity shows it."""

    pid: int
    database: str | None
    application: str
    user: str | None
    client: str | None
    state: str | None
    """active, idle, idle in transaction, idle in transaction (aborted), ..."""
    transaction_age: float | None
    """Seconds since the open transaction began (None when none is open)."""
    query_age: float | None
    """Seconds since the current (or last) query began."""
    state_age: float | None
    """Seconds in the current state."""
    wait_event: str | None
    """``type:event`` the session waits on (e.g. Lock:transactionid), if any."""
    blocked_by: tuple[int, ...]
    """Pids holding the lock this session waits for."""
    query: str
    """The current or last query, cut to QUERY_CHARS characters."""
    idle_in_transaction: bool
    """Holding a transaction open while doing nothing: locks and snapshots are pinned."""
    long_running: bool
    """Active for longer than the threshold given to activity()."""
    hidden: bool = False
    """Another role's session whose state, times and query this role may not see
    (it lacks pg_read_all_stats)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Blocker:
    """A session holding a lock that another session waits for."""

    pid: int
    application: str
    state: str | None
    query: str
    hidden: bool = False
    """Another role's session whose state and query this role may not see."""


@dataclass(frozen=True)
class LockWait:
    """A session waiting for a lock, and who holds it."""

    pid: int
    application: str
    user: str | None
    lock_type: str
    mode: str
    relation: str | None
    waiting: float | None
    """Seconds since the waiting statement began."""
    blocked_by: tuple[int, ...]
    query: str
    blockers: tuple[Blocker, ...]
    hidden: bool = False
    """Another role's session whose query this role may not see."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def session_activity(
    connection: Connection, *, all_databases: bool = False, long_running: float = 60.0
) -> list[SessionActivity]:
    """Client sessions of this database (or all) except the caller's own."""
    rows = connection.execute(
        _ACTIVITY, {"chars": QUERY_CHARS, "all_databases": all_databases}
    ).all()
    return [_session(row, long_running) for row in rows]


def _session(row: Any, long_running: float) -> SessionActivity:
    pid, database, app, user, client, state, xact, query_age, state_age = row[:9]
    wait_type, wait_event, blocked_by, query, hidden = row[9:]
    return SessionActivity(
        pid=pid,
        database=database,
        application=app or "",
        user=user,
        client=client,
        state=state,
        transaction_age=xact,
        query_age=query_age,
        state_age=state_age,
        wait_event=f"{wait_type}:{wait_event}" if wait_type else None,
        blocked_by=tuple(blocked_by or ()),
        query="" if hidden else query or "",
        idle_in_transaction=(state or "").startswith("idle in transaction"),
        long_running=state == "active" and (query_age or 0.0) > long_running,
        hidden=hidden,
    )


def hidden_sessions(connection: Connection) -> tuple[int, str]:
    """How many sessions of this database hide their state from this role, and its name."""
    count, role = connection.execute(_HIDDEN_HERE).one()
    return int(count), str(role)


def see_all_advice(role: str) -> str:
    """What lets ``role`` see every session's state and query."""
    return f"GRANT pg_read_all_stats TO {role}; (or pg_monitor) shows it every session"


def lock_waits(connection: Connection, *, all_databases: bool = False) -> list[LockWait]:
    """Ungranted locks of this database (or all), each with the sessions blocking it."""
    rows = connection.execute(_LOCK_WAITS, {"chars": QUERY_CHARS, "all_databases": all_databases})
    return [_lock_wait(row) for row in rows]


def _lock_wait(row: Any) -> LockWait:
    pid, app, user, lock_type, mode, relation, waiting, blocked_by, query, blockers, hidden = row
    return LockWait(
        pid=pid,
        application=app or "",
        user=user,
        lock_type=lock_type,
        mode=mode,
        relation=relation,
        waiting=waiting,
        blocked_by=tuple(blocked_by or ()),
        query="" if hidden else query or "",
        blockers=tuple(
            Blocker(
                b["pid"],
                b["application"] or "",
                b["state"],
                "" if b["hidden"] else b["query"] or "",
                hidden=b["hidden"],
            )
            for b in blockers or ()
        ),
        hidden=hidden,
    )
