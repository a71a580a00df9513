"""TLS on a real server: sslmode, sslrootcert, sslcert and sslkey reach every driver (libpq
parameters for psycopg and psycopg2, an SSL context for asyncpg), the ingest's COPY
connections included; a server certificate from another authority and a connection
without TLS are refused with geosession's errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from geosession import AccessDenied, ConnectionFailed, SpatialDatabase
from geosession.local import LocalCluster
from tests.faults.helpers import DRIVERS, database_for, libpq_url, run_tx

ROLE = "tls_user"
SSL_STATE = "SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def openssl(*arguments: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *arguments], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"openssl {arguments[0]} failed: {done.stderr[-1000:]}"


def make_certificates(folder: Path) -> None:
    """A test authority, a server certificate for 127.0.0.1 and a client one for ROLE
    signed by it, and another authority that signed neither."""
    for authority in ("ca", "other"):
        openssl(
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", f"/CN=geosession test {authority}"),
            *("-keyout", f"{authority}.key", "-out", f"{authority}.crt"),
            cwd=folder,
        )
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, subject, extensions in (
        ("server", "/CN=localhost", ("-extfile", "server.ext")),
        ("client", f"/CN={ROLE}", ()),
    ):
        openssl(
            *("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject),
            *("-keyout", f"{name}.key", "-out", f"{name}.csr"),
            cwd=folder,
        )
        openssl(
            *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
            *("-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extensions),
            cwd=folder,
        )
    os.chmod(folder / "client.key", 0o600)


@pytest.fixture(scope="module")
def tls_server(
    dedicated_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The dedicated cluster with TLS on; ROLE may connect only over TLS with a client
    certificate (pg_hba ``cert``), and owns a table to load into."""
    url = dedicated_cluster.start()
    folder = tmp_path_factory.mktemp("tls")
    make_certificates(folder)
    data = dedicated_cluster.data_dir
    for name in ("server.crt", "server.key", "ca.crt"):
        shutil.copy(folder / name, data / name)
        if os.geteuid() == 0:
            shutil.chown(data / name, "postgres", "postgres")
    os.chmod(data / "server.key", 0o600)
    hba = data / "pg_hba.conf"
    rules = f"hostssl all {ROLE} 127.0.0.1/32 cert\nhostnossl all {ROLE} 127.0.0.1/32 reject\n"
    hba.write_text(rules + hba.read_text())
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        for name, value in (
            ("ssl", "on"),
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
            ("ssl_ca_file", "ca.crt"),
        ):
            admin.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        admin.execute(f"DROP ROLE IF EXISTS {ROLE}")
        admin.execute(f"CREATE ROLE {ROLE} LOGIN")
        admin.execute("SELECT pg_reload_conf()")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {ROLE}")
    server = make_url(url)
    return {
        "url": f"postgresql://{ROLE}@127.0.0.1:{server.port}/{server.database}",
        "folder": folder,
    }


def settings(tls_server: dict[str, Any], root: str = "ca.crt", **more: Any) -> dict[str, Any]:
    folder: Path = tls_server["folder"]
    return {
        "sslmode": "verify-full",
        "sslrootcert": folder / root,
        "sslcert": folder / "client.crt",
        "sslkey": folder / "client.key",
        "connect_timeout": 5,
        **more,
    }


def ssl_state(db: SpatialDatabase, driver: str) -> tuple[Any, ...]:
    """Whether this session's connection uses TLS, and the client certificate's subject."""
    return run_tx(db, driver, lambda s: tuple(s.execute(text(SSL_STATE)).one()), attempts=1)


@pytest.mark.parametrize("driver", DRIVERS)
def test_verified_tls_with_a_client_certificate_on_every_driver(
    make_db: Callable[..., SpatialDatabase], tls_server: dict[str, Any], driver: str
) -> None:
    db = database_for(make_db, driver, url=tls_server["url"], **settings(tls_server))
    assert ssl_state(db, driver) == (True, f"/CN={ROLE}")
    if driver == "asyncpg":
        return
    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS over_tls"))
        s.execute(text("CREATE TABLE over_tls (id int, geom geometry(Point, 4326))"))
    report = db.ingest("over_tls", [{"id": 1, "geom": "POINT(1 2)"}], progress=False)
    assert report.inserted == 1  # the COPY connections (psycopg 3's own pool too)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_server_certificate_of_another_authority_is_refused(
    make_db: Callable[..., SpatialDatabase], tls_server: dict[str, Any], driver: str
) -> None:
    db = database_for(
        make_db, driver, url=tls_server["url"], **settings(tls_server, root="other.crt")
    )
    with pytest.raises(ConnectionFailed, match="(?i)certificate verify failed.*sslrootcert"):
        ssl_state(db, driver)
    with pytest.raises(ConnectionFailed) as refused:  # no rerun can cure it: none is made
        run_tx(db, driver, lambda s: s.execute(text("SELECT 1")))
    assert not refused.value.transient and "gave up" not in str(refused.value)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_connection_without_tls_is_refused_where_the_server_requires_it(
    make_db: Callable[..., SpatialDatabase], tls_server: dict[str, Any], driver: str
) -> None:
    db = database_for(make_db, driver, url=tls_server["url"], sslmode="disable", connect_timeout=5)
    with pytest.raises(AccessDenied, match="no encryption.*only over TLS: set sslmode"):
        ssl_state(db, driver)


@pytest.mark.parametrize("driver", DRIVERS)
def test_tls_without_the_client_certificate_the_server_asks_for_is_refused(
    make_db: Callable[..., SpatialDatabase], tls_server: dict[str, Any], driver: str
) -> None:
    url, folder = tls_server["url"], tls_server["folder"]
    db = database_for(make_db, driver, url=url, sslmode="require", sslrootcert=folder / "ca.crt")
    with pytest.raises(AccessDenied, match="(?i)certificate"):
        ssl_state(db, driver)
