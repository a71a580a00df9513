"""Contention: run_transaction against a hand-written retry loop and against no retries.

Workers (threads, 2 to 32) run SERIALIZABLE read-modify-write transactions for a fixed
time: each picks a random 14 x 14 box over a 4 x 4 grid of 10 x 10 cells, reads the
counters of the cells it overlaps (``&&``, GiST index) and writes each back plus one.
More workers, more overlapping boxes, more serialization failures. Three ways to run it,
in turns, on the same server in one run (machines are noisy: compare the ratios):

- ``run_transaction``: ``db.run_transaction(fn, isolation="SERIALIZABLE")`` with its
  defaults (5 attempts, full-jitter backoff from 20 ms up to 1 s);
- ``hand loop``: what the guide suggests, written by hand on a plain SQLAlchemy engine
  (the guide's settings: pre-ping on): catch ``OperationalError`` whose cause is a
  serialization failure or deadlock, roll back, sleep 20 ms x 2^attempt (the same
  schedule as run_transaction's bounds, without jitter), 5 attempts;
- ``no retries``: ``db.transaction(isolation="SERIALIZABLE")`` once; a conflict is a
  failed transaction.

For each it prints committed transactions per second, attempts per commit, the share of
transactions that failed for good, and the throughput relative to the hand loop. After
every run the counters are checked against the serial result of the committed boxes.

Run (about 50 s with the defaults)::

    .venv/bin/python benchmarks/contention.py
    .venv/bin/python benchmarks/contention.py --seconds 5 --workers 2,8,32

The server is GEOSESSION_DATABASE_URL, else the running embedded cluster (``geosession
local url``); the role must be able to create databases. Everything happens in a database
of its own (``geosession_bench_contention``), dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from geosession import DeadlockDetected, SerializationConflict, SpatialDatabase
from geosession.local import running_url

DATABASE = "geosession_bench_contention"
GRID, CELL, BOX = 16, 10.0, 14.0
ATTEMPTS, BASE, CAP = 5, 0.02, 1.0
Box = tuple[float, float, float, float]

SELECT_HITS = text(
    "SELECT id, n FROM cells WHERE geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 3857) ORDER BY id"
)
UPDATE_CELL = text("UPDATE cells SET n = :n WHERE id = :id")


def increment(session: Session, box: Box) -> None:
    hits = session.execute(SELECT_HITS, dict(zip(("x0", "y0", "x1", "y1"), box, strict=True)))
    for cell_id, n in hits.all():
        session.execute(UPDATE_CELL, {"id": cell_id, "n": n + 1})


def random_box(rng: random.Random) -> Box:
    """Corners on a 1/64 grid: PostGIS compares boxes in float4 (rounded outwards), so a
    corner within ~1e-5 of a cell's edge would overlap it there and not in float8."""
    x, y = (round(rng.uniform(0, GRID * CELL - BOX) * 64) / 64 for _ in range(2))
    return (x, y, x + BOX, y + BOX)


def serial_result(boxes: list[Box]) -> dict[int, int]:
    counts = {}
    for i in range(GRID):
        for j in range(GRID):
            x0, y0, x1, y1 = i * CELL, j * CELL, (i + 1) * CELL, (j + 1) * CELL
            counts[i * GRID + j] = sum(
                1 for a, b, c, d in boxes if a <= x1 and c >= x0 and b <= y1 and d >= y0
            )
    return counts


@dataclass
class Tally:
    commits: int = 0
    attempts: int = 0
    failures: int = 0
    committed: list[Box] | None = None


# -- the three ways to run one transaction ----------------------------------------------
# Each takes the work (a function of a session) and returns True once committed, False
# when it gave up on a conflict; the work counts its own attempts.


def with_run_transaction(
    db: SpatialDatabase, options: dict[str, Any]
) -> Callable[[Callable[[Session], None]], bool]:
    def run(work: Callable[[Session], None]) -> bool:
        try:
            db.run_transaction(work, isolation="SERIALIZABLE", **options)
        except (SerializationConflict, DeadlockDetected):
            return False
        return True

    return run


def with_hand_loop(factory: sessionmaker[Session]) -> Callable[[Callable[[Session], None]], bool]:
    conflicts = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)

    def run(work: Callable[[Session], None]) -> bool:
        for attempt in range(ATTEMPTS):
            with factory() as session:
                try:
                    session.connection(execution_options={"isolation_level": "SERIALIZABLE"})
                    work(session)
                    session.commit()
                    return True
                except sa_exc.OperationalError as error:
                    session.rollback()
                    if not isinstance(error.orig, conflicts):
                        raise
            if attempt < ATTEMPTS - 1:
                time.sleep(min(CAP, BASE * 2**attempt))
        return False

    return run


def without_retries(db: SpatialDatabase) -> Callable[[Callable[[Session], None]], bool]:
    def run(work: Callable[[Session], None]) -> bool:
        try:
            with db.transaction(isolation="SERIALIZABLE") as session:
                work(session)
        except (SerializationConflict, DeadlockDetected):
            return False
        return True

    return run


