"""Writing one chunk: binary COPY, the rows the server rejects set aside, the ledger entry.

A chunk is one transaction: its rows, its rejects and its ledger entry commit together
or not at all. Rows the server refuses (a constraint, a type) are found by the server,
which moves the chunk's rows again in small blocks and rows (:mod:`.row_by_row`), so only
they are set aside and nothing else in the chunk is lost. How each chunk is written is its
:mod:`.write_plan`; rows that COPY cannot put in the table go through :mod:`.staging`;
:mod:`.refusals` names a refused row's column; :mod:`.quarantine` keeps the rejects.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from geosession.errors import IntegrityViolation
from geosession.ingest import binary, row_by_row
from geosession.ingest.binary import SIGNATURE, TRAILER, Encoded, Refused
from geosession.ingest.connections import copying
from geosession.ingest.lacking import NOTHING, Lacking, groups
from geosession.ingest.ledger import record_chunk, refuse_overlap
from geosession.ingest.quarantine import keep_rejects
from geosession.ingest.refusals import (
    failed_row,
    refused_states,
    row_level,
    server_reject,
    shown,
)
from geosession.ingest.row_by_row import Refusal
from geosession.ingest.staging import GROUP, STAGE, create_stage, from_stage, update_key
from geosession.ingest.target import ensure_unchanged
from geosession.ingest.validate import Reject
from geosession.ingest.write_plan import WritePlan


@dataclass
class Chunk:
    """Rows ready for COPY (column-wise, in its plan's order) and the source rows they cover."""

    plan: WritePlan
    """How it is written: the columns of the rows checked before it (a column the source
    gives from a later row on makes a wider plan for the chunks after)."""
    first_row: int
    last_row: int
    columns: list[list[Any]]
    row_numbers: list[int]
    rejects: list[Reject] = field(default_factory=list)
    lacking: list[Lacking] | None = None
    """Per row, the columns it leaves to the table's DEFAULT (:mod:`.lacking`); None when
    every row gives every column."""
    groups: tuple[Lacking, ...] = ()
    """The distinct sets of ``lacking``: a row's group in the staging table is its set's
    position here (set by :meth:`seal`)."""
    encoded: Encoded = field(default_factory=lambda: binary.NO_ROWS)
    """The rows as binary COPY data (set by :meth:`seal`)."""
    checksum: str = ""
    """Recorded in the ledger: a CRC-32 of what was sent (a fingerprint, not a signature;
    CRC-32 runs at several GB/s where a cryptographic hash would cost a tenth of a load)."""

    def __len__(self) -> int:
        return len(self.row_numbers)

    @property
    def nbytes(self) -> int:
        """Bytes of COPY data."""
        return len(self.encoded.data)

    def seal(self) -> Chunk:
        """Encodes the rows for COPY and checksums what is sent; a row with a value that
        cannot be sent as its column's type becomes a reject naming that column.

        Done on the reader thread, so the writer's transaction never waits for it.
        """
        while isinstance(result := self._encoded(), Refused):
            self._set_aside(result)
        self.encoded = result
        self.checksum = f"crc32:{zlib.crc32(result.data):08x}"
        return self

    def _encoded(self) -> Encoded | Refused:
        """The rows as COPY data; with rows lacking columns, each row's group last."""
        if self.lacking is None:
            return binary.encode_rows(self.columns, self.plan.copy_types)
        self.groups = groups(self.lacking)
        return binary.encode_rows([*self.columns, self._grouped()], (*self.plan.copy_types, "int4"))

    def _grouped(self) -> list[int]:
        """Each row's group: its set of lacking columns' position in ``groups``."""
        number = {columns_lacked: index for index, columns_lacked in enumerate(self.groups)}
        return [number[columns_lacked] for columns_lacked in self.lacking or ()]

    def numbered(self, start: int, stop: int) -> memoryview:
        """Rows [start, stop) as COPY data (as sealed) with each row's position after them,
        for the staging table of :mod:`.row_by_row`."""
        columns = [*self.columns, *([self._grouped()] if self.lacking is not None else [])]
        types = (*self.plan.copy_types, *(["int4"] if self.lacking is not None else []), "int4")
        sent = [values[start:stop] for values in columns]
        encoded = binary.encode_rows([*sent, list(range(start, stop))], types)
        assert isinstance(encoded, Encoded), "the sealed rows encoded once already"
        return encoded.rows(0, stop - start)

    def _set_aside(self, refused: Refused) -> None:
        plan = self.plan
        for index, (column, error) in refused.values.items():
            value = self.columns[column][index]
            sent = f"{plan.copy_types[column]} (given {type(value).__name__})"
            reason = f"cannot be sent as {sent}: {type(error).__name__}: {error}"
            row = self.row_numbers[index]
            self.rejects.append(Reject(row, plan.columns[column], "value", reason, shown(value)))
        self.rejects.sort(key=lambda r: r.row)
        kept = [i for i in range(len(self.row_numbers)) if i not in refused.values]
        self.columns = [[values[i] for i in kept] for values in self.columns]
        self.row_numbers = [self.row_numbers[i] for i in kept]
        if self.lacking is not None:
            self.lacking = [self.lacking[i] for i in kept]

    def split(self, middle: int) -> tuple[Chunk, Chunk]:
        """Two sealed chunks of rows [0, middle) and [middle, len)."""
        cut = self.row_numbers[middle]
        halves = []
        for lo, hi, first, last in (
            (0, middle, self.first_row, cut - 1),
            (middle, len(self), cut, self.last_row),
        ):
            rejects = [r for r in self.rejects if first <= r.row <= last]
            columns = [values[lo:hi] for values in self.columns]
            lacking = None if self.lacking is None else self.lacking[lo:hi]
            half = Chunk(self.plan, first, last, columns, self.row_numbers[lo:hi], rejects, lacking)
            halves.append(half.seal())
        return halves[0], halves[1]


@dataclass(frozen=True)
class ChunkResult:
    inserted: int
    rejects: list[Reject]


def write_chunk(conn: psycopg.Connection[Any], chunk: Chunk) -> ChunkResult:
    """Commits the chunk's rows, rejects and ledger entry in one transaction (a dry run's
    rows are rolled back: the result says what a load would do)."""
    plan = chunk.plan
    span = (chunk.first_row, chunk.last_row)
    with conn.transaction(), conn.cursor() as cursor:
        settings = _chunk_settings(plan)
        if settings:
            cursor.execute(settings)
        if plan.staged or chunk.lacking is not None:
            create_stage(cursor, plan, grouped=chunk.lacking is not None)
        try:
            inserted, server_rejects = _write_guided(conn, chunk, 0, len(chunk))
        except IntegrityViolation:  # the key's owner may be another run of this ingest id
            if not plan.dry_run:
                refuse_overlap(cursor, plan.ingest_id, span, plan.committed)
            raise
        _ensure_unchanged(conn, chunk)  # holding the table's lock: no ALTER since the COPY
        rejects = sorted(chunk.rejects + server_rejects, key=lambda r: r.row)
        if plan.dry_run:
            raise psycopg.Rollback()  # ends the transaction block, rolled back, silently
        if plan.quarantine and rejects:
            keep_rejects(cursor, plan, rejects)
        counts = (inserted, len(rejects))
        record_chunk(
            cursor,
            plan.ingest_id,
            plan.target,
            span,
            counts,
            chunk.checksum,
            started_empty=plan.started_empty,
            known=plan.committed,
        )
    return ChunkResult(inserted, rejects)


def _chunk_settings(plan: WritePlan) -> str:
    """What a chunk's transaction sets first, in one round trip: how long it waits for a
    lock (:mod:`.locks`), and deferrable constraints checked per statement, so that the
    rows that break them are found (a failed COMMIT would leave none to look at)."""
    settings = [f"SET LOCAL lock_timeout = {int(plan.lock_wait_ms)}"] if plan.lock_wait_ms else []
    if plan.target.deferrable:
        settings.append("SET CONSTRAINTS ALL IMMEDIATE")
    return "; ".join(settings)


def _write_guided(
    conn: psycopg.Connection[Any], chunk: Chunk, start: int, stop: int
) -> tuple[int, list[Reject]]:
    """Writes rows [start, stop) under a savepoint; after a row-level error, the server's
    loop moves the rows and sets aside those it refuses (:mod:`.row_by_row`).

    A COPY's error names the row it failed at ("COPY t, line 3"): the rows before it went
    in until then, so they are written alone by COPY, and only the rows after it go to the
    loop. An INSERT from the staging table names no row: all of its rows go there.
    """
    if start == stop:
        return 0, []
    plan = chunk.plan
    try:
        with conn.transaction():
            return _write(conn, chunk, start, stop), []
    except psycopg.Error as error:
        if not conn.broken:  # every row failing for a type the table no longer has
            _ensure_unchanged(conn, chunk)
        if not row_level(error, plan):
            raise
        at = failed_row(error.diag.context, start, stop)
        if at is None and stop - start == 1:
            at = start
        rest = _write_one_by_one if plan.target.temporary else _write_halves
        if at is None:
            return rest(conn, chunk, start, stop)
        refused = _reject_at(conn, chunk, at, Refusal.of(error))
        before, rejects_before = _write_guided(conn, chunk, start, at)
        after, rejects_after = rest(conn, chunk, at + 1, stop)
        return before + after, [*rejects_before, refused, *rejects_after]


def _ensure_unchanged(conn: psycopg.Connection[Any], chunk: Chunk) -> None:
    where = f"source rows {chunk.first_row}-{chunk.last_row}"
    with conn.cursor() as cursor:
        ensure_unchanged(cursor, chunk.plan.target, chunk.plan.columns, where)


def _write_halves(
    conn: psycopg.Connection[Any], chunk: Chunk, start: int, stop: int
) -> tuple[int, list[Reject]]:
    """Rows [start, stop) written as two halves, each guided as above: for a role that may
    not create the temporary table the server's loop needs (a few COPYs per bad row)."""
    middle = (start + stop) // 2
    first, rejects_first = _write_guided(conn, chunk, start, middle)
    second, rejects_second = _write_guided(conn, chunk, middle, stop)
    return first + second, [*rejects_first, *rejects_second]


def _write_one_by_one(
    conn: psycopg.Connection[Any], chunk: Chunk, start: int, stop: int
) -> tuple[int, list[Reject]]:
    """Writes rows [start, stop) on the server's loop (:mod:`.row_by_row`): staged once,
    numbered, and moved by the chunk's INSERT, a block or a row at a time."""
    if start == stop:
        return 0, []
    plan = chunk.plan
    constraints: dict[str, str | None] = {}  # a column per constraint, not per row
    with conn.cursor() as cursor:
        create_stage(cursor, plan, grouped=chunk.lacking is not None, numbered=True)
        row_by_row.prepare(cursor)
        rejects = _stage_numbered(conn, chunk, start, stop, constraints)
        groups = _groups_between(chunk, start, stop)
        each = {g: from_stage(plan, lacking, picked=row_by_row.THIS_ROW) for g, lacking in groups}
        states, key = refused_states(plan), update_key(plan)
        if key:
            inserted, refusals = row_by_row.insert_each(cursor, start, stop, each, states, key)
        else:
            in_blocks = [
                from_stage(plan, lacking, group, picked=row_by_row.IN_BLOCK)
                for group, lacking in groups
            ]
            inserted, refusals = row_by_row.insert_in_blocks(
                cursor, start, stop, each, in_blocks, states
            )
    rejects += [_reject_at(conn, chunk, at, refusals[at], constraints) for at in refusals]
    if plan.target.insert_rules:  # a rule's INSERT reports its own count
        inserted = stop - start - len(rejects)
    return inserted, sorted(rejects, key=lambda reject: reject.row)


def _stage_numbered(
    conn: psycopg.Connection[Any],
    chunk: Chunk,
    start: int,
    stop: int,
    constraints: dict[str, str | None],
) -> list[Reject]:
    """COPYs rows [start, stop) into the numbered staging table; a row whose value its
    column's type refuses there (a domain's CHECK, an enum's label) is set aside, named by
    the COPY's error, and the rows around it are staged again."""
    plan = chunk.plan
    sent = [*plan.columns, *([GROUP] if chunk.lacking is not None else []), row_by_row.ROW]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in sent)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(row_by_row.ROWS, columns)
    rejects: list[Reject] = []
    while start < stop:
        try:
            with conn.transaction(), conn.cursor() as cursor, copying(cursor, statement) as copy:
                copy.write(SIGNATURE)
                copy.write(chunk.numbered(start, stop))
                copy.write(TRAILER)
            break
        except psycopg.Error as error:
            at = failed_row(error.diag.context, start, stop) if row_level(error, plan) else None
            if at is None:
                raise
            rejects.append(_reject_at(conn, chunk, at, Refusal.of(error), constraints))
            rejects += _stage_numbered(conn, chunk, start, at, constraints)  # went in till then
            start = at + 1
    return rejects


