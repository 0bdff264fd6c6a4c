"""``ties=projection`` against a real server: the items at one distance ordered by their code's
inner product with the query's real-valued projection, checked against a reference computed
here on the GET and POST forms (JSON and .npz), the client, a filter and a partitioned index;
the same distances as the default order; problems naming ``ties`` for a stored item's query
and for values the option does not take.

The indexes are LSH: its projection (x − μ)W is rebuilt here from the first chunk and the seed
(:class:`~hashstream.solver.lsh.RandomProjection`, the function the worker fits), and the
stored codes come from GET /items. The server scores in float32 and the reference in float64,
so scores are compared with a tolerance: the hits' distances must equal the reference's,
scores must not rise within a distance, and no item left out at the last distance may score
above one taken."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from support.data import npz_bytes

from hashstream.client.search_arrays import SearchArrays
from hashstream.solver.lsh import RandomProjection

DIM, BITS, CLASSES, N = 16, 32, 6, 400
NPZ = "application/x-npz"
TOL = 1e-3  # scores are O(100) here; the server's float32 sums are good to ~1e-4


class Reference:
    """The index's stored codes and labels, and the LSH projection of its first chunk."""

    def __init__(self, server: Any, name: str, first: np.ndarray, seed: int) -> None:
        self.lsh = RandomProjection.fit(first, BITS, seed)
        self.codes, self.labels = {}, {}
        for i in range(N):
            r = server.http.get(f"/indexes/{name}/items/{i}")
            assert r.status_code == 200, r.text
            bits = np.unpackbits(np.frombuffer(bytes.fromhex(r.json()["code"]), np.uint8))
            self.codes[i] = bits.astype(np.float64) * 2 - 1
            self.labels[i] = set(r.json()["labels"])

    def ranked(self, vector: np.ndarray, labels_any: list[int] | None = None
               ) -> list[tuple[int, float, int]]:
        """(distance, score, id) of every admitted item, in the projection's order."""
        z = self.lsh.project(vector[None, :])[0]
        code = np.where(z >= 0, 1.0, -1.0)
        rows = [(int(np.sum(c != code)), float(z @ c), i) for i, c in self.codes.items()
                if labels_any is None or self.labels[i] & set(labels_any)]
        return sorted(rows, key=lambda r: (r[0], -r[1], r[2]))

    def check(self, hits: list[dict[str, Any]], vector: np.ndarray, k: int,
              labels_any: list[int] | None = None) -> None:
        ranked = self.ranked(vector, labels_any)
        want = ranked[:k]
        assert [h["distance"] for h in hits] == [d for d, _, _ in want]
        score = {i: s for _, s, i in ranked}
        dist = {i: d for d, _, i in ranked}
        got = [h["id"] for h in hits]
        assert len(set(got)) == len(got) and all(dist[i] == h["distance"]
                                                 for i, h in zip(got, hits, strict=True))
        for a, b in zip(got, got[1:], strict=False):
            if dist[a] == dist[b]:
                assert score[a] >= score[b] - TOL, (a, b)
        if len(got) == k and ranked[k:]:
            last = dist[got[-1]]
            left = [s for d, s, i in ranked[k:] if d == last]
            taken = [score[i] for i in got if dist[i] == last]
            assert not left or max(left) <= min(taken) + TOL


def chunk(rng: np.random.Generator, means: np.ndarray, n: int, noise: float
          ) -> tuple[np.ndarray, Any]:
    y = rng.integers(0, CLASSES, n)
    x = (means[y] + noise * rng.standard_normal((n, DIM))).astype(np.float32)
    return x, {"features": x.tolist(), "labels": [[int(c)] for c in y]}


