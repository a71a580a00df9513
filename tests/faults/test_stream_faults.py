"""A stream whose backend dies, or whose consumer is too slow: a geosession error, the
connection released, and the next stream works."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from geosession import ConnectionFailed, IdleInTransactionTimeout, SpatialDatabase
from tests.faults.helpers import (
    DRIVERS,
    database_for,
    stream_ids,
    terminate,
    terminate_when,
    wait_until,
)

ROWS = 20_000
QUERY = "SELECT id, geom FROM sf_points ORDER BY id"


@pytest.fixture
def points(admin: psycopg.Connection[Any]) -> Iterator[None]:
    admin.execute("DROP TABLE IF EXISTS sf_points")
    admin.execute(
        "CREATE TABLE sf_points AS SELECT i AS id, "
        "ST_SetSRID(ST_MakePoint(i % 360 - 180, i % 180 - 90), 4326) AS geom "
        f"FROM generate_series(1, {ROWS}) i; ALTER TABLE sf_points ADD PRIMARY KEY (id)"
    )
    yield
    admin.execute("DROP TABLE sf_points")


def consume(db: SpatialDatabase, driver: str, after_first: Callable[[], None]) -> int:
    """Streams QUERY in batches of 100 on ``driver``, calling ``after_first`` once."""
    return len(stream_ids(db, driver, QUERY, after_first, batch_size=100))


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

    with pytest.raises(ConnectionFailed, match=r"Read in pages \(pages_by=") as caught:
        consume(db, driver, kill)  # a cursor cannot go on from where it was
    assert caught.value.transient and pool_is_empty(db, driver)
    assert "run_transaction" not in str(caught.value)  # a transaction's retry cannot resume it
    assert consume(db, driver, lambda: None) == ROWS  # pre-ping replaced the connection


@pytest.mark.usefixtures("points")
@pytest.mark.parametrize("driver", DRIVERS)
def test_a_page_whose_backend_is_terminated_is_read_again(
    make_db: Callable[..., SpatialDatabase],
    admin_url: str,
    caplog: pytest.LogCaptureFixture,
    driver: str,
) -> None:
    """A page is a query in a transaction of its own: one whose backend is terminated
    (an administrator's pg_terminate_backend, a failover) is read again on a fresh
    connection after the last key delivered, and the caller sees every row once."""
    name = f"pages-{uuid.uuid4().hex[:8]}"
    db = database_for(make_db, driver, application_name=name)
    query = "SELECT id, geom, CASE WHEN id = 1500 THEN pg_sleep(0.3) END AS pause FROM sf_points"
    caplog.set_level(logging.INFO, logger="geosession.read")
    terminator = terminate_when(admin_url, name, "wait_event = 'PgSleep'")
    ids = stream_ids(db, driver, query, pages_by="id", batch_size=100)
    terminator.join(timeout=10)
    assert ids == list(range(1, ROWS + 1)) and pool_is_empty(db, driver)
    (again,) = [r.getMessage() for r in caplog.records if "again" in r.getMessage()]
    assert again.startswith("Reading a page again in 0.1 s (attempt 2 of 8): ConnectionFailed")


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
