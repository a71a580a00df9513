"""DatabaseSettings: validation at construction, PostgreSQL units, secrets never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from geosession import ConfigurationError, DatabaseSettings, SpatialDatabase
from geosession.errors import endpoint_of
from geosession.settings import duration_ms

URL = "postgresql://alice:s3cret-pw@db.example:6543/gis"


def test_defaults_match_the_guide() -> None:
    s = DatabaseSettings(database_url=URL)
    assert (s.pool_size, s.max_overflow, s.pool_timeout, s.pool_recycle) == (10, 5, 30.0, 1800)
    assert s.pool_pre_ping is True
    assert (s.statement_timeout, s.work_mem) == ("30s", "256MB")


@pytest.mark.parametrize(
    ("value", "ms"),
    [("30s", 30_000), ("5min", 300_000), ("250ms", 250), ("1500 ms", 1500), ("2h", 7.2e6), (0, 0)],
)
def test_durations_use_postgres_units(value: object, ms: float) -> None:
    assert duration_ms(DatabaseSettings(statement_timeout=value).statement_timeout) == ms


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("pool_size", 0, "greater than or equal to 1"),
        ("max_overflow", -1, "greater than or equal to 0"),
        ("pool_timeout", 0, "greater than 0"),
        ("port", 70000, "less than or equal to 65535"),
        ("statement_timeout", "30 parsecs", "valid quantity"),
        ("statement_timeout", "90d", "longer than PostgreSQL allows"),
        ("statement_timeout", 30, "30 has no unit: write '30s' or '30ms'"),
        ("lock_timeout", "2.5", "'2.5' has no unit"),
        ("work_mem", "1kB", "64kB to 2TB"),
        ("work_mem", "lots", "valid quantity"),
        ("driver", "mysqlclient", "psycopg"),
        ("server_settings", {"bad name; drop": "1"}, "not a PostgreSQL setting name"),
    ],
)
def test_invalid_values_name_the_field_and_range(field: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        DatabaseSettings(**{field: value})
    assert field in str(info.value)
    assert needle in str(info.value)


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="pool_sise"):
        DatabaseSettings(pool_sise=3)


def test_parts_fill_in_the_url() -> None:
    s = DatabaseSettings(host="h", port=5433, user="u", password="pw", database="d")
    assert s.url().render_as_string(hide_password=False) == "postgresql+psycopg://u:pw@h:5433/d"
    assert s.url("asyncpg").drivername == "postgresql+asyncpg"
    s = DatabaseSettings(database_url=URL, database="other")
    assert s.url().database == "other" and s.url().port == 6543


@pytest.mark.parametrize(
    ("scheme", "driver", "async_driver"),
    [
        ("postgresql", "psycopg", "asyncpg"),
        ("postgres", "psycopg", "asyncpg"),
        ("postgresql+psycopg2", "psycopg2", "asyncpg"),
        ("postgresql+psycopg", "psycopg", "asyncpg"),
        ("postgresql+asyncpg", "psycopg", "asyncpg"),
        ("postgresql+psycopg_async", "psycopg", "psycopg"),
    ],
)
def test_the_driver_a_url_names_is_used(scheme: str, driver: str, async_driver: str) -> None:
    s = DatabaseSettings(database_url=URL.replace("postgresql", scheme, 1))
    assert (s.driver, s.async_driver) == (driver, async_driver)
    assert s.url().drivername == f"postgresql+{driver}"


@pytest.mark.parametrize(
    ("url", "settings", "needle"),
    [
        (
            "postgresql+psycopg2://h/d",
            {"driver": "psycopg"},
            "names the driver 'psycopg2' but driver is 'psycopg'",
        ),
        ("postgresql+asyncpg://h/d", {"async_driver": "psycopg"}, "set async_driver='asyncpg'"),
        ("postgresql+pg8000://h/d", {}, "'pg8000', which geosession does not support"),
        ("mysql://h/d", {}, "database_url is a mysql URL"),
        ("postgresql+psycopg2://s3cret-pw@h/d", {"driver": "psycopg"}, "leave the driver out"),
        (
            "postgresql://h/d",
            {"replica_urls": ["postgresql+psycopg2://r/d"]},
            "replica_urls[0] names the driver 'psycopg2' but driver is 'psycopg'",
        ),
    ],
)
def test_a_url_driver_that_contradicts_the_settings_is_refused(
    url: str, settings: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        DatabaseSettings(database_url=url, **settings)
    assert needle in str(info.value)
    assert "s3cret" not in str(info.value) and "Value error" not in str(info.value)


def test_a_misspelt_keyword_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError) as info:
        SpatialDatabase(URL, pool_sise=3, frobnicate=True)
    assert str(info.value) == (
        "Invalid geosession settings: pool_sise is not a setting (did you mean pool_size?); "
        "frobnicate is not a setting (the README's Configuration table lists the settings)"
    )


def test_a_misspelt_environment_variable_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEOSESSION_STATEMENT_TIMOUT", "5s")
    with pytest.raises(ConfigurationError) as info:
        DatabaseSettings(database_url=URL)
    assert "GEOSESSION_STATEMENT_TIMOUT is not a geosession setting (did you mean " in str(
        info.value
    )
    assert "GEOSESSION_STATEMENT_TIMEOUT?)" in str(info.value)
    monkeypatch.delenv("GEOSESSION_STATEMENT_TIMOUT")
    monkeypatch.setenv("GEOSESSION_HOME", "/tmp/elsewhere")  # the embedded cluster's
    monkeypatch.setenv("GEOSESSION_SERVER_SETTINGS__search_path", "gis")
    assert DatabaseSettings(database_url=URL).server_settings == {"search_path": "gis"}


def test_environment_and_explicit_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", URL)
    monkeypatch.setenv("GEOSESSION_POOL_SIZE", "7")
    monkeypatch.setenv("GEOSESSION_SERVER_SETTINGS", '{"search_path": "gis,public"}')
    s = DatabaseSettings(pool_size=4)
    assert s.pool_size == 4  # explicit beats the environment
    assert s.url().host == "db.example"
    assert s.server_settings == {"search_path": "gis,public"}


def test_setting_names_are_case_insensitive_as_on_the_server() -> None:
    settings = {
        "TimeZone": "Asia/Kolkata",
        "DateStyle": "ISO, DMY",
        "pg_trgm.similarity_threshold": "0.4",
    }
    assert DatabaseSettings(server_settings=settings).server_options().items() >= settings.items()


def test_password_file_and_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    s = DatabaseSettings(host="h", user="u", password_file=tmp_path / "pw")
    assert s.url().password == "from-file"
    (tmp_path / "GEOSESSION_PASSWORD").write_text("from-secret")
    s = DatabaseSettings(_secrets_dir=tmp_path, host="h", user="u")
    assert s.url().password == "from-secret"
    with pytest.raises(ConfigurationError, match="password_file"):
        DatabaseSettings(host="h", password_file=tmp_path / "missing").url()


@pytest.mark.parametrize(
    "url",
    [
        URL,
        "postgresql://alice@db.example/gis?password=s3cret-pw",
        "postgresql://alice:s3cret-pw@/gis",
    ],
)
def test_password_never_appears_in_reprs(url: str) -> None:
    s = DatabaseSettings(database_url=url)
    db = SpatialDatabase(settings=s)
    try:
        for shown in (repr(s), str(s), repr(db), s.safe_url(), repr(db.engine), str(db.engine.url)):
            assert "s3cret-pw" not in shown
        assert s.url().password == "s3cret-pw"
        assert "password" not in dict(s.url().query)
    finally:
        db.dispose()


def test_a_sqlalchemy_url_object_is_taken_as_create_engine_takes_it() -> None:
    db = SpatialDatabase(make_url(URL))
    try:
        assert db.settings.url().password == "s3cret-pw"
        assert db.engine.url.port == 6543 and "s3cret-pw" not in repr(db)
        assert DatabaseSettings(database_url=make_url(URL)).url().host == "db.example"
    finally:
        db.dispose()


def test_a_replica_url_takes_what_it_leaves_out_from_the_primary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = DatabaseSettings(
        database_url=URL + "?sslmode=require",
        replica_urls=["postgresql://replica.example:5433", "postgresql://bob:other@r2/gis2"],
        statement_timeout="4s",
    )
    first, second = s.for_replica(0), s.for_replica(1)
    assert first.url().render_as_string(hide_password=False) == (
        "postgresql+psycopg://alice:s3cret-pw@replica.example:5433/gis?sslmode=require"
    )
    assert (second.url().username, second.url().password, second.url().database) == (
        "bob",
        "other",
        "gis2",
    )
    assert first.statement_timeout == "4s" and not first.replica_urls
    assert "s3cret-pw" not in repr(s) and "other" not in repr(s)
    assert "'postgresql+psycopg://alice:***@replica.example:5433/gis?sslmode=require'" in repr(s)
    monkeypatch.setenv("GEOSESSION_REPLICA_URLS", '["postgresql://r3/gis"]')
    assert DatabaseSettings().for_replica(0).url().host == "r3"
    assert DatabaseSettings(replica_urls="postgresql://r4/gis").for_replica(0).url().host == "r4"
    with pytest.raises(ConfigurationError, match=r"replica_urls\[0\] is not a valid URL") as info:
        DatabaseSettings(replica_urls=["not a url :s3cret-pw@"])
    assert "s3cret-pw" not in str(info.value)


def test_environment_variables_as_people_write_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replica URLs bare or apart by spaces as well as in JSON; a variable that cannot be
    read is a ConfigurationError naming it, never pydantic's own error."""
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", URL)
    monkeypatch.setenv("GEOSESSION_REPLICA_URLS", "postgresql://r1/gis postgresql://a,b/gis")
    hosts = [DatabaseSettings().for_replica(n).url().query.get("host") for n in (0, 1)]
    assert DatabaseSettings().for_replica(0).url().host == "r1" and hosts[1] == ("a", "b")
    monkeypatch.setenv("GEOSESSION_REPLICA_URLS", '["postgresql://r1/gis"')
    with pytest.raises(ConfigurationError, match=r"GEOSESSION_REPLICA_URLS\): not a JSON list"):
        DatabaseSettings()
    monkeypatch.delenv("GEOSESSION_REPLICA_URLS")
    monkeypatch.setenv("GEOSESSION_SERVER_SETTINGS", "{jit: off}")
    with pytest.raises(ConfigurationError, match="GEOSESSION_SERVER_SETTINGS is not valid JSON"):
        DatabaseSettings()
    monkeypatch.delenv("GEOSESSION_SERVER_SETTINGS")
    monkeypatch.setenv("GEOSESSION_STATEMENT_TIMEOUT", "5 minutes")
    with pytest.raises(ConfigurationError) as info:
        DatabaseSettings()
    assert "statement_timeout (GEOSESSION_STATEMENT_TIMEOUT): '5 minutes'" in str(info.value)
    assert "units us, ms, s, min, h or d (0 alone disables it)" in str(
        info.value
    )  # was: a bare number is in ms, which is refused


