"""geosession.ingest.stages: order, bounded read-ahead, errors, early close."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from geosession.ingest.stages import map_in_order, read_ahead, timed_batches


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


def test_stopping_does_not_wait_for_a_quiet_source() -> None:
    stop, release = threading.Event(), threading.Event()

    def quiet_after_two() -> Iterator[int]:
        yield from (1, 2)
        release.wait(30)  # a feed whose next item does not come
        yield 3

    ahead = read_ahead(quiet_after_two(), "t-quiet", stop.is_set)
    assert [next(ahead), next(ahead)] == [1, 2]
    stop.set()
    started = time.monotonic()
    assert list(ahead) == []
    assert time.monotonic() - started < 5, "stopping waited for the source's next item"
    release.set()  # the thread waiting in the source ends after that item
    deadline = time.monotonic() + 5
    while stage_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not stage_threads()


def pull_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "geosession-ingest-pull"]


def test_timed_batches_of_a_fast_source_are_cut_by_size_only() -> None:
    batches = list(timed_batches(iter(range(10_005)), lambda: 1_000, interval=60))
    assert [len(items) for items, _ in batches] == [1_000] * 10 + [5]
    assert not any(cut for _, cut in batches)  # the last is short because the source ended
    assert [n for items, _ in batches for n in items] == list(range(10_005))
    assert not pull_threads()


def test_timed_batches_pass_on_what_a_quiet_source_gave_after_the_interval() -> None:
    release = threading.Event()

    def trickle() -> Iterator[int]:
        yield from (1, 2, 3)
        assert release.wait(30), "never released"
        yield from (4, 5)

    batches = timed_batches(trickle(), lambda: 100, interval=0.3)
    started = time.monotonic()
    assert next(batches) == ([1, 2, 3], True)  # while the source waits for its next row
    assert 0.25 < time.monotonic() - started < 3
    release.set()
    assert list(batches) == [([4, 5], False)]
    assert not pull_threads()


def test_a_source_quiet_after_a_full_batch_gets_an_empty_cut_batch() -> None:
    """The full batch went on uncut; the empty cut one says not to hold it any longer."""
    release = threading.Event()

    def quiet_after(count: int) -> Iterator[int]:
        yield from range(count)
        assert release.wait(30), "never released"
        yield count

    batches = timed_batches(quiet_after(100), lambda: 100, interval=0.3)
    assert next(batches) == (list(range(100)), False)
    started = time.monotonic()
    assert next(batches) == ([], True)
    assert 0.25 < time.monotonic() - started < 3
    release.set()
    assert list(batches) == [([100], False)]


def test_timed_batches_give_the_items_before_a_failure_then_raise_it() -> None:
    def failing() -> Iterator[int]:
        yield from range(250)
        raise RuntimeError("source died")

    batches = timed_batches(failing(), lambda: 100, interval=60)
    assert [len(items) for items, _ in (next(batches), next(batches), next(batches))] == [
        100,
        100,
        50,
    ]
    with pytest.raises(RuntimeError, match="source died"):
        next(batches)


def test_closing_timed_batches_early_stops_the_pulling_thread_after_its_next_item() -> None:
    pulled: list[int] = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            n += 1
            pulled.append(n)
            yield n

    batches = timed_batches(endless(), lambda: 10, interval=60)
    assert len(next(batches)[0]) == 10
    batches.close()
    deadline = time.monotonic() + 5
    while pull_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not pull_threads() and len(pulled) <= 31  # at most two batches ahead, plus one


def test_after_an_urgent_item_its_result_comes_before_the_next_item_is_awaited() -> None:
    release = threading.Event()

    def quiet_after_three() -> Iterator[int]:
        yield from (1, 2, 3)
        assert release.wait(30), "never released"
        yield 4

    results = map_in_order(slow_square, quiet_after_three(), "t-urgent", 2, urgent=lambda n: n == 3)
    assert [next(results), next(results), next(results)] == [1, 4, 9]  # source still quiet
    release.set()
    assert list(results) == [16]


def test_timed_batches_end_soon_after_stop_while_the_source_is_quiet() -> None:
    release, stop = threading.Event(), threading.Event()

    def quiet_after_one() -> Iterator[int]:
        yield 1
        release.wait(30)

    batches = timed_batches(quiet_after_one(), lambda: 10, interval=0.2, stopped=stop.is_set)
    assert next(batches) == ([1], True)
    stop.set()
    started = time.monotonic()
    assert list(batches) == []
    assert time.monotonic() - started < 1
    release.set()
