"""Two transactions that collide: a deadlock and a serialization failure, each rerun once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from geosession import LockTimeout, QueryTimeout, SpatialDatabase
from tests.faults.helpers import DRIVERS, database_for, run_tx


@pytest.fixture
def accounts(admin: psycopg.Connection[Any]) -> Iterator[str]:
    admin.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)")
    admin.execute("INSERT INTO accounts VALUES (1, 100), (2, 100)")
    yield "accounts"
    admin.execute("DROP TABLE accounts")


def balances(admin: psycopg.Connection[Any]) -> list[int]:
    return [r[0] for r in admin.execute("SELECT balance FROM accounts ORDER BY id").fetchall()]


def collide(
    make_db: Callable[..., SpatialDatabase],
    driver: str,
    work: Callable[[Session, int, int], None],
    **options: Any,
) -> list[int]:
    """Runs ``work(session, first, second)`` as (1, 2) and (2, 1) at once; attempts of each.

    Both first attempts meet at a barrier after their first statement, so they collide;
    every database is made with a short deadlock_timeout so the server notices quickly.
    """
    barrier = threading.Barrier(2, timeout=10)
    attempts = [0, 0]

    def worker(index: int) -> None:
        db = database_for(make_db, driver, server_settings={"deadlock_timeout": "50ms"})
        first, second = (1, 2) if index == 0 else (2, 1)

        def attempt(s: Session) -> None:
            attempts[index] += 1
            work(s, first, second)
            if attempts[index] == 1:
                barrier.wait()
            work(s, second, first)

        run_tx(db, driver, attempt, backoff=(0.01, 0.05), **options)

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(worker, 0), pool.submit(worker, 1)]:
            future.result()
    return attempts


@pytest.mark.parametrize("driver", DRIVERS)
def test_deadlock_is_rerun(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    accounts: str,
    driver: str,
) -> None:
    def take_ten(s: Session, account: int, _: int) -> None:
        s.execute(
            text("UPDATE accounts SET balance = balance - 10 WHERE id = :id"), {"id": account}
        )

    attempts = collide(make_db, driver, take_ten)
    assert sorted(attempts) == [1, 2]  # the server aborted one of the two, which ran again
    assert balances(admin) == [80, 80]  # every update applied exactly once


@pytest.mark.parametrize("driver", DRIVERS)
def test_serialization_failure_is_rerun(
    make_db: Callable[..., SpatialDatabase],
    admin: psycopg.Connection[Any],
    accounts: str,
    driver: str,
) -> None:
    """Write skew: each reads both balances, then moves the total into its own account."""

    def read_or_write(s: Session, account: int, other: int) -> None:
        if s.info.get("read"):
            s.execute(
                text("UPDATE accounts SET balance = :total WHERE id = :id"),
                {"total": s.info.pop("read"), "id": account},
            )
            s.execute(text("UPDATE accounts SET balance = 0 WHERE id = :id"), {"id": other})
        else:
            total = s.execute(text("SELECT sum(balance) FROM accounts")).scalar_one()
            s.info["read"] = int(total)

    attempts = collide(make_db, driver, read_or_write, isolation="SERIALIZABLE")
    assert min(attempts) == 1 and max(attempts) >= 2  # the loser may collide once more
    assert sorted(balances(admin)) == [0, 200]  # as if one ran after the other


def test_a_transaction_waiting_on_its_own_threads_outer_one_says_so(
    make_db: Callable[..., SpatialDatabase], accounts: str, admin: psycopg.Connection[Any]
) -> None:
    """A transaction opened inside another of the same thread is a second transaction: it
    waits for the outer's row lock until lock_timeout (or statement_timeout) and says that
    this thread holds another connection; a lock of another client's says nothing of it."""
    db = make_db(statement_timeout="1s")
    with db.transaction() as outer:
        outer.execute(text("UPDATE accounts SET balance = balance - 1 WHERE id = 1"))
        with pytest.raises(LockTimeout) as locked, db.transaction(lock_timeout="200ms") as inner:
            inner.execute(text("UPDATE accounts SET balance = balance + 1 WHERE id = 1"))
        with pytest.raises(QueryTimeout) as timed_out, db.transaction() as inner:
            inner.execute(text("UPDATE accounts SET balance = balance + 1 WHERE id = 1"))
    for error in (locked.value, timed_out.value):
        assert "This thread holds another connection of this database too" in str(error)
        assert "s.begin_nested()" in str(error)
    assert balances(admin) == [99, 100]
    with psycopg.connect(admin.info.dsn, autocommit=False) as other:
        other.execute("UPDATE accounts SET balance = 0 WHERE id = 2")
        with pytest.raises(LockTimeout) as elsewhere, db.transaction(lock_timeout="200ms") as s:
            s.execute(text("UPDATE accounts SET balance = 1 WHERE id = 2"))
        other.rollback()
    assert "This thread holds" not in str(elsewhere.value)
    assert db.pool_stats().checked_out == 0


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_an_async_transaction_waiting_on_its_own_tasks_outer_one_says_so(
    make_db: Callable[..., SpatialDatabase],
    accounts: str,
    admin: psycopg.Connection[Any],
    driver: str,
) -> None:
    """The async twin: said nothing of the task's own outer transaction. Another task's
    lock is no sign of it, though tasks share their thread."""
    db = make_db(async_driver=driver)
    update = text("UPDATE accounts SET balance = balance + 1 WHERE id = 1")

    async def nested() -> str:
        async with db.async_transaction() as outer:
            await outer.execute(update)
            with pytest.raises(LockTimeout) as locked:
                async with db.async_transaction(lock_timeout="200ms") as inner:
                    await inner.execute(update)
        return str(locked.value)

    async def beside() -> str:
        held, done = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with db.async_transaction() as s:
                await s.execute(update)
                held.set()
                await done.wait()

        holding = asyncio.create_task(holder())
        await held.wait()
        try:
            with pytest.raises(LockTimeout) as locked:
                async with db.async_transaction(lock_timeout="200ms") as s:
                    await s.execute(update)
        finally:
            done.set()
            await holding
        return str(locked.value)

    async def main() -> tuple[str, str]:
        try:
            return await nested(), await beside()
        finally:
            await db.adispose()

    own, other = asyncio.run(main())
    assert "This task holds another connection of this database too" in own
    assert "waited on its own task" in own and "s.begin_nested()" in own
    assert "This task holds" not in other and "This thread holds" not in other
    assert balances(admin) == [102, 100]  # the outer transaction's and the holder's
