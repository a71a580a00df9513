"""A table for a source that has none yet (``create=True``), as ogr2ogr would make one.

A mapped class or Table is created from its own definition; for anything else the
source is read for the columns its table needs (:mod:`.source_schema`), and the table is
made with them, a GiST index on each geometry column and, unless a field takes the name,
a ``fid`` identity primary key. The reading happens between two short transactions,
never inside one, and a table another load made meanwhile is taken as made.
"""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Table, inspect, text

from geosession.errors import (
    CommitOutcomeUnknown,
    ConfigurationError,
    ConnectionFailed,
    DatabaseError,
)
from geosession.ingest.connections import Connections
from geosession.ingest.features import first_rows
from geosession.ingest.options import IngestOptions
from geosession.ingest.report import IngestReport
from geosession.ingest.source_schema import SourceSchema, Srids, source_schema
from geosession.ingest.target import (
    IDENTIFIER_BYTES,
    SCHEMA_EXISTS_SQL,
    double_quoted,
    missing_schema,
    schema_and_name,
    stored_identifier,
)
from geosession.read.plan import quote_identifier
from geosession.settings import set_local
from geosession.srs import SRID_BY_AUTHORITY_SQL

_CREATED_MEANWHILE = ("42P07", "23505")
"""duplicate_table, or the unique violation on the table's row type when a concurrent
CREATE TABLE committed while this one waited for it."""


class Created(NamedTuple):
    """What :func:`create_target` did, and the source to load then."""

    created: bool
    """Whether this call made the table."""
    source: Any
    """The source: a generator's rows read to type the table, then the rest."""
    typed_from: int = 0
    """The rows of a source read once (a generator's) the table was typed from, or 0 (a
    source read whole for its types): a field first seen past them has no column."""
    rows: int | None = None
    """The source's rows, where reading it for its types counted them all."""


def create_target(
    engine: Engine,
    target: Any,
    source: Any,
    options: IngestOptions,
    report: IngestReport,
    connections: Connections,
) -> Created:
    """Creates ``target`` unless it exists, and says so (:class:`Created`). The field
    found by its values to hold the geometries, if one was, and the geometry columns made
    without an SRID (none stated, and srid= not given) go into ``report``. The
    source is read for its columns' types (seconds per million rows) between two short
    transactions, never inside one: a server's idle_in_transaction_session_timeout would
    end it. Each step runs again when its connection is lost, as the load's do."""
    table = getattr(target, "__table__", target)
    schema, name = schema_and_name(target)
    qualified = ".".join(quote_identifier(part) for part in (schema, name) if part)
    found = connections.again(lambda: _found(engine, table, schema, qualified, options))
    if found is not None:
        return Created(found, source)
    first, loaded = first_rows(source, options.flush_interval)

    def typed() -> SourceSchema:
        return _typed(engine, first, options, qualified)

    # typed again only from what can be read again: kept rows, a file's path, a DataFrame
    again = isinstance(first, Sized | str | os.PathLike)
    columns = connections.again(typed) if again else typed()
    _refuse_names_cut_alike(columns, qualified)
    if not connections.again(lambda: _made(engine, qualified, name, columns, options)):
        return Created(False, loaded)  # another load made it while this one read
    _note(report, columns, options)
    return Created(True, loaded, len(first) if first is not source else 0, columns.rows)


def _found(
    engine: Engine, table: Any, schema: str | None, qualified: str, options: IngestOptions
) -> bool | None:
    """Whether a mapped class's or Table's table was made now (False: it was there), or,
    for a table to make from the source, False when it is there and None when not."""
    try:
        with engine.begin() as conn:
            if options.settings:  # made as the role the ingest runs as
                conn.execute(*set_local(options.settings))
            if schema and not _schema_exists(conn, schema):
                raise missing_schema(schema, qualified)
            if isinstance(table, Table):
                if inspect(conn).has_table(table.name, schema=table.schema):
                    return False
                table.create(conn)
                return True
            exists = text("SELECT to_regclass(:name) IS NOT NULL")
            return False if conn.execute(exists, {"name": qualified}).scalar() else None
    except CommitOutcomeUnknown as error:  # only a Table's CREATE commits here
        return _landed(engine, qualified, error)


