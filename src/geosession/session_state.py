"""What a statement leaves in the server session, which a pool would pass on.

``SET search_path = tenant_7``, ``SET ROLE``, ``SET app.tenant = '7'`` or
``set_config('app.tenant', '7', false)`` outside ``LOCAL`` last as long as the server
session, and a pooled connection's session outlives the checkout that changed it: the
next request would run with another tenant's search_path, another user's role (row-level
security keyed on a setting included). So do advisory locks taken with
``pg_advisory_lock`` (not ``pg_advisory_xact_lock``): held by a pooled connection, no
one can release them; temporary tables, sequences and views (tables made without ``ON
COMMIT DROP``): the next user would read their rows, or fail to make its own ("already
exists"); ``LISTEN``: the next user would be sent the channel's notifications;
``PREPARE``: the next user's own fails ("already exists"); and cursors declared ``WITH
HOLD``, which keep their rows on the server. SQLAlchemy's return to the pool rolls back,
which undoes none of it once committed.

Such statements are seen as they are executed. A SET in a transaction lasts only if the
transaction commits (a rollback, or a rollback to a savepoint made before it, undoes it,
as a failed SET is), so a setting counts once its transaction commits, or at once outside
a transaction (autocommit). A connection returned with a setting
still changed is replaced before its next checkout (connect events run again on the new
one); one that took session advisory locks, or left any of the others, has them looked up
as it returns, and released, dropped, closed or deallocated. Each is logged once per kind
and place. ``SET LOCAL`` (what ``db.transaction(statement_timeout=...)`` uses), ``RESET``
and ``DISCARD ALL`` change nothing that outlives the transaction or undo the change.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine, event

from geosession.observe.leaks import capture_stack
from geosession.read.plan import quote_identifier
from geosession.sql_text import statements, without_leading_comments

log = logging.getLogger("geosession.pool")

_LEFT = "geosession_session_state"
"""Connection info key: what the checkout left in the server session (:class:`_Left`)."""


_Change = tuple[str, bool, str]
"""A setting a statement changed (True) or undid (False; "*" for all), and where."""


@dataclass
class _Left:
    """What a checkout's statements left in the server session, and where each was."""

    settings: dict[str, str] = field(default_factory=dict)
    """The settings changed for the session: committed, or set outside a transaction."""
    open: list[tuple[str, list[_Change]]] = field(default_factory=list)
    """The changes of the open transaction ("") and of each savepoint in it, by name: a
    rollback to one undoes its own and those after it, as PostgreSQL does."""
    locked: str | None = None
    """Where it first took a session advisory lock."""
    made: dict[tuple[str, str], str] = field(default_factory=dict)
    """The things it made to outlive its transaction, by (kind, name): see _KINDS."""
    before_commit: dict[str, str] | None = None
    """The settings before the last COMMIT counted its changes, until another transaction
    begins: a COMMIT that fails (a deferred constraint) rolls them back instead."""


@dataclass(frozen=True)
class _Kind:
    """A kind of named thing a statement leaves in the server session, and its undoing."""

    noun: str
    counted: str
    """Its key in :class:`SessionStateCounts`."""
    undo: str
    """The statement that removes one, for its quoted name."""
    done: str
    """What the undoing did, told in the warning."""
    harm: str
    """What the next user of the connection would have met."""
    instead: str
    """What to do instead."""


