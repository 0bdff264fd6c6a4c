"""Retrieval metrics against a plain brute-force reference written out here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hashstream.solver.class_lists import ClassLists
from hashstream.solver.metrics import evaluate, hamming_distances, pack_codes, relevance


def _ap(ranked: list[int], rel: list[bool], limit: int) -> float:
    hits, total = 0, 0.0
    for pos, j in enumerate(ranked[:limit], start=1):
        if rel[j]:
            hits += 1
            total += hits / pos
    return total / hits if hits else 0.0


def reference(q_codes: np.ndarray, q_labels: np.ndarray, db_codes: np.ndarray,
              db_labels: np.ndarray, ks: tuple[int, ...]) -> dict[str, object]:
    """Python loops: rank by (distance, index), AP over relevant positions, PR per radius."""
    r = q_codes.shape[1]
    aps: list[float] = []
    aps_k: dict[int, list[float]] = {k: [] for k in ks}
    prec_r = np.zeros((len(q_codes), r + 1))
    rec_r = np.zeros((len(q_codes), r + 1))
    for qi in range(len(q_codes)):
        dist = [sum(1 for b in range(r) if q_codes[qi, b] != db_codes[j, b])
                for j in range(len(db_codes))]
        rel = [bool(np.any((q_labels[qi] > 0) & (db_labels[j] > 0)))
               for j in range(len(db_codes))]
        ranked = sorted(range(len(db_codes)), key=lambda j: (dist[j], j))
        aps.append(_ap(ranked, rel, len(ranked)))
        for k in ks:
            aps_k[k].append(_ap(ranked, rel, k))
        n_rel = sum(rel)
        for radius in range(r + 1):
            found = [j for j in range(len(db_codes)) if dist[j] <= radius]
            hits = sum(1 for j in found if rel[j])
            prec_r[qi, radius] = hits / len(found) if found else 0.0
            rec_r[qi, radius] = hits / n_rel if n_rel else 0.0
    return {
        "ap": np.array(aps),
        "map": float(np.mean(aps)),
        "map_at_k": {k: float(np.mean(v)) for k, v in aps_k.items()},
        "precision_r2": float(prec_r[:, min(2, r)].mean()),
        "pr_precision": prec_r.mean(axis=0),
        "pr_recall": rec_r.mean(axis=0),
    }


def _case(seed: int, bits: int, n_db: int, n_q: int, n_classes: int = 5,
          pool: int | None = None) -> tuple[np.ndarray, ...]:
    """Codes drawn from a small pool of base codes (with a few flipped bits) so that Hamming
    distances tie often; labels multi-label with some unlabelled rows."""
    rng = np.random.default_rng(seed)
    pool = pool or 6
    base = np.where(rng.random((pool, bits)) < 0.5, -1, 1)

    def draw(n: int) -> np.ndarray:
        codes = base[rng.integers(0, pool, n)].copy()
        flips = rng.random((n, bits)) < min(0.1, 3 / bits)
        codes[flips] *= -1
        return codes.astype(np.int8)

    def labels(n: int) -> np.ndarray:
        lab = (rng.random((n, n_classes)) < 0.25).astype(np.uint8)
        lab[rng.integers(0, n, max(1, n // 10))] = 0  # some rows have no label
        return lab

    return draw(n_q), labels(n_q), draw(n_db), labels(n_db)


CASES = [
    (0, 8, 50, 20),
    (1, 8, 300, 25),
    (2, 16, 120, 30),
    (3, 16, 300, 15),
    (4, 12, 200, 20),
    (5, 72, 150, 12),
    (6, 1, 60, 10),
    (7, 65, 80, 70),  # more than one query block of 64
]


@pytest.mark.parametrize(("seed", "bits", "n_db", "n_q"), CASES)
def test_evaluate_matches_brute_force(seed: int, bits: int, n_db: int, n_q: int) -> None:
    qc, ql, dc, dl = _case(seed, bits, n_db, n_q)
    ks = (1, 5, 37, n_db + 10)
    got = evaluate(qc, ql, dc, dl, ks=ks)
    ref = reference(qc, ql, dc, dl, ks)
    assert got.map == pytest.approx(ref["map"], abs=1e-12)
    per_query = getattr(got, "average_precision", None)  # per-query AP, where provided
    if per_query is not None:
        np.testing.assert_allclose(per_query, ref["ap"], atol=1e-12)
    for k in ks:
        assert got.map_at_k[k] == pytest.approx(ref["map_at_k"][k], abs=1e-12)  # type: ignore[index]
    assert got.precision_r2 == pytest.approx(ref["precision_r2"], abs=1e-12)
    np.testing.assert_allclose(got.pr_precision, ref["pr_precision"], atol=1e-12)
    np.testing.assert_allclose(got.pr_recall, ref["pr_recall"], atol=1e-12)
    assert got.pr_precision.shape == (bits + 1,)
    # at the largest radius everything is retrieved: recall is 1 where anything is relevant
    rel = relevance(ql, dl)
    assert got.pr_recall[-1] == pytest.approx(rel.any(axis=1).mean())
    d = got.as_dict()
    assert d["pr_curve"]["radius"] == list(range(bits + 1))
    assert d["map"] == got.map


def test_ties_ranked_by_insertion_order() -> None:
    # every database item at the same distance: AP depends only on where the relevant ones sit
    q = np.ones((1, 8), dtype=np.int8)
    db = np.ones((4, 8), dtype=np.int8)
    ql = np.array([[1, 0]])
    first = np.array([[1, 0], [0, 1], [0, 1], [0, 1]])
    last = first[::-1].copy()
    assert evaluate(q, ql, db, first).map == pytest.approx(1.0)
    assert evaluate(q, ql, db, last).map == pytest.approx(0.25)


def test_no_relevant_item_scores_zero() -> None:
    q = np.ones((2, 8), dtype=np.int8)
    db = np.ones((5, 8), dtype=np.int8)
    ql = np.array([[1, 0], [0, 1]])
    dl = np.array([[1, 0]] * 5)
    s = evaluate(q, ql, db, dl)
    assert s.map == pytest.approx(0.5)  # query 2 has AP 0, query 1 has AP 1
    np.testing.assert_allclose(s.pr_recall, 0.5)


def test_precision_r2_zero_when_nothing_within_radius() -> None:
    q = np.ones((1, 16), dtype=np.int8)
    db = -np.ones((3, 16), dtype=np.int8)
    lab = np.ones((3, 1))
    s = evaluate(q, lab[:1], db, lab)
    assert s.precision_r2 == 0.0
    assert s.map == pytest.approx(1.0)  # all relevant


def test_empty_query_set() -> None:
    s = evaluate(np.ones((0, 8), dtype=np.int8), np.zeros((0, 3)), np.ones((4, 8), np.int8),
                 np.ones((4, 3)), ks=(2,))
    assert s.map == 0.0 and s.map_at_k == {2: 0.0} and s.precision_r2 == 0.0
    assert s.pr_precision.shape == (9,)


@pytest.mark.parametrize("bits", [1, 7, 8, 12, 16, 63, 64, 72, 130])
def test_pack_and_hamming_match_direct_count(bits: int) -> None:
    rng = np.random.default_rng(bits)
    a = np.where(rng.random((9, bits)) < 0.5, -1, 1).astype(np.int8)
    b = np.where(rng.random((13, bits)) < 0.5, -1, 1).astype(np.int8)
    pa, pb = pack_codes(a), pack_codes(b)
    assert pa.dtype == np.uint8 and pa.shape == (9, -(-bits // 8))
    np.testing.assert_array_equal(np.unpackbits(pa, axis=1, count=bits), (a > 0).astype(np.uint8))
    d = hamming_distances(pa, pb)
    direct = np.array([[sum(1 for k in range(bits) if a[i, k] != b[j, k]) for j in range(13)]
                       for i in range(9)])
    np.testing.assert_array_equal(d, direct)
    # 0/1 codes pack the same as ±1 codes
    np.testing.assert_array_equal(pack_codes((a > 0).astype(np.uint8)), pa)


@pytest.mark.parametrize(("seed", "bits"), [(10, 8), (11, 12), (12, 16), (13, 72)])
def test_packed_input_equals_signed_input(seed: int, bits: int) -> None:
    qc, ql, dc, dl = _case(seed, bits, 140, 30)
    ks = (3, 50)
    a = evaluate(qc, ql, dc, dl, ks=ks)
    b = evaluate(pack_codes(qc), ql, pack_codes(dc), dl, ks=ks, bits=bits)
    assert a.map == b.map
    assert a.map_at_k == b.map_at_k
    assert a.precision_r2 == b.precision_r2
    np.testing.assert_array_equal(a.pr_precision, b.pr_precision)
    np.testing.assert_array_equal(a.pr_recall, b.pr_recall)


def test_relevance_shares_a_label() -> None:
    ql = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    dl = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(relevance(ql, dl),
                                  [[True, False, False], [True, True, False],
                                   [False, False, False]])


@pytest.mark.parametrize(("seed", "bits", "n_db", "n_q"), CASES)
def test_evaluate_with_class_lists_matches_brute_force(seed: int, bits: int, n_db: int,
                                                       n_q: int) -> None:
    """Labels as class lists (the form the service and the solver use) against the brute-force
    reference on the same labels as dense 0/1 rows; the query lists are narrower than the
    database's (classes the queries never have), which must not matter."""
    qc, ql, dc, dl = _case(seed, bits, n_db, n_q, n_classes=7)
    ql[:, -2:] = 0
    q_lists = ClassLists.from_dense(ql[:, :-2])
    db_lists = ClassLists.from_dense(dl)
    ks = (1, 5, n_db + 10)
    got = evaluate(qc, q_lists, dc, db_lists, ks=ks)
    ref = reference(qc, ql, dc, dl, ks)
    assert got.map == pytest.approx(ref["map"], abs=1e-12)
    np.testing.assert_allclose(got.average_precision, ref["ap"], atol=1e-12)
    for k in ks:
        assert got.map_at_k[k] == pytest.approx(ref["map_at_k"][k], abs=1e-12)  # type: ignore[index]
    assert got.precision_r2 == pytest.approx(ref["precision_r2"], abs=1e-12)
    np.testing.assert_allclose(got.pr_precision, ref["pr_precision"], atol=1e-12)
    np.testing.assert_allclose(got.pr_recall, ref["pr_recall"], atol=1e-12)
    np.testing.assert_array_equal(relevance(q_lists, db_lists), relevance(ql, dl))
    packed = evaluate(pack_codes(qc), q_lists, pack_codes(dc), db_lists, ks=ks, bits=bits)
    assert packed.map == got.map