def _typed(engine: Engine, first: Any, options: IngestOptions, qualified: str) -> SourceSchema:
    """The columns the source's rows need (``first``: a generator's first rows, kept, or
    the source itself), with the SRIDs of their CRSs looked up a transaction at a time:
    none is held open while the source is read, and each has the ingest's settings and
    the database's (behind PgBouncer they are set per transaction: an autocommitted
    lookup had no search_path, and missed a spatial_ref_sys outside public)."""

    def filed(name: str, code: int) -> int | None:
        with engine.begin() as conn:
            if options.settings:
                conn.execute(*set_local(options.settings))
            query = SRID_BY_AUTHORITY_SQL
            found = conn.exec_driver_sql(query, {"name": name, "code": code}).scalar()
        return int(found) if found is not None else None

    return source_schema(
        first, options, Srids(options.srid, filed, options.reproject_srid), table=qualified
    )


def _refuse_names_cut_alike(schema: SourceSchema, qualified: str) -> None:
    """Refuses, before CREATE TABLE, fields whose names PostgreSQL would cut to one."""
    by_column: dict[str, list[str]] = {}
    for name, _ in schema.columns:
        by_column.setdefault(stored_identifier(name), []).append(name)
    alike = [names for names in by_column.values() if len(names) > 1]
    if not alike:
        return
    both = "; ".join(" and ".join(map(repr, names)) for names in alike)
    field = alike[0][0]
    shorter = stored_identifier(field)[:50]
    raise ConfigurationError(
        f"Table {qualified} cannot be made: PostgreSQL keeps the first "
        f"{IDENTIFIER_BYTES} bytes of a column's name, which are the same for the fields "
        f"{both}. Name them apart: rename={{{field!r}: {shorter!r}}} for a file's field "
        f"(CLI: --rename '{field}={shorter}'), or rename the DataFrame's or rows' fields"
    )


def _made(
    engine: Engine, qualified: str, name: str, columns: SourceSchema, options: IngestOptions
) -> bool:
    """Makes the table; False where another load made it meanwhile."""
    try:
        with engine.begin() as conn:
            if options.settings:
                conn.execute(*set_local(options.settings))
            try:
                with conn.begin_nested():
                    _create(conn, qualified, name, columns)
            except DatabaseError as error:  # the engine's errors arrive translated
                if error.sqlstate not in _CREATED_MEANWHILE:
                    raise
                return False
    except CommitOutcomeUnknown as error:
        return _landed(engine, qualified, error)
    return True


def _landed(engine: Engine, qualified: str, unknown: CommitOutcomeUnknown) -> bool:
    """After a CREATE whose COMMIT went unanswered: True when the table is there (made
    then); else the connection's loss, for the step to run again."""
    with engine.connect() as conn:
        exists = text("SELECT to_regclass(:name) IS NOT NULL")
        if conn.execute(exists, {"name": qualified}).scalar():
            return True
    raise ConnectionFailed(unknown.message, sqlstate=unknown.sqlstate) from unknown


def _note(report: IngestReport, schema: SourceSchema, options: IngestOptions) -> None:
    """Tells the report what the user may not expect of the table made: the field found
    by its values to hold its geometries, and its geometry columns of no SRID."""
    if schema.by_values:
        report.geometry_fields_found.add(schema.by_values)
    if options.srid is None:  # srid=0 asked for none
        report.made_without_srid = schema.without_srid()


def _schema_exists(conn: Connection, schema: str) -> bool:
    return bool(conn.exec_driver_sql(SCHEMA_EXISTS_SQL, (double_quoted(schema),)).scalar())


def _create(conn: Connection, qualified: str, name: str, schema: SourceSchema) -> None:
    names = {column.casefold() for column, _ in schema.columns}
    columns = [f"{quote_identifier(c)} {sql_type}" for c, sql_type in schema.columns]
    if schema.key.casefold() not in names:
        key = quote_identifier(schema.key)
        columns.insert(0, f"{key} bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
    conn.exec_driver_sql(f"CREATE TABLE {qualified} ({', '.join(columns)})")
    for geometry in schema.geometries:
        index = quote_identifier(f"{name}_{geometry}_gist"[:63])
        conn.exec_driver_sql(
            f"CREATE INDEX {index} ON {qualified} USING gist ({quote_identifier(geometry)})"
        )
