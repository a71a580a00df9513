"""Writing one chunk: binary COPY, the rows the server rejects set aside, the ledger entry.

A chunk is one transaction: its rows, its rejects and its ledger entry commit together
or not at all. Rows the server refuses (a constraint, a type) are found by the server,
which moves the chunk's rows again in small blocks and rows (:mod:`.row_by_row`), so only
they are set aside and nothing else in the chunk is lost.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

import psycopg
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from geosession.errors import ConfigurationError, IntegrityViolation
from geosession.geometry import hex_as_wkt
from geosession.ingest import binary, row_by_row
from geosession.ingest.binary import SIGNATURE, TRAILER, Encoded, Refused
from geosession.ingest.lacking import NOTHING, Lacking, groups
from geosession.ingest.ledger import CommittedRows, record_chunk, refuse_overlap
from geosession.ingest.privileges import require_privileges, run_as_owner
from geosession.ingest.row_by_row import Refusal
from geosession.ingest.target import Column, Target, ensure_unchanged
from geosession.ingest.validate import Reject, as_text

OnConflict = Literal["error", "ignore", "update"]

_ROW_LEVEL = ("22", "23", "XX", "P0", "42804")
"""SQLSTATEs caused by a row's data (data exceptions, constraints, PostGIS, triggers)."""
_POLICY_VIOLATION = "42501"
"""A row a row-level security policy's WITH CHECK refuses (insufficient privilege: the
target's own privileges are checked before the load)."""
_UNIQUE_VIOLATION = "23505"


@dataclass(frozen=True)
class WritePlan:
    """How every chunk of one ingest is written."""

    target: Target
    columns: tuple[str, ...]
    copy_types: tuple[str, ...]
    ingest_id: str
    on_conflict: OnConflict
    quarantine: bool
    started_empty: bool = False
    """The table was empty when the ingest first started (recorded with each chunk)."""
    committed: CommittedRows = field(default_factory=CommittedRows)
    """The rows committed before this run began: those it skips."""
    python_defaulted: frozenset[str] = frozenset()
    """Columns a Python-side default fills where a row lacks them: a row marked lacking one
    (:mod:`.lacking`) inserts the filled value, and leaves an existing row's."""
    sql_defaults: Mapping[str, str] = field(default_factory=dict)
    """Column -> its SQLAlchemy default as SQL (``now()``), where the table has no DEFAULT:
    a row marked lacking it inserts what that SQL gives."""
    lock_wait_ms: int = 0
    """Each chunk's lock_timeout (:mod:`.locks`; 0: the session's)."""
    dry_run: bool = False
    """Each chunk written, then rolled back: no rows, rejects or ledger entries kept."""
    may_lack: frozenset[str] = frozenset()
    """The loaded columns a row may lack, marked per row (:func:`.lacking.left_to_server`)."""

    @property
    def staged(self) -> bool:
        """Whether rows go through a staging table: to meet the target's keys (on_conflict),
        to be cast from text (:class:`~geosession.ingest.binary.TextCast`), or to pass the
        row-level security policies and INSERT rules that COPY does not apply."""
        return (
            self.on_conflict != "error"
            or any(map(_cast, self.copy_types))
            or self.target.row_security
            or self.target.insert_rules
        )


