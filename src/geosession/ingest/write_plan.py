"""How every chunk of one ingest is written: its columns, the type each is sent as, and
what the load does with keys, rejects and the ledger."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeGuard

from geosession.ingest import binary
from geosession.ingest.ledger import CommittedRows
from geosession.ingest.target import Column, Target

OnConflict = Literal["error", "ignore", "update"]


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
            or any(map(is_text_cast, self.copy_types))
            or self.target.row_security
            or self.target.insert_rules
        )


def is_text_cast(copy_type: str) -> TypeGuard[binary.TextCast]:
    """Whether the column's values travel as text for the server to cast."""
    return isinstance(copy_type, binary.TextCast)


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
