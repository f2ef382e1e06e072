"""Prometheus metrics (prometheus-client), one registry per app so that apps don't share state.

Request counts and latencies are labelled by the route *template* (``/collections/{name}``),
never the raw path, so cardinality stays bounded. Collection sizes are read from
``Collection.info()`` at scrape time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)

#: (info key, metric name, help)
_COLLECTION_GAUGES = (
    ("count", "quiver_collection_points", "Live points in the collection."),
    ("deleted", "quiver_collection_deleted_points", "Deleted points not yet consolidated."),
    ("hot_bytes", "quiver_collection_hot_bytes", "Bytes kept in RAM (codes, graph, ids)."),
    ("cold_bytes", "quiver_collection_cold_bytes", "Bytes of memory-mapped float vectors."),
    ("wal_bytes", "quiver_collection_wal_bytes", "Bytes in the write-ahead log."),
)


class _CollectionCollector(Collector):
    """Reads every open collection's ``info()`` when scraped."""

    def __init__(self, infos: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self._infos = infos

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families = {
            key: GaugeMetricFamily(name, doc, labels=["collection"])
            for key, name, doc in _COLLECTION_GAUGES
        }
        for info in self._infos():
            for key, family in families.items():
                if isinstance(info.get(key), int | float):
                    family.add_metric([str(info["name"])], float(info[key]))
        yield from families.values()


class Metrics:
    """The server's metrics and their registry."""

    def __init__(self, collection_infos: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "quiver_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "quiver_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "quiver_http_requests_in_flight", "Requests being handled.", registry=self.registry
        )
        self.ready = Gauge(
            "quiver_ready",
            "1 once collections are open and kernels compiled.",
            registry=self.registry,
        )
        self.query_batch = Histogram(
            "quiver_query_batch_size",
            "Single queries answered by one engine call (the micro-batcher's groups).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.registry.register(_CollectionCollector(collection_infos))
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request (the labelled series are looked up once per label set:
        a few microseconds per request, whatever the traffic)."""
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)
