"""Pipeline stages on threads of their own, joined by bounded queues.

The ingest's reading (mostly Python, holding the GIL) and validation (mostly GEOS, which
releases it) overlap when each runs on a thread, while one-slot handoffs keep only a few
items in flight. Every stage stops when asked, joins its threads when its consumer stops
early, and raises a producer's error in the consumer's thread.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


class _End:
    """Handoff sentinel: no more items (with the producer's error, if it failed)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def read_ahead(items: Iterator[_T], stage: str, stopped: Callable[[], bool]) -> Generator[_T]:
    """``items``, computed one ahead on a thread of their own until ``stopped()``.

    The thread is stopped and joined when the consumer stops early; an error it meets
    is raised in the consumer's thread.
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
                item = handoff.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        closed.set()
        thread.join()


def map_in_order(
    function: Callable[[_T], _R], items: Iterator[_T], stage: str, workers: int
) -> Generator[_R]:
    """``function`` over ``items`` on ``workers`` threads at once, results in order.

    At most one item per worker waits beyond the one being consumed, so memory stays
    bounded; closing the generator waits only for the items in flight. When ``items``
    fails, the results of the items before the failure come first, then its error.
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
                if len(in_flight) > workers:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
            if failure is not None:
                raise failure
        finally:
            for future in in_flight:
                future.cancel()


def put_until(target: queue.Queue[Any], item: Any, stopped: Callable[[], bool]) -> bool:
    """Puts ``item``, waiting for room until ``stopped()``; whether it was put."""
    while not stopped():
        try:
            target.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
