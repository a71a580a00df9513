"""Engines per driver, each leaving the server in the same state.

libpq drivers (psycopg 3, psycopg2) take server settings as ``-c name=value`` in the
``options`` startup parameter; asyncpg takes a ``server_settings`` dict. Both are set at
connection start-up so every pooled connection is configured before its first query,
with no extra round trip. Parameters are hidden from logs and error messages.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from geosession.engine_errors import install_error_translation
from geosession.settings import DatabaseSettings, duration_ms

_COMMAND_TIMEOUT_MARGIN_S = 30


def build_engine(settings: DatabaseSettings) -> Engine:
    """A pooled Engine for the sync driver (psycopg 3 or psycopg2)."""
    engine = create_engine(
        settings.url(settings.driver),
        connect_args=libpq_connect_args(settings),
        **_pool_arguments(settings),
    )
    install_error_translation(engine, idle_in_transaction_timeout=_idle_timeout_s(settings))
    return engine


def build_async_engine(settings: DatabaseSettings) -> AsyncEngine:
    """A pooled AsyncEngine for the async driver (asyncpg or psycopg 3)."""
    driver = settings.async_driver
    connect_args = (
        asyncpg_connect_args(settings) if driver == "asyncpg" else libpq_connect_args(settings)
    )
    url = settings.url(driver)
    if driver == "asyncpg":  # asyncpg.connect() takes no libpq options: they are moved
        url = url.difference_update_query(_LIBPQ_SESSION_PARAMETERS)
    engine = create_async_engine(url, connect_args=connect_args, **_pool_arguments(settings))
    install_error_translation(
        engine.sync_engine, idle_in_transaction_timeout=_idle_timeout_s(settings)
    )
    return engine


def _pool_arguments(settings: DatabaseSettings) -> dict[str, Any]:
    return {
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.pool_timeout,
        "pool_recycle": settings.pool_recycle,
        "pool_pre_ping": settings.pool_pre_ping,
        "pool_use_lifo": True,  # idle surplus connections age out instead of being cycled
        "pool_reset_on_return": "rollback",
        "hide_parameters": True,
        "echo": settings.echo,
    }


def libpq_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """Keyword arguments for psycopg / psycopg2 connect(): startup options and TLS."""
    args: dict[str, Any] = {
        "application_name": settings.application_name,
        "connect_timeout": settings.connect_timeout,
        "keepalives": 1,  # a peer that vanished is detected instead of awaited forever
        "keepalives_idle": settings.keepalives_idle,
        "keepalives_interval": settings.keepalives_interval,
        "keepalives_count": settings.keepalives_count,
        "tcp_user_timeout": round(settings.tcp_user_timeout * 1000),
        "options": " ".join(
            f"-c {name}={_escape_option(value)}"
            for name, value in settings.server_options().items()
        ),
    }
    for name in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        value = getattr(settings, name)
        if value is not None:
            args[name] = str(value)
    return _with_url_parameters(args, settings.url().query)


def _with_url_parameters(args: dict[str, Any], query: Mapping[str, Any]) -> dict[str, Any]:
    """connect_args replace the URL's query parameters of the same name: a parameter the
    URL names is left to the URL, except ``options``, which ``server_options()`` already
    holds after geosession's own."""
    return {name: value for name, value in args.items() if name == "options" or name not in query}


def _escape_option(value: str) -> str:
    """libpq splits ``options`` on spaces; a backslash keeps one inside a value."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def asyncpg_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect(): server_settings, timeout and TLS."""
    query = settings.url().query
    args: dict[str, Any] = {
        "server_settings": {
            **settings.server_options(),
            "application_name": query.get("application_name", settings.application_name),
        },
        "timeout": settings.connect_timeout,
    }
    command_timeout = asyncpg_command_timeout(settings)
    if command_timeout is not None:
        args["command_timeout"] = command_timeout
    tls = _asyncpg_ssl(settings)
    if tls is not None:
        args["ssl"] = tls
    return args


_LIBPQ_SESSION_PARAMETERS = ("options", "application_name")
"""URL query parameters libpq reads and asyncpg does not: given as server_settings."""


def _asyncpg_ssl(settings: DatabaseSettings) -> ssl.SSLContext | str | None:
    """asyncpg takes libpq's sslmode names, or an SSLContext when certificates are given."""
    if not (settings.sslrootcert or settings.sslcert):
        return settings.sslmode
    context = ssl.create_default_context(
        cafile=str(settings.sslrootcert) if settings.sslrootcert else None
    )
    context.check_hostname = settings.sslmode == "verify-full"
    if settings.sslmode not in ("verify-ca", "verify-full"):
        context.verify_mode = ssl.CERT_NONE
    if settings.sslcert:
        context.load_cert_chain(
            str(settings.sslcert), str(settings.sslkey) if settings.sslkey else None
        )
    return context


def asyncpg_command_timeout(settings: DatabaseSettings) -> float | None:
    """Seconds asyncpg waits for any answer: the setting, else statement_timeout + 30 s.

    asyncpg has no TCP keepalives; this client-side deadline is what bounds a hung
    network or server. It stays above statement_timeout so a slow statement still ends
    with the server's QueryTimeout, not with a dropped connection.
    """
    if settings.command_timeout is not None:
        return settings.command_timeout or None
    statement_ms = duration_ms(settings.server_options().get("statement_timeout", "0"))
    return statement_ms / 1000 + _COMMAND_TIMEOUT_MARGIN_S if statement_ms else None


def _idle_timeout_s(settings: DatabaseSettings) -> float | None:
    idle = settings.server_options().get("idle_in_transaction_session_timeout", "0")
    return duration_ms(idle) / 1000 or None
