"""geosession.ingest.stages: order, bounded read-ahead, errors, early close."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from geosession.ingest.stages import map_in_order, read_ahead


def stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("geosession-ingest-t")]


def never() -> bool:
    return False


def slow_square(n: int) -> int:
    time.sleep(random.uniform(0, 0.003))  # later items often finish first
    return n * n


def test_results_keep_the_order_of_their_items() -> None:
    assert list(map_in_order(slow_square, iter(range(200)), "t-order", 2)) == [
        n * n for n in range(200)
    ]
    assert list(read_ahead(iter(range(200)), "t-ahead", never)) == list(range(200))
    assert not stage_threads()


def test_the_source_is_read_only_a_few_items_ahead() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for n in range(1_000):
            pulled.append(n)
            yield n

    results = map_in_order(slow_square, read_ahead(source(), "t-bounded", never), "t-bounded-v", 2)
    assert next(results) == 0
    time.sleep(0.1)  # let every stage fill its slot
    assert len(pulled) <= 6  # 1 consumed, 2 in flight, 1 handed over, 1 being read, 1 spare
    results.close()
    assert not stage_threads()


def test_a_failing_source_gives_the_items_before_it_then_its_error() -> None:
    def source() -> Iterator[int]:
        yield from range(10)
        raise RuntimeError("source broke")

    seen: list[int] = []
    results = map_in_order(slow_square, read_ahead(source(), "t-fail", never), "t-fail-v", 2)
    with pytest.raises(RuntimeError, match="source broke"):
        for value in results:
            seen.append(value)
    assert seen == [n * n for n in range(10)]
    assert not stage_threads()


def test_a_failing_function_raises_in_the_consumer() -> None:
    def picky(n: int) -> int:
        if n == 7:
            raise ValueError("no sevens")
        return n

    with pytest.raises(ValueError, match="no sevens"):
        list(map_in_order(picky, iter(range(20)), "t-func", 2))
    assert not stage_threads()


def test_stopping_ends_the_read_ahead_without_waiting_for_the_source() -> None:
    stop = threading.Event()

    def endless() -> Iterator[int]:
        n = 0
        while True:
            n += 1
            yield n

    ahead = read_ahead(endless(), "t-stop", stop.is_set)
    assert next(ahead) == 1
    stop.set()
    assert len(list(ahead)) <= 2  # what was already handed over, then the end
    assert not stage_threads()
