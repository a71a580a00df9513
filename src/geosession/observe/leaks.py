"""Who holds pooled connections, for how long, and where they were taken.

A :class:`HoldTracker` is fed by the pool's ``checkout`` and ``checkin`` events. It always
records when each connection was checked out (a dict insert: that gives "longest current
hold" for free); with a ``leak_threshold`` it also records the caller's stack at checkout
and logs a WARNING once for every connection held longer than the threshold.

The stack is a tuple of (file, line, function) read from the live frames with
``sys._getframe`` (no source lines are read until a warning is printed), keeping only
user code: frames in SQLAlchemy, geosession and contextlib are skipped. Under asyncio the
pool runs in a SQLAlchemy greenlet whose own frames end in SQLAlchemy; the walk goes on in
the parent greenlet, whose suspended frames are the awaiting coroutines (the user's code).

The threshold is checked by a daemon thread waking every ``threshold / 4`` (0.05 s to
1 s), so a holder that never returns is reported too, and at each ``pool_stats()``. The
thread holds only a weak reference and stops with :meth:`HoldTracker.close`
(``db.dispose()``); the next checkout starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import linecache
import logging
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import sqlalchemy

logger = logging.getLogger("geosession.pool")

Frame = tuple[str, int, str]
"""(file name, line number, function name) of one stack frame."""

_LIBRARY_PREFIXES = (
    str(Path(sqlalchemy.__file__ or "sqlalchemy").parent) + os.sep,
    str(Path(__file__).parents[1]) + os.sep,  # the geosession package
    "<sqlalchemy generated",  # SQLAlchemy 2.1's generated decorator wrappers
)
_LIBRARY_FILES = (contextlib.__file__,)
_is_library_cache: dict[str, bool] = {}
_USER_FRAMES = 8
_MAX_FRAMES_WALKED = 200


def _is_library(filename: str) -> bool:
    known = _is_library_cache.get(filename)
    if known is None:
        known = filename.startswith(_LIBRARY_PREFIXES) or filename in _LIBRARY_FILES
        _is_library_cache[filename] = known
    return known


def _generated_by_library(frame: FrameType) -> bool:
    """SQLAlchemy 2.0 execs its decorator wrappers from source: their file is
    ``<string>``, their globals the decorated function's module."""
    if frame.f_code.co_filename != "<string>":
        return False
    return str(frame.f_globals.get("__name__", "")).startswith("sqlalchemy.")


def _parent_greenlet_frame() -> FrameType | None:
    greenlet = sys.modules.get("greenlet")
    if greenlet is None:
        return None
    parent = greenlet.getcurrent().parent
    frame: FrameType | None = getattr(parent, "gr_frame", None) if parent is not None else None
    return frame


def capture_stack(limit: int = _USER_FRAMES) -> tuple[Frame, ...]:
    """The innermost ``limit`` user-code frames of the caller, outermost first."""
    frames: list[Frame] = []
    frame: FrameType | None = sys._getframe(1)
    switched = False
    for _ in range(_MAX_FRAMES_WALKED):
        if frame is None:
            if switched:
                break
            frame, switched = _parent_greenlet_frame(), True
            continue
        code = frame.f_code
        if not _is_library(code.co_filename) and not _generated_by_library(frame):
            frames.append((code.co_filename, frame.f_lineno, code.co_name))
            if len(frames) == limit:
                break
        frame = frame.f_back
    frames.reverse()
    return tuple(frames)


def format_frame(frame: Frame) -> str:
    """``File "x.py", line 3, in f`` and the source line, like a traceback."""
    filename, lineno, name = frame
    line = linecache.getline(filename, lineno).strip()
    text = f'  File "{filename}", line {lineno}, in {name}'
    return f"{text}\n    {line}" if line else text


@dataclass(frozen=True)
class Holder:
    """A connection checked out right now, how long ago, and the code that took it."""

    age: float
    """Seconds since the checkout."""
    where: str
    """The innermost user frame that checked it out: ``file:line in function``."""
    stack: tuple[Frame, ...]
    """User-code frames at checkout, outermost first (empty without leak tracking)."""
    thread: str
    """Name of the thread that checked it out."""

    def format_stack(self) -> str:
        return "\n".join(format_frame(frame) for frame in self.stack)

    def __str__(self) -> str:
        return f"held {self.age:.1f}s by {self.where} (thread {self.thread})"


