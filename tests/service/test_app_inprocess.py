"""The FastAPI app in-process (TestClient runs its lifespan) against a real Redis, with an
in-process worker: the API and the round path without subprocesses, fast enough to grow."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hashstream.api.app import create_app
from hashstream.client import Client, InvalidInput
from hashstream.service.settings import Settings
from hashstream.service.worker import RoundRunner
from hashstream.store.index_store import IndexStore


@pytest.fixture
def app_and_store(redis_url: str, redis_client: Any, session_prefix: str,
                  hs: Any) -> Iterator[tuple[TestClient, IndexStore]]:
    prefix = f"{session_prefix}-{hs.unique('inproc')}"
    settings = Settings(redis_url=redis_url, key_prefix=prefix, max_chunk_items=500,
                        max_labels_per_item=2)
    with TestClient(create_app(settings)) as client:
        yield client, IndexStore(redis_client, prefix)


def test_ingest_round_search_in_process(app_and_store: Any, hs: Any) -> None:
    client, store = app_and_store
    r = client.post("/indexes", json={"name": "ip", "dim": 16, **hs.FAST})
    assert r.status_code == 201, r.text
    clusters = hs.Clusters(21, dim=16, n_classes=3)
    x, cls = clusters.sample(300)
    r = client.post("/indexes/ip/ingest",
                    json={"features": x.tolist(), "labels": [[f"c{c}"] for c in cls]})
    assert r.status_code == 202 and r.json()["id_range"] == [0, 300], r.text
    assert client.get("/indexes/ip").json()["queue_depth"] == 1
    runner = RoundRunner(store)
    assert runner.step("ip") is True
    info = client.get("/indexes/ip").json()
    assert info["model_version"] == 1 and info["n_items"] == 300 and info["queue_depth"] == 0
    r = client.post("/indexes/ip/search", json={"features": [clusters.vector(2).tolist()],
                                                "k": 10})
    hits = r.json()["results"][0]
    assert np.mean([h["labels"] == ["c2"] for h in hits]) >= 0.8, hits
    rounds = client.get("/indexes/ip/rounds").json()["rounds"]
    assert rounds[0]["worker"] == runner.id and rounds[0]["n_classes"] == 3


def test_limits_and_errors_in_process(app_and_store: Any, hs: Any) -> None:
    client, _ = app_and_store
    client.post("/indexes", json={"name": "lim", "dim": 2})
    r = client.post("/indexes/lim/ingest", json={"features": [[0, 1]] * 501,
                                                 "labels": [[0]] * 501})
    hs.assert_problem(r, 413, "features")
    # the classes-per-item limit holds for every label form
    for body, field in (({"labels": [[1], [1, 2, 3]]}, "labels"),
                        ({"label_matrix": [[1, 0, 0], [1, 1, 1]]}, "label_matrix")):
        r = client.post("/indexes/lim/ingest", json={"features": [[0, 1]] * 2, **body})
        assert f"{field}[1] has 3 classes" in hs.assert_problem(r, 422, field)["detail"]
    r = client.post("/indexes/lim/ingest", headers={"Content-Type": "application/octet-stream"},
                    content=hs.npz_bytes(features=np.ones((2, 2)), label_indptr=np.array([0, 1, 4]),
                                         label_classes=np.arange(4)))
    hs.assert_problem(r, 422, "label_classes")
    hs.assert_problem(client.get("/indexes/lim/dead-letters/1-0/requeue"), 405)
    hs.assert_problem(client.post("/indexes/lim/dead-letters/1-0/requeue"), 404, "id")
    hs.assert_problem(client.get("/indexes/nope/dead-letters"), 404, "name")
    body = client.get("/indexes/lim/dead-letters").json()
    assert body == {"index": "lim", "total": 0, "dead_letters": []}


@pytest.mark.parametrize("body,field", [
    ({"method": "lsh", "n_anchors": 64}, "n_anchors"),      # an SDOH-HC setting on LSH
    ({"method": "lsh", "loss": "dhd"}, "loss"),
    ({"kind": "cross-modal", "text_dim": 4, "n1": 10}, "n1"),  # an SDOH-HC setting on ECMH
    ({"loss": "idcwh"}, "loss"),                             # a cross-modal setting on SDOH-HC
    ({"text_dim": 8}, "text_dim"),
    ({"text_kind": "tokens"}, "text_kind"),
])
def test_settings_a_method_does_not_take_are_refused(app_and_store: Any, hs: Any,
                                                      body: dict[str, Any], field: str) -> None:
    client, store = app_and_store
    r = client.post("/indexes", json={"name": "m", "dim": 4, **body})
    hs.assert_problem(r, 422, field)
    assert store.list_indexes() == []


def test_python_client_over_the_test_client(app_and_store: Any, hs: Any) -> None:
    """The Python client sends through any httpx client: here the app in-process."""
    testclient, store = app_and_store
    with Client("http://testserver", http=testclient) as client:
        client.create_index("pc", 8, **hs.FAST)
        clusters = hs.Clusters(3, dim=8, n_classes=2)
        x, cls = clusters.sample(100)
        chunk = client.ingest("pc", x, cls)
        assert RoundRunner(store).step("pc") is True
        assert chunk in client.wait_for_round("pc", chunk, timeout=5)["chunks"]
        hits = client.search("pc", clusters.vector(1), k=3)["results"][0]
        assert len(hits) == 3
        with pytest.raises(InvalidInput) as wrong:
            client.ingest("pc", x[:, :4], cls)
        assert wrong.value.field == "features"
    assert testclient.get("/indexes/pc").status_code == 200  # not closed: the caller's


def test_the_api_redis_client_takes_the_configured_socket_timeout(
        redis_url: str, session_prefix: str, hs: Any) -> None:
    """A bulk XADD can outwait redis-py's 5 s default behind an AOF fsync; the API's client
    uses HASHSTREAM_REDIS_TIMEOUT_S instead."""
    assert Settings(redis_url=redis_url).redis_timeout_s == 60.0
    settings = Settings(redis_url=redis_url, key_prefix=f"{session_prefix}-{hs.unique('to')}",
                        redis_timeout_s=42.5)
    app = create_app(settings)
    with TestClient(app):
        pool = getattr(app.state.indexes.store.r, "connection_pool", None)
        if pool is None:  # a RedisCluster client (REDIS_URL of the cluster fixture)
            pytest.skip("the cluster client keeps per-node pools")
        assert pool.connection_kwargs["socket_timeout"] == 42.5
