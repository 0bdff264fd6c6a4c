"""Class labels through the service: any int64 or string, mapped per index, answered as sent.

A single unusual label used to make the worker allocate n × (max id + 1) and c × c arrays and
die; now labels are class lists end to end and each index maps its labels to dense numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

N = 300


def _chunk(hs: Any, seed: int, labels_of: list[Any], n: int = N) -> tuple[dict[str, Any], Any]:
    clusters = hs.Clusters(seed, dim=16, n_classes=len(labels_of))
    x, cls = clusters.sample(n)
    body = {"features": x.tolist(), "labels": [[labels_of[c]] for c in cls]}
    return body, (clusters, cls)


def _search_labels(api: Any, name: str, vector: np.ndarray, k: int = 10) -> list[Any]:
    r = api.http.post(f"/indexes/{name}/search", json={"features": [vector.tolist()], "k": k})
    assert r.status_code == 200, r.text
    return [h["labels"] for h in r.json()["results"][0]]


@pytest.mark.parametrize("labels_of", [
    [20_000, 10**12, 3],                       # large and very large class ids
    [-(2**63), 2**63 - 1, 0],                  # the ends of int64
    ["cat", "dog", "ein Vogel ✓"],             # strings, in another index
], ids=["large-ids", "int64-ends", "strings"])
def test_unusual_labels_commit_and_come_back_as_sent(api: Any, hs: Any, labels_of: list[Any]
                                                     ) -> None:
    name = hs.unique("labels")
    api.create_index(name, 16)
    body, (clusters, _) = _chunk(hs, 1, labels_of)
    api.ingest(name, body)
    info = api.wait_idle(name)
    assert info["model_version"] == 1 and info["n_items"] == N and info["n_classes"] == 3
    for k, label in enumerate(labels_of):
        hits = _search_labels(api, name, clusters.vector(k))
        assert all(len(h) == 1 and type(h[0]) is type(label) for h in hits), hits
        assert np.mean([h == [label] for h in hits]) >= 0.8, (label, hits)


def test_multi_label_lists_and_label_matrix_agree(api: Any, hs: Any) -> None:
    """``labels`` class lists and ``label_matrix`` 0/1 rows are two spellings of one chunk."""
    name = hs.unique("matrix")
    api.create_index(name, 16)
    clusters = hs.Clusters(2, dim=16, n_classes=4)
    x, cls = clusters.sample(N)
    second = (cls + 1) % 4
    lists = [[int(a), int(b)] for a, b in zip(cls, second, strict=True)]
    matrix = np.zeros((N, 4), dtype=int)
    matrix[np.arange(N), cls] = 1
    matrix[np.arange(N), second] = 1
    api.ingest(name, {"features": x.tolist(), "labels": lists})
    api.ingest(name, {"features": x.tolist(), "label_matrix": matrix.tolist(),
                      "ids": list(range(10_000, 10_000 + N))})
    api.wait_idle(name, min_version=1)
    version = api.wait_idle(name, min_version=api.info(name)["model_version"])["model_version"]
    r = api.http.get(f"/indexes/{name}/search",
                     params={"item": 10_000 + 5, "k": 3, "min_version": version})
    assert r.status_code == 200, r.text
    # every item (k = 2N): this checks the labels hits carry, not how near a learned code is
    # (the two copies of item 5 may get codes several bits apart, e.g. in one merged round)
    r = api.http.post(f"/indexes/{name}/search", json={"features": [x[5].tolist()], "k": 2 * N,
                                                       "min_version": version})
    by_id = {h["id"]: sorted(h["labels"]) for h in r.json()["results"][0]}
    assert by_id[5] == by_id[10_005] == sorted(lists[5])


def test_sparse_npz_labels_with_string_classes(api: Any, hs: Any) -> None:
    name = hs.unique("csr")
    api.create_index(name, 16)
    clusters = hs.Clusters(3, dim=16, n_classes=3)
    x, cls = clusters.sample(N)
    names = np.array(["alpha", "beta", "gamma"])
    indptr = np.arange(N + 1)
    api.ingest_npz(name, features=x, label_indptr=indptr, label_classes=names[cls])
    api.wait_idle(name)
    hits = _search_labels(api, name, clusters.vector(1))
    assert np.mean([h == ["beta"] for h in hits]) >= 0.8, hits


def test_label_kind_is_fixed_by_the_first_chunk(api: Any, hs: Any) -> None:
    name = hs.unique("kind")
    api.create_index(name, 16)
    body, _ = _chunk(hs, 4, [1, 2, 3], n=40)
    api.ingest(name, body)
    text_body, _ = _chunk(hs, 5, ["a", "b"], n=40)
    r = api.http.post(f"/indexes/{name}/ingest", json=text_body)
    hs.assert_problem(r, 422, "labels")
    assert "one label type per index" in r.json()["detail"]
    mixed = {"features": body["features"][:2], "labels": [[1], ["a"]]}
    hs.assert_problem(api.http.post(f"/indexes/{name}/ingest", json=mixed), 422, "labels")


def test_max_classes_is_enforced_atomically(api: Any, hs: Any, store_for: Any) -> None:
    name = hs.unique("cap")
    api.create_index(name, 16, max_classes=5)
    x = np.zeros((6, 16)).tolist()
    api.ingest(name, {"features": x[:3], "labels": [[10], [11], [12]]})
    r = api.http.post(f"/indexes/{name}/ingest",
                      json={"features": x, "labels": [[10], [13], [14], [15], [16], [17]]})
    body = hs.assert_problem(r, 422, "labels")
    assert "max_classes" in body["detail"]
    # nothing of the refused chunk was registered: two more classes still fit
    api.ingest(name, {"features": x[:2], "labels": [[13], [14]]})
    kind, labels = store_for("api").class_labels(name)
    assert kind == "int" and [int(b) for b in labels] == [10, 11, 12, 13, 14]
    assert api.info(name)["max_classes"] == 5
    r = api.http.post("/indexes", json={"name": hs.unique("cap"), "dim": 4,
                                        "max_classes": 10**6})
    hs.assert_problem(r, 422, "max_classes")


@pytest.mark.parametrize("labels,field", [
    ([[1, 1]], "labels"),                       # a class twice in one item
    ([[1, 0, 0]], "labels"),                    # a 0/1 row sent as class lists: 0 repeats
    ([["x", "x"]], "labels"),
    ([[1.0]], "labels"),
    ([[True]], "labels"),
    ([[2**63]], "labels"),                      # outside int64
    ([[""]], "labels"),
    ([["x" * 257]], "labels"),
    ([[None]], "labels"),
])
def test_bad_class_lists(api: Any, hs: Any, labels: Any, field: str) -> None:
    name = hs.unique("bad")
    api.create_index(name, 2)
    r = api.http.post(f"/indexes/{name}/ingest", json={"features": [[0, 1]], "labels": labels})
    hs.assert_problem(r, 422, field)


@pytest.mark.parametrize("body,field", [
    ({"features": [[0, 1]], "label_matrix": [[1, 2]]}, "label_matrix"),
    ({"features": [[0, 1]], "label_matrix": [[1, 0], [1]]}, "label_matrix"),
    ({"features": [[0, 1]], "labels": [[1]], "label_matrix": [[1]]}, "labels"),
    ({"features": [[0, 1]]}, "labels"),
])
def test_bad_label_matrix(api: Any, hs: Any, body: dict[str, Any], field: str) -> None:
    name = hs.unique("badm")
    api.create_index(name, 2)
    hs.assert_problem(api.http.post(f"/indexes/{name}/ingest", json=body), 422, field)


@pytest.mark.parametrize("arrays,field", [
    ({"label_indptr": np.array([0, 1, 2, 3, 4])}, "label_classes"),
    ({"label_indptr": np.array([0, 1, 2, 3]), "label_classes": np.array([1, 2, 3])},
     "label_indptr"),
    ({"label_indptr": np.array([0, 2, 1, 3, 4]), "label_classes": np.array([1, 2, 3, 4])},
     "label_indptr"),
    ({"label_indptr": np.array([0, 2, 2, 3, 4]), "label_classes": np.array([1, 1, 3, 4])},
     "labels"),
    ({"label_indptr": np.array([0, 1, 2, 3, 4]), "label_classes": np.ones(4) / 2},
     "label_classes"),
    ({"label_indptr": np.array([0, 1, 2, 3, 4]), "label_classes": np.array([1, 2, 3, 4]),
      "labels": np.eye(4)}, "labels"),
])
def test_bad_sparse_npz_labels(api: Any, hs: Any, arrays: dict[str, Any], field: str) -> None:
    name = hs.unique("badz")
    api.create_index(name, 2)
    r = api.http.post(f"/indexes/{name}/ingest",
                      content=hs.npz_bytes(features=np.ones((4, 2)), **arrays),
                      headers={"Content-Type": "application/octet-stream"})
    hs.assert_problem(r, 422, field)


def test_query_chunks_take_no_service_ids(api: Any, hs: Any) -> None:
    name = hs.unique("qids")
    api.create_index(name, 16)
    body, _ = _chunk(hs, 6, [0, 1, 2], n=100)
    q = api.ingest(name, {**body, "role": "query"})
    assert "id_range" not in q and q["role"] == "query"
    t = api.ingest(name, _chunk(hs, 7, [0, 1, 2])[0])
    assert t["id_range"] == [0, N]
    r = api.http.post(f"/indexes/{name}/ingest", json={**body, "role": "query",
                                                      "ids": list(range(100))})
    hs.assert_problem(r, 422, "ids")
    api.wait_idle(name)
    assert api.rounds(name)[-1]["n_queries"] == 100


def test_chunk_item_limit(start_server: Any, hs: Any) -> None:
    server = start_server("limits", workers=0, max_chunk_items=50, max_json_bytes=200_000)
    name = hs.unique("lim")
    server.create_index(name, 2)
    r = server.http.post(f"/indexes/{name}/ingest",
                         json={"features": [[0, 1]] * 51, "labels": [[0]] * 51})
    hs.assert_problem(r, 413, "features")
    r = server.http.post(f"/indexes/{name}/ingest",
                         content=hs.npz_bytes(features=np.ones((51, 2)), labels=np.ones((51, 1))),
                         headers={"Content-Type": "application/octet-stream"})
    hs.assert_problem(r, 413, "features")
    big = {"features": [[0.123456789] * 2] * 20_000, "labels": [[0]] * 20_000}
    hs.assert_problem(server.http.post(f"/indexes/{name}/ingest", json=big), 413, "body")


def test_centers_before_the_first_round_and_huge_since(api: Any, hs: Any) -> None:
    """Two 500s found by schemathesis: HMGET with no fields, and an int64 overflow."""
    name = hs.unique("fresh")
    api.create_index(name, 4)
    r = api.http.get(f"/indexes/{name}/centers")
    assert r.status_code == 200 and r.json()["rounds"] == [], r.text
    r = api.http.get(f"/indexes/{name}/rounds", params={"since": 919986417215208884797440})
    hs.assert_problem(r, 422, "since")


def test_same_mistake_same_answer_on_ingest_and_search(api: Any, hs: Any) -> None:
    name = hs.unique("same")
    api.create_index(name, 2)
    for path in (f"/indexes/{name}/ingest", f"/indexes/{name}/search"):
        r = api.http.post(path, content=b"a,b", headers={"Content-Type": "text/csv"})
        hs.assert_problem(r, 415, "Content-Type")
        r = api.http.post(path, content=b"", headers={"Content-Type": "application/json"})
        hs.assert_problem(r, 400, "body")
        r = api.http.post(path, content=b"{nope", headers={"Content-Type": "application/json"})
        hs.assert_problem(r, 400, "body")
    answers = []
    for r in (api.http.get(f"/indexes/{name}/search", params={"vector": "0,1", "k": 0}),
              api.http.post(f"/indexes/{name}/search", json={"features": [[0, 1]], "k": 0}),
              api.http.get(f"/indexes/{name}/search", params={"vector": "0,1", "k": 10**7})):
        answers.append(hs.assert_problem(r, 422, "k")["detail"])
    assert len(set(answers)) == 1, answers



def test_an_index_from_before_class_maps_keeps_working(redis_client: Any, session_prefix: str,
                                                       hs: Any) -> None:
    """Stream entries queued by the previous version carry dense 0/1 label rows and its indexes
    have rounds but no class map: the entries are learned as they are, and the first new chunk
    seeds the map with the identity over the classes the index already knows."""
    from hashstream.service.chunks import ClientLabels, ParsedChunk
    from hashstream.service.registry import IndexService
    from hashstream.service.replicas import SearchService
    from hashstream.service.worker import RoundRunner
    from hashstream.solver.sdoh_hc.settings import SDOHSettings
    from hashstream.store.codec import encode_array
    from hashstream.store.index_store import IndexStore

    store = IndexStore(redis_client, f"{session_prefix}-{hs.unique('legacy')}")
    service = IndexService(store)
    service.create("old", 16, SDOHSettings(bits=16, n_anchors=64, n1=50, n2=50))
    clusters = hs.Clusters(9, dim=16, n_classes=3)
    x, cls = clusters.sample(N)
    store.enqueue("old", {"role": b"train", "features": encode_array(x),
                          "labels": encode_array(np.eye(3, dtype=np.uint8)[cls]),
                          "ids": encode_array(np.arange(N, dtype=np.int64))})
    runner = RoundRunner(store, lease_ttl_ms=60_000)  # no keeper: outlast a slow round
    runner.step("old")
    assert store.version("old") == 1 and store.dead_letter_count("old") == 0
    assert store.class_labels("old")[0] is None  # no label kind: an index of the previous version
    x2, cls2 = hs.Clusters(9, dim=16, n_classes=3).sample(N)
    labels = ClientLabels(np.arange(N + 1), np.where(cls2 == 2, 7, cls2).astype(np.int64), "int")
    service.ingest("old", ParsedChunk(x2, labels, np.arange(N, 2 * N), "train"))
    runner.step("old")
    assert store.version("old") == 2
    kind, known = store.class_labels("old")
    assert kind == "int" and [int(b) for b in known] == [0, 1, 2, 7]
    search = SearchService(store)
    # every item ranked: the old round's items are searchable (the new round's may rank first)
    hits = search.search_vectors("old", clusters.vector(1)[None, :], 2 * N, 16).rows()
    assert {h["id"] for h in hits[0]} == set(range(2 * N)), "old items are searchable"
    truth = {**dict(enumerate(cls.tolist())),
             **{N + i: (7 if c == 2 else c) for i, c in enumerate(cls2.tolist())}}
    assert all(h["labels"] == [truth[h["id"]]] for h in hits[0]), hits[0]
