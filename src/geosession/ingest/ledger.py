"""The ingest ledger: which source rows are committed, and which indexes are deferred.

Each chunk's rows are committed in the same transaction as a ledger entry naming the
source rows it covered (first and last row number) and a CRC-32 of the COPY data sent. So
whether a chunk landed is never a guess: after a lost connection, a crash or Ctrl-C, the
ledger says which rows are in the table, and a rerun with the same ingest id skips
exactly those. Each entry also says whether the table was empty when the load first
started, which decides for a resumed load whether a file's feature ids are kept, as the
first run decided (:mod:`.ledger_merges` keeps the entries few). Index definitions
dropped for a fast load are recorded too, so whatever fails, a later run puts them back.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from geosession.errors import ConfigurationError, IntegrityViolation
from geosession.ingest.privileges import require_privileges, run_as_owner
from geosession.ingest.target import Target

LEDGER = "geosession_ingest_ledger"
DEFERRED = "geosession_ingest_deferred_index"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {LEDGER} (
    ingest_id text NOT NULL,
    target text NOT NULL,
    first_row bigint NOT NULL,
    last_row bigint NOT NULL,
    rows_inserted integer NOT NULL,
    rows_rejected integer NOT NULL,
    checksum text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    target_oid oid,
    target_database text,
    started_empty boolean,
    PRIMARY KEY (ingest_id, first_row)
);
CREATE TABLE IF NOT EXISTS {DEFERRED} (
    target text NOT NULL,
    index_name text NOT NULL,
    definition text NOT NULL,
    ingest_id text NOT NULL,
    target_oid oid,
    target_database text,
    PRIMARY KEY (target, index_name)
);
"""
_ADDED_COLUMNS = {
    LEDGER: ("target_oid oid", "target_database text", "started_empty boolean"),
    DEFERRED: ("target_oid oid", "target_database text"),
}
"""Columns a ledger made by an earlier geosession lacks."""
_LEDGER_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
_GRANT = f"GRANT {', '.join(_LEDGER_PRIVILEGES)} ON {LEDGER}, {DEFERRED} TO {{role}};"


def ensure_ledger(cursor: Any) -> None:
    """Creates the ledger tables unless they exist; concurrent creators are serialized by
    a lock. A role that may write to existing ledger tables needs no CREATE privilege.

    Columns a ledger made by an earlier geosession lacks are added once (the catalog is
    asked first, so a running load's commits never queue behind an ALTER)."""
    cursor.execute("SELECT to_regclass(%s) IS NULL OR to_regclass(%s) IS NULL", (LEDGER, DEFERRED))
    if cursor.fetchone()[0]:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (LEDGER,))
        run_as_owner(cursor, _CREATE, needed="the ingest keeps a ledger", then=_GRANT)
    require_privileges(
        cursor,
        {LEDGER: _LEDGER_PRIVILEGES, DEFERRED: _LEDGER_PRIVILEGES},
        needed=f"the ingest records its progress in {LEDGER} and {DEFERRED}",
        grant=_GRANT,
    )
    for table, columns in _ADDED_COLUMNS.items():
        names = [column.split()[0] for column in columns]
        cursor.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = CAST(%s AS regclass) "
            "AND attname = ANY(%s) AND NOT attisdropped",
            (table, names),
        )
        if cursor.fetchone()[0] < len(names):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (LEDGER,))
            added = ", ".join(f"ADD COLUMN IF NOT EXISTS {column}" for column in columns)
            needed = f"this geosession records more in {table} than an earlier one made room for"
            run_as_owner(cursor, f"ALTER TABLE {table} {added}", needed=needed, then=_GRANT)


@dataclass
class CommittedRows:
    """Sorted, merged ranges of source rows already committed for one ingest id."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    started_empty: bool = False
    """Whether the table was empty when the ingest id's first run started."""

    def add(self, first: int, last: int) -> None:
        ranges = sorted([*zip(self.starts, self.ends, strict=True), (first, last)])
        merged: list[tuple[int, int]] = []
        for start, end in ranges:
            if merged and start <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def contains(self, row: int) -> bool:
        at = bisect.bisect_right(self.starts, row) - 1
        return at >= 0 and row <= self.ends[at]

    def covers(self, first: int, last: int) -> bool:
        at = bisect.bisect_right(self.starts, first) - 1
        return at >= 0 and last <= self.ends[at]

    def overlaps(self, first: int, last: int) -> bool:
        at = bisect.bisect_right(self.starts, last) - 1
        return at >= 0 and self.ends[at] >= first

    def __len__(self) -> int:
        return sum(e - s + 1 for s, e in zip(self.starts, self.ends, strict=True))


