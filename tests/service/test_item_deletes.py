"""Item deletes in-process on a real Redis: every replica misses a deleted item at once (also one
mid-load, whose swap must not bring it back), a delete cancels the upserts queued before it and
not those after, a delete landing just before a round's commit is not lost, two deletes of one
id report it once, a fresh replica and a fresh worker replay the log, removed entries are
compacted in the background, partitions. Interleavings are forced with hooks in real store
subclasses, never with sleeps; no timed asserts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from support.gated_store import GatedStore
from support.net import wait_until

from hashstream.service.chunks import ClientLabels, ParsedChunk
from hashstream.service.errors import Conflict, NotFound
from hashstream.service.items import ItemService
from hashstream.service.registry import IndexService
from hashstream.service.replicas import SearchService
from hashstream.service.worker import RoundRunner
from hashstream.store.index_store import IndexStore

NAME = "items"
DIM = 8


def make_index(store: IndexStore, partitions: int = 1) -> IndexService:
    service = IndexService(store)
    service.create_from_request(NAME, DIM, {"bits": 64}, None, method="lsh",
                                partitions=partitions)
    return service


def ingest(store: IndexStore, ids: Any, seed: int, classes: Any = None) -> str:
    """A training chunk of the given ids (one class each: ``classes`` or id mod 3)."""
    ids = np.asarray(ids, dtype=np.int64)
    rng = np.random.default_rng(seed)
    cls = np.asarray(classes if classes is not None else ids % 3, dtype=np.int64)
    labels = ClientLabels(np.arange(ids.size + 1), cls, "int")
    chunk = ParsedChunk(rng.standard_normal((ids.size, DIM)).astype(np.float32), labels, ids,
                        "train")
    return str(IndexService(store).ingest(NAME, chunk)["chunk_id"])


def all_hits(search: SearchService, k: int = 10_000) -> set[int]:
    """Every id a search returns (k covers the whole index)."""
    results = search.search_vectors(NAME, np.zeros((1, DIM), np.float32), k, DIM).rows()
    return {h["id"] for h in results[0]}


def n_items(store: IndexStore) -> int:
    return int(IndexService(store).describe(NAME)["n_items"])


class HookedStore(IndexStore):
    """A real IndexStore that runs ``hook`` once, right before its first round commit."""

    hook: Callable[[], Any] | None = None

    def commit_round(self, *args: Any, **kwargs: Any) -> bool:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super().commit_round(*args, **kwargs)


@pytest.fixture
def store(index_store: IndexStore) -> IndexStore:
    make_index(index_store)
    ingest(index_store, range(100), seed=0)
    assert RoundRunner(index_store).step(NAME) and index_store.version(NAME) == 1
    return index_store


def test_every_replica_misses_a_deleted_item_as_soon_as_the_delete_answers(
        store: IndexStore) -> None:
    here, there = SearchService(store), SearchService(store)  # two API processes
    assert all_hits(here) == all_hits(there) == set(range(100))
    answer = ItemService(here).delete(NAME, [3, 5, 5, 999, -1])
    assert (answer["deleted"], answer["unknown"]) == ([3, 5], [-1, 999])
    for search in (here, there):
        assert all_hits(search) == set(range(100)) - {3, 5}
        for item in (3, 5):
            with pytest.raises(NotFound):
                search.search_item(NAME, item, 5)
            with pytest.raises(NotFound):
                ItemService(search).item(NAME, item)
    assert n_items(store) == 98
    again = ItemService(there).delete(NAME, [3, 4])
    assert (again["deleted"], again["unknown"]) == ([4], [3])  # deleted once, by one request
    assert n_items(store) == 97 and 4 not in all_hits(here)


def test_a_replica_mid_load_hides_deleted_items_and_its_swap_does_not_revive_them(
        redis_client: Any, key_prefix: str, store: IndexStore) -> None:
    gated = GatedStore(redis_client, key_prefix)
    search = SearchService(gated, replica_wait_ms=60_000)
    assert search.replica(NAME).version == 1
    ingest(store, [7, *range(100, 170)], seed=1)  # an upsert of 7 and new items
    assert RoundRunner(store).step(NAME) and store.version(NAME) == 2
    gated.gate_version = 2
    assert search.replica(NAME).version == 1  # starts the background load, answers from v1
    assert gated.reached.wait(60)
    # another process, at version 2, deletes 7 (its entry of round 2) and 150 (round 2 only)
    done = ItemService(SearchService(store)).delete(NAME, [7, 150])
    assert done["deleted"] == [7, 150] and done["version"] == 2
    # and, at version 3 (a round the stuck load will not reach), 180
    ingest(store, range(170, 240), seed=9)
    assert RoundRunner(store).step(NAME) and store.version(NAME) == 3
    assert ItemService(SearchService(store)).delete(NAME, [180])["version"] == 3
    rep = search.replica(NAME)
    assert rep.version == 1 and rep.epoch == 2
    assert 7 not in all_hits(search)  # its round-1 entry is hidden at once
    gated.release.set()
    rep = search.replica(NAME, min_version=3)
    hits = all_hits(search)
    assert rep.version == 3 and not {7, 150, 180} & hits
    assert hits == (set(range(240)) - {7, 150, 180})
    assert n_items(store) == 237


def test_a_delete_cancels_the_upserts_queued_before_it_not_those_after(
        store: IndexStore) -> None:
    items, runner = ItemService(SearchService(store)), RoundRunner(store)
    ingest(store, [5, 6, *range(200, 268)], seed=2, classes=[7] * 70)  # upserts 5 and 6
    assert items.delete(NAME, [5])["deleted"] == [5]
    ingest(store, [5, *range(300, 369)], seed=3, classes=[8] * 70)  # 5 again, after it
    assert runner.step(NAME) and store.version(NAME) == 2  # both chunks in one round
    record = store.rounds(NAME)[-1]
    assert record["cancelled"] == 1 and record["n_items"] == 139
    got = items.item(NAME, 5, min_version=2)
    assert got["round"] == 2 and got["labels"] == [8]  # the later chunk's item
    assert items.item(NAME, 6)["labels"] == [7]
    assert n_items(store) == record["n_database"] == 100 + 68 + 69


def test_a_delete_landing_just_before_the_commit_is_not_lost(
        redis_client: Any, key_prefix: str, store: IndexStore) -> None:
    hooked = HookedStore(redis_client, key_prefix)
    items = ItemService(SearchService(store))
    ingest(store, [9, *range(400, 469)], seed=4)  # an upsert of 9, accepted before the delete
    # the round has filtered its rows; then 9 is deleted; its commit must filter again
    hooked.hook = lambda: items.delete(NAME, [9])
    assert RoundRunner(hooked).step(NAME) and store.version(NAME) == 2
    assert store.rounds(NAME)[-1]["cancelled"] == 1
    with pytest.raises(NotFound):
        items.item(NAME, 9)
    assert 9 not in all_hits(items.search) and n_items(store) == 99 + 69


def test_two_deletes_decided_at_once_report_each_id_once(redis_client: Any, key_prefix: str,
                                                         store: IndexStore) -> None:
    class Racing(IndexStore):
        """The other delete commits right before this one's script runs."""

        def __init__(self, *args: Any, other: Callable[[], Any]) -> None:
            super().__init__(*args)
            inner, first = self.deletes, [other]

            class Deletes:
                def __getattr__(self, attr: str) -> Any:
                    return getattr(inner, attr)

                def delete(self, *a: Any, **kw: Any) -> Any:
                    while first:
                        first.pop()()
                    return inner.delete(*a, **kw)

            self.deletes = Deletes()  # type: ignore[assignment]

    other = ItemService(SearchService(store))
    theirs: dict[str, Any] = {}
    racing = Racing(redis_client, key_prefix,
                    other=lambda: theirs.update(other.delete(NAME, [3, 4])))
    ours = ItemService(SearchService(racing)).delete(NAME, [3, 5])
    assert (theirs["deleted"], theirs["unknown"]) == ([3, 4], [])
    assert (ours["deleted"], ours["unknown"]) == ([5], [3])
    assert n_items(store) == 97