_KINDS = {  # in the order they are undone: cursors and views before their tables
    "cursor": _Kind(
        "cursor",
        "held_cursors",
        "CLOSE {}",
        "closed",
        'failed to declare one of that name ("already exists"), the server keeping the rows '
        "meanwhile",
        "Close a cursor declared WITH HOLD when done, or read in pages with db.stream",
    ),
    "view": _Kind(
        "temporary view",
        "temporary_views",
        "DROP VIEW IF EXISTS pg_temp.{}",
        "dropped",
        'read from what was left, or failed to make its own ("already exists")',
        "Drop temporary views when done",
    ),
    "table": _Kind(
        "temporary table",
        "temporary_tables",
        "DROP TABLE IF EXISTS pg_temp.{}",
        "dropped",
        'read the rows left, or failed to make its own ("already exists")',
        "Make temporary tables ON COMMIT DROP in the transaction that uses them, or drop "
        "them when done",
    ),
    "sequence": _Kind(
        "temporary sequence",
        "temporary_sequences",
        "DROP SEQUENCE IF EXISTS pg_temp.{}",
        "dropped",
        'drawn numbers on from the last, or failed to make its own ("already exists")',
        "Drop temporary sequences when done",
    ),
    "channel": _Kind(
        "LISTEN channel",
        "listen_channels",
        "UNLISTEN {}",
        "stopped listening to",
        "been sent the channel's notifications (psycopg2 keeps them in connection.notifies, "
        "unread)",
        "LISTEN on a connection of the listener's own, outside the pool (psycopg.connect "
        "or asyncpg.connect, open for as long as it listens), or UNLISTEN before the "
        "connection goes back",
    ),
    "statement": _Kind(
        "prepared statement",
        "prepared_statements",
        "DEALLOCATE {}",
        "deallocated",
        'failed to prepare one of that name ("already exists")',
        "DEALLOCATE a statement PREPAREd in SQL when done (psycopg 3 prepares the "
        "statements a connection runs often by itself: prepare_threshold)",
    ),
}


_COMMAND = re.compile(
    r"\s*(SET|RESET|DISCARD|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE)\b\s*(.*)",
    re.IGNORECASE | re.DOTALL,
)
"""Statements that change settings, and transaction control sent as SQL: SQLAlchemy's
savepoints (begin_nested sends SAVEPOINT, ROLLBACK TO and RELEASE as statements), and a
COMMIT or ROLLBACK in text(), which SQLAlchemy's events never hear of. One match a
statement serves both."""
_CONTROL = frozenset({"COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"})
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
_QUALIFIED = rf"((?:{_IDENTIFIER}\s*\.\s*)?{_IDENTIFIER})"
_SELECT_INTO_TEMP = re.compile(
    r"\s*\w+\b.*?\bINTO\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+"
    rf"(?:UNLOGGED\s+)?(?:TABLE\s+)?{_QUALIFIED}",
    re.IGNORECASE | re.DOTALL,
)
_MADE = {  # by first word, statements that make a thing outliving the transaction
    "CREATE": (
        re.compile(
            r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+"
            r"(?:UNLOGGED\s+)?(TABLE|SEQUENCE|VIEW|RECURSIVE\s+VIEW)\s+"
            rf"(?:IF\s+NOT\s+EXISTS\s+)?{_QUALIFIED}",
            re.IGNORECASE,
        ),
        "",  # the kind is the word before the name
    ),
    "SELECT": (_SELECT_INTO_TEMP, "table"),
    "WITH": (_SELECT_INTO_TEMP, "table"),
    "LISTEN": (re.compile(rf"\s*LISTEN\s+({_IDENTIFIER})", re.IGNORECASE), "channel"),
    "PREPARE": (
        re.compile(rf"\s*PREPARE\s+({_IDENTIFIER})\s*(?:\(|AS\b)", re.IGNORECASE),
        "statement",
    ),
    "DECLARE": (
        re.compile(
            rf"\s*DECLARE\s+({_IDENTIFIER})\s+(?:\w+\s+)*?CURSOR\s+WITH\s+HOLD\b",
            re.IGNORECASE,
        ),
        "cursor",
    ),
}
_STILL_THERE = (  # the things of _KINDS the server session has, by kind and name
    "SELECT CASE WHEN relkind = 'S' THEN 'sequence' WHEN relkind = 'v' THEN 'view' "
    "ELSE 'table' END, relname::text FROM pg_class "
    "WHERE relnamespace = pg_my_temp_schema() AND relkind IN ('r', 'p', 'S', 'v') "
    "UNION ALL SELECT 'channel', pg_listening_channels() "
    "UNION ALL SELECT 'statement', name FROM pg_prepared_statements WHERE from_sql "
    "UNION ALL SELECT 'cursor', name FROM pg_cursors WHERE is_holdable"
)
_ON_COMMIT_DROP = re.compile(r"\bON\s+COMMIT\s+DROP\b", re.IGNORECASE)
_SET_CONFIG_CALL = re.compile(r"\bset_config\s*\(", re.IGNORECASE)
_CAST = re.compile(r"::\s*(?:\w+(?:\s+varying)?|\"[^\"]+\")(?:\s*\(\d+\))?", re.IGNORECASE)
_PYFORMAT = re.compile(r"%\((\w+)\)s")
_NUMBERED = re.compile(r"\$(\d+)")


