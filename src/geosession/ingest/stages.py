"""Pipeline stages on threads of their own, joined by bounded queues.

The ingest's reading (mostly Python, holding the GIL) and validation (mostly GEOS, which
releases it) overlap when each runs on a thread, while one-slot handoffs keep only a few
items in flight. Every stage stops when asked, joins its threads when its consumer stops
early (except a thread waiting inside a source that has gone quiet), and raises a
producer's error in the consumer's thread.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")
_POLL = 0.1
"""Seconds between looks at whether a stage was asked to stop, while it waits."""
_GIVE_UP = 1.0
"""Seconds a stopped read-ahead waits for its thread to finish the item it is computing;
one still busy after that is waiting inside the source and is left to end after it."""


class _End:
    """Handoff sentinel: no more items (with the producer's error, if it failed)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def read_ahead(items: Iterator[_T], stage: str, stopped: Callable[[], bool]) -> Generator[_T]:
    """``items``, computed one ahead on a thread of their own until ``stopped()``.

    The thread is stopped and joined when the consumer stops early, unless it is still
    busy after a second: then it is waiting inside a source whose next item has not come
    (a feed gone quiet), and it ends after that item instead of holding up the stop. An
    error it meets is raised in the consumer's thread.
    """
    closed = threading.Event()
    handoff: queue.Queue[_T | _End] = queue.Queue(maxsize=1)

    def halted() -> bool:
        return closed.is_set() or stopped()

    def produce() -> None:
        error = None
        try:
            for item in items:
                if not put_until(handoff, item, halted):
                    return
        except BaseException as exc:
            error = exc
        put_until(handoff, _End(error), halted)

    thread = threading.Thread(target=produce, name=f"geosession-ingest-{stage}", daemon=True)
    thread.start()
    try:
        while not stopped():
            try:
                item = handoff.get(timeout=_POLL)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        closed.set()
        thread.join(_GIVE_UP)


def map_in_order(
    function: Callable[[_T], _R],
    items: Iterator[_T],
    stage: str,
    workers: int,
    urgent: Callable[[_T], bool] = lambda item: False,
) -> Generator[_R]:
    """``function`` over ``items`` on ``workers`` threads at once, results in order.

    At most one item per worker waits beyond the one being consumed, so memory stays
    bounded; closing the generator waits only for the items in flight. After an
    ``urgent`` item, every result in flight is passed on before the next item is awaited.
    When ``items`` fails, the results of the items before the failure come first, then
    its error.
    """
    with ThreadPoolExecutor(workers, thread_name_prefix=f"geosession-ingest-{stage}") as pool:
        in_flight: collections.deque[Future[_R]] = collections.deque()
        failure: BaseException | None = None
        try:
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    break
                except BaseException as error:
                    failure = error
                    break
                in_flight.append(pool.submit(function, item))
                while len(in_flight) > (0 if urgent(item) else workers):
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
            if failure is not None:
                raise failure
        finally:
            for future in in_flight:
                future.cancel()


def timed_batches(
    items: Iterator[_T],
    size: Callable[[], int],
    interval: float,
    stopped: Callable[[], bool] = lambda: False,
) -> Generator[tuple[list[_T], bool]]:
    """Lists of ``size()`` items, or fewer once the first of them has waited ``interval``
    seconds (then with True): a source that trickles is passed on as it comes. When the
    source goes quiet just after a full list, an empty list with True follows once it has
    been quiet for ``interval``, so that the items handed on before are not held either.
    It ends within 0.1 s of ``stopped()``, also while the source is quiet.

    The items are pulled on a thread of their own (at most two lists ahead), so a source
    waiting for its next item does not hold back the ones it already gave. That thread
    is not joined: it may be waiting inside the source, and it ends after its next item.
    """
    pull = _Pull(items)
    thread = threading.Thread(target=pull.run, name="geosession-ingest-pull", daemon=True)
    thread.start()
    try:
        while batch := pull.take(size(), interval, stopped):
            yield batch
    finally:
        pull.close()
        if pull.ended:  # the source is done: nothing can keep the thread
            thread.join()


class _Pull:
    """Items of an iterator gathered by a pulling thread, taken by size or by age."""

    def __init__(self, items: Iterator[Any]) -> None:
        self.items = items
        self.waiting: collections.deque[Any] = collections.deque()
        self.first_at = 0.0  # when the oldest waiting item came (about: see take)
        self.wanted = 1
        self.unflushed = False  # a full list went out and no cut since
        self.ended = self.closed = False
        self.error: BaseException | None = None
        self.changed = threading.Condition()

    def run(self) -> None:
        try:
            for item in self.items:
                with self.changed:
                    while len(self.waiting) >= 2 * self.wanted and not self.closed:
                        self.changed.wait()
                    if self.closed:
                        return
                    if not self.waiting:
                        self.first_at = time.monotonic()
                    self.waiting.append(item)
                    if len(self.waiting) in (1, self.wanted):  # not per item: a wakeup costs
                        self.changed.notify_all()
        except BaseException as error:
            self.error = error
        finally:
            with self.changed:
                self.ended = True
                self.changed.notify_all()

    def take(
        self, size: int, interval: float, stopped: Callable[[], bool]
    ) -> tuple[list[Any], bool] | None:
        """Up to ``size`` items, whether cut by time; None at the end (after the source's
        error, raised here) or once ``stopped()``."""
        with self.changed:
            if size != self.wanted:  # the pulling thread may be waiting for room
                self.wanted = size
                self.changed.notify_all()
            quiet_until = time.monotonic() + interval if self.unflushed else None
            while not self.waiting and not self.ended:
                if stopped():
                    return None
                left = _POLL if quiet_until is None else quiet_until - time.monotonic()
                if left <= 0:
                    self.unflushed = False
                    return [], True
                self.changed.wait(min(left, _POLL))
            while len(self.waiting) < size and not self.ended:
                left = self.first_at + interval - time.monotonic()
                if left <= 0:
                    break
                if stopped():
                    return None
                self.changed.wait(min(left, _POLL))
            if not self.waiting:
                if self.error is not None:
                    raise self.error
                return None
            cut = len(self.waiting) < size and not self.ended
            self.unflushed = not cut
            taken = [self.waiting.popleft() for _ in range(min(size, len(self.waiting)))]
            self.first_at = time.monotonic()  # the rest came later than the taken ones
            self.changed.notify_all()  # room for the pulling thread
            return taken, cut

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()


def put_until(target: queue.Queue[Any], item: Any, stopped: Callable[[], bool]) -> bool:
    """Puts ``item``, waiting for room until ``stopped()``; whether it was put."""
    while not stopped():
        try:
            target.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False
