"""The search fast path answers exactly as the FastAPI routes: two apps on one Redis index, one
with ``HASHSTREAM_SEARCH_FAST_PATH`` on and one with it off, get the same requests (GET and
POST) and must give the same status, media type and body; the fast one must have answered the
plain ones itself and left the rest to FastAPI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hashstream.api.app import create_app
from hashstream.api.routes import search
from hashstream.api.search_fast_path import PlainQuery, SearchFastPath
from hashstream.service.settings import Settings
from hashstream.service.worker import RoundRunner
from hashstream.store.index_store import IndexStore

NAMED = PlainQuery.of(next(r for r in search.router.routes  # type: ignore[attr-defined]
                           if r.path == "/indexes/{name}/search" and "GET" in r.methods))


def _fast_path(client: TestClient) -> SearchFastPath:
    layer: Any = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, SearchFastPath):
        layer = layer.app
    return layer


@pytest.fixture
def fast_and_slow(redis_url: str, redis_client: Any, session_prefix: str, hs: Any
                  ) -> Iterator[tuple[TestClient, TestClient, Any]]:
    prefix = f"{session_prefix}-{hs.unique('fastpath')}"
    common = {"redis_url": redis_url, "key_prefix": prefix, "default_index": "fp",
              "max_k": 50}
    with TestClient(create_app(Settings(**common))) as fast, \
            TestClient(create_app(Settings(**common, search_fast_path=False))) as slow:
        r = fast.post("/indexes", json={"name": "fp", "dim": 8, **hs.FAST})
        assert r.status_code == 201, r.text
        clusters = hs.Clusters(5, dim=8, n_classes=3)
        x, cls = clusters.sample(240)
        r = fast.post("/indexes/fp/ingest", json={
            "features": x.tolist(), "labels": [[f"c{c}", "all"] for c in cls]})
        assert r.status_code == 202, r.text
        assert RoundRunner(IndexStore(redis_client, prefix)).step("fp") is True
        yield fast, slow, clusters


def _vector(clusters: Any, c: int) -> str:
    return ",".join(f"{v:.5f}" for v in clusters.vector(c))


def _same(fast: TestClient, slow: TestClient, path: str,
          headers: dict[str, str] | None = None, body: bytes | None = None) -> Any:
    if body is None:
        a = fast.get(path, headers=headers, follow_redirects=False)
        b = slow.get(path, headers=headers, follow_redirects=False)
    else:
        a = fast.post(path, content=body, headers=headers, follow_redirects=False)
        b = slow.post(path, content=body, headers=headers, follow_redirects=False)
    assert (a.status_code, a.headers.get("content-type")) == (
        b.status_code, b.headers.get("content-type")), path
    assert a.content == b.content, path
    return a


def test_plain_searches_answered_by_the_fast_path_as_by_fastapi(fast_and_slow: Any) -> None:
    fast, slow, clusters = fast_and_slow
    v = _vector(clusters, 1)
    plain = [
        (f"/indexes/fp/search?vector={v}&k=5", 200),
        (f"/indexes/fp/search?vector={v}", 200),
        (f"/search?vector={v}&k=3", 200),
        ("/indexes/fp/search?item=7&k=4", 200),
        (f"/indexes/fp/search?vector={v}&labels_any=c2&k=20", 200),
        (f"/indexes/fp/search?vector={v}&labels_all=c0,all&max_distance=40", 200),
        (f"/indexes/fp/search?vector={v}&min_version=1&modality=image&target=pairs", 200),
        (f"/indexes/fp/search?vector={v}&labels_any=nope", 200),
        (f"/indexes/fp/search?vector={v}&k=20&ties=projection", 200),
        (f"/search?vector={v}&ties=insertion", 200),
        ("/indexes/fp/search?item=7&ties=projection", 422),
        (f"/indexes/fp/search?vector={v}&k=0", 422),
        (f"/indexes/fp/search?vector={v}&k=51", 422),
        (f"/indexes/fp/search?vector={v}&modality=text", 422),
        (f"/indexes/fp/search?vector={v}&target=image", 422),
        (f"/indexes/fp/search?vector={v}&min_version=9", 409),
        ("/indexes/fp/search?vector=1,2", 422),
        ("/indexes/fp/search?vector=a,b", 422),
        ("/indexes/fp/search?vector=", 422),
        ("/indexes/fp/search?vector=nan,1,1,1,1,1,1,1", 422),
        ("/indexes/fp/search", 422),
        (f"/indexes/fp/search?vector={v}&item=3", 422),
        ("/indexes/fp/search?item=100000", 404),
        (f"/indexes/nope/search?vector={v}", 404),
        (f"/search?vector={v}&labels_all=", 422),
    ]
    layer = _fast_path(fast)
    for path, status in plain:
        before = layer.answered
        r = _same(fast, slow, path)
        assert r.status_code == status, (path, r.text)
        assert layer.answered == before + 1, path
    hits = _same(fast, slow, f"/indexes/fp/search?vector={v}&k=5").json()["results"][0]
    assert len(hits) == 5 and sum(h["labels"][0] == "c1" for h in hits) >= 3, hits
    npz = _same(fast, slow, f"/indexes/fp/search?vector={v}&k=5",
                {"Accept": "application/x-npz"})
    assert npz.headers["content-type"] == "application/x-npz"


def test_post_searches_answered_by_the_fast_path_as_by_fastapi(fast_and_slow: Any,
                                                                hs: Any) -> None:
    fast, slow, clusters = fast_and_slow
    row = [round(float(v), 5) for v in clusters.vector(1)]
    json_type = {"Content-Type": "application/json"}

    def body(**fields: Any) -> bytes:
        return json.dumps(fields).encode()

    posts = [
        ("/indexes/fp/search", body(features=[row], k=5), json_type, 200),
        ("/indexes/fp/search", body(features=[row], k=9, ties="projection"), json_type, 200),
        ("/indexes/fp/search?junk=1", body(features=[row, row]), json_type, 200),
        ("/search", body(features=[row], k=3), json_type, 200),
        ("/indexes/fp/search", body(features=[row], k=20, filter={"labels_any": ["c2"]}),
         json_type, 200),
        ("/indexes/fp/search", hs.npz_bytes(features=np.asarray([row], np.float32),
                                            k=np.int64(4)),
         {"Content-Type": "application/x-npz", "Accept": "application/x-npz"}, 200),
        ("/indexes/fp/search", b"", json_type, 400),
        ("/indexes/fp/search", b"{not json", json_type, 400),
        ("/indexes/fp/search", body(features=[[1.0, 2.0]]), json_type, 422),
        ("/indexes/fp/search", body(features=[row], k=0), json_type, 422),
        ("/indexes/fp/search", body(k=5), json_type, 422),
        ("/indexes/fp/search", body(features=[row], min_version=9), json_type, 409),
        ("/indexes/fp/search", body(features=[row]), {"Content-Type": "text/plain"}, 415),
        ("/indexes/nope/search", body(features=[row]), json_type, 404),
    ]
    layer = _fast_path(fast)
    for path, content, headers, status in posts:
        before = layer.answered
        r = _same(fast, slow, path, headers, content)
        assert r.status_code == status, (path, content[:80], r.text)
        assert layer.answered == before + 1, path
    hits = _same(fast, slow, "/indexes/fp/search", json_type,
                 body(features=[row], k=5)).json()["results"][0]
    assert len(hits) == 5 and sum(h["labels"][0] == "c1" for h in hits) >= 3, hits


def test_other_queries_go_to_fastapi_with_the_same_answers(fast_and_slow: Any) -> None:
    fast, slow, clusters = fast_and_slow
    v = _vector(clusters, 0)
    others = [
        f"/indexes/fp/search?vector={v}&k=1.0",
        f"/indexes/fp/search?vector={v}&k=abc",
        f"/indexes/fp/search?vector={v}&k=-1",
        f"/indexes/fp/search?vector={v}&k=05",
        f"/indexes/fp/search?vector={v}&k=3&k=4",
        f"/indexes/fp/search?vector={v}&min_version=-1",
        f"/indexes/fp/search?vector={v}&max_distance=x",
        f"/indexes/fp/search?vector={v}&modality=audio",
        f"/indexes/fp/search?vector={v}&ties=best",
        f"/indexes/fp/search?vector={v}&unknown=1",
        f"/search?vector={v}&modality=image",
        "/indexes/fp/search/",
        "/indexes/fp/searches",
    ]
    layer = _fast_path(fast)
    statuses = set()
    for path in others:
        before = layer.answered
        statuses.add(_same(fast, slow, path).status_code)
        assert layer.answered == before, path
    assert statuses == {200, 307, 404, 422}


def test_fast_path_keeps_auth_and_metrics(redis_url: str, session_prefix: str, hs: Any,
                                          fast_and_slow: Any) -> None:
    _, _, clusters = fast_and_slow
    fast = fast_and_slow[0]
    prefix = fast.app.state.settings.key_prefix  # type: ignore[attr-defined]
    path = f"/indexes/fp/search?vector={_vector(clusters, 2)}&k=2"
    with TestClient(create_app(Settings(redis_url=redis_url, key_prefix=prefix,
                                        api_keys="s3cret"))) as locked:
        layer = _fast_path(locked)
        hs.assert_problem(locked.get(path), 401, "Authorization")
        hs.assert_problem(locked.get(path, headers={"Authorization": "Bearer nope"}), 401,
                          "Authorization")
        r = locked.get(path, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and len(r.json()["results"][0]) == 2
        assert layer.answered == 3
    assert fast.get(path).status_code == 200
    metrics = fast.get("/metrics").text
    line = next(ln for ln in metrics.splitlines()
                if ln.startswith("hashstream_http_requests_total{")
                and 'route="/indexes/{name}/search"' in ln and 'status="200"' in ln)
    assert float(line.rsplit(" ", 1)[1]) >= 1


@pytest.mark.parametrize("query,expected", [
    (b"vector=1,2&k=3", {"vector": "1,2", "k": "3"}),
    (b"vector=1%2C2&labels_any=a+b", {"vector": "1,2", "labels_any": "a b"}),
    (b"k=0", {"k": "0"}),
    (b"vector=", {"vector": ""}),
    (b"k=03", None), (b"k=3.0", None), (b"k=", None), (b"k=1&k=2", None),
    (b"item=-1", None), (b"modality=Image", None), (b"other=1", None),
    (b"k=1234567890123456", None),
])
def test_plain_query(query: bytes, expected: dict[str, str] | None) -> None:
    assert NAMED.read(query) == expected
