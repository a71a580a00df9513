"""Fixtures for fault tests: the test database's admin URL, and a dedicated cluster.

Faults that touch the whole server (restarts, connection limits) run on a cluster made
for the test module and removed after it, never on the shared one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from geosession.local import LocalCluster
from tests.faults.helpers import libpq_url


@pytest.fixture
def admin_url(database_url: str) -> str:
    """libpq URL of the test database (superuser)."""
    return libpq_url(database_url)


@pytest.fixture(scope="module")
def dedicated_cluster() -> Iterator[LocalCluster]:
    """A PostGIS cluster of this test module only: restart it, exhaust it, nobody minds."""
    home = Path(tempfile.mkdtemp(dir="/var/lib", prefix="geosession-faults-"))
    cluster = LocalCluster(home=home)
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def cluster_url(dedicated_cluster: LocalCluster) -> Iterator[str]:
    """URL of the dedicated cluster's database; no backend may be left idle in transaction."""
    url = dedicated_cluster.start()  # a test may have left it stopped
    yield url
    with psycopg.connect(libpq_url(dedicated_cluster.start()), autocommit=True) as conn:
        idle = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity "
            "WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert not idle, f"backends left idle in transaction: {idle}"