def _cast(copy_type: str) -> TypeGuard[binary.TextCast]:
    """Whether the column's values travel as text for the server to cast."""
    return isinstance(copy_type, binary.TextCast)


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
            self.rejects.append(Reject(row, plan.columns[column], "value", reason, _shown(value)))
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
            _create_stage(cursor, plan, grouped=chunk.lacking is not None)
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
            _quarantine(cursor, plan, rejects)
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
        if not _row_level(error, plan):
            raise
        at = _failed_row(error.diag.context, start, stop)
        if at is None and stop - start == 1:
            at = start
        rest = _write_one_by_one if plan.target.temporary else _write_halves
        if at is None:
            return rest(conn, chunk, start, stop)
        refused = _server_reject(conn, chunk, at, Refusal.of(error))
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
        _create_stage(cursor, plan, grouped=chunk.lacking is not None, numbered=True)
        row_by_row.prepare(cursor)
        rejects = _stage_numbered(conn, chunk, start, stop, constraints)
        groups = _groups_between(chunk, start, stop)
        each = {g: _from_stage(plan, lacking, picked=row_by_row.THIS_ROW) for g, lacking in groups}
        states, key = _refused_states(plan), _update_key(plan)
        if key:
            inserted, refusals = row_by_row.insert_each(cursor, start, stop, each, states, key)
        else:
            in_blocks = [
                _from_stage(plan, lacking, group, picked=row_by_row.IN_BLOCK)
                for group, lacking in groups
            ]
            inserted, refusals = row_by_row.insert_in_blocks(
                cursor, start, stop, each, in_blocks, states
            )
    rejects += [_server_reject(conn, chunk, at, refusals[at], constraints) for at in refusals]
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
    sent = [*plan.columns, *([_GROUP] if chunk.lacking is not None else []), row_by_row.ROW]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in sent)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(row_by_row.ROWS, columns)
    rejects: list[Reject] = []
    while start < stop:
        try:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(SIGNATURE)
                copy.write(chunk.numbered(start, stop))
                copy.write(TRAILER)
            break
        except psycopg.Error as error:
            at = _failed_row(error.diag.context, start, stop) if _row_level(error, plan) else None
            if at is None:
                raise
            rejects.append(_server_reject(conn, chunk, at, Refusal.of(error), constraints))
            rejects += _stage_numbered(conn, chunk, start, at, constraints)  # went in till then
            start = at + 1
    return rejects


def _refused_states(plan: WritePlan) -> list[str]:
    """The SQLSTATEs of :func:`_row_level`, as PL/pgSQL's handler names them."""
    states = [state if len(state) == 5 else f"{state}000" for state in _ROW_LEVEL]
    return [*states, *([_POLICY_VIOLATION] if plan.target.row_security else [])]


def _update_key(plan: WritePlan) -> list[sql.Composable]:
    """The staged values of the key on_conflict="update" matches rows on (none otherwise)."""
    if plan.on_conflict != "update":
        return []
    types = dict(zip(plan.columns, plan.copy_types, strict=True))
    return [_staged_value(k, types[k]) for k in conflict_key(plan.target, plan.columns, "update")]


def _failed_row(context: str | None, start: int, stop: int) -> int | None:
    """The row of [start, stop) a COPY's error context names (its last "COPY t, line N":
    a trigger's own lines come before it), if any."""
    lines = re.findall(r"^COPY .+, line (\d+)", context or "", re.M)
    if not lines:
        return None
    at = start + int(lines[-1]) - 1
    return at if start <= at < stop else None


def _row_level(error: psycopg.Error, plan: WritePlan) -> bool:
    """Caused by one row's data: the server's data errors, and a policy's refusal on a
    table under row-level security (a lost connection has another SQLSTATE or none)."""
    state = str(error.sqlstate or "")
    if plan.target.row_security and state == _POLICY_VIOLATION:
        return True
    return bool(state) and state.startswith(_ROW_LEVEL)


def _server_reject(
    conn: psycopg.Connection[Any],
    chunk: Chunk,
    at: int,
    refusal: Refusal,
    constraints: dict[str, str | None] | None = None,
) -> Reject:
    """The reject of the chunk's row ``at``, which the server refused; a duplicate key under
    on_conflict="error" ends the chunk instead (the key may be another run's).
    ``constraints``: the column of each constraint looked up so far, for many rejects."""
    plan, row = chunk.plan, chunk.row_numbers[at]
    known = {} if constraints is None else constraints
    values = tuple(column[at] for column in chunk.columns)
    detail = f" ({hex_as_wkt(refusal.detail)})" if refusal.detail else ""
    if refusal.sqlstate == _UNIQUE_VIOLATION and plan.on_conflict == "error":
        raise IntegrityViolation(
            f"Row {row} duplicates a key already in {plan.target.quoted}: "
            f"{refusal.message}{detail}. Pass on_conflict='ignore' (CLI: --on-conflict ignore) "
            "to keep the existing rows, or 'update' to overwrite them",
            sqlstate=refusal.sqlstate,
        )
    column = (
        refusal.column
        or _copy_column(refusal.context, plan.columns)
        or _key_column(refusal.detail, plan.columns)
        or _constraint_column(conn, plan, refusal.constraint, known)
        or _failed_cast(conn, plan, values)
    )
    value = dict(zip(plan.columns, values, strict=True)).get(column) if column else None
    return Reject(row, column, "server", f"{refusal.message}{detail}", _shown(value))


