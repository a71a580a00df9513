"""The ``geosession`` command line.

Each concern is a Typer group or command registered on ``app``; to add one, write its
functions in a section of their own and register them with ``app.command()`` or
``app.add_typer()``. Errors from geosession (:class:`~geosession.errors.GeoSessionError`)
are printed in red on stderr by :func:`main`, with exit status 1 and no traceback.
"""

import contextlib
import functools
import importlib
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from geosession.errors import ConfigurationError, GeoSessionError
from geosession.local import ClusterStatus, LocalCluster

if TYPE_CHECKING:
    from geosession.ingest.layer_tables import Load

app = typer.Typer(
    help=(
        "geosession: safe, fast SQLAlchemy sessions for PostGIS.\n\n"
        "With no database configured (GEOSESSION_DATABASE_URL unset), geosession runs a "
        "private PostGIS on this machine: see `geosession local --help`."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",  # help paragraphs reflow to the terminal's width
)

_stderr = Console(stderr=True, soft_wrap=True)


def _flags_without_type() -> None:
    """Since typer 0.29, --help shows ``<bool>`` after each flag as if it took a value
    (``--create <bool>``): flags are shown bare again, as click and earlier typers do."""
    option: Any = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None:  # an earlier typer: flags are shown bare
        return

    @functools.wraps(shown)
    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_bool_flag", False) else shown(self, ctx)

    option.display_type_rich = display_type_rich


_flags_without_type()


def _fail(message: str) -> None:
    """Print ``message`` in red on stderr (no markup is interpreted)."""
    _stderr.print(message, style="red", markup=False, highlight=False)


_REPORTED = ("SQLAlchemy", "GeoAlchemy2", "psycopg", "psycopg2-binary", "asyncpg", "shapely")
_OPTIONAL = ("pyogrio", "pyarrow", "pyproj", "geopandas")
_NATIVE = (
    ("pyogrio", "__gdal_version_string__", "GDAL (pyogrio's)"),
    ("pyproj", "proj_version_str", "PROJ (pyproj's)"),
    ("shapely", "geos_version_string", "GEOS (shapely's)"),
)


def _versions(show: bool) -> None:
    """``--version``: this package and what it runs on, for a bug report."""
    if not show:
        return
    from importlib.metadata import PackageNotFoundError, version

    import geosession

    lines = [f"geosession {geosession.__version__}"]
    for name in (*_REPORTED, *_OPTIONAL):
        try:
            lines.append(f"  {name} {version(name)}")
        except PackageNotFoundError:
            if name not in _OPTIONAL:
                lines.append(f"  {name} (not installed)")
    for module, attribute, label in _NATIVE:
        with contextlib.suppress(ImportError):
            lines.append(f"  {label} {getattr(importlib.import_module(module), attribute)}")
    typer.echo("\n".join(lines))
    raise typer.Exit


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_versions,
            is_eager=True,
            help="Print geosession's version and its libraries', then exit.",
        ),
    ] = False,
) -> None:
    """geosession: safe, fast SQLAlchemy sessions for PostGIS."""


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
    rich_markup_mode="markdown",  # help paragraphs reflow to the terminal's width
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
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Vector files (GeoPackage, Shapefile, GeoJSON, GeoJSON Lines, FlatGeobuf, "
            "KML, GPX, a File Geodatabase's .gdb folder, MapInfo, SpatiaLite; zipped too; a "
            "folder of Shapefiles), "
            "GeoParquet, Arrow IPC (.arrow, .feather, .arrows) or CSV (a WKT column, or "
            "longitude and latitude): one, or several "
            "loaded one after the other. - reads standard input (any of these but an "
            "unzipped Shapefile or a folder), copied to a temporary file in $TMPDIR first; "
            "so is a named pipe, such as bash's <(unzip -p data.zip parcels.geojson).",
        ),
    ],
    table: Annotated[
        str,
        typer.Argument(
            help="Target table, optionally schema.table. {layer} in it loads each layer with "
            "features into a table of its own, named after the layer in lower case "
            "(with --create, as ogr2ogr loads a whole GeoPackage): '{layer}', 'osm.{layer}'; "
            "a file of one layer (a Shapefile, a GeoJSON) is named after the file.",
        ),
    ],
    srid: Annotated[
        int | None,
        typer.Option(
            help="SRID of geometries that carry none, or of a file whose CRS has no EPSG "
            "code (default: the file's EPSG code, else the column's; GeoJSON text: 4326)."
        ),
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
        str,
        typer.Option(
            help="Rows whose key (primary key or unique constraint) exists: "
            "error, ignore (keep the row there) or update (overwrite it)."
        ),
    ] = "error",
    chunk_size: Annotated[
        str, typer.Option(help="Rows per transaction, or 'auto' to adapt to the server.")
    ] = "auto",
    workers: Annotated[
        str,
        typer.Option(
            help="Parallel COPY connections (1-32), or 'auto': 2 while the table's indexes "
            "are maintained during the load, else 1."
        ),
    ] = "auto",
    defer_indexes: Annotated[
        str,
        typer.Option(
            help="Drop secondary indexes for the load and rebuild them after: 'auto' (only "
            "into an empty table), 'yes' (also a table that has rows) or 'no'."
        ),
    ] = "auto",
    wkt_column: Annotated[
        str | None,
        typer.Option(
            help="A CSV's geometry column (WKT, EWKT or hex EWKB). Default: the column named "
            "as the table's geometry column, or wkt, geometry, geom, the_geom or wkt_geom, "
            "in any case."
        ),
    ] = None,
    xy_columns: Annotated[
        str | None,
        typer.Option(
            metavar="X,Y",
            help="A CSV's coordinate columns, x (longitude) first, when it has no WKT column "
            "and their names do not say them. Default: longitude,latitude, lon/lng/long,lat "
            "(EPSG:4326), x,y or easting,northing, in any case.",
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="The layer to load, for a file that has several (a GeoPackage, a File "
            "Geodatabase); ogrinfo FILE lists them."
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            help="Load only the features of a vector file this OGR SQL condition on its "
            "fields keeps, e.g. \"state = 'CA'\" (ogrinfo -so FILE LAYER lists the fields).",
        ),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option(
            help="minx,miny,maxx,maxy in the CRS of the file's layer: load only the features "
            "of a vector file that intersect it (a FlatGeobuf's or GeoPackage's spatial index "
            "finds them).",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="The text encoding of a Shapefile without a .cpg file or of a CSV file that "
            "is not UTF-8, e.g. latin1 or cp1252. Default: the .cpg's; without one, each "
            "value as UTF-8 where it is, else as the DBF says (ISO-8859-1)."
        ),
    ] = None,
    ignore_extra_fields: Annotated[
        bool,
        typer.Option(
            "--ignore-extra-fields",
            help="Load only the fields the table has columns for and leave the others out "
            "(listed in the report), instead of refusing the file; fields for generated "
            "columns (an export of the table has them) too.",
        ),
    ] = False,
    rename: Annotated[
        list[str] | None,
        typer.Option(
            "--rename",
            metavar="FIELD=COLUMN",
            help="Load a file's field into the column of another name, e.g. a "
            "Shapefile's cut name: --rename classifica=classification_code (repeat for "
            "several). With --create, the column is made under that name.",
        ),
    ] = None,
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="Create the table if it does not exist, from the file's fields: their "
            "types, the geometry type and SRID, a GiST index and an fid primary key.",
        ),
    ] = False,
    reproject: Annotated[
        bool,
        typer.Option(
            "--reproject",
            help="Transform geometries from the file's CRS (or --srid) into the column's "
            "SRID while loading, instead of refusing a file whose CRS differs.",
        ),
    ] = False,
    reproject_to: Annotated[
        int | None,
        typer.Option(
            "--reproject-to",
            metavar="SRID",
            help="Transform geometries into this SRID (as ogr2ogr's -t_srs), which --create "
            "gives the new table's geometry column; an existing table's must have it.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Load every chunk, then roll it back: the report says what the load would "
            "insert and reject (the server's refusals included), and nothing is kept.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the report as JSON on stdout (a list, with each file's name, for "
            "several files), for scripts; the progress bar stays on stderr.",
        ),
    ] = False,
) -> None:
    """Load files into a table by binary COPY, exactly once.

    Every chunk commits with a ledger entry, so a load interrupted by Ctrl-C, a crash or
    a lost server resumes when you run the same command again, without duplicates. Bad
    geometries go to TABLE_rejected with the source row and the reason (see
    --on-invalid). Several files are loaded one after the other, each its own load.
    Examples: geosession ingest parcels.gpkg parcels --create;
    geosession ingest tiles/*.fgb parcels;
    geosession ingest city.gpkg '{layer}' --create (each layer into its own table);
    geosession ingest os_parcels.shp parcels --reproject (EPSG:27700 into SRID 4326);
    geosession ingest stations.csv stations --create (longitude and latitude columns)
    """
    from rich.console import Console

    from geosession.database import SpatialDatabase
    from geosession.ingest.layer_tables import planned_loads
    from geosession.read.command import parse_bbox

    size: int | str = int(chunk_size) if chunk_size.isdigit() else chunk_size
    connections: int | str = int(workers) if workers.isdigit() else workers
    box = parse_bbox(bbox)
    area = (box[0], box[1], box[2], box[3]) if box is not None else None
    renames = _renames(rename or [])
    coordinates = _pair(xy_columns)
    deferrals: dict[str, str | bool] = {"auto": "auto", "yes": True, "no": False}
    deferral = deferrals.get(defer_indexes)
    if deferral is None:
        raise typer.BadParameter("use auto, yes or no", param_hint="--defer-indexes")
    _check_sources(sources)
    piped = [source for source in sources if source == _STDIN or _is_pipe(source)]
    loads, empty = planned_loads(sources, table, layer, piped=piped)
    if ingest_id is not None and len(loads) > 1:
        raise typer.BadParameter(
            "an id names one load; with several files or layers leave it out (each gets "
            "its own, from the file and the layer)",
            param_hint="--ingest-id",
        )
    console = Console(stderr=as_json)  # stdout is the JSON's
    if empty:
        console.print(
            f"Empty layers, not loaded: {', '.join(empty)}", highlight=False, soft_wrap=True
        )
    reports = []
    with SpatialDatabase.from_env() as db:
        for number, load in enumerate(loads, start=1):
            if len(loads) > 1:
                into = f" into {load.table}" if load.table != table else ""
                heading = f"[bold]{load.label}[/]{into} ({number} of {len(loads)})"
                console.print(heading, highlight=False, soft_wrap=True, markup=True)
            with _naming_files_left([load.label for load in loads], number):
                report = _resumable(
                    db.ingest,
                    load.table,
                    load.source,
                    console=console,
                    chunk_size=size,
                    on_invalid=on_invalid,
                    on_conflict=on_conflict,
                    ingest_id=ingest_id,
                    filters=(load.layer, where, area),
                    srid=srid,
                    workers=connections,
                    defer_indexes=deferral,
                    progress=True,
                    wkt_column=wkt_column,
                    layer=load.layer,
                    encoding=encoding,
                    where=where,
                    bbox=area,
                    rename=renames,
                    xy_columns=coordinates,
                    extra_fields="ignore" if ignore_extra_fields else "error",
                    create=create,
                    reproject=reproject_to if reproject_to is not None else reproject,
                    dry_run=dry_run,
                )
            if not as_json:
                console.print(report)
            reports.append((load, report))
    _print_reports(reports, console, as_json=as_json)


