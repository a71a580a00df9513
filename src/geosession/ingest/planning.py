"""Which columns an ingest's chunks write, and how (:class:`~.copy.WritePlan`).

COPY names the columns the source gives, so the columns it lacks get their defaults. The
plan is made from the first batch, and widened by a later batch that is the first to give
a column (a key few rows have): the chunks before it leave that column to the table, as
any row lacking a key does (:mod:`.lacking`). Each widening checks the role's privileges
on the new columns again.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import psycopg

from geosession.errors import ConfigurationError
from geosession.ingest.batches import Batch
from geosession.ingest.binary import TextCast
from geosession.ingest.connections import Connections
from geosession.ingest.lacking import left_to_server
from geosession.ingest.privileges import (
    current_role,
    require_column_privileges,
    require_sequence_usage,
)
from geosession.ingest.staging import conflict_key
from geosession.ingest.target import check_required_columns, double_quoted
from geosession.ingest.write_plan import WritePlan, copy_types


class Planner:
    """The plan of one ingest run, made and widened as batches are validated (on several
    threads at once)."""

    def __init__(self, base: WritePlan, connections: Connections) -> None:
        """``base`` says all but the columns: those are the source's."""
        self.base, self.connections = base, connections
        self.plan: WritePlan | None = None
        self.lock = threading.Lock()
        self.writable = frozenset(c.name for c in base.target.columns if not c.generated)

    @property
    def may_lack(self) -> frozenset[str]:
        """The columns a row may lack (:mod:`.lacking`)."""
        base = self.base
        return left_to_server(base.target, base.on_conflict, base.sql_defaults)

    def plan_for(self, batch: Batch) -> WritePlan:
        """The plan writing ``batch``'s columns (and those with a SQL default only SQLAlchemy
        knows, for the staging table's INSERT to write)."""
        with self.lock:
            written = {*batch.columns, *self.base.sql_defaults} & self.writable
            if self.plan is None:
                started_empty = self.base.started_empty
                check_required_columns(self.base.target, written, started_empty=started_empty)
                self.plan = self._plan(written)
            elif not written <= set(self.plan.columns):
                self.plan = self._widened(self.plan, written, batch)
            return self.plan

    def _widened(self, plan: WritePlan, written: set[str], batch: Batch) -> WritePlan:
        """``plan`` with the columns ``batch`` is the first to give."""
        try:
            return self._plan(written | set(plan.columns))
        except ConfigurationError as error:
            last = batch.first_row + len(batch) - 1
            new = ", ".join(sorted(written - set(plan.columns)))
            error.reword(
                f"Source rows {batch.first_row}-{last} are the first to give {new}, which the "
                f"rows before lacked: {error.message}"
            )
            raise

    def _plan(self, written: set[str]) -> WritePlan:
        """The plan writing the ``written`` columns, checked against the table's keys and
        the role's privileges."""
        target = self.base.target
        columns = tuple(c.name for c in target.columns if c.name in written)
        conflict_key(target, columns, self.base.on_conflict)  # refused now
        self._require_column_privileges(columns)
        plan = dataclasses.replace(
            self.base,
            columns=columns,
            copy_types=copy_types(target, columns),
            may_lack=self.may_lack & set(columns),
        )
        if plan.staged and not target.temporary:
            raise _no_temporary_tables(plan, self.connections)
        return plan

    def _require_column_privileges(self, columns: tuple[str, ...]) -> None:
        """The columns the source gives, each writable by the role (column grants), and
        the sequences of the serial columns it leaves to their default."""
        update = self.base.on_conflict == "update"
        wanted = ("INSERT", "UPDATE") if update else ("INSERT",)
        table = self.base.target.quoted

        def check(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cursor:
                require_column_privileges(cursor, table, columns, wanted)
                require_sequence_usage(cursor, table, columns)

        self.connections.retrying(check)


def _no_temporary_tables(plan: WritePlan, connections: Connections) -> ConfigurationError:
    """The error for a load through a staging table by a role that may not make one."""

    def who(conn: psycopg.Connection[Any]) -> tuple[str, str]:
        with conn.cursor() as cursor:
            return current_role(cursor), conn.info.dbname

    role, database = connections.retrying(who)
    return ConfigurationError(
        f"rows for {plan.target.quoted} go through a temporary staging table "
        f"({_why_staged(plan)}), and role {role} may not create temporary tables in "
        f"database {database}. Have an owner run, once:\n"
        f"GRANT TEMPORARY ON DATABASE {double_quoted(database)} TO {double_quoted(role)};"
    )


def _why_staged(plan: WritePlan) -> str:
    """What sends the rows through a staging table (:attr:`.WritePlan.staged`)."""
    if plan.on_conflict != "error":
        return f"on_conflict={plan.on_conflict!r}"
    cast = [
        c for c, t in zip(plan.columns, plan.copy_types, strict=True) if isinstance(t, TextCast)
    ]
    if cast:
        return f"the server casts {', '.join(cast)} from text"
    if plan.target.row_security:
        return "row-level security applies to this role"
    return "the table has INSERT rules"
