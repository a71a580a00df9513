"""A stream whose backend dies, or whose consumer is too slow: a geosession error, the
connection released, and the next stream works."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from geosession import ConnectionFailed, IdleInTransactionTimeout, SpatialDatabase
from tests.faults.helpers import DRIVERS, database_for, terminate, wait_until

ROWS = 20_000
QUERY = "SELECT id, geom FROM sf_points ORDER BY id"


@pytest.fixture
def points(admin: psycopg.Connection[Any]) -> Iterator[None]:
    admin.execute("DROP TABLE IF EXISTS sf_points")
    admin.execute(
        "CREATE TABLE sf_points AS SELECT i AS id, "
        "ST_SetSRID(ST_MakePoint(i % 360 - 180, i % 180 - 90), 4326) AS geom "
        f"FROM generate_series(1, {ROWS}) i"
    )
    yield
    admin.execute("DROP TABLE sf_points")


def consume(db: SpatialDatabase, driver: str, after_first: Callable[[], None]) -> int:
    """Streams QUERY in batches of 100 on ``driver``, calling ``after_first`` once."""
    if driver != "asyncpg":
        seen = 0
        for _ in db.stream(QUERY, batch_size=100):
            seen += 1
            if seen == 1:
                after_first()
        return seen

    async def run() -> int:
        seen = 0
        try:
            async for _ in db.async_stream(QUERY, batch_size=100):
                seen += 1
                if seen == 1:
                    await asyncio.to_thread(after_first)
            return seen
        finally:
            await db.adispose()

    return asyncio.run(run())


def pool_is_empty(db: SpatialDatabase, driver: str) -> bool:
    return db.pool_stats(async_pool=driver == "asyncpg").checked_out == 0


@pytest.mark.usefixtures("points")
@pytest.mark.parametrize("driver", DRIVERS)
def test_backend_terminated_mid_stream(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], driver: str
) -> None:
    name = f"stream-{uuid.uuid4().hex[:8]}"
    db = database_for(make_db, driver, application_name=name)

    def kill() -> None:
        assert terminate(admin, name) == 1

    with pytest.raises(ConnectionFailed) as caught:
        consume(db, driver, kill)
    assert caught.value.transient and pool_is_empty(db, driver)
    assert consume(db, driver, lambda: None) == ROWS  # pre-ping replaced the connection


@pytest.mark.usefixtures("points")
@pytest.mark.parametrize("driver", DRIVERS)
def test_consumer_slower_than_idle_in_transaction_timeout(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], driver: str
) -> None:
    name = f"stream-{uuid.uuid4().hex[:8]}"
    db = database_for(
        make_db, driver, application_name=name, idle_in_transaction_session_timeout="500ms"
    )

    def dawdle() -> None:  # until the server has ended the session
        wait_until(lambda: not _backend_exists(admin, name), timeout=10)
        time.sleep(0.1)

    with pytest.raises(IdleInTransactionTimeout, match="idle_in_transaction_session_timeout"):
        consume(db, driver, dawdle)
    assert pool_is_empty(db, driver)
    assert consume(db, driver, lambda: None) == ROWS


def _backend_exists(admin: psycopg.Connection[Any], name: str) -> bool:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
    ).fetchone()
    return bool(row and row[0])
