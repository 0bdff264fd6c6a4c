"""Hadamard hash centers (SDOH-HC's fixed centers C) and their class-growth rule.

Column j of Sylvester's matrix H (order 2^n ≥ r) is k ↦ (−1)^⟨k, j⟩ over the bits of k, so
bit k of the centers of the classes with columns j_1 … j_c is a linear function of k over
GF(2): the centers have 2^rank(j_1 … j_c) distinct bit rows. Taking the first c columns (as this
module did before) gives indices below 2^⌈log₂ c⌉, hence only that many distinct rows however
long the code (16 distinct rows out of 64 for c = 10): the other bits copy them, and the query
codes P learns to reproduce copy them too.

So classes take columns in the order 1, 2, 4, …, 2^(n−1) (independent indices: any c of them
give min(2^c, r) distinct rows, the most c classes can have), then the remaining non-zero
indices in increasing order; column 0 (all ones) is never a center, so only bit row 0 is
constant. After the 2^n − 1 columns come their negations in the same order, then random ±1
columns drawn from (seed, j) as CSQ does. Growth is deterministic: the centers of c classes
never depend on how c was reached.

Centers stored by an index made before this order (the first columns of H, then their
negations) keep growing by that older rule (:func:`grow_centers` recognises them).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

Int8Array = np.ndarray[Any, np.dtype[np.int8]]


def sylvester(order: int) -> Int8Array:
    """Sylvester's Hadamard matrix of ``order`` (a power of two), entries ±1."""
    if order < 1 or order & (order - 1):
        raise ValueError(f"Sylvester order must be a power of two, got {order}")
    h = np.ones((1, 1), dtype=np.int8)
    while h.shape[0] < order:
        h = np.block([[h, h], [h, -h]])
    return h


def _order(bits: int) -> int:
    return 1 << max(0, (bits - 1).bit_length())


@lru_cache(maxsize=32)
def column_order(order: int) -> tuple[int, ...]:
    """The Sylvester column of each class, for the first ``order - 1`` classes: the powers of
    two first, then the other non-zero indices ascending (column 0 is never used)."""
    powers = [1 << i for i in range(order.bit_length() - 1)]
    return tuple(powers + [j for j in range(1, order) if j & (j - 1)])


def _random_column(bits: int, j: int, seed: int) -> Int8Array:
    """The ±1 center of class ``j`` once the Hadamard columns are used up (seeded as CSQ)."""
    rng = np.random.default_rng([seed, j])
    return np.where(rng.random(bits) < 0.5, -1, 1).astype(np.int8)


def _centers(bits: int, n_classes: int, seed: int, order: tuple[int, ...]) -> Int8Array:
    """Classes take the Sylvester columns ``order`` (first ``bits`` rows), then their
    negations, then random columns."""
    if bits < 1:
        raise ValueError("bits must be positive")
    h = sylvester(_order(bits))[:bits]
    out = np.empty((bits, n_classes), dtype=np.int8)
    for j in range(n_classes):
        if j < len(order):
            out[:, j] = h[:, order[j]]
        elif j < 2 * len(order):
            out[:, j] = -h[:, order[j - len(order)]]
        else:
            out[:, j] = _random_column(bits, j, seed)
    return out


def hadamard_centers(bits: int, n_classes: int, seed: int = 0) -> Int8Array:
    """C: the ``bits × n_classes`` matrix of fixed hash centers, one column per class."""
    return _centers(bits, n_classes, seed, column_order(_order(max(bits, 1))))


def center_column(bits: int, j: int, seed: int) -> Int8Array:
    """The fixed center of class ``j`` (length ``bits``, ±1)."""
    return hadamard_centers(bits, j + 1, seed)[:, j].copy()


def legacy_centers(bits: int, n_classes: int, seed: int = 0) -> Int8Array:
    """The centers of the earlier rule: the first columns of H_r[:bits, :bits], then their
    negations, then random columns (kept to grow indexes that were made with it)."""
    return _centers(bits, n_classes, seed, tuple(range(bits)))


def grow_centers(centers: Int8Array, n_classes: int, seed: int = 0) -> Int8Array:
    """Extend ``centers`` (bits × c) to ``n_classes`` columns by the rule they were made with."""
    bits, c = centers.shape
    if n_classes <= c:
        return centers
    rule = hadamard_centers
    if c and not np.array_equal(centers, hadamard_centers(bits, c, seed)) \
            and np.array_equal(centers, legacy_centers(bits, c, seed)):
        rule = legacy_centers
    extra = rule(bits, n_classes, seed)[:, c:]
    return np.concatenate([centers, extra], axis=1)


def distinct_rows(centers: Int8Array) -> int:
    """How many distinct bit rows (bits across classes) the centers have."""
    return int(np.unique(np.asarray(centers), axis=0).shape[0])
