"""Top-k with the items at one distance ordered by the query's projection: exact against a
brute-force ranking by (distance, −⟨projection, code⟩, insertion), on the compiled kernels and
the NumPy fallback, with removed entries, a restricted view, upserts and padding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hashstream.hamming.byte_tables import byte_table, table_scores
from hashstream.hamming.index import HammingIndex, native_available
from hashstream.hamming.projection_ties import search_projection_ties

Array = np.ndarray[Any, Any]
BACKENDS = ["numpy", *(["native"] if native_available() else [])]


def _clustered(rng: np.random.Generator, n: int, bits: int) -> Array:
    """±1 codes near a few centers (big ties), packed."""
    centers = np.where(rng.random((4, bits)) < 0.5, -1, 1)
    codes = centers[rng.integers(0, 4, n)]
    codes[rng.random((n, bits)) < 1.5 / bits] *= -1
    return np.packbits(codes > 0, axis=1)


def _signs(packed: Array) -> Array:
    """The ±1 codes (int64) of packed rows: the signs a projection of them must have."""
    return np.unpackbits(packed, axis=-1).astype(np.int64) * 2 - 1


def _brute(codes: Array, ids: Array, live: Array, query: Array, z: Array, k: int
           ) -> tuple[list[int], list[int]]:
    """(distances, ids) of the top k by (distance, −score, insertion) over live entries."""
    bits = np.unpackbits(codes, axis=1).astype(np.int64)
    qbits = np.unpackbits(query[None, :], axis=1)[0]
    rows = []
    for pos in np.flatnonzero(live):
        dist = int(np.sum(bits[pos] != qbits))
        score = float(np.dot(z.astype(np.float64), 2 * bits[pos] - 1))
        rows.append((dist, -score, int(pos)))
    rows.sort()
    top = rows[:k]
    return [d for d, _, _ in top], [int(ids[p]) for _, _, p in top]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("bits", "k"), [(16, 5), (32, 40), (64, 300)])
def test_against_brute_force(backend: str, bits: int, k: int) -> None:
    rng = np.random.default_rng(bits + k)
    n = 400
    codes = _clustered(rng, n, bits)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)  # ids unrelated to insertion order
    index = HammingIndex(bits, backend=backend)  # type: ignore[arg-type]
    index.add(codes, ids)
    live = np.ones(n, dtype=bool)
    gone = rng.choice(n, 30, replace=False)
    index.remove(ids[gone])
    live[gone] = False
    queries = _clustered(rng, 12, bits)
    # multiples of 1/4: exact in float32, so equal scores tie in both rankings
    z = _signs(queries) * rng.integers(0, 9, (12, bits)) / 4
    dist, got, score = search_projection_ties(index.view(), queries, z, k)
    plain_d, _ = index.search(queries, k)
    for q in range(len(queries)):
        want_d, want_ids = _brute(codes, ids, live, queries[q], z[q], k)
        assert dist[q].tolist() == want_d and got[q].tolist() == want_ids
        np.testing.assert_array_equal(dist[q], plain_d[q])  # the same distances as the plain
        assert np.all(np.diff(score[q][dist[q] == dist[q, -1]]) <= 0)  # scores fall in a tie
    assert score.dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_restricted_view_upserts_and_padding(backend: str) -> None:
    """A filter's restricted view ranks only what it admits; an upserted id counts as
    inserted last; k past the live entries pads with id −1, distance bits + 1, score −inf."""
    rng = np.random.default_rng(5)
    bits, n = 16, 60
    codes = _clustered(rng, n, bits)
    ids = np.arange(n, dtype=np.int64)
    index = HammingIndex(bits, backend=backend)  # type: ignore[arg-type]
    index.add(codes, ids)
    index.add(codes[:3], ids[:3])  # upsert: same codes, now inserted last
    all_codes = np.concatenate([codes, codes[:3]])
    all_ids = np.concatenate([ids, ids[:3]])
    live = np.ones(n + 3, dtype=bool)
    live[:3] = False
    view = index.view()
    keep = np.zeros(view.size, dtype=bool)
    keep[view.positions(ids[ids % 2 == 0])] = True
    queries = codes[10:12]
    z = _signs(queries) * rng.integers(1, 5, (2, bits)) / 2
    k = 50
    dist, got, score = search_projection_ties(view.restricted(keep), queries, z, k)
    admitted = live & (all_ids % 2 == 0)
    assert int(admitted.sum()) == 30
    for q in range(2):
        want_d, want_ids = _brute(all_codes, all_ids, admitted, queries[q], z[q], k)
        assert got[q, :30].tolist() == want_ids and dist[q, :30].tolist() == want_d
        assert (got[q, 30:] == -1).all() and (dist[q, 30:] == bits + 1).all()
        assert np.isneginf(score[q, 30:]).all()


def test_extreme_projections_still_rank() -> None:
    """Projections of huge (or infinite) values rank as their finite, scaled form does."""
    rng = np.random.default_rng(9)
    codes = _clustered(rng, 200, 16)
    index = HammingIndex(16, backend="numpy")
    index.add(codes, np.arange(200))
    q = codes[:1]
    z = _signs(q) * rng.integers(1, 9, (1, 16)) / 4
    want = search_projection_ties(index.view(), q, z, 30)
    huge = search_projection_ties(index.view(), q, z * 2.0**900, 30)  # inf as float32
    assert want[1].tolist() == huge[1].tolist() and np.isfinite(huge[2]).all()
    inf = z.copy()
    inf[0, 0] = np.inf if inf[0, 0] > 0 else -np.inf
    dist, ids, score = search_projection_ties(index.view(), q, inf, 30)
    assert (ids >= 0).all() and np.isfinite(score).all()
    np.testing.assert_array_equal(dist, want[0])


def test_projection_of_the_wrong_shape_is_refused() -> None:
    index = HammingIndex(16, backend="numpy")
    index.add(np.zeros((3, 2), dtype=np.uint8), np.arange(3))
    with pytest.raises(ValueError, match="projection"):
        search_projection_ties(index.view(), np.zeros((2, 2), dtype=np.uint8),
                               np.zeros((2, 8)), 2)


def test_byte_tables_score_as_the_unpacked_codes() -> None:
    """⟨z, code⟩ by one table per code byte equals the product with the unpacked ±1 code,
    for code lengths of one to seventeen bytes (exact for a projection of quarter multiples)."""
    rng = np.random.default_rng(12)
    for bits in (8, 24, 32, 72, 136):
        codes = _clustered(rng, 300, bits)
        z = _signs(codes[5]) * rng.integers(0, 9, bits) / 4
        got = table_scores(codes, byte_table(z, bits // 8))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, (_signs(codes) @ z).astype(np.float32))
