"""A network that stops answering: every driver fails within a bound instead of hanging.

asyncpg bounds every command with command_timeout. psycopg and psycopg2 (libpq) rely on
TCP: keepalives notice a peer that vanished, tcp_user_timeout drops a connection whose
sent data stays unacknowledged. A user-space proxy cannot stop its own kernel from
acknowledging, so the libpq test hangs the proxy while the client sends more than the
socket buffers hold: the window closes and tcp_user_timeout must end the wait.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from geosession import ConnectionFailed, DatabaseSettings, SpatialDatabase
from geosession.engine import asyncpg_command_timeout
from tests.faults.proxy import TcpProxy, tcp_proxy

BIG = b"x" * 32_000_000  # more than the client's and the proxy's socket buffers together


@pytest.fixture
def proxy(database_url: str) -> Iterator[TcpProxy]:
    url = make_url(database_url)
    with tcp_proxy((url.host or "127.0.0.1", url.port or 5432)) as running:
        yield running


def through(database_url: str, proxy: TcpProxy) -> str:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


def test_asyncpg_command_timeout_bounds_a_hung_network(
    make_db: Callable[..., SpatialDatabase], database_url: str, proxy: TcpProxy
) -> None:
    db = make_db(url=through(database_url, proxy), command_timeout=1, connect_timeout=1)

    async def scenario() -> None:
        try:
            async with db.async_session() as s:
                assert (await s.execute(text("SELECT 1"))).scalar() == 1
                proxy.hang()
                started = time.monotonic()
                with pytest.raises(ConnectionFailed, match="command_timeout") as info:
                    await s.execute(text("SELECT 2"))
                assert 0.9 < time.monotonic() - started < 3
                assert info.value.transient
            proxy.resume()
            async with db.async_session() as s:  # the hung connection was dropped
                assert (await s.execute(text("SELECT 3"))).scalar() == 3
        finally:
            await db.adispose()

    asyncio.run(scenario())


def test_asyncpg_pooled_connection_that_hangs_is_replaced_at_checkout(
    make_db: Callable[..., SpatialDatabase], database_url: str, proxy: TcpProxy
) -> None:
    db = make_db(url=through(database_url, proxy), command_timeout=1, connect_timeout=1)

    async def select(n: int) -> Any:
        async with db.async_session() as s:
            return (await s.execute(text(f"SELECT {n}"))).scalar()

    async def scenario() -> None:
        try:
            assert await select(1) == 1  # one idle connection in the pool
            proxy.hang()
            started = time.monotonic()
            with pytest.raises(ConnectionFailed):  # pre-ping, then a new connection: both hang
                await select(2)
            assert time.monotonic() - started < 4
            proxy.resume()
            assert await select(3) == 3
        finally:
            await db.adispose()

    asyncio.run(scenario())


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_libpq_tcp_user_timeout_bounds_a_hung_network(
    make_db: Callable[..., SpatialDatabase], database_url: str, proxy: TcpProxy, driver: str
) -> None:
    db = make_db(url=through(database_url, proxy), driver=driver, tcp_user_timeout=1)
    with db.session() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1
        proxy.hang()
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as info:
            s.execute(text("SELECT length(:blob)"), {"blob": BIG})
        # The kernel checks tcp_user_timeout at its zero-window probes, which back off from
        # the RTO (0.2 s, 0.6 s, 1.4 s, 3 s... after the window closes): about 1.5 s here,
        # more on a busy machine. Without the timeout the wait has no end.
        assert time.monotonic() - started < 8
        assert info.value.transient
    proxy.resume()
    with db.session() as s:
        assert s.execute(text("SELECT 3")).scalar() == 3


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_libpq_sockets_carry_keepalive_and_user_timeout(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    db = make_db(
        driver=driver, keepalives_idle=7, keepalives_interval=3, keepalives_count=4,
        tcp_user_timeout=2.5,
    )  # fmt: skip
    with db.session() as s:
        fileno = s.connection().connection.dbapi_connection.fileno()  # type: ignore[union-attr]
        sock = socket.socket(fileno=fileno)
        try:
            options = [
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            ]
        finally:
            sock.detach()  # the driver still owns the descriptor
    assert options == [1, 7, 3, 4, 2500]


def test_asyncpg_command_timeout_follows_statement_timeout() -> None:
    assert asyncpg_command_timeout(DatabaseSettings()) == 60  # statement_timeout 30s + 30s
    assert asyncpg_command_timeout(DatabaseSettings(statement_timeout="2min")) == 150
    assert asyncpg_command_timeout(DatabaseSettings(statement_timeout="0")) is None
    assert asyncpg_command_timeout(DatabaseSettings(command_timeout=5)) == 5
    assert asyncpg_command_timeout(DatabaseSettings(command_timeout=0)) is None
