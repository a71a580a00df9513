"""The ``geosession`` command line.

Each concern is a Typer group or command registered on ``app``; to add one, write its
functions in a section of their own and register them with ``app.command()`` or
``app.add_typer()``. Errors from geosession (:class:`~geosession.errors.GeoSessionError`)
are printed in red on stderr by :func:`main`, with exit status 1 and no traceback.
"""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from geosession.errors import GeoSessionError
from geosession.local import ClusterStatus, LocalCluster

app = typer.Typer(
    help=(
        "geosession: safe, fast SQLAlchemy sessions for PostGIS.\n\n"
        "With no database configured (GEOSESSION_DATABASE_URL unset), geosession runs a "
        "private PostGIS on this machine: see `geosession local --help`."
    ),
    no_args_is_help=True,
)

_stderr = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> None:
    """Print ``message`` in red on stderr (no markup is interpreted)."""
    _stderr.print(message, style="red", markup=False, highlight=False)


# -- geosession local ---------------------------------------------------------------------

local_app = typer.Typer(
    help=(
        "Run the embedded PostGIS: a private PostgreSQL + PostGIS cluster that geosession "
        "creates (initdb) on first start from the installed PostgreSQL packages.\n\n"
        "Data lives in $GEOSESSION_HOME; by default /var/lib/geosession as root (the server "
        "then runs as the postgres OS user), else the user data directory "
        "(~/.local/share/geosession on Linux). The server listens on 127.0.0.1 only and "
        "trusts local logins as postgres, so its URL has no password. Use it in a shell "
        'with: export GEOSESSION_DATABASE_URL="$(geosession local url)".'
    ),
    no_args_is_help=True,
)
app.add_typer(local_app, name="local")

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="GEOSESSION_HOME",
        help="Directory holding the cluster (data/, run/, postgresql.log).",
        show_default=False,
    ),
]


@local_app.callback()
def local_options(ctx: typer.Context, home: HomeOption = None) -> None:
    """Choose the cluster every `local` command works on."""
    ctx.obj = LocalCluster(home)


def _cluster(ctx: typer.Context) -> LocalCluster:
    return ctx.obj if isinstance(ctx.obj, LocalCluster) else LocalCluster()


@local_app.command("start")
def local_start(ctx: typer.Context) -> None:
    """Start the embedded PostGIS, creating it on first use, and print its URL.

    Safe to run again: an already running cluster is left alone. The first start runs
    initdb, creates the `geosession` database and enables PostGIS in it. If the saved port
    is taken by another program, a free one is chosen and saved.
    """
    typer.echo(_cluster(ctx).start())


@local_app.command("stop")
def local_stop(ctx: typer.Context) -> None:
    """Stop the embedded PostGIS (open sessions are disconnected). Data is kept."""
    cluster = _cluster(ctx)
    cluster.stop()
    typer.echo(f"The embedded PostGIS in {cluster.home} is stopped.")


@local_app.command("status")
def local_status(ctx: typer.Context) -> None:
    """Show port, pid, data directory and versions; exit status 1 if not running."""
    cluster = _cluster(ctx)
    status = cluster.status()
    if status is None:
        _fail(f"The embedded PostGIS in {cluster.home} is not running (geosession local start).")
        raise typer.Exit(1)
    Console().print(_status_table(status))


@local_app.command("url")
def local_url(ctx: typer.Context) -> None:
    """Print only the SQLAlchemy URL of the running cluster, for $(geosession local url)."""
    typer.echo(_cluster(ctx).url())


def _status_table(status: ClusterStatus) -> Table:
    table = Table(title="Embedded PostGIS: running", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("Port", str(status.port))
    table.add_row("PID", str(status.pid))
    table.add_row("Data directory", str(status.data_dir))
    table.add_row("URL", status.url)
    table.add_row("PostgreSQL", status.postgres_version)
    table.add_row("PostGIS", status.postgis_version or "not enabled")
    return table


# -- geosession demo ----------------------------------------------------------------------


@app.command("demo")
def demo(
    rows: Annotated[
        int, typer.Option(min=1_000, max=10_000_000, help="How many parcels to load.")
    ] = 100_000,
) -> None:
    """Run the demo: load synthetic parcels, query them through the GiST index, show pool state.

    Uses GEOSESSION_DATABASE_URL when set, else the embedded PostGIS (start it with
    `geosession local start`). Creates and replaces the table demo_parcels; nothing else
    is touched.
    """
    from geosession.demo import main as run

    run(rows=rows)


# -- geosession ingest --------------------------------------------------------------------


@app.command("ingest")
def ingest(
    source: Annotated[
        Path,
        typer.Argument(
            help="A vector file (GeoPackage, Shapefile, GeoJSON, FlatGeobuf) or a CSV with a "
            "WKT column.",
            exists=True,
            dir_okay=False,
        ),
    ],
    table: Annotated[str, typer.Argument(help="Target table, optionally schema.table.")],
    srid: Annotated[
        int | None,
        typer.Option(help="SRID of geometries that carry none (default: the column's)."),
    ] = None,
    ingest_id: Annotated[
        str | None,
        typer.Option(
            help="Name of this load in the ledger. Default: derived from the file and table, "
            "so running the same command again resumes where it stopped."
        ),
    ] = None,
    on_invalid: Annotated[
        str, typer.Option(help="Bad geometries: quarantine, raise, repair or skip.")
    ] = "quarantine",
    on_conflict: Annotated[
        str, typer.Option(help="Existing primary keys: error, ignore or update.")
    ] = "error",
    chunk_size: Annotated[
        str, typer.Option(help="Rows per transaction, or 'auto' to adapt to the server.")
    ] = "auto",
    workers: Annotated[int, typer.Option(min=1, max=32, help="Parallel COPY connections.")] = 1,
) -> None:
    """Load a file into an existing table by binary COPY, exactly once.

    Every chunk commits with a ledger entry, so a load interrupted by Ctrl-C, a crash or
    a lost server resumes when you run the same command again, without duplicates. Bad
    geometries go to TABLE_rejected with the source row and the reason (see
    --on-invalid). Example: geosession ingest parcels.gpkg parcels --workers 2
    """
    from rich.console import Console

    from geosession.database import SpatialDatabase

    size: int | str = int(chunk_size) if chunk_size.isdigit() else chunk_size
    with SpatialDatabase.from_env() as db:
        report = db.ingest(
            table,
            source,
            chunk_size=size,
            on_invalid=on_invalid,
            on_conflict=on_conflict,
            ingest_id=ingest_id or _ingest_id_for(source, table),
            srid=srid,
            workers=workers,
            progress=True,
        )
    Console().print(report)


def _ingest_id_for(source: Path, table: str) -> str:
    """Same file (path, size, modification time) into the same table: the same load."""
    import hashlib

    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{table}"
    return "cli-" + hashlib.sha1(key.encode()).hexdigest()[:16]


# -- entry point --------------------------------------------------------------------------


def main() -> None:
    """Run the command line; geosession errors become a red message and exit status 1."""
    try:
        app()
    except GeoSessionError as exc:
        _fail(exc.message)
        raise SystemExit(1) from None
