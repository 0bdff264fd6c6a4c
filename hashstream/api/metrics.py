"""Prometheus metrics: request counts and latency per route (middleware), per-index gauges
(rounds, last round seconds, queue depth, database size) and the worker-restart counter of
`serve`'s supervisor, read from Redis at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hashstream.service.registry import IndexService


class RequestMetrics:
    """Pure ASGI middleware timing every request by route template and status."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("hashstream_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("hashstream_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=registry,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5,
                                          1, 2.5, 5, 10))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.requests.labels(method, path, str(status)).inc()
            self.latency.labels(method, path).observe(time.perf_counter() - start)


class IndexCollector(Collector):
    """Gauges per index and the worker-restart counter, read from Redis when Prometheus
    scrapes."""

    def __init__(self, indexes: IndexService) -> None:
        self.indexes = indexes

    def collect(self) -> Iterator[Any]:
        rounds = GaugeMetricFamily("hashstream_rounds", "committed rounds", labels=["index"])
        seconds = GaugeMetricFamily("hashstream_round_seconds", "seconds of the last round",
                                    labels=["index"])
        depth = GaugeMetricFamily("hashstream_queue_depth", "chunks waiting", labels=["index"])
        size = GaugeMetricFamily("hashstream_database_items", "items in the code store",
                                 labels=["index"])
        dead = GaugeMetricFamily("hashstream_dead_letters", "chunks in the dead-letter stream",
                                 labels=["index"])
        for row in self.indexes.overview():
            name, version, queue, last = row["name"], row["version"], row["queue_depth"], \
                row["last"]
            dead.add_metric([name], row["dead_letters"])
            rounds.add_metric([name], version)
            depth.add_metric([name], queue)
            size.add_metric([name], row["n_items"])
            if last:
                seconds.add_metric([name], float(last["seconds"].get("learn", 0.0)))
        restarts = CounterMetricFamily("hashstream_worker_restarts",
                                       "worker children restarted by serve's supervisor",
                                       value=self.indexes.worker_restarts())
        yield from (rounds, seconds, depth, size, dead, restarts)


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
