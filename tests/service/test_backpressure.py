"""Backpressure against real servers: an index whose backlog is at or past
HASHSTREAM_MAX_QUEUED_ITEMS answers 429 with Retry-After and a problem naming the limit, and 202
below it; the refusals are counted in /metrics; the Python client raises Backlogged or retries;
every chunk acknowledged is learned exactly once, none refused is."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.data import Clusters, npz_bytes, one_hot
from support.net import unique
from support.processes import Proc, Server, assert_problem

from hashstream.client import Backlogged, Client
from hashstream.service.backlog import BacklogLimits, refusal

DIM = 16
LIMIT = 500  # items


def _chunk(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    clusters = Clusters(seed=0, dim=DIM)  # the same classes in every chunk
    clusters.rng = np.random.default_rng(seed)
    x, y = clusters.sample(n)
    return x.astype(np.float32), one_hot(y, clusters.n_classes)


def _post(server: Server, name: str, seed: int, n: int) -> httpx.Response:
    x, labels = _chunk(seed, n)
    return server.http.post(f"/indexes/{name}/ingest", content=npz_bytes(
        features=x, labels=labels), headers={"Content-Type": "application/octet-stream"})


def _metric(server: Server, family: str, name: str) -> float | None:
    for fam in text_string_to_metric_families(server.http.get("/metrics").text):
        for sample in fam.samples:
            if sample.name == family and sample.labels.get("index") == name:
                return float(sample.value)
    return None


def test_a_backlog_past_the_limit_gets_429_below_it_202_and_nothing_acked_is_lost(
        start_server: Callable[..., Server], start_worker: Callable[..., Proc]) -> None:
    # no worker yet: the backlog only grows
    server = start_server("backlog", workers=0, max_queued_items=LIMIT)
    name = unique("bp")
    server.create_index(name, DIM)
    accepted: list[dict[str, Any]] = []
    for seed in range(2):  # 300 items: below the limit; 600: at or past it
        r = _post(server, name, seed, 300)
        assert r.status_code == 202, r.text
        accepted.append(r.json())
    assert server.info(name)["queue_depth"] == 2
    assert _metric(server, "hashstream_queue_items", name) == 600
    assert _metric(server, "hashstream_ingest_refused_total", name) == 0

    refused = _post(server, name, 7, 40)
    body = assert_problem(refused, 429)
    assert body["limit"] == "HASHSTREAM_MAX_QUEUED_ITEMS"
    assert body["backlog_items"] == 600
    assert int(refused.headers["Retry-After"]) >= 1  # no round yet: no rate, the floor
    assert server.info(name)["queue_depth"] == 2  # nothing of the refused chunk was queued
    assert _metric(server, "hashstream_ingest_refused_total", name) == 1

    with Client(server.url) as client:  # the typed error, and its retry_after
        x, labels = _chunk(8, 40)
        with pytest.raises(Backlogged) as caught:
            client.ingest(name, x, label_matrix=labels)
        assert caught.value.status == 429 and caught.value.retry_after is not None
        assert caught.value.limit == "HASHSTREAM_MAX_QUEUED_ITEMS"
        assert caught.value.backlog_items == 600
    assert _metric(server, "hashstream_ingest_refused_total", name) == 2

    # a worker drains the backlog; meanwhile a client that asked for retries gets through
    worker = start_worker("backlog")
    with Client(server.url) as client:
        x, labels = _chunk(9, 40)
        late = client.ingest(name, x, label_matrix=labels, retry_for=120)
    accepted.append({"chunk_id": str(late), "items": late.items})
    info = server.wait_idle(name, min_version=1, timeout=120)
    assert worker.alive()
    assert _metric(server, "hashstream_queue_items", name) == 0
    rate = _metric(server, "hashstream_learn_rate_items_per_second", name)
    assert rate is not None and rate > 0

    # every acknowledged chunk learned once, none of the refused ones
    records = server.rounds(name)
    learned = [c for rec in records for c in rec["chunks"]]
    assert sorted(learned) == sorted(a["chunk_id"] for a in accepted)
    assert sum(rec["n_items"] for rec in records) == 640 == info["n_items"]
    assert _post(server, name, 10, 30).status_code == 202  # below the limit again


def test_the_seconds_limit_uses_the_recent_rate_and_retry_after_is_its_estimate() -> None:
    limits = BacklogLimits(items=0, seconds=10)
    assert refusal("ix", 5_000, None, limits) is None  # no rate yet: no estimate to refuse on
    assert refusal("ix", 900, 100.0, limits) is None  # 9 s of work: below
    refused = refusal("ix", 1_500, 100.0, limits)  # 15 s of work: past 10 s
    assert refused is not None and refused.status == 429
    assert refused.extra["limit"] == "HASHSTREAM_MAX_QUEUED_SECONDS"
    assert refused.extra["backlog_seconds"] == 15.0
    assert refused.retry_after == math.ceil(15 - 10 + 0.01)  # drained below 10 s in ~5 s
    both = refusal("ix", 3_000, 100.0, BacklogLimits(items=1_000, seconds=10))
    assert both is not None
    assert both.extra["limit"] == "HASHSTREAM_MAX_QUEUED_ITEMS, HASHSTREAM_MAX_QUEUED_SECONDS"
    assert both.retry_after == 21  # the longer wait: 2,001 items at 100 items/s
    assert refusal("ix", 10**9, 1.0, BacklogLimits()) is None  # no limits: never


def test_openapi_documents_429_on_ingest(api: Server) -> None:
    spec = api.http.get("/openapi.json").json()
    for path in ("/indexes/{name}/ingest", "/ingest"):
        answer = spec["paths"][path]["post"]["responses"]["429"]
        assert "Retry-After" in answer["headers"]
        assert answer["content"]["application/problem+json"]["schema"]["$ref"].endswith(
            "/Problem")
    problem = spec["components"]["schemas"]["Problem"]["properties"]
    assert {"limit", "backlog_items", "backlog_seconds"} <= set(problem)
