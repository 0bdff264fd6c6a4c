"""The Redis Cluster fixture works: keys in every master's slot range round-trip through
``RedisCluster``, and each lands on the master that owns its slot."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from redis.cluster import RedisCluster, key_slot
from support.redis_cluster import RedisClusterNodes, slot_ranges, start_redis_cluster


def _keys_per_master(tag: str, per_range: int = 5) -> list[list[str]]:
    """``per_range`` keys for each of the three masters' slot ranges."""
    ranges = slot_ranges(3)
    out: list[list[str]] = [[] for _ in ranges]
    i = 0
    while any(len(keys) < per_range for keys in out):
        key = f"{tag}:{i}"
        slot = key_slot(key.encode())
        r = next(j for j, (lo, hi) in enumerate(ranges) if lo <= slot <= hi)
        if len(out[r]) < per_range:
            out[r].append(key)
        i += 1
    return out


def _round_trip(nodes: RedisClusterNodes) -> None:
    tag = f"hstest-cluster-{uuid.uuid4().hex[:8]}"
    groups = _keys_per_master(tag)
    client: RedisCluster = nodes.client()
    try:
        masters = {n.port for n in client.get_primaries()}
        assert masters == set(nodes.ports)
        for keys in groups:
            for key in keys:
                assert client.set(key, f"value-of-{key}")
        for keys in groups:
            for key in keys:
                assert client.get(key) == f"value-of-{key}".encode()
        # Each range's keys live on one master, and a different one per range.
        owners = []
        for keys in groups:
            ports = {client.get_node_from_key(key).port for key in keys}
            assert len(ports) == 1
            port = ports.pop()
            direct = nodes.node_client(port)
            try:
                assert [direct.get(key) for key in keys] == [f"value-of-{k}".encode()
                                                             for k in keys]
            finally:
                direct.close()
            owners.append(port)
        assert sorted(owners) == sorted(nodes.ports)
        for keys in groups:
            for key in keys:
                client.delete(key)
    finally:
        client.close()


def test_cluster_keys_in_every_masters_range_round_trip(redis_cluster: RedisClusterNodes
                                                        ) -> None:
    assert len(redis_cluster.ports) == 3
    _round_trip(redis_cluster)


def test_cluster_formed_without_redis_cli(tmp_path: Path) -> None:
    """The fallback when no redis-cli is at hand: slots and MEET through redis-py."""
    nodes = start_redis_cluster(tmp_path, use_cli=False)
    try:
        assert nodes.formed_by.startswith("CLUSTER ADDSLOTS")
        _round_trip(nodes)
    finally:
        nodes.stop()
    assert all(p.poll() is not None for p in nodes.processes) or not nodes.processes


@pytest.mark.parametrize("n", [1, 3, 4])
def test_slot_ranges_cover_every_slot_once(n: int) -> None:
    ranges = slot_ranges(n)
    covered = [s for lo, hi in ranges for s in range(lo, hi + 1)]
    assert covered == list(range(16384))
