"""The embedded PostGIS: a private PostgreSQL cluster that geosession creates and runs itself.

With no database configured, geosession starts a cluster of its own from the PostgreSQL
binaries installed on the machine (``pg_config --bindir``, else the newest
``/usr/lib/postgresql/*/bin``) and enables PostGIS from the OS packages::

    cluster = LocalCluster()          # home: $GEOSESSION_HOME, else the default below
    url = cluster.start()             # initdb on first use; idempotent
    # postgresql://postgres@127.0.0.1:PORT/geosession (libpq's form: psql takes it too)

Where data lives: ``$GEOSESSION_HOME``; else ``/var/lib/geosession`` when running as root;
else the user data directory (``~/.local/share/geosession`` on Linux). Inside it: ``data/``
(the cluster), ``run/`` (the unix socket), ``postgresql.log`` (the server log).

Security: the server listens on 127.0.0.1 only and its unix socket sits in a private
directory. Authentication is ``trust``: any local process can log in as ``postgres``
without a password, which is why the URL carries none. It is a development and test
database; use ``GEOSESSION_DATABASE_URL`` for anything shared.

As root, ``initdb``, ``pg_ctl`` and the server run as the ``postgres`` OS user (``runuser``;
PostgreSQL refuses to run as root) and the home directory is handed to that user.

The server configuration is the single source of truth: the port, listen address, socket
directory and memory settings live in ``data/postgresql.auto.conf`` (the file ``ALTER
SYSTEM`` writes) and are read back from there. While the server runs, its port is read from
``postmaster.pid``, which the server itself writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

import platformdirs
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from geosession.errors import ConfigurationError, PostGISNotInstalled

__all__ = ["ClusterStatus", "LocalCluster", "default_home", "running_url"]

log = logging.getLogger(__name__)

DATABASE = "geosession"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
_TIMEOUT_S = 60
_SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "max_connections": "200",
    "shared_buffers": "256MB",
    "jit": "off",  # PostGIS's costs make short spatial queries compile first (doctor's check)
}
_SETTING_LINE = re.compile(r"^\s*(?P<key>[A-Za-z_][\w.]*)\s*=?\s*(?P<value>'(?:[^']|'')*'|[^\s#]+)")
_STOP_MODES = ("fast", "immediate", "smart")
_SOCKET_PATH_BYTES = 107  # sun_path's 108 bytes, its last the terminating NUL


def _install_hint(major: str = "15") -> str:
    return (
        f"install them with `apt-get install postgresql-{major} postgresql-{major}-postgis-3`"
        " or set GEOSESSION_DATABASE_URL to an existing PostGIS database"
    )


@dataclass(frozen=True)
class ClusterStatus:
    """What a running embedded cluster reports about itself."""

    port: int
    pid: int
    data_dir: Path
    url: str
    postgres_version: str
    postgis_version: str | None
    """``postgis_lib_version()``; None when PostGIS is not enabled in the database yet."""


def default_home() -> Path:
    """``$GEOSESSION_HOME``; else ``/var/lib/geosession`` as root; else the user data dir."""
    configured = os.environ.get("GEOSESSION_HOME")
    if configured:
        return Path(configured)
    if _is_root():
        return Path("/var/lib/geosession")
    return Path(platformdirs.user_data_dir("geosession"))


def running_url(home: Path | None = None) -> str | None:
    """The URL of the embedded cluster in ``home`` if it is running, else None."""
    cluster = LocalCluster(home)
    return cluster.url() if cluster.is_running() else None


class LocalCluster:
    """A private PostgreSQL + PostGIS cluster kept in one directory (``home``)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home or default_home()).expanduser().resolve()
        self.data_dir = self.home / "data"
        self.run_dir = self.home / "run"
        self.log_file = self.home / "postgresql.log"

    def __repr__(self) -> str:
        return f"LocalCluster(home={str(self.home)!r})"

    def start(self) -> str:
        """Start the cluster (creating it on first use) and return its SQLAlchemy URL, once
        it is ready: another process starting it holds the lock until its database and
        PostGIS are there, so this waits for it rather than trust its postmaster.pid."""
        with self._lock():
            self._start_locked()
        return self.url()

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are disconnected); no-op if stopped."""
        if not self.is_running():
            return
        with self._lock():
            if self.is_running():
                self._pg_ctl_or_raise("stop", "-m", "fast")

    def restart(self, mode: str = "fast") -> None:
        """Restart the server; ``mode="immediate"`` simulates a crash (recovery on start),
        ``"smart"`` waits for every session to end (refusing new ones meanwhile)."""
        if mode not in _STOP_MODES:
            raise ValueError(f"restart mode must be one of {_STOP_MODES}, not {mode!r}")
        with self._lock():
            if not self.is_running():
                self._start_locked()
                return
            self._pg_ctl_or_raise("restart", "-m", mode, "-l", str(self.log_file))

    def status(self) -> ClusterStatus | None:
        """Port, pid, versions and URL of the running server; None when it is not running."""
        pid = self._running_pid()
        if pid is None:
            return None
        port = self._running_port()
        with _connect(port, "postgres") as conn:
            postgres_version = _scalar(conn, "SHOW server_version")
        return ClusterStatus(
            port=port,
            pid=pid,
            data_dir=self.data_dir,
            url=_make_url(port, DATABASE),
            postgres_version=postgres_version,
            postgis_version=_postgis_version(port),
        )

    def url(self, database: str = DATABASE, driver: str = "") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DATABASE`` of the running server.

        Without a driver in it the URL suits psql and libpq as well, and leaves the choice
        of driver to the settings (``driver``, ``async_driver``); ``driver="psycopg2"``
        writes one in (``postgresql+psycopg2://``).
        """
        if not self.is_running():
            raise ConfigurationError(
                f"The embedded PostGIS in {self.home} is not running; "
                f"start it with `{self.start_command}`."
            )
        return _make_url(self._running_port(), database, driver)

    @property
    def start_command(self) -> str:
        """The command that starts this cluster (naming its home where it is not the
        default one, which the bare command would start instead)."""
        if self.home == LocalCluster().home:
            return "geosession local start"
        return f"geosession local --home {shlex.quote(str(self.home))} start"

    def is_created(self) -> bool:
        """True once a first start has made the cluster here (initdb's PG_VERSION)."""
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        """True when ``postmaster.pid`` names a live server process of this data directory."""
        return self._running_pid() is not None

    @cached_property
    def _binaries(self) -> _Binaries:
        return _find_binaries()

    def _start_locked(self) -> None:
        if self.is_running():  # another process started it while we waited for the lock
            return
        binaries = self._binaries
        self._prepare_home()
        self._ensure_initialized(binaries)
        self._ensure_settings()
        self._remove_stale_files()
        port = self._ensure_free_port()
        self._pg_ctl_or_raise("start", "-l", str(self.log_file))
        _ensure_database(port, binaries.major)
        log.info("Embedded PostGIS running on %s:%d (data in %s)", HOST, port, self.data_dir)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialize start/stop across processes sharing this home."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            lock_file = open(self.home / ".lock", "a")  # noqa: SIM115 - closed below
        except OSError as error:
            raise ConfigurationError(
                f"Cannot keep the embedded PostGIS in {self.home}: {error.strerror}. Choose "
                "a directory geosession may create and write (--home, GEOSESSION_HOME)."
            ) from None
        with lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield

    def _prepare_home(self) -> None:
        socket_path = f"{self.run_dir}/.s.PGSQL.65535"
        if len(socket_path.encode()) > _SOCKET_PATH_BYTES:
            raise ConfigurationError(
                f"The embedded PostGIS's home {self.home} is too long a path: its server's "
                f"socket ({socket_path}) would pass the {_SOCKET_PATH_BYTES} bytes a Unix socket's "
                "path may have. Choose a shorter one (--home, GEOSESSION_HOME)."
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        if not _is_root():
            return
        owner = pwd.getpwnam(SUPERUSER)
        uid, gid = owner.pw_uid, owner.pw_gid
        for path in (self.home, self.run_dir, self.log_file):
            if path.exists() and path.stat().st_uid != uid:
                os.chown(path, uid, gid)
        if self.data_dir.exists() and self.data_dir.stat().st_uid != uid:
            _chown_tree(self.data_dir, uid, gid)
        if _run(["test", "-w", str(self.home), "-a", "-x", str(self.home)]).returncode != 0:
            raise ConfigurationError(
                f"The postgres user cannot reach {self.home} (a parent directory is closed "
                "to other users, as /root is); set GEOSESSION_HOME to a directory such as "
                "/var/lib/geosession."
            )

    def _ensure_initialized(self, binaries: _Binaries) -> None:
        version_file = self.data_dir / "PG_VERSION"
        if version_file.exists():
            found = version_file.read_text().strip()
            if found != binaries.major:
                raise ConfigurationError(
                    f"{self.data_dir} holds a PostgreSQL {found} cluster but the installed "
                    f"server is PostgreSQL {binaries.major}; install postgresql-{found} or "
                    "move that directory away to start afresh."
                )
            return
        self._initdb(binaries)

    def _ensure_settings(self) -> None:
        """The cluster's settings, written where missing (a first start stopped after
        initdb, before it wrote them) and its socket directory always this home's own
        (the home moved, or copied), quoted, as a comma would split it in two."""
        current = self._read_settings()
        updates = {key: value for key, value in _SERVER_SETTINGS.items() if key not in current}
        sockets = '"' + str(self.run_dir).replace('"', '""') + '"'
        if current.get("unix_socket_directories") != sockets:
            updates["unix_socket_directories"] = sockets
        if "port" not in current:
            updates["port"] = str(_free_port())
        if updates:
            self._write_settings(updates)

    def _initdb(self, binaries: _Binaries) -> None:
        stderr = ""
        for locale in ("C.UTF-8", "C"):
            args = ["-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"]
            result = _run([binaries.tool("initdb"), *args, f"--locale={locale}"], cwd=self.home)
            if result.returncode == 0:
                log.info("Created a PostgreSQL cluster in %s (locale %s)", self.data_dir, locale)
                return
            stderr = result.stderr.strip()
        raise ConfigurationError(f"initdb could not create {self.data_dir}: {stderr}")

    def _remove_stale_files(self) -> None:
        """Drop a postmaster.pid (and socket locks) left behind by a server that is gone.

        Safe only when no process still works in the data directory: backends orphaned by
        a crashed server would otherwise share it with a new one, so wait for them to exit.
        """
        survivors = _wait_for_no_processes_in(self.data_dir, timeout=10.0)
        if survivors:
            raise ConfigurationError(
                f"Processes {survivors} still work in {self.data_dir} although its server "
                "is gone; end them before starting the embedded PostGIS again."
            )
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            log.warning("Removing stale %s: no server of this cluster runs", pid_file)
            pid_file.unlink(missing_ok=True)
        for lock in self.run_dir.glob(".s.PGSQL.*"):
            lock.unlink(missing_ok=True)

    def _ensure_free_port(self) -> int:
        port = self._configured_port()
        if port is not None and _port_is_free(port):
            return port
        new_port = _free_port()
        if port is not None:
            log.warning(
                "Port %d on %s is taken by another process; the embedded PostGIS moves to "
                "port %d (written to %s)",
                port,
                HOST,
                new_port,
                self._auto_conf,
            )
        self._write_settings({"port": str(new_port)})
        return new_port

    def _pg_ctl_or_raise(self, action: str, *args: str) -> None:
        pg_ctl = self._binaries.tool("pg_ctl")
        command = [pg_ctl, action, "-D", str(self.data_dir), "-w", "-t", str(_TIMEOUT_S), *args]
        result = _run(command, cwd=self.home)
        if result.returncode != 0:
            raise ConfigurationError(
                f"`pg_ctl {action}` failed for {self.data_dir}: {result.stderr.strip()}\n"
                f"Last lines of {self.log_file}:\n{self._log_tail()}"
            )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    @property
    def _auto_conf(self) -> Path:
        return self.data_dir / "postgresql.auto.conf"

    def _read_settings(self) -> dict[str, str]:
        text = self._auto_conf.read_text() if self._auto_conf.exists() else ""
        matches = (_SETTING_LINE.match(line) for line in text.splitlines())
        return {m["key"].lower(): _unquote(m["value"]) for m in matches if m}

    def _write_settings(self, updates: dict[str, str]) -> None:
        """Set ``updates`` in postgresql.auto.conf, keeping every other line as it is."""
        lines = self._auto_conf.read_text().splitlines() if self._auto_conf.exists() else []
        kept, written = [], set()
        for line in lines:
            match = _SETTING_LINE.match(line)
            key = match["key"].lower() if match else None
            if key in updates and key not in written:
                kept.append(_setting_line(key, updates[key]))
                written.add(key)
            elif key not in updates:
                kept.append(line)
        kept += [_setting_line(key, value) for key, value in updates.items() if key not in written]
        _write_owned_like(self._auto_conf, "\n".join(kept) + "\n", self.data_dir)

    def _configured_port(self) -> int | None:
        port = self._read_settings().get("port")
        return int(port) if port and port.isdigit() else None

    def _pid_file_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return []

    def _running_pid(self) -> int | None:
        lines = self._pid_file_lines()
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        return pid if _is_postmaster_of(pid, self.data_dir) else None

    def _running_port(self) -> int:
        lines = self._pid_file_lines()
        if len(lines) > 3 and lines[3].strip().isdigit():
            return int(lines[3])
        port = self._configured_port()
        if port is None:
            raise ConfigurationError(f"No port is configured in {self._auto_conf}.")
        return port


@dataclass(frozen=True)
class _Binaries:
    bindir: Path
    major: str

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def _find_binaries() -> _Binaries:
    bindir = _pg_config_bindir() or _newest_debian_bindir()
    if bindir is None:
        raise ConfigurationError(
            f"The PostgreSQL server programs (initdb, pg_ctl, postgres) were not found; "
            f"{_install_hint()}."
        )
    match = re.search(r"\(PostgreSQL\) (\d+)", _run([str(bindir / "postgres"), "--version"]).stdout)
    major = match[1] if match else bindir.parent.name
    sharedir = _pg_config(str(bindir / "pg_config"), "--sharedir")
    if sharedir and not (Path(sharedir) / "extension" / "postgis.control").exists():
        raise PostGISNotInstalled(
            f"PostGIS is not installed for PostgreSQL {major}; {_install_hint(major)}."
        )
    return _Binaries(bindir, major)


def _pg_config(pg_config: str | None, flag: str) -> str | None:
    if pg_config is None or not Path(pg_config).exists():
        return None
    result = _run([pg_config, flag])
    return result.stdout.strip() if result.returncode == 0 else None


def _pg_config_bindir() -> Path | None:
    bindir = _pg_config(shutil.which("pg_config"), "--bindir")
    return Path(bindir) if bindir and _has_server(Path(bindir)) else None


def _newest_debian_bindir() -> Path | None:
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_server(p)]
    return max(candidates, key=_version_key, default=None)


