"""Chunks: their adaptive size, and the rows waiting to fill the next one.

The size grows while chunks finish fast and shrinks when one nears the timeout: the
writer reports how long each chunk took and asks for the next size. The aim is chunks
that each take about ``target_seconds``, far below ``statement_timeout``, so a slow
moment on the server never kills a chunk.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from geosession.errors import ConfigurationError
from geosession.ingest.copy import Chunk
from geosession.ingest.lacking import NOTHING, Lacking
from geosession.ingest.validate import Reject
from geosession.ingest.write_plan import WritePlan
from geosession.settings import duration_ms

AUTO_START = 5_000
MINIMUM = 1
MAXIMUM = 50_000  # enough to amortize a transaction; keeps several in flight small
MAX_CHUNK_BYTES = 4 * 1024 * 1024
"""COPY data per chunk when sized automatically. The rows behind it take about ten times
that in Python objects, and up to four chunks are alive at once (being built, queued,
being written), besides source batches of at most a chunk's rows being read and
validated: measured at 1M polygons of ~250 bytes, peak RSS grew by 55 MB with
10,000-row chunks against 190 MB with 50,000, at the same speed."""


@dataclass
class ChunkSizer:
    """The current chunk size, adjusted from observed throughput."""

    size: int
    adaptive: bool = True
    target_seconds: float = 2.0
    row_limit: int = MAXIMUM
    """Rows that keep an automatic chunk under MAX_CHUNK_BYTES, from the rows seen."""
    measured: bool = False
    """Whether row_limit comes from rows seen yet."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, rows: int, seconds: float) -> None:
        """After a chunk of ``rows`` took ``seconds``: aim the next at target_seconds."""
        if not self.adaptive or rows < self.size // 2:
            return
        rate = rows / max(seconds, 1e-3)
        ideal = int(rate * self.target_seconds)
        self._set(max(self.size // 2, min(ideal, self.size * 2)))

    def observe_bytes(self, rows: int, nbytes: int) -> None:
        """After a chunk of ``rows`` encoded to ``nbytes``: cap automatic sizes by memory."""
        if not self.adaptive or not rows or not nbytes:
            return
        self.row_limit = max(MINIMUM, MAX_CHUNK_BYTES * rows // nbytes)
        self.measured = True
        if self.size > self.row_limit:
            self._set(self.size)

    def shrink(self) -> int:
        """Halves the size after a chunk timed out; returns the new size."""
        self._set(max(MINIMUM, self.size // 2))
        return self.size

    def _set(self, size: int) -> None:
        with self._lock:
            limit = min(MAXIMUM, self.row_limit) if self.adaptive else MAXIMUM
            self.size = max(MINIMUM, min(limit, size))


def make_sizer(chunk_size: int | str, statement_timeout: str | None) -> ChunkSizer:
    """``"auto"`` adapts from 5,000 rows; a number is kept unless a chunk times out."""
    timeout_s = duration_ms(statement_timeout) / 1000 if statement_timeout else 0.0
    target = min(2.0, timeout_s / 4) if timeout_s > 0 else 2.0
    if chunk_size == "auto":
        return ChunkSizer(AUTO_START, adaptive=True, target_seconds=target)
    if (
        isinstance(chunk_size, int)
        and not isinstance(chunk_size, bool)
        and 1 <= chunk_size <= MAXIMUM
    ):
        return ChunkSizer(chunk_size, adaptive=False, target_seconds=target)
    raise ConfigurationError(
        f"chunk_size={chunk_size!r} is not valid: use 'auto' or a number of rows "
        f"from 1 to {MAXIMUM:,}"
    )


class PendingRows:
    """Rows waiting to fill a chunk (column-wise) and rejects, each in source order, and
    the columns each row lacks (None while every row gives all)."""

    def __init__(self, plan: WritePlan) -> None:
        self.plan = plan
        self.columns: list[list[Any]] = [[] for _ in plan.columns]
        self.numbers: list[int] = []
        self.rejects: list[Reject] = []
        self.lacking: list[Lacking] | None = None

    def __len__(self) -> int:
        return len(self.numbers) + len(self.rejects)

    def add(
        self,
        columns: list[list[Any]],
        numbers: list[int],
        rejects: list[Reject],
        lacking: list[Lacking] | None = None,
    ) -> None:
        if lacking is not None or self.lacking is not None:
            if self.lacking is None:
                self.lacking = [NOTHING] * len(self.numbers)
            self.lacking += lacking or [NOTHING] * len(numbers)
        for pending, values in zip(self.columns, columns, strict=True):
            pending += values
        self.numbers += numbers
        self.rejects += rejects

    def take(self, size: int) -> Chunk:
        """The first ``size`` source rows (kept or rejected) as one encoded chunk."""
        if self.rejects:
            merged = heapq.merge(self.numbers, (r.row for r in self.rejects))
            last = next(itertools.islice(merged, size - 1, None))
        else:  # the common case, without a pass over the rows in Python
            last = self.numbers[size - 1]
        rows_end = bisect.bisect_right(self.numbers, last)
        rejects_end = bisect.bisect_right([r.row for r in self.rejects], last)
        first = min(self.numbers[:1] + [r.row for r in self.rejects[:1]])
        columns = [values[:rows_end] for values in self.columns]
        numbers, rejects = self.numbers[:rows_end], self.rejects[:rejects_end]
        lacking = None if self.lacking is None else self.lacking[:rows_end]
        if lacking is not None and not any(lacking):  # no stage needed for this chunk
            lacking = None
        chunk = Chunk(self.plan, first, last, columns, numbers, rejects, lacking).seal()
        for values in self.columns:
            del values[:rows_end]
        del self.numbers[:rows_end], self.rejects[:rejects_end]
        if self.lacking is not None:
            del self.lacking[:rows_end]
            if not any(self.lacking):
                self.lacking = None
        return chunk
