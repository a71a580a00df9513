"""Reads on streaming replicas: an engine per replica, and which one answers next.

Asked for a replica connection, each replica is tried in turn (the next call starts at
the next one, spreading reads); one that cannot be reached (down, restarting, out of
connection slots) is logged and passed over, and left alone for ``RETRY_AFTER`` seconds
(so that reads do not each wait for a host that does not answer); when none answers the
primary serves the read. With ``replica_max_lag``, a replica whose replay trails the WAL
it received by more (``now() - pg_last_xact_replay_timestamp()`` while the two differ)
is passed over the same way, asked at most once a second. Replica connections are read
only wherever they land, so code written for a replica fails the same way on the
primary when it tries to write. A standby that receives no WAL from the primary (cut off
from it, or fed from an archive) replays all it has and so looks current however old
its data: with ``replica_max_lag`` it is passed over too. Engines are made on first use
with the primary's settings, pool sizes included, per replica.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from geosession.engine import build_async_engine, build_engine
from geosession.errors import ConnectionFailed
from geosession.settings import DatabaseSettings

log = logging.getLogger(__name__)

READ_ONLY = {"postgresql_readonly": True}
"""Execution options of every replica connection (and of the primary standing in)."""

RETRY_AFTER = 5.0
"""Seconds a replica that could not be reached is passed over without being tried."""
LAG_EVERY = 1.0
"""Seconds between two questions to a replica about its lag."""
LAG_SQL = (
    "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END"
)
"""Seconds a standby's replay trails the WAL it received (0 when it has replayed it all)."""
RECEIVING_SQL = (
    "EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE coalesce(status, 'streaming') = 'streaming')"
)
"""Whether a standby streams WAL from the primary (a role without pg_read_all_stats sees
the receiver's row, not its status)."""
_LAG = text(f"SELECT {LAG_SQL}, NOT pg_is_in_recovery() OR {RECEIVING_SQL}")

E = TypeVar("E", Engine, AsyncEngine)


class Replicas:
    """The replicas of one database's settings (none when ``replica_urls`` is empty)."""

    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        on_engine: Callable[[Engine], None],
        exhausted: Callable[[Engine], Exception],
    ) -> None:
        """``on_engine`` is called with each engine made (an async one's ``sync_engine``),
        to watch its pool; ``exhausted(engine)`` is the error raised when a replica's pool
        has no connection to lend within pool_timeout (a busy replica is not passed over:
        its load would move to the primary)."""
        self.settings = [settings.for_replica(n) for n in range(len(settings.replica_urls))]
        self._on_engine = on_engine
        self._exhausted = exhausted
        self._engines: dict[int, Engine] = {}
        self._async_engines: dict[int, AsyncEngine] = {}
        self._turns = itertools.count()
        self._lock = threading.Lock()
        self._down_until: dict[int, float] = {}
        self._lag_asked: dict[int, float] = {}
        self.max_lag = settings.replica_max_lag

    def connect(self) -> Connection | None:
        """A read-only connection to the next replica that answers; None when none does."""
        for number in self._order():
            engine = self._engine(self._engines, number, build_engine)
            try:
                connection = engine.connect().execution_options(**READ_ONLY)
            except ConnectionFailed as error:
                self._passed_over(number, error)
                continue
            except sa_exc.TimeoutError as error:
                raise self._exhausted(engine) from error
            try:
                if self._lag_due(number):
                    lag, receiving = connection.execute(_LAG).one()
                    connection.rollback()  # the session begins its own transaction
                    if self._behind(number, lag, receiving):
                        connection.close()
                        continue
            except ConnectionFailed as error:  # lost while asked its lag
                connection.close()
                self._passed_over(number, error)
                continue
            return connection
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
            except sa_exc.TimeoutError as error:
                raise self._exhausted(engine.sync_engine) from error
            try:
                await connection.execution_options(**READ_ONLY)
                if self._lag_due(number):
                    lag, receiving = (await connection.execute(_LAG)).one()
                    await connection.rollback()
                    if self._behind(number, lag, receiving):
                        await connection.close()
                        continue
            except ConnectionFailed as error:
                await connection.close()
                self._passed_over(number, error)
                continue
            return connection
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

    def _lag_due(self, number: int) -> bool:
        """Whether to ask replica ``number`` its lag now (never without replica_max_lag)."""
        return self.max_lag is not None and (
            time.monotonic() - self._lag_asked.get(number, float("-inf")) >= LAG_EVERY
        )

    def _behind(self, number: int, lag: Any, receiving: bool) -> bool:
        """Whether ``lag`` seconds is more than replica_max_lag, or the replica receives no
        WAL (its lag cannot be told); such a replica is passed over until asked again."""
        now = time.monotonic()
        self._lag_asked[number] = now
        if self.max_lag is None:
            return False
        if receiving and (lag is None or float(lag) <= self.max_lag):
            return False
        self._down_until[number] = now + LAG_EVERY
        why = (
            f"is {float(lag):.1f} s behind (replica_max_lag is {self.max_lag:g} s)"
            if receiving
            else "receives no WAL from the primary, so its data may be of any age"
        )
        log.warning(
            "replica %s %s, so reads go to the next (the primary when none answers) and it "
            "is asked again in %.0f s",
            self.settings[number].safe_url(),
            why,
            LAG_EVERY,
        )
        return True

    def _passed_over(self, number: int, error: ConnectionFailed) -> None:
        self._down_until[number] = time.monotonic() + RETRY_AFTER
        log.warning(
            "replica %s cannot be reached, so reads go to the next (the primary when none "
            "answers) and it is tried again in %.0f s: %s",
            self.settings[number].safe_url(),
            RETRY_AFTER,
            error,
        )
