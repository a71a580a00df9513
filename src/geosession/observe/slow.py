"""Slow-statement logging: a WARNING for every statement slower than a threshold.

Engine events ``before_cursor_execute`` / ``after_cursor_execute`` time each statement on
the client (network and driver included). The log names the server and shows the SQL,
shortened, never its parameters (they may hold personal data or passwords). Nothing is
installed without a threshold.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine, event

from geosession.errors import endpoint_of

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
        self._lock = threading.Lock()

    def attach(self, engine: Engine) -> None:
        if self.threshold is None:
            return
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if context is not None:
            context.geosession_started = time.perf_counter()

    def _after(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
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
            "Slow statement: %.3fs (slow_query_threshold=%gs) on %s: %s",
            seconds,
            threshold,
            endpoint_of(conn.engine),
            shorten(statement),
        )
