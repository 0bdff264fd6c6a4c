"""Open a Redis client from a URL: a single server (``redis://``, ``rediss://``, ``unix://``) or
a Redis Cluster (``redis+cluster://`` / ``rediss+cluster://``, redis-py's ``RedisCluster``).

Cluster URLs list one or more startup nodes, ``redis+cluster://[user:password@]host:port
[,host:port…]``; the client discovers the rest. A cluster has only database 0, so a path
naming another database is refused rather than ignored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme → TLS

Client = redis.Redis | RedisCluster


class RedisURLError(ValueError):
    """A Redis URL this service cannot use (the message says which part is wrong)."""


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """The startup nodes of a cluster URL and the client options it carries (credentials,
    TLS)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise RedisURLError(f"not a cluster URL: {url!r}")
    # urlsplit understands one host only: split the credentials and the host list by hand.
    rest, _, query = rest.partition("?")
    if query:
        raise RedisURLError("a cluster URL takes no ?options (set them in the environment of "
                            f"the client instead): {query!r}")
    netloc, _, path = rest.partition("/")
    if path not in ("", "0"):
        raise RedisURLError(f"a Redis Cluster has only database 0; the URL names {path!r}")
    creds, at, hosts = netloc.rpartition("@")
    options: dict[str, Any] = {}
    if at:
        user, colon, password = creds.partition(":")
        if user:
            options["username"] = unquote(user)
        if colon:
            options["password"] = unquote(password)
    if CLUSTER_SCHEMES[scheme.lower()]:
        options["ssl"] = True
    nodes = []
    for part in hosts.split(","):
        parsed = urlsplit(f"//{part}")
        try:
            port = parsed.port
        except ValueError as exc:
            raise RedisURLError(f"bad port in cluster node {part!r}") from exc
        if not parsed.hostname or port is None:
            raise RedisURLError(f"cluster node {part!r} must be host:port")
        nodes.append(ClusterNode(parsed.hostname, port))  # type: ignore[no-untyped-call]
    return nodes, options


def connect(url: str, **options: Any) -> Any:
    """A client for ``url``: ``RedisCluster`` for the cluster schemes, else ``redis.Redis``.

    ``options`` go to the client (e.g. ``health_check_interval``). Typed ``Any``: the two
    clients share the commands this service uses but no declared interface."""
    if is_cluster_url(url):
        nodes, from_url = cluster_nodes(url)
        return RedisCluster(startup_nodes=nodes, **from_url, **options)
    return redis.Redis.from_url(url, **options)
