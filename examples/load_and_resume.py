"""Load a feed exactly once: bad geometries set aside, a dropped feed resumed.

    .venv/bin/python examples/load_and_resume.py [--rows 20000]

Uses GEOSESSION_DATABASE_URL, else the embedded PostGIS (`geosession local start`), and
a table of its own, ``example_buildings`` (dropped and made again at the start).

1. The feed drops part way: the chunks committed before it stay, and the error carries
   the report of how far the ingest got.
2. The same ``ingest_id`` again: the rows already committed are skipped, the rest load.
   Five bad values mixed into the feed land in ``example_buildings_rejected`` with their
   row number and the reason; PostGIS would have stored three of them without a word.
3. Once more: nothing is loaded twice.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from geoalchemy2 import WKBElement
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from geosession import SpatialDatabase
from geosession.demo import synthetic_polygons
from geosession.models import geometry_column

INGEST_ID = "buildings-feed-2026-12"
UNCLOSED_RING = bytes.fromhex(  # EWKB, SRID 4326, a ring whose last point is not its first
    "0103000020E61000000100000004000000"
    "00000000000000000000000000000000"
    "000000000000F03F0000000000000000"
    "000000000000F03F000000000000F03F"
    "0000000000000000000000000000F03F"
)
BAD_VALUES: dict[int, Any] = {  # source row -> what the feed sends there
    101: "SRID=4326;POLYGON((0 0,1 1,1 0,0 1,0 0))",  # a bow-tie: PostGIS stores it
    202: UNCLOSED_RING,  # PostGIS stores this one too
    303: "SRID=3857;POLYGON((0 0,1 0,1 1,0 0))",  # another SRID
    404: None,  # NULL in a NOT NULL column
    505: "POLYGON((0 0,NaN 1,1 1,0 0))",  # stored as well, NaN and all
}


class Base(DeclarativeBase):
    pass


class Building(Base):
    __tablename__ = "example_buildings"
    id: Mapped[int] = mapped_column(primary_key=True)
    height: Mapped[float]
    geom: Mapped[WKBElement] = geometry_column("POLYGON", 4326, nullable=False)


class FeedDropped(Exception):
    """What a network feed raises when its upstream goes away."""


def buildings(count: int, *, drop_at: int | None = None) -> Iterator[dict[str, Any]]:
    """The feed: ``count`` footprints as dicts, with the bad values above mixed in."""
    for row, polygon in enumerate(synthetic_polygons(count, seed=1), start=1):
        if row == drop_at:
            raise FeedDropped(f"upstream closed the connection before row {row:,}")
        yield {"id": row, "height": 3.0 + row % 40, "geom": BAD_VALUES.get(row, polygon)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows in the feed")
    rows = parser.parse_args().rows
    console = Console()
    with SpatialDatabase.from_env() as db:
        reset(db)

        console.rule("1. the feed drops part way")
        try:
            db.ingest(
                Building, buildings(rows, drop_at=rows * 3 // 5), srid=4326, ingest_id=INGEST_ID
            )
        except FeedDropped as error:
            partial = error.ingest_report  # type: ignore[attr-defined]
            console.print(f"FeedDropped: {error}")
            committed = f"{partial.inserted:,} rows in {partial.chunks} chunk(s)"
            console.print(f"committed before it: {committed}")

        console.rule("2. the same ingest_id resumes")
        report = db.ingest(Building, buildings(rows), srid=4326, ingest_id=INGEST_ID)
        console.print(report)
        console.print(rejects_table(db))

        console.rule("3. and once more")
        again = db.ingest(Building, buildings(rows), srid=4326, ingest_id=INGEST_ID)
        with db.session() as s:
            stored = s.scalar(select(func.count()).select_from(Building))
            ids = s.scalar(select(func.count(func.distinct(Building.id))))
        console.print(
            f"loaded now: {again.inserted}, skipped as committed: {again.already_committed:,}; "
            f"stored: {stored:,} rows, {ids:,} distinct ids "
            f"(the feed's {rows:,} less {len(BAD_VALUES)} rejected)"
        )
        assert stored == ids == rows - len(BAD_VALUES)


def reset(db: SpatialDatabase) -> None:
    """A fresh table, its rejects table and no ledger entries of an earlier run."""
    Base.metadata.drop_all(db.engine)
    with db.transaction() as s:
        s.execute(text("DROP TABLE IF EXISTS example_buildings_rejected"))
        if s.scalar(text("SELECT to_regclass('geosession_ingest_ledger')")) is not None:
            s.execute(
                text("DELETE FROM geosession_ingest_ledger WHERE ingest_id = :id"),
                {"id": INGEST_ID},
            )
    Base.metadata.create_all(db.engine)


def rejects_table(db: SpatialDatabase) -> Table:
    table = Table("source row", "column", "kind", "reason", title="example_buildings_rejected")
    query = text(
        "SELECT source_row, column_name, kind, reason FROM example_buildings_rejected "
        "ORDER BY source_row"
    )
    with db.session() as s:
        for row, column, kind, reason in s.execute(query):
            table.add_row(f"{row:,}", column, kind, reason)
    return table


if __name__ == "__main__":
    main()
