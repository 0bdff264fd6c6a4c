"""The service on a real 3-master Redis Cluster (started by the suite on loopback ports): two
API replicas (`serve --workers 0`) and two `hashstream worker`s over ``redis+cluster://``.

Indexes on every master are created, fed through both replicas, learned by both workers (each
takes rounds), searched through both replicas, have items deleted and are deleted; a worker
killed with SIGKILL in the middle of a round has its chunk committed by the other, exactly
once.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.data import Clusters, json_chunk, npz_bytes, one_hot
from support.net import wait_until
from support.processes import Proc, Server, service_env
from support.redis_cluster import RedisClusterNodes

from hashstream.store.connection import connect
from hashstream.store.index_store import IndexStore

DIM, CLASSES = 16, 4


@pytest.fixture
def deployment(redis_cluster: RedisClusterNodes, tmp_path: Path
               ) -> Iterator[Callable[..., Any]]:
    """``deployment(replicas, workers, **settings)`` → (servers, workers, store) on the cluster
    under a fresh key prefix; everything is stopped at the end of the test."""
    started: list[Proc] = []
    clients: list[Any] = []

    def make(replicas: int, workers: int, **settings: Any
             ) -> tuple[list[Server], list[Proc], IndexStore]:
        prefix = f"hsc-{uuid.uuid4().hex[:8]}"
        env = service_env(redis_cluster.cluster_url, prefix, **settings)
        servers = [Server(env, tmp_path, workers=0) for _ in range(replicas)]
        started.extend(servers)
        procs = [Proc([sys.executable, "-m", "hashstream", "worker", "--worker-id",
                       f"w{i}", "--log-level", "info"], env, tmp_path) for i in range(workers)]
        started.extend(procs)
        for server in servers:
            server.wait_up(ready=workers > 0)
        client = connect(redis_cluster.cluster_url)
        clients.append(client)
        return servers, procs, IndexStore(client, prefix)

    yield make
    for proc in reversed(started):
        proc.stop()
    for client in clients:
        client.close()


def _names_on_every_master(store: IndexStore, nodes: RedisClusterNodes) -> list[str]:
    owners: dict[int, str] = {}
    while len(owners) < len(nodes.ports):
        name = f"ix-{uuid.uuid4().hex[:6]}"
        owners.setdefault(store.r.get_node_from_key(store.keys(name).config).port, name)
    return sorted(owners.values())


def _wait_idle(server: Server, name: str, version: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        info = server.info(name)
        return info if info["queue_depth"] == 0 and info["model_version"] >= version else None
    return dict(wait_until(done, 120, 0.1, f"{name}: rounds committed"))


def test_two_replicas_two_workers_create_ingest_search_delete(
        deployment: Callable[..., Any], redis_cluster: RedisClusterNodes) -> None:
    (a, b), workers, store = deployment(2, 2, max_round_items=300)
    names = _names_on_every_master(store, redis_cluster)
    for name in names:
        a.create_index(name, DIM)
    assert sorted(x["name"] for x in b.http.get("/indexes").json()["indexes"]) == names
    ready = b.http.get("/readyz").json()
    assert ready["status"] == "ready" and ready["workers"] == 2
    data = Clusters(seed=3, dim=DIM, n_classes=CLASSES)
    sent: dict[str, list[str]] = {n: [] for n in names}
    for i in range(4):  # through both replicas, one chunk per round (max_round_items)
        for name in names:
            f, c = data.sample(300)
            sent[name].append((a if i % 2 else b).ingest(name, json_chunk(f, c))["chunk_id"])
    rounds_by: Counter[str] = Counter()
    for name in names:
        info = _wait_idle(a, name, 1)
        assert info["n_items"] == 1200
        records = a.rounds(name)
        assert sorted(c for r in records for c in r["chunks"]) == sorted(sent[name])
        assert [r["round"] for r in records] == list(range(1, len(records) + 1))
        tokens = [r["lease_token"] for r in records]
        assert tokens == sorted(set(tokens))
        rounds_by.update(r["worker"] for r in records)
    assert set(rounds_by) == {"w0", "w1"}, rounds_by  # both workers took rounds
    # search through both replicas: the same answer
    v = data.vector(1)
    for name in names:
        hits = [s.http.post(f"/indexes/{name}/search",
                            json={"features": [v.tolist()], "k": 5}).json()
                for s in (a, b)]
        assert hits[0]["results"] == hits[1]["results"] and len(hits[0]["results"][0]) == 5
    # item deletes through one replica: gone from the other's searches at once, counted
    kept = names[1]
    r = a.http.post(f"/indexes/{kept}/items/delete", json={"ids": [0, 1, 2, 5000]})
    assert r.json()["deleted"] == [0, 1, 2] and r.json()["unknown"] == [5000], r.text
    assert b.http.get(f"/indexes/{kept}/items/1").status_code == 404
    found = b.http.post(f"/indexes/{kept}/search",
                        json={"features": [v.tolist()], "k": 2000}).json()["results"][0]
    assert len(found) == 1197 and not {0, 1, 2} & {h["id"] for h in found}
    assert b.info(kept)["n_items"] == 1197
    # delete through one replica: gone for both, and no key left on its slot
    gone = names[0]
    assert b.http.delete(f"/indexes/{gone}").status_code == 204
    assert a.http.get(f"/indexes/{gone}").status_code == 404
    port = store.r.get_node_from_key(store.keys(gone).config).port
    direct = redis_cluster.node_client(port)
    try:
        pattern = f"{store.prefix}:{{{gone}}}:*".replace("{", "\\{").replace("}", "\\}")
        assert list(direct.scan_iter(match=pattern)) == []
    finally:
        direct.close()
    assert all(w.alive() for w in workers)


def test_kill_9_of_a_worker_mid_round_the_other_commits_the_chunk_once(
        deployment: Callable[..., Any], redis_cluster: RedisClusterNodes) -> None:
    (api,), (w0, w1), store = deployment(1, 2, lease_ttl_ms=2_000)
    name = f"kill-{uuid.uuid4().hex[:6]}"
    # rounds that last a while (6,000 rows, many anchors) so the kill lands mid-round
    api.create_index(name, 64, n_anchors=512, n1=200, n2=200, iterations=8, sweeps=3)
    data = Clusters(seed=21, dim=64, n_classes=8)
    f, c = data.sample(6000)
    r = api.http.post(f"/indexes/{name}/ingest", content=npz_bytes(features=f,
                      labels=one_hot(c, 8)), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    chunk = r.json()["chunk_id"]

    def started() -> Proc | None:
        for w in (w0, w1):
            if any(e.get("event") == "round_start" and e.get("chunks") == [chunk]
                   for e in w.log.events()):
                return w
        return None

    victim = wait_until(started, 120, 0.02, "a worker starting the round")
    survivor = w1 if victim is w0 else w0
    assert store.version(name) == 0  # still running
    victim.kill9()
    killed_at = time.monotonic()
    commit = survivor.log.wait_event("round_commit", 120, 0,
                                     lambda e: e.get("index") == name)
    took = time.monotonic() - killed_at
    print(f"\nkill -9 → the other worker committed the chunk after {took:.2f}s "
          f"(lease TTL 2 s)")
    assert commit["chunks"] == [chunk] and commit["round"] == 1
    info = _wait_idle(api, name, 1)
    assert info["model_version"] == 1 and info["n_items"] == 6000  # once, not twice
    [record] = api.rounds(name)
    assert record["worker"] == survivor.args[survivor.args.index("--worker-id") + 1]