def _print_reports(reports: list[tuple["Load", Any]], console: Any, *, as_json: bool) -> None:
    """The reports as JSON (one, or a list naming each file and layer), or the table of
    several."""
    from geosession.diagnose.console import print_json

    if as_json and len(reports) == 1:
        print_json(reports[0][1].as_dict())
    elif as_json:
        print_json(
            [
                {"file": str(load.source), "layer": load.layer, **report.as_dict()}
                for load, report in reports
            ]
        )
    elif len(reports) > 1:
        console.print(_files_table(reports))


_STDIN = Path("-")


def _check_sources(sources: list[Path]) -> None:
    """Every source is a file (or a File Geodatabase's folder), a named pipe, or -
    (standard input, once, and not a terminal)."""
    from geosession.ingest.files import is_source_file, refuse_url

    for source in sources:
        try:
            refuse_url(source)
        except ConfigurationError as error:
            raise typer.BadParameter(error.message, param_hint="SOURCES") from None
        if source == _STDIN:
            if sources.count(_STDIN) > 1:
                raise typer.BadParameter(
                    "- (standard input) can be read once", param_hint="SOURCES"
                )
            if sys.stdin.isatty():
                raise typer.BadParameter(
                    "- reads standard input, which is a terminal here: pipe the data in "
                    "(curl -sL URL | geosession ingest - TABLE) or name a file",
                    param_hint="SOURCES",
                )
        elif not (is_source_file(source) or _is_pipe(source)):
            reason = "is a directory" if source.is_dir() else "does not exist"
            raise typer.BadParameter(f"file {str(source)!r} {reason}", param_hint="SOURCES")


