"""The ingest's progress bar: rows written, then the server's index builds and ANALYZE."""

from __future__ import annotations

import gzip
import json
import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from rich.console import Console
from sqlalchemy import text

from geosession import IngestReport, SpatialDatabase
from geosession.ingest import ledger, pipeline
from geosession.ingest.progress import Progress, counting
from geosession.ingest.row_estimate import count_marks, row_mark, rows_counted
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
    counted_too = Console(record=True, width=120, force_terminal=True, color_system=None)
    with counting(True, "reading", counted_too, total=lambda stopped: 400_000) as advance:
        advance(100_000)
    shown = counted_too.export_text()  # a bar, a quarter full, and the time left
    assert f"reading 100,000 rows {'━' * 10} " in shown  # 10 of the bar's 40
    assert not ingest_threads()  # the count is joined
    quiet = Console(record=True, width=120, force_terminal=True, color_system=None)
    with counting(False, "unseen", quiet) as advance:
        advance(50_000)
    assert not quiet.export_text()


def test_files_that_state_no_row_count_are_counted_by_their_bytes(tmp_path: Path) -> None:
    """A CSV, GeoJSON Lines, JSON Lines, JSON or GeoJSON file states no row count (a
    GeoPackage does): its line breaks are counted, less a CSV's header (a last line
    without a break counts), what stands between two records of a JSON array (plus one),
    or a GeoJSON file's "Feature" strings, also where one spans two blocks; in a file
    larger than the sample, those of the sample scaled by the file's size."""
    csv_file = tmp_path / "stops.csv"
    csv_file.write_text("id,wkt\n1,POINT(1 2)\n2,POINT(3 4)")  # no break after the last
    lines = tmp_path / "stops.geojsonl"
    lines.write_text('{"type": "Feature"}\n' * 3)
    records = tmp_path / "stops.json"
    records.write_text('{"id": 1}\n{"id": 2}\n')
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"id": 1}, {"id": 2}], indent=1))
    feature = {"type": "Feature", "properties": {"pad": "x" * 1_000}, "geometry": None}
    collection = tmp_path / "stops.geojson"  # 3,000 features over some 3 MB: blocks of 1 MB
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": [feature] * 3_000}))
    answer = tmp_path / "answer.json"  # records in a member, after an object of an "id"
    answer.write_text(json.dumps({"meta": {"id": 0}, "results": [{"id": 1}, {"id": 2}] * 2}))
    files = (csv_file, lines, records, array, collection, answer)
    assert [row_mark(p) for p in files] == [
        (b"\n", 1),
        (b"\n", 0),
        (b"\n", 0),
        (b'},\n {\n  "id"', -1),  # between two records, as the file spaces it
        (b'"Feature"', 0),
        (b'}, {"id"', -1),
    ]
    assert row_mark(tmp_path / "stops.gpkg") is None
    never: Callable[[], bool] = lambda: False  # noqa: E731
    assert [rows_counted(p, None)(never) for p in files] == [2, 3, 2, 2, 3_000, 4]
    nested = tmp_path / "nested.json"  # an object as a record's member opens the same way
    nested.write_bytes(orjson.dumps([{"id": n, "owner": {"id": 7}} for n in range(5)]))
    assert rows_counted(nested, None)(never) == 5
    escaped = tmp_path / "escaped.json"  # Python's json writes such keys as \u escapes
    escaped.write_text(json.dumps([{"name\u00e9": n} for n in range(3)]))
    assert rows_counted(escaped, None)(never) == 3
    one = tmp_path / "one.json"  # one record: no array to count
    one.write_text(json.dumps({"id": 1}))
    assert row_mark(one) is None
    assert rows_counted([{"id": 1}], None)(never) is None  # no file
    fifo = tmp_path / "feed.csv"
    os.mkfifo(fifo)  # opening it to count would wait for a writer, then take its data
    assert rows_counted(fifo, None)(never) is None
    assert count_marks(lines, b"\n", 0, lambda: True) is None  # the bar no longer wants it
    assert count_marks(tmp_path / "gone.csv", b"\n", 1, never) is None
    spanning = tmp_path / "spanning.geojson"  # read in blocks of 1 MiB
    spanning.write_bytes(b" " * ((1 << 20) - 4) + b'"Feature"' + b" " * 10 + b'"Feature"')
    assert count_marks(spanning, b'"Feature"', 0, never) == 2
    assert count_marks(lines, b"\n", 0, never, sample=20) == 3  # 1 in 20 of 60 bytes
    long_csv = tmp_path / "long.csv"  # a header, then rows of 10 bytes: 1,000 rows
    long_csv.write_text("id,wkt_xx\n" + "0123456,x\n" * 1_000)
    assert count_marks(long_csv, b"\n", 1, never, sample=1_000) == 1_000
    packed = tmp_path / "points.csv.gz"  # read as it decompresses: scaled by gzip's bytes
    randoms = random.Random(7)
    packed.write_bytes(gzip.compress(("id,wkt\n" + "".join(
        f"{n:06d},POINT({randoms.random():.6f} {randoms.random():.6f})\n" for n in range(300_000)
    )).encode()))  # fmt: skip
    assert row_mark(packed) == (b"\n", 1) and rows_counted(packed, None)(never) == 300_000
    estimate = count_marks(packed, b"\n", 1, never, sample=2_000_000)  # a fifth of it
    assert estimate is not None and abs(estimate - 300_000) < 15_000
    cut = tmp_path / "cut.json.gz"  # damaged: the load says so, the count gives up
    cut.write_bytes(gzip.compress(b'{"id": 1}\n' * 10_000)[:100])
    assert rows_counted(cut, None)(never) is None
    header_only = tmp_path / "empty.csv"
    header_only.write_text("id,wkt\n")
    assert rows_counted(header_only, None)(never) is None  # nothing to show a total of