def test_a_fresh_replica_and_a_fresh_worker_replay_the_delete_log(store: IndexStore) -> None:
    ItemService(SearchService(store)).delete(NAME, [1, 2])
    ingest(store, [2, *range(500, 569)], seed=5)  # 2 comes back, as a new item
    assert RoundRunner(store).step(NAME)  # a worker with nothing cached
    fresh = SearchService(store)
    assert all_hits(fresh) == (set(range(100)) - {1}) | set(range(500, 569))
    assert ItemService(fresh).item(NAME, 2)["round"] == 2
    ItemService(fresh).delete(NAME, [2, 500])
    ingest(store, range(600, 670), seed=6)
    assert RoundRunner(store).step(NAME)
    assert n_items(store) == 99 + 69 - 1 + 70 - 1 == len(all_hits(SearchService(store)))


def test_removed_entries_are_compacted_in_the_background(store: IndexStore) -> None:
    ingest(store, range(100, 3000), seed=7)
    assert RoundRunner(store).step(NAME)
    search = SearchService(store)
    items = ItemService(search)
    before = {i: items.item(NAME, i) for i in (2999, 1500, 7)}
    doomed = list(range(10, 1510))
    for start in range(0, len(doomed), 500):
        assert len(items.delete(NAME, doomed[start:start + 500])["deleted"]) == 500
    live = search.replicas[NAME]

    def compacted() -> bool:
        search.replica(NAME)
        return live.indexes["pairs"].removed_count == 0 and live.deletes_held == 3

    wait_until(compacted, 60, what="the background compaction")
    assert len(live.indexes["pairs"]) == len(live.labels) == 3000 - 1500
    assert all_hits(search) == set(range(3000)) - set(doomed)
    for i in (2999, 7):  # positions moved; codes, labels and rounds did not
        assert items.item(NAME, i) == before[i]
    with pytest.raises(NotFound):
        items.item(NAME, 1500)


