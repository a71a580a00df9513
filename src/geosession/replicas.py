"""Reads on streaming replicas: an engine per replica, and which one answers next.

Asked for a replica connection, each replica is tried in turn (the next call starts at
the next one, spreading reads); one that cannot be reached (down, restarting, out of
connection slots) is logged and passed over, and left alone for ``RETRY_AFTER`` seconds
(so that reads do not each wait for a host that does not answer); when none answers the
primary serves the read. Replica connections are read only wherever they land, so code written for a
replica fails the same way on the primary when it tries to write. Engines are made on
first use with the primary's settings, pool sizes included, per replica.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from geosession.engine import build_async_engine, build_engine
from geosession.errors import ConnectionFailed
from geosession.settings import DatabaseSettings

log = logging.getLogger(__name__)

READ_ONLY = {"postgresql_readonly": True}
"""Execution options of every replica connection (and of the primary standing in)."""

RETRY_AFTER = 5.0
"""Seconds a replica that could not be reached is passed over without being tried."""

E = TypeVar("E", Engine, AsyncEngine)


class Replicas:
    """The replicas of one database's settings (none when ``replica_urls`` is empty)."""

    def __init__(
        self, settings: DatabaseSettings, on_engine: Callable[[Engine], None] = lambda _: None
    ) -> None:
        """``on_engine`` is called with each engine made (an async one's ``sync_engine``),
        to watch its pool."""
        self.settings = [settings.for_replica(n) for n in range(len(settings.replica_urls))]
        self._on_engine = on_engine
        self._engines: dict[int, Engine] = {}
        self._async_engines: dict[int, AsyncEngine] = {}
        self._turns = itertools.count()
        self._lock = threading.Lock()
        self._down_until: dict[int, float] = {}

    def __bool__(self) -> bool:
        return bool(self.settings)

    def connect(self) -> Connection | None:
        """A read-only connection to the next replica that answers; None when none does."""
        for number in self._order():
            engine = self._engine(self._engines, number, build_engine)
            try:
                return engine.connect().execution_options(**READ_ONLY)
            except ConnectionFailed as error:
                self._passed_over(number, error)
        return None

    async def async_connect(self) -> AsyncConnection | None:
        """The async twin of :meth:`connect`."""
        for number in self._order():
            engine = self._engine(self._async_engines, number, build_async_engine)
            try:
                connection = await engine.connect()
            except ConnectionFailed as error:
                self._passed_over(number, error)
                continue
            return await connection.execution_options(**READ_ONLY)
        return None

    def engines(self) -> list[Engine]:
        """The sync engines made so far (for pool statistics and disposal)."""
        return list(self._engines.values())

    def async_engines(self) -> list[AsyncEngine]:
        return list(self._async_engines.values())

    def _order(self) -> list[int]:
        """The replicas to try, from the next in turn; none that failed lately."""
        count = len(self.settings)
        start = next(self._turns) % count if count else 0
        now = time.monotonic()
        turn = [(start + offset) % count for offset in range(count)]
        return [number for number in turn if self._down_until.get(number, 0.0) <= now]

    def _engine(
        self, engines: dict[int, E], number: int, build: Callable[[DatabaseSettings], E]
    ) -> E:
        with self._lock:
            if number not in engines:
                engine = engines[number] = build(self.settings[number])
                self._on_engine(engine.sync_engine if isinstance(engine, AsyncEngine) else engine)
            return engines[number]

    def _passed_over(self, number: int, error: ConnectionFailed) -> None:
        self._down_until[number] = time.monotonic() + RETRY_AFTER
        log.warning(
            "replica %s cannot be reached, so reads go to the next (the primary when none "
            "answers) and it is tried again in %.0f s: %s",
            self.settings[number].safe_url(),
            RETRY_AFTER,
            error,
        )
