"""DatabaseSettings: where the database is and how sessions on it behave.

One validated object feeds every driver, so psycopg, psycopg2 and asyncpg connections
end up in the same server state. Values come from keyword arguments, ``GEOSESSION_*``
environment variables and secrets files, in that order of precedence. Durations and
sizes use PostgreSQL's own spelling ("30s", "5min", "256MB") and are checked here, at
construction, instead of failing later on the server.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from sqlalchemy import TextClause, text
from sqlalchemy.engine import URL, make_url

from geosession.errors import ConfigurationError

_PREFIX = "GEOSESSION_"
SyncDriver = Literal["psycopg", "psycopg2"]
AsyncDriver = Literal["asyncpg", "psycopg"]
_URL_DRIVERS: dict[str, tuple[str, str]] = {
    "psycopg": ("driver", "psycopg"),
    "psycopg2": ("driver", "psycopg2"),
    "asyncpg": ("async_driver", "asyncpg"),
    "psycopg_async": ("async_driver", "psycopg"),
}
"""The drivers a URL may name (SQLAlchemy's spelling) and the setting each one sets."""
SSLMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

_DURATION_UNITS_MS = {
    "us": 0.001,
    "ms": 1,
    "s": 1000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}
_SIZE_UNITS_KB = {"B": 1 / 1024, "kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_MAX_INT = 2_147_483_647
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$", re.IGNORECASE)
"""PostgreSQL setting names are case-insensitive: TimeZone and DateStyle are spelled so."""


def _parse_quantity(
    value: object, units: dict[str, float], default_unit: str, bare: str | None = None
) -> float:
    """``bare``: what a number without a unit means, said when the value cannot be read."""
    text = str(value)
    match = _QUANTITY.match(text)
    if match is None or match.group(2) not in ("", *units):
        *others, last = units
        raise ValueError(
            f"{text!r} is not a valid quantity: give a number and one of the units "
            f"{', '.join(others)} or {last} ({bare or f'a bare number is in {default_unit}'})"
        )
    return float(match.group(1)) * units[match.group(2) or default_unit]


def duration_ms(value: object) -> float:
    """Milliseconds in a PostgreSQL duration ("30s", "5min", 1500 meaning ms)."""
    return _parse_quantity(value, _DURATION_UNITS_MS, "ms")


def checked_duration(value: object) -> str:
    """A duration as PostgreSQL spells it ("30s", "250ms", 0); ValueError saying what is
    wrong otherwise (a bare number, an unknown unit, beyond PostgreSQL's range)."""
    ms = _parse_quantity(value, _DURATION_UNITS_MS, "ms", bare="0 alone disables it")
    if ms > _MAX_INT:
        raise ValueError(f"{value!r} is longer than PostgreSQL allows (about 24 days)")
    if ms and _QUANTITY.match(str(value)).group(2) == "":  # type: ignore[union-attr]
        raise ValueError(
            f"{value!r} has no unit: write '{value}s' or '{value}ms' (PostgreSQL reads a bare "
            "number as milliseconds, while pool_timeout and connect_timeout are seconds)"
        )
    return "0" if not ms else str(value).replace(" ", "")


def _check_size(value: object) -> str:
    kb = _parse_quantity(value, _SIZE_UNITS_KB, "kB")
    if not 64 <= kb <= _MAX_INT:
        raise ValueError(f"{value!r} is outside PostgreSQL's range 64kB to 2TB")
    return str(value).replace(" ", "") if not isinstance(value, int) else f"{value}kB"


def check_duration(name: str, value: object) -> str:
    """Validates a duration given outside the settings object, naming the argument."""
    try:
        return checked_duration(value)
    except ValueError as exc:
        raise ConfigurationError(f"{name}: {exc}") from None


def local_settings(
    settings: Mapping[str, object] | None = None, **durations: str | int | None
) -> dict[str, str]:
    """The settings of one transaction, checked, for :func:`set_local`: the durations
    given (``statement_timeout="5min"``) and any others by name (``settings=
    {"search_path": "tenant_7, public", "app.tenant": "7"}``)."""
    checked = {
        name: check_duration(name, value) for name, value in durations.items() if value is not None
    }
    for name, value in (settings or {}).items():
        if not isinstance(name, str) or not _SETTING_NAME.match(name):
            raise ConfigurationError(
                f"settings= (CLI: --setting): {name!r} is not a PostgreSQL setting name "
                "(such as search_path, or app.tenant for one of the application's own)"
            )
        if name.lower() in checked:
            raise ConfigurationError(
                f"settings= (CLI: --setting): {name} is given twice, there and as "
                f"{name.lower()}= (--{name.lower().replace('_', '-')}); give it once"
            )
        if value is None:
            raise ConfigurationError(
                f"settings=: {name} has no value (None); leave it out to keep the session's"
            )
        if name.lower() in _TIMEOUTS:
            checked[name] = check_duration(f"settings= (CLI: --setting) {name}", value)
            continue
        checked[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return checked


_TIMEOUTS = frozenset(
    (
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "transaction_timeout",
    )
)
"""Settings that are durations: a bare number is refused in settings= as in
statement_timeout= (milliseconds to the server, often meant as seconds)."""


def set_local(settings: Mapping[str, str]) -> tuple[TextClause, dict[str, str]]:
    """One round trip of ``set_config(name, value, is_local => true)`` for every setting:
    they end with the transaction and never reach the next user of the pooled connection.
    The names are checked ones (:data:`_SETTING_NAME`); the values are bound."""
    calls = ", ".join(f"set_config('{name}', :v{n}, true)" for n, name in enumerate(settings))
    return text(f"SELECT {calls}"), {f"v{n}": value for n, value in enumerate(settings.values())}


Duration = Annotated[str, BeforeValidator(checked_duration)]
"""A PostgreSQL duration: "250ms", "30s", "5min", "2h"; 0 disables the timeout. A bare
number is refused: PostgreSQL reads it as milliseconds, a Python caller often means
seconds."""

Size = Annotated[str, BeforeValidator(_check_size)]
"""A PostgreSQL memory size: "64kB", "256MB", "1GB"; a bare number means kilobytes."""


def _check_server_settings(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if not _SETTING_NAME.match(name):
            raise ValueError(f"{name!r} is not a PostgreSQL setting name")
    return {name: str(setting) for name, setting in value.items()}


class DatabaseSettings(BaseSettings):
    """Connection, pool and server settings for one PostGIS database."""

    model_config = SettingsConfigDict(
        env_prefix=_PREFIX,
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,
        env_nested_delimiter="__",
    )

    database_url: SecretStr | None = None
    """Full SQLAlchemy or libpq URL; parts below fill in what it leaves out."""
    host: str | None = None
    """Server host name or address (default: localhost)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Server port (default: 5432)."""
    user: str | None = None
    """Role to log in as."""
    password: SecretStr | None = None
    """Password; never printed. Prefer password_file or a secrets directory."""
    password_file: Path | None = None
    """File whose first line is the password (Docker/Kubernetes secrets)."""
    database: str | None = None
    """Database name."""

    driver: SyncDriver = "psycopg"
    """Sync driver: psycopg (3, default: COPY and server-side cursors) or psycopg2."""
    async_driver: AsyncDriver = "asyncpg"
    """Async driver for db.async_engine: asyncpg (default) or psycopg."""
    replica_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Streaming replicas of the database: sessions, streams and exports asked for with
    ``replica=True`` read there, each in turn; a replica that cannot be reached is passed
    over (the primary is the last resort). User, password, database and query parameters
    a replica's URL leaves out are the primary's."""
    replica_max_lag: float | None = Field(default=None, gt=0, le=86_400)
    """Seconds a replica's replay may trail the WAL it received before it is passed over
    (asked at most once a second per replica); None: any lag is accepted."""
    read_your_writes: bool = True
    """After a transaction that wrote commits, replica reads of the same thread or task go
    to a replica that has replayed it, else to the primary."""
    pgbouncer: bool = False
    """The URL is a PgBouncer in transaction or session pooling: server settings are set at
    the start of each transaction (PgBouncer refuses them at start-up, and a later
    transaction may run on another server connection) and no statement is prepared on the
    server."""

    pool_size: int = Field(default=10, ge=1, le=1000)
    """Connections kept open in the pool."""
    max_overflow: int = Field(default=5, ge=0, le=1000)
    """Extra connections allowed above pool_size under load, closed when returned."""
    pool_timeout: float = Field(default=30.0, gt=0, le=3600)
    """Seconds to wait for a free connection before PoolExhausted."""
    pool_recycle: int = Field(default=1800, ge=-1)
    """Seconds after which a connection is replaced (-1: never)."""
    pool_pre_ping: bool = True
    """Test each connection on checkout so a restarted server is recovered silently."""
    connect_timeout: int = Field(default=10, ge=1, le=3600)
    """Seconds to wait for the server to accept a connection."""
    keepalives_idle: int = Field(default=30, ge=1, le=7200)
    """Seconds of silence before TCP keepalive probes start (psycopg, psycopg2)."""
    keepalives_interval: int = Field(default=10, ge=1, le=600)
    """Seconds between TCP keepalive probes."""
    keepalives_count: int = Field(default=3, ge=1, le=100)
    """Unanswered keepalive probes after which the connection is dropped."""
    tcp_user_timeout: float = Field(default=60, ge=0, le=3600)
    """Seconds sent data may stay unacknowledged before the connection is dropped
    (psycopg, psycopg2; 0: the operating system's default, about 15 minutes)."""
    command_timeout: float | None = Field(default=None, ge=0, le=86400)
    """asyncpg: seconds to wait for the server's answer to any command before the
    connection is dropped (ConnectionFailed). Default: statement_timeout + 30 s, so the
    server's own timeout fires first; 0 disables."""

    statement_timeout: Duration | None = "30s"
    """Longest a single statement may run ("0" disables)."""
    work_mem: Size | None = "256MB"
    """Memory per sort or hash step; spatial joins and clustering like more."""
    lock_timeout: Duration | None = None
    """Longest a statement waits for a lock (default: wait as long as statement_timeout)."""
    idle_in_transaction_session_timeout: Duration | None = "5min"
    """Server ends sessions left idle inside a transaction this long, releasing locks."""
    long_transaction_warning: Duration | None = "1min"
    """Log a WARNING naming the file:line that opened any transaction held open longer
    ("0" or None disables)."""
    application_name: str = Field(default="geosession", max_length=63)
    """Name shown in pg_stat_activity for this application's connections."""
    server_settings: Annotated[dict[str, str], AfterValidator(_check_server_settings)] = Field(
        default_factory=dict
    )
    """Any other server settings applied to every connection, e.g. {"search_path": "gis"}."""

    sslmode: SSLMode | None = None
    """libpq sslmode (asyncpg: ssl); certificates via sslrootcert/sslcert/sslkey."""
    sslrootcert: Path | None = None
    """CA certificate file for verify-ca / verify-full."""
    sslcert: Path | None = None
    """Client certificate file."""
    sslkey: Path | None = None
    """Client private key file."""

    echo: bool = False
    """Log every SQL statement (parameters are never logged)."""

    leak_threshold: float | None = Field(default=None, gt=0, le=86_400)
    """Seconds a session may hold a pooled connection before a WARNING names the code that
    took it (its stack) and pool_stats() lists it; None: off (holds are still timed)."""
    slow_query_threshold: float | None = Field(default=None, gt=0, le=86_400)
    """Seconds after which a statement is logged as slow (SQL only, never parameters);
    None: off."""

    @field_validator("database_url", mode="before")
    @classmethod
    def _url_as_text(cls, value: Any) -> Any:
        """A SQLAlchemy URL object is taken as create_engine takes it, password included;
        libpq's list of hosts as SQLAlchemy reads one."""
        if isinstance(value, URL):
            return value.render_as_string(hide_password=False)
        return _hosts_as_query(value) if isinstance(value, str) else value

    @field_validator("replica_urls", mode="before")
    @classmethod
    def _replica_urls_as_text(cls, value: Any) -> Any:
        """One URL alone is a list of one, and so is each of several a variable holds apart
        (spaces or a JSON list); URL objects are taken as database_url takes them."""
        if isinstance(value, str):
            value = _url_list(value)
        values = [value] if isinstance(value, URL) else value
        if not isinstance(values, list | tuple):
            return value
        return [cls._url_as_text(item) for item in values]

    @model_validator(mode="after")
    def _check_url(self) -> DatabaseSettings:
        urls = [("database_url", self.database_url)] if self.database_url is not None else []
        urls += [(f"replica_urls[{n}]", url) for n, url in enumerate(self.replica_urls)]
        for name, url in urls:
            text = url.get_secret_value()
            try:
                parsed = make_url(text)
            except Exception:
                raise ValueError(
                    f"{name} is not a valid URL; expected postgresql://user:password@host:5432/"
                    "dbname, a password's @ : / ? # % written percent-encoded (urllib.parse."
                    "quote(password, safe='')) or the password given as password= / "
                    "GEOSESSION_PASSWORD (the password is not shown)"
                ) from None
            if str(text).partition("://")[2].count("@") > 1:  # the rest of a password would
                raise ValueError(  # pass for the host, the database or the query: shown, sent
                    f"{name} has more than one '@': the password or user name holds one, which "
                    "a URL must write as %40 (urllib.parse.quote(password, safe=''); another "
                    "part too, such as application_name), or give the password as password= / "
                    "GEOSESSION_PASSWORD (the password is not shown)"
                )
            if isinstance(parsed.query.get("password"), tuple):  # sent as "('a', 'b')"
                raise ValueError(
                    f"{name} gives ?password= more than once: give it once (the password is "
                    "not shown)"
                )
            self._take_driver(name, parsed)
        return self

    def _take_driver(self, name: str, url: URL) -> None:
        """A driver the URL names (postgresql+psycopg2://) is the one used, as SQLAlchemy
        would; one that contradicts ``driver`` / ``async_driver`` is refused, not overridden.
        Replicas are read with the primary's drivers: theirs may only agree."""
        if url.get_backend_name() not in ("postgresql", "postgres"):
            raise ValueError(
                f"{name} is a {url.get_backend_name()} URL; geosession needs PostgreSQL with "
                "PostGIS: postgresql://user@host:5432/dbname"
            )
        named = url.get_driver_name() if "+" in url.drivername else None
        if named is None:
            return
        if named not in _URL_DRIVERS:
            raise ValueError(
                f"{name} names the driver {named!r}, which geosession does not support; use "
                "postgresql+psycopg:// or +psycopg2:// (sync), +asyncpg:// or +psycopg_async:// "
                "(async), or no driver: postgresql://"
            )
        field, value = _URL_DRIVERS[named]
        if field not in self.model_fields_set and name == "database_url":  # not a replica's
            setattr(self, field, value)
        elif getattr(self, field) != value:
            raise ValueError(
                f"{name} names the driver {named!r} but {field} is {getattr(self, field)!r}: "
                f"leave the driver out of the URL (postgresql://...) or set {field}={value!r}"
            )

    def for_replica(self, number: int) -> DatabaseSettings:
        """These settings for replica ``number``: its URL, with the user, password, database
        and query parameters it leaves out taken from the primary's."""
        primary = self.url()
        replica = make_url(self.replica_urls[number].get_secret_value())
        password, query = _split_password(replica)
        inherited = {k: v for k, v in primary.query.items() if k not in _SERVER_CHOICE}
        merged = replica.set(
            username=replica.username or primary.username,
            password=password or primary.password,
            database=replica.database or primary.database,
            query={**inherited, **query},
        )
        cleared = dict.fromkeys(("host", "port", "user", "password", "password_file", "database"))
        return self.model_copy(
            update={
                **cleared,
                "database_url": SecretStr(merged.render_as_string(hide_password=False)),
                "replica_urls": [],
            }
        )

    def __init__(self, **values: Any) -> None:
        _refuse_unknown_variables(type(self).model_fields)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe_validation_error(exc)) from None
        except SettingsError as exc:  # a variable of a dict or list setting that is no JSON
            raise ConfigurationError(_describe_settings_error(exc)) from None

    @property
    def configured(self) -> bool:
        """Whether anything says where the database is (URL, host or database)."""
        return any(v is not None for v in (self.database_url, self.host, self.database))

    def url(self, driver: str | None = None) -> URL:
        """The SQLAlchemy URL for ``driver`` (password included: never print it)."""
        url = (
            make_url(self.database_url.get_secret_value())
            if self.database_url
            else URL.create("postgresql")
        )
        password, query = _split_password(url)
        return url.set(
            drivername=f"postgresql+{driver or self.driver}",
            host=self.host or url.host or (None if "host" in query else "localhost"),
            port=self.port or url.port,
            username=self.user or url.username,
            password=self._password() or password,
            database=self.database or url.database,
            query=query,
        )

    def safe_url(self) -> str:
        """The URL with any password masked, for messages and logs."""
        return self.url().render_as_string(hide_password=True)

    def _password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            try:
                return self.password_file.read_text().splitlines()[0]
            except (OSError, IndexError) as exc:
                raise ConfigurationError(
                    f"password_file {self.password_file} cannot be read ({type(exc).__name__}); "
                    "check that it exists, is readable and holds the password on its first line"
                ) from None
        return None

    def server_options(self) -> dict[str, str]:
        """Every server setting to apply on each new connection, by name; the URL's libpq
        ``options`` (``?options=-c search_path=gis``) come last, so theirs win."""
        named = {
            "statement_timeout": self.statement_timeout,
            "work_mem": self.work_mem,
            "lock_timeout": self.lock_timeout,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_session_timeout,
        }
        return {
            **{k: v for k, v in named.items() if v is not None},
            **self.server_settings,
            **_option_settings(str(self.url().query.get("options", ""))),
        }

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "database_url" and value:
                value = self.safe_url()
            elif name == "replica_urls":
                value = [self.for_replica(n).safe_url() for n in range(len(value))]
            yield name, value


def _option_settings(options: str) -> dict[str, str]:
    """libpq's ``options`` (``-c name=value``, ``--name=value``, a backslash before a space
    in a value) as server settings by name."""
    words = shlex.split(options)
    settings: dict[str, str] = {}
    for position, word in enumerate(words):
        if word == "-c":
            continue
        assignment = word[2:] if word.startswith(("-c", "--")) else word
        name, equals, value = assignment.partition("=")
        if not equals or (word == assignment and words[position - 1 : position] != ["-c"]):
            raise ConfigurationError(
                f"the database URL's options parameter has {word!r}, which is not "
                "-c name=value: write each server setting as -c name=value"
            )
        settings[name.replace("-", "_")] = value
    return settings


_SERVER_CHOICE = ("host", "port", "hostaddr", "target_session_attrs")
"""Query parameters that say which server to reach: a replica's URL does not take the
primary's (a read-write target would refuse every standby)."""


def _hosts_as_query(url: str) -> str:
    """libpq's several hosts in the authority (``postgresql://u@h1:5432,h2:5432/db``),
    which SQLAlchemy's URL cannot parse, as the query parameters SQLAlchemy takes them from
    (``?host=h1:5432&host=h2:5432``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url  # refused with the URL advice by _check_url
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return url
    listed = "&".join(f"host={quote(host, safe=':[]')}" for host in hosts.split(",") if host)
    query = f"{listed}&{parts.query}" if parts.query else listed
    # spelled out: urlunsplit drops the // of an empty authority (postgresql://h1,h2/db)
    return f"{parts.scheme}://{userinfo}{at}{parts.path}?{query}"


def _split_password(url: URL) -> tuple[str | None, dict[str, Any]]:
    """Moves a password given as a ``?password=`` query parameter into the URL proper."""
    query = dict(url.query)
    from_query = query.pop("password", None)
    password = url.password if url.password is not None else from_query
    return (str(password) if password is not None else None), query


def _describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
            problems.append(_not_a_setting(str(error["loc"][0])))
            continue
        message = error["msg"].removeprefix("Value error, ")
        field = ".".join(str(part) for part in error["loc"])
        if error["loc"] and isinstance(error["loc"][0], str):
            field += f" ({_PREFIX}{error['loc'][0].upper()})"
        problems.append(f"{field}: {message}" if field else message)  # a check of several fields
    listed = any(error["type"] == "extra_forbidden" for error in exc.errors())
    tail = " (the README's Configuration table lists the settings)" if listed else ""
    return "Invalid geosession settings: " + "; ".join(problems) + tail


def _url_list(text: str) -> Any:
    """GEOSESSION_REPLICA_URLS as written: a JSON list, or URLs apart by spaces (not commas,
    which a URL's list of hosts holds)."""
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"not a JSON list of URLs ({exc.msg}): give '[\"postgresql://replica1/gis\"]' "
                "or the URLs apart by spaces"
            ) from None
    return text.split()


def _not_a_setting(name: str) -> str:
    close = difflib.get_close_matches(name, list(DatabaseSettings.model_fields), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{name} is not a setting{hint}"


def _describe_settings_error(exc: SettingsError) -> str:
    field = re.search(r'field "(\w+)"', str(exc))
    variable = f"{_PREFIX}{field.group(1).upper()}" if field else "A GEOSESSION_* variable"
    return (
        f"{variable} is not valid JSON: give a JSON object, such as "
        f'{variable}=\'{{"jit": "off"}}\' (double quotes around names and values)'
    )


_OTHER_VARIABLES = frozenset({"home", "test_server_url"})
"""GEOSESSION_* variables that are not settings: the embedded cluster's home, the tests'
server."""


def _refuse_unknown_variables(fields: Mapping[str, Any]) -> None:
    """A misspelt GEOSESSION_* variable would be ignored, its setting left at its default
    (GEOSESSION_STATEMENT_TIMOUT=5s: statements run 30s): refused, naming the likely one."""
    for variable in sorted(os.environ):
        if not variable.upper().startswith(_PREFIX):
            continue
        name = variable[len(_PREFIX) :].lower()
        if name in fields or name in _OTHER_VARIABLES or name.split("__")[0] in fields:
            continue
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = f" (did you mean {_PREFIX}{close[0].upper()}?)" if close else ""
        raise ConfigurationError(
            f"The environment variable {variable} is not a geosession setting{hint}. Fix its "
            "name or unset it; the settings are listed in the README's Configuration table"
        )
