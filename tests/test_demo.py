"""The demo end to end on the real server: load, indexed query, refused bad SRID."""

from __future__ import annotations

import io

import shapely
from rich.console import Console
from sqlalchemy import func, select, text

from geosession import SpatialDatabase
from geosession.demo import Base, Parcel, run_demo, synthetic_polygons


def test_synthetic_polygons_are_valid_and_inside_the_extent() -> None:
    polygons = synthetic_polygons(2_000, seed=7)
    assert shapely.is_valid(polygons).all()
    counts = shapely.get_num_coordinates(polygons)
    assert ((counts >= 7) & (counts <= 14)).all()


def test_demo_loads_queries_with_the_index_and_reports(db: SpatialDatabase) -> None:
    out = io.StringIO()
    try:
        report = run_demo(db, rows=12_000, console=Console(file=out, width=120))
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(Parcel)) == 12_000
            assert s.scalar(select(func.count()).where(~func.ST_IsValid(Parcel.geom))) == 0
        notes = {name: note for name, _, note in report.timings}
        assert "table analyzed" in notes["load parcels"]  # by the ingest, not again
        with db.session() as s:
            analyzed = "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'demo_parcels'"
            assert s.scalar(text(analyzed)) is not None
        assert "spatial index used: True" in notes["EXPLAIN"]
        assert "SRIDMismatch (3857 into 4326)" in notes["wrong-SRID insert"]
        assert notes["EXPLAIN, box without SRID"] == (
            "caught before it runs: st_intersects() compares public.demo_parcels.geom (SRID "
            "4326) with a constant geometry of SRID 0"
        )
        assert "rows/s" in out.getvalue() and "load parcels" in out.getvalue()
    finally:
        Base.metadata.drop_all(db.engine)
