"""The examples run as users run them, against the test database, and say what they show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, database_url: str, *arguments: str) -> str:
    environment = {**os.environ, "GEOSESSION_DATABASE_URL": database_url, "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_load_and_resume_quarantines_resumes_and_loads_nothing_twice(database_url: str) -> None:
    out = run_example("load_and_resume.py", database_url, "--rows", "12000")
    assert "FeedDropped: upstream closed the connection before row 7,200" in out
    committed = int(out.split("committed before it: ")[1].split()[0].replace(",", ""))
    assert 0 < committed < 7_200  # the batches read before the drop, less the rejects
    for kind in ("invalid", "unclosed_ring", "srid", "null", "non_finite"):
        assert f" {kind} " in out
    assert "loaded now: 0, skipped as committed: 12,000" in out
    assert "stored: 11,995 rows, 11,995 distinct ids" in out


def test_live_feed_commits_while_the_feed_runs(database_url: str) -> None:
    out = run_example("live_feed.py", database_url, "--seconds", "2.5")
    lines = [line for line in out.splitlines() if line.endswith("positions stored")]
    counts = [int(line.split()[2].replace(",", "")) for line in lines]
    assert any(0 < count < counts[-1] for count in counts), out  # stored before the feed ended
    assert "feed ended:" in out


def test_parcels_api_serves_requests_and_returns_every_connection(
    database_url: str, admin: Any
) -> None:
    out = run_example("parcels_api.py", database_url)
    assert "GET /parcels/42: parcel 42" in out
    assert "GET /parcels/999999: 404" in out
    near = admin.execute(
        "SELECT count(*) FROM example_parcels p, example_parcels c "
        "WHERE c.id = 42 AND ST_DWithin(p.geom, c.geom, 0.01)"
    ).fetchone()[0]
    assert f"GET /parcels/42/near (async): {near} parcels" in out  # db.async_get_session
    assert "POST a bow-tie: 422 need a valid Polygon, got Polygon Self-intersection" in out
    assert "POST a square: 201" in out
    assert "POST it again: 409 conflicts with an existing record" in out
    assert "POST /parcels/bulk: 2 inserted, rejected [(2, 'invalid geometry: Self-inter" in out
    assert "POST it again: 0 inserted, 3 already loaded" in out  # the same Idempotency-Key
    assert "GET /parcels.geojson: 5,003 features" in out
    inside = admin.execute(
        "SELECT count(*) FROM example_parcels "
        "WHERE geom && ST_MakeEnvelope(-74, 40.7, -73.99, 40.71, 4326)"
    ).fetchone()[0]
    assert f"GET /parcels.geojson?bbox=...: {inside} features" in out
    assert "GET /health: {'checked_out': 0" in out
    admin.execute("DROP TABLE example_parcels")


def test_duckdb_and_polars_results_load_back_with_their_srid(database_url: str) -> None:
    out = run_example("duckdb_and_polars.py", database_url, "--rows", "5000")
    assert "example_parcels: 5,000 parcels loaded" in out
    assert "example_priciest: 15 parcels ranked by DuckDB" in out
    assert "example_priciest.geom: geometry(POLYGON, 4326)" in out
    assert "example_valuable.geom: geometry(POLYGON, 4326)" in out
    assert out.count("  priciest ") == 5
    valuable = int(out.split("example_valuable: ")[1].split()[0].replace(",", ""))
    assert 0 < valuable < 5_000


def test_process_pool_loads_each_tile_once_in_forked_workers(database_url: str) -> None:
    out = run_example("process_pool.py", database_url, "--tiles", "3", "--rows", "400")
    parent = out.split("server session ")[1].split()[0].rstrip(",")
    assert out.count("first run: ") == 3 and out.count("loaded 400, skipped as committed 0") == 3
    assert out.count("run again: ") == 3 and out.count("loaded 0, skipped as committed 400") == 3
    workers = {line.rsplit("server session ", 1)[1] for line in out.splitlines() if "run" in line}
    assert f"{parent})" not in workers  # the workers' own connections
    assert "stored: 1,200 rows, 1,200 distinct ids" in out
    assert f"parent: still server session {parent};" in out


def test_the_readmes_quickstart_runs_as_written(
    database_url: str, admin: Any, tmp_path: Path
) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("```python\n", 1)[1].split("```")[0]
    script = tmp_path / "quickstart.py"
    script.write_text(quickstart)
    admin.execute("DROP TABLE IF EXISTS parcels")
    environment = {**os.environ, "GEOSESSION_DATABASE_URL": database_url}
    try:
        for _ in range(2):  # again on the table it made: its ids come from the sequence
            done = subprocess.run(
                [sys.executable, str(script)],
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            area, uses_index, pool = done.stdout.splitlines()
            assert area.startswith("0.5 POINT (0.666") and uses_index == "True"
            assert "0 checked out" in pool
    finally:
        admin.execute("DROP TABLE IF EXISTS parcels")