def _failed_cast(
    conn: psycopg.Connection[Any], plan: WritePlan, values: tuple[Any, ...]
) -> str | None:
    """The column whose text the server cannot cast to its type (the INSERT from the stage
    names none): each such value of the row cast alone."""
    for column, copy_type, value in zip(plan.columns, plan.copy_types, values, strict=True):
        if _cast(copy_type) and value is not None:
            cast = sql.SQL("SELECT CAST(CAST(%s AS {}) AS {})").format(
                sql.SQL(str(copy_type)), sql.SQL(copy_type.cast_to)
            )
            try:
                with conn.transaction():
                    conn.execute(cast, (value,))
            except psycopg.Error:
                return column
    return None


def _copy_column(context: str | None, columns: tuple[str, ...]) -> str | None:
    """The column a COPY error names in its context ("COPY t, line 1, column c")."""
    named = (re.search(rf", column {re.escape(c)}(:|$)", context or "", re.M) for c in columns)
    return next((c for c, match in zip(columns, named, strict=True) if match), None)


def _constraint_column(
    conn: psycopg.Connection[Any],
    plan: WritePlan,
    constraint: str | None,
    known: dict[str, str | None],
) -> str | None:
    """The one column a constraint of the target is on (CHECK (area > 0)), if it is one;
    read once per constraint into ``known``."""
    if constraint is None:
        return None
    if constraint not in known:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "SELECT array_agg(a.attname::text) FROM pg_constraint c JOIN pg_attribute a "
                "ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
                "WHERE c.conrelid = %s AND c.conname = %s",
                (plan.target.oid, constraint),
            )
            found = cursor.fetchone()
        names = found[0] if found and found[0] else []
        known[constraint] = names[0] if len(names) == 1 and names[0] in plan.columns else None
    return known[constraint]


def _key_column(detail: str | None, columns: tuple[str, ...]) -> str | None:
    """The column a key's detail names ("Key (parent)=(99) is not present ...", "Partition
    key of the failing row contains (region) = (x)"): a foreign key's, an exclusion
    constraint's or a partition key's of one column."""
    match = re.match(
        r'(?:Key|Partition key of the failing row contains) \((?:"((?:[^"]|"")+)"|([^,()"]+))\) ?=',
        detail or "",
    )
    if match is None:
        return None
    name = match[1].replace('""', '"') if match[1] is not None else match[2]
    return name if name in columns else None


def _shown(value: Any) -> str | None:
    """A sent value as text for the rejects table (JSON text as it came)."""
    return as_text(value.obj if isinstance(value, Json | Jsonb) else value)


def _write(conn: psycopg.Connection[Any], chunk: Chunk, start: int, stop: int) -> int:
    plan = chunk.plan
    staged = plan.staged or chunk.lacking is not None
    table = _STAGE if staged else sql.SQL(plan.target.quoted)
    sent = [*plan.columns, *([_GROUP] if chunk.lacking is not None else [])]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in sent)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, columns)
    with conn.cursor() as cursor:
        with cursor.copy(statement) as copy:
            copy.write(SIGNATURE)
            copy.write(chunk.encoded.rows(start, stop))
            copy.write(TRAILER)
        if not staged:  # fewer when a BEFORE INSERT trigger returned NULL for some
            return cursor.rowcount if cursor.rowcount >= 0 else stop - start
        inserted = 0
        for group, columns_lacked in _groups_between(chunk, start, stop):
            cursor.execute(_from_stage(plan, columns_lacked, group))
            inserted += cursor.rowcount
        cursor.execute(sql.SQL("TRUNCATE {}").format(_STAGE))
        # a rule's INSERT reports its own count (0 for a DO INSTEAD into another table)
        return stop - start if plan.target.insert_rules else inserted


_STAGE = sql.Identifier("geosession_ingest_stage")
_GROUP = row_by_row.GROUP


def _groups_between(chunk: Chunk, start: int, stop: int) -> list[tuple[int | None, Lacking]]:
    """The groups of rows [start, stop) that lack the same columns, each moved on by an
    INSERT of its own; one of all rows when none lacks any."""
    if chunk.lacking is None:
        return [(None, NOTHING)]
    present = dict.fromkeys(chunk.lacking[start:stop])
    return [(chunk.groups.index(columns_lacked), columns_lacked) for columns_lacked in present]


