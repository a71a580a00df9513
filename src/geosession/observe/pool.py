"""A snapshot of a connection pool, as numbers a person or a dashboard can read."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from geosession.observe.leaks import Holder


@dataclass(frozen=True)
class PoolStats:
    """Connections in the pool right now, and counters since the database was made.

    ``as_dict()`` is flat (names to numbers) for logs and dashboards; ``long_holders``
    appears there as a count.
    """

    size: int
    """Configured pool_size."""
    checked_out: int
    """Lent to sessions at this moment."""
    checked_in: int
    """Open and idle in the pool."""
    overflow: int
    """Open beyond pool_size: 0 until the pool has filled (SQLAlchemy's own count starts
    at -pool_size, which dashboards would show as a negative gauge)."""
    checkouts: int = 0
    """Connections lent since the database object was made."""
    connects: int = 0
    """New server connections opened (first use, overflow, recycling, reconnects)."""
    invalidations: int = 0
    """Connections discarded as broken (disconnects, failed pre-ping) or soft-invalidated."""
    waits: int = 0
    """Checkouts that found every connection lent and had to wait for one to come back."""
    timeouts: int = 0
    """Checkouts that gave up after pool_timeout (each raised PoolExhausted)."""
    wait_p50_ms: float = 0.0
    """Median wait of the last 1,024 waiting checkouts, in milliseconds."""
    wait_p95_ms: float = 0.0
    """95th percentile of the same waits."""
    wait_max_ms: float = 0.0
    """Longest of the same waits."""
    longest_hold_s: float = 0.0
    """Seconds the longest current holder has had its connection."""
    long_holders: tuple[Holder, ...] = ()
    """Connections held past leak_threshold, longest first, with the stack that took them."""

    def as_dict(self) -> dict[str, int | float]:
        """Every number by name; ``long_holders`` is their count."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["long_holders"] = len(self.long_holders)
        return values

    def __str__(self) -> str:
        text = (
            f"pool size {self.size}: {self.checked_out} checked out, "
            f"{self.checked_in} idle, overflow {self.overflow}"
        )
        if self.checkouts:
            text += (
                f"; {self.checkouts} checkouts, {self.waits} waited (p50 "
                f"{self.wait_p50_ms:.1f} ms, p95 {self.wait_p95_ms:.1f} ms, max "
                f"{self.wait_max_ms:.1f} ms), {self.timeouts} timed out, "
                f"{self.invalidations} invalidated"
            )
        if self.checked_out:  # a hold that ended is not kept: "longest" is of those now
            text += f"; the longest held now for {self.longest_hold_s:.1f}s"
        return "".join([text, *(f"\n  {holder}" for holder in self.long_holders)])


def pool_stats(engine: Engine) -> PoolStats:
    """Reads the counters of the engine's QueuePool (the default for geosession engines)."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return PoolStats(size=0, checked_out=0, checked_in=0, overflow=0)
    return PoolStats(
        size=pool.size(),
        checked_out=pool.checkedout(),
        checked_in=pool.checkedin(),
        overflow=max(pool.overflow(), 0),
    )
