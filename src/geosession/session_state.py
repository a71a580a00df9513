"""What a statement leaves in the server session, which a pool would pass on.

``SET search_path = tenant_7``, ``SET ROLE``, ``SET app.tenant = '7'`` or
``set_config('app.tenant', '7', false)`` outside ``LOCAL`` last as long as the server
session, and a pooled connection's session outlives the checkout that changed it: the
next request would run with another tenant's search_path, another user's role (row-level
security keyed on a setting included). So do advisory locks taken with
``pg_advisory_lock`` (not ``pg_advisory_xact_lock``): held by a pooled connection, no
one can release them; and temporary tables made without ``ON COMMIT DROP``: the next
user would read their rows, or fail to make its own ("already exists"). SQLAlchemy's
return to the pool rolls back, which undoes none of it.

Such statements are seen as they are executed. A connection returned with a setting
still changed is replaced before its next checkout (connect events run again on the new
one); one that took session advisory locks, or made temporary tables, has them looked up
as it returns, and released or dropped. Each is logged once per kind and place. ``SET LOCAL`` (what
``db.transaction(statement_timeout=...)`` uses), ``RESET`` and ``DISCARD ALL`` change
nothing that outlives the transaction or undo the change.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event

from geosession.observe.leaks import capture_stack
from geosession.read.plan import quote_identifier

log = logging.getLogger("geosession.pool")

_LEFT = "geosession_session_state"
"""Connection info key: what the checkout left in the server session (:class:`_Left`)."""


@dataclass
class _Left:
    """What a checkout's statements left in the server session, and where each was."""

    settings: dict[str, str] = field(default_factory=dict)
    """The settings changed for the session."""
    locked: str | None = None
    """Where it first took a session advisory lock."""
    tables: dict[str, str] = field(default_factory=dict)
    """The temporary tables it made to outlive their transaction."""