def _reject_at(
    conn: psycopg.Connection[Any],
    chunk: Chunk,
    at: int,
    refusal: Refusal,
    constraints: dict[str, str | None] | None = None,
) -> Reject:
    """The reject of the chunk's row ``at``, which the server refused (:mod:`.refusals`)."""
    values = tuple(column[at] for column in chunk.columns)
    return server_reject(conn, chunk.plan, chunk.row_numbers[at], values, refusal, constraints)


def _write(conn: psycopg.Connection[Any], chunk: Chunk, start: int, stop: int) -> int:
    plan = chunk.plan
    staged = plan.staged or chunk.lacking is not None
    table = STAGE if staged else sql.SQL(plan.target.quoted)
    sent = [*plan.columns, *([GROUP] if chunk.lacking is not None else [])]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in sent)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, columns)
    with conn.cursor() as cursor:
        with copying(cursor, statement) as copy:
            copy.write(SIGNATURE)
            copy.write(chunk.encoded.rows(start, stop))
            copy.write(TRAILER)
        if not staged:  # fewer when a BEFORE INSERT trigger returned NULL for some
            return cursor.rowcount if cursor.rowcount >= 0 else stop - start
        inserted = 0
        for group, columns_lacked in _groups_between(chunk, start, stop):
            cursor.execute(from_stage(plan, columns_lacked, group))
            inserted += cursor.rowcount
        cursor.execute(sql.SQL("TRUNCATE {}").format(STAGE))
        # a rule's INSERT reports its own count (0 for a DO INSTEAD into another table)
        return stop - start if plan.target.insert_rules else inserted


def _groups_between(chunk: Chunk, start: int, stop: int) -> list[tuple[int | None, Lacking]]:
    """The groups of rows [start, stop) that lack the same columns, each moved on by an
    INSERT of its own; one of all rows when none lacks any."""
    if chunk.lacking is None:
        return [(None, NOTHING)]
    present = dict.fromkeys(chunk.lacking[start:stop])
    return [(chunk.groups.index(columns_lacked), columns_lacked) for columns_lacked in present]
