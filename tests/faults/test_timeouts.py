"""Timeouts and guards: statement, lock, idle in transaction, pool, long transactions."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from geosession import (
    IdleInTransactionTimeout,
    LockTimeout,
    PoolExhausted,
    QueryTimeout,
    SpatialDatabase,
)
from tests.faults.helpers import DRIVERS, database_for, run_tx


@pytest.mark.parametrize("driver", DRIVERS)
def test_statement_timeout_is_raised_at_once(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    db = database_for(make_db, driver)
    calls: list[int] = []

    def slow(s: Session) -> None:
        calls.append(1)
        s.execute(text("SELECT pg_sleep(5)"))

    with pytest.raises(QueryTimeout, match="statement_timeout"):
        run_tx(db, driver, slow, statement_timeout="100ms")
    assert len(calls) == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_statement_cancelled_by_another_session_says_so(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], driver: str
) -> None:
    """pg_cancel_backend is 57014 like statement_timeout, but raising the timeout would
    not help: the advice names the cancel."""
    db = database_for(make_db, driver, application_name=f"cancelled-{driver}")
    running = (
        "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = %s AND query LIKE %s"
    )

    def cancel_it() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = admin.execute(running, [f"cancelled-{driver}", "%pg_sleep(30)%"]).fetchone()
            if found and found[0]:
                return
            time.sleep(0.05)

    canceller = threading.Thread(target=cancel_it)
    canceller.start()
    try:
        with pytest.raises(QueryTimeout, match="was cancelled: by pg_cancel_backend") as info:
            run_tx(db, driver, lambda s: s.execute(text("SELECT pg_sleep(30)")))
    finally:
        canceller.join()
    assert "statement_timeout" not in str(info.value)


@pytest.fixture
def locked_row(admin: psycopg.Connection[Any], admin_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A row of table ``locked`` held FOR UPDATE by another connection until it commits."""
    admin.execute("CREATE TABLE locked (id int PRIMARY KEY, n int NOT NULL)")
    admin.execute("INSERT INTO locked VALUES (1, 0)")
    holder = psycopg.connect(admin_url)
    holder.execute("SELECT * FROM locked FOR UPDATE")
    try:
        yield holder
    finally:
        holder.close()
        admin.execute("DROP TABLE locked")


def bump(s: Session) -> int:
    return int(s.execute(text("UPDATE locked SET n = n + 1 RETURNING n")).scalar_one())


@pytest.mark.parametrize("driver", DRIVERS)
def test_lock_timeout_is_raised_at_once_unless_asked(
    make_db: Callable[..., SpatialDatabase], locked_row: psycopg.Connection[Any], driver: str
) -> None:
    db = database_for(make_db, driver)
    calls: list[int] = []

    def counted(s: Session) -> int:
        calls.append(1)
        return bump(s)

    with pytest.raises(LockTimeout) as info:
        run_tx(db, driver, counted, lock_timeout="100ms")
    assert len(calls) == 1 and info.value.transient and info.value.sqlstate == "55P03"
    locked_row.commit()  # the other transaction ends: now it can go through
    assert run_tx(db, driver, counted, lock_timeout="100ms") == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_lock_timeout_is_retried_when_asked(
    make_db: Callable[..., SpatialDatabase], locked_row: psycopg.Connection[Any], driver: str
) -> None:
    db = database_for(make_db, driver)
    calls: list[int] = []

    def counted(s: Session) -> int:
        calls.append(1)
        if len(calls) == 2:
            locked_row.commit()  # released while attempt 2 is under way
        return bump(s)

    options: dict[str, Any] = {"lock_timeout": "100ms", "retry_lock_timeout": True}
    assert run_tx(db, driver, counted, backoff=(0.01, 0.05), **options) == 1
    assert len(calls) == 2


@pytest.mark.parametrize("driver", DRIVERS)
def test_idle_in_transaction_timeout_is_named_on_every_driver(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    db = database_for(make_db, driver, idle_in_transaction_session_timeout="200ms")
    calls: list[int] = []

    def dawdles(s: Session) -> None:
        calls.append(1)
        s.execute(text("SELECT 1"))
        time.sleep(0.6)  # slow work inside the transaction: the server ends the session
        s.execute(text("SELECT 2"))

    with pytest.raises(IdleInTransactionTimeout, match="idle") as info:
        run_tx(db, driver, dawdles)
    assert len(calls) == 1  # a rerun would idle just the same
    assert info.value.sqlstate == "25P03"


def test_pool_exhausted_is_raised_at_once(make_db: Callable[..., SpatialDatabase]) -> None:
    db = make_db(pool_size=1, max_overflow=0, pool_timeout=0.3)
    calls: list[int] = []
    with db.session() as holder:
        holder.execute(text("SELECT 1"))
        started = time.monotonic()
        with pytest.raises(PoolExhausted, match="pool_size=1"):
            db.run_transaction(lambda s: calls.append(1))
        assert time.monotonic() - started < 1  # one pool_timeout, not one per attempt
    assert calls == []


def test_pool_exhausted_is_raised_at_once_on_asyncpg(
    make_db: Callable[..., SpatialDatabase],
) -> None:
    db = make_db(pool_size=1, max_overflow=0, pool_timeout=0.3)

    async def scenario() -> None:
        try:
            async with db.async_session() as holder:
                await holder.execute(text("SELECT 1"))
                started = time.monotonic()
                with pytest.raises(PoolExhausted):
                    await db.async_run_transaction(lambda s: s.execute(text("SELECT 1")))
                assert time.monotonic() - started < 1
        finally:
            await db.adispose()

    asyncio.run(scenario())


def line_of_caller() -> int:
    return sys._getframe(1).f_lineno


def test_long_transaction_warning_names_where_it_was_opened(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture
) -> None:
    db = make_db(long_transaction_warning="100ms")
    with caplog.at_level(logging.WARNING, logger="geosession"):
        with db.session() as s:
            s.execute(text("SELECT 1"))
        with db.transaction() as s:
            opened_at = line_of_caller() - 1  # the line of the `with`
            time.sleep(0.15)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # the short transaction passes unremarked
    assert f"{__file__}:{opened_at} in test_long_transaction" in warnings[0]
    assert "long_transaction_warning=100ms" in warnings[0]


def test_long_transaction_warning_on_async_sessions(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture
) -> None:
    db = make_db(long_transaction_warning="100ms")

    async def scenario() -> int:
        try:
            async with db.async_session() as s:
                line = line_of_caller() + 1
                await s.execute(text("SELECT 1"))
                await asyncio.sleep(0.15)
            return line
        finally:
            await db.adispose()

    with caplog.at_level(logging.WARNING, logger="geosession"):
        line = asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{__file__}:{line} in scenario" in warnings[0]
