"""Redis URLs: a cluster URL gives a RedisCluster with its startup nodes and credentials; what
the service cannot use is refused with the part that is wrong named."""

from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster
from support.redis_cluster import RedisClusterNodes

from hashstream.store.connection import RedisURLError, cluster_nodes, connect, is_cluster_url


def test_cluster_url_nodes_and_credentials() -> None:
    nodes, options = cluster_nodes("redis+cluster://al%40ice:p%3Ass@h1:7000,h2:7001/0")
    assert [(n.host, n.port) for n in nodes] == [("h1", 7000), ("h2", 7001)]
    assert options == {"username": "al@ice", "password": "p:ss"}
    nodes, options = cluster_nodes("rediss+cluster://:secret@10.0.0.1:6380")
    assert [(n.host, n.port) for n in nodes] == [("10.0.0.1", 6380)]
    assert options == {"password": "secret", "ssl": True}
    assert is_cluster_url("REDIS+CLUSTER://h:1") and not is_cluster_url("redis://h:1/0")


@pytest.mark.parametrize(("url", "part"), [
    ("redis+cluster://h1:7000/3", "database 0"),
    ("redis+cluster://h1", "host:port"),
    ("redis+cluster://h1:7000,:7001", "host:port"),
    ("redis+cluster://h1:port", "bad port"),
    ("redis://h1:7000", "not a cluster URL"),
    ("redis+cluster://h1:7000?ssl_cert_reqs=none", "no \\?options"),
])
def test_unusable_cluster_urls_are_refused(url: str, part: str) -> None:
    with pytest.raises(RedisURLError, match=part):
        cluster_nodes(url)


def test_connect_picks_the_client_by_scheme(redis_url: str,
                                            redis_cluster: RedisClusterNodes) -> None:
    single = connect(redis_url)
    try:
        assert type(single) is redis.Redis and single.ping()
    finally:
        single.close()
    cluster = connect(redis_cluster.cluster_url)
    try:
        assert isinstance(cluster, RedisCluster) and cluster.ping()
        assert {n.port for n in cluster.get_primaries()} == set(redis_cluster.ports)
    finally:
        cluster.close()