def _create_stage(
    cursor: psycopg.Cursor[Any], plan: WritePlan, *, grouped: bool, numbered: bool = False
) -> None:
    """A temporary staging table that lives only as long as this chunk's transaction: the
    loaded columns' types (text for those cast from it), each row's group when rows lack
    columns, and nothing else (the target's defaults and identities fill the columns the
    source leaves out when the rows move on; a copied NOT NULL would refuse them in the
    stage)."""
    staged = [
        sql.SQL("CAST({0} AS {1}) AS {0}").format(sql.Identifier(c), sql.SQL(t))
        if _cast(t)
        else sql.Identifier(c)
        for c, t in zip(plan.columns, plan.copy_types, strict=True)
    ]
    extra = [_GROUP] if grouped else []
    for name in [*extra, *([row_by_row.ROW] if numbered else [])]:
        staged.append(sql.SQL("CAST(NULL AS int4) AS {}").format(sql.Identifier(name)))
    columns = sql.SQL(", ").join(staged)
    made = sql.SQL("IF NOT EXISTS {}").format(row_by_row.ROWS) if numbered else _STAGE
    cursor.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            made, columns, sql.SQL(plan.target.quoted)
        )
    )


def conflict_key(
    target: Target, columns: Sequence[str], on_conflict: OnConflict
) -> tuple[str, ...]:
    """The key that on_conflict='update' matches rows on: the primary key, else the first
    unique key, whose columns the source gives ('ignore' skips a row that conflicts on any:
    ``()``). A target without one is refused before the first row, naming its keys."""
    if on_conflict != "error" and target.insert_rules:
        raise ConfigurationError(
            f"on_conflict={on_conflict!r} loads by INSERT ... ON CONFLICT, which PostgreSQL "
            f"refuses on {target.quoted}: it has rules ON INSERT. Use on_conflict='error', "
            "or load the table the rules write into"
        )
    if on_conflict == "error" or (on_conflict == "ignore" and target.unique_keys):
        return ()
    given = set(columns)
    key = next((key for key in target.unique_keys if given >= set(key)), None)
    if key is not None:
        return key
    if not target.unique_keys:
        raise ConfigurationError(
            f"on_conflict={on_conflict!r} needs a primary key or a unique constraint on "
            f"{target.quoted}, and it has none: add one, or use on_conflict='error'"
        )
    keys = " or ".join(f"({', '.join(key)})" for key in target.unique_keys)
    raise ConfigurationError(
        f"on_conflict='update' matches rows of {target.quoted} by its primary key or a unique "
        f"constraint, {keys}, and the source gives the columns of none of them: add them to "
        "the source"
    )


def _from_stage(
    plan: WritePlan,
    lacking: Lacking = NOTHING,
    group: int | None = None,
    *,
    picked: sql.Composable | None = None,
) -> sql.Composed:
    """The INSERT that moves the staged rows (those of ``group``, which lack the columns
    ``lacking``: their DEFAULT fills them, unless a Python-side default did) into the
    target: each text column cast to its type, and on_conflict's clause (an existing row
    keeps its values of the columns a row lacks). ``picked``: the rows of the numbered
    staging table that :mod:`.row_by_row`'s loop is at (a row, or a block of them)."""
    staged = {c: _staged_value(c, t) for c, t in zip(plan.columns, plan.copy_types, strict=True)}
    written = _written(plan, lacking, staged)
    stage: sql.Composable = _STAGE
    if picked is not None:
        stage = sql.SQL("{} WHERE {}").format(row_by_row.ROWS, picked)
    if plan.on_conflict == "update":
        return _upsert_from_stage(plan, staged, written, stage, lacking, group)
    of_group: sql.Composable = sql.SQL("")
    if group is not None:
        joined = sql.SQL(" WHERE " if picked is None else " AND ")
        of_group = joined + sql.SQL("{} = {}").format(sql.Identifier(_GROUP), sql.Literal(group))
    # "ignore": a row conflicting on any unique key leaves the one already there
    conflict = sql.SQL(" ON CONFLICT DO NOTHING" if plan.on_conflict == "ignore" else "")
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}{}{}").format(
        sql.SQL(plan.target.quoted),
        sql.SQL(", ").join(map(sql.Identifier, written)),
        sql.SQL(", ").join(written.values()),
        stage,
        of_group,
        conflict,
    )


