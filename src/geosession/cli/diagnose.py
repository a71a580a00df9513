"""``geosession activity``, ``explain`` and ``doctor``: what the server is doing, how a
statement runs, and what to fix."""

import sys
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console

from geosession.cli.app import (
    SettingOption,
    assignments,
    duration,
    local_settings_given,
    refuse_without,
)


def activity(
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh the tables live until Ctrl-C.")
    ] = False,
    all_databases: Annotated[
        bool, typer.Option("--all", help="Sessions of every database, not only this one.")
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds between refreshes with --watch (default 2)."),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="With --watch: stop after this many refreshes."),
    ] = None,
    long_running: Annotated[
        float, typer.Option(min=0, help="Mark active queries running longer (seconds).")
    ] = 60.0,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One snapshot as JSON on stdout: {sessions: [...], lock_waits: [...]}, the "
            "fields of db.activity() and db.locks(), ages in seconds (for scripts, alerts).",
        ),
    ] = False,
) -> None:
    """Show the server sessions of this database (pg_stat_activity) and who blocks whom.

    Each row is one backend: pid, application_name, user, state, how long its
    transaction and its query have been running, the event it waits on, the pids that
    block it (pg_blocking_pids) and its query. "idle in transaction" (red) means a
    program opened a transaction and went away to do something else: it pins locks and
    vacuum until it commits; find the code by its application name. A second table lists
    lock waits with the holder's pid and query. Example: geosession activity --watch
    """
    from geosession.database import SpatialDatabase
    from geosession.diagnose.console import activity_view, print_json
    from geosession.diagnose.console import watch as watch_live

    if as_json and watch:
        raise typer.BadParameter(
            "--json writes one snapshot; leave out --watch", param_hint="--json / --watch"
        )
    if not watch:
        refuse_without(
            "--watch", {"--interval": interval is not None, "--count": count is not None}
        )
    with SpatialDatabase.from_env() as db:

        def view() -> Any:
            return activity_view(db, all_databases=all_databases, long_running=long_running)

        if as_json:
            sessions = db.activity(all_databases=all_databases, long_running=long_running)
            waits = db.locks(all_databases=all_databases)
            print_json(
                {
                    "sessions": [asdict(s) for s in sessions],
                    "lock_waits": [asdict(w) for w in waits],
                }
            )
            return
        if watch:
            watch_live(view, interval=interval or 2.0, count=count, console=Console())
        else:
            Console().print(view())


def explain(
    sql: Annotated[str, typer.Argument(help='The statement, e.g. "SELECT ..."; - reads stdin.')],
    analyze: Annotated[
        bool,
        typer.Option(
            "--analyze",
            help="Run it for actual rows, times and buffers, in a transaction rolled back.",
        ),
    ] = False,
    buffers: Annotated[
        bool, typer.Option(help="With --analyze: count shared and temp blocks.")
    ] = True,
    statement_timeout: Annotated[
        str | None,
        typer.Option(
            callback=duration,
            help='With --analyze: how long the statement may run ("10min"; default: the '
            "database's statement_timeout).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report and the raw plan as JSON.")
    ] = False,
    setting: SettingOption = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="NAME=VALUE",
            help="A value for the statement's :NAME placeholder, sent as text for the server "
            "to read as the type the query needs (repeat for several): --param id=42.",
        ),
    ] = None,
) -> None:
    """Show a statement's plan, whether it uses a spatial index, and what to fix.

    Flags sequential scans of tables filtered by a spatial predicate and says why, with
    the SQL to run: "no spatial index on geom: CREATE INDEX ... USING gist (geom)",
    "stats are missing: ANALYZE ...", "the predicate wraps the indexed column in a
    function" (e.g. ST_Transform(geom, ...): transform the other side instead), a
    search geometry of another SRID than the column's ("a constant geometry of SRID 0":
    ST_SetSRID it), or ST_DWithin's metres given to a column in degrees. With
    --analyze even INSERT/UPDATE/DELETE leave no trace: their transaction is rolled back.
    Example: geosession explain "SELECT id FROM parcels WHERE ST_Intersects(geom,
    ST_MakeEnvelope(0, 0, 1, 1, 4326))"
    """

    from geosession.database import SpatialDatabase
    from geosession.diagnose.console import plan_tree, print_json

    if not analyze:
        refuse_without(
            "--analyze",
            {"--statement-timeout": statement_timeout is not None, "--no-buffers": not buffers},
        )
    statement = sys.stdin.read() if sql == "-" else sql
    with SpatialDatabase.from_env() as db:
        params = assignments(param or [], "--param", "NAME=VALUE, e.g. id=42")
        report = db.explain(
            statement,
            params=params,
            analyze=analyze,
            buffers=buffers,
            statement_timeout=statement_timeout,
            settings=local_settings_given(setting),
        )
    if as_json:
        print_json(report.as_dict())
    else:
        Console().print(plan_tree(report))


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checklist as JSON.")] = False,
    schema: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SCHEMA",
            help="Check only the tables of this schema (repeatable). Default: all.",
        ),
    ] = None,
) -> None:
    """Check the database for what makes spatial sessions slow or unsafe; exit 1 if any fails.

    Checks: the connection, the schemas named by --schema, PostgreSQL and PostGIS
    versions, pool_size + max_overflow against max_connections, statement_timeout and
    idle_in_transaction_session_timeout set, a valid spatial index on every
    geometry/geography column (named schema.table.column), indexes an ingest dropped and
    has not rebuilt, serial and identity sequences behind their column's ids, tables over
    50 rows never analyzed, SRID 0 columns, columns in degrees holding latitudes beyond
    ±90 (metres stored as 4326), sessions idle in transaction now, long-running queries,
    the TEMPORARY privilege the ingest's staging tables need, JIT compilation, and each
    of GEOSESSION_REPLICA_URLS (a standby, streaming, within replica_max_lag). Tables the
    role may not read are named, not passed. Each problem comes with its fix (the SQL to
    run). Warnings (!) do not fail.
    """
    from geosession.database import SpatialDatabase
    from geosession.diagnose.console import print_doctor, print_json

    with SpatialDatabase.from_env() as db:
        report = db.doctor(schemas=schema)
    if as_json:
        print_json(report.as_dict())
    else:
        print_doctor(report, Console())
    if not report.ok:
        raise typer.Exit(1)
