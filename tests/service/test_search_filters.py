"""Search options against a real server, exact against a brute-force reference computed here
from the codes and labels that GET /items returns: label filters (labels_any, labels_all, both;
integer and string labels), max_distance (every item within the radius, capped by k) and the
model version on every hit, on the GET and POST forms, by vector and by stored item, on the
short forms of the default index and on a partitioned index; each JSON answer parses as the
schema's ``SearchResponse``, and the binary forms (an .npz body, ``Accept: application/x-npz``)
answer the same hits.

The indexes are LSH (a stored item's code is the code of its feature vector), so a stored
item's vector is a query whose code the test knows. Ties rank by id (insertion order within a
partition, (distance, id) across partitions; ids are assigned in ingest order)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from support.data import npz_bytes

from hashstream.api.schemas import SearchResponse
from hashstream.client.search_arrays import SearchArrays

DIM, BITS, CLASSES = 16, 32, 8
NAMES = "abcdefgh"  # the string index's labels: class k is NAMES[k]
CASES: list[dict[str, Any]] = [
    {},
    {"labels_any": [3, 5]},
    {"labels_all": [3, 7]},
    {"labels_any": [1, 2], "labels_all": [0]},
    {"labels_any": [99]},            # a label the index never saw: nothing
    {"labels_all": [0, 99]},
    {"max_distance": 9},
    {"max_distance": 11, "labels_any": [2]},
    {"max_distance": 0},
]


class Snapshot:
    """Every stored item as GET /items/{id} reports it."""

    def __init__(self, server: Any, name: str, ids: list[int]) -> None:
        self.items = {}
        for i in ids:
            r = server.http.get(f"/indexes/{name}/items/{i}")
            assert r.status_code == 200, r.text
            self.items[i] = r.json()
        self.codes = {i: np.frombuffer(bytes.fromhex(it["code"]), np.uint8)
                      for i, it in self.items.items()}

    def reference(self, query: int, k: int, labels_any: Any = None, labels_all: Any = None,
                  max_distance: int | None = None, exclude: int | None = None
                  ) -> list[tuple[int, int]]:
        """(id, distance) of the k nearest admitted items to item ``query``'s code, by brute
        force."""
        out = []
        for i, it in self.items.items():
            have = set(it["labels"])
            if i == exclude or (labels_any is not None and not have & set(labels_any)) or (
                    labels_all is not None and not set(labels_all) <= have):
                continue
            d = int(np.unpackbits(self.codes[query] ^ self.codes[i]).sum())
            if max_distance is None or d <= max_distance:
                out.append((d, i))
        return [(i, d) for d, i in sorted(out)[:k]]


def chunk(rng: np.random.Generator, means: np.ndarray, n: int, labels: Callable[[int], Any]
          ) -> tuple[np.ndarray, dict[str, Any]]:
    """``n`` items of one to three classes each (features near their classes' means)."""
    features, rows = [], []
    for _ in range(n):
        classes = sorted(rng.choice(CLASSES, rng.integers(1, 4), replace=False).tolist())
        features.append(means[classes].mean(axis=0) + rng.standard_normal(DIM))
        rows.append([labels(c) for c in classes])
    x = np.asarray(features, dtype=np.float32)
    return x, {"features": x.tolist(), "labels": rows}


NPZ = "application/x-npz"


def hits_of(response: Any) -> list[list[dict[str, Any]]]:
    """The hits of a JSON answer, once it parsed as the schema's SearchResponse."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"index", "model_version", "results", "partitions"}
    assert SearchResponse.model_validate(body).model_dump() == body
    return list(body["results"])


def npz_hits_of(response: Any, like: Any) -> list[list[dict[str, Any]]]:
    """The hits of an .npz answer, once its index, version and partitions match the JSON
    answer ``like``."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NPZ
    result = SearchArrays.from_npz(response.content).result()
    body = like.json()
    assert {k: result[k] for k in ("index", "model_version", "partitions")} == {  # type: ignore
        k: body[k] for k in ("index", "model_version", "partitions")}
    return list(result["results"])


def npz_body(case: dict[str, Any], rows: np.ndarray, k: int) -> bytes:
    """The .npz form of a POST body: the same fields as arrays."""
    arrays: dict[str, Any] = {"features": rows, "k": np.int64(k)}
    arrays.update({key: np.asarray(v) for key, v in case.items()})
    return npz_bytes(**arrays)


def check(snap: Snapshot, hits: list[dict[str, Any]], expected: list[tuple[int, int]]) -> None:
    assert [(h["id"], h["distance"]) for h in hits] == expected
    for h in hits:
        item = snap.items[h["id"]]
        assert h["model_version"] == item["model_version"] and h["labels"] == item["labels"]


def query_params(case: dict[str, Any]) -> dict[str, Any]:
    return {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in case.items()}


def post_body(case: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    flt = {k: v for k, v in case.items() if k.startswith("labels")}
    if flt:
        body["filter"] = flt
    if "max_distance" in case:
        body["max_distance"] = case["max_distance"]
    return body


@pytest.fixture(scope="module")
def server(start_server: Callable[..., Any]) -> Any:
    return start_server("filters", workers=1)


@pytest.fixture(scope="module")
def default_index(server: Any) -> tuple[Snapshot, np.ndarray]:
    """The default index (int labels), two rounds of 250 items: hits of model versions 1, 2."""
    r = server.http.post("/indexes", json={"name": "default", "dim": DIM, "bits": BITS,
                                           "method": "lsh", "seed": 3})
    assert r.status_code == 201, r.text
    rng = np.random.default_rng(40)
    means = rng.standard_normal((CLASSES, DIM)) * 2
    xs = []
    for version in (1, 2):
        x, body = chunk(rng, means, 250, int)
        xs.append(x)
        assert server.http.post("/ingest", json=body).status_code == 202
        server.wait_idle("default", version)
    snap = Snapshot(server, "default", list(range(500)))
    assert {it["model_version"] for it in snap.items.values()} == {1, 2}
    return snap, np.concatenate(xs)


@pytest.mark.parametrize("k", [5, 1000])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c.items())) or "none")
def test_filters_and_radius_are_exact_on_every_form(server: Any, default_index: Any,
                                                    case: dict[str, Any], k: int) -> None:
    snap, x = default_index
    found = 0
    for query in (17, 388):
        item_ref = snap.reference(query, k, exclude=query, **case)
        vector_ref = snap.reference(query, k, **case)
        found += len(vector_ref)
        if case and k > len(snap.items):
            assert len(vector_ref) < len(snap.items)  # a filter or radius leaves items out
        vector = ",".join(f"{v:.9g}" for v in x[query])
        params = {"k": k, **query_params(case)}
        for path in ("/indexes/default/search", "/search"):
            [hits] = hits_of(server.http.get(path, params={"item": query, **params}))
            check(snap, hits, item_ref)
            [hits] = hits_of(server.http.get(path, params={"vector": vector, **params}))
            check(snap, hits, vector_ref)
            answer = server.http.post(path, json={
                "features": [x[query].tolist(), x[0].tolist()], "k": k, **post_body(case)})
            batch = hits_of(answer)
            check(snap, batch[0], vector_ref)
            check(snap, batch[1], snap.reference(0, k, **case))
            # the binary forms: .npz in and out, JSON in and .npz out, GET and .npz out
            binary = server.http.post(path, content=npz_body(case, x[[query, 0]], k),
                                      headers={"Content-Type": NPZ, "Accept": NPZ})
            assert npz_hits_of(binary, answer) == batch
            assert npz_hits_of(server.http.post(path, json={
                "features": [x[query].tolist(), x[0].tolist()], "k": k, **post_body(case)},
                headers={"Accept": NPZ}), answer) == batch
            get = server.http.get(path, params={"item": query, **params})
            assert npz_hits_of(server.http.get(path, params={"item": query, **params},
                                               headers={"Accept": NPZ}), get) == hits_of(get)
    unknown = 99 in case.get("labels_any", []) + case.get("labels_all", [])
    assert (found == 0) == unknown  # every case but the unknown labels finds something