def test_libpq_host_lists_are_read_as_sqlalchemy_reads_several_hosts() -> None:
    """postgresql://h1:5432,h2:5433/db (libpq's failover form) becomes ?host=h1:5432&...;
    a replica's URL takes neither the primary's hosts nor its target_session_attrs."""
    s = DatabaseSettings(
        database_url="postgresql://alice:s3cret%2Cpw@h1:5432,h2:5433/gis"
        "?target_session_attrs=read-write&sslmode=require",
        replica_urls=["postgresql://standby.example:5433"],
    )
    url = s.url()
    assert url.host is None and url.query["host"] == ("h1:5432", "h2:5433")
    assert url.password == "s3cret,pw" and url.database == "gis"
    assert url.query["target_session_attrs"] == "read-write" and url.query["sslmode"] == "require"
    assert "s3cret" not in repr(s)
    replica = s.for_replica(0).url()
    assert (replica.host, replica.port, replica.password) == ("standby.example", 5433, "s3cret,pw")
    assert dict(replica.query) == {"sslmode": "require"}
    listed = DatabaseSettings(database_url="postgresql://u@/gis?host=h1:5432&host=h2:5432")
    assert listed.url().host is None and listed.url().query["host"] == ("h1:5432", "h2:5432")
    anonymous = DatabaseSettings(database_url="postgresql://h1,h2/gis").url()  # user: PGUSER
    assert anonymous.query["host"] == ("h1", "h2") and anonymous.database == "gis"
    db = SpatialDatabase(settings=s)
    try:
        assert endpoint_of(db.engine) == "h1:5432,h2:5433/gis"
    finally:
        db.dispose()


