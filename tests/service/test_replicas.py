"""Search replicas on a real Redis: a refresh appends only the new segments to the same
HammingIndex, upserts replace old codes without touching a version still being searched, a
search sees exactly one version while a refresh is half done, ``min_version`` waits (bounded)
and results equal a brute-force scan after many appends and upserts. Interleavings are forced
with events in a real IndexStore subclass, never with sleeps; no timed asserts."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from support.gated_store import GatedStore

from hashstream.api.app import create_app
from hashstream.service.chunks import ClientLabels, ParsedChunk
from hashstream.service.errors import Conflict, ReplicaBehind
from hashstream.service.registry import IndexService
from hashstream.service.replicas import SearchService
from hashstream.service.settings import Settings
from hashstream.service.worker import RoundRunner
from hashstream.store.index_store import IndexStore, RoundCommit

NAME = "rep"
BITS = 64
SEED_ITEMS = 80  # the one real round (ids 0 … 79, classes 0 … 2; a round needs > bits rows)


def seeded(store: IndexStore) -> None:
    """An LSH index with one real round, so an encoder and a class map exist."""
    service = IndexService(store)
    service.create_from_request(NAME, 8, {"bits": BITS}, None, method="lsh")
    rng = np.random.default_rng(0)
    cls = np.arange(SEED_ITEMS) % 3
    labels = ClientLabels(np.arange(SEED_ITEMS + 1), cls.astype(np.int64), "int")
    service.ingest(NAME, ParsedChunk(rng.standard_normal((SEED_ITEMS, 8)).astype(np.float32),
                                     labels, np.arange(SEED_ITEMS), "train"))
    assert RoundRunner(store).step(NAME) and store.version(NAME) == 1


def commit(store: IndexStore, codes: np.ndarray, ids: np.ndarray,
           classes: np.ndarray) -> int:
    """Commit a synthetic segment (one class per item); the new version."""
    version = store.version(NAME)
    segment = {"codes": codes, "ids": ids.astype(np.int64),
               "label_indptr": np.arange(ids.size + 1, dtype=np.int64),
               "label_indices": classes.astype(np.int32)}
    assert store.commit_round(NAME, version, RoundCommit(segment=segment))
    return version + 1


def random_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, BITS // 8), dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.unpackbits(a[None, :] ^ b, axis=1).sum(axis=1)


@pytest.fixture
def gated(redis_client: Any, key_prefix: str) -> GatedStore:
    store = GatedStore(redis_client, key_prefix)
    seeded(store)
    return store


def test_refresh_appends_only_the_new_segment(gated: GatedStore) -> None:
    search = SearchService(gated)
    first = search.replica(NAME)
    live = search.replicas[NAME]
    index, loaded = live.indexes["pairs"], live.segments_loaded
    assert first.version == 1 and len(first.views["pairs"]) == SEED_ITEMS and loaded == 1
    rng = np.random.default_rng(1)
    v = commit(gated, random_codes(rng, 50), np.arange(100, 150), np.zeros(50))
    rep = search.replica(NAME, min_version=v)
    assert rep.version == v
    assert search.replicas[NAME] is live and live.indexes["pairs"] is index  # same index
    assert len(index) == SEED_ITEMS + 50 and len(rep.views["pairs"]) == SEED_ITEMS + 50
    assert live.segments_loaded == loaded + 1  # only the new segment was read
    assert len(first.views["pairs"]) == SEED_ITEMS  # the old version's view did not move


def test_upsert_replaces_the_code_but_not_in_the_older_version(gated: GatedStore) -> None:
    search = SearchService(gated)
    old_code = np.zeros((1, BITS // 8), np.uint8)
    new_code = np.full((1, BITS // 8), 0xFF, np.uint8)
    v1 = commit(gated, old_code, np.array([500]), np.array([1]))
    older = search.replica(NAME, min_version=v1)
    v2 = commit(gated, new_code, np.array([500]), np.array([2]))
    newer = search.replica(NAME, min_version=v2)
    for rep, code, label in ((older, old_code, 1), (newer, new_code, 2)):
        view = rep.views["pairs"]
        pos = view.positions([500])
        assert pos[0] >= 0 and np.array_equal(view.codes_at(pos), code)
        assert rep.labels_at(int(pos[0])) == [label]
        d, ids = view.search(code, 1)
        assert ids[0, 0] == 500 and d[0, 0] == 0
        assert len(view) == SEED_ITEMS + 1  # an upsert does not add a live item
    # Through the service: the newer version answers, the item is its latest code.
    found = search.search_item(NAME, 500, 5)
    version, [hits] = found.version, found.rows()
    assert version == v2 and 500 not in [h["id"] for h in hits] and len(hits) == 5


def test_a_search_during_a_refresh_sees_exactly_one_version(gated: GatedStore) -> None:
    search = SearchService(gated, replica_wait_ms=60_000)
    rng = np.random.default_rng(2)
    v1 = commit(gated, random_codes(rng, 30), np.arange(1000, 1030), np.zeros(30))
    before = search.replica(NAME, min_version=v1)
    upserted = np.arange(1000, 1010)  # ids of v1 stored again in v2
    v2 = commit(gated, random_codes(rng, 20), np.concatenate([upserted, np.arange(2000, 2010)]),
                np.ones(20))
    v3 = commit(gated, random_codes(rng, 5), np.arange(3000, 3005), np.full(5, 2))
    gated.gate_version = v3
    query = random_codes(rng, 1)
    # A plain search starts the background load and answers from v1 at once.
    rep = search.replica(NAME)
    assert rep.version == v1
    assert gated.reached.wait(60), "the background load never reached the gate"
    # Now v2 is appended to the live index (upserts applied) but v3 is not loaded: searches
    # must still see v1 exactly: its ids, its codes of the upserted ids.
    live = search.replicas[NAME]
    assert live.held == v2 and live.current is not None and live.current.version == v1
    assert len(live.indexes["pairs"]) == SEED_ITEMS + 30 + 10  # v2 is in the live index
    for _ in range(3):
        rep = search.replica(NAME)
        assert rep.version == v1
        view = rep.views["pairs"]
        _, ids = view.search(query, 1000)
        got = set(ids[ids >= 0].tolist())
        assert got == set(range(SEED_ITEMS)) | set(range(1000, 1030))
        assert np.array_equal(view.codes_at(view.positions(upserted)),
                              before.views["pairs"].codes_at(before.views["pairs"].positions(
                                  upserted)))
    waiter: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: waiter.update(
        rep=search.replica(NAME, min_version=v3)))
    thread.start()
    gated.release.set()
    thread.join(60)
    assert not thread.is_alive() and waiter["rep"].version == v3
    _, ids = waiter["rep"].views["pairs"].search(query, 1000)
    assert set(ids[ids >= 0].tolist()) == (set(range(SEED_ITEMS)) | set(range(1000, 1030))
                                           | set(range(2000, 2010)) | set(range(3000, 3005)))


def test_min_version_waits_bounded_then_503_and_409_past_the_commit(gated: GatedStore) -> None:
    search = SearchService(gated, replica_wait_ms=50)
    assert search.replica(NAME).version == 1
    rng = np.random.default_rng(3)
    v2 = commit(gated, random_codes(rng, 4), np.arange(50, 54), np.zeros(4))
    gated.gate_version = v2
    with pytest.raises(ReplicaBehind) as behind:
        search.replica(NAME, min_version=v2)
    assert behind.value.field == "min_version" and "at version 1" in behind.value.message
    assert behind.value.status == 503 and behind.value.retry_after is not None
    with pytest.raises(Conflict) as ahead:
        search.replica(NAME, min_version=v2 + 1)
    assert ahead.value.field == "min_version"
    gated.release.set()
    search.replica_wait_ms = 60_000
    assert search.replica(NAME, min_version=v2).version == v2


def test_min_version_over_http(redis_url: str, redis_client: Any, key_prefix: str) -> None:
    store = IndexStore(redis_client, key_prefix)
    seeded(store)
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, replica_wait_ms=0)
    with TestClient(create_app(settings)) as client:
        path = f"/indexes/{NAME}/search"
        r = client.get(path, params={"item": 3, "k": 2, "min_version": 1})
        assert r.status_code == 200 and r.json()["model_version"] == 1, r.text
        r = client.post(path, json={"features": [[0.5] * 8], "k": 2, "min_version": 5})
        assert r.status_code == 409 and r.json()["field"] == "min_version", r.text
        rng = np.random.default_rng(4)
        v2 = commit(store, random_codes(rng, 3), np.arange(90, 93), np.zeros(3))
        # Blocks the refresh, so the wait of 0 ms must end in 503 naming min_version.
        search = client.app.state.search  # type: ignore[attr-defined]
        gate = GatedStore(redis_client, key_prefix)
        gate.gate_version = v2
        search.store = gate
        r = client.get(path, params={"item": 3, "k": 2, "min_version": v2})
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["field"] == "min_version" and "at version 1" in r.json()["detail"]
        assert int(r.headers["Retry-After"]) >= 1
        gate.release.set()
        search.replica_wait_ms = 60_000
        r = client.get(path, params={"item": 90, "k": 2, "min_version": v2})
        assert r.status_code == 200 and r.json()["model_version"] == v2, r.text
        schema = client.get("/openapi.json").json()
        params = schema["paths"]["/indexes/{name}/search"]["get"]["parameters"]
        assert "min_version" in [p["name"] for p in params]
        assert "min_version" in schema["components"]["schemas"]["SearchRequest"]["properties"]


def test_results_equal_brute_force_after_many_appends_and_upserts(gated: GatedStore) -> None:
    """Segments of random ids from a small pool (many upserts, one compaction at least), each
    version checked against a scan of every id's latest code; hit labels are the latest."""
    search = SearchService(gated)
    rng = np.random.default_rng(5)
    seed_rep = search.replica(NAME)
    codes_of = {int(i): c for i, c in zip(
        range(SEED_ITEMS), seed_rep.views["pairs"].codes_at(np.arange(SEED_ITEMS)), strict=True)}
    label_of = {i: [i % 3] for i in range(SEED_ITEMS)}
    order: list[int] = list(range(SEED_ITEMS))  # ids by their latest insertion
    compactions, removed_before = 0, 0
    for _ in range(8):
        n = 700
        ids = rng.choice(np.arange(100, 2600), n, replace=False)
        codes, classes = random_codes(rng, n), rng.integers(0, 3, n)
        v = commit(gated, codes, ids, classes)
        for i, c, k in zip(ids.tolist(), codes, classes.tolist(), strict=True):
            codes_of[i], label_of[i] = c, [k]
            if i in order:
                order.remove(i)
            order.append(i)
        rep = search.replica(NAME, min_version=v)
        removed = search.replicas[NAME].indexes["pairs"].removed_count
        compactions += removed < removed_before
        removed_before = removed
        queries = random_codes(rng, 3)
        results = [search._top_k(rep, q[None, :], 25, exclude=None).rows()[0] for q in queries]
        all_codes = np.stack([codes_of[i] for i in order])
        for q, hits in zip(queries, results, strict=True):
            d = hamming(q, all_codes)
            ref = np.lexsort((np.arange(len(order)), d))[:25]
            assert [h["id"] for h in hits] == [order[j] for j in ref]
            assert [h["distance"] for h in hits] == d[ref].tolist()
            assert all(h["labels"] == label_of[h["id"]] for h in hits)
        assert len(rep.views["pairs"]) == len(order)
    assert compactions >= 1, "the pool was meant to force a compaction"


