"""Sequences a load's own ids overtook, moved past them.

A COPY of explicit ids (a GeoPackage's fids, a CSV's id column) leaves the column's
identity or serial sequence where it was, so the next INSERT that takes the default
collides with a loaded row ("duplicate key value violates unique constraint"). After a
load, each column it wrote that draws its default from a sequence has the sequence set to
the column's highest value when that is ahead, as ogr2ogr does after keeping feature ids.
A sequence is only ever moved forward: a value another session drew meanwhile stays used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from geosession.ingest.connections import WITHOUT_STATEMENT_TIMEOUT
from geosession.ingest.target import Target
from geosession.read.plan import quote_identifier

log = logging.getLogger(__name__)

_SEQUENCES_SQL = """
SELECT attname, pg_get_serial_sequence(%(table)s, attname) FROM pg_attribute
WHERE attrelid = %(oid)s AND attname = ANY(%(columns)s) AND NOT attisdropped
AND pg_get_serial_sequence(%(table)s, attname) IS NOT NULL
"""

_BEHIND = "top > coalesce(pg_sequence_last_value(CAST(%(seq)s AS regclass)), 0)"
"""The sequence's last value (none until it was first used) is below the loaded ids."""


def advance_sequences(
    conn: psycopg.Connection[Any], target: Target, columns: Sequence[str]
) -> None:
    """Moves the sequences of the loaded ``columns`` past their highest value (one
    transaction, whose max() reads the whole table where the column has no index, so it
    is not bounded by statement_timeout). Where the role may not set a sequence, a warning
    says what to run."""
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(WITHOUT_STATEMENT_TIMEOUT)
        found = {"table": target.quoted, "oid": target.oid, "columns": list(columns)}
        cursor.execute(_SEQUENCES_SQL, found)
        for column, sequence in cursor.fetchall():
            quoted = quote_identifier(column)
            highest = f"SELECT max({quoted}) AS top FROM {target.quoted}"  # noqa: S608
            advance = f"SELECT setval(%(seq)s, top) FROM ({highest}) x WHERE {_BEHIND}"  # noqa: S608
            try:
                with conn.transaction():
                    cursor.execute(advance, {"seq": sequence})
            except psycopg.errors.InsufficientPrivilege:
                log.warning(
                    "the load wrote its own values into %s.%s, and this role may not move "
                    "its sequence %s past them, so an INSERT that takes the column's default "
                    "may collide with a loaded row. Have the table's owner run: "
                    "SELECT setval('%s', max(%s)) FROM %s",
                    *(target.quoted, quoted, sequence, sequence, quoted, target.quoted),
                )
