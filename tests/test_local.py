"""The embedded PostGIS, on real servers: one shared cluster, one for faults (stale pid, port).

Every cluster lives in its own temporary GEOSESSION_HOME and is stopped and deleted at the
end. Nothing here skips: without PostgreSQL and PostGIS installed these tests fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from geosession.cli import app
from geosession.errors import ConfigurationError
from geosession.local import LocalCluster, running_url

URL_PATTERN = re.compile(r"^postgresql://postgres@127\.0\.0\.1:(\d+)/geosession$")


def _new_home() -> Path:
    """A fresh home: under /var/lib as root (reachable by postgres), else the temp dir."""
    base = "/var/lib" if os.geteuid() == 0 else tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix="geosession-test-", dir=base))


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """The shared cluster: started once, read by most tests."""
    home = _new_home()
    local = LocalCluster(home)
    try:
        local.start()
        yield local
    finally:
        local.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def spare() -> Iterator[LocalCluster]:
    """A second cluster that tests stop, break and restart."""
    home = _new_home()
    local = LocalCluster(home)
    try:
        yield local
    finally:
        local.stop()
        shutil.rmtree(home, ignore_errors=True)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _port(url: str) -> int:
    match = URL_PATTERN.match(url)
    assert match, url
    return int(match[1])


def test_start_twice_returns_the_same_url(cluster: LocalCluster) -> None:
    first = cluster.start()
    assert URL_PATTERN.match(first)
    assert cluster.start() == first == cluster.url()
    assert cluster.is_running()
    assert running_url(cluster.home) == first


def test_url_connects_and_postgis_works(cluster: LocalCluster) -> None:
    engine = create_engine(cluster.url())
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT postgis_lib_version()")).scalar_one()
            point = conn.execute(text("SELECT ST_AsText(ST_MakePoint(1, 2))")).scalar_one()
    finally:
        engine.dispose()
    assert version.startswith("3.")
    assert point == "POINT(1 2)"


def test_url_takes_database_and_driver(cluster: LocalCluster) -> None:
    port = _port(cluster.url())
    assert cluster.url("postgres", "asyncpg") == (
        f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    )


def test_status_reports_the_running_server(cluster: LocalCluster) -> None:
    status = cluster.status()
    assert status is not None
    assert status.port == _port(cluster.url())
    assert status.url == cluster.url()
    assert status.data_dir == cluster.data_dir
    assert Path(f"/proc/{status.pid}").exists()
    assert re.match(r"\d+\.\d+", status.postgres_version)
    assert status.postgis_version is not None
    assert status.postgis_version.startswith("3.")


def test_server_config_is_the_source_of_truth(cluster: LocalCluster) -> None:
    port = _port(cluster.url())
    conf = (cluster.data_dir / "postgresql.auto.conf").read_text()
    assert f"port = '{port}'" in conf
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres") as conn:
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', "
                "'max_connections', 'fsync', 'unix_socket_directories', 'jit')"
            ).fetchall()
        )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "max_connections": "200",
        "fsync": "on",
        "unix_socket_directories": f'"{cluster.run_dir}"',  # quoted: a comma would split it
        "jit": "off",  # the doctor's advice for spatial queries, taken by its own cluster
    }


def test_home_is_handed_to_postgres_as_root(cluster: LocalCluster) -> None:
    if os.geteuid() != 0:
        assert cluster.home.stat().st_uid == os.geteuid()
        return
    postgres_uid = int(subprocess.check_output(["id", "-u", "postgres"]))
    assert cluster.home.stat().st_uid == postgres_uid
    assert cluster.data_dir.stat().st_uid == postgres_uid


def test_default_home_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSESSION_HOME", "/var/lib/geosession-test-env")
    local = LocalCluster()
    assert local.home == Path("/var/lib/geosession-test-env")
    assert local.data_dir == local.home / "data"
    assert not local.is_running()
    assert running_url() is None
    assert not local.home.exists()


def test_cli_url_prints_only_the_url(cluster: LocalCluster) -> None:
    result = CliRunner().invoke(app, ["local", "url"], env={"GEOSESSION_HOME": str(cluster.home)})
    assert result.exit_code == 0, result.output
    assert result.stdout == cluster.url() + "\n"


def test_cli_status_and_start(cluster: LocalCluster) -> None:
    runner = CliRunner()
    status = runner.invoke(app, ["local", "--home", str(cluster.home), "status"])
    assert status.exit_code == 0, status.output
    assert str(_port(cluster.url())) in status.stdout
    assert "PostGIS" in status.stdout
    start = runner.invoke(app, ["local", "--home", str(cluster.home), "start"])
    assert start.exit_code == 0, start.output
    assert start.stdout == cluster.url() + "\n"


def test_stop_then_status_is_none(spare: LocalCluster) -> None:
    spare.start()
    spare.stop()
    assert spare.status() is None
    assert not spare.is_running()
    assert running_url(spare.home) is None
    with pytest.raises(ConfigurationError, match="not running"):
        spare.url()
    spare.stop()  # stopping a stopped cluster is fine
    result = CliRunner().invoke(app, ["local", "--home", str(spare.home), "status"])
    assert result.exit_code == 1
    assert "not running" in result.stderr
    # the bare command would start the default home instead of this one
    assert f"(geosession local --home {spare.home} start)" in " ".join(result.stderr.split())
    stopped = CliRunner().invoke(app, ["local", "--home", str(spare.home), "stop"])
    assert stopped.exit_code == 0 and "is stopped" in stopped.stdout


def test_a_home_without_a_cluster_is_said_to_hold_none(tmp_path: Path) -> None:
    """A mistyped --home is not reported as a stopped cluster (exit 0, "is stopped")."""
    for command in ("stop", "status"):
        result = CliRunner().invoke(app, ["local", "--home", str(tmp_path), command])
        said = " ".join(result.stderr.split())
        assert result.exit_code == 1 and "is stopped" not in result.stdout, result.output
        assert f"There is no embedded PostGIS in {tmp_path}" in said
        assert f"`geosession local --home {tmp_path} start`" in said
    assert not LocalCluster(tmp_path).is_created() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("owner", ["dead-process", "live-non-postgres-process"])
def test_stale_postmaster_pid_is_recovered(spare: LocalCluster, owner: str) -> None:
    pid = _dead_pid() if owner == "dead-process" else os.getpid()
    spare.start()
    pid_file = spare.data_dir / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    spare.stop()
    pid_file.write_text("\n".join([str(pid), *lines[1:]]) + "\n")
    assert not spare.is_running()
    url = spare.start()
    status = spare.status()
    assert status is not None
    assert status.pid != pid
    assert status.url == url


def test_taken_port_moves_the_cluster(spare: LocalCluster) -> None:
    old_port = _port(spare.start())
    spare.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # port may be in TIME_WAIT
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        new_url = spare.start()
    new_port = _port(new_url)
    assert new_port != old_port
    assert f"port = '{new_port}'" in (spare.data_dir / "postgresql.auto.conf").read_text()
    status = spare.status()
    assert status is not None
    assert status.port == new_port


@pytest.mark.parametrize("mode", ["fast", "immediate", "smart"])
def test_restart_keeps_the_url(spare: LocalCluster, mode: str) -> None:
    url = spare.start()
    before = spare.status()
    spare.restart(mode)
    after = spare.status()
    assert before is not None
    assert after is not None
    assert after.pid != before.pid
    assert spare.url() == url
    with pytest.raises(ValueError, match="restart mode"):
        spare.restart("abort")


def test_start_waits_for_orphaned_server_processes(spare: LocalCluster, tmp_path: Path) -> None:
    """A stale postmaster.pid is removed only once no postgres process works in the data dir."""
    spare.start()
    pid_file = spare.data_dir / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    spare.stop()
    pid_file.write_text("\n".join([str(_dead_pid()), *lines[1:]]) + "\n")
    fake_backend = tmp_path / "postgres"  # a process named postgres, as backends are
    fake_backend.symlink_to(shutil.which("sleep") or "/bin/sleep")
    orphan = subprocess.Popen([str(fake_backend), "1.5"], cwd=spare.data_dir)
    try:
        started = time.monotonic()
        spare.start()
        assert orphan.poll() is not None, "start did not wait for the orphan to exit"
        assert time.monotonic() - started >= 1.0
    finally:
        orphan.kill()
        orphan.wait()


def test_start_recovers_after_the_server_was_killed(spare: LocalCluster) -> None:
    url = spare.start()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS survivor (id int)"))
            conn.execute(text("INSERT INTO survivor VALUES (1)"))
        status = spare.status()
        assert status is not None
        os.kill(status.pid, signal.SIGKILL)  # a crash: postmaster.pid stays behind
        deadline = time.monotonic() + 10
        while spare.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not spare.is_running()
        assert spare.start() == url
        engine.dispose()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM survivor")).scalar_one() >= 1
    finally:
        engine.dispose()


def test_a_home_moved_or_named_with_a_comma_starts_with_its_own_socket_and_settings() -> None:
    """The socket directory, written once at initdb, kept a moved home's old path (the
    start failed), a comma split it in two, and a first start stopped after initdb left
    the cluster without its settings for good."""
    base = _new_home()
    base.chmod(0o755)  # the postgres user reaches the homes inside it
    first, moved = base / "with,comma", base / "moved,home"
    try:
        LocalCluster(first).start()
        LocalCluster(first).stop()
        conf = first / "data" / "postgresql.auto.conf"
        port = [line for line in conf.read_text().splitlines() if line.startswith("port")]
        conf.write_text("\n".join(port) + "\n")  # as a start stopped after initdb leaves it
        first.rename(moved)
        local = LocalCluster(moved)
        url = local.start()
        with psycopg.connect(url) as conn:
            shown = conn.execute(
                "SELECT current_setting('unix_socket_directories'), "
                "current_setting('listen_addresses'), current_setting('max_connections')"
            ).fetchone()
        assert shown == (f'"{local.run_dir}"', "127.0.0.1", "200")
        assert list(local.run_dir.glob(".s.PGSQL.*"))
        local.stop()
    finally:
        LocalCluster(moved).stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_home_that_cannot_hold_a_cluster_is_refused_in_words(tmp_path: Path) -> None:
    """A file where the home goes, or a path too long for the server's Unix socket (107
    bytes), ended in a Python traceback, or in an initdb'd cluster that never starts."""
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ConfigurationError, match="Cannot keep the embedded PostGIS in"):
        LocalCluster(a_file).start()
    base = _new_home()
    try:
        deep = base / ("d" * 60) / ("e" * 40)
        with pytest.raises(ConfigurationError, match="too long a path: its server's socket"):
            LocalCluster(deep).start()
        assert not (deep / "data").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
