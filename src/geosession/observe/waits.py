"""What a wait that ran out says about who held what: a pool with no connection free (its
sizes, its longest holders, this thread's own), and a lock wait that timed out while this
thread holds another connection of the pool (a transaction opened inside another)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

from geosession.errors import GeoSessionError, PoolExhausted, QueryTimeout, endpoint_of
from geosession.observe.leaks import taker
from geosession.observe.metrics import PoolMonitor

if TYPE_CHECKING:
    from geosession.settings import DatabaseSettings


def note_waiting_on_itself(error: GeoSessionError, monitor: PoolMonitor | None) -> None:
    """A lock wait that timed out while this thread holds another connection of the
    pool (the session closed on the way here is returned already): likely a transaction
    opened inside another, waiting for the outer's locks, which only its end releases."""
    if monitor is None or not monitor.holds.held_here():
        return
    if isinstance(error, QueryTimeout) and "statement timeout" not in error.message:
        return  # cancelled, not a wait that ran out
    here = _here()
    error.reword(
        error.message.removesuffix(".")
        + f". This {here} holds another connection of this database too, a session or "
        f"transaction open around this one: if that one holds the lock, this statement "
        f"waited on its own {here} (a transaction opened inside another is a second "
        "transaction, and waits for the first's locks until it ends). Do the work in "
        "the open session (pass it down), or take a savepoint there: s.begin_nested()"
    )


def _here() -> str:
    """What waits on itself: an asyncio task, or a thread."""
    return "task" if taker()[1] is not None else "thread"


def pool_exhausted(
    settings: DatabaseSettings, engine: Engine, monitor: PoolMonitor | None
) -> PoolExhausted:
    """The error for a checkout that waited pool_timeout in vain: the pool's sizes, the
    longest holders, and this thread's own connections (a session opened inside another)."""
    holders = monitor.holders_note() if monitor is not None else ""
    own = monitor.holds.held_here() if monitor else 0
    nested = (
        f"This {_here()} already holds {own} of them and waits for one more: a session, "
        "transaction or stream opened while another of its own is open needs a second "
        f"connection (under load, {_here()}s doing so wait on each other). Pass the open "
        "session down instead. "
        if own
        else ""
    )
    scope = "async with db.async_session()" if engine.dialect.is_async else "with db.session()"
    return PoolExhausted(
        f"No pooled connection became free within pool_timeout={settings.pool_timeout:g}s: all "
        f"{settings.pool_size} connections of the pool (pool_size={settings.pool_size}) and "
        f"{settings.max_overflow} overflow (max_overflow={settings.max_overflow}) are checked out "
        f"(on {endpoint_of(engine)}). {nested}Close sessions promptly "
        f"(`{scope}`), keep slow work outside them, or raise pool_size / "
        "max_overflow" + (f". {holders}" if holders else "")
    )