def committed_rows(cursor: Any, ingest_id: str, target: Target) -> CommittedRows:
    """The source rows an earlier run with this id committed into this table.

    Entries for a table that is gone (dropped, maybe made again under the same name: its
    OID differs) are deleted, since their rows went with it. An id that loaded rows into
    another table that still exists is an error. A renamed table is still the same one.
    Entries written in another database (a restored dump, where every OID differs) name
    their table by name: those naming this table are adopted as its own, with its OID.
    """
    here = {"id": ingest_id, "name": target.quoted, "oid": target.oid, "db": target.database}
    if target.database is not None:
        cursor.execute(
            f"UPDATE {LEDGER} SET target_oid = %(oid)s, target_database = %(db)s "
            "WHERE ingest_id = %(id)s AND target = %(name)s AND target_database <> %(db)s",
            here,
        )
    cursor.execute(
        f"DELETE FROM {LEDGER} l WHERE ingest_id = %(id)s AND target_oid IS NOT NULL "
        f"AND {_READ_HERE} AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = l.target_oid)",
        here,
    )
    cursor.execute(
        f"SELECT DISTINCT target FROM {LEDGER} WHERE ingest_id = %(id)s AND CASE "
        f"WHEN target_oid IS NOT NULL AND {_READ_HERE} THEN target_oid <> %(oid)s "
        "ELSE target <> %(name)s END",
        here,
    )
    elsewhere = [str(name) for (name,) in cursor.fetchall()]
    if elsewhere:
        raise ConfigurationError(
            f"ingest_id {ingest_id!r} already loaded rows into {', '.join(elsewhere)}: an id "
            f"names one load into one table, so give the load into {target.quoted} another"
        )
    cursor.execute(
        f"SELECT first_row, last_row, started_empty FROM {LEDGER} WHERE ingest_id = %s",
        (ingest_id,),
    )
    rows = CommittedRows()
    for first, last, started_empty in cursor.fetchall():
        rows.add(first, last)
        rows.started_empty = bool(started_empty)
    return rows


_READ_HERE = "coalesce(target_database = %(db)s, true)"


def is_empty(cursor: Any, target: Target) -> bool:
    """Whether the table has no rows. Only a table the ingest can see whole is judged
    empty: not a view, nor one under row level security, nor one it may not SELECT from."""
    cursor.execute(
        "SELECT relkind IN ('r', 'p') AND NOT relrowsecurity "
        "AND has_table_privilege(oid, 'SELECT') FROM pg_class WHERE oid = %s",
        (target.oid,),
    )
    if not cursor.fetchone()[0]:
        return False
    cursor.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {target.quoted})")
    return bool(cursor.fetchone()[0])


def forget_if_emptied(cursor: Any, ingest_id: str, target: Target) -> int:
    """The rows this id inserted, when its table is now empty (:func:`is_empty`): they
    were deleted since (TRUNCATE, DELETE), so resuming would leave the table empty, and
    loading again cannot duplicate a row. The id's ledger entries and rejects are then
    dropped; 0 otherwise."""
    cursor.execute(
        f"SELECT coalesce(sum(rows_inserted), 0) FROM {LEDGER} WHERE ingest_id = %s",
        (ingest_id,),
    )
    inserted = int(cursor.fetchone()[0])
    if not inserted or not is_empty(cursor, target):
        return 0
    cursor.execute(f"DELETE FROM {LEDGER} WHERE ingest_id = %s", (ingest_id,))
    rejects = target.sibling("_rejected")
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (rejects,))
    if cursor.fetchone()[0]:
        cursor.execute(f"DELETE FROM {rejects} WHERE ingest_id = %s", (ingest_id,))
    return inserted


"""The entry's OID was read in this database (or it is not known where: trusted)."""


def chunk_inserted(cursor: Any, ingest_id: str, span: tuple[int, int], checksum: str) -> int | None:
    """Rows a chunk inserted if it committed, else None: asked after an unknown outcome.
    The entry must be this chunk's (its rows and the checksum of what was sent): another
    run of the id may have committed a chunk that starts at the same row and ends before."""
    cursor.execute(
        f"SELECT rows_inserted FROM {LEDGER} WHERE ingest_id = %s AND first_row = %s "
        "AND last_row = %s AND checksum = %s",
        (ingest_id, *span, checksum),
    )
    found = cursor.fetchone()
    return None if found is None else int(found[0])


