"""The benchmarks' server: which one, how to reach it, and a database of their own."""

from __future__ import annotations

import os
import sys
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url


def resolve_url(given: str | None) -> URL:
    """``given``, else GEOSESSION_DATABASE_URL, else the running embedded cluster."""
    from geosession.local import running_url

    url = given or os.environ.get("GEOSESSION_DATABASE_URL") or running_url()
    if not url:
        sys.exit("No database: set GEOSESSION_DATABASE_URL or run `geosession local start`")
    return make_url(url).set(drivername="postgresql+psycopg")


def conninfo(url: URL) -> str:
    """The libpq URL psycopg takes (with the password: it stays in this process)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def connect(url: URL) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo(url), autocommit=True)


def ensure_database(url: URL, name: str) -> URL:
    """Database ``name`` on ``url``'s server with PostGIS, created if missing."""
    with connect(url) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = url.set(database=name)
    with connect(database) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return database


def drop_database(url: URL, name: str) -> None:
    with connect(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