def test_filters_on_a_partitioned_index_with_string_labels(server: Any, hs: Any) -> None:
    name = hs.unique("parts")
    r = server.http.post("/indexes", json={"name": name, "dim": DIM, "bits": BITS,
                                           "method": "lsh", "seed": 4, "partitions": 3})
    assert r.status_code == 201, r.text
    rng = np.random.default_rng(41)
    x, body = chunk(rng, rng.standard_normal((CLASSES, DIM)) * 2, 300, lambda c: NAMES[c])
    assert server.http.post(f"/indexes/{name}/ingest", json=body).status_code == 202
    server.wait_idle(name, 1)
    snap = Snapshot(server, name, list(range(300)))
    path = f"/indexes/{name}/search"
    for case in ({"labels_any": ["b", "d"]}, {"labels_all": ["a", "c"]},
                 {"labels_any": ["e"], "max_distance": 10}, {"labels_all": ["zz"]}):
        for query in (4, 250):
            ref = snap.reference(query, 20, exclude=query, **case)
            [hits] = hits_of(server.http.get(path, params={"item": query, "k": 20,
                                                           **query_params(case)}))
            check(snap, hits, ref)
            answer = server.http.post(path, json={"features": [x[query].tolist()], "k": 20,
                                                  **post_body(case)})
            [hits] = hits_of(answer)
            assert answer.json()["partitions"] == [0, 1, 2]
            check(snap, hits, snap.reference(query, 20, **case))
            binary = server.http.post(path, content=npz_body(case, x[[query]], 20),
                                      headers={"Content-Type": NPZ, "Accept": NPZ})
            assert npz_hits_of(binary, answer) == [hits]
    # labels of the index's type only
    r = server.http.post(path, json={"features": [x[0].tolist()], "filter": {"labels_any": [1]}})
    hs.assert_problem(r, 422, "labels_any")
    # a deleted item is filtered out like any other
    hit = hits_of(server.http.get(path, params={"item": 4, "k": 1, "labels_any": "b,d"}))[0][0]
    assert server.http.delete(f"/indexes/{name}/items/{hit['id']}").status_code == 200
    del snap.items[hit["id"]]
    [hits] = hits_of(server.http.get(path, params={"item": 4, "k": 20, "labels_any": "b,d"}))
    check(snap, hits, snap.reference(4, 20, exclude=4, labels_any=["b", "d"]))


