"""Whole-server faults on a cluster of this module: restarts, and running out of connections."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from geosession import ConnectionFailed, SpatialDatabase
from geosession.local import LocalCluster
from tests.faults.helpers import (
    DRIVERS,
    database_for,
    libpq_url,
    run_tx,
    stream_ids,
    wait_until,
)

SLEEPER = "SELECT pg_sleep(30)"


def sleeping(url: str, name: str) -> Any:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event = 'PgSleep'",
            (name,),
        ).fetchone()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_restart_fails_the_session_in_flight_and_no_other(
    make_db: Callable[..., SpatialDatabase],
    dedicated_cluster: LocalCluster,
    cluster_url: str,
    driver: str,
    mode: str,
) -> None:
    name = f"restart-{driver}-{mode}"
    db = make_db(url=cluster_url, driver=driver, application_name=name, pool_size=3)
    sessions = [db.session() for _ in range(3)]
    for handle in sessions:  # three pooled connections that the restart will break
        handle.__enter__().execute(text("SELECT 1"))
    for handle in sessions:
        handle.__exit__(None, None, None)
    failures: list[BaseException] = []

    def in_flight() -> None:
        try:
            with db.session() as s:
                s.execute(text(SLEEPER))
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=in_flight)
    thread.start()
    wait_until(lambda: sleeping(cluster_url, name))
    dedicated_cluster.restart(mode)
    thread.join(timeout=30)
    assert len(failures) == 1 and isinstance(failures[0], ConnectionFailed), failures
    assert failures[0].transient
    for _ in range(4):  # every pooled connection is replaced without the caller noticing
        with db.session() as s:
            assert s.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_on_asyncpg(
    make_db: Callable[..., SpatialDatabase],
    dedicated_cluster: LocalCluster,
    cluster_url: str,
    mode: str,
) -> None:
    name = f"restart-asyncpg-{mode}"
    db = make_db(url=cluster_url, application_name=name, pool_size=3)

    async def one(sql: str = "SELECT 1") -> Any:
        async with db.async_session() as s:
            return (await s.execute(text(sql))).scalar()

    async def scenario() -> None:
        try:
            assert list(await asyncio.gather(one(), one(), one())) == [1, 1, 1]
            flying = asyncio.create_task(one(SLEEPER))
            await asyncio.to_thread(wait_until, lambda: sleeping(cluster_url, name))
            await asyncio.to_thread(dedicated_cluster.restart, mode)
            with pytest.raises(ConnectionFailed):
                await flying
            assert list(await asyncio.gather(one(), one(), one(), one())) == [1, 1, 1, 1]
        finally:
            await db.adispose()

    asyncio.run(scenario())


def away_for_a_moment(cluster: LocalCluster) -> None:
    """Stops ``cluster``, and starts it again half a second later."""
    cluster.stop()
    threading.Timer(0.5, cluster.start).start()


@pytest.mark.parametrize("driver", DRIVERS)
def test_run_transaction_waits_out_a_restart(
    make_db: Callable[..., SpatialDatabase],
    dedicated_cluster: LocalCluster,
    cluster_url: str,
    driver: str,
) -> None:
    """The server goes away for a moment; run_transaction retries until it is back."""
    db = database_for(make_db, driver, url=cluster_url, connect_timeout=2)
    calls: list[int] = []

    def work(s: Session) -> Any:
        calls.append(1)
        if len(calls) == 1:
            away_for_a_moment(dedicated_cluster)
        return s.execute(text("SELECT 42")).scalar()

    assert run_tx(db, driver, work, attempts=10, backoff=(0.1, 0.5)) == 42
    assert len(calls) >= 2
    wait_until(dedicated_cluster.is_running)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_paged_stream_waits_out_a_restart(
    make_db: Callable[..., SpatialDatabase],
    dedicated_cluster: LocalCluster,
    cluster_url: str,
    driver: str,
) -> None:
    """The server goes away between two pages of a response (a restart, a failover): the
    next page waits for it and the read goes on. A read that cannot connect at all fails
    at once, as a session does (a wrong port is not waited for)."""
    with psycopg.connect(libpq_url(cluster_url), autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS restart_points; CREATE TABLE restart_points AS SELECT i AS id, "
            "ST_SetSRID(ST_MakePoint(i, 0), 4326) AS geom FROM generate_series(1, 3000) i; "
            "ALTER TABLE restart_points ADD PRIMARY KEY (id)"
        )
    db = database_for(make_db, driver, url=cluster_url, connect_timeout=2)
    query = "SELECT id, geom FROM restart_points"
    away = functools.partial(away_for_a_moment, dedicated_cluster)
    ids = stream_ids(db, driver, query, away, pages_by="id", batch_size=200)
    assert ids == list(range(1, 3001))
    dedicated_cluster.stop()
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="Check that the server is running"):
        stream_ids(db, driver, query, pages_by="id")
    assert time.monotonic() - started < 2
    dedicated_cluster.start()
    assert len(stream_ids(db, driver, query)) == 3000
    assert db.pool_stats(async_pool=driver == "asyncpg").checked_out == 0


@pytest.fixture
def limited_role(dedicated_cluster: LocalCluster, cluster_url: str) -> Iterator[str]:
    """A URL of the dedicated cluster for a role allowed one connection."""
    with psycopg.connect(libpq_url(cluster_url), autocommit=True) as conn:
        conn.execute("CREATE ROLE limited LOGIN CONNECTION LIMIT 1")
        yield make_url(cluster_url).set(username="limited").render_as_string(False)
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'limited'"
        )
        wait_until(
            lambda: (
                not conn.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE usename = 'limited'"
                ).fetchone()
            )
        )
        conn.execute("DROP ROLE limited")


@pytest.mark.parametrize("driver", DRIVERS)
def test_out_of_connections_is_retried_until_a_slot_frees(
    make_db: Callable[..., SpatialDatabase], limited_role: str, driver: str
) -> None:
    db = database_for(make_db, driver, url=limited_role)
    holder = psycopg.connect(libpq_url(limited_role))  # takes the only slot
    try:
        with pytest.raises(ConnectionFailed, match="connection slots") as info:
            run_tx(db, driver, lambda s: s.execute(text("SELECT 1")).scalar(), attempts=2)
        assert info.value.sqlstate == "53300" and info.value.transient
        assert "gave up after 2 attempts" in str(info.value)
        threading.Timer(0.4, holder.close).start()
        started = time.monotonic()
        result = run_tx(
            db,
            driver,
            lambda s: s.execute(text("SELECT 7")).scalar(),
            backoff=(0.2, 0.5),
            attempts=20,
        )
        assert result == 7 and time.monotonic() - started >= 0.3
    finally:
        holder.close()
