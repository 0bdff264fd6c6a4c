"""Hadamard hash centers: Sylvester's matrix, orthogonality, as many distinct bit rows as the
classes allow, and the class-growth rule (the earlier rule kept for indexes made with it)."""

from __future__ import annotations

import numpy as np
import pytest

from hashstream.solver.hadamard import (
    center_column,
    column_order,
    distinct_rows,
    grow_centers,
    hadamard_centers,
    legacy_centers,
    sylvester,
)


@pytest.mark.parametrize("order", [1, 2, 4, 8, 16, 32, 64, 128])
def test_sylvester_is_hadamard(order: int) -> None:
    h = sylvester(order)
    assert h.shape == (order, order)
    assert h.dtype == np.int8
    assert set(np.unique(h)) <= {-1, 1}
    hh = h.astype(np.int64) @ h.T.astype(np.int64)
    np.testing.assert_array_equal(hh, order * np.eye(order, dtype=np.int64))


@pytest.mark.parametrize("order", [0, -4, 3, 6, 12, 48, 100])
def test_sylvester_rejects_non_powers_of_two(order: int) -> None:
    with pytest.raises(ValueError):
        sylvester(order)


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_centers_mutually_orthogonal_up_to_r_classes(bits: int) -> None:
    for c in (1, 2, 10, bits // 2, bits - 1):
        centers = hadamard_centers(bits, c)
        assert centers.shape == (bits, c)
        assert centers.dtype == np.int8
        assert set(np.unique(centers)) <= {-1, 1}
        gram = centers.T.astype(np.int64) @ centers.astype(np.int64)
        np.testing.assert_array_equal(gram, bits * np.eye(c, dtype=np.int64))
        # hence every pair of centers is exactly r/2 apart in Hamming distance
        dist = (bits - gram) // 2
        off = dist[~np.eye(c, dtype=bool)]
        assert (off == bits // 2).all()


@pytest.mark.parametrize("bits", [16, 32, 48, 64])
@pytest.mark.parametrize("c", [1, 2, 3, 5, 6, 7, 10, 20, 40, 70])
def test_centers_have_as_many_distinct_bit_rows_as_c_classes_can(bits: int, c: int) -> None:
    """A bit row is a pattern over c classes: 2^c patterns at most, and r rows. Once the
    classes outnumber log2 of the order, every bit row differs and at most one (row 0, while
    no class has a negated column) is the same for every class."""
    centers = hadamard_centers(bits, c)
    assert distinct_rows(centers) == min(bits, 2 ** c)
    n = (bits - 1).bit_length()  # log2 of the Sylvester order
    if c > n:
        same = [k for k in range(bits) if len(set(centers[k].tolist())) == 1]
        assert same == ([0] if c < 2 ** n else [])


def test_the_earlier_rule_copied_rows_the_new_one_does_not() -> None:
    """The issue's figures: with c = 10 the first columns gave 16 distinct rows of 32 and 64."""
    assert distinct_rows(legacy_centers(32, 10)) == 16
    assert distinct_rows(legacy_centers(64, 10)) == 16
    assert distinct_rows(hadamard_centers(32, 10)) == 32
    assert distinct_rows(hadamard_centers(64, 10)) == 64


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_growth_rule(bits: int) -> None:
    h = sylvester(bits)
    cols = column_order(bits)
    assert len(cols) == bits - 1 and 0 not in cols and sorted(cols) == list(range(1, bits))
    centers = hadamard_centers(bits, 3 * bits + 5, seed=11)
    for j, col in enumerate(cols):
        np.testing.assert_array_equal(centers[:, j], h[:, col])
        np.testing.assert_array_equal(centers[:, j + len(cols)], -h[:, col])
    rand = centers[:, 2 * len(cols):]
    assert set(np.unique(rand)) <= {-1, 1}
    # the random columns are not simply Hadamard columns again
    assert not all(any((rand[:, k] == s * h[:, j]).all() for j in range(bits) for s in (1, -1))
                   for k in range(rand.shape[1]))
    for j in range(3 * bits + 5):
        np.testing.assert_array_equal(center_column(bits, j, 11), centers[:, j])


@pytest.mark.parametrize("bits", [16, 32])
def test_random_columns_deterministic_by_seed(bits: int) -> None:
    c = 2 * bits + 8
    a = hadamard_centers(bits, c, seed=3)
    b = hadamard_centers(bits, c, seed=3)
    other = hadamard_centers(bits, c, seed=4)
    np.testing.assert_array_equal(a, b)
    # the deterministic part does not depend on the seed, the random part does
    fixed = 2 * (bits - 1)
    np.testing.assert_array_equal(a[:, :fixed], other[:, :fixed])
    assert not np.array_equal(a[:, fixed:], other[:, fixed:])


@pytest.mark.parametrize("bits", [16, 32, 48])
@pytest.mark.parametrize(("c1", "c2"), [(1, 5), (3, 16), (10, 40), (0, 70), (20, 101)])
def test_grow_centers_equals_direct(bits: int, c1: int, c2: int) -> None:
    start = hadamard_centers(bits, c1, seed=5)
    grown = grow_centers(start, c2, seed=5)
    np.testing.assert_array_equal(grown, hadamard_centers(bits, c2, seed=5))
    # growing in two steps is the same as growing in one
    mid = grow_centers(start, (c1 + c2) // 2, seed=5)
    np.testing.assert_array_equal(grow_centers(mid, c2, seed=5), grown)


@pytest.mark.parametrize(("bits", "c1", "c2"), [(32, 10, 12), (64, 3, 70), (16, 20, 40)])
def test_centers_of_the_earlier_rule_keep_growing_by_it(bits: int, c1: int, c2: int) -> None:
    old = legacy_centers(bits, c1, seed=2)
    np.testing.assert_array_equal(grow_centers(old, c2, seed=2), legacy_centers(bits, c2, 2))


def test_grow_centers_never_shrinks() -> None:
    start = hadamard_centers(32, 10)
    np.testing.assert_array_equal(grow_centers(start, 4), start)
    np.testing.assert_array_equal(grow_centers(start, 10), start)


@pytest.mark.parametrize(("bits", "order"), [(48, 64), (12, 16), (20, 32), (3, 4), (1, 1)])
def test_non_power_of_two_bits_use_first_rows_of_next_order(bits: int, order: int) -> None:
    h = sylvester(order)
    cols = column_order(order)
    centers = hadamard_centers(bits, 2 * bits + 3, seed=1)
    assert centers.shape == (bits, 2 * bits + 3)
    for j in range(min(len(cols), centers.shape[1])):
        np.testing.assert_array_equal(centers[:, j], h[:bits, cols[j]])
    assert set(np.unique(centers)) <= {-1, 1}
    for j in range(centers.shape[1]):
        np.testing.assert_array_equal(center_column(bits, j, 1), centers[:, j])


@pytest.mark.parametrize("bits", [0, -1])
def test_invalid_bits_raise(bits: int) -> None:
    with pytest.raises(ValueError):
        hadamard_centers(bits, 4)


def test_negative_class_count_raises() -> None:
    with pytest.raises(ValueError):
        hadamard_centers(16, -1)


def test_zero_classes_is_empty() -> None:
    assert hadamard_centers(16, 0).shape == (16, 0)
