"""Keeping the ingest ledger small: entries merged where their rows meet.

A load leaves a ledger entry per chunk: hundreds for a million rows, and a feed that
commits every few seconds (flush_interval) thousands a day, read again by each chunk's
check for another run of its id. Entries whose rows meet or overlap are replaced by one
covering them all, with their counts summed: what the ledger says is unchanged (the same
rows are committed: those a rerun skips, those another run of the id at once must not load
again; as many inserted and rejected). A merged entry's checksum says how many chunks it
holds. The one lookup by a chunk's own entry, after its commit went unanswered
(:func:`.ledger.chunk_inserted`), is kept: a running load merges only below the first row
of every chunk it has not had an answer for.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from geosession.ingest.ledger import LEDGER, take_turns

MERGE_EVERY = 1_000
"""Answered chunks between the merges of a load that runs on (a feed's); a load that
completes merges once more, at its end."""

_INT4_MAX = 2**31 - 1
_LAST_ROW = 2**63 - 1
_MERGED = f"""
SELECT ingest_id, (array_agg(target ORDER BY committed_at DESC))[1], target_oid,
       target_database, min(first_row), max(last_row), sum(rows_inserted), sum(rows_rejected),
       format('merged:%%s chunks',
              sum(coalesce(substring(checksum FROM '^merged:([0-9]+) ')::bigint, 1))),
       max(committed_at), bool_or(started_empty)
FROM (SELECT *, sum(starts) OVER (PARTITION BY target_oid, target_database
                                  ORDER BY first_row, last_row) AS span
      FROM (SELECT *, CASE WHEN first_row <= 1 + max(last_row) OVER (
                               PARTITION BY target_oid, target_database
                               ORDER BY first_row, last_row
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                           THEN 0 ELSE 1 END AS starts
            FROM {LEDGER} WHERE ingest_id = %(id)s AND last_row <= %(through)s) entries) spans
GROUP BY ingest_id, target_oid, target_database, span
HAVING count(*) > 1 AND sum(rows_inserted) <= {_INT4_MAX} AND sum(rows_rejected) <= {_INT4_MAX}
"""
"""Each run of one id's entries whose rows meet or overlap, as one entry (its table's
latest name, the counts summed, and in place of a checksum the chunks it holds): only
runs of several."""


def merge_entries(cursor: Any, ingest_id: str, through: int | None = None) -> None:
    """Replaces each run of the id's entries whose rows meet or overlap (those ending by
    row ``through``: all when None) by one entry covering them."""
    through = _LAST_ROW if through is None else through
    take_turns(cursor, ingest_id)  # no commit of the id lands between the two steps
    cursor.execute(_MERGED, {"id": ingest_id, "through": through})
    for merged in cursor.fetchall():
        first, last, oid, database = merged[4], merged[5], merged[2], merged[3]
        cursor.execute(
            f"DELETE FROM {LEDGER} WHERE ingest_id = %s AND first_row BETWEEN %s AND %s "
            "AND last_row <= %s AND target_oid IS NOT DISTINCT FROM %s "
            "AND target_database IS NOT DISTINCT FROM %s",
            (ingest_id, first, last, through, oid, database),
        )
        cursor.execute(
            f"INSERT INTO {LEDGER} (ingest_id, target, target_oid, target_database, first_row, "
            "last_row, rows_inserted, rows_rejected, checksum, committed_at, started_empty) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            merged,
        )


class _Span(Protocol):
    """A chunk's source rows."""

    first_row: int
    last_row: int


class MergePoints:
    """Where a running load may merge its entries: below the first row of each chunk its
    writers hold (chunks are taken in source order, so those waiting come after), once
    every :data:`MERGE_EVERY` answered chunks."""

    def __init__(self, every: int | None = None) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # a held chunk's id() -> its first row
        self._answered_through = 0
        self._since = 0
        self._every = every or MERGE_EVERY

    def taken(self, chunk: _Span) -> None:
        """A writer holds ``chunk`` until it is answered (a failed one stays held)."""
        with self._lock:
            self._held[id(chunk)] = chunk.first_row

    def answered(self, chunk: _Span) -> int | None:
        """Notes ``chunk`` committed (or known not to be); the last row entries may be
        merged through when a merge is due, else None."""
        with self._lock:
            self._held.pop(id(chunk), None)
            self._answered_through = max(self._answered_through, chunk.last_row)
            self._since += 1
            if self._since < self._every:
                return None
            self._since = 0
            held = min(self._held.values(), default=None)
            return self._answered_through if held is None else held - 1
