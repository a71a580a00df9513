"""A forked process gets connection pools of its own.

gunicorn with ``--preload``, Celery's prefork pool and ``multiprocessing`` on Linux fork a
process that may already hold pooled connections. The child inherits them as sockets it
shares with its parent: a query from each at once mixes their messages on one server
session, and a close or a rollback from the child ends or undoes the parent's work.

After a fork, every ``SpatialDatabase`` alive in the child renews its pools
(``Engine.dispose(close=False)``, SQLAlchemy's advice for forked processes), so the child
connects afresh on first use. What the parent's pools and sessions held is kept
referenced here for the life of the child: nothing of it is ever reset, closed or
finalized from the child, whichever driver made it. A connection lent to a session at the
moment of the fork is cut off in the child (its descriptor there becomes a socket whose
other end is closed), so a session the child took over fails as a lost connection rather
than talk over the parent's.
"""

from __future__ import annotations

import os
import socket
import weakref
from collections.abc import Callable
from typing import Any

_renewals: list[weakref.WeakMethod[Callable[[], None]]] = []
_inherited: list[object] = []
_cut_off: weakref.WeakSet[Any] = weakref.WeakSet()


def on_fork(method: Callable[[], None]) -> None:
    """Runs the bound ``method`` in every child forked while its object is alive."""
    _renewals[:] = [ref for ref in _renewals if ref() is not None]
    _renewals.append(weakref.WeakMethod(method))


def keep_inherited(thing: object) -> None:
    """Keeps the parent's ``thing`` (a pool, a session registry) referenced for good."""
    _inherited.append(thing)


def cut_off(connection: Any) -> None:
    """Replaces this process's descriptor of a DBAPI ``connection`` (psycopg, psycopg2) by
    a dead socket; the parent's descriptor, and its server session, are unchanged."""
    try:
        descriptor = int(connection.fileno())
    except Exception:  # closed already, or asyncpg's (bound to the parent's event loop)
        return
    ours, peer = socket.socketpair()  # a socket whose other end is gone: reads end at once
    peer.close()
    with ours:
        os.dup2(ours.fileno(), descriptor)
    _cut_off.add(connection)


def was_cut_off(connection: Any) -> bool:
    """Whether ``connection`` is one :func:`cut_off` took from a session of the parent."""
    return connection is not None and connection in _cut_off


def _renew_all() -> None:
    for ref in list(_renewals):
        method = ref()
        if method is not None:
            method()


os.register_at_fork(after_in_child=_renew_all)
