"""The rejects table, ``<table>_rejected``: made when missing, and written by COPY."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from geosession.ingest.connections import copying
from geosession.ingest.privileges import require_privileges, run_as_owner
from geosession.ingest.target import Target
from geosession.ingest.validate import Reject
from geosession.ingest.write_plan import WritePlan


def ensure_quarantine(cursor: psycopg.Cursor[Any], target: Target) -> str:
    """Creates ``<table>_rejected`` if missing (a role may load into a table and its
    existing rejects table without the privilege to create tables); returns its name."""
    name = target.sibling("_rejected")
    needed = f"on_invalid='quarantine' keeps bad rows in {name}"
    grant = (
        f"GRANT SELECT, INSERT, DELETE ON {name} TO {{role}}; GRANT USAGE ON SEQUENCE "
        f"{target.sibling('_rejected_id_seq')} TO {{role}}; or load with on_invalid='skip' "
        "or 'raise', which keep no rejects."
    )
    if cursor.execute("SELECT to_regclass(%s)", (name,)).fetchone() == (None,):
        # loads starting at once take turns (IF NOT EXISTS is no guard against a race)
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
        run_as_owner(
            cursor,
            f"CREATE TABLE IF NOT EXISTS {name} (id bigserial PRIMARY KEY, ingest_id text NOT "
            "NULL, source_row bigint NOT NULL, column_name text, kind text NOT NULL, reason "
            "text NOT NULL, original_value text, rejected_at timestamptz NOT NULL DEFAULT now())",
            needed=needed,
            then=grant,
        )
    require_privileges(cursor, {name: ("INSERT", "USAGE")}, needed=needed, grant=grant)
    return name


def keep_rejects(cursor: psycopg.Cursor[Any], plan: WritePlan, rejects: list[Reject]) -> None:
    """The rejects into ``<table>_rejected`` by COPY (an INSERT each cost 23 µs a row: a
    load whose every row was rejected spent more time there than validating)."""
    statement = sql.SQL(
        "COPY {} (ingest_id, source_row, column_name, kind, reason, original_value) FROM STDIN"
    ).format(sql.SQL(plan.target.sibling("_rejected")))
    with copying(cursor, statement) as copy:
        for r in rejects:
            copy.write_row(
                (plan.ingest_id, r.row, r.column, r.kind, _storable(r.reason), _storable(r.value))
            )


def _storable(text: str | None) -> str | None:
    """``text`` as PostgreSQL's text can hold it: a NUL character written \\x00, and a lone
    surrogate (which UTF-8 cannot encode) \\ud800."""
    if not text:
        return text
    text = text.replace("\x00", "\\x00")
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="backslashreplace").decode()
    return text
