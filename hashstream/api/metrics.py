"""Prometheus metrics: request counts and latency per route (middleware); per-index gauges read
from Redis at scrape time (rounds, the latest round's seconds, mAP and precision@r2, queue depth
and lag, the backlog in items and seconds of work, the learn rate, ingests refused for backlog,
database size, dead letters); the version and refresh time of each replica this API
process holds; live workers and the worker-restart counter of `serve`'s supervisor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hashstream.service.dashboard_data import round_wall_seconds
from hashstream.service.registry import IndexService
from hashstream.service.replicas import SearchService


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
    """Gauges per index (read from Redis when Prometheus scrapes), the replicas this API
    process holds, live workers and the worker-restart counter."""

    def __init__(self, indexes: IndexService, search: SearchService) -> None:
        self.indexes = indexes
        self.search = search

    def collect(self) -> Iterator[Any]:
        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=["index"])

        rounds = gauge("hashstream_rounds", "committed rounds")
        seconds = gauge("hashstream_round_seconds",
                        "wall seconds of the latest round (learn, score and commit)")
        quality = gauge("hashstream_round_map", "mAP of the held-out queries after the latest "
                        "round (absent until an index has held-out queries)")
        precision = gauge("hashstream_round_precision_r2", "precision within Hamming radius 2 "
                          "of the held-out queries after the latest round")
        depth = gauge("hashstream_queue_depth", "chunks waiting")
        lag = gauge("hashstream_queue_lag_seconds",
                    "seconds the oldest waiting chunk has waited (0 when none waits)")
        backlog = gauge("hashstream_queue_items", "items in the chunks waiting for rounds (the "
                        "backlog HASHSTREAM_MAX_QUEUED_ITEMS bounds)")
        rate = gauge("hashstream_learn_rate_items_per_second", "items per second of the "
                     "index's recent rounds (how fast the backlog drains)")
        backlog_s = gauge("hashstream_queue_work_seconds", "the backlog's estimated seconds of "
                          "work: items waiting / the recent rounds' items per second")
        refused = CounterMetricFamily("hashstream_ingest_refused", "ingests refused with 429 "
                                      "because the index's backlog passed a limit",
                                      labels=["index"])
        size = gauge("hashstream_database_items", "items in the code store")
        dead = gauge("hashstream_dead_letters", "chunks in the dead-letter stream")
        for row in self.indexes.overview():
            name, last = row["name"], row["last"]
            dead.add_metric([name], row["dead_letters"])
            rounds.add_metric([name], row["version"])
            depth.add_metric([name], row["queue_depth"])
            lag.add_metric([name], row["queue_lag_s"])
            backlog.add_metric([name], row["queued_items"])
            refused.add_metric([name], row["refusals"])
            if row["learn_rate"]:
                rate.add_metric([name], row["learn_rate"])
                backlog_s.add_metric([name], row["queued_items"] / row["learn_rate"])
            size.add_metric([name], row["n_items"])
            if last:
                seconds.add_metric([name], round_wall_seconds(last.get("seconds", {})))
                if last.get("map") is not None:
                    quality.add_metric([name], float(last["map"]))
                if last.get("precision_r2") is not None:
                    precision.add_metric([name], float(last["precision_r2"]))
        version = gauge("hashstream_replica_version",
                        "model version this API process serves searches from")
        refresh = gauge("hashstream_replica_refresh_seconds",
                        "seconds this API process's latest replica refresh took")
        for name, (held, took) in sorted(self.search.replica_status().items()):
            version.add_metric([name], held)
            refresh.add_metric([name], took)
        workers = GaugeMetricFamily("hashstream_workers_alive",
                                    "workers with a live heartbeat",
                                    value=len(self.indexes.workers()))
        restarts = CounterMetricFamily("hashstream_worker_restarts",
                                       "worker children restarted by serve's supervisor",
                                       value=self.indexes.worker_restarts())
        yield from (rounds, seconds, quality, precision, depth, lag, backlog, rate, backlog_s,
                    refused, size, dead, version, refresh, workers, restarts)


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