def test_invalid_url_error_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        DatabaseSettings(database_url="not a url at all :s3cret-pw@")
    assert "database_url" in str(info.value)
    assert "s3cret-pw" not in str(info.value)
    twice = "postgresql://u@host/db?password=s3cret-a&password=s3cret-b"  # was "('s3cret-a', ..."
    with pytest.raises(ConfigurationError, match=r"gives \?password= more than once") as info:
        DatabaseSettings(database_url=twice)
    assert "s3cret" not in str(info.value)


def test_from_env_falls_back_to_the_running_embedded_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy import text

    from geosession.local import LocalCluster

    url = LocalCluster().start()
    for name in ("GEOSESSION_DATABASE_URL", "GEOSESSION_HOST", "GEOSESSION_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    with SpatialDatabase.from_env(pool_size=2) as db:
        assert db.settings.url().port == make_url(url).port
        with db.session() as s:
            assert s.execute(text("SELECT postgis_lib_version()")).scalar()


def test_from_env_without_any_database_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GEOSESSION_DATABASE_URL", "GEOSESSION_HOST", "GEOSESSION_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEOSESSION_HOME", str(tmp_path))
    with pytest.raises(ConfigurationError, match="GEOSESSION_DATABASE_URL.*geosession local start"):
        SpatialDatabase.from_env()