def _is_pipe(source: Path) -> bool:
    """A named pipe: bash's <(command), mkfifo's; read once, as standard input is."""
    return source.is_fifo()


@contextlib.contextmanager
def _naming_files_left(sources: list[str], number: int) -> Iterator[None]:
    """A failing file of several: the error also names the files not loaded after it."""
    try:
        yield
    except GeoSessionError as error:
        left = sources[number:]
        if left:
            more = f" and {len(left) - 3} more" if len(left) > 3 else ""
            error.message += (
                f"\nStopped at {sources[number - 1]} ({number} of {len(sources)}): "
                f"{', '.join(left[:3])}{more} not loaded. The files before it are; running "
                "the command again (without this file, or once it is mended) skips what each "
                "committed"
            )
            error.args = (error.message,)
        raise


def _resumable(
    ingest: Any,
    table: str,
    source: Path,
    *,
    console: Any,
    ingest_id: str | None,
    filters: tuple[Any, ...],
    **options: Any,
) -> Any:
    """``ingest(table, source, **options)``, standard input spooled to a file first; a
    failure after chunks committed says how to resume after them (the default id follows
    the file's size and time, or the data piped in, so repaired data needs the id given)."""
    from geosession.ingest.identity import ingest_id_for

    with _readable(source, console) as (path, name, identity):
        try:
            return ingest(
                table,
                path,
                ingest_id=ingest_id or ingest_id_for(identity, table, *filters, prefix="cli-"),
                **options,
            )
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (see main)
            _say_how_to_resume(stop, name, piped=source == _STDIN or _is_pipe(source))
            raise
        except GeoSessionError as error:
            error.message = error.message.replace(str(path), name)  # not the spooled copy
            report = getattr(error, "ingest_report", None)
            if report is not None and report.inserted and not report.dry_run:
                piped = source == _STDIN or _is_pipe(source)
                same = "the same data is piped in" if piped else "the file is unchanged"
                error.message += (
                    f"\n{report.inserted:,} rows of {name} committed before this (ingest id "
                    f"{report.ingest_id}). Running the same command again resumes after them "
                    f"while {same}; for replaced or repaired data, add "
                    f"--ingest-id {report.ingest_id}"
                )
            error.args = (error.message,)
            raise


