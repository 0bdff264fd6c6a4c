"""Single items against real servers: get one item, delete one and a batch, with kill -9 and a
restart in between (embedded Redis with its append-only file); every API process misses a
deleted item at once; a cross-modal pair's delete removes every target's code; problem+json
for bad input; the OpenAPI schema names the new routes and options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from support.net import port_open
from support.processes import PROBLEM

DIM, CLASSES = 16, 4
CROSS = {"kind": "cross-modal", "bits": 16, "text_dim": 6, "epochs": 5,
         "image_hidden": [16], "text_hidden": [16]}


def pairs(seed: int, n: int) -> dict[str, Any]:
    """Image/text pairs of three classes (one image and one text mean per class)."""
    rng = np.random.default_rng(seed)
    image_means, text_means = rng.standard_normal((3, 20)) * 3, rng.standard_normal((3, 6)) * 3
    y = rng.integers(0, 3, n)
    return {"image": (image_means[y] + rng.standard_normal((n, 20))).tolist(),
            "text": (text_means[y] + rng.standard_normal((n, 6))).tolist(),
            "labels": [[int(v)] for v in y]}


def popcount_distance(a: str, b: str) -> int:
    return int(np.unpackbits(np.frombuffer(bytes.fromhex(a), np.uint8)
                             ^ np.frombuffer(bytes.fromhex(b), np.uint8)).sum())


def get_item(server: Any, name: str, item: int, **params: Any) -> dict[str, Any]:
    r = server.http.get(f"/indexes/{name}/items/{item}", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def everything(server: Any, name: str, vector: list[float], version: int) -> set[int]:
    """Every id a search returns (k above the index's size)."""
    r = server.http.post(f"/indexes/{name}/search", json={
        "features": [vector], "k": 5000, "min_version": version})
    assert r.status_code == 200, r.text
    return {h["id"] for h in r.json()["results"][0]}


def assert_gone(server: Any, name: str, item: int, hs: Any) -> None:
    hs.assert_problem(server.http.get(f"/indexes/{name}/items/{item}"), 404, "item_id")
    hs.assert_problem(server.http.get(f"/indexes/{name}/search", params={"item": item}), 404,
                      "item")


def test_items_get_and_delete_through_kill9_and_restart(start_server: Any, hs: Any,
                                                        tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_server("items-emb", workers=1, embedded=True, data_dir=data_dir)
    name = hs.unique("items")
    first.create_index(name, DIM)
    data = hs.Clusters(seed=31, dim=DIM, n_classes=CLASSES)
    f, c = data.sample(300)
    assert first.ingest(name, hs.json_chunk(f, c))["id_range"] == [0, 300]
    first.wait_idle(name, 1)
    probe = data.vector(0).tolist()

    item = get_item(first, name, 5)
    assert item["id"] == 5 and item["labels"] == [int(c[5])] and item["index"] == name
    assert item["round"] == 1 and item["model_version"] == 1 and item["version"] == 1
    assert len(bytes.fromhex(item["code"])) == 16 // 8  # FAST: 16-bit codes
    near = first.http.get(f"/indexes/{name}/search", params={"item": 5, "k": 5}).json()
    for hit in near["results"][0]:  # the hex code is the code searches rank by
        assert hit["distance"] == popcount_distance(item["code"],
                                                    get_item(first, name, hit["id"])["code"])
        assert hit["model_version"] == 1

    r = first.http.delete(f"/indexes/{name}/items/5")
    assert r.status_code == 200 and r.json()["deleted"] == [5] and r.json()["unknown"] == []
    assert_gone(first, name, 5, hs)
    hs.assert_problem(first.http.delete(f"/indexes/{name}/items/5"), 404, "item_id")
    r = first.http.post(f"/indexes/{name}/items/delete", json={"ids": [6, 7, 5, 100_000, 7]})
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == [6, 7] and r.json()["unknown"] == [5, 100_000]
    assert first.info(name)["n_items"] == 297
    assert not {5, 6, 7} & everything(first, name, probe, 1)

    line = first.log.wait_for(lambda text: "embedded Redis at" in text, 30)
    port = int(re.search(r"redis://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
    first.kill9()  # right after the answers: the deletes must be durable
    hs.wait_until(lambda: not port_open(port), 30, 0.05, "the embedded Redis to die with serve")
    second = start_server("items-emb", workers=1, embedded=True, data_dir=data_dir)
    assert second.info(name)["n_items"] == 297
    for gone in (5, 6, 7):
        assert_gone(second, name, gone, hs)
    assert everything(second, name, probe, 1) == set(range(300)) - {5, 6, 7}
    assert get_item(second, name, 8)["labels"] == [int(c[8])]

    # 6 ingested again after its delete is a new item; one more delete, then a plain restart
    f2, c2 = data.sample(100)
    ids = [6, *range(1000, 1099)]
    second.ingest(name, hs.json_chunk(f2, c2, ids=ids))
    second.wait_idle(name, 2)
    again = get_item(second, name, 6, min_version=2)
    assert again["round"] == 2 and again["labels"] == [int(c2[0])]
    r = second.http.post(f"/indexes/{name}/items/delete", json={"ids": [1000, 8]})
    assert r.json()["deleted"] == [8, 1000]
    second.stop()
    third = start_server("items-emb", workers=1, embedded=True, data_dir=data_dir)
    assert third.info(name)["n_items"] == 297 + 100 - 2
    assert everything(third, name, probe, 2) == (set(range(300)) - {5, 7, 8}) | set(ids) - {1000}


def test_every_api_process_misses_a_deleted_item_at_once(start_server: Any, hs: Any) -> None:
    one = start_server("items-two", workers=1)
    other = start_server("items-two", workers=0)  # a second API process on the same Redis
    name = hs.unique("two")
    one.create_index(name, DIM)
    data = hs.Clusters(seed=32, dim=DIM, n_classes=CLASSES)
    f, c = data.sample(200)
    one.ingest(name, hs.json_chunk(f, c))
    one.wait_idle(name, 1)
    probe = data.vector(1).tolist()
    assert everything(other, name, probe, 1) == set(range(200))  # its replica is loaded
    r = one.http.post(f"/indexes/{name}/items/delete", json={"ids": list(range(50))})
    assert r.json()["deleted"] == list(range(50))
    # at once, on the process that did not answer the delete
    assert everything(other, name, probe, 1) == set(range(50, 200))
    assert_gone(other, name, 10, hs)
    assert other.info(name)["n_items"] == 150
    assert f'hashstream_database_items{{index="{name}"}} 150.0' in other.http.get(
        "/metrics").text
    r = other.http.post(f"/indexes/{name}/items/delete", json={"ids": [10, 60]})
    assert r.json()["deleted"] == [60] and r.json()["unknown"] == [10]


def test_deleting_a_cross_modal_pair_removes_every_targets_code(api: Any, hs: Any) -> None:
    name = hs.unique("xm-del")
    assert api.http.post("/indexes", json={"name": name, "dim": 20, **CROSS}).status_code == 201
    assert api.http.post(f"/indexes/{name}/ingest", json=pairs(33, 120)).status_code == 202
    hs.wait_until(lambda: api.info(name)["model_version"] >= 1, 180, what="round 1")
    item = get_item(api, name, 3)
    assert set(item["codes"]) == {"pairs", "image", "text"} and item["code"] == item[
        "codes"]["pairs"]
    assert api.http.delete(f"/indexes/{name}/items/3").json()["deleted"] == [3]
    probe = pairs(34, 2)
    for payload in ({"image": probe["image"]}, {"text": probe["text"]},
                    {"image": probe["image"], "target": "image"},
                    {"text": probe["text"], "target": "text"},
                    {"image": probe["image"], "target": "text"}):
        r = api.http.post(f"/indexes/{name}/search", json={**payload, "k": 500})
        assert r.status_code == 200, r.text
        for hits in r.json()["results"]:
            assert len(hits) == 119 and 3 not in {h["id"] for h in hits}, payload.keys()
    assert_gone(api, name, 3, hs)
    assert api.info(name)["n_items"] == 119


def test_item_errors_are_problems_naming_the_field(api: Any, hs: Any, index_name: str) -> None:
    api.create_index(index_name, DIM)
    base = f"/indexes/{index_name}/items"
    hs.assert_problem(api.http.get(f"{base}/abc"), 422, "item_id")
    hs.assert_problem(api.http.get(f"{base}/1"), 404, "item_id")  # no round yet
    hs.assert_problem(api.http.get(f"{base}/-4"), 404, "item_id")
    hs.assert_problem(api.http.get(f"{base}/{2**70}"), 404, "item_id")
    hs.assert_problem(api.http.delete(f"{base}/1"), 404, "item_id")
    hs.assert_problem(api.http.post(f"{base}/delete", json={"ids": []}), 422, "ids")
    hs.assert_problem(api.http.post(f"{base}/delete", json={"ids": ["x"]}), 422, "ids.0")
    hs.assert_problem(api.http.post(f"{base}/delete", json={"id": [1]}), 422)
    hs.assert_problem(api.http.post(f"{base}/delete", content=b"ids=1",
                                    headers={"Content-Type": "text/plain"}), 415,
                      "Content-Type")
    r = api.http.post(f"{base}/delete", json={"ids": [1, 2**70, -1]})
    assert r.status_code == 200 and r.json()["deleted"] == [], r.text
    hs.assert_problem(api.http.get("/indexes/no-such-index/items/1"), 404, "name")
    hs.assert_problem(api.http.post("/indexes/no-such-index/items/delete", json={"ids": [1]}),
                      404, "name")
    assert api.http.get(f"{base}/1").headers["content-type"].startswith(PROBLEM)


def test_openapi_names_the_item_routes_and_the_search_options(api: Any) -> None:
    schema = api.http.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"get", "delete"} <= set(paths["/indexes/{name}/items/{item_id}"])
    assert "post" in paths["/indexes/{name}/items/delete"]
    assert {"get", "delete"} <= set(paths["/items/{item_id}"]) and "post" in paths[
        "/items/delete"]
    for path in ("/indexes/{name}/search", "/search"):
        names = {p["name"] for p in paths[path]["get"]["parameters"]}
        assert {"labels_any", "labels_all", "max_distance"} <= names, path
    components = schema["components"]["schemas"]
    assert {"filter", "max_distance"} <= set(components["SearchRequest"]["properties"])
    assert {"labels_any", "labels_all"} <= set(components["SearchFilter"]["properties"])
    assert "model_version" in components["Hit"]["required"]
    assert {"id", "labels", "code", "model_version", "round"} <= set(
        components["ItemInfo"]["required"])
    assert {"deleted", "unknown"} <= set(components["DeletedItems"]["required"])
