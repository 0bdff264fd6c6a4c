"""IndexStore.snapshot: an index at one moment in one script on its slot (what the dashboard
and /metrics read): version, queue depth and lag, latest record with its commit seconds, dead
letters, lease holder, config; on one server and on a real Redis Cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from support.net import wait_until
from support.redis_cluster import RedisClusterNodes

from hashstream.store.codec import encode_array
from hashstream.store.connection import connect
from hashstream.store.index_store import IndexStore, RoundCommit


@pytest.fixture
def cluster_store(redis_cluster: RedisClusterNodes) -> Iterator[IndexStore]:
    client = connect(redis_cluster.cluster_url)
    try:
        yield IndexStore(client, f"hss-{uuid.uuid4().hex[:8]}")
    finally:
        client.close()


def _chunk(value: int) -> dict[str, bytes]:
    return {"role": b"train", "features": encode_array(np.full((2, 4), value))}


def _walk_through_a_round(store: IndexStore) -> None:
    name = f"ix-{uuid.uuid4().hex[:8]}"
    config = {"name": name, "dim": 4, "created": 1.5}
    assert store.create_index(name, config)
    snap = store.snapshot(name)
    assert (snap.version, snap.queue_depth, snap.dead_letters) == (0, 0, 0)
    assert snap.last is None and snap.lease_holder is None and snap.config == config
    assert snap.oldest_waiting_ms is None and snap.queue_lag_seconds == 0

    first, second, poison = (store.enqueue(name, _chunk(v)) for v in (1, 2, 3))
    snap = wait_until(lambda: (s := store.snapshot(name)).queue_lag_seconds > 0 and s,
                      what="the oldest chunk to have waited")
    assert snap.queue_depth == 3
    assert snap.oldest_waiting_ms == int(first.split("-")[0])
    assert snap.newest_waiting_ms == int(poison.split("-")[0])
    assert snap.queue_lag_seconds == (snap.now_ms - snap.oldest_waiting_ms) / 1000

    lease = store.take_lease(name, "worker-a", 30_000)
    assert lease is not None and store.snapshot(name).lease_holder == "worker-a"
    store.read_chunks(name, "worker-a", 10, new=True)
    assert store.dead_letter(name, poison, _chunk(3), "poison", lease=lease)
    record = {"round": 1, "model_version": 1, "seconds": {"total": 0.5}}
    segment = {"codes": np.zeros((4, 2), np.uint8), "ids": np.arange(4, dtype=np.int64)}
    assert store.commit_round(name, 0, RoundCommit(ack_ids=[first, second], segment=segment,
                                                   record=record), lease=lease)
    store.record_commit_seconds(name, 1, 0.25)
    store.release_lease(lease)
    snap = store.snapshot(name)
    assert (snap.version, snap.queue_depth, snap.dead_letters) == (1, 0, 1)
    assert snap.last == {**record, "seconds": {"total": 0.5, "commit": 0.25}}
    assert snap.lease_holder is None and snap.queue_lag_seconds == 0
    assert snap.newest_waiting_ms is None


def test_snapshot_follows_an_index_through_a_round(index_store: IndexStore) -> None:
    _walk_through_a_round(index_store)


def test_snapshot_on_a_cluster(cluster_store: IndexStore) -> None:
    _walk_through_a_round(cluster_store)
