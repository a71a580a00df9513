"""SIGTERM during a load: the load stops as Ctrl-C stops it, then the process ends as
SIGTERM would have ended it.

A container stopping or a service manager sends SIGTERM, whose default action ends the
process at once. The chunks in flight roll back, so nothing is lost, but the indexes a
load into an empty table deferred stay dropped until the next run. While ``db.ingest``
runs in the main thread of a process that leaves SIGTERM to its default action, the
signal raises instead: the load ends its chunks in flight and rebuilds its indexes, and
then the signal is sent again with the default action back. ``db.async_ingest`` awaited
on an event loop of the main thread (``asyncio.run``) is stopped the same way, through
the loop's signal handler. A process that handles SIGTERM itself (the command line does,
and so do servers such as uvicorn) is left to its own handler.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a load ran (raised in the main thread, as Ctrl-C is)."""


def _left_to_default() -> bool:
    """Whether this is the main thread and SIGTERM would end the process at once."""
    return (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )


@contextmanager
def sigterm_stops_the_load() -> Iterator[None]:
    """Within it, SIGTERM stops the load and then ends the process (see the module)."""
    if not _left_to_default():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the default action: the process ends here
        raise
    finally:
        if signal.getsignal(signal.SIGTERM) is stop:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def sigterm_stops_the_awaited_load(stop: Callable[[], None]) -> Iterator[None]:
    """Within it, on the running loop of the main thread, SIGTERM calls ``stop`` (which
    stops the load as cancelling it does), and the process ends by SIGTERM once the load
    has stopped and the block is left."""
    if not _left_to_default():
        yield
        return
    loop = asyncio.get_running_loop()
    received = threading.Event()

    def on_sigterm() -> None:
        received.set()
        stop()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        handled = True
    except NotImplementedError:  # Windows' event loops take no signal handlers
        handled = False
    if not handled:
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # SIGTERM's default action again
        if received.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