def _upsert_from_stage(
    plan: WritePlan,
    staged: Mapping[str, sql.Composable],
    written: Mapping[str, sql.Composable],
    stage: sql.Composable,
    lacking: Lacking,
    group: int | None,
) -> sql.Composed:
    """on_conflict="update"'s INSERT: each key's last staged row, its columns but those
    the row lacks set on the row already there."""
    given = list(written)
    target, columns = sql.SQL(plan.target.quoted), sql.SQL(", ").join(map(sql.Identifier, given))
    keys = conflict_key(plan.target, plan.columns, plan.on_conflict)
    key_list = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
    # the staged values go through the window; SQL defaults are evaluated after it, for
    # the rows it keeps only (a sequence's nextval for each row inserted, no more)
    staged_here = [c for c in given if written[c] is staged[c]]
    aliased: list[sql.Composable] = [
        sql.SQL("{} AS {}").format(staged[c], sql.Identifier(c)) for c in staged_here
    ]
    outer = sql.SQL(", ").join(
        sql.Identifier(c) if c in staged_here else value for c, value in written.items()
    )
    of_group: sql.Composable = sql.SQL("")
    if group is not None:
        aliased.append(sql.Identifier(_GROUP))
        of_group = sql.SQL(" AND {} = {}").format(sql.Identifier(_GROUP), sql.Literal(group))
    updates = [c for c in given if c not in {*keys, *lacking}]
    action: sql.Composable = sql.SQL("DO NOTHING")
    if updates:
        action = sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates
        )
    # one row per key, the source's last, as if the rows were applied in turn; a row with a
    # NULL in a unique key conflicts with none (NULLs are distinct there), so all such stay
    nullable = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in keys)
    return sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM (SELECT {}, row_number() OVER (PARTITION BY {} "
        "ORDER BY ctid DESC) AS geosession_turn FROM {}) latest "
        "WHERE (geosession_turn = 1 OR {}){} ON CONFLICT ({}) {}"
    ).format(
        target,
        columns,
        outer,
        sql.SQL(", ").join(aliased),
        sql.SQL(", ").join(staged[k] for k in keys),  # the key's values, not their texts
        stage,
        nullable,
        of_group,
        key_list,
        action,
    )


def _written(
    plan: WritePlan, lacking: Lacking, staged: Mapping[str, sql.Composable]
) -> dict[str, sql.Composable]:
    """Each column the INSERT writes, and its value: the staged one (also where a Python
    default filled it), or for a column the rows lack, the SQL default the ingest writes;
    a column left to the table's DEFAULT is not written."""
    written: dict[str, sql.Composable] = {}
    for column in plan.columns:
        if column not in lacking or column in plan.python_defaulted:
            written[column] = staged[column]
        elif column in plan.sql_defaults:
            written[column] = sql.SQL(plan.sql_defaults[column])
    return written


def _staged_value(column: str, copy_type: str) -> sql.Composable:
    """A staged column's value: cast from its text to the column's type where it was sent
    as text (:class:`~geosession.ingest.binary.TextCast`)."""
    if not _cast(copy_type):
        return sql.Identifier(column)
    return sql.SQL("CAST({} AS {})").format(sql.Identifier(column), sql.SQL(copy_type.cast_to))


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


def _quarantine(cursor: psycopg.Cursor[Any], plan: WritePlan, rejects: list[Reject]) -> None:
    """The rejects into ``<table>_rejected`` by COPY (an INSERT each cost 23 µs a row: a
    load whose every row was rejected spent more time there than validating)."""
    statement = sql.SQL(
        "COPY {} (ingest_id, source_row, column_name, kind, reason, original_value) FROM STDIN"
    ).format(sql.SQL(plan.target.sibling("_rejected")))
    with cursor.copy(statement) as copy:
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


def copy_types(target: Target, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The type each column is sent as in binary COPY."""
    return tuple(_copy_type(target.column(name)) for name in columns)


def _copy_type(column: Column) -> str:
    """Geometry travels as EWKB bytes; a type psycopg cannot dump whose binary input reads
    text (an enum, xml, citext) as text, and an array of one as text[] naming its element
    type; any other (tsvector, point, money, a composite, an array of a domain) as text
    the server casts to the column's type."""
    if column.type_name in ("geometry", "geography"):
        return "bytea"
    if binary.can_send(column.type_name):
        return column.type_name
    if column.text_elements:
        return binary.TextArrayOf(column.text_elements)
    if column.text_input:
        return "text"
    return binary.TextCast(column.cast_type, array=column.type_name.endswith("[]"))
