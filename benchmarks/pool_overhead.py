"""Cost of geosession's pool event listeners: checkouts per second with and without them.

Each variant is a geosession engine (``build_engine``) on the same server:

- ``bare``: no metrics listeners;
- ``metrics``: pool event listeners and the timed ``raw_connection`` (what every
  SpatialDatabase installs);
- ``metrics + leak tracking``: the same with ``leak_threshold`` set (a stack walk per
  checkout and the watchdog thread).

A checkout here is ``engine.raw_connection()`` then ``.close()`` (pool only), or
``with engine.connect()`` (the Connection path sessions use). Pre-ping is off so that the
pool's own Python work is measured, not a server round trip; the last lines repeat the
Connection path with pre-ping on, as geosession runs by default. Variants run in turns,
``--rounds`` times, and the best round of each is reported. The last table is what the
session-state guard's reading of a statement costs it, by kind of statement.

    .venv/bin/python benchmarks/pool_overhead.py [--checkouts 20000] [--rounds 5]

Uses GEOSESSION_DATABASE_URL, else the embedded PostGIS (``geosession local start``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from types import SimpleNamespace

from sqlalchemy import Engine

from geosession import session_state
from geosession.database import SpatialDatabase
from geosession.engine import build_engine
from geosession.observe.metrics import DatabaseMetrics
from geosession.settings import DatabaseSettings

Variant = tuple[str, Engine]


def _engine(settings: DatabaseSettings, *, metrics: bool, leak_threshold: float | None) -> Engine:
    engine = build_engine(settings)
    if metrics:
        DatabaseMetrics.attach(
            engine,
            max_overflow=settings.max_overflow,
            leak_threshold=leak_threshold,
            slow_query_threshold=None,
        )
    return engine


def _raw_checkouts(engine: Engine, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        engine.raw_connection().close()
    return count / (time.perf_counter() - started)


def _connection_checkouts(engine: Engine, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        with engine.connect():
            pass
    return count / (time.perf_counter() - started)


def _best(
    variants: list[Variant], loop: Callable[[Engine, int], float], count: int, rounds: int
) -> dict[str, float]:
    best = dict.fromkeys((name for name, _ in variants), 0.0)
    for _, engine in variants:
        loop(engine, min(count, 1000))  # warm up: open the connection, fill caches
    for _ in range(rounds):
        for name, engine in variants:
            best[name] = max(best[name], loop(engine, count))
    return best


def _report(title: str, rates: dict[str, float]) -> None:
    base = rates["bare"]
    print(f"\n{title}")
    print(f"{'variant':<28}{'checkouts/s':>14}{'µs/checkout':>14}{'overhead µs':>14}{'ratio':>8}")
    for name, rate in rates.items():
        overhead = 1e6 / rate - 1e6 / base
        print(f"{name:<28}{rate:>14,.0f}{1e6 / rate:>14.2f}{overhead:>14.2f}{base / rate:>8.2f}")


def _variants(settings: DatabaseSettings) -> list[Variant]:
    return [
        ("bare", _engine(settings, metrics=False, leak_threshold=None)),
        ("metrics", _engine(settings, metrics=True, leak_threshold=None)),
        ("metrics + leak tracking", _engine(settings, metrics=True, leak_threshold=60.0)),
    ]


_STATEMENTS = {
    "an ORM select by key": "SELECT parcels.id, parcels.name, ST_AsEWKB(parcels.geom) AS geom "
    "FROM parcels WHERE parcels.id = %(pk_1)s::INTEGER",
    "an ORM insert": "INSERT INTO parcels (name, geom) VALUES (%(name)s, "
    "ST_GeomFromEWKB(%(geom)s)) RETURNING parcels.id",
    "a 1,000-row insertmanyvalues": "INSERT INTO parcels (name, geom) VALUES "  # noqa: S608
    + ", ".join(f"(%(name__{i})s, ST_GeomFromEWKB(%(geom__{i})s))" for i in range(1000)),
}


def _statement_reading(rounds: int) -> None:
    """What the session-state guard's before_cursor_execute listener costs a statement
    (it reads each for session-level SETs, advisory locks and things made to last)."""

    connection = SimpleNamespace(info={})
    print("\nsession-state guard, per statement (best of rounds)")
    for name, statement in _STATEMENTS.items():
        count = 200 if len(statement) > 1000 else 20_000
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(count):
                session_state._seen(connection, None, statement, None, None, False)
            best = min(best, (time.perf_counter() - started) / count)
        print(f"{name:<32}{best * 1e6:>10.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkouts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with SpatialDatabase.from_env() as db:
        url = db.settings.url().render_as_string(hide_password=False)
    settings = DatabaseSettings(database_url=url, pool_pre_ping=False)
    variants = _variants(settings)
    print(f"{args.checkouts:,} checkouts per round, best of {args.rounds} rounds")
    _report(
        "pool only (raw_connection + close), pre-ping off",
        _best(variants, _raw_checkouts, args.checkouts, args.rounds),
    )
    _report(
        "engine.connect() (the session path), pre-ping off",
        _best(variants, _connection_checkouts, args.checkouts, args.rounds),
    )
    pinged = _variants(DatabaseSettings(database_url=url, pool_pre_ping=True))
    _report(
        "engine.connect() with pre-ping on (geosession's default)",
        _best(pinged, _connection_checkouts, args.checkouts // 4, args.rounds),
    )
    for _, engine in variants + pinged:
        engine.dispose()
    _statement_reading(args.rounds)


if __name__ == "__main__":
    main()
