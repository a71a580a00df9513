"""Pool metrics as SQLAlchemy pool event listeners, plus the time spent waiting for a connection.

The pool's own events (``checkout``, ``checkin``, ``connect``, ``invalidate``,
``soft_invalidate``, ``detach``) feed counters and the :class:`HoldTracker`; each listener
is a few dict and integer operations. ``benchmarks/pool_overhead.py`` measures the cost.

Waiting has no pool event: SQLAlchemy fires ``checkout`` only once a connection has been
obtained (and pre-pinged). The wait is therefore timed where every engine connection is
acquired: ``Engine.raw_connection()``, which ``Connection`` calls for every sync checkout
and, inside SQLAlchemy's greenlet, for every asyncio checkout too. The monitor replaces it,
on this engine instance only, with a wrapper that takes the time around the original
(``pool.connect()``); the pool itself is untouched. Engine.dispose() replaces the pool, not
the engine, so the wrapper and the pool listeners (carried over by ``Pool.recreate``) keep
working. A checkout counts as a *wait* when, as it starts, no connection is idle and no
overflow slot is free, so it must block until a connection is returned (or pool_timeout);
its duration is then the wait time. Every acquisition's duration also feeds a histogram
(``geosession_pool_checkout_wait_seconds`` in the Prometheus exporter). Connections taken
with ``engine.pool.connect()`` directly, or through ``engine.execution_options()`` copies,
are counted by the events but not timed.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import QueuePool

from geosession.errors import endpoint_of
from geosession.observe.leaks import HoldTracker
from geosession.observe.pool import PoolStats, pool_stats
from geosession.observe.slow import SlowQueryLog
from geosession.session_state import SessionStateCounts, session_state_counts

WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the checkout wait histogram; a last bucket holds the rest."""
_RECENT_WAITS = 1024


class PoolMonitor:
    """Counters, wait times and current holders of one engine's pool."""

    def __init__(self, engine: Engine, *, max_overflow: int, leak_threshold: float | None):
        self.engine = engine
        self.max_overflow = max_overflow
        self._start(leak_threshold)

    def _start(self, leak_threshold: float | None) -> None:
        self.holds = HoldTracker(leak_threshold, endpoint_of(self.engine))
        self.checkouts = self.connects = self.invalidations = self.waits = self.timeouts = 0
        self.wait_buckets = [0] * (len(WAIT_BUCKETS) + 1)
        """Acquisitions per histogram bucket (not cumulative), the last for > 30 s."""
        self.wait_seconds = 0.0
        """Total seconds spent acquiring connections (the histogram's sum)."""
        self._recent_waits: deque[float] = deque(maxlen=_RECENT_WAITS)
        self._lock = threading.Lock()

    def restart_after_fork(self) -> None:
        """In a forked child, whose pool is new: the parent's holders, counts and watchdog
        thread (which did not come along) are not this process's."""
        self._start(self.holds.threshold)

    @classmethod
    def attach(
        cls, engine: Engine, *, max_overflow: int, leak_threshold: float | None = None
    ) -> PoolMonitor:
        """Listens to ``engine``'s pool events and times its connection acquisition."""
        monitor = cls(engine, max_overflow=max_overflow, leak_threshold=leak_threshold)
        for name, listener in monitor._listeners().items():
            event.listen(engine, name, listener)
        engine.raw_connection = monitor._timed(engine.raw_connection)  # type: ignore[method-assign]
        return monitor

    def _listeners(self) -> dict[str, Any]:
        return {
            "checkout": self._on_checkout,
            "checkin": self._on_checkin,
            "connect": self._on_connect,
            "invalidate": self._on_invalidate,
            "soft_invalidate": self._on_invalidate,
            "detach": self._on_detach,
        }

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        with self._lock:
            self.checkouts += 1
        self.holds.checked_out(record)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        self.holds.checked_in(record)

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        with self._lock:
            self.connects += 1

    def _on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        with self._lock:
            self.invalidations += 1

    def _on_detach(self, dbapi_connection: Any, record: Any) -> None:
        self.holds.forget(record)

    def _timed(self, acquire: Any) -> Any:
        def raw_connection() -> Any:
            must_wait = self._pool_is_full()
            started = time.perf_counter()
            try:
                connection = acquire()
            except sa_exc.TimeoutError:
                self._record_acquire(time.perf_counter() - started, waited=True, timed_out=True)
                raise
            self._record_acquire(time.perf_counter() - started, waited=must_wait)
            return connection

        return raw_connection

    def _pool_is_full(self) -> bool:
        pool = self.engine.pool
        return (  # overflow() first: a plain read, while checkedin() takes the queue's lock
            isinstance(pool, QueuePool)
            and pool.overflow() >= self.max_overflow
            and pool.checkedin() == 0
        )

    def _record_acquire(self, seconds: float, *, waited: bool, timed_out: bool = False) -> None:
        bucket = bisect.bisect_left(WAIT_BUCKETS, seconds)
        with self._lock:
            self.wait_buckets[bucket] += 1
            self.wait_seconds += seconds
            if waited:
                self.waits += 1
                self._recent_waits.append(seconds)
            if timed_out:
                self.timeouts += 1

    def stats(self) -> PoolStats:
        """The pool's state now, counters, wait percentiles and long holders."""
        self.holds.check()
        with self._lock:
            waits = sorted(self._recent_waits)
            counters = {
                "checkouts": self.checkouts,
                "connects": self.connects,
                "invalidations": self.invalidations,
                "waits": self.waits,
                "timeouts": self.timeouts,
            }
        return replace(
            pool_stats(self.engine),
            **counters,
            wait_p50_ms=_percentile(waits, 0.50) * 1000,
            wait_p95_ms=_percentile(waits, 0.95) * 1000,
            wait_max_ms=(waits[-1] if waits else 0.0) * 1000,
            longest_hold_s=self.holds.longest(),
            long_holders=tuple(self.holds.long_holders()),
        )

    def holders_note(self, count: int = 3) -> str:
        """A sentence naming the longest holders and where they took their connection."""
        if not self.holds.tracking:
            return ""
        holders = self.holds.holders()[:count]
        if not holders:
            return ""
        return "Held longest: " + "; ".join(f"{h.age:.1f}s by {h.where}" for h in holders)

    def close(self) -> None:
        self.holds.close()


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class IngestCounters:
    """Totals of bulk loads, exported to Prometheus; the ingest code calls :meth:`add`."""

    rows: int = 0
    """Rows written."""
    quarantined: int = 0
    """Rows set aside as invalid."""
    batches: int = 0
    """Chunks committed."""
    retries: int = 0
    """Chunks retried after a transient failure."""
    seconds: float = 0.0
    """Time spent loading."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(
        self,
        *,
        rows: int = 0,
        quarantined: int = 0,
        batches: int = 0,
        retries: int = 0,
        seconds: float = 0.0,
    ) -> None:
        with self._lock:
            self.rows += rows
            self.quarantined += quarantined
            self.batches += batches
            self.retries += retries
            self.seconds += seconds

    def record(self, report: Any) -> None:
        """Adds an :class:`~geosession.ingest.report.IngestReport`'s totals."""
        self.add(
            rows=report.inserted,
            quarantined=len(report.rejected),
            batches=report.chunks,
            retries=report.retries,
            seconds=report.duration,
        )


