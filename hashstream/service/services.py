"""The service objects an API process holds, opened on one Redis client and closed with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hashstream.service.dead_letters import DeadLetters
from hashstream.service.items import ItemService
from hashstream.service.registry import IndexService
from hashstream.service.replicas import SearchService
from hashstream.store.connection import connect
from hashstream.store.index_store import IndexStore


@dataclass
class Services:
    """Registry and ingest, search replicas, single items and dead letters over one store."""

    client: Any  # redis.Redis or RedisCluster (store.connection)
    indexes: IndexService
    search: SearchService
    dead_letters: DeadLetters
    items: ItemService

    @classmethod
    def open(cls, redis_url: str, key_prefix: str, *, max_k: int,
             scan_backend: Literal["auto", "native", "numpy"],
             replica_wait_ms: int = 5000, serve_partitions: list[int] | None = None,
             search_tables: Literal["auto", "off"] = "auto",
             redis_timeout_s: float = 60.0) -> Services:
        client = connect(redis_url, health_check_interval=30, socket_timeout=redis_timeout_s)
        store = IndexStore(client, key_prefix)
        search = SearchService(store, max_k, scan_backend, replica_wait_ms, serve_partitions,
                               search_tables)
        return cls(client, IndexService(store), search, DeadLetters(store), ItemService(search))

    def close(self) -> None:
        self.client.close()