def _say_how_to_resume(stop: BaseException, name: str, *, piped: bool) -> None:
    """After an ingest was stopped: what it committed and how to go on from there."""
    report = getattr(stop, "ingest_report", None)
    if report is None or report.dry_run:
        return
    again = "piping the same data into the same command" if piped else "the same command"
    _stderr.print(
        f"Stopped: {report.inserted:,} rows of {name} committed by this run, "
        f"{report.inserted + report.already_committed:,} in all (ingest id "
        f"{report.ingest_id}); {again} again resumes after them",
        style="yellow",
        markup=False,
        highlight=False,
    )


@contextlib.contextmanager
def _readable(source: Path, console: Any) -> Iterator[tuple[Path, str, str]]:
    """The file to read, its name for messages and what identifies its data."""
    from geosession.ingest.identity import file_identity

    if source != _STDIN and not _is_pipe(source):
        yield source, str(source), file_identity(source)
        return
    name = "standard input" if source == _STDIN else str(source)
    with (
        tempfile.TemporaryDirectory(prefix="geosession-stdin-") as directory,
        contextlib.nullcontext(sys.stdin.buffer)
        if source == _STDIN
        else source.open("rb") as stream,
    ):
        spooled = _spool_stream(console, stream, name, Path(directory))
        yield spooled.path, name, f"stdin|{spooled.digest}"