def make_index(server: Any, name: str, seed: int, partitions: int = 1, noise: float = 0.6
               ) -> tuple[Reference, np.ndarray]:
    """Two rounds of N / 2 items; small ``noise`` makes classes of near-identical codes, large
    ``noise`` many distinct codes at one distance."""
    r = server.http.post("/indexes", json={"name": name, "dim": DIM, "bits": BITS,
                                           "method": "lsh", "seed": seed,
                                           "partitions": partitions})
    assert r.status_code == 201, r.text
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((CLASSES, DIM)) * 3  # tight classes: codes tie in groups
    x1, body1 = chunk(rng, means, N // 2, noise)
    x2, body2 = chunk(rng, means, N // 2, noise)
    for version, body in ((1, body1), (2, body2)):
        assert server.http.post(f"/indexes/{name}/ingest", json=body).status_code == 202
        server.wait_idle(name, version)
    return Reference(server, name, x1, seed), np.concatenate([x1, x2])


@pytest.fixture(scope="module")
def server(start_server: Callable[..., Any]) -> Any:
    return start_server("ties", workers=1)


@pytest.fixture(scope="module")
def plain(server: Any) -> tuple[Reference, np.ndarray]:
    return make_index(server, "ties-plain", 7)


@pytest.mark.parametrize("k", [1, 25, 500])
def test_projection_ties_on_every_form(server: Any, plain: Any, k: int) -> None:
    ref, x = plain
    path = "/indexes/ties-plain/search"
    queries = x[[3, 217]] + 0.05
    for q in queries:
        vector = ",".join(f"{v:.9g}" for v in q)
        r = server.http.get(path, params={"vector": vector, "k": k, "ties": "projection"})
        assert r.status_code == 200, r.text
        ref.check(r.json()["results"][0], q, k)
        insertion = server.http.get(path, params={"vector": vector, "k": k}).json()
        assert [h["distance"] for h in r.json()["results"][0]] == [
            h["distance"] for h in insertion["results"][0]]  # same distances, other order
    body = {"features": queries.tolist(), "k": k, "ties": "projection"}
    answer = server.http.post(path, json=body)
    assert answer.status_code == 200, answer.text
    for hits, q in zip(answer.json()["results"], queries, strict=True):
        ref.check(hits, q, k)
    binary = server.http.post(path, content=npz_bytes(features=queries.astype(np.float32),
                                                      k=np.int64(k), ties=np.str_("projection")),
                              headers={"Content-Type": NPZ, "Accept": NPZ})
    assert binary.status_code == 200, binary.text
    assert SearchArrays.from_npz(binary.content).result()["results"] == answer.json()["results"]
    by_client = server.client.search("ties-plain", queries, k=k, ties="projection",
                                     encoding="json")
    assert by_client["results"] == answer.json()["results"]
    arrays = server.client.search_arrays("ties-plain", queries, k=k, ties="projection")
    assert arrays.ids.tolist() == [[h["id"] for h in hits] for hits in by_client["results"]]


def test_the_order_changes_within_ties(server: Any, plain: Any) -> None:
    """On these tight classes some query's top 25 differs from the insertion order's (else
    the option would be untested here), and a filter applies before the ranking."""
    ref, x = plain
    path = "/indexes/ties-plain/search"
    changed = 0
    for row in range(0, N, 40):
        q = x[row] + 0.05
        body = {"features": [q.tolist()], "k": 25}
        by_projection = server.http.post(path, json={**body, "ties": "projection"}).json()
        by_insertion = server.http.post(path, json=body).json()
        changed += by_projection["results"] != by_insertion["results"]
        filtered = server.http.post(path, json={**body, "ties": "projection",
                                                "filter": {"labels_any": [1, 4]}}).json()
        ref.check(filtered["results"][0], q, 25, labels_any=[1, 4])
    assert changed >= 3


def test_projection_ties_on_a_partitioned_index(server: Any) -> None:
    """The partitions' lists are merged by (distance, score, id): many distinct codes at one
    distance (loose classes), small k, so the merge decides which of a tie are kept."""
    ref, x = make_index(server, "ties-parts", 8, partitions=3, noise=3.0)
    for row in range(0, N, 50):
        q = x[row] + 0.05
        for k in (2, 5, 10):
            r = server.http.post("/indexes/ties-parts/search",
                                 json={"features": [q.tolist()], "k": k, "ties": "projection"})
            assert r.status_code == 200 and r.json()["partitions"] == [0, 1, 2]
            ref.check(r.json()["results"][0], q, k)


def test_ties_problems_name_the_field(server: Any, plain: Any, hs: Any) -> None:
    path = "/indexes/ties-plain/search"
    hs.assert_problem(server.http.get(path, params={"item": 3, "ties": "projection"}), 422,
                      "ties")
    hs.assert_problem(server.http.get(path, params={"vector": "1," * 15 + "1",
                                                    "ties": "distance"}), 422, "ties")
    hs.assert_problem(server.http.post(path, json={"features": [[0.0] * DIM],
                                                   "ties": "random"}), 422, "ties")
    r = server.http.post(path, content=npz_bytes(features=np.zeros((1, DIM), np.float32),
                                                 ties=np.str_("best")),
                         headers={"Content-Type": NPZ})
    hs.assert_problem(r, 422, "ties")
    # the default order is insertion, named or not
    a = server.http.get(path, params={"item": 3, "k": 30})
    b = server.http.get(path, params={"item": 3, "k": 30, "ties": "insertion"})
    assert a.status_code == 200 and a.json() == b.json()
