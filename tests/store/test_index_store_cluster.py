"""The store on a real 3-master Redis Cluster: every per-index operation stays on the index's
slot (create, commit, delete are atomic there), indexes spread over the masters, liveness is
one hash-tagged key, and two round runners share indexes with each chunk committed once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from redis.cluster import key_slot
from support.data import train_chunk
from support.redis_cluster import RedisClusterNodes

from hashstream.service.chunks import ParsedChunk
from hashstream.service.registry import IndexService
from hashstream.service.worker import RoundRunner
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.store.connection import connect
from hashstream.store.index_store import IndexStore, RoundCommit
from hashstream.store.keys import IndexKeys, registry_key

FAST = SDOHSettings(bits=16, n_anchors=64, n1=50, n2=50, seed=0)
DIM = 8


@pytest.fixture
def cluster_store(redis_cluster: RedisClusterNodes) -> Iterator[IndexStore]:
    client = connect(redis_cluster.cluster_url)
    try:
        yield IndexStore(client, f"hsc-{uuid.uuid4().hex[:8]}")
    finally:
        client.close()


def _names_on_every_master(nodes: RedisClusterNodes, store: IndexStore, per: int = 1
                           ) -> list[str]:
    """Index names whose slots fall on each master (``per`` each)."""
    owners: dict[int, list[str]] = {p: [] for p in nodes.ports}
    i = 0
    while any(len(v) < per for v in owners.values()):
        name = f"ix{i}-{uuid.uuid4().hex[:4]}"
        port = store.r.get_node_from_key(store.keys(name).config).port
        if len(owners[port]) < per:
            owners[port].append(name)
        i += 1
    return [n for names in owners.values() for n in names]


def _node_keys(nodes: RedisClusterNodes, store: IndexStore, name: str) -> list[bytes]:
    """The keys of ``name``'s slot, read on the master that owns it (no redirection)."""
    port = store.r.get_node_from_key(store.keys(name).config).port
    direct = nodes.node_client(port)
    try:
        pattern = f"{store.prefix}:{{{name}}}:*".replace("{", "\\{").replace("}", "\\}")
        return list(direct.scan_iter(match=pattern, count=1000))
    finally:
        direct.close()


def _parsed(seed: int, n: int) -> ParsedChunk:
    return train_chunk(seed, n, DIM)


def test_every_key_of_an_index_is_on_its_slot(cluster_store: IndexStore) -> None:
    keys = IndexKeys(cluster_store.prefix, "one")
    slots = {key_slot(k.encode()) for k in keys.all()}
    slots |= {key_slot(keys.segment(v).encode()) for v in (1, 99)}
    assert slots == {key_slot(b"one")}


def test_create_commit_delete_on_every_master(redis_cluster: RedisClusterNodes,
                                              cluster_store: IndexStore) -> None:
    store = cluster_store
    names = _names_on_every_master(redis_cluster, store)
    for name in names:
        assert store.create_index(name, {"dim": 4})
        assert not store.create_index(name, {"dim": 5})  # exists: the first config stays
        assert store.config(name) == {"dim": 4}
    assert store.list_indexes() == sorted(names)
    for name in names:
        eid = store.enqueue(name, {"role": b"train", "x": b"1"})
        lease = store.take_lease(name, "w", 10_000)
        assert lease is not None
        [(read, _)] = store.read_chunks(name, "w", 10, new=True)
        assert read == eid
        segment = {"codes": np.zeros((2, 2), np.uint8), "ids": np.arange(2, dtype=np.int64)}
        assert store.commit_round(name, 0, RoundCommit(ack_ids=[eid], segment=segment,
                                                       record={"round": 1}), lease=lease)
        assert store.version(name) == 1 and store.queue_depth(name) == 0
        store.release_lease(lease)
        # an idempotent enqueue is one script on the index's slot: a repeat queues nothing
        first = store.enqueue_once(name, {"x": b"2"}, 1, "k", "{}", 60.0)
        again = store.enqueue_once(name, {"x": b"2"}, 1, "k", "{}", 60.0)
        assert first[0] and again == (False, f"{first[1]} {{}}")
        assert store.queue_depth(name) == 1
        assert _node_keys(redis_cluster, store, name)
    for name in names:
        assert store.delete_index(name)
        assert _node_keys(redis_cluster, store, name) == []  # every key, on its own slot
    assert store.list_indexes() == []


def test_a_create_cut_off_before_the_registry_is_completed_by_the_next(
        cluster_store: IndexStore) -> None:
    store = cluster_store
    assert store.create_index("half", {"dim": 4})
    store.r.srem(registry_key(store.prefix), "half")  # died between the slot and the registry
    assert store.list_indexes() == []
    assert not store.create_index("half", {"dim": 9})
    assert store.list_indexes() == ["half"] and store.config("half") == {"dim": 4}
    assert store.delete_index("half") and store.list_indexes() == []


