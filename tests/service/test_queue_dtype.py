"""queue_dtype: an index may queue its features as float16 (half the bytes waiting in Redis);
bad values are refused at POST /indexes, features float16 cannot hold at ingest (never turned
into inf), and rounds learn float16-queued chunks like any other."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import numpy as np
from support.data import Clusters, npz_bytes, one_hot
from support.net import unique
from support.processes import Proc, Server, assert_problem

from hashstream.store.codec import decode_array
from hashstream.store.index_store import IndexStore

DIM = 12


def _post(server: Server, name: str, x: np.ndarray, y: np.ndarray) -> httpx.Response:
    return server.http.post(f"/indexes/{name}/ingest",
                            content=npz_bytes(features=x, labels=one_hot(y, 5)),
                            headers={"Content-Type": "application/octet-stream"})


def test_a_bad_queue_dtype_is_refused_naming_the_field(api: Server) -> None:
    for bad in ("float64", "int8", 16):
        r = api.http.post("/indexes", json={"name": unique("qd"), "dim": DIM,
                                            "queue_dtype": bad})
        assert_problem(r, 422, "queue_dtype")


def test_float16_queue_halves_the_entry_refuses_overflow_and_learns(
        start_server: Callable[..., Server], start_worker: Callable[..., Proc],
        store_for: Callable[[str], IndexStore]) -> None:
    server = start_server("qdtype", workers=0)  # chunks stay queued until the worker starts
    half, full = unique("f16"), unique("f32")
    server.create_index(half, DIM, queue_dtype="float16")
    server.create_index(full, DIM)
    assert server.info(half)["queue_dtype"] == "float16"
    assert server.info(full)["queue_dtype"] == "float32"
    x, y = Clusters(seed=3, dim=DIM).sample(200)

    too_big = x.copy()
    too_big[7, 3] = 70_000.0  # beyond float16's ±65504: it would become inf
    assert_problem(_post(server, half, too_big, y), 422, "features")
    assert server.info(half)["queue_depth"] == 0  # nothing queued
    assert _post(server, full, too_big[:50], y[:50]).status_code == 202  # float32 holds it

    store = store_for("qdtype")
    entry_bytes = {}
    for name, dtype in ((half, np.float16), (full, np.float32)):
        r = _post(server, name, x, y)
        assert r.status_code == 202, r.text
        entries = dict(store.r.xrange(store.keys(name).stream))
        fields = entries[r.json()["chunk_id"].encode()]
        entry_bytes[name] = len(fields[b"features"])
        got = decode_array(fields[b"features"])
        assert got.dtype == dtype
        np.testing.assert_allclose(got, x, rtol=1e-3, atol=1e-2)
    assert entry_bytes[half] < 0.51 * entry_bytes[full]

    start_worker("qdtype")
    info = server.wait_idle(half)
    assert info["n_items"] == 200 and info["dead_letters"] == 0
    hits = server.http.post(f"/indexes/{half}/search", json={"features": x[:3].tolist(),
                                                             "k": 5})
    assert hits.status_code == 200, hits.text
    assert all(len(row) == 5 for row in hits.json()["results"])
