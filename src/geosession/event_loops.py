"""An async engine's pool serves one event loop at a time.

SQLAlchemy's async pool waits on an asyncio queue, and an asyncpg connection can only be
used, and even closed, on the loop that opened it. A second ``asyncio.run`` in one
process (scripts, workers that run a loop per job, test runners with a loop per test)
would otherwise take the first loop's connections and fail with "Event loop is closed",
or wait on a queue "bound to a different event loop". So when another loop takes over
from one that has ended, the database renews its async pools (:class:`LoopClaim`), and
connections of another loop are closed without that loop: on it when it still runs,
else by shutting their socket down, so the server ends the session at once
(:func:`keep_to_own_loops`). A loop running beside the pooled one, in another thread (an
async view run by ``async_to_sync`` in a threaded server), gets an engine without a pool:
a connection of its own for each session, opened and closed on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import weakref
from typing import Any, Literal

from sqlalchemy import Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util.concurrency import in_greenlet

Claim = Literal["ours", "taken over", "elsewhere"]


class LoopClaim:
    """The event loop the async pools of one database serve."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def claim(self) -> Claim:
        """For the running loop: "ours" when the pools serve it (or no loop runs), "taken
        over" when it follows a loop that ended (the caller renews the pools), "elsewhere"
        when a loop running in another thread has them (the caller connects without)."""
        running = _running_loop()
        if running is None or running is self._loop:
            return "ours"
        previous = self._loop
        if previous is not None and previous.is_running():
            return "elsewhere"
        self._loop = running
        return "ours" if previous is None else "taken over"

    def forget(self) -> None:
        """In a forked child: the parent's loop is nothing to it."""
        self._loop = None


_connected: weakref.WeakSet[AsyncEngine] = weakref.WeakSet()
_first_connection = threading.RLock()


async def connected_once(engine: AsyncEngine) -> None:
    """Makes the first connection of an engine without a pool, which loops of several
    threads share, on one loop at a time.

    SQLAlchemy sets its dialect up on an engine's first connection behind an asyncio lock,
    and a loop of another thread waiting on that lock is never woken: such a loop waits
    here instead, on a thread lock, for that one connection. Coroutines of the loop that
    holds it pass (the lock is reentrant) and wait on SQLAlchemy's lock, in their loop.
    """
    if engine in _connected:
        return
    with _first_connection:
        if engine not in _connected:
            async with engine.connect():
                pass
            _connected.add(engine)


async def connected(engine: AsyncEngine, *, pooled: bool) -> AsyncConnection:
    """A connection of ``engine``; of one without a pool, after its first (see
    :func:`connected_once`)."""
    if not pooled:
        await connected_once(engine)
    return await engine.connect()


def keep_to_own_loops(engine: Engine) -> None:
    """Makes the pool of ``engine`` (an AsyncEngine's sync engine) replace an asyncpg
    connection of another loop at checkout, and close connections without awaiting
    where no loop can be awaited on: outside SQLAlchemy's greenlet, or another loop's."""
    dialect = engine.dialect
    dialect.do_ping = _on_own_loop(dialect.do_ping, otherwise=True)  # type: ignore[method-assign]
    dialect.do_close = _on_own_loop(dialect.do_close)  # type: ignore[method-assign]
    dialect.do_terminate = _on_own_loop(dialect.do_terminate)  # type: ignore[method-assign]
    event.listen(engine, "checkout", _replace_if_of_another_loop)


def _replace_if_of_another_loop(dbapi_connection: Any, *_: Any) -> None:
    if _loop_elsewhere(dbapi_connection) is not None:
        raise sa_exc.DisconnectionError("a connection of another event loop")


def _on_own_loop(method: Any, otherwise: Any = None) -> Any:
    """``method`` where it can await on the connection's loop; else (a ping: ``otherwise``,
    the checkout listener replaces the connection) a close that awaits nothing."""

    def on_own_loop(dbapi_connection: Any) -> Any:
        elsewhere = _loop_elsewhere(dbapi_connection)
        if elsewhere is None and in_greenlet():
            return method(dbapi_connection)
        if otherwise is None:
            _close_without_awaiting(dbapi_connection._connection, elsewhere)
        return otherwise

    return on_own_loop


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _loop_elsewhere(dbapi_connection: Any) -> asyncio.AbstractEventLoop | None:
    """The loop of an asyncpg connection when it is not the loop running here."""
    loop = getattr(getattr(dbapi_connection, "_connection", None), "_loop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop):
        return None  # psycopg's: any loop can use it
    return None if loop is _running_loop() else loop


def _close_without_awaiting(connection: Any, elsewhere: asyncio.AbstractEventLoop | None) -> None:
    if getattr(connection, "pgconn", None) is not None:  # psycopg: libpq closes it at once
        connection.pgconn.finish()
    elif elsewhere is None:  # asyncpg on this thread's loop
        connection.terminate()
    elif elsewhere.is_running():
        elsewhere.call_soon_threadsafe(connection.terminate)
    else:
        _shut_down(connection)


def _shut_down(connection: Any) -> None:
    """Ends an asyncpg connection of a loop that no longer runs: its socket is shut down
    (the server ends the session), and its descriptor closes with its transport."""
    transport = getattr(connection, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):  # the server closed it already
            sock.shutdown(socket.SHUT_RDWR)
