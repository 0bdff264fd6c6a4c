"""ClassLists: construction, views, conversions, persistence and validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashstream.solver.class_lists import ClassLists


def _dense(seed: int, n: int, c: int, p: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = (rng.random((n, c)) < p).astype(np.uint8)
    lab[rng.integers(0, n, max(1, n // 5))] = 0  # some items without a class
    return lab


def test_from_lists_sorts_and_sizes() -> None:
    cl = ClassLists.from_lists([[3, 1], [], [0], [2, 4, 1]])
    assert cl.n == 4 and cl.nnz == 6 and cl.n_classes == 5
    assert cl.indptr.dtype == np.int64 and cl.classes.dtype == np.int32
    assert cl.indptr.tolist() == [0, 2, 2, 3, 6]
    assert cl.classes.tolist() == [1, 3, 0, 1, 2, 4]
    assert cl.row(3).tolist() == [1, 2, 4]
    assert cl.counts().tolist() == [2, 0, 1, 3]
    assert cl.row_of_entry().tolist() == [0, 0, 2, 3, 3, 3]
    assert ClassLists.from_lists([[1]], n_classes=7).n_classes == 7
    assert ClassLists.from_lists([]).n == 0


@pytest.mark.parametrize(("seed", "n", "c"), [(0, 20, 5), (1, 1, 1), (2, 50, 30), (3, 0, 4)])
def test_from_dense_to_dense_round_trip(seed: int, n: int, c: int) -> None:
    lab = _dense(seed, n, c) if n else np.zeros((0, c), np.uint8)
    cl = ClassLists.from_dense(lab)
    assert cl.n == n and cl.n_classes == c and cl.nnz == int(lab.sum())
    np.testing.assert_array_equal(cl.to_dense(), lab)
    assert cl.to_dense().dtype == np.uint8
    np.testing.assert_array_equal(cl.to_dense(c + 3)[:, :c], lab)
    assert not cl.to_dense(c + 3)[:, c:].any()
    rows = [np.flatnonzero(r).tolist() for r in lab]
    assert ClassLists.from_lists(rows, n_classes=c) == cl


def test_from_dense_rejects_non_matrix() -> None:
    with pytest.raises(ValueError, match="n × c"):
        ClassLists.from_dense(np.ones(4))


def test_to_sparse_and_normalized() -> None:
    lab = _dense(4, 30, 6)
    cl = ClassLists.from_dense(lab)
    ones = cl.to_sparse()
    assert ones.shape == (30, 6) and ones.dtype == np.float64
    np.testing.assert_array_equal(ones.toarray(), lab)
    hat = cl.to_sparse(np.float32, normalize=True)
    assert hat.dtype == np.float32
    norms = np.linalg.norm(lab, axis=1, keepdims=True)
    np.testing.assert_allclose(hat.toarray(), lab / np.where(norms > 0, norms, 1), rtol=1e-6)
    np.testing.assert_array_equal(cl.by_class().toarray(), lab.T)


def test_concat_take_widen() -> None:
    a = ClassLists.from_dense(_dense(5, 7, 3))
    b = ClassLists.from_dense(_dense(6, 5, 6))
    both = ClassLists.concat([a, b])
    assert both.n == 12 and both.n_classes == 6
    np.testing.assert_array_equal(both.to_dense(), np.vstack([a.to_dense(6), b.to_dense()]))
    assert ClassLists.concat([]).n == 0
    rows = np.array([11, 0, 3, 3, 8])
    np.testing.assert_array_equal(both.take(rows).to_dense(), both.to_dense()[rows])
    assert both.take(np.zeros(0, np.int64)).n == 0
    assert a.widen(2) is a
    wide = a.widen(9)
    assert wide.n_classes == 9 and wide.to_dense().shape == (7, 9)
    np.testing.assert_array_equal(wide.indptr, a.indptr)


def test_persistence_round_trip() -> None:
    cl = ClassLists.from_dense(_dense(7, 25, 8))
    arrays = cl.to_arrays(prefix="exemplar_label_")
    assert set(arrays) == {"exemplar_label_indptr", "exemplar_label_classes",
                           "exemplar_label_n_classes"}
    assert ClassLists.from_arrays(arrays, prefix="exemplar_label_") == cl
    assert ClassLists.from_arrays(cl.to_arrays()) == cl
    assert ClassLists.empty(4).n == 0 and ClassLists.empty(4).n_classes == 4


def test_equality() -> None:
    a = ClassLists.from_lists([[0, 1], [2]])
    assert a == ClassLists.from_lists([[1, 0], [2]])
    assert a != ClassLists.from_lists([[0, 1], [2]], n_classes=5)
    assert a != ClassLists.from_lists([[0], [1, 2]])
    assert (a == 3) is False


@pytest.mark.parametrize(("indptr", "classes", "c", "match"), [
    ([1, 2], [0], 3, "starting at 0"),
    ([[0, 1]], [0], 3, "1-D"),
    ([], [], 3, "1-D"),
    ([0, 2, 1], [0, 1], 3, "non-decreasing"),
    ([0, 1], [0, 1], 3, "end at len"),
    ([0, 1], [3], 3, "class numbers"),
    ([0, 1], [-1], 3, "class numbers"),
])
def test_validation_errors(indptr: list, classes: list, c: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ClassLists(np.asarray(indptr), np.asarray(classes), c)


def test_has_any_and_first_class() -> None:
    cl = ClassLists.from_lists([[3, 1], [], [0], [2, 4]], n_classes=5)
    mask = np.array([False, True, False, False, True])
    assert cl.has_any(mask).tolist() == [True, False, False, True]
    assert cl.first_class().tolist() == [1, -1, 0, 2]
    assert cl.first_class(missing=5).tolist() == [1, 5, 0, 2]


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 10_000), n_a=st.integers(0, 30), n_b=st.integers(0, 30),
       c_a=st.integers(1, 12), c_b=st.integers(1, 12))
def test_shares_any_matches_dense(seed: int, n_a: int, n_b: int, c_a: int, c_b: int) -> None:
    rng = np.random.default_rng(seed)
    da = (rng.random((n_a, c_a)) < 0.25).astype(np.uint8)
    db = (rng.random((n_b, c_b)) < 0.25).astype(np.uint8)
    a, b = ClassLists.from_dense(da), ClassLists.from_dense(db)
    w = max(c_a, c_b)
    expect = (a.to_dense(w).astype(int) @ b.to_dense(w).T.astype(int)) > 0
    got = a.shares_any(b)
    assert got.shape == (n_a, n_b) and got.dtype == bool
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(a.shares_any(b, b.by_class()), expect)
