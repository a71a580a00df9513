"""Slow-statement logging: a WARNING for every statement slower than a threshold.

Engine events ``before_cursor_execute`` / ``after_cursor_execute`` (``handle_error`` for
one that failed) time each statement on the client (network and driver included). The
log names the server and shows the SQL, shortened, never its parameters (they may hold
personal data or passwords). Session events ``before_flush`` / ``after_flush_postexec``
time each ORM flush the same way: a flush of many objects is slow in many statements
none of which is slow alone. Nothing is installed without a threshold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from geosession.errors import endpoint_of
from geosession.observe.leaks import capture_stack

logger = logging.getLogger("geosession.slow")

_MAX_SQL = 1000


def shorten(sql: str, limit: int = _MAX_SQL) -> str:
    """``sql`` on one line, cut to ``limit`` characters."""
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class SlowQueryLog:
    """Counts and logs statements slower than ``threshold`` seconds."""

    def __init__(self, threshold: float | None) -> None:
        self.threshold = threshold
        self.count = 0
        """Slow statements seen so far."""
        self.flushes = 0
        """Slow ORM flushes seen so far."""
        self._lock = threading.Lock()

    def attach(self, engine: Engine) -> None:
        if self.threshold is None:
            return
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "handle_error", self._failed)

    def _before(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if context is not None:
            context.geosession_started = time.perf_counter()

    def _after(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        self._timed(context, conn.engine, statement, "")

    def _failed(self, context: Any) -> None:
        """A statement that failed once slow (cancelled by statement_timeout, an error at
        its end) was slow all the same: the after event never comes for it."""
        if not context.is_pre_ping and context.statement is not None:
            failed = type(context.original_exception).__name__
            self._timed(context.execution_context, context.engine, context.statement, failed)

    def _timed(self, context: Any, engine: Engine | None, statement: str, failed: str) -> None:
        started = getattr(context, "geosession_started", None)
        threshold = self.threshold
        if started is None or threshold is None:
            return
        seconds = time.perf_counter() - started
        if seconds < threshold:
            return
        with self._lock:
            self.count += 1
        logger.warning(
            "Slow statement: %.3fs (slow_query_threshold=%gs)%s on %s: %s",
            seconds,
            threshold,
            f", failed ({failed})," if failed else "",
            endpoint_of(engine),
            shorten(statement),
        )

    def watch_flushes(self, factory: sessionmaker[Session]) -> None:
        """Times the flushes of ``factory``'s sessions (and of async sessions made with
        ``sync_session_class=factory.class_``)."""
        if self.threshold is None:
            return
        event.listen(factory, "before_flush", _flush_starts)
        event.listen(factory, "after_flush_postexec", self._flushed)

    def _flushed(self, session: Session, context: Any) -> None:
        started = session.info.pop(_FLUSH, None)
        threshold = self.threshold
        if started is None or threshold is None:
            return
        seconds = time.perf_counter() - started[0]
        if seconds < threshold:
            return
        with self._lock:
            self.flushes += 1
        objects: Counter[tuple[str, str]] = started[1]
        total = objects.total()
        new = sum(count for (_, kind), count in objects.items() if kind == "new")
        listed = "; ".join(
            f"{name}: "
            + ", ".join(f"{n:,} {kind}" for (of, kind), n in objects.items() if of == name)
            for name in dict.fromkeys(name for name, _ in objects)
        )
        where = capture_stack(1)
        logger.warning(
            "Slow flush: %.3fs (slow_query_threshold=%gs) of %s object%s (%s) on %s, from %s%s",
            seconds,
            threshold,
            f"{total:,}",
            "" if total == 1 else "s",
            listed or "none",
            endpoint_of(_engine_of(session)),
            f"{where[0][0]}:{where[0][1]} in {where[0][2]}" if where else "an unknown place",
            _BULK_ADVICE if new >= _BULK else "",
        )


_FLUSH = "geosession_flush"
"""session.info key: when the flush began, and its objects by class and kind."""
_BULK = 1_000
"""New objects in one flush from which the advice to load them by COPY is given."""
_BULK_ADVICE = (
    ": the ORM inserts objects a statement or a batch of rows at a time; a bulk load "
    "goes many times faster through db.ingest (binary COPY)"
)


def _flush_starts(session: Session, context: Any, instances: Any) -> None:
    objects: Counter[tuple[str, str]] = Counter()
    for kind, states in (
        ("new", session.new),
        ("changed", session.dirty),
        ("deleted", session.deleted),
    ):
        objects.update((type(obj).__name__, kind) for obj in states)
    session.info[_FLUSH] = (time.perf_counter(), objects)


def _engine_of(session: Session) -> Engine | None:
    bind = session.bind
    return bind if isinstance(bind, Engine) else None
