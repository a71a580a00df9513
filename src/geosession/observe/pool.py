"""A snapshot of a connection pool, as numbers a person or a dashboard can read."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool


@dataclass(frozen=True)
class PoolStats:
    """Connections in the pool right now."""

    size: int
    """Configured pool_size."""
    checked_out: int
    """Lent to sessions at this moment."""
    checked_in: int
    """Open and idle in the pool."""
    overflow: int
    """Open beyond pool_size (negative while the pool has not filled up yet)."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"pool size {self.size}: {self.checked_out} checked out, "
            f"{self.checked_in} idle, overflow {max(self.overflow, 0)}"
        )


def pool_stats(engine: Engine) -> PoolStats:
    """Reads the counters of the engine's QueuePool (the default for geosession engines)."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return PoolStats(size=0, checked_out=0, checked_in=0, overflow=0)
    return PoolStats(
        size=pool.size(),
        checked_out=pool.checkedout(),
        checked_in=pool.checkedin(),
        overflow=pool.overflow(),
    )
