"""Test fixtures: a real PostGIS, a fresh database per run, and leak checks after every test.

The server is GEOSESSION_TEST_SERVER_URL when set, else the embedded cluster (started if
needed). Without either the tests fail: they never skip for want of a database.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from geosession import SpatialDatabase

TEST_DATABASE = f"geosession_test_{os.getpid()}"  # concurrent runs never collide


def _server_url() -> str:
    url = os.environ.get("GEOSESSION_TEST_SERVER_URL")
    if url:
        return url
    from geosession.local import LocalCluster

    return LocalCluster().start()


def _libpq(url: str, database: str | None = None) -> str:
    """A psycopg conninfo for a SQLAlchemy URL (optionally for another database)."""
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url() -> str:
    """SQLAlchemy URL of the server's maintenance database (superuser)."""
    return _server_url()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database with PostGIS, dropped at the end of the run."""
    with psycopg.connect(_libpq(server_url), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {TEST_DATABASE}")
    with psycopg.connect(_libpq(server_url, TEST_DATABASE), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    test_url = make_url(server_url).set(drivername="postgresql", database=TEST_DATABASE)
    yield test_url.render_as_string(hide_password=False)  # no driver: tests choose theirs
    with psycopg.connect(_libpq(server_url), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")


@pytest.fixture(scope="session")
def admin(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit psycopg connection to the test database, for checks and faults."""
    with psycopg.connect(_libpq(database_url), autocommit=True) as conn:
        yield conn


_created: list[SpatialDatabase] = []


@pytest.fixture
def postgis_elsewhere(server_url: str) -> Iterator[str]:
    """A database with PostGIS in a schema of its own, not on the search_path."""
    admin_url = make_url(server_url).set(drivername="postgresql")
    url = make_url(server_url).set(database="geosession_postgis_elsewhere")
    with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS geosession_postgis_elsewhere WITH (FORCE)")
        c.execute("CREATE DATABASE geosession_postgis_elsewhere")
        plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain, autocommit=True) as elsewhere:
            elsewhere.execute("CREATE SCHEMA gis")
            elsewhere.execute("CREATE EXTENSION postgis SCHEMA gis")
        yield url.render_as_string(hide_password=False)
        c.execute("DROP DATABASE geosession_postgis_elsewhere WITH (FORCE)")


@pytest.fixture
def make_db(database_url: str) -> Iterator[Callable[..., SpatialDatabase]]:
    """Factory for SpatialDatabase objects on the test database; disposed after the test."""

    def make(url: str | None = None, **settings: Any) -> SpatialDatabase:
        db = SpatialDatabase(url or database_url, **settings)
        _created.append(db)
        return db

    yield make


@pytest.fixture
def db(make_db: Callable[..., SpatialDatabase]) -> SpatialDatabase:
    """A SpatialDatabase on the test database with small pools, so leaks show quickly."""
    return make_db(pool_size=3, max_overflow=1, pool_timeout=5)


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test: no connection checked out, no backend idle in transaction."""
    uses_database = "database_url" in request.fixturenames
    admin = request.getfixturevalue("admin") if uses_database else None
    yield
    try:
        leaked = [db for db in _created if _checked_out(db)]
        assert not leaked, f"connections left checked out: {[_pools(db) for db in leaked]}"
        if admin is not None:
            idle = _idle_in_transaction(admin)
            assert not idle, f"backends left idle in transaction: {idle}"
    finally:
        for db in _created:
            db.dispose()
        _created.clear()


def _checked_out(db: SpatialDatabase) -> bool:
    """Whether a pool of ``db`` has a connection lent."""
    return any(stats.checked_out for stats in _pools(db))


def _pools(db: SpatialDatabase) -> list[Any]:
    """The stats of every pool of ``db``: the primary's, the async engine's, the ingest's
    own (psycopg2 databases) and the replicas'."""
    others = [m.stats() for m in (db.metrics.async_pool, db.metrics.ingest_pool) if m]
    return [db.pool_stats(), *others, *db.replica_pool_stats()]


def _idle_in_transaction(admin: psycopg.Connection[Any], grace: float = 2.0) -> list[Any]:
    """Backends of the test database idle in a transaction, after ``grace`` seconds.

    A connection the test invalidated or closed mid-transaction is gone on the client at
    once, but its backend shows as idle in transaction until the server reads the
    disconnect; a leaked one stays.
    """
    deadline = time.monotonic() + grace
    while True:
        idle = admin.execute(
            "SELECT pid, application_name, query FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state LIKE 'idle in transaction%'"
        ).fetchall()
        if not idle or time.monotonic() > deadline:
            return idle
        time.sleep(0.05)


@pytest.fixture
def row_trigger(db: SpatialDatabase) -> Iterator[Callable[[str, str, str], None]]:
    """``row_trigger(table, "BEFORE INSERT", body)``: a PL/pgSQL row trigger running
    ``body`` (its function ends with RETURN NEW unless the body returns); dropped with its
    function after the test."""
    functions: list[str] = []

    def create(table: str, when: str, body: str) -> None:
        function = f"{table}_trigger_{len(functions)}"
        functions.append(function)
        with db.transaction() as s:
            s.execute(
                text(
                    f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$BEGIN {body} RETURN NEW; END$$"
                )
            )
            s.execute(
                text(
                    f"CREATE TRIGGER {function} {when} ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION {function}()"
                )
            )

    yield create
    with db.transaction() as s:
        for function in functions:
            s.execute(text(f"DROP FUNCTION IF EXISTS {function}() CASCADE"))
