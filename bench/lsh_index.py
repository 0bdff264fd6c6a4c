"""Shared by the replica benchmarks: an LSH index with one real round (so an encoder and a class
map exist) that synthetic segments are then committed onto."""

from __future__ import annotations

import numpy as np

from hashstream.service.chunks import ClientLabels, ParsedChunk
from hashstream.service.registry import IndexService
from hashstream.service.worker import RoundRunner
from hashstream.store.index_store import IndexStore

FIRST_ROUND_ITEMS = 200


def lsh_index_with_one_round(store: IndexStore, name: str, dim: int, bits: int,
                             seed: int = 0, partitions: int = 1) -> int:
    """Create ``name`` (method lsh) and commit its first round of 200 items with ids 0–199
    and three classes; returns the next free id."""
    service = IndexService(store)
    service.create_from_request(name, dim, {"bits": bits, "seed": seed}, None, method="lsh",
                                partitions=partitions)
    rng = np.random.default_rng(0)
    n0 = FIRST_ROUND_ITEMS
    labels = ClientLabels(np.arange(n0 + 1), (np.arange(n0) % 3).astype(np.int64), "int")
    service.ingest(name, ParsedChunk(rng.standard_normal((n0, dim)).astype(np.float32),
                                     labels, np.arange(n0), "train"))
    assert RoundRunner(store).step(name) and store.version(name) == 1
    return n0
