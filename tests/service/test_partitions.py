"""Partitioned indexes on a real 3-master Redis Cluster: a partitioned index answers exactly what
the same index unpartitioned answers; a replica serving a subset of partitions answers over
that subset and says so; deleting the index removes every partition's keys.

Both indexes use the LSH method with one seed and rounds of one chunk each (LSH centres on its
first round's mean, so the rounds must match): fed the same chunks they store the same codes
under the same ids.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import key_slot
from support.data import Clusters, json_chunk
from support.net import wait_until
from support.processes import Proc, Server, service_env
from support.redis_cluster import RedisClusterNodes

from hashstream.store.connection import connect
from hashstream.store.index_store import IndexStore

DIM, PARTS = 12, 3


@pytest.fixture
def partitioned(redis_cluster: RedisClusterNodes, tmp_path: Path
                ) -> Iterator[tuple[Server, Server, IndexStore]]:
    """A full replica, a replica of partitions 0 and 2, one worker, and a store client."""
    prefix = f"hsp-{uuid.uuid4().hex[:8]}"
    env = service_env(redis_cluster.cluster_url, prefix, max_round_items=200)
    full = Server(env, tmp_path, workers=0)
    subset = Server({**env, "HASHSTREAM_SERVE_PARTITIONS": "0,2"}, tmp_path, workers=0)
    worker = Proc([sys.executable, "-m", "hashstream", "worker", "--log-level", "info"], env,
                  tmp_path)
    client = connect(redis_cluster.cluster_url)
    try:
        full.wait_up()
        subset.wait_up()
        yield full, subset, IndexStore(client, prefix)
    finally:
        for proc in (worker, subset, full):
            proc.stop()
        client.close()


def _search(server: Server, name: str, body: dict[str, Any]) -> dict[str, Any]:
    version = server.info(name)["model_version"]  # read your writes: every round committed
    r = server.http.post(f"/indexes/{name}/search", json={**body, "min_version": version})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_partitioned_index_answers_what_the_unpartitioned_one_does(
        partitioned: tuple[Server, Server, IndexStore]) -> None:
    full, subset, store = partitioned
    for name, parts in (("flat", 1), ("split", PARTS)):
        r = full.http.post("/indexes", json={"name": name, "dim": DIM, "bits": 16,
                                             "method": "lsh", "seed": 5, "partitions": parts})
        assert r.status_code == 201, r.text
        assert r.json()["partitions"] == parts
    data = Clusters(seed=8, dim=DIM, n_classes=4)
    for _ in range(3):
        f, c = data.sample(200)
        for name in ("flat", "split"):
            full.ingest(name, json_chunk(f, c))
    for name in ("flat", "split"):
        wait_until(lambda name=name: full.info(name)["model_version"] >= 3, 120, 0.1,
                   f"{name} learned")
        assert full.info(name)["n_items"] == 600
        assert [r["n_items"] for r in full.rounds(name)] == [200, 200, 200]
    version = full.info("split")["model_version"]
    # the parts of every version sit on three hash slots
    manifest = store.load_segment_parts("split", 1)
    assert sorted(manifest) == [0, 1, 2]
    assert sum(len(p["ids"]) for p in manifest.values()) == len(store.load_segment("split", 1)
                                                                 ["ids"])
    queries = [data.vector(i).tolist() for i in range(4)] + [f[0].tolist(), f[1].tolist()]
    for k in (1, 10, 600):
        flat = _search(full, "flat", {"features": queries, "k": k})
        split = _search(full, "split", {"features": queries, "k": k})
        assert split["results"] == flat["results"]  # ids, distances, labels, order
        assert split["partitions"] == [0, 1, 2] and flat.get("partitions") is None
    by_item = [full.http.get(f"/indexes/{n}/search", params={
        "item": 7, "k": 20, "min_version": full.info(n)["model_version"]}).json()
               for n in ("flat", "split")]
    assert by_item[0]["results"] == by_item[1]["results"]

    # a replica of partitions 0 and 2: the full ranking without partition 1's items
    everything = _search(full, "split", {"features": queries, "k": 600})["results"]
    part = _search(subset, "split", {"features": queries, "k": 600})
    assert part["partitions"] == [0, 2]
    assert part["results"] == [[h for h in row if h["id"] % PARTS != 1] for row in everything]
    r = subset.http.get("/indexes/split/search", params={"item": 4, "k": 3,  # 4 % 3 == 1
                                                         "min_version": version})
    assert r.status_code == 404 and "does not serve" in r.json()["detail"]

    # delete: nothing left on any partition's slot
    writes = [m.decode() for m in store.r.smembers(store.keys("split").partition_writes)]
    assert len(writes) == version
    part_keys = [store.keys("split").partition_segment(p, int(v), int(t))
                 for w in writes for v, t in [w.split(":")] for p in range(PARTS)]
    assert len({key_slot(k.encode()) for k in part_keys}) == PARTS
    assert all(store.r.exists(k) for k in part_keys)
    assert full.http.delete("/indexes/split").status_code == 204
    assert not any(store.r.exists(k) for k in part_keys)
