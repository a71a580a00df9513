"""``geosession local``: the embedded PostGIS."""

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from geosession.cli.app import fail
from geosession.local import ClusterStatus, LocalCluster

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
    rich_markup_mode="markdown",  # help paragraphs reflow to the terminal's width
)

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
    if os.environ.get("GEOSESSION_DATABASE_URL"):
        fail(
            "GEOSESSION_DATABASE_URL is set: the other geosession commands use that "
            "database, not this one (unset it, or export GEOSESSION_DATABASE_URL="
            '"$(geosession local url)")'
        )


@local_app.command("stop")
def local_stop(ctx: typer.Context) -> None:
    """Stop the embedded PostGIS (open sessions are disconnected). Data is kept."""
    cluster = _cluster(ctx)
    _refuse_no_cluster(cluster)
    cluster.stop()
    typer.echo(f"The embedded PostGIS in {cluster.home} is stopped.")


@local_app.command("status")
def local_status(ctx: typer.Context) -> None:
    """Show port, pid, data directory and versions; exit status 1 if not running."""
    cluster = _cluster(ctx)
    _refuse_no_cluster(cluster)
    status = cluster.status()
    if status is None:
        fail(f"The embedded PostGIS in {cluster.home} is not running ({cluster.start_command}).")
        raise typer.Exit(1)
    Console().print(_status_table(status))


@local_app.command("url")
def local_url(ctx: typer.Context) -> None:
    """Print only the SQLAlchemy URL of the running cluster, for $(geosession local url)."""
    typer.echo(_cluster(ctx).url())


def _refuse_no_cluster(cluster: LocalCluster) -> None:
    """A home no start has made a cluster in (a mistyped --home or GEOSESSION_HOME) is said
    to hold none, exit status 1, rather than reported stopped."""
    if not cluster.is_created():
        fail(
            f"There is no embedded PostGIS in {cluster.home} (no cluster in "
            f"{cluster.data_dir}): check --home or GEOSESSION_HOME, or create it with "
            f"`{cluster.start_command}`."
        )
        raise typer.Exit(1)


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
