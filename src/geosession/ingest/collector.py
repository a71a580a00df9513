"""Python's cyclic garbage collector, paused while ingests run.

Millions of short-lived geometries set off full collections: with the collector running a
load takes 30-70 % longer. It is process-wide, so it is paused from the start of the first
ingest running in the process to the end of the last (two loads on two threads: the one
ending first leaves it paused for the other), then resumed if it was on at that start.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_running = 0
_resume = False


@contextmanager
def paused() -> Iterator[None]:
    """The collector off within, and as it was after the last such block ends."""
    global _running, _resume
    with _lock:
        if _running == 0:
            _resume = gc.isenabled()
            gc.disable()
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _resume:
                gc.enable()
