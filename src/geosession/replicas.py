"""Reads on streaming replicas: an engine per replica, and which one answers next.

Asked for a replica connection, each replica is tried in turn (the next call starts at
the next one, spreading reads); one that cannot be reached (down, restarting, out of
connection slots) is logged and passed over, and left alone for ``RETRY_AFTER`` seconds
(so that reads do not each wait for a host that does not answer); when none answers the
primary serves the read. With ``replica_max_lag``, a replica whose replay trails the WAL
it received by more (``now() - pg_last_xact_replay_timestamp()`` while the two differ:
at most that, since the primary's quiet time before its next commit counts too) is
passed over the same way, asked at most once a second, and so is a server in the list
that is no standby. Replica connections are read
only wherever they land, so code written for a replica fails the same way on the
primary when it tries to write. A standby that receives no WAL from the primary (cut off
from it, or fed from an archive) replays all it has and so looks current however old
its data: with ``replica_max_lag`` it is passed over too. Engines are made on first use
with the primary's settings, pool sizes included, per replica.

Read your writes (``read_your_writes``, on by default): a transaction on the primary that
wrote marks its thread or asyncio task (a context variable) when it commits. The next
replica read there asks the primary how far its WAL has gone, and reads on a replica that
has replayed that far (each replica asked once), else on the primary; so a request that
wrote and then reads on a replica sees its own writes, and others read on replicas as
before.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from geosession.engine import build_async_engine, build_engine
from geosession.errors import ConfigurationError, ConnectionFailed
from geosession.event_loops import connected
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
_LAG = text(f"SELECT {LAG_SQL}, {RECEIVING_SQL}, pg_is_in_recovery()")

_PRIMARY_LSN = text("SELECT pg_current_wal_lsn()::text")
_REPLAYED = text(  # the LSN travels as text: asyncpg would want an integer for a pg_lsn
    "SELECT coalesce(pg_last_wal_replay_lsn() >= CAST(CAST(:lsn AS text) AS pg_lsn), true)"
)
"""Whether a replica has replayed the primary's WAL up to ``lsn`` (true on a primary)."""
_READS = re.compile(
    r"\s*(?:SELECT|SHOW|VALUES|TABLE|EXPLAIN|FETCH|DECLARE|CLOSE|MOVE|SET|RESET|BEGIN|START|"
    r"COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|PREPARE|DEALLOCATE|DISCARD|LISTEN|UNLISTEN)\b",
    re.IGNORECASE,
)
"""Statements that change no data: any other (INSERT ... and WITH, which may) is a write."""
_WROTE = "geosession.wrote"
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


@dataclass(frozen=True)
class Written:
    """A write this context committed: the primary's WAL position once a replica read
    asked it, and the replicas seen to have replayed that far."""

    lsn: str | None = None
    replayed: frozenset[int] = frozenset()


@dataclass
class ReadAfter:
    """The writes one read (or each page of one stream) must see, kept as replicas are
    asked: a stream's pages ask the primary and each replica once, not every page."""

    written: Written | None


def _note_write(
    conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
) -> None:
    if not _READS.match(statement):
        conn.info[_WROTE] = True


def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_WROTE, None)


E = TypeVar("E", Engine, AsyncEngine)


