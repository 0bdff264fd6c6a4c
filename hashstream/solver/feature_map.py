"""Feature maps φ for SDOH-HC: identity (ℓ2-normalised, plus bias) and RBF on anchors.

Parameters are plain arrays fitted once on the first chunk and then frozen, so encoding a query
never depends on the other queries of its batch (the authors' code recomputes σ and the kernel
mean per batch; SOLVER.md, "Mistakes to avoid" 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hashstream.solver.backend import Backend

FeatureMapKind = Literal["identity", "rbf"]


@dataclass(frozen=True)
class FeatureMapParams:
    """Frozen parameters of φ. For ``identity`` the arrays are empty."""

    kind: FeatureMapKind
    anchors: np.ndarray[Any, Any]  # m × d (rbf) or 0 × d
    sigma: float
    mean: np.ndarray[Any, Any]  # m (rbf kernel mean, subtracted before the bias column)

    def output_dim(self, input_dim: int) -> int:
        """m: the width of φ(x), bias column included."""
        if self.kind == "identity":
            return input_dim + 1
        return int(self.anchors.shape[0]) + 1


def l2_normalize_rows(x: Any, xp: Any) -> Any:
    """Rows divided by their ℓ2 norm; a zero row stays zero."""
    norms = xp.sqrt(xp.einsum("ij,ij->i", x, x))[:, None]
    return x / xp.where(norms > 0, norms, 1)


def _rbf_raw(x: Any, anchors: Any, sigma: float, xp: Any, out: Any = None) -> Any:
    """exp(−‖x − a‖² / 2σ²) for every row and anchor, in place in one n × m buffer."""
    k = xp.matmul(x, anchors.T, out=out)  # ‖x‖² − 2⟨x, a⟩ + ‖a‖², built in place
    k *= -2
    k += xp.einsum("ij,ij->i", x, x)[:, None]
    k += xp.einsum("ij,ij->i", anchors, anchors)[None, :]
    xp.maximum(k, 0, out=k)
    k *= -1.0 / (2 * sigma * sigma)
    xp.exp(k, out=k)
    return k


def fit_feature_map(kind: FeatureMapKind, first_chunk: np.ndarray[Any, Any], n_anchors: int,
                    seed: int) -> FeatureMapParams:
    """Fit φ on the first chunk: anchors drawn from it, σ = mean point-to-anchor distance."""
    x = np.asarray(first_chunk, dtype=np.float64)
    d = x.shape[1]
    if kind == "identity":
        return FeatureMapParams("identity", np.zeros((0, d)), 0.0, np.zeros(0))
    if kind != "rbf":
        raise ValueError(f"feature map must be 'identity' or 'rbf', not {kind!r}")
    rng = np.random.default_rng([seed, 7919])
    m = min(n_anchors, x.shape[0])
    anchors = x[np.sort(rng.choice(x.shape[0], size=m, replace=False))]
    sq = (x * x).sum(1)[:, None] - 2 * x @ anchors.T + (anchors * anchors).sum(1)[None, :]
    sigma = float(np.sqrt(np.maximum(sq, 0)).mean())
    if sigma <= 0:
        sigma = 1.0
    mean = _rbf_raw(x, anchors, sigma, np).mean(axis=0)
    return FeatureMapParams("rbf", anchors, sigma, mean)


def apply_feature_map(params: FeatureMapParams, x: Any, backend: Backend) -> Any:
    """Φ = φ(X): n × m on the backend, in the backend's dtype, written in one buffer."""
    xp = backend.xp
    x = backend.asarray(x, dtype=backend.dtype)
    n = x.shape[0]
    if params.kind == "identity":
        phi = xp.empty((n, x.shape[1] + 1), dtype=backend.dtype)
        norms = xp.sqrt(xp.einsum("ij,ij->i", x, x))
        xp.divide(x, xp.where(norms > 0, norms, 1)[:, None], out=phi[:, :-1])
    else:
        anchors = backend.asarray(params.anchors, dtype=backend.dtype)
        phi = xp.empty((n, anchors.shape[0] + 1), dtype=backend.dtype)
        body = _rbf_raw(x, anchors, params.sigma, xp)
        body -= backend.asarray(params.mean, dtype=backend.dtype)
        phi[:, :-1] = body
    phi[:, -1] = 1
    return phi
