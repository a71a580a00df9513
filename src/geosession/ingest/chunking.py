"""Adaptive chunk size: grow while chunks finish fast, shrink when one nears the timeout.

Pure policy, no I/O: the writer reports how long each chunk took and asks for the next
size. The aim is chunks that each take about ``target_seconds``, far below
``statement_timeout``, so a slow moment on the server never kills a chunk.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from geosession.errors import ConfigurationError
from geosession.settings import duration_ms

AUTO_START = 5_000
MINIMUM = 1
MAXIMUM = 200_000


@dataclass
class ChunkSizer:
    """The current chunk size, adjusted from observed throughput."""

    size: int
    adaptive: bool = True
    target_seconds: float = 2.0
    smallest: int = field(init=False)
    largest: int = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.smallest = self.largest = self.size

    def observe(self, rows: int, seconds: float) -> None:
        """After a chunk of ``rows`` took ``seconds``: aim the next at target_seconds."""
        if not self.adaptive or rows < self.size // 2:
            return
        rate = rows / max(seconds, 1e-3)
        ideal = int(rate * self.target_seconds)
        self._set(max(self.size // 2, min(ideal, self.size * 2)))

    def shrink(self) -> int:
        """Halves the size after a chunk timed out; returns the new size."""
        self._set(max(MINIMUM, self.size // 2))
        return self.size

    def _set(self, size: int) -> None:
        with self._lock:
            self.size = max(MINIMUM, min(MAXIMUM, size))
            self.smallest = min(self.smallest, self.size)
            self.largest = max(self.largest, self.size)


def make_sizer(chunk_size: int | str, statement_timeout: str | None) -> ChunkSizer:
    """``"auto"`` adapts from 5,000 rows; a number is kept unless a chunk times out."""
    timeout_s = duration_ms(statement_timeout) / 1000 if statement_timeout else 0.0
    target = min(2.0, timeout_s / 4) if timeout_s > 0 else 2.0
    if chunk_size == "auto":
        return ChunkSizer(AUTO_START, adaptive=True, target_seconds=target)
    if isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size >= 1:
        return ChunkSizer(min(chunk_size, MAXIMUM), adaptive=False, target_seconds=target)
    raise ConfigurationError(
        f"chunk_size={chunk_size!r} is not valid: use 'auto' or a number of rows "
        f"from 1 to {MAXIMUM:,}"
    )
