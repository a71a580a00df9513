"""SQLAlchemy's Python-side column defaults (``mapped_column(default=...)``) for an ingest.

The ORM fills a value a new row lacks from its column's ``default`` (a constant, or a
function called per row); COPY sends values only, and the table's DEFAULT knows nothing
of them. So, for a mapped class or Table target, a value the source lacks (the whole
column, a key a dict row leaves out, an attribute a new instance leaves unset) is filled
from that default before the row is checked, as ``session.add_all`` would. A value given
as None stays NULL, as in an INSERT. With ``on_conflict="update"``, a column the source
lacks, or a key a row lacks (``Batch.filled``, marked by :mod:`.lacking`), is set for new
rows only: an existing row keeps its value, as the ORM's defaults apply to INSERTs. A
default that is SQL (``default=func.now()``, a ``Sequence``) is written by SQLAlchemy into
each INSERT, which COPY cannot do: where the table has no DEFAULT of its own, rows lacking
the column are marked (:mod:`.lacking`) and their INSERT from the staging table writes
that SQL, evaluated per row as SQLAlchemy's INSERT would. A class of a single-table
inheritance hierarchy fills its discriminator with its polymorphic identity, as the ORM
does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from sqlalchemy import Column, Table, inspect
from sqlalchemy.dialects import postgresql

from geosession.errors import ConfigurationError
from geosession.ingest.batches import Batch
from geosession.ingest.target import Target

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
"""A dict row's value for a key it lacks, where a default fills that column: a Python
one here, the table's or a SQL one on the server (:mod:`.lacking`)."""

Default = Callable[["RowContext"], Any]


@dataclasses.dataclass(frozen=True)
class ColumnDefaults:
    """The target's SQLAlchemy defaults: column -> a function of the row's context
    (Python-side), and column -> a default that is SQL (``func.now()``, a ``Sequence``)."""

    python: Mapping[str, Default] = dataclasses.field(default_factory=dict)
    sql: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def sql_without_table_default(self, target: Target) -> dict[str, str]:
        """The SQL defaults the ingest writes itself, as SQL (``(now())``,
        ``(nextval('parcel_seq'))``): those of columns the table gives no DEFAULT (where it
        has one, COPY leaves a column it lacks to that)."""
        own = {c.name for c in target.columns if c.has_default}
        return {name: _as_sql(name, d) for name, d in self.sql.items() if name not in own}


class RowContext:
    """What a context-sensitive default (``default=lambda context: ...``) is given: the
    row's values, as SQLAlchemy's execution context gives them."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: Batch, index: int) -> None:
        self._batch, self._index = batch, index

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        """The row's values by column name (those the source gave and those filled so far)."""
        return {
            name: values[self._index]
            for name, values in self._batch.columns.items()
            if values[self._index] is not MISSING
        }

    @property
    def current_parameters(self) -> dict[str, Any]:
        return self.get_current_parameters()


def column_defaults(target: Any, resolved: Target) -> ColumnDefaults:
    """The Python-side defaults of a mapped class's or Table's columns that the ingest
    may fill (a table name has none: the database knows only its own DEFAULTs)."""
    table = getattr(target, "__table__", target)
    if not isinstance(table, Table):
        return ColumnDefaults()
    loadable = {c.name for c in resolved.columns if not c.generated}
    python: dict[str, Default] = dict(_polymorphic_identity(target, loadable))
    sql: dict[str, Any] = {}
    for column in table.columns:
        if column.name in python:
            continue
        default = column.default
        if default is None or column.name not in loadable:
            continue
        if getattr(default, "is_scalar", False):
            python[column.name] = _constant(default.arg)
        elif getattr(default, "is_callable", False):
            python[column.name] = default.arg
        else:
            sql[column.name] = default
    return ColumnDefaults(python, sql)


def _polymorphic_identity(target: Any, loadable: Collection[str]) -> dict[str, Default]:
    """The discriminator a mapped class of an inheritance hierarchy writes, as the ORM
    writes it for a new row: ``{"kind": "well"}`` for ``Well(Feature)``."""
    mapper = inspect(target, raiseerr=False) if isinstance(target, type) else None
    column = getattr(mapper, "polymorphic_on", None)
    identity = getattr(mapper, "polymorphic_identity", None)
    if not isinstance(column, Column) or identity is None or column.name not in loadable:
        return {}
    return {column.name: _constant(identity)}


def _constant(value: Any) -> Default:
    return lambda _context: value


def _as_sql(name: str, default: Any) -> str:
    """A SQL default as SQLAlchemy writes it into an INSERT (parenthesized: a scalar
    subquery stays one), its bound values written out."""
    clause = default.next_value() if getattr(default, "is_sequence", False) else default.arg
    try:
        return f"({clause.compile(dialect=_DIALECT, compile_kwargs={'literal_binds': True})})"
    except Exception as error:
        raise ConfigurationError(
            f"The default of column {name} ({getattr(default, 'arg', default)!r}) cannot be "
            f"written as SQL for the ingest's INSERT: {type(error).__name__}: {error}. Give "
            "the column a DEFAULT in the table (server_default=...), or a Python default"
        ) from error


_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def with_defaults(batches: Iterator[Batch], defaults: ColumnDefaults) -> Iterator[Batch]:
    """``batches`` with the values they lack filled from the Python-side defaults."""
    if not defaults.python:
        yield from batches
        return
    for batch in batches:
        yield fill_defaults(batch, defaults.python) if len(batch) else batch


def fill_defaults(batch: Batch, defaults: Mapping[str, Default]) -> Batch:
    """``batch`` with each defaulted column's lacking values (the column absent, or a row's
    value MISSING) made by its default, in row order and column order; which rows of a
    column took one is kept (``Batch.filled``)."""
    rows = len(batch)
    columns = dict(batch.columns)
    made: dict[str, list[int]] = {}  # by column, the rows that lacked the key
    filled = dataclasses.replace(batch, columns=columns, filled=made)
    for name, default in defaults.items():
        values = columns.get(name)
        if values is None:
            values = columns[name] = [MISSING] * rows
        elif isinstance(values, list) and any(value is MISSING for value in values):
            values = columns[name] = list(values)
        else:  # given for every row (a file's or a frame's column is never MISSING)
            continue
        at = [index for index, value in enumerate(values) if value is MISSING]
        for index in at:
            values[index] = _called(default, RowContext(filled, index), name, batch, index)
        made[name] = at
    return filled


def _called(default: Default, context: RowContext, name: str, batch: Batch, index: int) -> Any:
    """The default's value for one row; its failure names the column and the source row."""
    try:
        return default(context)
    except Exception as error:
        raise ConfigurationError(
            f"The default of column {name} (its default=... in the model) failed for source "
            f"row {batch.first_row + index}: {type(error).__name__}: {error}. Fix the "
            "function, or give the column a value in the source"
        ) from error