def test_liveness_is_one_key_readable_from_any_node(cluster_store: IndexStore) -> None:
    store = cluster_store
    store.heartbeat("w1", ttl_s=30, info={"hamming_kernel": "avx2"})
    store.heartbeat("w2", ttl_s=30)
    assert store.workers() == {"w1": {"hamming_kernel": "avx2"}, "w2": {}}
    assert store.drop_heartbeat("w2") and store.workers_alive() == 1


def test_two_runners_share_indexes_on_a_cluster_each_chunk_once(
        redis_cluster: RedisClusterNodes, cluster_store: IndexStore) -> None:
    store = cluster_store
    service = IndexService(store)
    names = _names_on_every_master(redis_cluster, store)
    sent: dict[str, list[str]] = {}
    for name in names:
        service.create(name, DIM, FAST)
        sent[name] = [service.ingest(name, _parsed(s, 120))["chunk_id"] for s in range(3)]
    # one chunk per round, so the turns alternate between the runners
    a = RoundRunner(store, worker_id="A", max_round_items=120)
    b = RoundRunner(store, worker_id="B", max_round_items=120)
    for _ in range(30):
        did = [r.step(n) for n in names for r in (a, b)]
        if not any(did) and all(store.queue_depth(n) == 0 for n in names):
            break
    workers: Counter[str] = Counter()
    for name in names:
        records: list[dict[str, Any]] = store.rounds(name)
        committed = [c for r in records for c in r["chunks"]]
        assert sorted(committed) == sorted(sent[name])  # each chunk once
        ids = np.concatenate([store.load_segment(name, v)["ids"]
                              for v in range(1, store.version(name) + 1)])
        assert len(ids) == len(np.unique(ids)) == 360
        workers.update(r["worker"] for r in records)
        assert all(isinstance(r["lease_token"], int) for r in records)
    assert set(workers) == {"A", "B"}, workers  # both took rounds


def test_a_partitioned_segment_spreads_over_slots_joins_back_and_is_deleted_whole(
        redis_cluster: RedisClusterNodes, cluster_store: IndexStore) -> None:
    store, name, parts = cluster_store, "big", 3
    store.create_index(name, {"dim": 4, "partitions": parts})
    rng = np.random.default_rng(0)
    n = 100
    lengths = rng.integers(0, 4, n)
    segment = {"codes": rng.integers(0, 256, (n, 8), dtype=np.uint8),
               "ids": np.arange(n, dtype=np.int64) + 1000,
               "label_indptr": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
               "label_indices": rng.integers(0, 50, int(lengths.sum())).astype(np.int64),
               "version": np.asarray(1)}
    lease = store.take_lease(name, "w", 10_000)
    assert lease is not None
    # a loser first: its parts are written under its token, its commit is fenced off
    loser = store.take_lease(name, "x", 10_000)
    assert loser is None
    stale = type(lease)(name, "zombie", lease.token - 1 if lease.token > 1 else 999, 10_000)
    assert not store.commit_round(name, 0, RoundCommit(segment=segment, record={"round": 1}),
                                  lease=stale, partitions=parts)
    assert store.commit_round(name, 0, RoundCommit(segment=segment, record={"round": 1}),
                              lease=lease, partitions=parts)
    by_part = store.load_segment_parts(name, 1)
    assert sorted(by_part) == [0, 1, 2]
    slots = {key_slot(store.keys(name).partition_segment(p, 1, lease.token).encode())
             for p in range(parts)}
    assert len(slots) == 3  # three hash tags
    for p, part in by_part.items():
        assert (part["ids"] % parts == p).all()
        for row, item in enumerate(part["ids"]):
            i = int(item) - 1000
            lo, hi = part["label_indptr"][row], part["label_indptr"][row + 1]
            indptr = segment["label_indptr"]
            want = segment["label_indices"][indptr[i]:indptr[i + 1]]
            np.testing.assert_array_equal(part["label_indices"][lo:hi], want)
            np.testing.assert_array_equal(part["codes"][row], segment["codes"][i])
    joined = store.load_segment(name, 1)
    assert sorted(joined["ids"].tolist()) == segment["ids"].tolist()
    assert len(joined["label_indices"]) == len(segment["label_indices"])
    assert store.load_segment_parts(name, 1, partitions=[2]).keys() == {2}
    assert store.delete_index(name)
    client = store.r
    for token in (lease.token, stale.token):  # the winner's parts and the loser's orphans
        for p in range(parts):
            assert not client.exists(store.keys(name).partition_segment(p, 1, token))
