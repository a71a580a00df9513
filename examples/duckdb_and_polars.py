"""Hand PostGIS rows to DuckDB and polars as Arrow, and load their results back.

    .venv/bin/python examples/duckdb_and_polars.py [--rows 50000]

Needs duckdb and polars (`pip install duckdb polars`; the dev extra has them). Uses
GEOSESSION_DATABASE_URL, else the embedded PostGIS (`geosession local start`), and tables
of its own: ``example_parcels`` (the source), ``example_priciest`` and
``example_valuable`` (made from the results); all are dropped at the start.

``db.stream_arrow`` gives a query's rows as Arrow record batches, each geometry as
GeoArrow WKB with its CRS, and holds one pooled connection until it is read or closed.
DuckDB queries it in place and polars reads it into a DataFrame; ``db.ingest(...,
create=True)`` takes either result back, making the table from the result's Arrow schema
(the geometry column keeps the source's SRID) and sending the rows by binary COPY.
"""

from __future__ import annotations

import argparse

import duckdb
import polars as pl
from sqlalchemy import text

from geosession import SpatialDatabase
from geosession.demo import synthetic_rows

TABLES = ("example_parcels", "example_priciest", "example_valuable")


def load_parcels(db: SpatialDatabase, rows: int) -> None:
    """Synthetic parcels (id, name, land_use, value, polygon in EPSG:4326) into a table."""
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE example_parcels (id integer PRIMARY KEY, name text, "
                "land_use text, value numeric(12, 2), geom geometry(Polygon, 4326))"
            )
        )
    columns = ("id", "name", "land_use", "value", "geom")
    parcels = (dict(zip(columns, row, strict=True)) for row in synthetic_rows(rows, seed=5))
    report = db.ingest("example_parcels", parcels)
    print(f"example_parcels: {report.inserted:,} parcels loaded")


def priciest_with_duckdb(db: SpatialDatabase) -> None:
    """The three priciest parcels of each land use, ranked by DuckDB, stored in PostGIS."""
    statement = "SELECT id, land_use, value, geom FROM example_parcels"
    with db.stream_arrow(statement) as parcels:  # noqa: F841  # DuckDB reads it by name
        ranked = duckdb.sql(
            "SELECT *, row_number() OVER (PARTITION BY land_use ORDER BY value DESC) AS rank "
            "FROM parcels QUALIFY rank <= 3"
        )
        report = db.ingest("example_priciest", ranked, create=True)
    print(f"example_priciest: {report.inserted} parcels ranked by DuckDB")


def valuable_with_polars(db: SpatialDatabase, threshold: float) -> None:
    """The parcels worth more than ``threshold``, filtered by polars, stored in PostGIS."""
    with db.stream_arrow("SELECT id, name, value, geom FROM example_parcels") as parcels:
        frame = pl.DataFrame(parcels)
    valuable = frame.filter(pl.col("value") > threshold)
    report = db.ingest("example_valuable", valuable, create=True)
    print(f"example_valuable: {report.inserted:,} parcels over {threshold:,.0f} from polars")


def show(db: SpatialDatabase) -> None:
    """What the two tables are made of, and the ranking as PostGIS now holds it."""
    with db.session() as s:
        made = s.execute(
            text(
                "SELECT f_table_name, f_geometry_column, srid, type FROM geometry_columns "
                "WHERE f_table_name IN ('example_priciest', 'example_valuable') ORDER BY 1"
            )
        )
        for table, column, srid, kind in made:
            print(f"{table}.{column}: geometry({kind}, {srid})")
        top = s.execute(
            text(
                "SELECT land_use, id, value, round(ST_Area(geom::geography)) FROM "
                "example_priciest WHERE rank = 1 ORDER BY value DESC"
            )
        )
        for land_use, parcel, value, area in top:
            print(f"  priciest {land_use:<12} parcel {parcel:>6}  {value:>14,.2f}  {area:,.0f} m²")


def main(rows: int) -> None:
    db = SpatialDatabase.from_env()
    try:
        with db.engine.begin() as conn:
            for table in TABLES:
                conn.execute(text(f"DROP TABLE IF EXISTS {table}, {table}_rejected"))
        load_parcels(db, rows)
        priciest_with_duckdb(db)
        valuable_with_polars(db, threshold=4_500_000)
        show(db)
    finally:
        db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="parcels to make")
    main(parser.parse_args().rows)