def test_replica_arrays_stay_within_two_code_widths_per_item(gated: GatedStore) -> None:
    """Service-assigned (increasing) ids, one class each, 64-bit codes: the replica's arrays
    (codes, ids, removal mask, lookups, labels, spare capacity) take at most 2 × (8 + 8) bytes
    an item, and no sorted id copy exists."""
    search = SearchService(gated)
    rng = np.random.default_rng(6)
    for first in range(100, 300_100, 50_000):
        v = commit(gated, random_codes(rng, 50_000), np.arange(first, first + 50_000),
                   rng.integers(0, 3, 50_000))
    search.replica(NAME, min_version=v)
    live = search.replicas[NAME]
    n = len(live.labels)
    assert n == SEED_ITEMS + 300_000
    assert live.indexes["pairs"].tables_bytes() == 0  # below MIH_MIN_ITEMS: none built
    assert live.memory_bytes() <= 2 * (BITS // 8 + 8) * n, live.memory_bytes() / n


def test_search_tables_off_keeps_a_replica_to_flat_scans() -> None:
    """HASHSTREAM_SEARCH_TABLES=off: past the size where auto builds multi-index-hashing
    tables (~50 bytes per item more) the replica still holds only the flat arrays."""
    from hashstream.hamming.index import MIH_MIN_ITEMS
    from hashstream.service.index_replica import IndexReplica, _Partition

    class OneTarget:
        targets = ("pairs",)

    rng = np.random.default_rng(0)
    n = MIH_MIN_ITEMS + 1000
    seg = {"codes": rng.integers(0, 256, (n, 8), dtype=np.uint8), "ids": np.arange(n),
           "label_indptr": np.arange(n + 1), "label_indices": rng.integers(0, 10, n)}
    held = {}
    for tables in ("auto", "off"):
        live = IndexReplica(0.0, "auto", None, tables)  # type: ignore[arg-type]
        part = live.parts.setdefault(0, _Partition())
        live._append(part, seg, OneTarget, 1)  # type: ignore[arg-type]
        built = [index.build_tables() for index in part.indexes.values()]
        held[tables] = (built, live.memory_bytes() / n)
    from hashstream.hamming.index import native_available

    assert held["off"][0] == [False] and held["off"][1] <= 32  # bytes per 64-bit item
    if native_available():  # tables are built by the compiled kernels
        assert held["auto"][0] == [True] and held["auto"][1] > 32