def test_partitioned_deletes_and_a_replica_serving_some_partitions(
        redis_client: Any, key_prefix: str) -> None:
    store = IndexStore(redis_client, key_prefix)
    make_index(store, partitions=3)
    ingest(store, range(90), seed=8)
    assert RoundRunner(store).step(NAME)
    search = SearchService(store)
    answer = ItemService(search).delete(NAME, [0, 1, 2, 3, 200])
    assert answer["deleted"] == [0, 1, 2, 3] and answer["unknown"] == [200]
    assert all_hits(search) == set(range(4, 90)) and n_items(store) == 86
    some = ItemService(SearchService(store, serve_partitions=[0]))
    assert some.item(NAME, 6)["id"] == 6  # partition 0
    with pytest.raises(NotFound):
        some.item(NAME, 3)  # deleted, in partition 0
    with pytest.raises(Conflict) as elsewhere:
        some.delete(NAME, [7])  # partition 1: not served here
    assert elsewhere.value.field == "ids" and n_items(store) == 86


class LastLookStore(IndexStore):
    """A real IndexStore whose background loader, once armed, stops right after its
    ``pause_at``-th state read (counted from arming) until the test releases it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pause_at: int | None = None
        self.reads = 0
        self.reached = threading.Event()
        self.release = threading.Event()

    def search_state(self, name: str) -> Any:
        state = super().search_state(name)
        if self.pause_at is not None and threading.current_thread().name.startswith(
                "replica-refresh"):
            self.reads += 1
            if self.reads == self.pause_at:
                self.reached.set()
                assert self.release.wait(60), "the test never released the loader"
        return state


def test_a_delete_caught_up_while_the_loader_takes_its_last_look_still_reaches_the_indexes(
        redis_client: Any, key_prefix: str, store: IndexStore) -> None:
    paused = LastLookStore(redis_client, key_prefix)
    search = SearchService(paused)
    items = ItemService(search)
    assert items.delete(NAME, [1])["deleted"] == [1]
    live = search.replicas[NAME]
    wait_until(lambda: search.replica(NAME) and live.deletes_held == 1 and not live.loading,
               60, what="the first delete in the indexes")
    # the next loader: read 1 finds epoch 2 and applies it, read 2 finds nothing more and is
    # held there, while a search catches up on epoch 3 and asks for a load
    paused.pause_at = 2
    assert items.delete(NAME, [2])["deleted"] == [2]
    assert search.replica(NAME).epoch == 2  # caught up: starts the loader
    assert paused.reached.wait(60)
    assert ItemService(SearchService(store)).delete(NAME, [3])["deleted"] == [3]
    assert search.replica(NAME).epoch == 3 and live.loading
    paused.release.set()
    wait_until(lambda: live.deletes_held == 3 and not live.loading, 60,
               what="the loader to apply the delete asked for during its last look")
    assert live.indexes["pairs"].contains(np.array([1, 2, 3, 4])).tolist() == [
        False, False, False, True]
