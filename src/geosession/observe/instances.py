"""A warning when one process keeps many SpatialDatabase objects of one database alive.

Each SpatialDatabase owns its pools. One made per request or per task, instead of one
made at start-up and shared, keeps its connections open until the garbage collector
finds it (its engines and listeners refer to each other, so it outlives the request),
and under load the server runs out of connections. When ``MANY`` of them for one URL
are alive and not disposed, the ``geosession.pool`` logger says so once, naming the code
that made the last one; it says so again only after their number fell below ``MANY``.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from geosession.observe.leaks import capture_stack

logger = logging.getLogger("geosession.pool")

MANY = 10
"""Live databases of one URL that make the warning."""

_alive: dict[str, weakref.WeakSet[Any]] = {}
_warned: set[str] = set()
_lock = threading.Lock()


def count_database(database: Any, url: str, connections: int) -> None:
    """Counts a new ``database`` of ``url`` (shown without its password), whose pool may
    hold up to ``connections``; warns when there are ``MANY``."""
    with _lock:
        alive = _alive.setdefault(url, weakref.WeakSet())
        alive.add(database)
        count = len(alive)
        if count < MANY:  # fewer now, disposed or collected: the next MANY warn again
            _warned.discard(url)
            return
        if url in _warned:
            return
        _warned.add(url)
    made = capture_stack(limit=1)
    where = f", the last made at {made[0][0]}:{made[0][1]} in {made[0][2]}" if made else ""
    logger.warning(
        "%d SpatialDatabase objects for %s are alive in this process%s, each with pools of "
        "its own (up to %d connections each): make one when the application starts and "
        "share it, and dispose() one that is no longer needed; one made per request keeps "
        "its connections open until the garbage collector finds it",
        count,
        url,
        where,
        connections,
    )


def forget_database(database: Any, url: str) -> None:
    """``database`` was disposed: it no longer counts."""
    with _lock:
        alive = _alive.get(url)
        if alive is not None:
            alive.discard(database)
