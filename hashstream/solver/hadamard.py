"""Hadamard hash centers (SDOH-HC's fixed centers C) and their class-growth rule.

Class j gets column j of Sylvester's Hadamard matrix H_r while j < r, then the negated column
j - r while j < 2r, then a random ±1 column drawn from (seed, j) as CSQ does. Growth is
therefore deterministic: the centers of c classes never depend on how c was reached.
"""

from __future__ import annotations

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


def _base_matrix(bits: int) -> Int8Array:
    """First ``bits`` rows of the Sylvester matrix of the next power of two ≥ ``bits``."""
    order = 1 << max(0, (bits - 1).bit_length())
    return sylvester(order)[:bits, :bits]


def center_column(bits: int, j: int, seed: int) -> Int8Array:
    """The fixed center of class ``j`` (length ``bits``, ±1)."""
    if j < bits:
        return _base_matrix(bits)[:, j].copy()
    if j < 2 * bits:
        return -_base_matrix(bits)[:, j - bits]
    rng = np.random.default_rng([seed, j])
    return np.where(rng.random(bits) < 0.5, -1, 1).astype(np.int8)


def hadamard_centers(bits: int, n_classes: int, seed: int = 0) -> Int8Array:
    """C: the ``bits × n_classes`` matrix of fixed hash centers, one column per class."""
    if bits < 1:
        raise ValueError("bits must be positive")
    out = np.empty((bits, n_classes), dtype=np.int8)
    base = _base_matrix(bits)
    for j in range(n_classes):
        if j < bits:
            out[:, j] = base[:, j]
        elif j < 2 * bits:
            out[:, j] = -base[:, j - bits]
        else:
            out[:, j] = center_column(bits, j, seed)
    return out


def grow_centers(centers: Int8Array, n_classes: int, seed: int = 0) -> Int8Array:
    """Extend ``centers`` (bits × c) to ``n_classes`` columns by the growth rule."""
    bits, c = centers.shape
    if n_classes <= c:
        return centers
    extra = hadamard_centers(bits, n_classes, seed)[:, c:]
    return np.concatenate([centers, extra], axis=1)
