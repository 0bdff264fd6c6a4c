"""Hadamard hash centers: Sylvester's matrix, orthogonality and the class-growth rule."""

from __future__ import annotations

import numpy as np
import pytest

from hashstream.solver.hadamard import (
    center_column,
    grow_centers,
    hadamard_centers,
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
    for c in (1, 2, 10, bits // 2, bits):
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


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_growth_rule(bits: int) -> None:
    h = sylvester(bits)
    centers = hadamard_centers(bits, 3 * bits + 5, seed=11)
    for j in range(bits):
        np.testing.assert_array_equal(centers[:, j], h[:, j])
    for j in range(bits, 2 * bits):
        np.testing.assert_array_equal(centers[:, j], -h[:, j - bits])
    rand = centers[:, 2 * bits:]
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
    np.testing.assert_array_equal(a[:, :2 * bits], other[:, :2 * bits])
    assert not np.array_equal(a[:, 2 * bits:], other[:, 2 * bits:])


@pytest.mark.parametrize("bits", [16, 32, 48])
@pytest.mark.parametrize(("c1", "c2"), [(1, 5), (3, 16), (10, 40), (0, 70), (20, 101)])
def test_grow_centers_equals_direct(bits: int, c1: int, c2: int) -> None:
    start = hadamard_centers(bits, c1, seed=5)
    grown = grow_centers(start, c2, seed=5)
    np.testing.assert_array_equal(grown, hadamard_centers(bits, c2, seed=5))
    # growing in two steps is the same as growing in one
    mid = grow_centers(start, (c1 + c2) // 2, seed=5)
    np.testing.assert_array_equal(grow_centers(mid, c2, seed=5), grown)


def test_grow_centers_never_shrinks() -> None:
    start = hadamard_centers(32, 10)
    np.testing.assert_array_equal(grow_centers(start, 4), start)
    np.testing.assert_array_equal(grow_centers(start, 10), start)


@pytest.mark.parametrize(("bits", "order"), [(48, 64), (12, 16), (20, 32), (3, 4), (1, 1)])
def test_non_power_of_two_bits_use_first_rows_of_next_order(bits: int, order: int) -> None:
    h = sylvester(order)
    centers = hadamard_centers(bits, 2 * bits + 3, seed=1)
    assert centers.shape == (bits, 2 * bits + 3)
    np.testing.assert_array_equal(centers[:, :bits], h[:bits, :bits])
    np.testing.assert_array_equal(centers[:, bits:2 * bits], -h[:bits, :bits])
    assert set(np.unique(centers)) <= {-1, 1}


def test_48_bits_first_classes_orthogonal() -> None:
    # The first 16 columns of H_64 restricted to 48 rows stay orthogonal (24 bits apart).
    centers = hadamard_centers(48, 16).astype(np.int64)
    np.testing.assert_array_equal(centers.T @ centers, 48 * np.eye(16, dtype=np.int64))


@pytest.mark.parametrize("bits", [0, -1])
def test_invalid_bits_raise(bits: int) -> None:
    with pytest.raises(ValueError):
        hadamard_centers(bits, 4)


def test_negative_class_count_raises() -> None:
    with pytest.raises(ValueError):
        hadamard_centers(16, -1)


def test_zero_classes_is_empty() -> None:
    assert hadamard_centers(16, 0).shape == (16, 0)