def measure(
    runner: Callable[[Callable[[Session], None]], bool], workers: int, seconds: float, seed: int
) -> Tally:
    tally = Tally(committed=[])
    lock = threading.Lock()
    start = threading.Barrier(workers + 1)
    deadline = [0.0]

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        attempts = [0]
        start.wait()
        while time.monotonic() < deadline[0]:
            box = random_box(rng)

            def work(session: Session, box: Box = box) -> None:
                attempts[0] += 1
                increment(session, box)

            committed = runner(work)
            with lock:
                tally.commits += committed
                tally.failures += not committed
                if committed:
                    assert tally.committed is not None
                    tally.committed.append(box)
        with lock:
            tally.attempts += attempts[0]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return tally


# -- set-up, one run, the report ---------------------------------------------------------


def server_url() -> str:
    url = os.environ.get("GEOSESSION_DATABASE_URL") or running_url()
    if url is None:
        raise SystemExit("No server: set GEOSESSION_DATABASE_URL or run `geosession local start`")
    return url


def libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.set(database=database or parsed.database).render_as_string(False)


def create_database(url: str) -> str:
    with psycopg.connect(libpq(url), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    bench_url = make_url(url).set(database=DATABASE).render_as_string(False)
    with psycopg.connect(libpq(bench_url), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION postgis")
        conn.execute(
            "CREATE TABLE cells (id int PRIMARY KEY, geom geometry(Polygon, 3857) NOT NULL, "
            "n int NOT NULL DEFAULT 0)"
        )
        conn.execute("CREATE INDEX ON cells USING gist (geom)")
        conn.execute(
            "INSERT INTO cells (id, geom) SELECT i * %s + j, "
            "ST_MakeEnvelope(i * %s, j * %s, (i + 1) * %s, (j + 1) * %s, 3857) "
            "FROM generate_series(0, %s) i, generate_series(0, %s) j",
            (GRID, CELL, CELL, CELL, CELL, GRID - 1, GRID - 1),
        )
    return bench_url


def reset(bench_url: str) -> None:
    with psycopg.connect(libpq(bench_url), autocommit=True) as conn:
        conn.execute("UPDATE cells SET n = 0")
        conn.execute("VACUUM ANALYZE cells")


def check(bench_url: str, tally: Tally) -> str:
    with psycopg.connect(libpq(bench_url), autocommit=True) as conn:
        stored = dict(conn.execute("SELECT id, n FROM cells").fetchall())
    expected = serial_result(tally.committed or [])
    if stored == expected:
        return "exact"
    extra = sum(stored.values()) - sum(expected.values())
    cells = sum(stored[key] != expected[key] for key in expected)
    return f"WRONG ({extra:+d} increments over {cells} cells)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per method and worker count")
    parser.add_argument("--workers", default="2,4,8,16,32", help="comma-separated counts")
    parser.add_argument(
        "--backoff", help="FIRST,LARGEST seconds for run_transaction (default: its own)"
    )
    args = parser.parse_args()
    options: dict[str, Any] = {}
    if args.backoff:
        first, largest = (float(x) for x in args.backoff.split(","))
        options["backoff"] = (first, largest)
    counts = [int(n) for n in args.workers.split(",")]
    url = server_url()
    bench_url = create_database(url)
    most = max(counts)
    db = SpatialDatabase(bench_url, pool_size=most, max_overflow=0, long_transaction_warning="0")
    plain = create_engine(  # the guide's engine: pre-ping on, like geosession's
        make_url(bench_url).set(drivername="postgresql+psycopg"),
        pool_size=most,
        max_overflow=0,
        pool_pre_ping=True,
    )
    runners = {
        "run_transaction": with_run_transaction(db, options),
        "hand loop": with_hand_loop(sessionmaker(plain)),
        "no retries": without_retries(db),
    }
    print(f"{args.seconds:g} s per method and worker count; server {make_url(url).host}")
    print()
    print(
        "| workers | method | commits/s | attempts per commit | failed | vs hand loop | counters |"
    )
    print("|---:|---|---:|---:|---:|---:|---|")
    try:
        for seed, workers in enumerate(counts):
            results = {}
            turn = list(runners.items())
            turn = turn[seed % 3 :] + turn[: seed % 3]  # a different method goes first each time
            for name, runner in turn:
                reset(bench_url)
                tally = measure(runner, workers, args.seconds, seed)
                results[name] = (tally, check(bench_url, tally))
            hand = results["hand loop"][0].commits or 1
            for name in runners:
                tally, counters = results[name]
                total = tally.commits + tally.failures
                print(
                    f"| {workers} | {name} | {tally.commits / args.seconds:.0f} | "
                    f"{tally.attempts / max(tally.commits, 1):.2f} | "
                    f"{100 * tally.failures / max(total, 1):.1f} % | "
                    f"{tally.commits / hand:.2f} | {counters} |"
                )
    finally:
        db.dispose()
        plain.dispose()
        with psycopg.connect(libpq(url), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
