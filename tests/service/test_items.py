"""Single items against real servers, through the Python client: get one item, delete one and
a batch, with kill -9 and a restart in between (embedded Redis with its append-only file);
every API process misses a deleted item at once; a cross-modal pair's delete removes every
target's code; problem+json for bad input (over plain HTTP: the fields and statuses); the
OpenAPI schema names the new routes and options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.net import port_open
from support.processes import PROBLEM

from hashstream.client import Client, NotFound

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
    return (int(a, 16) ^ int(b, 16)).bit_count()


def everything(client: Client, name: str, vector: np.ndarray, version: int) -> set[int]:
    """Every id a search returns (k above the index's size)."""
    hits = client.search(name, vector, k=5000, min_version=version)["results"][0]
    return {h["id"] for h in hits}


def assert_gone(client: Client, name: str, item: int) -> None:
    with pytest.raises(NotFound) as missing:
        client.item(name, item)
    assert missing.value.field == "item_id"
    with pytest.raises(NotFound) as missing:
        client.search(name, item=item)
    assert missing.value.field == "item"


def embedded_port(server: Any) -> int:
    line = server.log.wait_for(lambda text: "embedded Redis at" in text, 30)
    return int(re.search(r"redis://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]


def test_items_get_and_delete_through_kill9_and_restart(start_server: Any, hs: Any,
                                                        tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_server("items-emb", workers=1, embedded=True, data_dir=data_dir)
    name = hs.unique("items")
    data = hs.Clusters(seed=31, dim=DIM, n_classes=CLASSES)
    f, c = data.sample(300)
    probe = data.vector(0)
    with Client(first.url) as client:
        client.create_index(name, DIM, **hs.FAST)
        chunk = client.ingest(name, f, c)
        assert chunk.id_range == (0, 300)
        client.wait_for_round(name, chunk)

        item = client.item(name, 5)
        assert item["id"] == 5 and item["labels"] == [int(c[5])] and item["index"] == name
        assert item["round"] == 1 and item["model_version"] == 1 and item["version"] == 1
        assert len(bytes.fromhex(item["code"])) == 16 // 8  # FAST: 16-bit codes
        for hit in client.search(name, item=5, k=5)["results"][0]:
            # the hex code is the code searches rank by
            assert hit["distance"] == popcount_distance(item["code"],
                                                        client.item(name, hit["id"])["code"])
            assert hit["model_version"] == 1

        answer = client.delete_item(name, 5)
        assert answer["deleted"] == [5] and answer["unknown"] == []
        assert_gone(client, name, 5)
        with pytest.raises(NotFound):
            client.delete_item(name, 5)
        answer = client.delete_items(name, [6, 7, 5, 100_000, 7])
        assert answer["deleted"] == [6, 7] and answer["unknown"] == [5, 100_000]
        assert client.index(name)["n_items"] == 297
        assert not {5, 6, 7} & everything(client, name, probe, 1)

    port = embedded_port(first)
    first.kill9()  # right after the answers: the deletes must be durable
    hs.wait_until(lambda: not port_open(port), 30, 0.05, "the embedded Redis to die with serve")
    second = start_server("items-emb", workers=1, embedded=True, data_dir=data_dir)
    f2, c2 = data.sample(100)
    ids = [6, *range(1000, 1099)]
    with Client(second.url) as client:
        assert client.index(name)["n_items"] == 297
        for gone in (5, 6, 7):
            assert_gone(client, name, gone)
        assert everything(client, name, probe, 1) == set(range(300)) - {5, 6, 7}
        assert client.item(name, 8)["labels"] == [int(c[8])]

        # 6 ingested again after its delete is a new item; one more delete, a plain restart
        client.wait_for_round(name, client.ingest(name, f2, c2, ids=ids))
        again = client.item(name, 6, min_version=2)
        assert again["round"] == 2 and again["labels"] == [int(c2[0])]
        assert client.delete_items(name, [1000, 8])["deleted"] == [8, 1000]
    second.stop()
    third = start_server("items-emb", workers=1, embedded=True, data_dir=data_dir)
    with Client(third.url) as client:
        assert client.index(name)["n_items"] == 297 + 100 - 2
        assert everything(client, name, probe, 2) == ((set(range(300)) - {5, 7, 8})
                                                      | set(ids)) - {1000}


def test_every_api_process_misses_a_deleted_item_at_once(start_server: Any, hs: Any) -> None:
    one = start_server("items-two", workers=1)
    other = start_server("items-two", workers=0)  # a second API process on the same Redis
    name = hs.unique("two")
    data = hs.Clusters(seed=32, dim=DIM, n_classes=CLASSES)
    f, c = data.sample(200)
    probe = data.vector(1)
    with Client(one.url) as here, Client(other.url) as there:
        here.create_index(name, DIM, **hs.FAST)
        here.wait_for_round(name, here.ingest(name, f, c))
        assert everything(there, name, probe, 1) == set(range(200))  # its replica is loaded
        assert here.delete_items(name, range(50))["deleted"] == list(range(50))
        # at once, on the process that did not answer the delete
        assert everything(there, name, probe, 1) == set(range(50, 200))
        assert_gone(there, name, 10)
        assert there.index(name)["n_items"] == 150
        assert f'hashstream_database_items{{index="{name}"}} 150.0' in other.http.get(
            "/metrics").text
        answer = there.delete_items(name, [10, 60])
        assert answer["deleted"] == [60] and answer["unknown"] == [10]


def test_deleting_a_cross_modal_pair_removes_every_targets_code(api: Any, hs: Any) -> None:
    name = hs.unique("xm-del")
    train, probe = pairs(33, 120), pairs(34, 2)
    with Client(api.url) as client:
        client.create_index(name, 20, **CROSS)
        client.wait_for_round(name, client.ingest(name, train["image"], train["labels"],
                                                  text=train["text"]), timeout=180)
        item = client.item(name, 3)
        assert item["codes"] is not None and set(item["codes"]) == {"pairs", "image", "text"}
        assert item["code"] == item["codes"]["pairs"]
        assert client.delete_item(name, 3)["deleted"] == [3]
        for modality, target in (("image", None), ("text", None), ("image", "image"),
                                 ("text", "text"), ("image", "text")):
            result = client.search(name, probe[modality], k=500, modality=modality,
                                   target=target)
            for hits in result["results"]:
                assert len(hits) == 119 and 3 not in {h["id"] for h in hits}, (modality, target)
        assert_gone(client, name, 3)
        assert client.index(name)["n_items"] == 119


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
