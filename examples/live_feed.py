"""Store a live feed from asyncio as it arrives, while the same loop serves queries.

    .venv/bin/python examples/live_feed.py [--seconds 4]

Uses GEOSESSION_DATABASE_URL, else the embedded PostGIS (`geosession local start`), and
a table of its own, ``example_positions`` (dropped and made again at the start).

Vehicles report their position a few at a time with pauses between, as a message queue
or a websocket would deliver them. ``async_ingest`` with ``flush_interval=0.5`` commits
what has arrived about every half second instead of waiting for a chunk to fill, and the
event loop stays free: a second task counts the stored rows while the feed runs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import shapely
from geoalchemy2 import WKBElement
from sqlalchemy import func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from geosession import SpatialDatabase
from geosession.models import geometry_column

VEHICLES = 25


class Base(DeclarativeBase):
    pass


class Position(Base):
    __tablename__ = "example_positions"
    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle: Mapped[int]
    geom: Mapped[WKBElement] = geometry_column("POINT", 4326, nullable=False)


async def positions(seconds: float) -> AsyncIterator[dict[str, Any]]:
    """Every vehicle's position every 0.2 s, a little further along, for ``seconds``."""
    rng = np.random.default_rng(7)
    where = rng.uniform((-74.02, 40.70), (-73.93, 40.80), size=(VEHICLES, 2))
    row, ends = 0, time.monotonic() + seconds
    while time.monotonic() < ends:
        where += rng.normal(0, 0.0002, size=where.shape)
        for vehicle, point in enumerate(shapely.points(where)):
            row += 1
            yield {"id": row, "vehicle": vehicle, "geom": point}
        await asyncio.sleep(0.2)  # the feed is quiet until the next report


async def watch(db: SpatialDatabase, started: float, done: asyncio.Event) -> None:
    """Runs on the same loop as the ingest: rows show up as they are committed."""
    while not done.is_set():
        async with db.async_session() as s:
            stored = await s.scalar(select(func.count()).select_from(Position))
        print(f"{time.monotonic() - started:4.1f} s  {stored:5,} positions stored")
        await asyncio.sleep(0.5)


async def main(seconds: float) -> None:
    db = SpatialDatabase.from_env()
    try:
        Base.metadata.drop_all(db.engine)
        Base.metadata.create_all(db.engine)
        started, done = time.monotonic(), asyncio.Event()
        watcher = asyncio.create_task(watch(db, started, done))
        report = await db.async_ingest(Position, positions(seconds), srid=4326, flush_interval=0.5)
        done.set()
        await watcher
        async with db.async_session() as s:
            stored = await s.scalar(select(func.count()).select_from(Position))
        chunks = f"{report.inserted:,} positions in {report.chunks} chunks"
        print(f"feed ended: {chunks}, {stored:,} stored")
        assert stored == report.inserted == report.rows_read
    finally:
        await db.adispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="how long the feed runs")
    asyncio.run(main(parser.parse_args().seconds))
