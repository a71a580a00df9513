"""SIGTERM during a load: the load stops as Ctrl-C stops it, then the process ends as
SIGTERM would have ended it.

A container stopping or a service manager sends SIGTERM, whose default action ends the
process at once. The chunks in flight roll back, so nothing is lost, but the indexes a
load into an empty table deferred stay dropped until the next run. While ``db.ingest``
runs in the main thread of a process that leaves SIGTERM to its default action, the
signal raises instead: the load ends its chunks in flight and rebuilds its indexes, and
then the signal is sent again with the default action back. A process that handles
SIGTERM itself (the command line does) is left to its own handler.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a load ran (raised in the main thread, as Ctrl-C is)."""


@contextmanager
def sigterm_stops_the_load() -> Iterator[None]:
    """Within it, SIGTERM stops the load and then ends the process (see the module)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
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
