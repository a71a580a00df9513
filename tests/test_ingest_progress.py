"""The ingest's progress bar: rows written, then the server's index builds and ANALYZE."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from rich.console import Console
from sqlalchemy import text

from geosession import IngestReport, SpatialDatabase
from geosession.ingest import ledger
from geosession.ingest.progress import Progress, counting
from tests.test_ingest import (
    TABLE,
    ingest_threads,
    rows,
    table,  # noqa: F401  (the fixture)
    table_state,
)

BIG = "progress_boxes"


def render(progress: Progress, console: Console) -> str:
    with progress:
        pass  # stopping renders the last frame
    return console.export_text()


def recording_console() -> Console:
    return Console(record=True, width=120, force_terminal=False, color_system=None)


def test_each_build_gets_a_line_that_ends_done() -> None:
    console = recording_console()
    progress = Progress(True, 10, IngestReport(ingest_id="t", target="boxes"), console)
    progress.show_builds([("index boxes_geom_idx", "building index: scanning table", 50, 200)])
    progress.show_builds([("index boxes_name_idx", "building index: scanning table", 10, 200)])
    shown = render(progress, console)
    assert "ingest boxes" in shown
    geom = next(line for line in shown.splitlines() if "boxes_geom_idx" in line)
    assert "200/200" in geom and "done" in geom  # no longer reported: it finished
    name = next(line for line in shown.splitlines() if "boxes_name_idx" in line)
    assert "10/200" in name and "scanning table" in name


def test_builds_done_completes_every_line() -> None:
    console = recording_console()
    progress = Progress(True, None, IngestReport(ingest_id="t", target="boxes"), console)
    progress.show_builds([("analyze boxes", "acquiring sample rows", 3, 30)])
    progress.builds_done()
    line = next(line for line in render(progress, console).splitlines() if "analyze" in line)
    assert "30/30" in line and "done" in line


def test_work_before_a_load_gets_a_line_counting_its_rows() -> None:
    """Reading a large CSV for its fields' types takes seconds before the bar starts."""
    console = Console(record=True, width=120, force_terminal=True, color_system=None)
    with counting(True, "reading the types of big.csv's fields", console) as advance:
        advance(50_000)
        advance(50_000)
    assert "reading the types of big.csv's fields 100,000 rows" in console.export_text()
    quiet = Console(record=True, width=120, force_terminal=True, color_system=None)
    with counting(False, "unseen", quiet) as advance:
        advance(50_000)
    assert not quiet.export_text()


def test_a_disabled_bar_ignores_builds() -> None:
    progress = Progress(False, None, IngestReport(ingest_id="t", target="boxes"))
    progress.show_builds([("index x", "building index", 1, 2)])
    progress.builds_done()
    assert not progress.enabled


@pytest.fixture
def big_table(admin: psycopg.Connection[Any]) -> Iterator[int]:
    """200,000 boxes without an index: long enough a build to be seen in progress."""
    admin.execute(f"DROP TABLE IF EXISTS {BIG}")
    admin.execute(
        f"CREATE TABLE {BIG} AS SELECT i AS id, ST_MakeEnvelope(i % 1000, i / 1000, "
        "i % 1000 + 0.5, i / 1000 + 0.5, 4326) AS geom FROM generate_series(1, 200000) i"
    )
    row = admin.execute(f"SELECT CAST('{BIG}' AS regclass)::oid").fetchone()
    assert row is not None
    yield int(row[0])
    admin.execute(f"DROP TABLE IF EXISTS {BIG}")


@pytest.mark.parametrize(
    ("statement", "kind"),
    [(f"CREATE INDEX ON {BIG} USING gist (geom)", "index"), (f"ANALYZE {BIG}", "analyze")],
)
def test_build_progress_reports_a_running_build(
    database_url: str, big_table: int, statement: str, kind: str
) -> None:
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with (
        psycopg.connect(conninfo, autocommit=True) as builder,
        psycopg.connect(conninfo, autocommit=True) as watcher,
    ):
        pid = builder.info.backend_pid
        build = threading.Thread(target=builder.execute, args=(statement,))
        seen: list[tuple[int, str, str, int, int]] = []
        build.start()
        while build.is_alive() and not seen:  # past its first phase: the work is known
            seen = [b for b in ledger.build_progress(watcher.cursor(), big_table) if b[4]]
        build.join()
    assert seen, "the build ended before the progress view showed its work"
    backend, what, _, done, total = seen[0]
    assert (backend, what) == (pid, kind) and 0 <= done <= total


@pytest.mark.usefixtures("table")
def test_ingest_into_an_empty_table_with_the_bar_restores_its_index(
    db: SpatialDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whether the build lasts long enough to get a line is the server's timing; that
    the bar and its watcher leave nothing behind is not."""
    report = db.ingest(TABLE, rows(3_000), progress=True)
    assert report.deferred_indexes == [f"{TABLE}_geom_idx"]
    assert table_state(db)[0] == 3_000
    assert "3000/" in capsys.readouterr().err
    assert not ingest_threads()  # the watcher is joined
    with db.session() as s:  # the index is back
        assert s.execute(
            text("SELECT count(*) FROM pg_indexes WHERE indexname = :n"),
            {"n": f"{TABLE}_geom_idx"},
        ).scalar_one()