class SessionStateCounts:
    """What returned connections had left in their server sessions, since the engine was
    made: connections replaced for settings changed, advisory locks released, and the
    things of _KINDS undone, by kind."""

    KINDS = ("settings", "advisory_locks", *(kind.counted for kind in _KINDS.values()))

    def __init__(self) -> None:
        self._counts = dict.fromkeys(self.KINDS, 0)
        self._lock = threading.Lock()

    def add(self, kind: str, count: int = 1) -> None:
        with self._lock:
            self._counts[kind] += count

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        """Back to 0 (a forked child's engines start afresh)."""
        with self._lock:
            self._counts = dict.fromkeys(self.KINDS, 0)


_COUNTS: weakref.WeakKeyDictionary[Engine, SessionStateCounts] = weakref.WeakKeyDictionary()


def guard_session_state(engine: Engine, *, pgbouncer: bool = False) -> None:
    """Watches ``engine``'s statements for session-level settings, advisory locks and the
    named things of _KINDS (see the module), counted in :func:`session_state_counts`.
    Behind PgBouncer only settings are: in transaction pooling the next transaction may
    run on another server session (another client's), where locks and such things cannot
    be looked up."""
    returns = _Returns(look_up=not pgbouncer)
    _COUNTS[engine] = returns.counts
    event.listen(engine, "before_cursor_execute", _seen)
    event.listen(engine, "commit", _committed)  # the driver's: no SQL for _seen to read
    event.listen(engine, "rollback", _rolled_back)
    event.listen(engine, "begin", _began)
    event.listen(engine, "handle_error", _commit_failed)
    event.listen(engine, "reset", returns.reset)


def session_state_counts(engine: Engine) -> SessionStateCounts | None:
    """The counts of ``engine``'s guard (None for an engine geosession did not build)."""
    return _COUNTS.get(engine)


def session_changes(statement: str, params: Any = None) -> list[tuple[str, bool]]:
    """The settings ``statement`` changes for the session: (setting, True) for a change,
    (setting, False) for one it undoes ("*" for all); ``params``: its bound values."""
    return _changes(statement, _COMMAND.match(statement), params)


def _changes(
    statement: str, command: re.Match[str] | None, params: Any = None
) -> list[tuple[str, bool]]:
    changes: list[tuple[str, bool]] = []
    verb, rest = (command.group(1).upper(), command.group(2)) if command else ("", "")
    if verb in ("SET", "RESET", "DISCARD"):
        if verb == "DISCARD":
            changes += [("*", False)] if rest.strip().upper().startswith("ALL") else []
        elif verb == "RESET":
            name = _setting(rest)
            changes += [("*" if name == "all" else name, False)] if name else []
        else:
            changes += _set(rest)
    if "set_config" in statement or "SET_CONFIG" in statement:
        changes += [(name, True) for name in _session_set_configs(statement, params)]
    return changes


