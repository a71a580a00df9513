"""The work behind ``geosession export``: the query, a progress bar and the count on stderr.

Progress and the final count go to stderr, so ``-`` (stdout) carries only the GeoJSON.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rich.console import Console
from sqlalchemy import text

from geosession.database import SpatialDatabase
from geosession.errors import ConfigurationError, DatabaseError
from geosession.read.export import format_for
from geosession.read.geojson import ExportResult
from geosession.read.plan import quote_identifier
from geosession.read.progress import export_progress
from geosession.read.source import source_query, table_name
from geosession.sidecar import prj_path

_ESTIMATE_SQL = text(
    "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name) "
    "UNION ALL SELECT NULL WHERE to_regclass(:name) IS NULL"
)
_SAME_NAME_SQL = text(
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE lower(c.relname) = lower(:table) "
    "AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT LIKE 'pg\\_%' "
    "AND n.nspname <> 'information_schema' ORDER BY 1 LIMIT 5"
)


def parse_bbox(value: str | None) -> list[float] | None:
    """``"minx,miny,maxx,maxy"`` as four numbers."""
    if value is None:
        return None
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 4:
        raise ConfigurationError(f"--bbox {value!r} is not minx,miny,maxx,maxy (four numbers)")
    return numbers


def run_export(
    source: str,
    output: str,
    *,
    format: str | None,
    where: str | None,
    bbox: Sequence[float] | None,
    layer: str | None = None,
    spatial_index: bool = True,
    coordinates: bool = False,
    params: Mapping[str, str] | None = None,
    options: dict[str, Any],
) -> ExportResult:
    """Exports ``source`` (a table or a query) to ``output`` with a progress bar on stderr."""
    dest: Any = sys.stdout.buffer if output == "-" else output
    kind = format_for(dest, format, option="--format ")
    console = Console(stderr=True)
    started = time.perf_counter()
    with (
        SpatialDatabase.from_env() as db,
        _reader_may_leave(output),
        _placeholders_named(source, where, params or {}),
    ):
        if options.get("replica") and not db.settings.replica_urls:
            console.print(
                "No replica is configured (GEOSESSION_REPLICA_URLS is empty): reading on "
                "the primary",
                highlight=False,
            )
        estimate = _estimate(db, source, options)
        total = None if where or bbox else estimate
        with export_progress(total, console) as advance:
            result = db.export(
                bound_query(source, where, params or {}),
                dest,
                format=kind,
                layer=layer,
                spatial_index=spatial_index,
                coordinates=coordinates,
                bbox=bbox,
                progress=advance,
                **options,
            )
    if output == "-":
        sys.stdout.buffer.flush()
    seconds = time.perf_counter() - started
    target = "stdout" if output == "-" else output
    console.print(
        f"Exported {result.features:,} feature{'' if result.features == 1 else 's'} to "
        f"{target} ({kind}) in {seconds:.1f} s",
        highlight=False,
    )
    if result.crs is not None and output != "-":
        console.print(f"Its CRS, which CSV cannot hold: {prj_path(output)}", highlight=False)
    if result.renamed:
        fields = ", ".join(f"{column} -> {field}" for column, field in result.renamed.items())
        console.print(f"Field names shortened to a Shapefile's 10 bytes: {fields}", highlight=False)
    return result


@contextlib.contextmanager
def _reader_may_leave(output: str) -> Iterator[None]:
    """Standard output's reader stopping early (``| head``, ``| jq`` failing) ends the
    export quietly with status 141, as SIGPIPE ends other tools; Python would print a
    traceback, and again when it flushes at exit."""
    try:
        yield
    except BrokenPipeError:
        if output != "-":
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None


_PLACEHOLDER = re.compile(r"(?<![:\w\\]):([A-Za-z_]\w*)")
_SYNTAX_ERROR = "42601"


@contextlib.contextmanager
def _placeholders_named(
    source: str, where: str | None, params: Mapping[str, str]
) -> Iterator[None]:
    """The server's syntax error at a ``:name`` no ``--param`` binds (written as the colon
    it is) in words: the query's placeholder needs its value."""
    try:
        yield
    except DatabaseError as error:
        texts = (source, where or "")
        unbound = [n for s in texts for n in _PLACEHOLDER.findall(s) if n not in params]
        if error.sqlstate != _SYNTAX_ERROR or not unbound:
            raise
        flags = " ".join(f"--param {name}=VALUE" for name in dict.fromkeys(unbound))
        raise ConfigurationError(
            f"{error.message}. The query's :{unbound[0]} has no value: give {flags} (a "
            "colon meant as text goes inside a string literal)"
        ) from error


def bound_query(source: str, where: str | None, params: Mapping[str, str]) -> Any:
    """The export's statement with each ``--param`` bound to its ``:name``."""
    query = source_query(source, where=where, binds=params)
    unused = sorted(set(params) - set(query.compile().params))
    if unused:
        raise ConfigurationError(
            f"--param {unused[0]}=...: neither the query nor --where has :{unused[0]}; "
            "write it there, or leave the --param out"
        )
    return query.params(params) if params else query


_NOT_A_QUERY = (
    ". Meant as a query? It is one when it begins with SELECT, WITH, VALUES, TABLE or a parenthesis"
)


def _estimate(db: SpatialDatabase, source: str, options: Mapping[str, Any]) -> int | None:
    """The planner's row count of a whole table, for the bar's total (None for queries);
    a table that does not exist is refused, naming those of the name in another case or
    schema. The name is looked up as the export's transactions will (their settings)."""
    name = table_name(source)
    if name is None:
        return None
    qualified = ".".join(quote_identifier(part) for part in name if part is not None)
    replica, settings = options.get("replica", False), options.get("settings")
    with db.transaction(replica=replica, settings=settings, read_only=True) as session:
        (estimate,) = session.execute(_ESTIMATE_SQL, {"name": qualified}).one()
        if estimate is None:
            similar = session.execute(_SAME_NAME_SQL, {"table": name[1]}).scalars().all()
            query = "" if similar or " " not in source.strip() else _NOT_A_QUERY
            raise ConfigurationError(
                f"no table {qualified} in this database (a name is taken as typed, capitals "
                "included; without a schema it is looked for on search_path)"
                + (f": did you mean {' or '.join(similar)}?" if similar else query)
            )
    return int(estimate) if estimate > 0 else None
