"""One SpatialDatabase across event loops: one asyncio.run after another (scripts,
workers running a loop per job, a loop per test), and a loop of another thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import JSON, bindparam, text
from sqlalchemy.exc import StatementError

from geosession import SpatialDatabase

TOKEN = "-".join(["t0k", "3n"])
"""A parameter no output shows (its source line in a traceback would show a literal)."""


async def backend_pid(db: SpatialDatabase, hold: float = 0.0) -> int:
    async with db.async_session() as s:
        pid = int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        await asyncio.sleep(hold)
        return pid


def backend_gone(admin: psycopg.Connection[Any], pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchall():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("pre_ping", [True, False])
def test_each_asyncio_run_gets_connections_of_its_own(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
    pre_ping: bool,
) -> None:
    """asyncpg's connections belong to the loop that opened them."""
    db = make_db(pool_size=2, max_overflow=0, pool_pre_ping=pre_ping)
    first = asyncio.run(backend_pid(db))  # the loop ends with the connection pooled
    with caplog.at_level(logging.WARNING):
        second = asyncio.run(backend_pid(db))
        third = asyncio.run(backend_pid(db))
    assert len({first, second, third}) == 3
    assert backend_gone(admin, first)  # closed although its loop had ended
    assert backend_gone(admin, second)
    assert not [r for r in caplog.records if r.name.startswith("sqlalchemy")]
    asyncio.run(db.adispose())  # a later loop closes the last one's connection too
    assert backend_gone(admin, third)


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_a_loop_after_one_that_waited_for_the_pool_waits_too(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """SQLAlchemy's async pool waits on an asyncio queue, bound to the first loop that
    waited on it: the next loop's pool is a new one."""
    db = make_db(async_driver=driver, pool_size=1, max_overflow=0, pool_timeout=5)

    async def two_at_once() -> list[int]:
        return list(await asyncio.gather(backend_pid(db, hold=0.1), backend_pid(db)))

    for _ in range(2):
        first, second = asyncio.run(two_at_once())
        assert first == second  # the second waited for the only connection
    asyncio.run(db.adispose())


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_a_loop_beside_the_pooled_one_gets_connections_of_its_own(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], driver: str
) -> None:
    """A loop of another thread while the pooled one runs (an async view that a threaded
    server runs with async_to_sync): each session its own connection, closed after it."""
    db = make_db(async_driver=driver, pool_size=2, max_overflow=0)
    inside, leave = threading.Event(), threading.Event()
    pooled: list[int] = []

    async def hold_the_loop() -> None:
        pooled.append(await backend_pid(db))
        inside.set()
        while not leave.is_set():
            await asyncio.sleep(0.01)
        pooled.append(await backend_pid(db))  # the pool still serves this loop
        await db.adispose()

    other = threading.Thread(target=asyncio.run, args=(hold_the_loop(),))
    other.start()
    try:
        assert inside.wait(10)

        async def twice() -> list[int]:
            return [await backend_pid(db), await backend_pid(db)]

        async def unsendable() -> str:  # a bind error there showed the parameters
            with pytest.raises((StatementError, TypeError)) as refused:  # psycopg: TypeError
                async with db.async_session() as s:
                    document = bindparam("doc", type_=JSON)  # cannot hold an object()
                    statement = text("SELECT CAST(:doc AS text), :token").bindparams(document)
                    await s.execute(statement, {"doc": {"bad": object()}, "token": TOKEN})
            return "".join(traceback.format_exception(refused.value))  # the causes too

        beside = asyncio.run(twice())
        assert TOKEN not in asyncio.run(unsendable())
    finally:
        leave.set()
        other.join()
    assert len(set(beside)) == 2 and not set(beside) & set(pooled)
    assert pooled[0] == pooled[1]
    assert all(backend_gone(admin, pid) for pid in beside)
    assert db.pool_stats(async_pool=True).checkouts == 2  # the pooled loop's two sessions
    assert asyncio.run(backend_pid(db)) not in pooled  # that loop ended: this one takes over
    asyncio.run(db.adispose())


def test_threads_running_loops_of_their_own_share_one_database(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture
) -> None:
    db = make_db(pool_size=2, max_overflow=0)
    failures: list[BaseException] = []

    async def queries() -> None:
        for _ in range(20):
            await backend_pid(db)
            await asyncio.sleep(0.005)

    def run() -> None:
        try:
            asyncio.run(queries())
        except BaseException as error:  # the assertion below names it
            failures.append(error)

    with caplog.at_level(logging.WARNING):
        threads = [threading.Thread(target=run) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert not [r for r in caplog.records if r.name.startswith("sqlalchemy")]
    asyncio.run(db.adispose())
