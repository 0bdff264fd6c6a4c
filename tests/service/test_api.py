"""The HTTP API through a real `hashstream serve` (uvicorn + worker) on a real Redis.

Walk-through end to end, every bad input → 4xx problem+json (plus a generated fuzz), concurrent
ingest, search during a round, auth on and off.
"""

from __future__ import annotations

import io
import json
import re
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

DIM = 32


# --- 1. walk-through ----------------------------------------------------------------------

def _check_hits(hits: list[dict[str, Any]], k: int) -> None:
    assert len(hits) == k
    distances = [h["distance"] for h in hits]
    assert distances == sorted(distances), distances
    for h in hits:
        assert isinstance(h["id"], int)
        assert isinstance(h["labels"], list) and h["labels"], h


def test_walkthrough(api: Any, hs: Any, index_name: str) -> None:
    http = api.http
    data = hs.Clusters(seed=1, dim=DIM, n_classes=5)

    r = http.post("/indexes", json={"name": index_name, "dim": DIM, **hs.FAST})
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["name"], created["dim"], created["bits"]) == (index_name, DIM, 16)
    assert created["model_version"] == 0 and created["n_items"] == 0
    assert created["settings"]["n_anchors"] == 128

    listed = http.get("/indexes")
    assert listed.status_code == 200
    assert index_name in [i["name"] for i in listed.json()["indexes"]]
    assert api.info(index_name)["dim"] == DIM

    # Held-out queries first, so every round record is scored.
    qf, qc = data.sample(100)
    q = api.ingest(index_name, hs.json_chunk(qf, qc, role="query"))
    assert q["role"] == "query" and q["items"] == 100

    f1, c1 = data.sample(300)
    ids1 = np.arange(1000, 1300)
    a = api.ingest(index_name, hs.json_chunk(f1, c1, ids=ids1))
    assert a["items"] == 300 and a["role"] == "train" and a["chunk_id"]

    f2, c2 = data.sample(200)
    b = api.ingest_npz(index_name, features=f2, labels=hs.one_hot(c2, 5),
                       ids=np.arange(5000, 5200))
    assert b["items"] == 200 and b["chunk_id"] != a["chunk_id"]
    # Without ids the service assigns a contiguous range.
    f3, c3 = data.sample(150)
    c = api.ingest_npz(index_name, features=f3, labels=hs.one_hot(c3, 5))
    lo, hi = c["id_range"]
    assert hi - lo == 150

    info = api.wait_idle(index_name, min_version=1)
    records = api.rounds(index_name)
    assert len(records) == info["model_version"] >= 1
    assert [r["round"] for r in records] == list(range(1, len(records) + 1))
    committed = [cid for r in records for cid in r["chunks"]]
    assert sorted(committed) == sorted([a["chunk_id"], b["chunk_id"], c["chunk_id"]])
    for rec in records:
        for key in ("round", "map", "precision_r2", "loss", "seconds", "n_database",
                    "n_classes", "model_version"):
            assert key in rec, (key, rec)
        assert rec["map"] is not None and 0 <= rec["map"] <= 1
        assert rec["map_tie_aware"] is not None and 0 <= rec["map_tie_aware"] <= 1
        assert rec["model_version"] == rec["round"]
    last = records[-1]
    assert last["n_database"] == 650 == info["n_items"]
    assert last["n_classes"] == 5 == info["n_classes"]
    assert last["map"] > 0.6, last["map"]  # well-separated clusters are easy

    # Search by vector: hits ordered, k long, mostly the query's own class.
    own = []
    for cls in range(5):
        v = data.vector(cls)
        r = http.get(f"/indexes/{index_name}/search",
                     params={"vector": ",".join(f"{x:.6f}" for x in v), "k": 10,
                             "min_version": info["model_version"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == info["model_version"] and body["index"] == index_name
        hits = body["results"][0]
        _check_hits(hits, 10)
        own += [cls in h["labels"] for h in hits]
    assert np.mean(own) >= 0.8, np.mean(own)

    # By stored item: the item itself is not among its neighbours; its class dominates.
    item = int(ids1[0])
    r = http.get(f"/indexes/{index_name}/search",
                 params={"item": item, "k": 8, "min_version": info["model_version"]})
    assert r.status_code == 200, r.text
    hits = r.json()["results"][0]
    _check_hits(hits, 8)
    assert item not in [h["id"] for h in hits]
    assert np.mean([int(c1[0]) in h["labels"] for h in hits]) >= 0.75
    all_ids = set(ids1.tolist()) | set(range(5000, 5200)) | set(range(lo, hi))
    assert {h["id"] for h in hits} <= all_ids

    # Batch search.
    batch = np.stack([data.vector(cls) for cls in range(5)])
    r = http.post(f"/indexes/{index_name}/search", json={"features": batch.tolist(), "k": 7,
                                                         "min_version": info["model_version"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 5
    for cls, hits in enumerate(results):
        _check_hits(hits, 7)
        assert sum(cls in h["labels"] for h in hits) >= 5
    # k larger than the database: every stored item, once.
    r = http.post(f"/indexes/{index_name}/search", json={"features": batch[:1].tolist(),
                                                         "k": 5000,
                                                         "min_version": info["model_version"]})
    hits = r.json()["results"][0]
    assert len(hits) == 650 and {h["id"] for h in hits} == all_ids
    # Every hit carries its own item's labels (CSR offsets across segments are right)...
    truth = dict(zip([*ids1.tolist(), *range(5000, 5200), *range(lo, hi)],
                     [*c1.tolist(), *c2.tolist(), *c3.tolist()], strict=True))
    assert all(h["labels"] == [truth[h["id"]]] for h in hits)
    # ...and held-out query items take no ids and never enter the database.
    assert "id_range" not in q and len(hits) == 650

    r = http.delete(f"/indexes/{index_name}")
    assert r.status_code == 204 and r.content == b""
    hs.assert_problem(http.get(f"/indexes/{index_name}"), 404, "name")
    hs.assert_problem(http.get(f"/indexes/{index_name}/rounds"), 404)
    hs.assert_problem(http.get(f"/indexes/{index_name}/search", params={"item": item}), 404)
    hs.assert_problem(http.delete(f"/indexes/{index_name}"), 404)
    assert index_name not in [i["name"] for i in http.get("/indexes").json()["indexes"]]


def test_short_routes_use_the_default_index(api: Any, hs: Any) -> None:
    http = api.http
    data = hs.Clusters(seed=2, dim=16, n_classes=3)
    f, c = data.sample(120)
    r = http.post("/ingest", json=hs.json_chunk(f, c))
    assert r.status_code == 202, r.text
    assert r.json()["index"] == "default"
    assert api.info("default")["dim"] == 16  # created by the first ingest
    info = api.wait_idle("default", min_version=1)
    assert info["n_items"] == 120

    v = data.vector(1)
    r = http.get("/search", params={"vector": ",".join(map(str, v.tolist())), "k": 5,
                                    "min_version": info["model_version"]})
    assert r.status_code == 200, r.text
    _check_hits(r.json()["results"][0], 5)
    assert r.json()["index"] == "default"
    r = http.post("/search", json={"features": [v.tolist(), data.vector(2).tolist()], "k": 4,
                                   "min_version": info["model_version"]})
    assert r.status_code == 200, r.text
    assert [len(h) for h in r.json()["results"]] == [4, 4]
    hs.assert_problem(http.post("/ingest", json=hs.json_chunk(data.sample(5)[0][:, :8],
                                                              np.zeros(5, int))),
                      422, "features")


def test_openapi_and_docs(api: Any) -> None:
    r = api.http.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/indexes", "/indexes/{name}", "/indexes/{name}/ingest",
                 "/indexes/{name}/search", "/indexes/{name}/rounds", "/ingest", "/search",
                 "/healthz", "/readyz"):
        assert path in paths, path
    docs = api.http.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "openapi.json" in docs.text and "/docs/assets/swagger-ui-bundle.js" in docs.text
    assert api.http.get("/redoc").status_code == 404  # no offline ReDoc bundle: off


def test_health_and_readiness(api: Any) -> None:
    health = api.http.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["hamming_kernel"] in ("avx512", "avx2", "popcnt", "scalar", "numpy"), health
    ready = api.http.get("/readyz")
    body = ready.json()
    assert ready.status_code == 200 and body["workers"] >= 1
    # every live worker says which Hamming kernel it runs (the API's own is in /healthz too)
    assert len(body["worker_kernels"]) == body["workers"]
    assert set(body["worker_kernels"].values()) <= {"avx512", "avx2", "popcnt", "scalar", "numpy"}
    assert body["hamming_kernel"] == health["hamming_kernel"]


# --- 2. every bad input → 4xx problem+json --------------------------------------------------

BAD_DIM = 8


@pytest.fixture(scope="module")
def bad_index(api: Any, hs: Any) -> str:
    """An index of dimension 8 with one committed round."""
    name = hs.unique("bad")
    api.create_index(name, BAD_DIM)
    data = hs.Clusters(seed=3, dim=BAD_DIM, n_classes=3)
    f, c = data.sample(60)
    api.ingest(name, hs.json_chunk(f, c))
    api.wait_idle(name, 1)
    return name


ROW = "[" + ",".join(["0.5"] * BAD_DIM) + "]"


def _raw(features: str, labels: str = "[[0]]", extra: str = "") -> str:
    return f'{{"features": {features}, "labels": {labels}{extra}}}'


# (case id, raw JSON body, status, field)
JSON_INGEST_CASES = [
    ("nan", _raw("[[NaN" + ",0.5" * (BAD_DIM - 1) + "]]"), 422, "features"),
    ("infinity", _raw("[[Infinity" + ",0.5" * (BAD_DIM - 1) + "]]"), 422, "features"),
    ("minus-infinity", _raw("[[-Infinity" + ",0.5" * (BAD_DIM - 1) + "]]"), 422, "features"),
    ("overflow-to-inf", _raw("[[1e999" + ",0.5" * (BAD_DIM - 1) + "]]"), 422, "features"),
    ("float32-overflow", _raw("[[1e39" + ",0.5" * (BAD_DIM - 1) + "]]"), 422, "features"),
    ("wrong-dimension", _raw("[[1,2,3]]"), 422, "features"),
    ("zero-dimension", _raw("[[]]"), 422, "features"),
    ("ragged-rows", _raw(f"[{ROW}, [1,2]]", "[[0],[1]]"), 422, "features"),
    ("features-strings", _raw('[["a","b","c","d","e","f","g","h"]]'), 422, "features"),
    ("features-null", _raw("[[null,1,1,1,1,1,1,1]]"), 422, "features"),
    ("features-3d", _raw(f"[[{ROW}]]"), 422, "features"),
    ("features-not-list", _raw('{"a": 1}'), 422, "features"),
    ("empty-chunk", _raw("[]", "[]"), 422, "features"),
    ("rows-ne-labels", _raw(f"[{ROW},{ROW}]", "[[0]]"), 422, "labels"),
    ("labels-flat", _raw(f"[{ROW}]", "[0]"), 422, "labels"),
    ("labels-not-list", _raw(f"[{ROW}]", '"cat"'), 422, "labels"),
    ("labels-float", _raw(f"[{ROW}]", "[[0.5]]"), 422, "labels"),
    ("labels-mixed-types", _raw(f"[{ROW}]", '[[1, "1"]]'), 422, "labels"),
    ("labels-bool", _raw(f"[{ROW}]", "[[true]]"), 422, "labels"),
    ("labels-repeated", _raw(f"[{ROW}]", "[[3, 3]]"), 422, "labels"),
    ("labels-beyond-int64", _raw(f"[{ROW}]", "[[9223372036854775808]]"), 422, "labels"),
    ("labels-and-matrix", _raw(f"[{ROW}]", extra=', "label_matrix": [[1]]'), 422, "labels"),
    ("missing-labels", f'{{"features": [{ROW}]}}', 422, "labels"),
    ("missing-features", '{"labels": [[0]]}', 422, "features"),
    ("ids-wrong-length", _raw(f"[{ROW}]", extra=', "ids": [1, 2]'), 422, "ids"),
    ("ids-negative", _raw(f"[{ROW}]", extra=', "ids": [-5]'), 422, "ids"),
    ("ids-duplicate", _raw(f"[{ROW},{ROW}]", "[[0],[1]]", ', "ids": [7, 7]'), 422, "ids"),
    ("ids-float", _raw(f"[{ROW}]", extra=', "ids": [1.5]'), 422, "ids"),
    ("ids-too-large", _raw(f"[{ROW}]", extra=', "ids": [99999999999999999999]'), 422, "ids"),
    ("role", _raw(f"[{ROW}]", extra=', "role": "test"'), 422, "role"),
    ("unknown-field", _raw(f"[{ROW}]", extra=', "colour": "red"'), 422, "colour"),
    ("malformed-json", '{"features": [[1, 2', 400, None),
    ("not-an-object", "[1, 2, 3]", 400, None),
    ("empty-body", "", 400, None),
    ("not-utf8", "\udcff", 400, None),
]


@pytest.mark.parametrize("body,status,field", [c[1:] for c in JSON_INGEST_CASES],
                         ids=[c[0] for c in JSON_INGEST_CASES])
def test_bad_json_ingest(api: Any, hs: Any, bad_index: str, body: str, status: int,
                         field: str | None) -> None:
    raw = body.encode("utf-8", "surrogateescape")
    r = api.http.post(f"/indexes/{bad_index}/ingest", content=raw,
                      headers={"Content-Type": "application/json"})
    problem = hs.assert_problem(r, status, field)
    if field is not None:
        assert field in problem["detail"] or problem["field"] == field


def test_huge_integer_feature_is_422(api: Any, hs: Any, bad_index: str) -> None:
    body = _raw("[[" + "1" * 400 + ",0.5" * (BAD_DIM - 1) + "]]")
    r = api.http.post(f"/indexes/{bad_index}/ingest", content=body,
                      headers={"Content-Type": "application/json"})
    hs.assert_problem(r, 422, "features")


def _npz_cases(hs: Any) -> list[tuple[str, bytes, int, str | None]]:
    f = np.ones((4, BAD_DIM), np.float32)
    lab = np.eye(2, dtype=np.uint8)[[0, 1, 0, 1]]
    pickled = io_bytes(lambda buf: np.savez(buf, features=np.array([object()] * 4),
                                            labels=lab))
    return [
        ("not-a-zip", b"this is not an npz archive", 400, None),
        ("corrupt-zip", b"PK\x03\x04" + b"\x00" * 64, 400, None),
        ("plain-npy", io_bytes(lambda buf: np.save(buf, f)), 400, None),
        ("pickled-object-array", pickled, 422, "features"),  # refused from its header
        ("missing-labels", hs.npz_bytes(features=f), 422, "labels"),
        ("missing-features", hs.npz_bytes(labels=lab), 422, "features"),
        ("labels-not-0-1", hs.npz_bytes(features=f, labels=lab * 2), 422, "labels"),
        ("labels-nan", hs.npz_bytes(features=f, labels=np.full((4, 2), np.nan)), 422,
         "labels"),
        ("labels-1d", hs.npz_bytes(features=f, labels=np.zeros(4)), 422, "labels"),
        ("labels-rows", hs.npz_bytes(features=f, labels=lab[:3]), 422, "labels"),
        ("features-1d", hs.npz_bytes(features=np.ones(BAD_DIM), labels=lab), 422,
         "features"),
        ("features-empty", hs.npz_bytes(features=np.ones((0, BAD_DIM)), labels=lab[:0]), 422,
         "features"),
        ("features-strings", hs.npz_bytes(features=np.full((4, BAD_DIM), "x"), labels=lab),
         422, "features"),
        ("features-complex", hs.npz_bytes(features=f.astype(complex), labels=lab), 422,
         "features"),
        ("features-nan", hs.npz_bytes(features=np.where(np.eye(4, BAD_DIM) > 0, np.nan, f),
                                      labels=lab), 422, "features"),
        ("features-inf", hs.npz_bytes(features=f * np.float32(np.inf), labels=lab), 422,
         "features"),
        ("wrong-dimension", hs.npz_bytes(features=np.ones((4, 3)), labels=lab), 422,
         "features"),
        ("ids-2d", hs.npz_bytes(features=f, labels=lab, ids=np.zeros((4, 1), int)), 422,
         "ids"),
        ("ids-float", hs.npz_bytes(features=f, labels=lab, ids=np.arange(4.0)), 422, "ids"),
        ("ids-negative", hs.npz_bytes(features=f, labels=lab, ids=-np.arange(1, 5)), 422,
         "ids"),
        ("ids-duplicate", hs.npz_bytes(features=f, labels=lab, ids=np.zeros(4, int)), 422,
         "ids"),
        ("ids-length", hs.npz_bytes(features=f, labels=lab, ids=np.arange(3)), 422, "ids"),
    ]


def io_bytes(write: Any) -> bytes:
    buf = io.BytesIO()
    write(buf)
    return buf.getvalue()


NPZ_CASE_IDS = ["not-a-zip", "corrupt-zip", "plain-npy", "pickled-object-array",
                "missing-labels", "missing-features", "labels-not-0-1", "labels-nan",
                "labels-1d", "labels-rows", "features-1d", "features-empty", "features-strings",
                "features-complex", "features-nan", "features-inf", "wrong-dimension", "ids-2d",
                "ids-float", "ids-negative", "ids-duplicate", "ids-length"]


@pytest.mark.parametrize("case", NPZ_CASE_IDS)
def test_bad_npz_ingest(api: Any, hs: Any, bad_index: str, case: str) -> None:
    cases = {c[0]: c[1:] for c in _npz_cases(hs)}
    assert set(cases) == set(NPZ_CASE_IDS)
    body, status, field = cases[case]
    r = api.http.post(f"/indexes/{bad_index}/ingest", content=body,
                      headers={"Content-Type": "application/octet-stream"})
    hs.assert_problem(r, status, field)


def test_npz_member_that_is_not_an_array(api: Any, hs: Any, bad_index: str) -> None:
    import zipfile

    def write(buf: Any) -> None:
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("features.npy", b"definitely not an npy header")
            z.writestr("labels.npy", b"nor this")

    r = api.http.post(f"/indexes/{bad_index}/ingest", content=io_bytes(write),
                      headers={"Content-Type": "application/octet-stream"})
    hs.assert_problem(r, (400, 422))


def _patched_zip(flag: int | None = None, method: int | None = None) -> bytes:
    """A valid .npz whose zip headers claim this flag word / compression method."""
    raw = bytearray(io_bytes(lambda buf: np.savez(buf, features=np.ones((4, BAD_DIM)),
                                                  labels=np.ones((4, 1), np.uint8))))
    for magic, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        i = raw.find(magic)
        while i >= 0:
            if flag is not None:
                struct.pack_into("<H", raw, i + flag_at, flag)
            if method is not None:
                struct.pack_into("<H", raw, i + method_at, method)
            i = raw.find(magic, i + 4)
    return bytes(raw)


def _corrupt_deflate() -> bytes:
    raw = bytearray(io_bytes(lambda buf: np.savez_compressed(
        buf, features=np.ones((40, BAD_DIM)), labels=np.ones((40, 1), np.uint8))))
    i = raw.find(b"PK\x03\x04")
    start = i + 30 + struct.unpack_from("<H", raw, i + 26)[0] + \
        struct.unpack_from("<H", raw, i + 28)[0]
    for j in range(start, start + 20):
        raw[j] ^= 0x5A
    return bytes(raw)


@pytest.mark.parametrize("case", ["encrypted", "compression-method-99", "flag-bit-5",
                                  "corrupt-deflate"])
def test_npz_with_bad_zip_members(api: Any, hs: Any, bad_index: str, case: str) -> None:
    body = {"encrypted": lambda: _patched_zip(flag=1),
            "compression-method-99": lambda: _patched_zip(method=99),
            "flag-bit-5": lambda: _patched_zip(flag=32),
            "corrupt-deflate": _corrupt_deflate}[case]()
    r = api.http.post(f"/indexes/{bad_index}/ingest", content=body,
                      headers={"Content-Type": "application/octet-stream"})
    hs.assert_problem(r, 400)


def test_content_type_parameters_and_role_query(api: Any, hs: Any, bad_index: str) -> None:
    f, c = hs.Clusters(seed=13, dim=BAD_DIM, n_classes=3).sample(3)
    r = api.http.post(f"/indexes/{bad_index}/ingest", params={"role": "exam"},
                      content=hs.npz_bytes(features=f, labels=hs.one_hot(c, 3)),
                      headers={"Content-Type": "application/octet-stream"})
    hs.assert_problem(r, 422, "role")
    too_many = {"features": [[0.5] * BAD_DIM] * 10_001, "k": 1}
    hs.assert_problem(api.http.post(f"/indexes/{bad_index}/search", json=too_many), 422,
                      "features")


def test_unsupported_content_type(api: Any, hs: Any, bad_index: str) -> None:
    r = api.http.post(f"/indexes/{bad_index}/ingest", content=b"features,labels\n1,2",
                      headers={"Content-Type": "text/csv"})
    hs.assert_problem(r, 415, "Content-Type")


def test_unknown_index(api: Any, hs: Any) -> None:
    http = api.http
    name = hs.unique("missing")
    hs.assert_problem(http.get(f"/indexes/{name}"), 404, "name")
    hs.assert_problem(http.get(f"/indexes/{name}/rounds"), 404, "name")
    hs.assert_problem(http.delete(f"/indexes/{name}"), 404, "name")
    hs.assert_problem(http.post(f"/indexes/{name}/ingest", json={"features": [[1.0]],
                                                                "labels": [[0]]}), 404, "name")
    hs.assert_problem(http.get(f"/indexes/{name}/search", params={"vector": "1"}), 404, "name")
    hs.assert_problem(http.get(f"/indexes/{name}/search", params={"item": 1}), 404, "name")
    hs.assert_problem(http.post(f"/indexes/{name}/search", json={"features": [[1.0]]}), 404,
                      "name")
    hs.assert_problem(http.get("/no/such/route"), 404)
    hs.assert_problem(http.put("/indexes"), 405)


def test_search_before_any_round_is_409(api: Any, hs: Any) -> None:
    name = hs.unique("empty")
    api.create_index(name, 4)
    hs.assert_problem(api.http.get(f"/indexes/{name}/search", params={"vector": "1,2,3,4"}),
                      409)
    hs.assert_problem(api.http.post(f"/indexes/{name}/search",
                                    json={"features": [[1, 2, 3, 4]]}), 409)
    hs.assert_problem(api.http.get(f"/indexes/{name}/search", params={"item": 0}), 409)


def _vec(n: int = BAD_DIM, value: str = "0.5") -> str:
    return ",".join([value] * n)


# (case id, query params, status, field)
GET_SEARCH_CASES = [
    ("k-zero", {"vector": _vec(), "k": 0}, 422, "k"),
    ("k-negative", {"vector": _vec(), "k": -3}, 422, "k"),
    ("k-text", {"vector": _vec(), "k": "ten"}, 422, "k"),
    ("k-over-max", {"vector": _vec(), "k": 10_001}, 422, "k"),
    ("vector-letters", {"vector": "a,b,c,d,e,f,g,h", "k": 3}, 422, "vector"),
    ("vector-empty", {"vector": "", "k": 3}, 422, "vector"),
    ("vector-double-comma", {"vector": "1,,2,3,4,5,6,7,8"}, 422, "vector"),
    ("vector-wrong-dimension", {"vector": "1,2,3"}, 422, "features"),
    ("vector-nan", {"vector": _vec(value="nan")}, 422, "features"),
    ("vector-inf", {"vector": _vec(value="inf")}, 422, "features"),
    ("vector-and-item", {"vector": _vec(), "item": 1}, 422, "vector"),
    ("neither", {"k": 3}, 422, "vector"),
    ("item-text", {"item": "seven"}, 422, "item"),
    ("item-unknown", {"item": 987654321}, 404, "item"),
]


@pytest.mark.parametrize("params,status,field", [c[1:] for c in GET_SEARCH_CASES],
                         ids=[c[0] for c in GET_SEARCH_CASES])
def test_bad_get_search(api: Any, hs: Any, bad_index: str, params: dict[str, Any],
                        status: int, field: str) -> None:
    r = api.http.get(f"/indexes/{bad_index}/search", params=params)
    hs.assert_problem(r, status, field)


POST_SEARCH_CASES = [
    ("k-zero", {"features": [[0.5] * BAD_DIM], "k": 0}, 422, "k"),
    ("k-over-max", {"features": [[0.5] * BAD_DIM], "k": 10_001}, 422, "k"),
    ("k-text", {"features": [[0.5] * BAD_DIM], "k": "many"}, 422, "k"),
    ("no-vectors", {"features": []}, 422, "features"),
    ("missing-features", {"k": 3}, 422, "features"),
    ("ragged", {"features": [[0.5] * BAD_DIM, [1.0]]}, 422, "features"),
    ("wrong-dimension", {"features": [[0.5, 1.0]]}, 422, "features"),
    ("letters", {"features": [["a"] * BAD_DIM]}, 422, None),
    ("unknown-field", {"features": [[0.5] * BAD_DIM], "metric": "cosine"}, 422, "metric"),
]


@pytest.mark.parametrize("body,status,field", [c[1:] for c in POST_SEARCH_CASES],
                         ids=[c[0] for c in POST_SEARCH_CASES])
def test_bad_post_search(api: Any, hs: Any, bad_index: str, body: dict[str, Any], status: int,
                         field: str | None) -> None:
    r = api.http.post(f"/indexes/{bad_index}/search", json=body)
    problem = hs.assert_problem(r, status, field)
    if field is None:
        assert problem["field"].startswith("features")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_post_search_non_finite(api: Any, hs: Any, bad_index: str, literal: str) -> None:
    body = '{"features": [[' + literal + ",0.5" * (BAD_DIM - 1) + "]], \"k\": 3}"
    r = api.http.post(f"/indexes/{bad_index}/search", content=body,
                      headers={"Content-Type": "application/json"})
    hs.assert_problem(r, 422, "features")


def test_post_search_malformed_json(api: Any, hs: Any, bad_index: str) -> None:
    r = api.http.post(f"/indexes/{bad_index}/search", content=b'{"features": [[1,',
                      headers={"Content-Type": "application/json"})
    hs.assert_problem(r, 400)


def test_good_search_on_bad_index_still_works(api: Any, bad_index: str) -> None:
    """The error cases above are rejected for their input, not because search is broken."""
    r = api.http.get(f"/indexes/{bad_index}/search", params={"vector": _vec(), "k": 3})
    assert r.status_code == 200 and len(r.json()["results"][0]) == 3
    # ...and nothing any of them sent was queued.
    assert api.info(bad_index)["n_items"] == 60


CREATE_CASES = [
    ("name-spaces", {"name": "bad name", "dim": 4}, 422, "name"),
    ("name-slash", {"name": "a/b", "dim": 4}, 422, "name"),
    ("name-empty", {"name": "", "dim": 4}, 422, "name"),
    ("name-too-long", {"name": "x" * 65, "dim": 4}, 422, "name"),
    ("name-missing", {"dim": 4}, 422, "name"),
    ("dim-zero", {"name": "ok-name", "dim": 0}, 422, "dim"),
    ("dim-missing", {"name": "ok-name"}, 422, "dim"),
    ("dim-text", {"name": "ok-name", "dim": "big"}, 422, "dim"),
    ("bits-small", {"name": "ok-name", "dim": 4, "bits": 4}, 422, "bits"),
    ("bits-huge", {"name": "ok-name", "dim": 4, "bits": 4096}, 422, "bits"),
    ("lam-zero", {"name": "ok-name", "dim": 4, "lam": 0}, 422, "lam"),
    ("feature-map", {"name": "ok-name", "dim": 4, "feature_map": "cnn"}, 422, "feature_map"),
    ("query-encoder", {"name": "ok-name", "dim": 4, "query_encoder": "mlp"}, 422,
     "query_encoder"),
    ("query-steps-negative", {"name": "ok-name", "dim": 4, "query_steps": -1}, 422,
     "query_steps"),
    ("unknown-field", {"name": "ok-name", "dim": 4, "colour": "red"}, 422, "colour"),
    ("width-zero", {"name": "ok-name", "dim": 4, "kind": "cross-modal", "text_dim": 3,
                    "image_hidden": [8, 0]}, 422, "image_hidden.1"),
    ("width-text", {"name": "ok-name", "dim": 4, "kind": "cross-modal", "text_dim": 3,
                    "text_hidden": ["wide"]}, 422, "text_hidden.0"),
    ("distill-negative", {"name": "ok-name", "dim": 4, "kind": "cross-modal", "text_dim": 3,
                          "distill_weight": -1}, 422, "distill_weight"),
    ("freeze-on-sdoh", {"name": "ok-name", "dim": 4, "freeze_first_layer": True}, 422,
     "freeze_first_layer"),
    ("center-negative", {"name": "ok-name", "dim": 4, "kind": "cross-modal", "text_dim": 3,
                         "center_weight": -1}, 422, "center_weight"),
    ("center-on-sdoh", {"name": "ok-name", "dim": 4, "center_weight": 1.0}, 422,
     "center_weight"),
]


@pytest.mark.parametrize("body,status,field", [c[1:] for c in CREATE_CASES],
                         ids=[c[0] for c in CREATE_CASES])
def test_bad_create(api: Any, hs: Any, body: dict[str, Any], status: int, field: str) -> None:
    hs.assert_problem(api.http.post("/indexes", json=body), status, field)
    if body.get("name") == "ok-name":
        hs.assert_problem(api.http.get("/indexes/ok-name"), 404)  # nothing was created


def test_create_malformed_json_and_duplicate(api: Any, hs: Any) -> None:
    r = api.http.post("/indexes", content=b'{"name": "x", "dim":',
                      headers={"Content-Type": "application/json"})
    hs.assert_problem(r, 400)
    name = hs.unique("dup")
    api.create_index(name, 4)
    hs.assert_problem(api.http.post("/indexes", json={"name": name, "dim": 8}), 409, "name")
    assert api.info(name)["dim"] == 4  # the first one stands
    hs.assert_problem(api.http.delete("/indexes/bad name!"), 422, "name")


# --- body size limit (its own server: HASHSTREAM_MAX_BODY_BYTES=4096) --------------------------

LIMIT = 4096


DEFAULT = "dflt"


@pytest.fixture(scope="module")
def small_limit(start_server: Any, hs: Any) -> Any:
    """No worker, a 4 KiB body limit, and a default index named ``dflt``."""
    server = start_server("limit", workers=0, max_body_bytes=LIMIT, default_index=DEFAULT)
    server.create_index("lim", BAD_DIM)
    return server


def _chunk_of_size(hs: Any, rows: int) -> bytes:
    f = np.full((rows, BAD_DIM), 0.123456, np.float32)
    return json.dumps(hs.json_chunk(f, np.zeros(rows, int))).encode()


def test_body_over_limit_is_413(small_limit: Any, hs: Any) -> None:
    http = small_limit.http
    small, big = _chunk_of_size(hs, 10), _chunk_of_size(hs, 200)
    assert len(small) < LIMIT < len(big)
    ok = http.post("/indexes/lim/ingest", content=small,
                   headers={"Content-Type": "application/json"})
    assert ok.status_code == 202, ok.text
    r = http.post("/indexes/lim/ingest", content=big,
                  headers={"Content-Type": "application/json"})
    problem = hs.assert_problem(r, 413, "body")
    assert str(LIMIT) in problem["detail"]
    npz = hs.npz_bytes(features=np.ones((300, BAD_DIM), np.float32),
                       labels=np.ones((300, 1), np.uint8))
    r = http.post("/indexes/lim/ingest", content=npz,
                  headers={"Content-Type": "application/octet-stream"})
    hs.assert_problem(r, 413, "body")
    # Also on the routes whose body FastAPI parses.
    hs.assert_problem(http.post("/indexes/lim/search", content=big,
                                headers={"Content-Type": "application/json"}), 413, "body")
    assert small_limit.info("lim")["queue_depth"] == 1  # only the small chunk was queued


def test_streamed_body_over_limit_is_413(small_limit: Any, hs: Any) -> None:
    """Without Content-Length (chunked transfer) the limit applies while reading."""
    big = _chunk_of_size(hs, 200)

    def pieces() -> Any:
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    r = small_limit.http.post("/indexes/lim/ingest", content=pieces(),
                              headers={"Content-Type": "application/json"})
    hs.assert_problem(r, 413, "body")


@pytest.mark.parametrize("path", ["/indexes/lim/search", "/indexes"])
def test_streamed_body_over_limit_is_413_on_parsed_routes(small_limit: Any, hs: Any,
                                                          path: str) -> None:
    big = json.dumps({"features": [[0.5] * BAD_DIM] * 200, "k": 3}).encode()

    def pieces() -> Any:
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    r = small_limit.http.post(path, content=pieces(),
                              headers={"Content-Type": "application/json"})
    hs.assert_problem(r, 413, "body")


# --- generated fuzz: random bodies and queries never give a 5xx -------------------------------

KEYS = ["features", "labels", "ids", "role", "k", "name", "dim", "bits", "vector", "item"]


def _rand_json(rng: np.random.Generator, depth: int = 0) -> Any:
    kind = int(rng.integers(0, 10 if depth < 3 else 6))
    if kind == 0:
        return None
    if kind == 1:
        return bool(rng.integers(0, 2))
    if kind == 2:  # sometimes far beyond float32 (and float64) range
        big = int(rng.integers(-(2**62), 2**62))
        return big * 10 ** int(rng.integers(0, 400)) if rng.random() < 0.2 else big
    if kind == 3:
        return float(rng.choice([np.nan, np.inf, -np.inf, 0.0, -1e300, 1e39,
                                 float(rng.standard_normal())]))
    if kind == 4:
        return "".join(chr(int(c)) for c in rng.integers(32, 0x2FF, int(rng.integers(0, 12))))
    if kind == 5:
        return [int(v) for v in rng.integers(-3, 8, int(rng.integers(0, 5)))]
    if kind == 6:
        return [_rand_json(rng, depth + 1) for _ in range(int(rng.integers(0, 5)))]
    if kind == 7:
        return {str(rng.choice(KEYS)) if rng.random() < 0.7 else f"k{rng.integers(99)}":
                _rand_json(rng, depth + 1) for _ in range(int(rng.integers(0, 5)))}
    if kind == 8:  # a numeric matrix, sometimes of the index's dimension
        cols = BAD_DIM if rng.random() < 0.5 else int(rng.integers(0, 12))
        return rng.standard_normal((int(rng.integers(0, 4)), cols)).round(3).tolist()
    return [[int(c) for c in rng.integers(-1, 4, int(rng.integers(0, 3)))]
            for _ in range(int(rng.integers(0, 4)))]


def _rand_chunk_like(rng: np.random.Generator) -> dict[str, Any]:
    """A body shaped like an ingest or search request with random parts."""
    rows = int(rng.integers(0, 4))
    body: dict[str, Any] = {
        "features": rng.standard_normal((rows, BAD_DIM)).tolist(),
        "labels": [[int(rng.integers(0, 3))] for _ in range(rows)],
        "ids": [int(v) for v in rng.integers(0, 10, rows)],
        "role": str(rng.choice(["train", "query"])), "k": int(rng.integers(1, 5)),
    }
    for key in list(body):
        roll = rng.random()
        if roll < 0.3:
            body[key] = _rand_json(rng)
        elif roll < 0.45:
            del body[key]
    return body


def _rand_npz(rng: np.random.Generator) -> bytes:
    dtypes = [np.float32, np.float64, np.int8, np.int64, np.uint8, np.uint64, np.bool_,
              np.complex64, np.float16, "U3"]
    arrays = {}
    for key in ("features", "labels", "ids", "extra"):
        if rng.random() < 0.25:
            continue
        shape = tuple(int(s) for s in rng.integers(0, 9, int(rng.integers(0, 4))))
        dtype = dtypes[int(rng.integers(0, len(dtypes)))]
        values = rng.integers(-2, 3, shape) if rng.random() < 0.5 else rng.standard_normal(shape)
        arrays[key] = np.asarray(values).astype(dtype)
    raw = io_bytes(lambda buf: np.savez(buf, **arrays))
    if rng.random() < 0.2:  # truncate or flip a byte
        cut = int(rng.integers(4, len(raw)))
        raw = raw[:cut] if rng.random() < 0.5 else \
            raw[:cut] + bytes([raw[cut] ^ 0xFF]) + raw[cut + 1:]
    return raw


def test_fuzz_never_5xx(api: Any, hs: Any) -> None:
    http = api.http
    name = hs.unique("fuzz")
    api.create_index(name, BAD_DIM)
    before = {i["name"] for i in http.get("/indexes").json()["indexes"]}
    rng = np.random.default_rng(20240611)
    seen: dict[int, int] = {}
    json_headers = {"Content-Type": "application/json"}
    for i in range(400):
        mode = i % 8
        if mode == 0:
            r = http.post(f"/indexes/{name}/ingest", headers=json_headers,
                          content=rng.bytes(int(rng.integers(0, 200))))
        elif mode == 1:
            body = rng.bytes(int(rng.integers(0, 200)))
            if rng.random() < 0.5:
                body = b"PK\x03\x04" + body
            r = http.post(f"/indexes/{name}/ingest", content=body,
                          headers={"Content-Type": "application/octet-stream"})
        elif mode == 2:
            r = http.post(f"/indexes/{name}/ingest", headers=json_headers,
                          content=json.dumps(_rand_json(rng)))
        elif mode == 3:
            r = http.post(f"/indexes/{name}/ingest", headers=json_headers,
                          content=json.dumps(_rand_chunk_like(rng)))
        elif mode == 4:
            r = http.post(f"/indexes/{name}/ingest", content=_rand_npz(rng),
                          headers={"Content-Type": "application/octet-stream"})
        elif mode == 5:
            body = _rand_chunk_like(rng) if rng.random() < 0.5 else _rand_json(rng)
            r = http.post(f"/indexes/{name}/search", headers=json_headers,
                          content=json.dumps(body))
        elif mode == 6:
            params: dict[str, Any] = {}
            for key in ("vector", "item", "k"):
                if rng.random() < 0.6:
                    tokens = [str(_rand_json(rng, 3)) for _ in range(int(rng.integers(0, 9)))]
                    params[key] = ",".join(tokens)
            target = name if rng.random() < 0.8 else "bad name"
            r = http.get(f"/indexes/{target}/search", params=params)
        else:
            body = _rand_json(rng)
            if isinstance(body, dict) and rng.random() < 0.5:
                body.setdefault("name", hs.unique("fz"))
            r = http.post("/indexes", headers=json_headers, content=json.dumps(body))
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, (i, mode, r.status_code, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith(hs.PROBLEM), r.headers
    assert sum(v for k, v in seen.items() if 400 <= k < 500) > 300, seen
    for extra in {i["name"] for i in http.get("/indexes").json()["indexes"]} - before:
        http.delete(f"/indexes/{extra}")


# --- 4. concurrent ingest loses nothing -----------------------------------------------------

def test_concurrent_ingest_loses_nothing(api: Any, hs: Any, index_name: str) -> None:
    dim, threads, per_thread, rows = 16, 8, 10, 25
    api.create_index(index_name, dim)
    data = hs.Clusters(seed=4, dim=dim, n_classes=4)
    chunks = [[data.sample(rows) for _ in range(per_thread)] for _ in range(threads)]

    def client(t: int) -> list[tuple[str, list[int]]]:
        out = []
        with httpx.Client(base_url=api.url, timeout=60) as http:
            for j, (f, c) in enumerate(chunks[t]):
                if j % 2:  # client ids, disjoint per thread and from the service's range
                    ids = list(range(1_000_000 + (t * per_thread + j) * rows,
                                     1_000_000 + (t * per_thread + j + 1) * rows))
                    body = hs.json_chunk(f, c, ids=ids)
                    r = http.post(f"/indexes/{index_name}/ingest", json=body)
                else:
                    r = http.post(f"/indexes/{index_name}/ingest",
                                  content=hs.npz_bytes(features=f, labels=hs.one_hot(c, 4)),
                                  headers={"Content-Type": "application/octet-stream"})
                assert r.status_code == 202, r.text
                body = r.json()
                if j % 2 == 0:
                    ids = list(range(*body["id_range"]))
                out.append((body["chunk_id"], ids))
        return out

    with ThreadPoolExecutor(threads) as pool:
        accepted = [x for part in pool.map(client, range(threads)) for x in part]
    total = threads * per_thread * rows
    chunk_ids = [cid for cid, _ in accepted]
    all_ids = [i for _, ids in accepted for i in ids]
    assert len(set(chunk_ids)) == threads * per_thread
    assert len(all_ids) == len(set(all_ids)) == total  # service-assigned ranges never overlap

    info = api.wait_idle(index_name, 1)
    records = api.rounds(index_name)
    committed = [cid for rec in records for cid in rec["chunks"]]
    assert sorted(committed) == sorted(chunk_ids)  # each chunk exactly once
    assert records[-1]["n_database"] == info["n_items"] == total
    r = api.http.post(f"/indexes/{index_name}/search",
                      json={"features": [data.vector(0).tolist()], "k": 10_000,
                            "min_version": info["model_version"]})
    assert r.status_code == 200
    hits = r.json()["results"][0]
    assert sorted(h["id"] for h in hits) == sorted(all_ids)
    truth = {i: int(cls) for t in range(threads) for (_, ids), (_, c) in
             zip(accepted[t * per_thread:(t + 1) * per_thread], chunks[t], strict=True)
             for i, cls in zip(ids, c, strict=True)}
    assert all(h["labels"] == [truth[h["id"]]] for h in hits)


# --- 5. search during a round sees one consistent version -----------------------------------

def test_search_during_round_sees_consistent_version(api: Any, hs: Any,
                                                     index_name: str) -> None:
    dim = 64
    api.create_index(index_name, dim, n_anchors=256, n1=200, n2=200)
    data = hs.Clusters(seed=5, dim=dim, n_classes=6)
    f, c = data.sample(1000)
    api.ingest_npz(index_name, features=f, labels=hs.one_hot(c, 6))
    api.wait_idle(index_name, 1)
    vector = ",".join(f"{x:.5f}" for x in data.vector(2))

    seen: list[tuple[int, int, int]] = []  # (model_version, hits, unique ids)
    stop = threading.Event()
    lock = threading.Lock()

    errors: list[str] = []

    def hammer() -> None:
        with httpx.Client(base_url=api.url, timeout=60) as http:
            while not stop.is_set():
                r = http.get(f"/indexes/{index_name}/search",
                             params={"vector": vector, "k": 10_000})
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")
                    return
                body = r.json()
                hits = body["results"][0]
                with lock:
                    seen.append((body["model_version"], len(hits),
                                 len({h["id"] for h in hits})))

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        hs.wait_until(lambda: len(seen) >= 3 or errors, 60, what="searches before the round")
        f2, c2 = data.sample(4000)
        api.ingest_npz(index_name, features=f2, labels=hs.one_hot(c2, 6))
        api.wait_idle(index_name, 2)
        mark = len(seen)
        hs.wait_until(lambda: len(seen) >= mark + 6 or errors, 60,
                      what="searches after the round")
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    assert not errors, errors[:3]
    n_db = {rec["model_version"]: rec["n_database"] for rec in api.rounds(index_name)}
    assert n_db == {1: 1000, 2: 5000}
    versions = [v for v, _, _ in seen]
    assert set(versions) == {1, 2}, set(versions)  # searched before and after the commit
    assert all(hits == unique for _, hits, unique in seen)
    # Each response is the whole database of the version it names: never a half-applied
    # round. (test_reported_version_is_the_searched_version forces the interleaving.)
    assert {hits for _, hits, _ in seen} <= {1000, 5000}
    mismatched = [(v, hits) for v, hits, _ in seen if hits != n_db[v]]
    assert not mismatched, f"model_version disagrees with the results: {mismatched[:5]}"


def test_reported_version_is_the_searched_version(api: Any, hs: Any, redis_url: str,
                                                  store_for: Any, index_name: str) -> None:
    """Regression (the route used to re-read the version after searching). Deterministic
    interleaving: Redis MONITOR shows the API reading the version key for a
    search; right then this test commits round 2 itself (a real IndexStore commit, version 2
    holding twice the items), while the API is still ranking against version 1."""
    import redis

    from hashstream.store.index_store import RoundCommit

    dim, n = 16, 6000
    api.create_index(index_name, dim)
    data = hs.Clusters(seed=6, dim=dim, n_classes=4)
    f, c = data.sample(n)
    api.ingest_npz(index_name, features=f, labels=hs.one_hot(c, 4))
    api.wait_idle(index_name, 1)
    store = store_for("api")
    key = store.keys(index_name).version
    path = f"/indexes/{index_name}/search"
    params = {"vector": ",".join(f"{x:.5f}" for x in data.vector(1)), "k": 10_000}
    assert len(api.http.get(path, params=params).json()["results"][0]) == n  # replica at v1

    seg = store.load_segment(index_name, 1)
    segment = {**seg, "ids": seg["ids"] + 10_000_000, "version": np.asarray(2)}
    state = store.load_state(index_name)
    projection = store.load_projection(index_name, 1)
    record = {"round": 2, "model_version": 2, "chunks": [], "n_database": 2 * n,
              "n_classes": 4, "map": None}
    committer = redis.Redis.from_url(redis_url)
    commit_store = type(store)(committer, store.prefix)
    events: list[tuple[int, str]] = []
    failures: list[BaseException] = []
    listening = threading.Event()
    done_committing = threading.Event()
    sentinel = f"{key}:stop-monitor"

    def monitor() -> None:
        try:
            m = redis.Redis.from_url(redis_url).monitor()
            m.__enter__()
        except redis.ResponseError as exc:  # MONITOR refused (ACL) on a shared server
            failures.append(exc)
            listening.set()
            return
        try:
            listening.set()
            committed = False
            for cmd in m.listen():
                text = str(cmd["command"])
                if sentinel in text:
                    return
                if key not in text:
                    continue
                # commands a script runs show as client "lua" (the commit is a script)
                port = -1 if cmd.get("client_type") == "lua" else int(
                    cmd.get("client_port") or 0)
                events.append((port, text))
                if not committed and text.startswith(("GET", "MGET")):
                    committed = True
                    try:
                        assert commit_store.commit_round(index_name, 1, RoundCommit(
                            state=state, projection=projection, centers=np.zeros((1, 16)),
                            segment=segment, record=record))
                    except BaseException as exc:  # reported by the test thread below
                        failures.append(exc)
                    finally:
                        done_committing.set()
        finally:
            m.__exit__(None, None, None)

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    assert listening.wait(10)
    if failures:
        pytest.skip(f"this Redis refuses MONITOR: {failures[0]}")
    try:
        r = api.http.get(path, params=params)
    finally:
        # the search may answer before the commit it triggered is through: the monitor must
        # see the commit before the sentinel that stops it
        done_committing.wait(30)
        committer.get(sentinel)
        watcher.join(10)
        committer.close()
    assert not failures, failures
    assert r.status_code == 200, r.text
    ours = {-1} | {port for port, text in events if text.startswith(("EVALSHA", "EVAL"))}
    swap = next(i for i, (port, text) in enumerate(events)
                if port == -1 and text.startswith("SET"))
    api_reads = [i for i, (port, text) in enumerate(events)
                 if port not in ours and text.startswith(("GET", "MGET"))]
    if len(api_reads) > 1 and api_reads[1] < swap:
        pytest.skip("the commit landed after the search finished; no interleaving this time")
    body = r.json()
    n_db = {1: n, 2: 2 * n}
    assert len(body["results"][0]) == n_db[body["model_version"]], \
        (body["model_version"], len(body["results"][0]), events)


# --- 6. auth on and off ---------------------------------------------------------------------

KEYS_ENV = "key1,key2"


@pytest.fixture(scope="module")
def secured(start_server: Any, hs: Any) -> Any:
    """A server with HASHSTREAM_API_KEYS=key1,key2 and one index with a committed round."""
    server = start_server("auth", workers=1, api_key="key1", api_keys=KEYS_ENV)
    server.create_index("sec", 8)
    f, c = hs.Clusters(seed=7, dim=8, n_classes=2).sample(40)
    server.ingest("sec", hs.json_chunk(f, c, ids=range(40)))
    server.wait_idle("sec", 1)
    return server


def _routes(hs: Any) -> list[tuple[str, str, dict[str, Any], int]]:
    """(method, path, request kwargs, status when authorised) of every authenticated route."""
    f, c = hs.Clusters(seed=8, dim=8, n_classes=2).sample(20)
    chunk = hs.json_chunk(f, c)
    vec = ",".join(["0.1"] * 8)
    fresh = hs.unique("sec")
    return [
        ("GET", "/indexes", {}, 200),
        ("POST", "/indexes", {"json": {"name": fresh, "dim": 8, "bits": 16}}, 201),
        ("GET", "/indexes/sec", {}, 200),
        ("GET", "/indexes/sec/rounds", {}, 200),
        ("POST", "/indexes/sec/ingest", {"json": chunk}, 202),
        ("POST", "/indexes/sec/ingest", {"content": hs.npz_bytes(
            features=f, labels=hs.one_hot(c, 2)),
            "headers": {"Content-Type": "application/octet-stream"}}, 202),
        ("GET", "/indexes/sec/search", {"params": {"vector": vec, "k": 3}}, 200),
        ("GET", "/indexes/sec/search", {"params": {"item": 5, "k": 3}}, 200),
        ("POST", "/indexes/sec/search", {"json": {"features": [[0.1] * 8], "k": 3}}, 200),
        ("POST", "/ingest", {"json": chunk}, 202),
        ("GET", "/search", {"params": {"vector": vec}}, (200, 409)),
        ("POST", "/search", {"json": {"features": [[0.1] * 8]}}, (200, 409)),
        ("DELETE", f"/indexes/{fresh}", {}, 204),
    ]


BAD_AUTH = [None, "Bearer wrong", "Bearer key1x", "Bearer", "Bearer  key9", "key1", "Basic key1",
            "Token key1", "Bearer key1,key2", "Bearer KEY1"]


def test_auth_required_on_every_route(secured: Any, hs: Any) -> None:
    before = secured.http.get("/indexes").json()["indexes"]
    anonymous = httpx.Client(base_url=secured.url, timeout=30)
    for method, path, kwargs, _ in _routes(hs):
        for header in BAD_AUTH:
            headers = dict(kwargs.get("headers", {}))
            if header is not None:
                headers["Authorization"] = header
            r = anonymous.request(method, path, **{**kwargs, "headers": headers})
            problem = hs.assert_problem(r, 401, "Authorization")
            assert "Bearer" in problem["detail"], (method, path, header)
    anonymous.close()
    # Nothing got through: no index created, nothing queued.
    assert secured.http.get("/indexes").json()["indexes"] == before
    info = secured.info("sec")
    assert info["queue_depth"] == 0 and info["n_items"] == 40


def test_every_documented_route_needs_a_key(secured: Any, hs: Any) -> None:
    """Whatever routes the OpenAPI schema lists (new ones included) refuse a missing key."""
    schema = secured.http.get("/openapi.json").json()
    checked = 0
    with httpx.Client(base_url=secured.url, timeout=30) as anonymous:
        for path, methods in schema["paths"].items():
            if path in ("/healthz", "/readyz"):  # /readyz: test_readyz_needs_a_key
                continue
            concrete = re.sub(r"\{name\}", "sec", re.sub(r"\{(?!name\})[^}]+\}", "x", path))
            for method in methods:
                if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                    continue
                r = anonymous.request(method.upper(), concrete)
                hs.assert_problem(r, 401, "Authorization")
                checked += 1
    assert checked >= 12
    assert secured.info("sec")["n_items"] == 40  # the DELETE above did nothing


@pytest.mark.parametrize("key", ["key1", "key2"])
def test_both_keys_work(secured: Any, hs: Any, key: str) -> None:
    for method, path, kwargs, status in _routes(hs):
        headers = {**kwargs.get("headers", {}), "Authorization": f"Bearer {key}"}
        r = secured.http.request(method, path, **{**kwargs, "headers": headers})
        expected = status if isinstance(status, tuple) else (status,)
        assert r.status_code in expected, (method, path, r.status_code, r.text)
    # The lower-case scheme is the same scheme (RFC 9110: case-insensitive).
    r = httpx.get(secured.url + "/indexes", headers={"Authorization": f"bearer {key}"})
    assert r.status_code == 200


def test_healthz_needs_no_key(secured: Any) -> None:
    r = httpx.get(secured.url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_docs_need_no_key(secured: Any) -> None:
    """The Swagger UI page and its assets carry no data: open, like /healthz."""
    for path in ("/docs", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        assert httpx.get(secured.url + path).status_code == 200, path


def test_readyz_needs_a_key(secured: Any, hs: Any) -> None:
    hs.assert_problem(httpx.get(secured.url + "/readyz"), 401, "Authorization")


def test_no_keys_configured_means_no_auth(api: Any, hs: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer anything"}, {"Authorization": "garbage"}):
        r = httpx.get(api.url + "/indexes", headers=headers)
        assert r.status_code == 200, r.text
    name = hs.unique("open")
    r = httpx.post(api.url + "/indexes", json={"name": name, "dim": 4, "bits": 16})
    assert r.status_code == 201
    assert httpx.delete(api.url + f"/indexes/{name}").status_code == 204


# --- delete and re-create under the same name ------------------------------------------------

def _fill(api: Any, hs: Any, name: str, dim: int, seed: int, first_id: int) -> set[int]:
    api.create_index(name, dim)
    f, c = hs.Clusters(seed=seed, dim=dim, n_classes=3).sample(80)
    ids = range(first_id, first_id + 80)
    api.ingest(name, hs.json_chunk(f, c, ids=ids))
    api.wait_idle(name, 1)
    return set(ids)


@pytest.mark.parametrize("new_dim", [8, 12])
def test_recreated_index_serves_its_own_items(api: Any, hs: Any, index_name: str,
                                              new_dim: int) -> None:
    old = _fill(api, hs, index_name, 8, seed=9, first_id=0)
    r = api.http.post(f"/indexes/{index_name}/search", json={"features": [[0.1] * 8], "k": 500})
    assert {h["id"] for h in r.json()["results"][0]} == old  # replica of the old index cached
    assert api.http.delete(f"/indexes/{index_name}").status_code == 204
    new = _fill(api, hs, index_name, new_dim, seed=10, first_id=50_000)
    r = api.http.post(f"/indexes/{index_name}/search",
                      json={"features": [[0.1] * new_dim], "k": 500})
    assert r.status_code == 200, r.text
    assert {h["id"] for h in r.json()["results"][0]} == new


def test_rejected_first_short_ingest_creates_nothing(small_limit: Any, hs: Any) -> None:
    body = '{"features": [[NaN, 1, 2]], "labels": [[0]]}'
    r = small_limit.http.post("/ingest", content=body,
                              headers={"Content-Type": "application/json"})
    hs.assert_problem(r, 422, "features")
    hs.assert_problem(small_limit.http.get(f"/indexes/{DEFAULT}"), 404)