def taker() -> tuple[int, int | None]:
    """Who takes a connection: the thread, and the asyncio task running there if any
    (tasks share their loop's thread; SQLAlchemy's checkout runs inside the task)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop runs in this thread
        task = None
    return threading.get_ident(), None if task is None else id(task)


@dataclass(slots=True)
class _Checkout:
    started: float
    stack: tuple[Frame, ...]
    thread: str
    taker: tuple[int, int | None]
    """The taker's thread and asyncio task (:func:`taker`): tells one waiting on itself."""
    warned: bool = False

    def where(self) -> str:
        if not self.stack:
            return "unknown (leak tracking is off)"
        filename, lineno, name = self.stack[-1]
        return f"{filename}:{lineno} in {name}"

    def holder(self, now: float) -> Holder:
        return Holder(now - self.started, self.where(), self.stack, self.thread)


class HoldTracker:
    """Checkout times of every lent connection; stacks and warnings with a threshold."""

    def __init__(self, threshold: float | None, endpoint: str) -> None:
        self.threshold = threshold
        self.endpoint = endpoint
        self._held: dict[Any, _Checkout] = {}
        self._stop: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def tracking(self) -> bool:
        """Whether stacks are recorded and long holds reported (a threshold is set)."""
        return self.threshold is not None

    def checked_out(self, record: Any) -> None:
        if self.threshold is None:  # the fast path: only the time of the checkout
            self._held[record] = _Checkout(time.monotonic(), (), "", taker())
            return
        stack = capture_stack()
        thread = threading.current_thread()
        self._held[record] = _Checkout(time.monotonic(), stack, thread.name, taker())
        if self._stop is None:
            self._start_watchdog(self.threshold)

    def checked_in(self, record: Any) -> None:
        checkout = self._held.pop(record, None)
        if checkout is not None and checkout.warned:
            logger.warning(
                "Connection to %s was returned after %.1fs; it was taken at %s",
                self.endpoint,
                time.monotonic() - checkout.started,
                checkout.where(),
            )

    def forget(self, record: Any) -> None:
        """A detached connection leaves the pool: it is no longer a holder."""
        self._held.pop(record, None)

    def lent(self) -> list[Any]:
        """The pool records of the connections lent now."""
        return list(self._held)

    def held_here(self) -> int:
        """How many connections the caller (its thread, its asyncio task) holds now."""
        here = taker()
        return sum(1 for checkout in list(self._held.values()) if checkout.taker == here)

    def holders(self, min_age: float = 0.0) -> list[Holder]:
        """Current holders held at least ``min_age`` seconds, longest first."""
        now = time.monotonic()
        found = [c.holder(now) for c in list(self._held.values()) if now - c.started >= min_age]
        return sorted(found, key=lambda holder: holder.age, reverse=True)

    def long_holders(self) -> list[Holder]:
        """Holders past the threshold (none when tracking is off)."""
        return [] if self.threshold is None else self.holders(self.threshold)

    def longest(self) -> float:
        """Seconds the longest current holder has had its connection (0 when none)."""
        now = time.monotonic()
        return max((now - c.started for c in list(self._held.values())), default=0.0)

    def check(self) -> None:
        """Logs a WARNING once for every connection held past the threshold."""
        threshold = self.threshold
        if threshold is None:
            return
        now = time.monotonic()
        for checkout in list(self._held.values()):
            if not checkout.warned and now - checkout.started > threshold:
                with self._lock:
                    if checkout.warned:
                        continue
                    checkout.warned = True
                self._warn(checkout, now - checkout.started, threshold)

    def _warn(self, checkout: _Checkout, age: float, threshold: float) -> None:
        stack = "\n".join(format_frame(frame) for frame in checkout.stack)
        logger.warning(
            "Connection to %s checked out %.1fs ago and not returned yet "
            "(leak_threshold=%gs), by thread %s at %s. Stack where it was checked out "
            "(most recent call last):\n%s",
            self.endpoint,
            age,
            threshold,
            checkout.thread,
            checkout.where(),
            stack or "  (no user code on the stack)",
        )

    def _start_watchdog(self, threshold: float) -> None:
        with self._lock:
            if self._stop is not None:
                return
            self._stop = threading.Event()
        interval = min(max(threshold / 4, 0.05), 1.0)
        thread = threading.Thread(
            target=_watch,
            args=(weakref.ref(self), self._stop, interval),
            name="geosession-leak-watchdog",
            daemon=True,
        )
        thread.start()

    def close(self) -> None:
        """Stops the watchdog thread (it restarts on the next checkout)."""
        with self._lock:
            stop, self._stop = self._stop, None
        if stop is not None:
            stop.set()


def _watch(ref: weakref.ref[HoldTracker], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        tracker = ref()
        if tracker is None:
            return
        tracker.check()
        del tracker
