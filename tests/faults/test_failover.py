"""A failover: the primary stops, its standby is promoted, and a URL listing both hosts
with target_session_attrs=read-write follows it, on every driver."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from geosession import SpatialDatabase
from geosession.local import LocalCluster
from tests.faults.helpers import DRIVERS, Standby, database_for, libpq_url, run_tx, wait_until


@pytest.fixture
def primary_and_standby() -> Iterator[tuple[str, Standby, LocalCluster]]:
    """A primary of this test only (it will be stopped) and a hot standby of it."""
    home = Path(tempfile.mkdtemp(dir="/var/lib", prefix="geosession-failover-"))
    primary = LocalCluster(home=home)
    standby: Standby | None = None
    try:
        url = primary.start()
        standby = Standby(url)
        standby.start()
        yield url, standby, primary
    finally:
        try:
            primary.stop()
            if standby is not None:
                standby.stop()
        finally:
            shutil.rmtree(home, ignore_errors=True)
            if standby is not None:
                shutil.rmtree(standby.home, ignore_errors=True)


def insert(n: int) -> Callable[[Session], int]:
    """A write; it returns the port of the server that took it."""

    def write(s: Session) -> int:
        s.execute(text("INSERT INTO moved VALUES (:n)"), {"n": n})
        return int(s.execute(text("SELECT inet_server_port()")).scalar_one())

    return write


@pytest.mark.parametrize("driver", DRIVERS)
def test_after_a_failover_the_host_list_reaches_the_promoted_standby(
    make_db: Callable[..., SpatialDatabase],
    primary_and_standby: tuple[str, Standby, LocalCluster],
    driver: str,
) -> None:
    url, standby, primary = primary_and_standby
    first = make_url(url)
    hosts = f"127.0.0.1:{first.port},127.0.0.1:{standby.port}"
    listed = f"postgresql://{first.username}@{hosts}/{first.database}"
    db = database_for(
        make_db, driver, url=listed + "?target_session_attrs=read-write", connect_timeout=3
    )
    run_tx(db, driver, lambda s: s.execute(text("CREATE TABLE moved (n int)")))
    assert run_tx(db, driver, insert(1)) == first.port
    with psycopg.connect(libpq_url(standby.url), autocommit=True) as on_standby:
        made = "SELECT to_regclass('moved') IS NOT NULL"
        wait_until(lambda: on_standby.execute(made).fetchone() == (True,))
        wait_until(lambda: on_standby.execute("SELECT count(*) FROM moved").fetchone() == (1,))
    primary.stop()  # the pooled connections die with it
    standby.promote()
    assert run_tx(db, driver, insert(2)) == standby.port  # the next write, on the new primary
    rows = run_tx(db, driver, lambda s: s.execute(text("SELECT n FROM moved ORDER BY n")).all())
    assert [n for (n,) in rows] == [1, 2]