class Replicas:
    """The replicas of one database's settings (none when ``replica_urls`` is empty)."""

    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        on_engine: Callable[[Engine], None],
        exhausted: Callable[[Engine], Exception],
        primary: Callable[[], Engine],
        async_primary: Callable[[], AsyncEngine],
    ) -> None:
        """``on_engine`` is called with each engine made (an async one's ``sync_engine``),
        to watch its pool; ``exhausted(engine)`` is the error raised when a replica's pool
        has no connection to lend within pool_timeout (a busy replica is not passed over:
        its load would move to the primary). ``primary`` and ``async_primary`` give the
        primary's engines, asked how far its WAL has gone for read your writes."""
        self.settings = [settings.for_replica(n) for n in range(len(settings.replica_urls))]
        self._on_engine = on_engine
        self._exhausted = exhausted
        self._engines: dict[int, Engine] = {}
        self._async_engines: dict[int, AsyncEngine] = {}
        self._unpooled_async_engines: dict[int, AsyncEngine] = {}  # for loops beside the pool's
        self._turns = itertools.count()
        self._lock = threading.Lock()
        self._down_until: dict[int, float] = {}
        self._lag_asked: dict[int, float] = {}
        self.max_lag = settings.replica_max_lag
        self.read_your_writes = settings.read_your_writes and bool(settings.replica_urls)
        self._primary = primary
        self._async_primary = async_primary
        self._written: ContextVar[Written | None] = ContextVar(
            f"geosession_written_{id(self)}", default=None
        )
        """This database's writes, per thread and task (another database's are not)."""

    def watch_writes(self, engine: Engine) -> None:
        """Marks the context when a transaction on ``engine`` (the primary) that wrote
        commits (without read your writes, nothing)."""
        if not self.read_your_writes:
            return
        event.listen(engine, "after_cursor_execute", _note_write)
        event.listen(engine, "commit", self._on_commit)
        event.listen(engine, "rollback", _on_rollback)

    def mark_written(self) -> None:
        """This context wrote to the primary (also by a way the engine does not see: the
        ingest's own connections)."""
        if self.read_your_writes:
            self._written.set(Written())

    def position(self) -> str:
        """The primary's WAL position now: past every write committed so far."""
        with self._primary().connect() as primary:
            return str(primary.execute(_PRIMARY_LSN).scalar_one())

    async def async_position(self) -> str:
        """The async twin of :meth:`position`."""
        async with self._async_primary().connect() as primary:
            return str((await primary.execute(_PRIMARY_LSN)).scalar_one())

    @contextmanager
    def reads_after(self, position: str | None) -> Iterator[None]:
        """Replica reads in the block go where ``position`` has been replayed (None: as
        they would, for a client that has written nothing)."""
        if position is None:
            yield
            return
        if not isinstance(position, str) or not _LSN.match(position):
            raise ConfigurationError(
                f"{position!r} is not a WAL position: give what db.write_position() returned "
                "(two hexadecimal numbers, as '16/B374D848')"
            )
        token = self._written.set(Written(position))
        try:
            yield
        finally:
            self._written.reset(token)

    def _on_commit(self, conn: Connection) -> None:
        if conn.info.pop(_WROTE, False):
            self.mark_written()

    def read_after(self) -> ReadAfter:
        """What a read asked for now must see: this context's writes."""
        return ReadAfter(self._written.get())

    def connect(self, after: ReadAfter) -> Connection | None:
        """A read-only connection to the next replica that answers (and has replayed
        ``after``'s writes); None when none does."""
        written = after.written
        if written is not None and written.lsn is None:
            with self._primary().connect() as primary:
                lsn = primary.execute(_PRIMARY_LSN).scalar_one()
                written = after.written = self._kept(written, Written(lsn))
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
                    lag, receiving, standby = connection.execute(_LAG).one()
                    connection.rollback()  # the session begins its own transaction
                    if self._behind(number, lag, receiving, standby):
                        connection.close()
                        continue
                if written is not None and number not in written.replayed:
                    replayed = connection.execute(_REPLAYED, {"lsn": written.lsn}).scalar()
                    connection.rollback()
                    if not self._has_replayed(number, bool(replayed), after):
                        connection.close()
                        continue
            except ConnectionFailed as error:  # lost while asked its lag
                connection.close()
                self._passed_over(number, error)
                continue
            return connection
        return None

    async def async_connect(self, after: ReadAfter, *, pooled: bool) -> AsyncConnection | None:
        """The async twin of :meth:`connect`; ``pooled`` False for a loop beside the one the
        pools serve (see ``event_loops``)."""
        written = after.written
        if written is not None and written.lsn is None:
            async with self._async_primary().connect() as primary:
                lsn = (await primary.execute(_PRIMARY_LSN)).scalar_one()
                written = after.written = self._kept(written, Written(lsn))
        for number in self._order():
            engine = self._async_engine(number, pooled=pooled)
            try:
                connection = await connected(engine, pooled=pooled)
            except ConnectionFailed as error:
                self._passed_over(number, error)
                continue
            except sa_exc.TimeoutError as error:
                raise self._exhausted(engine.sync_engine) from error
            try:
                await connection.execution_options(**READ_ONLY)
                if self._lag_due(number):
                    lag, receiving, standby = (await connection.execute(_LAG)).one()
                    await connection.rollback()
                    if self._behind(number, lag, receiving, standby):
                        await connection.close()
                        continue
                if written is not None and number not in written.replayed:
                    replayed = (await connection.execute(_REPLAYED, {"lsn": written.lsn})).scalar()
                    await connection.rollback()
                    if not self._has_replayed(number, bool(replayed), after):
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
        return [*self._async_engines.values(), *self._unpooled_async_engines.values()]

    def _order(self) -> list[int]:
        """The replicas to try, from the next in turn; none that failed lately."""
        count = len(self.settings)
        start = next(self._turns) % count if count else 0
        now = time.monotonic()
        turn = [(start + offset) % count for offset in range(count)]
        return [number for number in turn if self._down_until.get(number, 0.0) <= now]

    def _async_engine(self, number: int, *, pooled: bool) -> AsyncEngine:
        """Replica ``number``'s pooled async engine, or the one without a pool for loops
        beside the pooled one's."""
        engines = self._async_engines if pooled else self._unpooled_async_engines
        return self._engine(engines, number, functools.partial(build_async_engine, pooled=pooled))

    def _engine(
        self, engines: dict[int, E], number: int, build: Callable[[DatabaseSettings], E]
    ) -> E:
        with self._lock:
            if number not in engines:
                engine = engines[number] = build(self.settings[number])
                self._on_engine(engine.sync_engine if isinstance(engine, AsyncEngine) else engine)
            return engines[number]

    def _kept(self, old: Written, new: Written) -> Written:
        """``new`` in place of ``old``, also for this context's next reads when ``old`` is
        this context's (a stream may read in another)."""
        if self._written.get() is old:
            self._written.set(new)
        return new

    def _has_replayed(self, number: int, replayed: bool, after: ReadAfter) -> bool:
        """Whether replica ``number`` has replayed ``after``'s writes; kept when it has."""
        written = after.written
        if replayed and written is not None:
            after.written = self._kept(
                written, replace(written, replayed=written.replayed | {number})
            )
        elif not replayed:
            log.debug(
                "replica %s has not replayed this context's writes yet, so this read goes to "
                "the next (the primary when none has)",
                self.settings[number].safe_url(),
            )
        return replayed

    def _lag_due(self, number: int) -> bool:
        """Whether to ask replica ``number`` its lag now (never without replica_max_lag)."""
        return self.max_lag is not None and (
            time.monotonic() - self._lag_asked.get(number, float("-inf")) >= LAG_EVERY
        )

    def _behind(self, number: int, lag: Any, receiving: bool, standby: bool) -> bool:
        """Whether ``lag`` seconds is more than replica_max_lag, or the replica's lag cannot
        be told (a standby receiving no WAL, or no standby at all: a promoted replica, the
        primary listed); such a replica is passed over until asked again."""
        now = time.monotonic()
        self._lag_asked[number] = now
        if self.max_lag is None:
            return False
        if standby and receiving and (lag is None or float(lag) <= self.max_lag):
            return False
        self._down_until[number] = now + LAG_EVERY
        if not standby:
            why = (
                "is no standby (pg_is_in_recovery() is false: a promoted replica, or the "
                "primary listed in replica_urls): its lag cannot be told"
            )
        elif receiving:  # the age of its last replayed commit: an idle primary's time too
            why = f"is up to {float(lag):.1f} s behind (replica_max_lag is {self.max_lag:g} s)"
        else:
            why = "receives no WAL from the primary, so its data may be of any age"
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
