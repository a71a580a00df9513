"""``geosession ingest``: files into tables, exactly once, resumable."""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from geosession.cli.app import assignments, local_settings_given, stderr
from geosession.cli.sources import STDIN, check_arguments, is_pipe, readable
from geosession.errors import GeoSessionError

if TYPE_CHECKING:
    from geosession.ingest.layer_tables import Load


def ingest(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Vector files (GeoPackage, Shapefile, GeoJSON, GeoJSON Lines, FlatGeobuf, "
            "KML, GPX, a File Geodatabase's .gdb folder, MapInfo, SpatiaLite; in a zip or tar "
            "archive too; a "
            "folder of Shapefiles), "
            "GeoParquet, Arrow IPC (.arrow, .feather, .arrows), CSV (a WKT column, or "
            "longitude and latitude; a .prj beside it gives its CRS), a spreadsheet (.xlsx, "
            ".ods: a sheet of longitude and latitude, --layer names one) or JSON records "
            "(.json: an API's array of objects; "
            ".jsonl, .ndjson: one per line), any of them gzip, bzip2, xz or zstd compressed too "
            "(points.csv.gz, buildings.geojsonl.gz read as they decompress; other formats "
            "decompressed into $TMPDIR first): one, or several "
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
            "a JSON object's arrays of records are its layers; a file of one layer (a "
            "Shapefile, a GeoJSON) is named after the file.",
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
            "so running the same command again resumes where it stopped (and is refused "
            "while the last run still runs)."
        ),
    ] = None,
    on_invalid: Annotated[
        str,
        typer.Option(
            help="Bad geometries: quarantine (into TABLE_rejected, and the rest load), raise "
            "(stop at the first), repair or skip. Rows with a value their column cannot take "
            "are set aside whatever it says: kept in TABLE_rejected with quarantine, listed "
            "in the report only otherwise."
        ),
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
            "are maintained during the load, else 1 (and 1 with --on-conflict update or "
            "ignore, which apply a key's rows in the source's order; more apply a key "
            "repeated in another chunk in the order the chunks commit)."
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
            "in any case; else the one column all of whose values are geometries (that no "
            "column of the table takes)."
        ),
    ] = None,
    xy_columns: Annotated[
        str | None,
        typer.Option(
            metavar="X,Y[,Z]",
            help="A CSV's coordinate columns, x (longitude) first, when it has no WKT column "
            "and their names do not say them; a third, the heights, for a column with Z. "
            "Default: longitude,latitude, lon/lng/long,lat (EPSG:4326), x,y or "
            "easting,northing, in any case; z, elevation, altitude, alt or ele into a "
            "column with Z (z alone with --create).",
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="The layer to load, for a file that has several (a GeoPackage, a File "
            "Geodatabase; ogrinfo FILE lists them), or the member of a JSON object whose "
            'array holds the records ({"results": [...]}) when several members hold one.'
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
            "of a vector, GeoParquet or Arrow file that intersect it (a FlatGeobuf's or "
            "GeoPackage's spatial index, a GeoParquet's bbox column, finds them); minx > maxx "
            "crosses the antimeridian (177,-20,-178,-10).",
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
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--setting",
            metavar="NAME=VALUE",
            help="A setting for the load's connections while it holds them (repeat for "
            "several): a role, --setting role=tenant_writer, or a row-level security key, "
            "--setting app.tenant=7. Not search_path: name the table's schema instead.",
        ),
    ] = None,
) -> None:
    """Load files into a table by binary COPY, exactly once.

    Every chunk commits with a ledger entry, so a load interrupted by Ctrl-C, a crash or
    a lost server resumes when you run the same command again, without duplicates; run
    again while the last run still runs (an overlapping cron job), it is refused. Bad
    geometries go to TABLE_rejected with the source row and the reason (see
    --on-invalid). Several files are loaded one after the other, each its own load.
    Exit status 1 when a load fails, or when every row of one was rejected (the wrong
    table or CRS, most likely); 130 after Ctrl-C, 143 after SIGTERM (kill, a container
    stopping), each after the chunks being written commit.
    Examples: geosession ingest parcels.gpkg parcels --create;
    geosession ingest tiles/*.fgb parcels;
    geosession ingest city.gpkg '{layer}' --create (each layer into its own table);
    geosession ingest os_parcels.shp parcels --reproject (EPSG:27700 into SRID 4326);
    geosession ingest stations.csv stations --create (longitude and latitude columns)
    """
    from rich.console import Console

    from geosession.database import SpatialDatabase
    from geosession.ingest.chunking import MAXIMUM
    from geosession.ingest.layer_tables import planned_loads
    from geosession.read.command import parse_bbox

    _choice(on_invalid, ("quarantine", "raise", "repair", "skip"), "--on-invalid")
    _choice(on_conflict, ("error", "ignore", "update"), "--on-conflict")
    size = _auto_or_number(chunk_size, MAXIMUM, "--chunk-size", "rows")
    connections = _auto_or_number(workers, 32, "--workers", "COPY connections")
    box = parse_bbox(bbox)
    area = (box[0], box[1], box[2], box[3]) if box is not None else None
    renames = _renames(rename or [])
    coordinates = _coordinate_names(xy_columns)
    deferrals: dict[str, str | bool] = {"auto": "auto", "yes": True, "no": False}
    deferral = deferrals.get(defer_indexes)
    if deferral is None:
        raise typer.BadParameter("use auto, yes or no", param_hint="--defer-indexes")
    check_arguments(sources, table)
    piped = [source for source in sources if source == STDIN or is_pipe(source)]
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
            f"Layers not loaded: {', '.join(empty)}; --layer NAME with a table name of "
            "its own loads one",
            highlight=False,
            soft_wrap=True,
        )
    reports: list[tuple[Load, Any]] = []
    stopped_json = _json_even_if_stopped(reports, as_json=as_json, several=len(loads) > 1)
    with stopped_json, SpatialDatabase.from_env() as db:
        for number, load in enumerate(loads, start=1):
            if len(loads) > 1:
                into = f" into {load.table}" if load.table != table else ""
                heading = f"[bold]{load.label}[/]{into} ({number} of {len(loads)})"
                console.print(heading, highlight=False, soft_wrap=True, markup=True)
            with (
                _naming_files_left([load.label for load in loads], number),
                _partial(reports, load),
            ):
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
                    settings=local_settings_given(setting),
                )
            if not as_json:
                console.print(report)
                _say_if_loaded_before(report, console)
            reports.append((load, report))
    _print_reports(reports, console, as_json=as_json)
    _exit_if_all_rejected(reports, console)