def record_chunk(
    cursor: Any,
    ingest_id: str,
    target: Target,
    span: tuple[int, int],
    counts: tuple[int, int],
    checksum: str,
    *,
    started_empty: bool,
    known: CommittedRows,
) -> None:
    refuse_overlap(cursor, ingest_id, span, known, settled=True)
    values = [ingest_id, target.quoted, target.oid, target.database, *span, *counts]
    cursor.execute(
        f"INSERT INTO {LEDGER} (ingest_id, target, target_oid, target_database, first_row, "
        "last_row, rows_inserted, rows_rejected, checksum, started_empty) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [*values, checksum, started_empty],
    )


def refuse_overlap(
    cursor: Any,
    ingest_id: str,
    span: tuple[int, int],
    known: CommittedRows,
    *,
    settled: bool = False,
) -> None:
    """Refuses a chunk whose rows another run of this ingest id committed after this run
    began (``known``: what was committed then, the rows this run skips).

    Two runs of one id at once cut their chunks differently: rows 1-7000 of one and
    5001-12000 of the other pass the ledger's key (their first rows differ), and rows
    5001-7000 would be loaded twice. A ledger entry sharing rows with this chunk that are
    not within ``known`` is another run's (merged entries hold known rows too). Checked
    just before the commit, ``settled``: the commits of one id take turns (an advisory
    lock held to the commit), which no race gets past; and after a key violation, whose
    owner may be the other run (a clear error where the table's key would only say
    "duplicate key")."""
    first, last = span
    if settled:
        take_turns(cursor, ingest_id)
    cursor.execute(
        f"SELECT first_row, last_row FROM {LEDGER} WHERE ingest_id = %s AND first_row <= %s "
        "AND last_row >= %s",
        (ingest_id, last, first),
    )
    for entry_first, entry_last in cursor.fetchall():
        shared = (max(int(entry_first), first), min(int(entry_last), last))
        if not known.covers(*shared):  # rows the chunk writes (it skips the known ones)
            raise IntegrityViolation(
                f"Source rows among {shared[0]}-{shared[1]} of ingest {ingest_id} were "
                f"committed by another run of the same ingest id while this one loaded rows "
                f"{first}-{last}: two runs of one load at once. This one stops, keeping "
                "nothing of the chunk; no row is loaded twice, and running the load again "
                "(one run) resumes after every committed row. Give loads that should run "
                "together their own ingest_id"
            )


def take_turns(cursor: Any, ingest_id: str) -> None:
    """Waits for the other writers of this id's entries until this transaction ends."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{LEDGER} {ingest_id}",))


def secondary_indexes(cursor: Any, target: Target) -> list[tuple[str, str]]:
    """Names and definitions of the table's indexes that a load may drop and rebuild: none
    that a constraint stands behind, none that is unique (without a constraint it still
    refuses duplicate keys during the load, and ON CONFLICT needs it), not the index the
    table is CLUSTERed on (a rebuilt one would lose the mark), and none that is a
    partition's part of its parent table's index (only the parent's can be dropped)."""
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid), i.relkind = 'I', "
        "quote_ident(i.relname) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s AND NOT x.indisunique "
        "AND NOT x.indisclustered "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) "
        "AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = x.indexrelid)",
        (target.oid,),
    )
    return [
        (str(name), _cascading(str(definition), quoted) if partitioned else str(definition))
        for name, definition, partitioned, quoted in cursor.fetchall()
    ]


def maintains_secondary_indexes(cursor: Any, target: Target) -> bool:
    """Whether the server updates any index besides those of constraints while rows load
    (droppable or not: a partition's part of its parent's index, a CLUSTER index)."""
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = %s "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid))",
        (target.oid,),
    )
    return bool(cursor.fetchone()[0])


def _cascading(definition: str, quoted_name: str) -> str:
    """A partitioned table's index as one that is built on every partition too: the
    server writes it ``ON ONLY`` the parent, which would rebuild it invalid and empty."""
    only = f"INDEX {quoted_name} ON ONLY "
    return definition.replace(only, f"INDEX {quoted_name} ON ", 1)


