"""One settings object, the same server state on psycopg 3, psycopg2 and asyncpg."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text

from geosession import DatabaseSettings, SpatialDatabase
from geosession.errors import ConfigurationError

SETTINGS: dict[str, Any] = {
    "statement_timeout": "42s",
    "work_mem": "96MB",
    "lock_timeout": "3s",
    "idle_in_transaction_session_timeout": "7min",
    "application_name": "geosession-engine-test",
    "server_settings": {"search_path": "public", "random_page_cost": "1.1"},
}
SHOW = [
    "statement_timeout",
    "work_mem",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "application_name",
    "search_path",
    "random_page_cost",
]
EXPECTED = ["42s", "96MB", "3s", "7min", "geosession-engine-test", "public", "1.1"]


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sync_drivers_configure_the_server(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    db = make_db(driver=driver, **SETTINGS)
    assert db.engine.dialect.driver == driver
    with db.session() as s:
        assert [s.execute(text(f"SHOW {name}")).scalar() for name in SHOW] == EXPECTED


@pytest.mark.parametrize(
    ("driver", "async_driver"), [("psycopg2", "asyncpg"), ("psycopg_async", "psycopg")]
)
def test_the_driver_in_the_url_is_the_one_that_connects(
    make_db: Callable[..., SpatialDatabase], database_url: str, driver: str, async_driver: str
) -> None:
    db = make_db(make_url(database_url).set(drivername=f"postgresql+{driver}"))

    async def server_version() -> Any:
        try:
            async with db.async_session() as s:
                return (await s.execute(text("SHOW server_version_num"))).scalar()
        finally:
            await db.adispose()

    assert db.async_engine.dialect.driver == async_driver
    assert asyncio.run(server_version())
    with db.session() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1
    assert db.engine.dialect.driver == ("psycopg2" if driver == "psycopg2" else "psycopg")


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_async_drivers_configure_the_server(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    db = make_db(async_driver=driver, **SETTINGS)

    async def show() -> list[Any]:
        try:
            async with db.async_session() as s:
                return [(await s.execute(text(f"SHOW {name}"))).scalar() for name in SHOW]
        finally:
            await db.adispose()

    assert db.async_engine.dialect.driver == driver
    assert asyncio.run(show()) == EXPECTED


def test_values_with_spaces_reach_the_server(make_db: Callable[..., SpatialDatabase]) -> None:
    db = make_db(server_settings={"search_path": "public, pg_catalog"})
    with db.session() as s:
        assert s.execute(text("SHOW search_path")).scalar() == "public, pg_catalog"


URL_PARAMETERS = {
    "options": r"-c search_path=pg_catalog -c work_mem=8MB --lock-timeout=2s",
    "application_name": "nightly",
    "sslmode": "disable",  # a provider's URL ends in ?sslmode=require
    "connect_timeout": "4",
}
URL_SHOWS = [
    text(f"SHOW {name}")
    for name in ("search_path", "work_mem", "lock_timeout", "application_name", "statement_timeout")
]
URL_SHOWN = ["pg_catalog", "8MB", "2s", "nightly", "30s"]


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_libpq_parameters_in_the_url_are_kept(
    make_db: Callable[..., SpatialDatabase], database_url: str, driver: str
) -> None:
    """connect_args used to replace the URL's ?options= and ?application_name= silently;
    the URL's own options now follow geosession's, so a setting named in both is the URL's."""
    url = make_url(database_url).update_query_dict(URL_PARAMETERS)
    db = make_db(url.render_as_string(hide_password=False), driver=driver)
    with db.session() as s:
        assert [s.execute(show).scalar() for show in URL_SHOWS] == URL_SHOWN


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_async_drivers_take_the_urls_libpq_parameters(
    make_db: Callable[..., SpatialDatabase], database_url: str, driver: str
) -> None:
    """asyncpg.connect() has no options, sslmode or connect_timeout parameter (a URL with
    one failed with a TypeError): they become server_settings, its ssl and its timeout."""
    url = make_url(database_url).update_query_dict(URL_PARAMETERS)
    db = make_db(url.render_as_string(hide_password=False), async_driver=driver)

    async def show() -> list[Any]:
        try:
            async with db.async_session() as s:
                return [(await s.execute(show)).scalar() for show in URL_SHOWS]
        finally:
            await db.adispose()

    assert asyncio.run(show()) == URL_SHOWN