def _say_if_loaded_before(report: Any, console: Any) -> None:
    """A run that found every row committed by an earlier one loads nothing: said in
    words, since a changed option (--srid, --reproject) does not load the rows again."""
    if report.rows_read or not report.already_committed or report.dry_run:
        return
    console.print(
        f"Nothing to load: an earlier run of this load (ingest id {report.ingest_id}) "
        f"committed all {report.already_committed:,} rows. Options changed since (--srid, "
        "--reproject, --on-invalid ...) do not load them again: to reload them so, empty "
        "the table (a run into a table emptied since loads again), or delete those rows "
        "and pass another --ingest-id",
        highlight=False,
        soft_wrap=True,
    )


def _exit_if_all_rejected(reports: list[tuple["Load", Any]], console: Any) -> None:
    """Exit status 1 when every row of a load was rejected, or loaded with latitudes no
    degrees have, which a script must not take for a success (the reports above say why)."""
    refused = [load.label for load, report in reports if report.all_rejected]
    if refused:
        console.print(
            f"No row of {', '.join(refused)} was loaded: every row read was rejected (the "
            "reasons are above). Check that the table and its column types, SRID and "
            "geometry type are the ones meant for this data",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    misplaced = [load.label for load, report in reports if report.all_beyond_latitudes]
    if misplaced:
        console.print(
            f"Every row of {', '.join(misplaced)} was loaded with a latitude beyond ±90 into "
            "a column of degrees: projected coordinates (metres) given a geographic SRID, or "
            "latitude and longitude swapped. Check the file's CRS (a .prj that is missing: "
            "--srid with its EPSG code and --reproject), then load it again",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _print_reports(reports: list[tuple["Load", Any]], console: Any, *, as_json: bool) -> None:
    """The reports as JSON (one, or a list naming each file and layer), or the table of
    several."""
    if as_json:
        _print_json(reports, several=len(reports) > 1)
    elif len(reports) > 1:
        console.print(_files_table(reports))


def _print_json(reports: list[tuple["Load", Any]], *, several: bool) -> None:
    from geosession.diagnose.console import print_json

    if not several:
        print_json(reports[0][1].as_dict())
        return
    print_json(
        [
            {"file": str(load.source), "layer": load.layer, **report.as_dict()}
            for load, report in reports
        ]
    )


@contextlib.contextmanager
def _partial(reports: list[tuple["Load", Any]], load: "Load") -> Iterator[None]:
    """A load that fails after it began adds its report of how far it got, its error in
    ``error`` (for --json)."""
    try:
        yield
    except (GeoSessionError, KeyboardInterrupt) as error:
        report = getattr(error, "ingest_report", None)
        if report is not None:
            if isinstance(error, GeoSessionError):
                report.error = error.message  # as the command words it
            reports.append((load, report))
        raise


@contextlib.contextmanager
def _json_even_if_stopped(
    reports: list[tuple["Load", Any]], *, as_json: bool, several: bool
) -> Iterator[None]:
    """With --json, a load that fails or is stopped still leaves on stdout the reports of
    the loads before it and how far it got (the error goes to stderr as always): a script
    sees what was committed."""
    try:
        yield
    except (GeoSessionError, KeyboardInterrupt):
        if as_json and reports:
            _print_json(reports, several=several)
        raise


@contextlib.contextmanager
def _naming_files_left(sources: list[str], number: int) -> Iterator[None]:
    """A failing file of several: the error also names the files not loaded after it."""
    try:
        yield
    except GeoSessionError as error:
        left = sources[number:]
        if left:
            more = f" and {len(left) - 3} more" if len(left) > 3 else ""
            error.reword(
                error.message + f"\nStopped at {sources[number - 1]} ({number} of {len(sources)}): "
                f"{', '.join(left[:3])}{more} not loaded. The files before it are; running "
                "the command again (without this file, or once it is mended) skips what each "
                "committed"
            )
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

    piped = source == STDIN or is_pipe(source)
    try:
        with readable(source, console) as (path, name, identity):
            return _ingest_named(
                ingest,
                table,
                path,
                name,
                piped=piped,
                ingest_id=ingest_id or ingest_id_for(identity, table, *filters, prefix="cli-"),
                **options,
            )
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (see main); also while piped in
        _say_how_to_resume(stop, "standard input" if source == STDIN else str(source), piped=piped)
        raise


def _ingest_named(
    ingest: Any, table: str, path: Path, name: str, *, piped: bool, **options: Any
) -> Any:
    """``ingest(table, path, **options)``; an error names ``name``, not a spooled copy, and
    says how to resume after the chunks committed before it."""
    try:
        return ingest(table, path, **options)
    except GeoSessionError as error:
        message = error.message.replace(str(path), name)  # not the spooled copy
        report = getattr(error, "ingest_report", None)
        if report is not None and report.inserted and not report.dry_run:
            same = "the same data is piped in" if piped else "the file is unchanged"
            message += (
                f"\n{report.inserted:,} rows of {name} committed before this (ingest id "
                f"{report.ingest_id}). Running the same command again resumes after them "
                f"while {same}; for replaced or repaired data, add "
                f"--ingest-id {report.ingest_id}"
            )
        error.reword(message)
        raise


def _say_how_to_resume(stop: BaseException, name: str, *, piped: bool) -> None:
    """After an ingest was stopped: what it committed and how to go on from there."""
    report = getattr(stop, "ingest_report", None)
    if report is None:  # reading it in, its fields' types, making the table
        stderr.print(f"Stopped before any row of {name} was loaded", style="yellow", markup=False)
        return
    if report.dry_run:
        return
    again = "piping the same data into the same command" if piped else "the same command"
    stderr.print(
        f"Stopped: {report.inserted:,} rows of {name} committed by this run, "
        f"{report.inserted + report.already_committed:,} in all (ingest id "
        f"{report.ingest_id}); {again} again resumes after them",
        style="yellow",
        markup=False,
        highlight=False,
    )


def _coordinate_names(value: str | None) -> tuple[str, ...] | None:
    """``--xy-columns X,Y[,Z]`` as two or three names."""
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(","))
    if len(names) not in (2, 3) or not all(names):
        raise typer.BadParameter(
            f"{value!r} is not X,Y or X,Y,Z: two column names (three with the heights), "
            "e.g. lon_deg,lat_deg or lon_deg,lat_deg,height_m",
            param_hint="--xy-columns",
        )
    return names


def _choice(value: str, allowed: tuple[str, ...], flag: str) -> None:
    if value not in allowed:
        raise typer.BadParameter(f"{value!r}: use {', '.join(allowed)}", param_hint=flag)


def _auto_or_number(value: str, most: int, flag: str, unit: str) -> int | str:
    """'auto', or a whole number from 1 to ``most``; else a usage error naming ``flag``."""
    if value == "auto":
        return value
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise typer.BadParameter(f"{value!r}: use auto, or 1 to {most:,} {unit}", param_hint=flag)
    return int(value)


def _renames(pairs: list[str]) -> dict[str, str] | None:
    """``--rename FIELD=COLUMN`` options as a dict (None when there are none)."""
    return assignments(pairs, "--rename", "FIELD=COLUMN, e.g. classifica=classification_code")


def _files_table(reports: list[tuple["Load", Any]]) -> Any:
    """One line per file (or layer) loaded, and their totals."""
    from rich.table import Table

    layers = any(load.layer is not None for load, _ in reports)
    title = f"{len(reports)} {'loads' if layers else 'files'}"
    table = Table(title=title, title_justify="left")
    table.add_column("file", overflow="fold")  # a path wraps whole rather than cut
    for name in ("rows read", "inserted", "rejected", "already committed"):
        table.add_column(name, justify="right")
    if layers:
        table.add_column("table", overflow="fold")
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