def _session_set_configs(statement: str, params: Any) -> list[str]:
    """The settings the statement's ``set_config(name, value, false)`` calls set for the
    session: their arguments literals, or bound (SQLAlchemy's ``func.set_config`` binds
    all three: ``%(set_config_1)s::VARCHAR``, ``$1::VARCHAR`` on asyncpg)."""
    names = []
    for call in _SET_CONFIG_CALL.finditer(statement):
        arguments = _arguments(statement, call.end())
        if len(arguments) != 3:
            continue
        is_local = _value(arguments[2], params)
        if is_local is None or str(is_local).strip().lower() in ("false", "f", "off", "0", "no"):
            name = _value(arguments[0], params)  # not known: counted as a change all the same
            names.append(_unquoted(str(name)) if name is not None else arguments[0].strip())
    return names


def _arguments(statement: str, at: int) -> list[str]:
    """The comma-separated arguments of the call whose ``(`` ends at ``at``."""
    found, depth, start, quoted = [], 0, at, False
    for position in range(at, len(statement)):
        char = statement[position]
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char in ",)" and not depth:
            found.append(statement[start:position])
            start = position + 1
            if char == ")":
                return found
    return []


def _value(argument: str, params: Any) -> Any:
    """An argument's value: a literal's, or a bound parameter's; None when not known."""
    text = _CAST.sub("", argument).strip()
    if text.startswith("'") and text.endswith("'") and len(text) > 1:
        return text[1:-1].replace("''", "'")
    if text.lower() in ("true", "false"):
        return text.lower()
    bound = params[0] if isinstance(params, list) and params else params  # executemany
    if (named := _PYFORMAT.fullmatch(text)) and isinstance(bound, Mapping):
        return bound.get(named.group(1))
    if (numbered := _NUMBERED.fullmatch(text)) and isinstance(bound, list | tuple):
        index = int(numbered.group(1)) - 1
        return bound[index] if 0 <= index < len(bound) else None
    return None


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


def made_things(statement: str) -> list[tuple[str, str]]:
    """The named things of _KINDS ``statement`` makes to outlive its transaction, as
    (kind, name); a temporary table ``ON COMMIT DROP`` is the transaction's own."""
    words = statement[:64].split(None, 1)  # not a copy of a long INSERT's whole text
    made = _MADE.get(words[0].upper()) if words else None
    if made is None:
        return []
    pattern, kind = made
    if pattern is _SELECT_INTO_TEMP and "into" not in statement and "INTO" not in statement:
        return []  # most statements of all: searched only when they have an INTO
    found = pattern.match(statement)
    if found is None:
        return []
    kind = kind or found.group(1).split()[-1].lower()
    if kind == "table" and _ON_COMMIT_DROP.search(statement):
        return []
    return [(kind, _parts(found.groups()[-1])[-1])]  # pg_temp.name: name


def _seen(
    conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
) -> None:
    if ";" in statement or statement.lstrip().startswith(("--", "/*")):  # a comment before
        for piece in statements(statement):  # its SET hid it, and so did a statement before
            _seen_one(conn, without_leading_comments(piece), params)
        return
    _seen_one(conn, statement, params)


def _seen_one(conn: Any, statement: str, params: Any) -> None:
    command = _COMMAND.match(statement)
    verb = command.group(1).upper() if command is not None else ""
    if verb in _CONTROL:
        _controlled(conn, verb, command.group(2) if command is not None else "")
        return
    changes = _changes(statement, command, params)
    locks = "advisory_lock" in statement and _ADVISORY_LOCK.search(statement) is not None
    made = made_things(statement)
    if not (changes or locks or made):
        return
    left: _Left = conn.info.setdefault(_LEFT, _Left())
    if locks and left.locked is None:
        left.locked = _where()
    for thing in made:
        left.made.setdefault(thing, _where())
    if not changes:
        return
    where = _where()
    done = [(name, change, where) for name, change in changes]
    if getattr(conn.connection.dbapi_connection, "autocommit", False):
        _apply(left.settings, done)  # no transaction to undo them
    else:
        if not left.open:
            left.open.append(("", []))
        left.open[-1][1].extend(done)


