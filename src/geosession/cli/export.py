"""``geosession export``: a table or a query into a file, streamed."""

from typing import Annotated

import typer

from geosession.cli.app import SettingOption, assignments, duration, local_settings_given


def projection(value: str) -> str:
    """--geometry's callback: a form it does not take is a usage error, before any query."""
    from geosession.errors import ConfigurationError
    from geosession.read.plan import Projection, not_a_projection

    try:
        Projection.parse(value)
    except ConfigurationError:
        raise typer.BadParameter(not_a_projection(value)) from None
    return value


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
            "parquet (GeoParquet), arrow (Arrow IPC: Feather) or csv (geometry as WKT, its CRS "
            "in a .prj beside it) "
            "(default: from OUTPUT's suffix). OUTPUT ending in .gz, .bz2, .xz or .zst is "
            "compressed as it is written (parcels.geojsonl.gz; not gpkg, fgb, shp).",
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(help="SQL condition, run as given inside a read-only transaction."),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option(
            help="minx,miny,maxx,maxy in lon/lat (EPSG:4326; see --bbox-srid); minx > maxx "
            "crosses the antimeridian (177,-20,-178,-10).",
        ),
    ] = None,
    bbox_srid: Annotated[
        int, typer.Option(min=1, max=999_999, help="SRID of the --bbox numbers.")
    ] = 4326,
    geometry_column: Annotated[
        str | None, typer.Option(help="The geometry column, when there are several.")
    ] = None,
    geometry: Annotated[
        str,
        typer.Option(
            callback=projection,
            help="`full`, `envelope`, `centroid`, `simplify:<tolerance>` or `transform:<srid>`.",
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
        typer.Option(
            help="Read in keyset pages by this unique column (auto: a table's primary key): "
            "no connection is held between pages (for slow consumers), and a page whose "
            "connection is lost (a restart) is read again."
        ),
    ] = None,
    statement_timeout: Annotated[
        str | None,
        typer.Option(
            callback=duration,
            help='The export\'s own statement_timeout ("10min"): each FETCH of a slow '
            "query must end within it (default: the database's, GEOSESSION_STATEMENT_TIMEOUT).",
        ),
    ] = None,
    replica: Annotated[
        bool,
        typer.Option(
            "--replica",
            help="Read on a streaming replica (GEOSESSION_REPLICA_URLS), the primary when "
            "none answers.",
        ),
    ] = False,
    setting: SettingOption = None,
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
        "statement_timeout": statement_timeout,
        "settings": local_settings_given(setting),
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
        params=assignments(param or [], "--param", "NAME=VALUE, e.g. min=1e6"),
        options=options,
    )