def test_a_bar_gets_the_total_counted_on_a_thread_and_is_full_once_completed() -> None:
    console = recording_console()
    progress = Progress(True, None, IngestReport(ingest_id="t", target="boxes"), console)
    counted = threading.Event()

    def count(stopped: Callable[[], bool]) -> int:
        counted.set()
        return 1_000

    with progress:
        progress.total_from(count)
        assert counted.wait(5)
        progress.advance(250)
    assert "250/1000" in console.export_text()
    assert not ingest_threads()  # the bar's exit joins its count
    estimated = Progress(True, None, IngestReport(ingest_id="t", target="boxes"), console)
    with estimated:
        estimated.total_from(lambda stopped: 1_200)  # a CSV value with a line break in it
        estimated.advance(1_100)
        estimated.completed()
    assert "1100/1100" in console.export_text()
    stated = Progress(True, 10, IngestReport(ingest_id="t", target="boxes"), console)
    stated.total_from(lambda stopped: pytest.fail("a stated total is not counted"))
    resumed = IngestReport(ingest_id="t", target="boxes", already_committed=400)
    with Progress(True, None, resumed, console) as again:  # an earlier run's rows are skipped
        again.total_from(lambda stopped: 1_000)
    assert "0/600" in console.export_text()


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


def test_a_csv_loads_with_a_bar_of_its_rows(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path, capsys: Any
) -> None:
    """The bar of a CSV (no row count in it) had no total: "3000/?" and no time left."""
    source = tmp_path / "stops.csv"
    source.write_text("id,wkt\n" + "".join(f"{n},POINT({n} 1)\n" for n in range(3_000)))
    admin.execute("DROP TABLE IF EXISTS progress_stops")
    try:
        report = db.ingest("progress_stops", source, create=True, srid=4326, progress=True)
        assert report.inserted == 3_000
        assert "3000/3000" in capsys.readouterr().err
        assert not ingest_threads()
    finally:
        admin.execute("DROP TABLE IF EXISTS progress_stops")


def test_a_json_array_read_for_its_types_gives_the_bar_its_rows(
    db: SpatialDatabase,
    admin: psycopg.Connection[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A JSON array holds no count its bytes tell cheaply; create=True reads every record
    for the types, which counts them."""
    totals: list[int | None] = []

    class Recording(Progress):
        def __init__(self, enabled: bool, total: int | None, report: IngestReport) -> None:
            totals.append(total)
            super().__init__(enabled, total, report)

    monkeypatch.setattr(pipeline, "Progress", Recording)
    source = tmp_path / "stops.json"
    source.write_text(json.dumps([{"id": n, "lat": 1.0, "lon": 2.0} for n in range(12_000)]))
    admin.execute("DROP TABLE IF EXISTS progress_array")
    try:
        assert db.ingest("progress_array", source, create=True, progress=True).inserted == 12_000
        assert totals == [12_000]
    finally:
        admin.execute("DROP TABLE IF EXISTS progress_array")


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