_TO_SAVEPOINT = re.compile(
    rf"(?:(?:WORK|TRANSACTION)\s+)?TO\s+(?:SAVEPOINT\s+)?({_IDENTIFIER})", re.IGNORECASE
)


def _controlled(conn: Any, verb: str, rest: str) -> None:
    """COMMIT, ROLLBACK [TO], SAVEPOINT or RELEASE sent as SQL (not COMMIT PREPARED or
    ROLLBACK PREPARED, which end another, prepared transaction)."""
    if _prepared(rest):
        return
    if verb in ("COMMIT", "END"):
        _committed(conn)
    elif verb == "SAVEPOINT":
        _savepoint(conn, _unquoted(rest.strip().rstrip(";")))
    elif verb == "RELEASE":
        name = re.sub(r"^SAVEPOINT\s+", "", rest.strip().rstrip(";"), flags=re.IGNORECASE)
        _released(conn, _unquoted(name))
    else:  # ROLLBACK or ABORT, to a savepoint or not
        to = _TO_SAVEPOINT.match(rest)
        if to is None:
            _rolled_back(conn)
        else:
            _rolled_back_to(conn, _unquoted(to.group(1)))


def _apply(settings: dict[str, str], changes: list[_Change]) -> None:
    """Changes made for good: a setting keeps the place where it was first changed."""
    for name, change, where in changes:
        if not change and name == "*":
            settings.clear()
        elif not change:
            settings.pop(name, None)
        elif name not in settings:
            settings[name] = where


def _open_left(conn: Any) -> _Left | None:
    """What the checkout left so far; None on a connection invalidated (a lost server
    session keeps nothing, and asking for its info would try to reconnect)."""
    if conn.invalidated or conn.closed:
        return None
    left: _Left | None = conn.info.get(_LEFT)
    return left


def _committed(conn: Any) -> None:
    left = _open_left(conn)
    if left is not None:
        left.before_commit = dict(left.settings)
        for _, changes in left.open:
            _apply(left.settings, changes)
        left.open.clear()


def _commit_failed(context: Any) -> None:
    """A COMMIT that failed without losing the connection (a deferred constraint's
    violation) rolled its transaction back, SETs included: the settings are as before."""
    conn, statement = context.connection, context.statement
    if conn is None or context.is_disconnect:
        return  # the server session is gone, and all it had
    command = _COMMAND.match(statement) if statement is not None else None
    if statement is not None and (command is None or not _is_commit(command)):
        return  # a statement's error (a commit's has none, or is COMMIT sent as SQL)
    left = _open_left(conn)
    if left is not None and left.before_commit is not None:
        left.settings, left.before_commit = left.before_commit, None


def _is_commit(command: re.Match[str]) -> bool:
    return command.group(1).upper() in ("COMMIT", "END") and not _prepared(command.group(2))


def _prepared(rest: str) -> bool:
    """COMMIT PREPARED or ROLLBACK PREPARED: another, prepared transaction's end."""
    return rest[:8].upper() == "PREPARED"


def _began(conn: Any) -> None:
    """A new transaction: the last COMMIT succeeded."""
    left = _open_left(conn)
    if left is not None:
        left.before_commit = None


def _rolled_back(conn: Any) -> None:
    """A SET in a transaction that rolls back is undone with it (a failed SET too)."""
    left = _open_left(conn)
    if left is not None:
        left.open.clear()
        left.before_commit = None


def _savepoint(conn: Any, name: str) -> None:
    left: _Left = conn.info.setdefault(_LEFT, _Left())
    if not left.open:
        left.open.append(("", []))
    left.open.append((name, []))