@dataclass
class DatabaseMetrics:
    """Everything a SpatialDatabase measures: its pools, slow statements, bulk loads."""

    pool: PoolMonitor
    slow_queries: SlowQueryLog
    ingest: IngestCounters = field(default_factory=IngestCounters)
    async_pool: PoolMonitor | None = None
    unpooled: PoolMonitor | None = None
    """The async engine without a pool, for loops beside the pooled one's."""
    replica_pools: list[PoolMonitor] = field(default_factory=list)
    ingest_pool: PoolMonitor | None = None
    """The ingest's psycopg 3 pool, where the sync engine is psycopg2's."""

    @classmethod
    def attach(
        cls,
        engine: Engine,
        *,
        max_overflow: int,
        leak_threshold: float | None,
        slow_query_threshold: float | None,
    ) -> DatabaseMetrics:
        """Installs the listeners on the sync engine."""
        slow = SlowQueryLog(slow_query_threshold)
        slow.attach(engine)
        pool = PoolMonitor.attach(engine, max_overflow=max_overflow, leak_threshold=leak_threshold)
        return cls(pool=pool, slow_queries=slow)

    def attach_async(self, sync_engine: Engine) -> None:
        """The same listeners on the async engine (its ``sync_engine``)."""
        self.async_pool = self._watched(sync_engine)

    def attach_unpooled(self, sync_engine: Engine) -> None:
        """The same listeners on the async engine without a pool (its ``sync_engine``)."""
        self.unpooled = self._watched(sync_engine)

    def attach_ingest(self, engine: Engine) -> None:
        """The same listeners on the ingest's own engine."""
        self.ingest_pool = self._watched(engine)

    def attach_replica(self, sync_engine: Engine) -> None:
        """The same listeners on a replica's engine (an async one's ``sync_engine``)."""
        self.replica_pools.append(self._watched(sync_engine))

    def _watched(self, sync_engine: Engine) -> PoolMonitor:
        self.slow_queries.attach(sync_engine)
        return PoolMonitor.attach(
            sync_engine,
            max_overflow=self.pool.max_overflow,
            leak_threshold=self.pool.holds.threshold,
        )

    def monitor_of(self, engine: Engine) -> PoolMonitor | None:
        """The monitor of ``engine`` (the sync engine, the async one's sync_engine, or a
        replica's)."""
        return next((m for m in self._monitors() if m.engine is engine), None)

    @property
    def session_state(self) -> dict[str, int]:
        """What connections of every pool came back with in their server sessions, since
        start: ``settings`` (connections replaced), ``advisory_locks`` (released) and the
        temporary tables, sequences, views, LISTEN channels, prepared statements and held
        cursors undone (see :mod:`geosession.session_state`)."""
        total = dict.fromkeys(SessionStateCounts.KINDS, 0)
        for counts in self._session_state_counts():
            for kind, count in counts.as_dict().items():
                total[kind] += count
        return total

    def _session_state_counts(self) -> list[SessionStateCounts]:
        found = (session_state_counts(monitor.engine) for monitor in self._monitors())
        return [counts for counts in found if counts is not None]

    def lent(self) -> list[Any]:
        """The pool records of every connection lent now, of every pool."""
        return [record for monitor in self._monitors() for record in monitor.holds.lent()]

    def restart_after_fork(self) -> None:
        """Every pool's monitor starts afresh in a forked child (see ``forks``)."""
        for monitor in self._monitors():
            monitor.restart_after_fork()
        for counts in self._session_state_counts():
            counts.clear()

    def close(self) -> None:
        """Stops the leak watchdogs (called by ``db.dispose()``)."""
        for monitor in self._monitors():
            monitor.close()

    def _monitors(self) -> list[PoolMonitor]:
        optional = [m for m in (self.async_pool, self.unpooled, self.ingest_pool) if m is not None]
        return [self.pool, *optional, *self.replica_pools]