def test_evaluate_with_many_classes_never_densifies() -> None:
    """Class numbers up to 10⁶ (dense N × c would be 8 GB as float64): scored from the lists."""
    rng = np.random.default_rng(3)
    c = 1_000_000
    db_cls = rng.choice(c, 40, replace=False)[rng.integers(0, 40, 500)]
    q_cls = db_cls[rng.integers(0, 500, 30)]
    db = ClassLists(np.arange(501), db_cls, c)
    q = ClassLists(np.arange(31), q_cls, c)
    dc = np.where(rng.random((500, 16)) < 0.5, -1, 1).astype(np.int8)
    qc = np.where(rng.random((30, 16)) < 0.5, -1, 1).astype(np.int8)
    got = evaluate(qc, q, dc, db)
    rel = q_cls[:, None] == db_cls[None, :]
    np.testing.assert_array_equal(relevance(q, db), rel)
    uniq, db_small = np.unique(db_cls, return_inverse=True)  # the same labels, renumbered
    small = evaluate(qc, ClassLists(np.arange(31), np.searchsorted(uniq, q_cls), len(uniq)),
                     dc, ClassLists(np.arange(501), db_small, len(uniq)))
    assert got.map == small.map


# --- tie-aware mAP ---------------------------------------------------------------------------


def _tie_orders(dist: list[int]) -> list[list[int]]:
    """Every ranking by distance, ties ordered in every possible way (tiny inputs only)."""
    groups = [[j for j in range(len(dist)) if dist[j] == d] for d in sorted(set(dist))]
    out = []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        out.append([j for p in perms for j in p])
    return out


