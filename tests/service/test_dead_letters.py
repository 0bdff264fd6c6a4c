"""Poison chunks go to a dead-letter stream; the index's other chunks keep flowing.

In-process tests drive the real RoundRunner against a real Redis one pass at a time; the
service test poisons a live `serve` and restarts it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from support.data import train_chunk

from hashstream.service.chunks import Chunk, ParsedChunk
from hashstream.service.registry import IndexService
from hashstream.service.worker import RoundRunner
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.store.index_store import IndexStore

FAST = SDOHSettings(bits=16, n_anchors=64, n1=50, n2=50, query_hidden=32, query_steps=10,
                    seed=0)
DIM = 8


@pytest.fixture
def store(redis_client: redis.Redis, session_prefix: str, hs: Any) -> Iterator[IndexStore]:
    yield IndexStore(redis_client, f"{session_prefix}-{hs.unique('dl')}")


def _parsed(seed: int, n: int = 120, ids: Any = None) -> ParsedChunk:
    return train_chunk(seed, n, DIM, ids)


def _poison(store: IndexStore, name: str, n: int = 120, first_id: int = 10_000) -> str:
    """A chunk the API would refuse (NaN features), written straight into the stream, as a bug
    or another client could: the round that learns it raises."""
    x = np.full((n, DIM), np.nan, dtype=np.float32)
    chunk = Chunk(x, ClassLists(np.arange(n + 1), np.zeros(n, np.int32), 1),
                  np.arange(first_id, first_id + n, dtype=np.int64), "train")
    return store.enqueue(name, chunk.to_fields())


def _committed_chunks(store: IndexStore, name: str) -> list[str]:
    return [c for r in store.rounds(name) for c in r["chunks"]]


def _run(runner: RoundRunner, name: str, passes: int = 12) -> None:
    for _ in range(passes):
        runner.step(name)


def test_poison_is_isolated_dead_lettered_after_k_attempts(store: IndexStore) -> None:
    service = IndexService(store)
    service.create("p", DIM, FAST)
    good_a = service.ingest("p", _parsed(1))["chunk_id"]
    poison = _poison(store, "p")
    good_b = service.ingest("p", _parsed(2))["chunk_id"]
    runner = RoundRunner(store, max_attempts=3, poll_ms=1)
    _run(runner, "p")
    committed = _committed_chunks(store, "p")
    assert sorted(committed) == sorted([good_a, good_b]), committed  # each exactly once
    assert store.queue_depth("p") == 0
    [(entry_id, fields)] = store.dead_letters("p")
    assert fields[b"dl:chunk_id"].decode() == poison
    assert int(fields[b"dl:attempts"]) == 3
    history = json.loads(fields[b"dl:history"])
    assert len(history) == 3 and all("NaN" in h["error"] for h in history), history
    assert all(h["worker"] == runner.id for h in history)
    # the dead letter keeps the chunk itself: decodable, same items
    assert Chunk.from_fields(fields).n == 120
    assert store.attempts("p", [poison, good_a, good_b]) == {poison: 0, good_a: 0, good_b: 0}


def test_worker_deaths_count_as_attempts(store: IndexStore) -> None:
    """A worker that dies mid-round never records a failure; its round start still counted."""
    service = IndexService(store)
    service.create("d", DIM, FAST)
    cid = service.ingest("d", _parsed(3))["chunk_id"]
    for _ in range(3):  # three workers each started a round with it and were killed
        store.start_attempt("d", [cid])
    RoundRunner(store, max_attempts=3).step("d")
    [(_, fields)] = store.dead_letters("d")
    assert fields[b"dl:chunk_id"].decode() == cid
    assert b"did not finish" in fields[b"dl:reason"]
    assert store.version("d") == 0 and store.queue_depth("d") == 0


def test_corrupt_and_wrong_dimension_entries_dead_letter_at_once(store: IndexStore) -> None:
    service = IndexService(store)
    service.create("c", DIM, FAST)
    corrupt = store.enqueue("c", {"role": b"train", "features": b"not an array"})
    wide = Chunk(np.zeros((50, DIM + 1), np.float32), ClassLists.from_lists([[0]] * 50),
                 np.arange(50, dtype=np.int64), "train")
    wrong_dim = store.enqueue("c", wide.to_fields())
    good = service.ingest("c", _parsed(4))["chunk_id"]
    _run(RoundRunner(store), "c", passes=3)
    assert _committed_chunks(store, "c") == [good]
    reasons = {f[b"dl:chunk_id"].decode(): f[b"dl:reason"].decode()
               for _, f in store.dead_letters("c")}
    assert set(reasons) == {corrupt, wrong_dim}
    assert "corrupt" in reasons[corrupt] and "dimension" in reasons[wrong_dim]


def test_round_memory_budget_splits_rounds_and_refuses_what_never_fits(store: IndexStore
                                                                       ) -> None:
    service = IndexService(store)
    service.create("m", DIM, FAST)
    small = [service.ingest("m", _parsed(s))["chunk_id"] for s in (5, 6)]
    runner = RoundRunner(store)
    queued = [Chunk.from_fields(f) for _, f in store.r.xrange(store.keys("m").stream)]
    one = runner._round_bytes(service.config("m"), queued[:1])
    two = runner._round_bytes(service.config("m"), queued)
    budget = (one + two) // 2  # one chunk fits, two together do not
    big = service.ingest("m", _parsed(7, n=400))["chunk_id"]
    _run(RoundRunner(store, max_round_bytes=budget), "m", passes=5)
    assert [r["chunks"] for r in store.rounds("m")] == [[small[0]], [small[1]]]
    [(_, fields)] = store.dead_letters("m")
    assert fields[b"dl:chunk_id"].decode() == big
    assert b"HASHSTREAM_MAX_ROUND_BYTES" in fields[b"dl:reason"]


def test_dead_letters_survive_a_restart_and_can_be_requeued(start_server: Any, store_for: Any,
                                                            hs: Any) -> None:
    server = start_server("dead", workers=1, max_attempts=2)
    store = store_for("dead")
    name = hs.unique("dead")
    server.create_index(name, 16)
    clusters = hs.Clusters(8, dim=16, n_classes=3)
    x, cls = clusters.sample(200)
    server.ingest(name, hs.json_chunk(x, cls))
    server.wait_idle(name)
    n = 100
    poison = Chunk(np.full((n, 16), np.nan, np.float32), ClassLists.from_lists([[0]] * n),
                   np.arange(5_000, 5_000 + n, dtype=np.int64), "train")
    poison_id = store.enqueue(name, poison.to_fields())
    later = server.ingest(name, hs.json_chunk(*clusters.sample(200)))["chunk_id"]

    def dead() -> list[dict[str, Any]]:
        r = server.http.get(f"/indexes/{name}/dead-letters")
        assert r.status_code == 200, r.text
        return list(r.json()["dead_letters"])

    [entry] = hs.wait_until(dead, 90, 0.1, "the poison chunk in the dead letters")
    assert entry["chunk_id"] == poison_id and entry["attempts"] == 2 and entry["items"] == n
    assert len(entry["history"]) == 2 and "NaN" in entry["history"][0]["error"]
    info = server.wait_idle(name, min_version=2)
    assert info["n_items"] == 400 and info["dead_letters"] == 1
    assert later in [c for r in server.rounds(name) for c in r["chunks"]]
    metrics = server.http.get("/metrics").text
    assert f'hashstream_dead_letters{{index="{name}"}} 1.0' in metrics
    server.stop()

    server = start_server("dead", workers=0, max_attempts=2)
    [again] = dead()
    assert again == entry
    r = server.http.post(f"/indexes/{name}/dead-letters/{entry['id']}/requeue")
    assert r.status_code == 202, r.text
    assert dead() == [] and store.queue_depth(name) == 1
    requeued = Chunk.from_fields(store.r.xrange(store.keys(name).stream)[0][1])
    assert requeued.n == n and np.isnan(requeued.features).all()
    hs.assert_problem(server.http.post(f"/indexes/{name}/dead-letters/{entry['id']}/requeue"),
                      404, "id")
    hs.assert_problem(server.http.delete(f"/indexes/{name}/dead-letters/nonsense"), 422, "id")
    # back with a worker: it fails again, returns to the dead letters, and can be deleted
    server.stop()
    server = start_server("dead", workers=1, max_attempts=2)
    [back] = hs.wait_until(dead, 90, 0.1, "the requeued chunk back in the dead letters")
    assert back["chunk_id"] != poison_id and back["attempts"] == 2
    assert server.http.delete(f"/indexes/{name}/dead-letters/{back['id']}").status_code == 204
    assert dead() == [] and server.info(name)["n_items"] == 400


def test_a_recreated_index_never_reuses_the_old_ones_cache(store: IndexStore) -> None:
    """Worker A caches index "r" at version 1; "r" is deleted and made again, and worker B
    commits its round 1; A's next round must build on B's state, not its cached one."""
    service = IndexService(store)
    service.create("r", DIM, FAST)
    service.ingest("r", _parsed(11, n=200))
    a, b = RoundRunner(store), RoundRunner(store)
    assert a.step("r") and store.version("r") == 1
    service.delete("r")
    service.create("r", DIM, FAST)
    service.ingest("r", _parsed(12, n=120))
    assert b.step("r") and store.version("r") == 1
    service.ingest("r", _parsed(13, n=130))
    assert a.step("r") and store.version("r") == 2
    assert [r["n_database"] for r in store.rounds("r")] == [120, 250]