def _rolled_back_to(conn: Any, name: str) -> None:
    """ROLLBACK TO SAVEPOINT undoes the changes since, releases the later savepoints and
    keeps this one (it can be rolled back to again)."""
    left = _open_left(conn)
    if left is not None and (level := _level(left, name)) < len(left.open):
        del left.open[level:]
        left.open.append((name, []))


def _released(conn: Any, name: str) -> None:
    """RELEASE SAVEPOINT: its changes (and later ones') are the enclosing level's."""
    left = _open_left(conn)
    if left is None:
        return
    level = _level(left, name)
    if level > 0:
        for _, changes in left.open[level:]:
            left.open[level - 1][1].extend(changes)
        del left.open[level:]


def _level(left: _Left, name: str) -> int:
    """The index of the latest savepoint ``name`` among the open levels (len if none)."""
    names = [level for level, _ in left.open]
    return len(names) - 1 - names[::-1].index(name) if name in names[1:] else len(names)


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
        self.counts = SessionStateCounts()

    def reset(self, dbapi_connection: Any, record: Any, state: Any) -> None:
        """A checkout that changed settings has its connection replaced before the next
        (soft invalidation: SQLAlchemy reconnects at the next checkout, connect events
        included); one that took session advisory locks or left things of _KINDS has
        them looked up, and released or undone (rolled back first: its transaction may
        have failed)."""
        left: _Left | None = record.info.pop(_LEFT, None) if record is not None else None
        if left is None:
            return
        if left.settings:
            record.invalidate(soft=True)
            self.counts.add("settings")
            self._tell_changed(left.settings)
        if not (left.locked or left.made) or not self._look_up:
            return
        if state.terminate_only or not state.asyncio_safe:
            return  # a connection being closed loses all its session has
        dbapi_connection.rollback()
        if left.locked is not None:
            self._release_locks(dbapi_connection, left.locked)
        if left.made:
            self._undo(dbapi_connection, left.made)

    def _release_locks(self, dbapi_connection: Any, where: str) -> None:
        ((count, _),) = _fetch(dbapi_connection, _HELD_AND_RELEASED)
        held = int(count)
        self.counts.add("advisory_locks", held)
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

    def _undo(self, dbapi_connection: Any, made: dict[tuple[str, str], str]) -> None:
        """Undoes the things the checkout made that its session still has, kind by kind."""
        present = {(str(kind), str(name)) for kind, name in _fetch(dbapi_connection, _STILL_THERE)}
        order = list(_KINDS)
        kept = sorted(
            (thing for thing in made if thing in present), key=lambda t: order.index(t[0])
        )
        if not kept:
            return
        for kind, name in kept:
            _fetch(dbapi_connection, _KINDS[kind].undo.format(quote_identifier(name)), rows=False)
        dbapi_connection.commit()
        for kind, things in itertools.groupby(kept, key=itemgetter(0)):
            where = {name: made[kind, name] for _, name in things}
            self.counts.add(_KINDS[kind].counted, len(where))
            told = {name: at for name, at in where.items() if self._first((f"{kind} {name}", at))}
            if told:
                self._tell_undone(_KINDS[kind], told)

    def _tell_undone(self, kind: _Kind, undone: dict[str, str]) -> None:
        one = len(undone) == 1
        log.warning(
            "A pooled connection came back with %s%s %s in its session: its next user would "
            "have %s, so geosession %s %s. %s",
            kind.noun,
            "" if one else "s",
            ", ".join(f"{name} (made at {where})" for name, where in undone.items()),
            kind.harm,
            kind.done,
            "it" if one else "them",
            kind.instead,
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
            "db.transaction(settings={'%s': ...}), db.session(settings=...) for each of "
            "a session's transactions (db.stream takes settings= too), or SET LOCAL in a "
            "transaction; for every connection, server_settings={...} "
            "(GEOSESSION_SERVER_SETTINGS)",
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
