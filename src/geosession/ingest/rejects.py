"""The rejects of a load, in bounded memory.

A report keeps every reject (its row, column, kind, reason and value), and a load of
millions of bad rows (points in metres given a column of degrees: every row a reject)
would hold them all. The first ones stay in memory, where a load that mostly loads keeps
all of its few; the rest go to a temporary file in pickled blocks, read back when they
are iterated or indexed. The file is deleted when the rejects are, or the process ends.
Where no temporary file can be written (a read-only or full ``$TMPDIR``), the rest stay in
memory, with a warning: the load goes on.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, overload

from geosession.ingest.validate import Reject

log = logging.getLogger(__name__)

_KEPT = 10_000
"""Rejects kept in memory before later ones go to the file (about 2 MB of short ones)."""
_BLOCK = 5_000
"""Rejects written to the file at a time, and read back at a time."""


class Rejects(Sequence[Reject]):
    """A list of rejects, in the order they were added, whose memory stays bounded: past
    the first ``kept`` they are written to a temporary file in blocks of ``block``."""

    def __init__(
        self, rejects: Iterable[Reject] = (), *, kept: int = _KEPT, block: int = _BLOCK
    ) -> None:
        self._kept = kept
        self._block = block
        self._head: list[Reject] = []
        self._file: IO[bytes] | None = None
        self._blocks: list[tuple[int, int]] = []  # each block's offset and size in the file
        self._tail: list[Reject] = []  # rejects after the blocks, not yet written
        self._read: tuple[int, list[Reject]] = (-1, [])  # the block last read back
        self._unwritable = False  # no temporary file could be written: the tail grows
        self._lock = threading.Lock()
        self.extend(rejects)

    def extend(self, rejects: Iterable[Reject]) -> None:
        with self._lock:
            for reject in rejects:
                if len(self._head) < self._kept:
                    self._head.append(reject)
                    continue
                self._tail.append(reject)
                if len(self._tail) == self._block and self._written(self._tail):
                    self._tail = []

    def append(self, reject: Reject) -> None:
        self.extend([reject])

    def _written(self, block: list[Reject]) -> bool:
        """Whether ``block`` went to the file (never again once one could not)."""
        if self._unwritable:
            return False
        data = pickle.dumps([_fields(reject) for reject in block], pickle.HIGHEST_PROTOCOL)
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="geosession-rejects-")  # noqa: SIM115
                weakref.finalize(self, self._file.close)  # closed, not left to the collector
            offset = self._file.seek(0, 2)
            self._file.write(data)
            self._file.flush()
        except OSError as error:
            self._unwritable = True
            log.warning(
                "Rejects past the first %s stay in memory: they could not be written to a "
                "temporary file in %s (%s); set TMPDIR to a writable directory with room",
                f"{self._kept:,}",
                tempfile.gettempdir(),
                error,
            )
            return False
        self._blocks.append((offset, len(data)))
        return True

    def _block_at(self, number: int) -> list[Reject]:
        if self._read[0] != number:
            assert self._file is not None
            offset, size = self._blocks[number]
            self._file.seek(offset)
            loaded = pickle.loads(self._file.read(size))
            self._read = (number, [Reject(*fields) for fields in loaded])
        return self._read[1]

    def __len__(self) -> int:
        return len(self._head) + len(self._blocks) * self._block + len(self._tail)

    @overload
    def __getitem__(self, index: int) -> Reject: ...

    @overload
    def __getitem__(self, index: slice) -> list[Reject]: ...

    def __getitem__(self, index: int | slice) -> Reject | list[Reject]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        with self._lock:
            length = len(self)
            position = index + length if index < 0 else index
            if not 0 <= position < length:
                raise IndexError("rejects index out of range")
            if position < len(self._head):
                return self._head[position]
            number, within = divmod(position - len(self._head), self._block)
            if number < len(self._blocks):  # the head is full once a block is written
                return self._block_at(number)[within]
            return self._tail[position - len(self._head) - len(self._blocks) * self._block]

    def __iter__(self) -> Iterator[Reject]:
        with self._lock:
            head, blocks, tail = list(self._head), len(self._blocks), list(self._tail)
        yield from head
        for number in range(blocks):
            with self._lock:
                block = self._block_at(number)
            yield from block
        yield from tail

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __repr__(self) -> str:
        if len(self) <= self._kept:
            return repr(self._head)
        return f"<{len(self):,} rejects, the first {len(self._head):,} in memory>"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (to another process, or copied) as the list of every reject."""
        return (Rejects, (list(self),))


def _fields(reject: Reject) -> tuple[Any, ...]:
    return (reject.row, reject.column, reject.kind, reject.reason, reject.value)
