"""Forked processes (gunicorn --preload, Celery prefork, multiprocessing on Linux) get pools
of their own; the parent's connections are never used, reset or closed by a child."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from geosession import GeoSessionError, SpatialDatabase

TABLE = "fork_points"


@pytest.fixture
def points(db: SpatialDatabase) -> Iterator[str]:
    with db.transaction() as s:
        s.execute(text(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, geom geometry(Point, 4326))"))
    yield TABLE
    with db.transaction() as s:
        s.execute(text(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_rejected"))


def in_child(work: Callable[[], Any]) -> Any:
    """Runs ``work`` in a forked process and returns what it returned (or fails the test
    with the child's traceback)."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def run() -> None:
        try:
            send.send(("ok", work()))
        except BaseException:
            send.send(("error", traceback.format_exc()))

    child = ctx.Process(target=run)
    child.start()
    outcome, value = receive.recv()
    child.join(30)
    assert outcome == "ok", f"the child failed:\n{value}"
    return value


def backend(db: SpatialDatabase) -> int:
    with db.session() as s:
        return int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_a_forked_child_connects_afresh_and_leaves_the_parents_connections_alone(
    make_db: Callable[..., SpatialDatabase], points: str, driver: str
) -> None:
    db = make_db(driver=driver, pool_size=2, max_overflow=0)
    db.ingest(points, [{"id": 0, "geom": "POINT(0 0)"}], progress=False)  # its pool too
    scoped = db.scoped()  # the forking thread's scoped session, in a transaction
    scoped.execute(text(f"INSERT INTO {points} VALUES (-1, 'SRID=4326;POINT(1 1)')"))
    in_transaction = scoped.execute(text("SELECT pg_backend_pid()")).scalar_one()
    pooled = backend(db)  # the other connection, idle in the pool
    parents: list[int] = []

    def parent_queries() -> None:  # the parent keeps working while the child does
        for _ in range(100):
            parents.append(backend(db))

    def child() -> dict[str, Any]:
        inherited = db.pool_stats()
        backends = {backend(db) for _ in range(100)}
        report = db.ingest(
            points, [{"id": n, "geom": f"POINT({n} 1)"} for n in range(1, 301)], progress=False
        )
        mine = db.scoped().execute(text("SELECT pg_backend_pid()")).scalar_one()
        db.scoped.remove()
        stats = db.pool_stats()
        return {
            "backends": backends | {mine},
            "inserted": report.inserted,
            "counted_from": (inherited.checkouts, inherited.checked_out),
            "checkouts": stats.checkouts,
            "checked_out": stats.checked_out,
        }

    worker = threading.Thread(target=parent_queries)
    worker.start()
    try:
        found = in_child(child)
    finally:
        worker.join()
        scoped.commit()  # the parent's transaction, which the child did not roll back
        db.scoped.remove()
    assert not found["backends"] & {pooled, in_transaction}  # connections of its own
    assert found["inserted"] == 300 and found["checked_out"] == 0
    assert found["counted_from"] == (0, 0)  # its own pool's counts, not the parent's
    assert found["checkouts"] > 100
    assert set(parents) == {pooled}  # the parent's pooled connection, never lost
    assert db.pool_stats().invalidations == 0
    with db.session() as s:
        count, lowest = s.execute(text(f"SELECT count(*), min(id) FROM {points}")).one()
    assert (count, lowest) == (302, -1)


def test_a_forked_child_gets_its_own_async_pool(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any]
) -> None:
    db = make_db()

    async def backend_pid() -> int:
        async with db.async_session() as s:
            return int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    async def in_child_loop() -> int:
        pid = await backend_pid()
        await db.adispose()
        return pid

    parent = asyncio.run(backend_pid())  # pooled, bound to a loop that is closed now
    child = in_child(lambda: asyncio.run(in_child_loop()))
    assert child != parent
    alive = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [parent]).fetchone()
    assert alive is not None  # the child did not close the parent's connection


def test_a_forked_child_gets_its_own_replica_pools(
    make_db: Callable[..., SpatialDatabase], database_url: str
) -> None:
    db = make_db(replica_urls=[database_url])  # the primary standing in for a replica

    def replica_backend() -> int:
        with db.session(replica=True) as s:
            return int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())

    parent = replica_backend()
    assert in_child(replica_backend) != parent
    assert replica_backend() == parent and db.replica_pool_stats()[0].invalidations == 0


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_a_session_open_at_the_fork_fails_in_the_child_and_goes_on_in_the_parent(
    make_db: Callable[..., SpatialDatabase], points: str, driver: str
) -> None:
    db = make_db(driver=driver)

    with db.session() as s:
        s.execute(text(f"INSERT INTO {points} VALUES (1, 'SRID=4326;POINT(1 1)')"))

        def child(work: Callable[[], Any]) -> Callable[[], str]:
            def attempt() -> str:
                try:
                    work()
                except GeoSessionError as error:
                    s.close()  # nothing reaches the parent's server session
                    return f"{type(error).__name__}: {error}"
                return "the parent's connection answered the child"

            return attempt

        for work in (lambda: s.execute(text("SELECT 1")), s.commit):  # not an unknown outcome
            failed = in_child(child(work))
            assert failed.startswith("ConnectionFailed: This session's connection belongs to")
            assert "Open sessions in the child" in failed
        assert s.execute(text(f"SELECT count(*) FROM {points}")).scalar_one() == 1
        s.commit()
    assert db.pool_stats().invalidations == 0