def _spool_stream(console: Any, stream: Any, name: str, directory: Path) -> Any:
    """Standard input or a pipe copied to a file in ``directory``, with a byte count while
    it comes."""
    from rich.progress import (
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    from geosession.ingest.spool import spool

    columns = (
        SpinnerColumn(),
        TextColumn(f"reading {name}"),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    try:
        with Progress(
            *columns, console=console, transient=True, disable=not console.is_terminal
        ) as progress:
            task = progress.add_task("stdin", total=None)
            advance = functools.partial(progress.advance, task)
            return spool(stream, directory, name=name, on_block=advance)
    except OSError as error:
        raise ConfigurationError(
            f"Could not copy {name} to {directory}: {error.strerror or error}. Point "
            "TMPDIR at a disk with room for the data, or save it to a file and name that"
        ) from error


def _pair(value: str | None) -> tuple[str, str] | None:
    """``--xy-columns X,Y`` as a pair of names."""
    if value is None:
        return None
    x, comma, y = value.partition(",")
    if not comma or not x.strip() or not y.strip() or "," in y:
        raise typer.BadParameter(
            f"{value!r} is not X,Y: two column names, e.g. lon_deg,lat_deg",
            param_hint="--xy-columns",
        )
    return x.strip(), y.strip()


def _renames(pairs: list[str]) -> dict[str, str] | None:
    """``--rename FIELD=COLUMN`` options as a dict (None when there are none)."""
    return _assignments(pairs, "--rename", "FIELD=COLUMN, e.g. classifica=classification_code")


def _assignments(pairs: list[str], option: str, form: str) -> dict[str, str] | None:
    """Repeated ``NAME=VALUE`` options as a dict (None when there are none)."""
    assigned: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name or (not value and option == "--rename"):
            raise typer.BadParameter(f"{pair!r} is not {form}", param_hint=option)
        assigned[name] = value
    return assigned or None


def _files_table(reports: list[tuple["Load", Any]]) -> Any:
    """One line per file (or layer) loaded, and their totals."""
    from rich.table import Table

    layers = any(load.layer is not None for load, _ in reports)
    title = f"{len(reports)} {'loads' if layers else 'files'}"
    table = Table(title=title, title_justify="left")
    for name in ("file", "rows read", "inserted", "rejected", "already committed"):
        table.add_column(name, justify="left" if name == "file" else "right")
    if layers:
        table.add_column("table")
    totals = [0, 0, 0, 0]
    for load, report in reports:
        counts = [
            report.rows_read,
            report.inserted,
            len(report.rejected),
            report.already_committed,
        ]
        totals = [total + count for total, count in zip(totals, counts, strict=True)]
        cells = [load.label, *(f"{count:,}" for count in counts)]
        table.add_row(*cells, *([report.target] if layers else []))
    table.add_row("all", *(f"{total:,}" for total in totals), style="bold")
    return table


# -- geosession export --------------------------------------------------------------------


@app.command("export")
def export(
    source: Annotated[
        str, typer.Argument(help="A table (optionally schema.table) or a SELECT query.")
    ],
    output: Annotated[str, typer.Argument(help="The file to write, or - for stdout.")],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="geojson, geojsonl, gpkg, fgb, shp (Shapefile; a .shp.zip OUTPUT is one zip), "
            "parquet (GeoParquet), arrow (Arrow IPC: Feather) or csv (geometry as WKT) "
            "(default: from OUTPUT's suffix).",
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(help="SQL condition, run as given inside a read-only transaction."),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option(help="minx,miny,maxx,maxy in lon/lat (EPSG:4326; see --bbox-srid)."),
    ] = None,
    bbox_srid: Annotated[int, typer.Option(help="SRID of the --bbox numbers.")] = 4326,
    geometry_column: Annotated[
        str | None, typer.Option(help="The geometry column, when there are several.")
    ] = None,
    geometry: Annotated[
        str,
        typer.Option(
            help="`full`, `envelope`, `centroid`, `simplify:<tolerance>` or `transform:<srid>`."
        ),
    ] = "full",
    precision: Annotated[
        int | None, typer.Option(min=0, max=15, help="GeoJSON decimals (default: all, 15).")
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="The GeoPackage layer to write (default: named after OUTPUT). An existing "
            "GeoPackage keeps its other layers; a layer of that name is replaced."
        ),
    ] = None,
    no_spatial_index: Annotated[
        bool,
        typer.Option(
            "--no-spatial-index",
            help="Write a GeoPackage, FlatGeobuf or Shapefile without its spatial index "
            "(a Shapefile's is its .qix file): quicker, "
            "and a FlatGeobuf export's memory then does not grow with its features (GDAL "
            "builds that index in memory, ~160 MB per million).",
        ),
    ] = False,
    coordinates: Annotated[
        bool,
        typer.Option(
            "--coordinates",
            help="CSV: write points as longitude,latitude columns (x,y for a projected CRS) "
            "instead of WKT, as spreadsheets take them; --geometry centroid makes points "
            "of other shapes.",
        ),
    ] = False,
    pages_by: Annotated[
        str | None,
        typer.Option(help="Read in keyset pages by this unique column (for slow consumers)."),
    ] = None,
    replica: Annotated[
        bool,
        typer.Option(
            "--replica",
            help="Read on a streaming replica (GEOSESSION_REPLICA_URLS), the primary when "
            "none answers.",
        ),
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="NAME=VALUE",
            help="A value for :NAME in the query or --where, sent as text for the server to "
            "read as the type the query needs (repeat for several): --param min=1e6. Other "
            "colons stay as written ('12:30', geom::geography).",
        ),
    ] = None,
) -> None:
    """Export a table or a query to GeoJSON, GeoJSON Lines, GeoPackage, FlatGeobuf,
    Shapefile, GeoParquet, Arrow IPC (Feather) or CSV.

    Streams in bounded memory through a server-side cursor; the file appears only once
    complete. GeoJSON coordinates are EPSG:4326 (RFC 7946). Examples:
    geosession export parcels parcels.geojson --bbox -74,40.7,-73.9,40.8;
    geosession export "SELECT id, geom FROM parcels WHERE value > :min" - --param min=1e6 | jq .
    """
    from geosession.read.command import parse_bbox, run_export

    options = {
        "geometry_column": geometry_column,
        "geometry": geometry,
        "pages_by": pages_by,
        "bbox_srid": bbox_srid,
        "precision": precision,
        "replica": replica,
    }
    box = parse_bbox(bbox)
    run_export(
        source,
        output,
        format=format,
        where=where,
        bbox=box,
        layer=layer,
        spatial_index=not no_spatial_index,
        coordinates=coordinates,
        params=_assignments(param or [], "--param", "NAME=VALUE, e.g. min=1e6"),
        options=options,
    )


