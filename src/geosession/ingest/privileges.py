"""What a role needs to load a table, checked before any row: privileges on the tables a
load writes, and DDL only an owner may run, each refusal saying what an owner runs once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from geosession.errors import ConfigurationError
from geosession.ingest.target import double_quoted


def current_role(cursor: Any) -> str:
    """The role whose privileges count: the one logged in as, or the one ``settings=``
    (``SET ROLE``) made current, which is the one to name and grant to."""
    cursor.execute("SELECT current_user")
    return str(cursor.fetchone()[0])


def run_as_owner(cursor: Any, statement: str, *, needed: str, then: str) -> None:
    """Runs DDL the ingest ``needed``; a role without the privilege is told what an owner
    must run for it (``statement``) and ``then`` (its grant)."""
    role = current_role(cursor)  # asked first: a refused statement ends the transaction
    try:
        cursor.execute(statement)
    except psycopg.errors.InsufficientPrivilege as error:
        raise ConfigurationError(
            f"{needed}, and role {role} may not make it so ({error.diag.message_primary}). "
            f"Have the schema's or table's owner run, once:\n{statement.strip()};\n"
            f"{then.replace('{role}', double_quoted(role))}"
        ) from None


def require_privileges(
    cursor: Any, privileges: dict[str, tuple[str, ...]], *, needed: str, grant: str
) -> None:
    """Refuses, before any row is read, a role that lacks a privilege on a table the load
    writes (``privileges``: table -> what it needs, a serial column's sequence included as
    ``USAGE``), naming what is missing and the ``grant`` an owner runs; without this the
    load fails at its first commit with PostgreSQL's bare "permission denied"."""
    missing = []
    for table, wanted in privileges.items():
        cursor.execute(
            "SELECT array_agg(p ORDER BY n) FROM unnest(CAST(%s AS text[])) WITH ORDINALITY "
            "AS w(p, n) WHERE NOT (CASE WHEN p = 'USAGE' THEN has_sequence_privilege("
            "pg_get_serial_sequence(%s, 'id'), p) WHEN p = 'DELETE' THEN has_table_privilege("
            "%s, p) ELSE has_any_column_privilege(%s, p) END)",  # GRANT INSERT (a, b) will do
            (list(wanted), table, table, table),
        )
        lacking = cursor.fetchone()[0] or []
        on_table = [name for name in lacking if name != "USAGE"]
        if on_table:
            listed = ", ".join(on_table[:-1]) + " and " if len(on_table) > 1 else ""
            missing.append(f"{listed}{on_table[-1]} on {table}")
        if "USAGE" in lacking:
            missing.append(f"USAGE on the sequence of {table}.id")
    if missing:
        role = current_role(cursor)
        raise ConfigurationError(
            f"{needed}, and role {role} lacks {'; '.join(missing)}. Have their owner run, "
            f"once:\n{grant.replace('{role}', double_quoted(role))}"
        )


def require_column_privileges(
    cursor: Any, table: str, columns: Sequence[str], wanted: Sequence[str]
) -> None:
    """Refuses, before the first chunk, a role whose column grants (GRANT INSERT (a, b))
    leave out a column the source gives; without this COPY fails with "permission denied
    for table" naming none."""
    cursor.execute(
        "SELECT c, p FROM unnest(CAST(%s AS text[])) AS c, unnest(CAST(%s AS text[])) AS p "
        "WHERE NOT has_column_privilege(%s, c, p)",
        (list(columns), list(wanted), table),
    )
    lacking = cursor.fetchall()
    if lacking:
        role = current_role(cursor)
        named = ", ".join(f"{privilege} on {column}" for column, privilege in lacking)
        grants = " ".join(
            f"GRANT {privilege} ({double_quoted(column)}) ON {table} TO {double_quoted(role)};"
            for column, privilege in lacking
        )
        raise ConfigurationError(
            f"the ingest writes the source's columns of {table}, and role {role} lacks "
            f"{named}. Leave them out of the source, or have the table's owner run, once:\n"
            f"{grants}"
        )


_SERIALS_SQL = """
    SELECT s.seq FROM pg_attribute a
    CROSS JOIN LATERAL (SELECT pg_get_serial_sequence(%(table)s, a.attname) AS seq) s
    WHERE a.attrelid = CAST(%(table)s AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attidentity = '' AND a.attname <> ALL(%(columns)s) AND s.seq IS NOT NULL
      AND NOT has_sequence_privilege(s.seq, 'USAGE')
      AND NOT has_sequence_privilege(s.seq, 'UPDATE')
"""
"""Sequences of the serial columns the source leaves to their default (nextval), which the
role may not draw from (an identity column's needs no privilege)."""


def require_sequence_usage(cursor: Any, table: str, columns: Sequence[str]) -> None:
    """Refuses, before the first chunk, a load whose rows would take a serial column's
    default from a sequence the role may not use ("permission denied for sequence")."""
    cursor.execute(_SERIALS_SQL, {"table": table, "columns": list(columns)})
    sequences = [row[0] for row in cursor.fetchall()]
    if sequences:
        role = current_role(cursor)
        grants = " ".join(
            f"GRANT USAGE ON SEQUENCE {seq} TO {double_quoted(role)};" for seq in sequences
        )
        raise ConfigurationError(
            f"rows loaded into {table} take the next value of {', '.join(sequences)}, and role "
            f"{role} may not use it. Give the column in the source, or "
            f"have the sequence's owner run, once:\n{grants}"
        )
