"""The linear baseline of cross-modal hashing: ridge regression of each modality onto the
Hadamard centers of its items' classes, codes = sgn(X W).

A reference for the deep ECMH path (issue 14): if a closed-form linear map from the features
onto fixed class centers already retrieves well, the deep networks must at least match it.
Per modality, features are standardised on the training items, a bias column is appended and
W = (ZᵀZ + λ I')⁻¹ ZᵀT is solved in closed form ((d+1) × (d+1) normal equations, the bias not
penalised), T the ±1 target codes. NumPy only; nothing here knows of the protocol that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hashstream.solver.hadamard import hadamard_centers

Array = np.ndarray[Any, Any]
Int8Array = np.ndarray[Any, np.dtype[np.int8]]
F64Array = np.ndarray[Any, np.dtype[np.float64]]

DEFAULT_MAX_VOCABULARY = 2048
"""Token text becomes counts over at most this many words (the most frequent in training), so
the normal equations stay ≤ 2049² doubles (about 34 MB) whatever the vocabulary."""


def sign_codes(values: Array) -> Int8Array:
    """±1 int8 codes of real values, sign(0) = +1 (the repository's convention)."""
    return np.where(np.asarray(values) < 0, -1, 1).astype(np.int8)


def center_targets(labels: Array, bits: int, seed: int = 0) -> Int8Array:
    """Target codes (n × bits, ±1): the Hadamard center of each item's class; a multi-label
    item takes the sign of the sum of its classes' centers (ties and unlabelled items → +1)."""
    y = np.asarray(labels)
    if y.ndim != 2:
        raise ValueError(f"labels must be n × c, got shape {y.shape}")
    centers = hadamard_centers(bits, y.shape[1], seed).astype(np.int64)  # bits × c
    return sign_codes(y.astype(np.int64) @ centers.T)


def token_vocabulary(tokens: Array, max_words: int = DEFAULT_MAX_VOCABULARY) -> Array:
    """The word ids kept as count features: the ``max_words`` most frequent non-negative ids
    in ``tokens`` (ties by the smaller id), sorted ascending."""
    ids = np.asarray(tokens).ravel()
    ids = ids[ids >= 0].astype(np.int64)
    if ids.size == 0 or max_words < 1:
        return np.zeros(0, dtype=np.int64)
    counts = np.bincount(ids)
    present = np.flatnonzero(counts)
    order = np.lexsort((present, -counts[present]))  # most frequent first, then smaller id
    return np.sort(present[order[:max_words]])


def token_counts(tokens: Array, vocabulary: Array) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Bag-of-words counts (n × len(vocabulary), float32) of padded word-id rows; ids outside
    ``vocabulary`` (and padding, any negative id) are dropped."""
    t = np.asarray(tokens, dtype=np.int64)
    vocab = np.asarray(vocabulary, dtype=np.int64)
    out = np.zeros((t.shape[0], vocab.size), dtype=np.float32)
    if vocab.size == 0 or t.size == 0:
        return out
    pos = np.searchsorted(vocab, t)
    pos_c = np.minimum(pos, vocab.size - 1)
    keep = (t >= 0) & (vocab[pos_c] == t)
    rows = np.broadcast_to(np.arange(t.shape[0])[:, None], t.shape)
    np.add.at(out, (rows[keep], pos_c[keep]), 1.0)
    return out


@dataclass(frozen=True)
class LinearHash:
    """One modality's fitted map: codes = sgn(((x − mean) / scale) W + b)."""

    mean: F64Array  # d
    scale: F64Array  # d, 1 where a feature is constant on the training items
    weights: F64Array  # d × bits
    bias: F64Array  # bits
    ridge: float  # the λ used

    def project(self, x: Array) -> F64Array:
        """The real-valued outputs (n × bits) before the sign."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        out: F64Array = z @ self.weights + self.bias
        return out

    def encode(self, x: Array) -> Int8Array:
        """±1 int8 codes (n × bits), sign(0) = +1."""
        return sign_codes(self.project(x))


def fit_linear_hash(x: Array, targets: Array, ridge: float | None = None,
                    ridge_scale: float = 1.0) -> LinearHash:
    """Ridge regression of standardised ``x`` (n × d) plus a bias onto ``targets`` (n × bits).

    λ is ``ridge`` when given, else ``ridge_scale`` × trace(ZᵀZ)/d over the standardised
    features (= ``ridge_scale`` × n unless a feature is constant): scale-free, so the default
    suits any feature dimension. The bias is not penalised."""
    xf = np.asarray(x, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if xf.ndim != 2 or t.ndim != 2 or xf.shape[0] != t.shape[0]:
        raise ValueError(f"x {xf.shape} and targets {t.shape} must be 2-D with one row per item")
    n, d = xf.shape
    if n == 0:
        raise ValueError("no training items")
    if not np.isfinite(xf).all():
        raise ValueError("features contain NaN or Inf")
    mean = xf.mean(axis=0)
    std = xf.std(axis=0)
    scale = np.where(std > 1e-12, std, 1.0)
    z = (xf - mean) / scale
    gram = np.zeros((d + 1, d + 1))
    gram[:d, :d] = z.T @ z
    col_sums = z.sum(axis=0)  # ≈ 0 after centering; kept exact for the bias coupling
    gram[:d, d] = gram[d, :d] = col_sums
    gram[d, d] = n
    if ridge is None:
        ridge = ridge_scale * float(np.trace(gram[:d, :d])) / max(d, 1)
    if ridge < 0 or not np.isfinite(ridge):
        raise ValueError(f"ridge must be finite and ≥ 0, got {ridge}")
    penalty = np.full(d + 1, ridge)
    penalty[d] = 0.0
    rhs = np.empty((d + 1, t.shape[1]))
    rhs[:d] = z.T @ t
    rhs[d] = t.sum(axis=0)
    lhs = gram + np.diag(penalty)
    try:
        w = np.linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:  # λ = 0 with collinear features: least-norm solution
        w = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    return LinearHash(mean, scale, w[:d], w[d], float(ridge))