_COMMAND = re.compile(r"\s*(SET|RESET|DISCARD)\s+(.*)", re.IGNORECASE | re.DOTALL)
_NOT_SESSION = re.compile(r"(LOCAL|TRANSACTION|CONSTRAINTS)\b", re.IGNORECASE)
_NAMED = (  # SET's own syntax for some settings, and the setting it changes
    (re.compile(r"SESSION\s+AUTHORIZATION\b", re.IGNORECASE), "session_authorization"),
    (re.compile(r"SESSION\s+CHARACTERISTICS\b", re.IGNORECASE), "default_transaction_isolation"),
    (re.compile(r"ROLE\b", re.IGNORECASE), "role"),
    (re.compile(r"TIME\s+ZONE\b", re.IGNORECASE), "timezone"),
    (re.compile(r"NAMES\b", re.IGNORECASE), "client_encoding"),
    (re.compile(r"SCHEMA\b", re.IGNORECASE), "search_path"),
    (re.compile(r"XML\s+OPTION\b", re.IGNORECASE), "xmloption"),
)
_NAME = re.compile(r'("(?:[^"]|"")+"|[\w$]+)(\.("(?:[^"]|"")+"|[\w$]+))?')
_TO_DEFAULT = re.compile(r"(\s*=\s*|\s)DEFAULT\s*;?\s*$", re.IGNORECASE)
_ROLE_NONE = re.compile(r"ROLE\s+NONE\b", re.IGNORECASE)
_SESSION = re.compile(r"SESSION\s+(?!AUTHORIZATION\b|CHARACTERISTICS\b)", re.IGNORECASE)
_ADVISORY_LOCK = re.compile(r"\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.IGNORECASE)
_HELD_AND_RELEASED = (
    "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
    "AND pid = pg_backend_pid() AND granted), pg_advisory_unlock_all()"
)
_IDENTIFIER = r'(?:"(?:[^"]|"")+"|[\w$]+)'
_TEMPORARY_TABLE = re.compile(
    r"\s*CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"((?:{_IDENTIFIER}\s*\.\s*)?{_IDENTIFIER})",
    re.IGNORECASE,
)
_TEMPORARY_TABLES = (
    "SELECT relname::text FROM pg_class "
    "WHERE relnamespace = pg_my_temp_schema() AND relkind IN ('r', 'p')"
)
_ON_COMMIT_DROP = re.compile(r"\bON\s+COMMIT\s+DROP\b", re.IGNORECASE)
_SET_CONFIG = re.compile(
    r"\bset_config\s*\(\s*'((?:[^']|'')+)'\s*,.*?,\s*false\s*\)", re.IGNORECASE | re.DOTALL
)


def guard_session_state(engine: Engine, *, pgbouncer: bool = False) -> None:
    """Watches ``engine``'s statements for session-level settings, advisory locks and
    temporary tables (see the module). Behind PgBouncer locks and tables are not looked
    up: in transaction pooling the next transaction may run on another server session
    (another client's)."""
    event.listen(engine, "before_cursor_execute", _seen)
    event.listen(engine, "reset", _Returns(look_up=not pgbouncer).reset)


def session_changes(statement: str) -> list[tuple[str, bool]]:
    """The settings ``statement`` changes for the session: (setting, True) for a change,
    (setting, False) for one it undoes ("*" for all)."""
    changes: list[tuple[str, bool]] = []
    command = _COMMAND.match(statement)
    if command is not None:
        verb, rest = command.group(1).upper(), command.group(2)
        if verb == "DISCARD":
            changes += [("*", False)] if rest.strip().upper().startswith("ALL") else []
        elif verb == "RESET":
            name = _setting(rest)
            changes += [("*" if name == "all" else name, False)] if name else []
        else:
            changes += _set(rest)
    if "set_config" in statement or "SET_CONFIG" in statement:
        changes += [
            (_unquoted(m.group(1).replace("''", "'")), True)
            for m in _SET_CONFIG.finditer(statement)
        ]
    return changes


def _set(rest: str) -> list[tuple[str, bool]]:
    session = _SESSION.match(rest)  # SET SESSION x: the default, as SET x
    rest = rest[session.end() :] if session else rest
    if _NOT_SESSION.match(rest):
        return []
    name = _setting(rest)
    if name is None:
        return []
    undone = _TO_DEFAULT.search(rest) is not None or _ROLE_NONE.match(rest) is not None
    return [(name, not undone)]


def _setting(text: str) -> str | None:
    """The setting a SET or RESET names first in ``text``, lower case and unquoted."""
    text = text.lstrip()
    for pattern, name in _NAMED:
        if pattern.match(text):
            return name
    found = _NAME.match(text)
    return _unquoted(found.group(0)) if found else None


def _unquoted(name: str) -> str:
    return ".".join(_parts(name))


def _parts(name: str) -> list[str]:
    """The parts of a dotted name, unquoted (``"A.b"`` is one part) or lower-cased."""
    found = re.findall(r'"((?:[^"]|"")+)"|([^".\s]+)', name)
    return [quoted.replace('""', '"') if quoted else bare.lower() for quoted, bare in found]


def _seen(
    conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
) -> None:
    changes = session_changes(statement)
    locks = "advisory_lock" in statement and _ADVISORY_LOCK.search(statement) is not None
    made = _TEMPORARY_TABLE.match(statement)
    if made is not None and _ON_COMMIT_DROP.search(statement):
        made = None
    if not (changes or locks or made):
        return
    left: _Left = conn.info.setdefault(_LEFT, _Left())
    if locks and left.locked is None:
        left.locked = _where()
    if made is not None:
        left.tables.setdefault(_parts(made.group(1))[-1], _where())  # pg_temp.name: name
    for name, change in changes:
        if not change and name == "*":
            left.settings.clear()
        elif not change:
            left.settings.pop(name, None)
        elif name not in left.settings:
            left.settings[name] = _where()


def _where() -> str:
    """``file:line in function`` of the code that sent the statement."""
    frames = capture_stack(1)
    return f"{frames[0][0]}:{frames[0][1]} in {frames[0][2]}" if frames else "an unknown place"


class _Returns:
    """Connections coming back to one engine's pool (its reset event, before the return's
    rollback); each thing left and place is told once."""

    def __init__(self, *, look_up: bool) -> None:
        self._look_up = look_up  # locks and tables: not behind PgBouncer
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def reset(self, dbapi_connection: Any, record: Any, state: Any) -> None:
        """A checkout that changed settings has its connection replaced before the next
        (soft invalidation: SQLAlchemy reconnects at the next checkout, connect events
        included); one that took session advisory locks or made temporary tables has
        them looked up, and released or dropped (rolled back first: its transaction may
        have failed)."""
        left: _Left | None = record.info.pop(_LEFT, None) if record is not None else None
        if left is None:
            return
        if left.settings:
            record.invalidate(soft=True)
            self._tell_changed(left.settings)
        if not (left.locked or left.tables) or not self._look_up:
            return
        if state.terminate_only or not state.asyncio_safe:
            return  # a connection being closed releases its locks and drops its tables
        dbapi_connection.rollback()
        if left.locked is not None:
            self._release_locks(dbapi_connection, left.locked)
        if left.tables:
            self._drop_tables(dbapi_connection, left.tables)

    def _release_locks(self, dbapi_connection: Any, where: str) -> None:
        ((count, _),) = _fetch(dbapi_connection, _HELD_AND_RELEASED)
        held = int(count)
        if held and self._first(("advisory lock", where)):
            log.warning(
                "A pooled connection came back holding %s advisory lock%s, the first taken "
                "at %s (pg_advisory_lock, held until released or the session ends): no "
                "later user of the connection could release %s, so geosession did "
                "(pg_advisory_unlock_all). Take them for the transaction alone with "
                "pg_advisory_xact_lock, or release each before the session ends",
                held,
                "" if held == 1 else "s",
                where,
                "it" if held == 1 else "them",
            )

    def _drop_tables(self, dbapi_connection: Any, made: dict[str, str]) -> None:
        present = {str(name) for (name,) in _fetch(dbapi_connection, _TEMPORARY_TABLES)}
        kept = [name for name in made if name in present]
        if not kept:
            return
        quoted = ", ".join("pg_temp." + quote_identifier(name) for name in kept)
        _fetch(dbapi_connection, f"DROP TABLE IF EXISTS {quoted}", rows=False)
        dbapi_connection.commit()
        told = [name for name in kept if self._first((f"temporary table {name}", made[name]))]
        if told:
            log.warning(
                "A pooled connection came back with temporary table%s %s in its session: "
                'its next user would have read %s rows, or failed to make its own ("already '
                'exists"), so geosession dropped %s. Make temporary tables ON COMMIT DROP '
                "in the transaction that uses them, or drop them when done",
                "" if len(told) == 1 else "s",
                ", ".join(f"{name} (made at {made[name]})" for name in told),
                "its" if len(told) == 1 else "their",
                "it" if len(told) == 1 else "them",
            )

    def _first(self, told: tuple[str, str]) -> bool:
        with self._lock:
            if told in self._warned:
                return False
            self._warned.add(told)
            return True

    def _tell_changed(self, changed: dict[str, str]) -> None:
        fresh = {name: where for name, where in changed.items() if self._first((name, where))}
        if not fresh:
            return
        log.warning(
            "A pooled connection came back with %s changed for its whole session (SET "
            "without LOCAL, or set_config(..., false)): its next user would have run with "
            "%s, so geosession replaces the connection. Set it for the transaction alone: "
            "db.transaction(settings={'%s': ...}), or SET LOCAL in a transaction; for every "
            "connection, server_settings={...} (GEOSESSION_SERVER_SETTINGS)",
            ", ".join(f"{name} (set at {where})" for name, where in fresh.items()),
            "them" if len(fresh) > 1 else "it",
            next(iter(fresh)),
        )


def _fetch(dbapi_connection: Any, statement: str, *, rows: bool = True) -> list[Any]:
    """``statement``'s rows, run on the DB-API connection itself (the pool's reset)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
        return list(cursor.fetchall()) if rows else []
    finally:
        cursor.close()