# -- geosession activity ------------------------------------------------------------------


@app.command("activity")
def activity(
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh the tables live until Ctrl-C.")
    ] = False,
    all_databases: Annotated[
        bool, typer.Option("--all", help="Sessions of every database, not only this one.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between refreshes with --watch.")
    ] = 2.0,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="With --watch: stop after this many refreshes."),
    ] = None,
    long_running: Annotated[
        float, typer.Option(min=0, help="Mark active queries running longer (seconds).")
    ] = 60.0,
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
    from geosession.diagnose.console import activity_view
    from geosession.diagnose.console import watch as watch_live

    with SpatialDatabase.from_env() as db:

        def view() -> Any:
            return activity_view(db, all_databases=all_databases, long_running=long_running)

        if watch:
            watch_live(view, interval=interval, count=count, console=Console())
        else:
            Console().print(view())


# -- geosession explain -------------------------------------------------------------------


@app.command("explain")
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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report and the raw plan as JSON.")
    ] = False,
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
    "stats are missing: ANALYZE ...", or "the predicate wraps the indexed column in a
    function" (e.g. ST_Transform(geom, ...): transform the other side instead). With
    --analyze even INSERT/UPDATE/DELETE leave no trace: their transaction is rolled back.
    Example: geosession explain "SELECT id FROM parcels WHERE ST_Intersects(geom,
    ST_MakeEnvelope(0, 0, 1, 1, 4326))"
    """

    from geosession.database import SpatialDatabase
    from geosession.diagnose.console import plan_tree, print_json

    statement = sys.stdin.read() if sql == "-" else sql
    with SpatialDatabase.from_env() as db:
        params = _assignments(param or [], "--param", "NAME=VALUE, e.g. id=42")
        report = db.explain(statement, params=params, analyze=analyze, buffers=buffers)
    if as_json:
        print_json(report.as_dict())
    else:
        Console().print(plan_tree(report))


# -- geosession doctor --------------------------------------------------------------------


@app.command("doctor")
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checklist as JSON.")] = False,
    schema: Annotated[
        list[str] | None,
        typer.Option(help="Check only the tables of this schema (repeatable). Default: all."),
    ] = None,
) -> None:
    """Check the database for what makes spatial sessions slow or unsafe; exit 1 if any fails.

    Checks: the connection, PostgreSQL and PostGIS versions, pool_size + max_overflow
    against max_connections, statement_timeout and idle_in_transaction_session_timeout
    set, a spatial index on every geometry/geography column (named schema.table.column),
    tables over 50 rows never analyzed, SRID 0 columns, sessions idle in transaction now,
    long-running queries. Each problem comes with its fix (the SQL to run). Warnings (!) do
    not fail.
    """
    from geosession.database import SpatialDatabase
    from geosession.diagnose.console import doctor_table, print_json

    with SpatialDatabase.from_env() as db:
        report = db.doctor(schemas=schema)
    if as_json:
        print_json(report.as_dict())
    else:
        Console().print(doctor_table(report))
    if not report.ok:
        raise typer.Exit(1)


# -- entry point --------------------------------------------------------------------------


def main() -> None:
    """Run the command line; geosession errors become a red message and exit status 1.

    SIGTERM (a service manager, ``kill``, a container stopping) stops a command as Ctrl-C
    does: a load commits or rolls back the chunks in flight and rebuilds the indexes it
    deferred, an export removes its unfinished file. Either ends the command with status
    128 + the signal's number (130, 143), whatever the interruption became on its way
    out: GDAL, reading Arrow batches, reports one as a RuntimeError of its own."""
    received: list[int] = []

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        app()
    except GeoSessionError as exc:
        if received:
            raise SystemExit(128 + received[0]) from None
        _fail(exc.message)
        raise SystemExit(1) from None
    except SystemExit as done:
        if received and done.code not in (0, None):
            raise SystemExit(128 + received[0]) from None
        raise
    except BaseException:
        if received:
            raise SystemExit(128 + received[0]) from None
        raise
