"""The held-out score's budget: while chunks wait beyond a round, a worker over its scoring
budget commits the round unscored (its record says so); the round that empties the queue is
always scored, and the queued-item count follows every commit."""

from __future__ import annotations

import dataclasses

from support.data import train_chunk

from hashstream.service.registry import IndexService
from hashstream.service.worker import RoundRunner
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.store.index_store import IndexStore

FAST = SDOHSettings(bits=16, n_anchors=64, n1=50, n2=50, seed=0)


def _queries(seed: int) -> object:
    return dataclasses.replace(train_chunk(seed, 60), role="query")


def test_rounds_over_the_budget_skip_the_score_and_the_last_is_scored(
        index_store: IndexStore) -> None:
    service = IndexService(index_store)
    service.create("ix", 8, FAST)
    service.ingest("ix", _queries(99))
    for seed in range(3):
        service.ingest("ix", train_chunk(seed, 120))
    assert index_store.backlog("ix")[0] == 60 + 360
    runner = RoundRunner(index_store, worker_id="A", max_round_items=120, score_budget=0.0,
                         lease_ttl_ms=60_000)
    while runner.step("ix"):
        pass
    records = index_store.rounds("ix")
    assert [r["n_items"] for r in records] == [120, 120, 120]
    # round 1 had spent nothing yet (0 ≤ 0 × its time): scored; round 2 is over the budget
    # with a chunk waiting: unscored; round 3 empties the queue: scored
    assert [r.get("score_skipped", False) for r in records] == [False, True, False]
    assert records[1]["map"] is None and records[1]["n_queries"] == 0
    assert records[0]["map"] is not None and records[2]["map"] is not None
    assert records[2]["n_queries"] == 60
    assert index_store.backlog("ix")[0] == 0  # every acknowledged item left the count


def test_a_generous_budget_scores_every_round(index_store: IndexStore) -> None:
    service = IndexService(index_store)
    service.create("ix", 8, FAST)
    service.ingest("ix", _queries(98))
    for seed in range(3):
        service.ingest("ix", train_chunk(seed, 120))
    runner = RoundRunner(index_store, worker_id="A", max_round_items=120, score_budget=10.0,
                         lease_ttl_ms=60_000)
    while runner.step("ix"):
        pass
    assert all(r["map"] is not None for r in index_store.rounds("ix"))