def test_bad_options_are_problems_naming_the_field(server: Any, default_index: Any,
                                                   hs: Any) -> None:
    for params, field in (({"labels_any": "x"}, "labels_any"),
                          ({"labels_all": "1,,2"}, "labels_all"),
                          ({"labels_any": ""}, "labels_any"),
                          ({"max_distance": -1}, "max_distance"),
                          ({"max_distance": "far"}, "max_distance")):
        r = server.http.get("/search", params={"item": 1, **params})
        hs.assert_problem(r, 422, field)
    for body, field in (({"filter": {"labels_any": []}}, "filter.labels_any"),
                        ({"filter": {"labels_all": ["3"]}}, "labels_all"),
                        ({"filter": {"label": [3]}}, "filter.label"),
                        ({"max_distance": -2}, "max_distance")):
        r = server.http.post("/search", json={"features": [[0.0] * DIM], **body})
        hs.assert_problem(r, 422, field)


def test_bad_npz_bodies_are_problems_naming_the_member(server: Any, default_index: Any,
                                                       hs: Any) -> None:
    _, x = default_index
    rows = x[:2].astype(np.float32)

    def post(content: bytes, content_type: str = NPZ) -> Any:
        return server.http.post("/search", content=content,
                                headers={"Content-Type": content_type, "Accept": NPZ})

    hs.assert_problem(post(b"not a zip"), 400, "body")
    hs.assert_problem(post(b""), 400, "body")
    for arrays, field in (({"features": rows, "extra": rows}, "extra"),
                          ({"features": rows, "tokens": rows.astype(np.int64)}, "features"),
                          ({"k": np.int64(3)}, "features"),
                          ({"features": rows[0]}, "features"),
                          ({"features": rows.astype(str)}, "features"),
                          ({"features": rows[:, :3]}, "features"),
                          ({"features": np.full((2, DIM), np.nan, np.float32)}, "features"),
                          ({"features": rows, "k": np.float64(3)}, "k"),
                          ({"features": rows, "k": np.arange(2)}, "k"),
                          ({"features": rows, "k": np.int64(0)}, "k"),
                          ({"features": rows, "target": np.str_("codes")}, "target"),
                          ({"features": rows, "min_version": np.int64(-1)}, "min_version"),
                          ({"features": rows, "max_distance": np.int64(-1)}, "max_distance"),
                          ({"features": rows, "labels_any": np.zeros((2, 2), np.int64)},
                           "labels_any"),
                          ({"features": rows, "labels_all": np.zeros(0, np.int64)},
                           "labels_all"),
                          ({"features": rows, "labels_any": np.asarray(["3"])}, "labels_any")):
        hs.assert_problem(post(npz_bytes(**arrays)), 422, field)
    hs.assert_problem(post(npz_bytes(features=rows), "text/plain"), 415, "Content-Type")
    # the same body as application/octet-stream (ingest's media type) is a search too
    r = post(npz_bytes(features=rows, k=np.int64(3)), "application/octet-stream")
    assert r.status_code == 200 and SearchArrays.from_npz(r.content).ids.shape == (2, 3)


def test_the_client_sends_large_batches_as_npz_with_the_same_answer(server: Any,
                                                                    default_index: Any) -> None:
    _, x = default_index
    queries = x[:40]
    flt: Any = {"labels_any": [1, 2]}
    by_json = server.client.search("default", queries, k=7, filter=flt, encoding="json")
    by_npz = server.client.search("default", queries, k=7, filter=flt)  # auto: 40 rows → npz
    assert by_npz == by_json and len(by_json["results"]) == 40
    arrays = server.client.search_arrays("default", queries, k=7, filter=flt)
    assert arrays.ids.shape == (40, 7) and arrays.counts.tolist() == [7] * 40
    assert arrays.ids.tolist() == [[h["id"] for h in r] for r in by_json["results"]]
    assert arrays.model_version == by_json["model_version"]
