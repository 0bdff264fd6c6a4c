"""Round runners of a pool taking turns on one index: each catches up with the rounds the
others committed by reading only their segments, and builds on their state."""

from __future__ import annotations

from typing import Any

from support.data import train_chunk

from hashstream.service.chunks import ParsedChunk
from hashstream.service.registry import IndexService
from hashstream.service.worker import RoundRunner
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.store.index_store import IndexStore

FAST = SDOHSettings(bits=16, n_anchors=64, n1=50, n2=50, seed=0)
DIM = 8


class CountingStore(IndexStore):
    """A real IndexStore that counts the segments it reads."""

    def __init__(self, inner: IndexStore) -> None:
        super().__init__(inner.r, inner.prefix)
        self.segments_read: list[int] = []

    def load_segment(self, name: str, round_: int) -> Any:
        self.segments_read.append(round_)
        return super().load_segment(name, round_)


def _parsed(seed: int, n: int) -> ParsedChunk:
    return train_chunk(seed, n, DIM)


def test_runners_taking_turns_read_only_the_segments_they_missed(index_store: IndexStore
                                                                 ) -> None:
    service = IndexService(index_store)
    service.create("ix", DIM, FAST)
    a_store, b_store = CountingStore(index_store), CountingStore(index_store)
    a = RoundRunner(a_store, worker_id="A", lease_ttl_ms=60_000)  # no keeper: slow rounds
    b = RoundRunner(b_store, worker_id="B", lease_ttl_ms=60_000)
    for turn in range(6):
        service.ingest("ix", _parsed(turn, 120))
        assert (a if turn % 2 == 0 else b).step("ix")
    records = index_store.rounds("ix")
    assert [r["worker"] for r in records] == ["A", "B"] * 3
    assert [r["n_database"] for r in records] == [120 * (i + 1) for i in range(6)]
    # A ran rounds 1, 3, 5: before 3 it read segment 2, before 5 segment 4, never one twice;
    # B ran 2, 4, 6 and read 1, 3, 5
    assert a_store.segments_read == [2, 4]
    assert b_store.segments_read == [1, 3, 5]
