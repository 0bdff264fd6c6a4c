"""Exemplar-memory policies and the memory update of a round."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.exemplars import (
    select_class_balanced,
    select_exemplars,
    select_nearest_center,
    select_random,
)
from hashstream.solver.sdoh_hc.round import learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

POLICIES = ["random", "class_balanced", "nearest_center"]
CL = ClassLists.from_dense


def _chunk(seed: int, n: int, c: int, r: int, multilabel: bool = False
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, c))
    labels[np.arange(n), rng.integers(0, c, n)] = 1
    if multilabel:
        labels[rng.random((n, c)) < 0.3] = 1
    codes = np.where(rng.random((n, r)) < 0.5, -1, 1).astype(np.int8)
    centers = np.where(rng.random((c, r)) < 0.5, -1, 1).astype(np.int8)
    return labels, codes, centers


def _check_indices(idx: np.ndarray, n: int, count: int) -> None:
    assert idx.dtype == np.int64
    assert len(idx) == min(count, n)
    assert len(np.unique(idx)) == len(idx)
    assert (np.diff(idx) > 0).all()
    assert idx.size == 0 or (idx.min() >= 0 and idx.max() < n)


@settings(max_examples=20, deadline=None, derandomize=True,
          database=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 120), c=st.integers(1, 6),
       count=st.integers(0, 150), multilabel=st.booleans(), policy=st.sampled_from(POLICIES))
def test_policies_count_distinct_sorted(seed: int, n: int, c: int, count: int,
                                        multilabel: bool, policy: Any) -> None:
    labels, codes, centers = _chunk(seed, n, c, 16, multilabel)
    idx = select_exemplars(policy, CL(labels), codes, centers, count, np.random.default_rng(seed))
    _check_indices(idx, n, count)


@pytest.mark.parametrize("policy", POLICIES)
def test_count_above_n_returns_all_rows(policy: Any) -> None:
    labels, codes, centers = _chunk(1, 30, 4, 8)
    idx = select_exemplars(policy, CL(labels), codes, centers, 100, np.random.default_rng(0))
    np.testing.assert_array_equal(idx, np.arange(30))


def test_unlabelled_rows_fill_class_balanced() -> None:
    labels, _, _ = _chunk(2, 20, 3, 8)
    labels[10:] = 0  # half the rows have no label
    idx = select_class_balanced(CL(labels), 15, np.random.default_rng(0))
    _check_indices(idx, 20, 15)
    assert set(range(10)) <= set(idx.tolist())  # every labelled row before any unlabelled one


def test_select_random_is_seeded() -> None:
    a = select_random(100, 10, np.random.default_rng(5))
    b = select_random(100, 10, np.random.default_rng(5))
    c = select_random(100, 10, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    _check_indices(a, 100, 10)


@pytest.mark.parametrize(("c", "count"), [(3, 10), (4, 4), (5, 23), (6, 60), (2, 1)])
@pytest.mark.parametrize("seed", [0, 1])
def test_class_balanced_floor_or_ceil(c: int, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 40 * c
    y = rng.permutation(np.arange(n) % c)  # every class has 40 rows
    labels = np.eye(c)[y]
    idx = select_class_balanced(CL(labels), count, rng)
    _check_indices(idx, n, count)
    per_class = np.bincount(y[idx], minlength=c)
    assert per_class.sum() == count
    assert set(per_class.tolist()) <= {count // c, -(-count // c)}


def test_class_balanced_favours_rare_classes() -> None:
    # class 2 has only 3 rows: it gets all of them, the others share the rest evenly
    y = np.array([0] * 50 + [1] * 50 + [2] * 3)
    labels = np.eye(3)[y]
    idx = select_class_balanced(CL(labels), 21, np.random.default_rng(0))
    per_class = np.bincount(y[idx], minlength=3)
    assert per_class.tolist() == [9, 9, 3]


def _brute_nearest(labels: np.ndarray, codes: np.ndarray, centers: np.ndarray,
                   count: int) -> list[int]:
    keyed = []
    for i in range(labels.shape[0]):
        own = [k for k in range(labels.shape[1]) if labels[i, k] > 0]
        if own:
            dists = [int(np.sum(codes[i] != centers[k])) for k in own]
            key = sum(dists) / len(dists)
        else:
            key = float("inf")
        keyed.append((key, i))
    keyed.sort()
    return sorted(i for _, i in keyed[:count])


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize(("n", "count", "r"), [(50, 10, 8), (80, 33, 4), (30, 29, 16)])
def test_nearest_center_matches_brute_force(multilabel: bool, n: int, count: int,
                                            r: int) -> None:
    labels, codes, centers = _chunk(n + count, n, 5, r, multilabel)
    labels[3] = 0  # an unlabelled row is the last choice
    idx = select_nearest_center(CL(labels), codes, centers, count)
    assert idx.tolist() == _brute_nearest(labels, codes, centers, count)
    assert 3 not in idx.tolist()


def test_nearest_center_picks_exact_centers() -> None:
    centers = np.array([[1, 1, 1, 1], [-1, -1, 1, 1]], dtype=np.int8)
    codes = np.array([[1, 1, 1, -1], [-1, -1, 1, 1], [-1, -1, -1, -1], [1, 1, 1, 1]],
                     dtype=np.int8)
    labels = np.array([[1, 0], [0, 1], [1, 0], [1, 0]])
    idx = select_nearest_center(CL(labels), codes, centers, 2)
    assert idx.tolist() == [1, 3]


def test_unknown_policy_raises() -> None:
    labels, codes, centers = _chunk(0, 10, 2, 4)
    with pytest.raises(ValueError, match="policy"):
        select_exemplars("oldest", CL(labels), codes, centers, 3,  # type: ignore[arg-type]
                         np.random.default_rng(0))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(("n1", "n2"), [(50, 30), (10, 100), (0, 25), (40, 0)])
def test_memory_size_after_each_round(np_backend: Backend, policy: Any, n1: int,
                                      n2: int) -> None:
    rng = np.random.default_rng(n1 + n2)
    cfg = SDOHSettings(bits=8, n1=n1, n2=n2, exemplar_policy=policy, seed=3)
    state: SDOHState | None = None
    size = 0
    for n in (20, 100, 40, 60):
        x = rng.standard_normal((n, 6))
        lab = np.eye(3)[rng.integers(0, 3, n)]
        res = learn_chunk(state, x, CL(lab), cfg, np_backend)
        expected = min(n1, size) + min(n2, n)
        mem = res.state
        assert mem.exemplar_features.shape == (expected, 6)
        assert mem.exemplar_labels.to_dense().shape == (expected, 3)
        assert mem.exemplar_codes.shape == (expected, 8)
        assert mem.exemplar_codes.dtype == np.int8
        assert set(np.unique(mem.exemplar_codes)) <= {-1, 1}
        # the new exemplars are rows of this chunk, stored with their learned codes and labels
        new_f = mem.exemplar_features[min(n1, size):]
        new_c = mem.exemplar_codes[min(n1, size):]
        new_l = mem.exemplar_labels.to_dense()[min(n1, size):]
        for f, code, lbl in zip(new_f, new_c, new_l, strict=True):
            rows = np.flatnonzero((np.abs(x.astype(np.float32) - f) == 0).all(axis=1))
            assert len(rows) == 1
            np.testing.assert_array_equal(res.codes[rows[0]], code)
            np.testing.assert_array_equal(lab[rows[0]].astype(np.uint8), lbl)
        size = expected
        state = mem


def test_nearest_center_uses_learned_codes_and_centers(np_backend: Backend) -> None:
    """Exemplars are chosen after B and Y are optimised (SOLVER.md, mistake 2): the new
    exemplars are exactly select_nearest_center on the round's codes and its Y."""
    rng = np.random.default_rng(40)
    cfg = SDOHSettings(bits=16, n1=0, n2=17, exemplar_policy="nearest_center", seed=40)
    state: SDOHState | None = None
    for _ in range(2):
        x = rng.standard_normal((70, 6))
        lab = np.eye(4)[rng.integers(0, 4, 70)]
        res = learn_chunk(state, x, CL(lab), cfg, np_backend)
        idx = select_nearest_center(CL(lab), res.codes, res.state.teacher, 17)
        np.testing.assert_array_equal(res.state.exemplar_codes, res.codes[idx])
        np.testing.assert_array_equal(res.state.exemplar_features, x[idx].astype(np.float32))
        state = res.state


