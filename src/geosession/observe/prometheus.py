"""Prometheus exporter: pool gauges, checkout wait histogram, slow statements, ingest totals.

Needs the optional extra: ``pip install 'geosession[prometheus]'``. ::

    from geosession.observe.prometheus import register
    register(db)                      # on prometheus_client's default registry
    prometheus_client.start_http_server(9100)

Values are read from ``db.metrics`` when Prometheus scrapes (a custom collector), so
nothing is updated on the hot path beyond geosession's own counters. Every sample has the
labels ``database`` (default: host:port/dbname, never the password) and ``pool`` ("sync"
or "async", the latter once ``db.async_engine`` exists).
"""

from __future__ import annotations

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
    ("overflow", "Connections open beyond pool_size (negative until the pool fills)."),
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
    """Reads a database's metrics at every scrape."""

    def __init__(self, metrics: DatabaseMetrics, *, database: str) -> None:
        self.metrics = metrics
        self.database = database

    def collect(self) -> Iterator[Metric]:
        pools = [("sync", self.metrics.pool)]
        if self.metrics.async_pool is not None:
            pools.append(("async", self.metrics.async_pool))
        if self.metrics.ingest_pool is not None:
            pools.append(("ingest", self.metrics.ingest_pool))
        pools += [(f"replica{n}", pool) for n, pool in enumerate(self.metrics.replica_pools)]
        yield from self._pool_metrics(pools)
        yield self._wait_histogram(pools)
        slow = CounterMetricFamily(
            "geosession_slow_queries",
            "Statements slower than slow_query_threshold.",
            labels=["database"],
        )
        slow.add_metric([self.database], self.metrics.slow_queries.count)
        yield slow
        yield from self._ingest_metrics()

    def _pool_metrics(self, pools: list[tuple[str, PoolMonitor]]) -> Iterator[Metric]:
        stats = [(name, monitor.stats().as_dict()) for name, monitor in pools]
        labels = ["database", "pool"]
        for key, help_text in _POOL_GAUGES:
            gauge = GaugeMetricFamily(f"geosession_pool_{key}", help_text, labels=labels)
            for name, values in stats:
                gauge.add_metric([self.database, name], values[_STATS_KEYS.get(key, key)])
            yield gauge
        for key, help_text in _POOL_COUNTERS:
            counter = CounterMetricFamily(f"geosession_pool_{key}", help_text, labels=labels)
            for name, values in stats:
                counter.add_metric([self.database, name], values[key])
            yield counter

    def _wait_histogram(self, pools: list[tuple[str, PoolMonitor]]) -> Metric:
        histogram = HistogramMetricFamily(
            "geosession_pool_checkout_wait_seconds",
            "Time to get a connection from the pool (waiting, connecting, pre-ping).",
            labels=["database", "pool"],
        )
        for name, monitor in pools:
            cumulative, buckets = 0, []
            for bound, count in zip(
                (*WAIT_BUCKETS, float("inf")), monitor.wait_buckets, strict=True
            ):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", cumulative))
            histogram.add_metric([self.database, name], buckets, monitor.wait_seconds)
        return histogram

    def _ingest_metrics(self) -> Iterator[Metric]:
        ingest = self.metrics.ingest
        for key, help_text in _INGEST_COUNTERS:
            counter = CounterMetricFamily(
                f"geosession_ingest_{key}", help_text, labels=["database"]
            )
            counter.add_metric([self.database], getattr(ingest, key))
            yield counter


def register(
    db: SpatialDatabase,
    registry: CollectorRegistry | None = None,
    *,
    database: str | None = None,
) -> GeoSessionCollector:
    """Registers a collector for ``db`` (default registry; label: host:port/dbname)."""
    collector = GeoSessionCollector(db.metrics, database=database or endpoint_of(db.engine))
    (REGISTRY if registry is None else registry).register(collector)
    return collector
