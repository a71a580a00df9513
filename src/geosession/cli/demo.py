"""``geosession demo``."""

from typing import Annotated

import typer


def demo(
    rows: Annotated[
        int, typer.Option(min=1_000, max=10_000_000, help="How many parcels to load.")
    ] = 100_000,
) -> None:
    """Run the demo: load synthetic parcels, query them through the GiST index, show pool state.

    Also shows two SRID mistakes caught: a search box without SRID, named by EXPLAIN
    before the query runs, and a geometry of another SRID refused on insert. Uses
    GEOSESSION_DATABASE_URL when set, else the embedded PostGIS (start it with `geosession
    local start`). Creates and replaces the table demo_parcels; nothing else is touched.
    """
    from geosession.demo import main as run

    run(rows=rows)