@pytest.mark.parametrize(
    ("parameter", "driver"),
    [
        (parameter, driver)
        for parameter in ("sslmode=bogus", "connect_timeout=abc", "statement_timeout=5")
        for driver in ("psycopg", "psycopg2", "asyncpg")
    ],
)
def test_a_url_parameter_the_driver_refuses_is_a_configuration_error_not_retried(
    make_db: Callable[..., SpatialDatabase], database_url: str, parameter: str, driver: str
) -> None:
    """libpq refuses these before it tries the server: they were a transient
    ConnectionFailed ("check that the server is running"), retried five times, and on
    asyncpg a TypeError."""
    name, value = parameter.split("=")
    url = make_url(database_url).update_query_dict({name: value})
    if driver == "asyncpg":
        db = make_db(url.render_as_string(hide_password=False), async_driver=driver)

        async def connect() -> None:
            try:
                async with db.async_session() as s:
                    await s.execute(text("SELECT 1"))
            finally:
                await db.adispose()

        with pytest.raises(ConfigurationError, match=name) as refused:
            asyncio.run(connect())
    else:
        db = make_db(url.render_as_string(hide_password=False), driver=driver)
        with pytest.raises(ConfigurationError, match=name) as refused:
            db.run_transaction(lambda s: s.execute(text("SELECT 1")))
        assert "gave up after" not in str(refused.value)
    assert not refused.value.transient
    if name == "statement_timeout":
        assert "server_settings" in str(refused.value)


def test_url_options_are_server_settings_and_what_is_not_one_is_refused(
    database_url: str,
) -> None:
    """The URL's options count as settings everywhere: statement_timeout among them is
    the one the ingest sizes its chunks by."""
    url = make_url(database_url).update_query_dict({"options": r"-cstatement_timeout=9s"})
    settings = DatabaseSettings(database_url=url.render_as_string(hide_password=False))
    assert settings.server_options()["statement_timeout"] == "9s"
    url = make_url(database_url).update_query_dict({"options": "-c search_path=x --verbose"})
    with pytest.raises(ConfigurationError, match=r"has '--verbose', which is not -c name="):
        _ = SpatialDatabase(url.render_as_string(hide_password=False)).engine


def test_async_engine_is_created_lazily_once(make_db: Callable[..., SpatialDatabase]) -> None:
    db = make_db()
    assert db._async_engine is None
    assert db.async_engine is db.async_engine


def test_parameters_are_hidden_from_logs(
    make_db: Callable[..., SpatialDatabase], caplog: pytest.LogCaptureFixture
) -> None:
    db = make_db(echo=True)
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"), db.session() as s:
        s.execute(text("SELECT :secret"), {"secret": "top-secret-value"})
    assert "SELECT" in caplog.text
    assert "top-secret-value" not in caplog.text


def test_asyncpg_tls_files_that_cannot_be_read_are_a_configuration_error(
    make_db: Callable[..., SpatialDatabase], tmp_path: Path
) -> None:
    """A missing sslrootcert was Python's bare FileNotFoundError as the async engine was
    made; a file that holds no certificate, ssl's SSLError."""
    not_pem = tmp_path / "root.crt"
    not_pem.write_text("not a certificate")

    async def connect(db: SpatialDatabase) -> None:
        async with db.async_session() as s:
            await s.execute(text("SELECT 1"))

    for path in (tmp_path / "missing.crt", not_pem):
        db = make_db(async_driver="asyncpg", sslmode="verify-full", sslrootcert=str(path))
        with pytest.raises(ConfigurationError, match=f"could not be read .sslrootcert={path}"):
            asyncio.run(connect(db))