def defer_indexes(cursor: Any, target: Target, ingest_id: str) -> list[str]:
    """Records and drops the table's secondary indexes (not those behind constraints).
    Concurrent loads into the table take turns: the second finds them dropped already."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{DEFERRED} {target.oid}",))
    _forget_stale_deferred(cursor, target)  # else an old record keeps its index's name
    indexes = secondary_indexes(cursor, target)
    for name, definition in indexes:
        cursor.execute(
            f"INSERT INTO {DEFERRED} (target, index_name, definition, ingest_id, target_oid, "
            "target_database) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (target.quoted, name, definition, ingest_id, target.oid, target.database),
        )
        cursor.execute(f"DROP INDEX {target.quote(target.schema)}.{target.quote(name)}")
    return [name for name, _ in indexes]


def owner_unless_owned(cursor: Any, target: Target) -> str | None:
    """The table's owner when this role is not it (nor a member of it): only the owner
    may drop and rebuild its indexes. None when this role may."""
    cursor.execute(
        "SELECT CASE WHEN NOT pg_has_role(relowner, 'USAGE') THEN relowner::regrole::text "
        "END FROM pg_class WHERE oid = %s",
        (target.oid,),
    )
    found = cursor.fetchone()
    return None if found is None or found[0] is None else str(found[0])


def deferred_indexes(cursor: Any, target: Target) -> list[tuple[str, str]]:
    """Names and definitions of the table's indexes recorded as deferred (by any run)."""
    here = _forget_stale_deferred(cursor, target)
    cursor.execute(
        f"SELECT index_name, definition FROM {DEFERRED} WHERE target = %(name)s "
        "ORDER BY strpos(definition, ' USING btree ') > 0, index_name",  # slow GiST first
        here,
    )
    return [(str(name), str(definition)) for name, definition in cursor.fetchall()]


def _forget_stale_deferred(cursor: Any, target: Target) -> dict[str, Any]:
    """Deletes the records of this name made for another table (dropped, or renamed, and
    another made under the name: its OID differs), so a new table never gets an old one's
    indexes; their definitions name the old table by this name anyway. Records written in
    another database (a restored dump, where every OID differs) are adopted by name, as
    the ledger's are. Returns the query parameters that say which records are this
    table's."""
    here = {"name": target.quoted, "oid": target.oid, "db": target.database}
    if target.database is not None:
        cursor.execute(
            f"UPDATE {DEFERRED} SET target_oid = %(oid)s, target_database = %(db)s "
            "WHERE target = %(name)s AND target_database <> %(db)s",
            here,
        )
    cursor.execute(
        f"DELETE FROM {DEFERRED} WHERE target = %(name)s AND target_oid <> %(oid)s "
        f"AND {_READ_HERE}",
        here,
    )
    return here


def restore_index(cursor: Any, target: Target, name: str, definition: str) -> None:
    """Recreates one deferred index (unless it is there already), then forgets it. A
    concurrent load that deferred it too waits its turn, then finds it rebuilt (both
    building it failed on pg_class's unique name)."""
    index = f"{target.quote(target.schema)}.{target.quote(name)}"
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{DEFERRED} {index}",))
    cursor.execute("SELECT to_regclass(%s)", (index,))
    if cursor.fetchone()[0] is None:
        cursor.execute(definition)
    cursor.execute(
        f"DELETE FROM {DEFERRED} WHERE target = %s AND index_name = %s", (target.quoted, name)
    )


def build_progress(cursor: Any, table_oid: int) -> list[tuple[int, str, str, int, int]]:
    """The table's index builds and ANALYZE in progress, from the server's progress views:
    (backend pid, "index" or "analyze", the server's phase, work done and in all: tuples
    in the phases that count them (a B-tree's load), else table blocks)."""
    cursor.execute(
        "SELECT pid, 'index', phase, "
        "CASE WHEN tuples_total > 0 THEN tuples_done ELSE blocks_done END, "
        "CASE WHEN tuples_total > 0 THEN tuples_total ELSE blocks_total END "
        "FROM pg_stat_progress_create_index WHERE relid = %(table)s UNION ALL "
        "SELECT pid, 'analyze', phase, sample_blks_scanned, sample_blks_total "
        "FROM pg_stat_progress_analyze WHERE relid = %(table)s",
        {"table": table_oid},
    )
    return [(int(i), str(k), str(p), int(d), int(t)) for i, k, p, d, t in cursor.fetchall()]