def _tie_reference(q_codes: np.ndarray, q_labels: np.ndarray, db_codes: np.ndarray,
                   db_labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per query: AP averaged over every order within tie groups, and its minimum and maximum."""
    mean, worst, best = [], [], []
    for qi in range(len(q_codes)):
        dist = [int(np.sum(q_codes[qi] != db_codes[j])) for j in range(len(db_codes))]
        rel = [bool(np.any((q_labels[qi] > 0) & (db_labels[j] > 0)))
               for j in range(len(db_codes))]
        aps = [_ap(order, rel, len(order)) for order in _tie_orders(dist)]
        mean.append(math.fsum(aps) / len(aps))
        worst.append(min(aps))
        best.append(max(aps))
    return {"mean": np.array(mean), "worst": np.array(worst), "best": np.array(best)}


@pytest.mark.parametrize("seed", range(8))
def test_tie_aware_map_is_the_mean_over_all_tie_orders(seed: int) -> None:
    """Tiny multi-label cases (≤ 8 items, so at most 8! orders per query), with a query that
    has no label and so no relevant item: the closed form equals the brute-force mean."""
    rng = np.random.default_rng(100 + seed)
    n_db, bits = int(rng.integers(3, 9)), int(rng.integers(1, 4))
    qc = np.where(rng.random((6, bits)) < 0.5, -1, 1).astype(np.int8)
    dc = np.where(rng.random((n_db, bits)) < 0.5, -1, 1).astype(np.int8)
    ql = (rng.random((6, 3)) < 0.4).astype(np.uint8)
    dl = (rng.random((n_db, 3)) < 0.4).astype(np.uint8)
    ql[0] = 0  # no relevant item: AP 0 under every order
    ql[1] = [1, 1, 0]  # multi-label query
    ref = _tie_reference(qc, ql, dc, dl)
    got = evaluate(qc, ql, dc, dl)
    np.testing.assert_allclose(got.average_precision_tie_aware, ref["mean"], rtol=0, atol=1e-12)
    assert got.map_tie_aware == pytest.approx(float(ref["mean"].mean()), abs=1e-12)
    assert got.average_precision_tie_aware[0] == 0.0
    assert got.as_dict()["map_tie_aware"] == got.map_tie_aware
    packed = evaluate(pack_codes(qc), ql, pack_codes(dc), dl, bits=bits)
    assert packed.map_tie_aware == got.map_tie_aware


def test_tie_aware_map_one_tie_group_by_hand() -> None:
    """Four items at one distance, one relevant: the expected AP is mean(1, 1/2, 1/3, 1/4)."""
    q = np.ones((1, 8), dtype=np.int8)
    db = np.ones((4, 8), dtype=np.int8)
    s = evaluate(q, np.array([[1, 0]]), db, np.array([[1, 0], [0, 1], [0, 1], [0, 1]]))
    assert s.map_tie_aware == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, abs=1e-15)
    assert s.map == pytest.approx(1.0)  # insertion order puts the relevant item first


def test_tie_aware_map_equals_map_without_ties() -> None:
    """Item j differs from every query in exactly its first j bits: all distances distinct, so
    there is one order and the tie-aware mAP is mAP@all, per query."""
    bits = 12
    db = np.ones((bits + 1, bits), dtype=np.int8)
    for j in range(bits + 1):
        db[j, :j] = -1
    rng = np.random.default_rng(7)
    perm = rng.permutation(bits + 1)  # insertion order unrelated to distance
    db = db[perm]
    q = np.ones((20, bits), dtype=np.int8)
    ql = (rng.random((20, 4)) < 0.4).astype(np.uint8)
    dl = (rng.random((bits + 1, 4)) < 0.4).astype(np.uint8)
    s = evaluate(q, ql, db, dl)
    assert 0.0 < s.map < 1.0
    np.testing.assert_allclose(s.average_precision_tie_aware, s.average_precision, atol=1e-12)
    assert s.map_tie_aware == pytest.approx(s.map, abs=1e-12)


@pytest.mark.parametrize(("seed", "bits", "n_db", "n_q"), [(0, 2, 8, 15), (1, 3, 7, 15),
                                                            (2, 1, 8, 10)])
def test_tie_aware_map_between_worst_and_best_tie_order(seed: int, bits: int, n_db: int,
                                                        n_q: int) -> None:
    qc, ql, dc, dl = _case(seed, bits, n_db, n_q, n_classes=3)
    ref = _tie_reference(qc, ql, dc, dl)
    got = evaluate(qc, ql, dc, dl).average_precision_tie_aware
    assert np.all(ref["worst"] - 1e-12 <= got) and np.all(got <= ref["best"] + 1e-12)
    spread = ref["best"] > ref["worst"] + 1e-9  # queries whose AP the tie order changes
    assert spread.any()
    assert np.all(got[spread] > ref["worst"][spread]) and np.all(got[spread] < ref["best"][spread])


@pytest.mark.parametrize(("seed", "bits", "n_db", "n_q"), CASES)
def test_tie_aware_map_invariant_to_database_order(seed: int, bits: int, n_db: int,
                                                   n_q: int) -> None:
    qc, ql, dc, dl = _case(seed, bits, n_db, n_q)
    a = evaluate(qc, ql, dc, dl)
    perm = np.random.default_rng(seed).permutation(n_db)
    b = evaluate(qc, ql, dc[perm], dl[perm])
    np.testing.assert_allclose(b.average_precision_tie_aware, a.average_precision_tie_aware,
                               rtol=0, atol=1e-12)
    assert b.map_tie_aware == pytest.approx(a.map_tie_aware, abs=1e-12)


def test_map_depends_on_database_order_but_tie_aware_does_not() -> None:
    """Relevant item inserted first or last among equal codes: mAP@all moves (1 vs 1/2), the
    tie-aware mAP stays at their mean 3/4."""
    q = np.ones((1, 8), dtype=np.int8)
    db = np.ones((2, 8), dtype=np.int8)
    ql = np.array([[1, 0]])
    first = evaluate(q, ql, db, np.array([[1, 0], [0, 1]]))
    last = evaluate(q, ql, db, np.array([[0, 1], [1, 0]]))
    assert first.map == pytest.approx(1.0) and last.map == pytest.approx(0.5)
    assert first.map_tie_aware == pytest.approx(0.75, abs=1e-15)
    assert last.map_tie_aware == pytest.approx(0.75, abs=1e-15)


def _tie_rank_sum(q_codes: np.ndarray, q_labels: np.ndarray, db_codes: np.ndarray,
                  db_labels: np.ndarray) -> np.ndarray:
    """The expected AP rank by rank (Python loops, math.fsum): rank a+s of a tie group of t
    items with ρ relevant, R_b above, adds (ρ/t)(R_b + 1 + (s-1)(ρ-1)/(t-1))/(a+s)."""
    out = []
    for qi in range(len(q_codes)):
        dist = np.sum(q_codes[qi] != db_codes, axis=1)
        rel = np.any((q_labels[qi] > 0) & (db_labels > 0), axis=1)
        terms, a, before = [], 0, 0
        for d in sorted(set(dist.tolist())):
            t, rho = int(np.sum(dist == d)), int(np.sum(rel & (dist == d)))
            for s in range(1, t + 1):
                inner = (s - 1) * (rho - 1) / (t - 1) if t > 1 else 0.0
                terms.append(rho / t * (before + 1 + inner) / (a + s))
            a, before = a + t, before + rho
        out.append(math.fsum(terms) / before if before else 0.0)
    return np.array(out)


@pytest.mark.parametrize(("seed", "bits", "n_db", "n_q"), [*CASES, (8, 16, 20000, 5)])
def test_tie_aware_closed_form_matches_rank_by_rank_sum(seed: int, bits: int, n_db: int,
                                                        n_q: int) -> None:
    """Larger databases (tie groups far down the ranking, where t - (a+1)ΔH cancels): the
    harmonic-number form equals the rank-by-rank sum."""
    qc, ql, dc, dl = _case(seed, bits, n_db, n_q)
    got = evaluate(qc, ql, dc, dl).average_precision_tie_aware
    np.testing.assert_allclose(got, _tie_rank_sum(qc, ql, dc, dl), rtol=0, atol=1e-12)


def _projection_for(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real-valued projection whose signs are ``codes``: multiples of 1/2 (so every inner
    product is exact in float32 and equal scores stay equal), 0 at some +1 bits (sgn(0) = +1)."""
    z = codes * rng.integers(1, 7, codes.shape) / 2
    z[(codes > 0) & (rng.random(codes.shape) < 0.1)] = 0.0
    return z


@pytest.mark.parametrize(("seed", "bits", "n_db", "n_q"), CASES)
def test_projection_ties_against_brute_force(seed: int, bits: int, n_db: int,
                                             n_q: int) -> None:
    """Ranked by (distance, −⟨z, code⟩, insertion) in Python loops: the same AP per query,
    on codes drawn to tie often; packed codes give the same figure."""
    qc, ql, dc, dl = _case(seed, bits, n_db, n_q)
    z = _projection_for(qc, np.random.default_rng(seed + 50))
    got = evaluate(qc, ql, dc, dl, query_projection=z)
    want = []
    for qi in range(n_q):
        dist = [int(np.sum(qc[qi] != dc[j])) for j in range(n_db)]
        score = [float(np.dot(z[qi].astype(np.float32), dc[j].astype(np.float32)))
                 for j in range(n_db)]
        rel = [bool(np.any((ql[qi] > 0) & (dl[j] > 0))) for j in range(n_db)]
        ranked = sorted(range(n_db), key=lambda j: (dist[j], -score[j], j))
        want.append(_ap(ranked, rel, n_db))
    assert got.average_precision_projection_ties is not None
    np.testing.assert_allclose(got.average_precision_projection_ties, want, rtol=0, atol=1e-12)
    assert got.map_projection_ties == pytest.approx(float(np.mean(want)), abs=1e-12)
    assert got.as_dict()["map_projection_ties"] == got.map_projection_ties
    packed = evaluate(pack_codes(qc), ql, pack_codes(dc), dl, bits=bits, query_projection=z)
    assert packed.map_projection_ties == got.map_projection_ties


def test_projection_ties_by_hand() -> None:
    """Two items one bit from the query: the one that differs where the query's projection is
    weak (bit 1, |z| = 0.5) ranks before the one that differs where it is strong (bit 0,
    |z| = 3), whatever the insertion order; without projections nothing is reported."""
    q = np.ones((1, 4), dtype=np.int8)
    z = np.array([[3.0, 0.5, 1.0, 1.0]])
    strong, weak = [-1, 1, 1, 1], [1, -1, 1, 1]
    db = np.array([strong, weak], dtype=np.int8)  # the irrelevant one inserted first
    labels = np.array([[0, 1], [1, 0]])
    s = evaluate(q, np.array([[1, 0]]), db, labels, query_projection=z)
    assert s.map == pytest.approx(0.5)  # insertion order
    assert s.map_tie_aware == pytest.approx(0.75)
    assert s.map_projection_ties == pytest.approx(1.0)
    plain = evaluate(q, np.array([[1, 0]]), db, labels)
    assert plain.map_projection_ties is None and "map_projection_ties" not in plain.as_dict()


def test_projection_ties_one_of_the_tie_orders() -> None:
    """The projection picks one order within each tie, so each query's AP lies between the
    worst and the best tie order's, and equals mAP@all where no distance ties."""
    qc, ql, dc, dl = _case(1, 3, 7, 15, n_classes=3)
    ref = _tie_reference(qc, ql, dc, dl)
    z = _projection_for(qc, np.random.default_rng(3))
    got = evaluate(qc, ql, dc, dl, query_projection=z).average_precision_projection_ties
    assert got is not None
    assert np.all(ref["worst"] - 1e-12 <= got) and np.all(got <= ref["best"] + 1e-12)
    bits = 12
    db = np.ones((bits + 1, bits), dtype=np.int8)
    for j in range(bits + 1):
        db[j, :j] = -1
    q = np.ones((5, bits), dtype=np.int8)
    rng = np.random.default_rng(8)
    ql2 = (rng.random((5, 3)) < 0.5).astype(np.uint8)
    dl2 = (rng.random((bits + 1, 3)) < 0.5).astype(np.uint8)
    s = evaluate(q, ql2, db, dl2, query_projection=_projection_for(q, rng))
    assert s.map_projection_ties == pytest.approx(s.map, abs=1e-12)


def test_projection_of_the_wrong_shape_is_refused() -> None:
    q = np.ones((2, 8), dtype=np.int8)
    with pytest.raises(ValueError, match="query_projection"):
        evaluate(q, np.eye(2), q, np.eye(2), query_projection=np.ones((2, 7)))