def _version_key(bindir: Path) -> list[int]:
    return [int(number) for number in re.findall(r"\d+", bindir.parent.name)]


def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program; as root, as the postgres user. Never raises on exit status."""
    if _is_root():
        command = ["runuser", "-u", SUPERUSER, "--", *command]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    try:
        return subprocess.run(
            command, capture_output=True, text=True, cwd=cwd, env=env, timeout=_TIMEOUT_S + 30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigurationError(f"Could not run {' '.join(command)}: {exc}") from exc


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for parent, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.chown(os.path.join(parent, name), uid, gid, follow_symlinks=False)


def _write_owned_like(path: Path, text: str, owner_of: Path) -> None:
    """Atomically replace ``path``, owned like ``owner_of`` and readable only by its owner."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    temp.chmod(0o600)
    if _is_root():
        stat = owner_of.stat()
        os.chown(temp, stat.st_uid, stat.st_gid)
    os.replace(temp, path)


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """True when ``pid`` is alive and is a server working in ``data_dir`` (its cwd)."""
    try:
        return pid > 0 and Path(os.readlink(f"/proc/{pid}/cwd")) == data_dir.resolve()
    except FileNotFoundError:  # no such process (or no /proc: then ask the kernel)
        return Path("/proc/self").exists() is False and _pid_alive(pid)
    except OSError:  # not ours to inspect: a live process, is it a postgres one?
        with contextlib.suppress(OSError):
            return Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
        return False


