"""Prometheus exporter: pool gauges, checkout wait histogram, slow statements, ingest totals.

Needs the optional extra: ``pip install 'geosession[prometheus]'``. ::

    from geosession.observe.prometheus import register
    register(db)                      # on prometheus_client's default registry
    prometheus_client.start_http_server(9100)

Values are read from ``db.metrics`` when Prometheus scrapes (a custom collector, one per
registry for every database registered on it), so nothing is updated on the hot path
beyond geosession's own counters. Every sample has the labels ``database`` (default:
host:port/dbname, never the password) and ``pool`` ("sync", "async" once
``db.async_engine`` exists, "ingest", "replica0" ...).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from geosession.errors import ConfigurationError, endpoint_of
from geosession.observe.metrics import WAIT_BUCKETS, DatabaseMetrics, PoolMonitor

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ConfigurationError(
        "The Prometheus exporter needs prometheus-client: pip install 'geosession[prometheus]'"
    ) from error

if TYPE_CHECKING:
    from geosession.database import SpatialDatabase

_POOL_GAUGES = (
    ("size", "Configured pool_size."),
    ("checked_out", "Connections lent to sessions now."),
    ("checked_in", "Idle connections in the pool now."),
    ("overflow", "Connections open beyond pool_size (0 until the pool fills)."),
    ("longest_hold_seconds", "Seconds the longest current holder has had its connection."),
    ("long_holders", "Connections held longer than leak_threshold."),
)
_STATS_KEYS = {"longest_hold_seconds": "longest_hold_s"}
_POOL_COUNTERS = (
    ("checkouts", "Connections lent."),
    ("connects", "Server connections opened."),
    ("invalidations", "Connections discarded as broken or soft-invalidated."),
    ("waits", "Checkouts that had to wait for a connection to be returned."),
    ("timeouts", "Checkouts that gave up after pool_timeout."),
)
_INGEST_COUNTERS = (
    ("rows", "Rows written by bulk loads."),
    ("quarantined", "Rows set aside as invalid by bulk loads."),
    ("batches", "Chunks committed by bulk loads."),
    ("retries", "Chunks retried after a transient failure."),
    ("seconds", "Seconds spent in bulk loads."),
)


class GeoSessionCollector(Collector):
    """Reads, at every scrape, the metrics of each database registered on one registry:
    prometheus_client refuses a second collector of the same metric names, so a process
    with two databases (or one registered twice) shares this one."""

    def __init__(self) -> None:
        self._databases: dict[str, weakref.ref[DatabaseMetrics]] = {}
        self._lock = threading.Lock()

    def add(self, metrics: DatabaseMetrics, database: str) -> None:
        """Reports ``metrics`` under the label ``database`` (again: nothing changes)."""
        with self._lock:
            live = self._live()
            if live.get(database, metrics) is not metrics:
                raise ConfigurationError(
                    f"another SpatialDatabase already reports as database={database!r} on "
                    "this registry: give each its own, register(db, database='orders')"
                )
            elsewhere = [label for label, known in live.items() if known is metrics]
            if elsewhere and elsewhere != [database]:
                raise ConfigurationError(
                    f"this SpatialDatabase already reports as database={elsewhere[0]!r} on "
                    "this registry: each of its samples would be counted twice"
                )
            self._databases[database] = weakref.ref(metrics)

    def _live(self) -> dict[str, DatabaseMetrics]:
        """The registered databases still in use (one garbage-collected is left out)."""
        live = {label: ref() for label, ref in self._databases.items()}
        for label in [label for label, metrics in live.items() if metrics is None]:
            del self._databases[label]
        return {label: metrics for label, metrics in live.items() if metrics is not None}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            databases = list(self._live().items())
        pools = [(label, name, monitor) for label, m in databases for name, monitor in _pools(m)]
        yield from _pool_metrics(pools)
        yield _wait_histogram(pools)
        slow = CounterMetricFamily(
            "geosession_slow_queries",
            "Statements slower than slow_query_threshold.",
            labels=["database"],
        )
        flushes = CounterMetricFamily(
            "geosession_slow_flushes",
            "ORM flushes slower than slow_query_threshold.",
            labels=["database"],
        )
        for label, metrics in databases:
            slow.add_metric([label], metrics.slow_queries.count)
            flushes.add_metric([label], metrics.slow_queries.flushes)
        yield slow
        yield flushes
        yield _session_state_metric(databases)
        yield from _ingest_metrics(databases)


def _session_state_metric(databases: list[tuple[str, DatabaseMetrics]]) -> Metric:
    left = CounterMetricFamily(
        "geosession_session_state",
        "What returned connections had left in their server sessions: settings (connections "
        "replaced), advisory locks (released), temporary tables and the like (undone).",
        labels=["database", "kind"],
    )
    for label, metrics in databases:
        for kind, count in metrics.session_state.items():
            left.add_metric([label, kind], count)
    return left


Pools = list[tuple[str, str, PoolMonitor]]
"""(database label, pool label, monitor) of every pool reported."""


def _pools(metrics: DatabaseMetrics) -> list[tuple[str, PoolMonitor]]:
    pools = [("sync", metrics.pool)]
    if metrics.async_pool is not None:
        pools.append(("async", metrics.async_pool))
    if metrics.ingest_pool is not None:
        pools.append(("ingest", metrics.ingest_pool))
    return pools + [(f"replica{n}", pool) for n, pool in enumerate(metrics.replica_pools)]


def _pool_metrics(pools: Pools) -> Iterator[Metric]:
    stats = [(database, name, monitor.stats().as_dict()) for database, name, monitor in pools]
    labels = ["database", "pool"]
    for key, help_text in _POOL_GAUGES:
        gauge = GaugeMetricFamily(f"geosession_pool_{key}", help_text, labels=labels)
        for database, name, values in stats:
            gauge.add_metric([database, name], values[_STATS_KEYS.get(key, key)])
        yield gauge
    for key, help_text in _POOL_COUNTERS:
        counter = CounterMetricFamily(f"geosession_pool_{key}", help_text, labels=labels)
        for database, name, values in stats:
            counter.add_metric([database, name], values[key])
        yield counter


def _wait_histogram(pools: Pools) -> Metric:
    histogram = HistogramMetricFamily(
        "geosession_pool_checkout_wait_seconds",
        "Time to get a connection from the pool (waiting, connecting, pre-ping).",
        labels=["database", "pool"],
    )
    for database, name, monitor in pools:
        cumulative, buckets = 0, []
        for bound, count in zip((*WAIT_BUCKETS, float("inf")), monitor.wait_buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", cumulative))
        histogram.add_metric([database, name], buckets, monitor.wait_seconds)
    return histogram


def _ingest_metrics(databases: list[tuple[str, DatabaseMetrics]]) -> Iterator[Metric]:
    for key, help_text in _INGEST_COUNTERS:
        counter = CounterMetricFamily(f"geosession_ingest_{key}", help_text, labels=["database"])
        for database, metrics in databases:
            counter.add_metric([database], getattr(metrics.ingest, key))
        yield counter


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, GeoSessionCollector] = (
    weakref.WeakKeyDictionary()
)
_collectors_lock = threading.Lock()


def register(
    db: SpatialDatabase,
    registry: CollectorRegistry | None = None,
    *,
    database: str | None = None,
) -> GeoSessionCollector:
    """Reports ``db``'s metrics on ``registry`` (default: prometheus_client's), labelled
    ``database`` (default: host:port/dbname). Several databases share the registry's one
    collector; registering one again changes nothing."""
    target = REGISTRY if registry is None else registry
    with _collectors_lock:
        collector = _collectors.get(target)
        if collector is None:
            collector = _collectors[target] = GeoSessionCollector()
            target.register(collector)
    collector.add(db.metrics, database or endpoint_of(db.engine))
    return collector
