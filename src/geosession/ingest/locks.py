"""Lock waits during a load, told apart from chunks that are too slow.

A COPY waits for any session that holds a lock on the table that writes conflict with (a
migration's ALTER TABLE, a CREATE INDEX without CONCURRENTLY, VACUUM FULL, LOCK TABLE).
Left to ``statement_timeout``, such a wait looks like a chunk too large for it: chunks are
halved down to single rows, each waiting again, and the load fails saying to make the
statement cheaper. So each chunk's transaction gets a ``lock_timeout`` of half the
``statement_timeout`` (or the one configured, when shorter): a wait that reaches it is
retried whole, after a pause, naming who holds the lock.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg

from geosession.errors import LockTimeout
from geosession.ingest.target import Target
from geosession.settings import duration_ms

_HOLDERS_SQL = """
    SELECT l.pid, a.application_name, a.state, l.mode,
           extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::int,
           left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120)
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE (l.relation = %(oid)s OR l.relation IN (SELECT relid FROM pg_partition_tree(%(oid)s)))
      AND l.granted
      AND l.pid <> pg_backend_pid()
      AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                     'AccessExclusiveLock')
    ORDER BY a.xact_start NULLS LAST LIMIT 3
"""
"""Sessions holding a lock on the table (or a partition) that a COPY's RowExclusiveLock
conflicts with."""


def lock_wait_ms(statement_timeout: str | None, lock_timeout: str | None) -> int:
    """The lock_timeout of a chunk's transaction: half the statement_timeout, or the
    configured lock_timeout when shorter; 0 (none set) when neither limits the wait."""
    limits = [duration_ms(statement_timeout) / 2 if statement_timeout else 0.0]
    limits.append(duration_ms(lock_timeout) if lock_timeout else 0.0)
    set_limits = [limit for limit in limits if limit > 0]
    return math.ceil(min(set_limits)) if set_limits else 0


def lock_holders(conn: psycopg.Connection[Any], target: Target) -> str:
    """Who holds a lock on ``target`` that its writes wait for, in words (else a row lock:
    a key another transaction is writing, say)."""
    with conn.cursor() as cursor:
        cursor.execute(_HOLDERS_SQL, {"oid": target.oid})
        holders = "; ".join(
            f"pid {pid} ({application or 'no application_name'}, {state or 'state hidden'}, "
            f"{mode}{'' if age is None else f' held for {age} s'}: {query!r})"
            for pid, application, state, mode, age, query in cursor.fetchall()
        )
    if not holders:
        return f"a lock on rows of {target.quoted} (a key another transaction writes?)"
    return f"{target.quoted} is locked by {holders}"


def blocked(ingest_id: str, wait_ms: int, where: str, holders: str) -> LockTimeout:
    """The error for a load that waited for a lock past its lock_timeout, every time."""
    return LockTimeout(
        f"Ingest {ingest_id} waited {wait_ms / 1000:g} s for a lock {where} (lock_timeout): "
        f"{holders}. End that session or wait for it; committed chunks stay, and rerunning "
        "with the same ingest_id resumes after them",
        sqlstate="55P03",
    )