def _wait_for_no_processes_in(directory: Path, timeout: float) -> list[int]:
    """Pids still working in ``directory`` (their cwd) after waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p.name) for p in Path("/proc").glob("[0-9]*") if _postgres_in(p, directory)]
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def _postgres_in(proc_entry: Path, directory: Path) -> bool:
    """True when the process at ``/proc/PID`` is a postgres one with cwd ``directory``."""
    try:
        in_directory = Path(os.readlink(proc_entry / "cwd")) == directory.resolve()
        return in_directory and (proc_entry / "comm").read_text().strip() == "postgres"
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _setting_line(key: str, value: str) -> str:
    return f"{key} = '{value.replace(chr(39), chr(39) * 2)}'"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def _make_url(port: int, database: str, driver: str = "") -> str:
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{SUPERUSER}@{HOST}:{port}/{quote(database, safe='')}"


def _connect(port: int, dbname: str) -> psycopg.Connection[TupleRow]:
    try:
        return psycopg.connect(
            host=HOST, port=port, user=SUPERUSER, dbname=dbname, autocommit=True, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        raise ConfigurationError(
            f"Could not connect to the embedded PostgreSQL on {HOST}:{port}: {exc}"
        ) from exc


def _scalar(conn: psycopg.Connection[TupleRow], query: str) -> str:
    row = conn.execute(query).fetchone()
    return str(row[0]) if row else ""


def _ensure_database(port: int, major: str) -> None:
    """Create the ``geosession`` database if missing and enable PostGIS in it."""
    with _connect(port, "postgres") as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if found.fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    with _connect(port, DATABASE) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.Error as exc:
            raise PostGISNotInstalled(
                f"PostGIS could not be enabled in the embedded cluster ({exc}); "
                f"{_install_hint(major)}."
            ) from exc


def _postgis_version(port: int) -> str | None:
    try:
        with _connect(port, DATABASE) as conn:
            return _scalar(conn, "SELECT postgis_lib_version()")
    except (psycopg.Error, ConfigurationError):
        return None