@pytest.mark.parametrize("keep", ["class_balanced", "random"])
def test_exemplar_keep_in_a_class_incremental_stream(np_backend: Backend, keep: Any) -> None:
    """Single-class chunks, one class after another (n1 = n2): under ``class_balanced`` every
    class seen keeps its share of the memory; under ``random`` (the paper's) the first class's
    share halves each round after its own, so it is all but gone."""
    rng = np.random.default_rng(7)
    cfg = SDOHSettings(bits=8, n1=60, n2=60, feature_map="identity", exemplar_keep=keep,
                       seed=1)
    state: SDOHState | None = None
    centers = rng.standard_normal((6, 5)) * 3
    for cls in range(6):
        x = centers[cls] + rng.standard_normal((80, 5))
        res = learn_chunk(state, x, ClassLists(np.arange(81), np.full(80, cls), 6), cfg,
                          np_backend)
        state = res.state
    assert state is not None
    counts = np.bincount(state.exemplar_labels.classes, minlength=6)
    assert counts.sum() == 120
    if keep == "class_balanced":
        # the 60 kept split over the 5 old classes, the last class adds its 60
        np.testing.assert_array_equal(counts, [12, 12, 12, 12, 12, 60])
    else:
        assert counts[0] <= 6 and counts[-1] == 60 and counts[-2] >= 20


def test_unknown_exemplar_keep_raises() -> None:
    with pytest.raises(ValueError, match="exemplar_keep"):
        SDOHSettings(exemplar_keep="oldest")  # type: ignore[arg-type]
