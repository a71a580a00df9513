"""The demo: a parcels table, 100,000 synthetic polygons, an indexed bounding-box query.

Run with ``geosession demo``. Everything happens on the configured database (the
embedded PostGIS when nothing is configured) in a table of its own, ``demo_parcels``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from geoalchemy2 import WKBElement
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from geosession.database import SpatialDatabase
from geosession.errors import SRIDMismatch
from geosession.ingest import IngestReport
from geosession.models import SpatialMixin, geometry_column

EXTENT = (-74.05, 40.60, -73.85, 40.85)
"""Lower Manhattan and Brooklyn, in lon/lat (EPSG:4326)."""
LAND_USES = ("residential", "commercial", "industrial", "park", "civic")


class Base(DeclarativeBase):
    pass


class Parcel(SpatialMixin, Base):
    """A land parcel: a polygon with a name, a land use and an assessed value."""

    __tablename__ = "demo_parcels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    land_use: Mapped[str]
    value: Mapped[float]
    geom: Mapped[WKBElement] = geometry_column("POLYGON", 4326, nullable=False)


def synthetic_polygons(
    count: int, *, seed: int = 0, extent: tuple[float, float, float, float] = EXTENT
) -> Any:
    """``count`` random star-shaped polygons of 6 to 13 points (always valid), vectorized."""
    rng = np.random.default_rng(seed)
    vertices = int(rng.integers(6, 14))
    minx, miny, maxx, maxy = extent
    centers = rng.uniform((minx, miny), (maxx, maxy), size=(count, 2))
    # jittered even spacing keeps every gap under pi, so each ring is simple (valid)
    slots = np.arange(vertices) + rng.uniform(0, 0.8, size=(count, vertices))
    angles = slots * (2 * np.pi / vertices)
    radii = rng.uniform(0.00005, 0.0004, size=(count, 1)) * rng.uniform(0.5, 1.0, (count, vertices))
    ring = centers[:, None, :] + radii[..., None] * np.stack([np.cos(angles), np.sin(angles)], -1)
    closed = np.concatenate([ring, ring[:, :1, :]], axis=1)
    return shapely.polygons(closed)


def synthetic_rows(count: int, *, seed: int = 0, batch: int = 10_000) -> Iterator[tuple[Any, ...]]:
    """(id, name, land_use, value, polygon) rows for ``count`` parcels, made a batch at a time."""
    rng = np.random.default_rng(seed + 1)
    for start in range(0, count, batch):
        size = min(batch, count - start)
        polygons = synthetic_polygons(size, seed=seed + start)
        uses = rng.integers(0, len(LAND_USES), size)
        values = rng.uniform(50_000, 5_000_000, size).round(2)
        for i in range(size):
            number = start + i + 1
            yield number, f"parcel-{number}", LAND_USES[uses[i]], float(values[i]), polygons[i]


@dataclass
class DemoReport:
    """What the demo measured, step by step."""

    timings: list[tuple[str, float, str]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        note: list[str] = []
        started = time.perf_counter()
        yield note
        self.timings.append((name, time.perf_counter() - started, " ".join(note)))


def run_demo(
    db: SpatialDatabase, *, rows: int = 100_000, console: Console | None = None
) -> DemoReport:
    """Creates, loads and queries ``demo_parcels``; prints a summary; returns the timings."""
    console = console or Console()
    report = DemoReport()
    with report.step("create table") as note:
        Base.metadata.drop_all(db.engine)
        Base.metadata.create_all(db.engine)
        note.append("demo_parcels with a GiST index on geom")
    with report.step("load parcels") as note:
        loaded = _load(db, rows, console)
        chunks = f"{loaded.chunks} chunk{'' if loaded.chunks == 1 else 's'}"
        note.append(f"{loaded.inserted:,} polygons by db.ingest in {chunks}")
        if loaded.deferred_indexes:  # the table was empty: index built after, then ANALYZE
            note.append("(GiST index built after the load, table analyzed)")
    _query(db, report)
    _safety(db, report)
    _print(console, db, report, loaded)
    return report


def _load(db: SpatialDatabase, rows: int, console: Console) -> IngestReport:
    report = db.ingest(Parcel, synthetic_rows(rows), srid=4326, progress=console.is_terminal)
    console.print(report)
    return report


def _bbox() -> Any:
    minx, miny, maxx, maxy = EXTENT
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    return func.ST_MakeEnvelope(cx - 0.01, cy - 0.01, cx + 0.01, cy + 0.01, 4326)


def _query(db: SpatialDatabase, report: DemoReport) -> None:
    on_the_ellipsoid = func.ST_Area(func.geography(Parcel.geom))  # m², not square degrees
    query = select(func.count(), func.sum(on_the_ellipsoid)).where(Parcel.geom.intersects(_bbox()))
    with report.step("bounding-box query") as note, db.session() as s:
        found, area = s.execute(query).one()
        note.append(f"{found:,} parcels, total area {(area or 0) / 10_000:,.1f} ha")
    with report.step("EXPLAIN") as note:
        plan = db.explain(select(Parcel.id).where(Parcel.geom.intersects(_bbox())))
        used = ", ".join(plan.spatial_indexes) or "none"
        note.append(f"spatial index used: {plan.uses_spatial_index} ({used})")


def _safety(db: SpatialDatabase, report: DemoReport) -> None:
    minx, miny, maxx, maxy = EXTENT
    no_srid = func.ST_MakeEnvelope(minx, miny, maxx, maxy)  # SRID 0: PostGIS refuses it later
    with report.step("EXPLAIN, box without SRID") as note:
        plan = db.explain(select(Parcel.id).where(func.ST_Intersects(Parcel.geom, no_srid)))
        mixed = next((line for line in plan.advice if "SRID 0" in line), "no advice")
        note.append(f"caught before it runs: {mixed.split(': running', 1)[0]}")
    wrong = Parcel(
        id=0, name="wrong", land_use="park", value=0.0, geom="SRID=3857;POLYGON((0 0,1 0,1 1,0 0))"
    )
    with report.step("wrong-SRID insert") as note:
        try:
            with db.transaction() as s:
                s.add(wrong)
        except SRIDMismatch as error:
            note.append(f"refused: SRIDMismatch ({error.geometry_srid} into {error.column_srid})")


def _print(console: Console, db: SpatialDatabase, report: DemoReport, loaded: IngestReport) -> None:
    table = Table(title=f"geosession demo on {db.settings.safe_url()}", title_justify="left")
    table.add_column("step")
    table.add_column("time", justify="right")
    table.add_column("result")
    for name, seconds, note in report.timings:
        table.add_row(name, f"{seconds * 1000:,.0f} ms", note)
    console.print(table)
    rate = loaded.rows_per_second  # the ingest report's own, as printed above
    console.print(f"Loaded {rate:,.0f} rows/s. Pool now: {db.pool_stats()}")


def main(rows: int = 100_000) -> None:
    """Entry point of ``geosession demo``: the configured database or the embedded one."""
    with SpatialDatabase.from_env(driver="psycopg") as db:
        run_demo(db, rows=rows)
