"""Feature maps φ for SDOH-HC: identity (ℓ2-normalised, plus bias) and RBF on anchors.

Parameters are plain arrays fitted on the first chunk, so encoding a query never depends on the
other queries of its batch (the authors' code recomputes σ and the kernel mean per batch;
SOLVER.md, "Mistakes to avoid" 1). With anchor growth the RBF anchors are append-only: a later
chunk whose points lie beyond the novelty radius of every anchor adds anchors drawn from those
points (k-means++ style), up to the anchor budget. σ, the radius, the existing anchors and
their kernel means never change, so every column φ had stays bit-identical. A grown anchor's
kernel mean is 0: the chunk that brings it is the novel region, not a sample of the stream,
so its mean there would not centre the column either, and with the bias column centring only
shifts what the ridge shrinks; the round imputes the past's sums for the new columns
(``sdoh_hc/round.py::grow_anchors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hashstream.solver.backend import Backend

FeatureMapKind = Literal["identity", "rbf"]


@dataclass(frozen=True)
class FeatureMapParams:
    """Parameters of φ. For ``identity`` the arrays are empty. ``radius`` is the novelty
    radius of anchor growth (0: the anchors never grow, as in states stored before growth)."""

    kind: FeatureMapKind
    anchors: np.ndarray[Any, Any]  # m × d (rbf) or 0 × d
    sigma: float
    mean: np.ndarray[Any, Any]  # m (rbf kernel mean, subtracted before the bias column)
    radius: float = 0.0

    def output_dim(self, input_dim: int) -> int:
        """m: the width of φ(x), bias column included."""
        if self.kind == "identity":
            return input_dim + 1
        return int(self.anchors.shape[0]) + 1

    def first(self, m: int) -> FeatureMapParams:
        """φ as it was with its first ``m`` anchors (append-only growth: the anchors and P of
        one version are the first P-rows − 1 anchors of any later state)."""
        if self.kind != "rbf" or m == self.anchors.shape[0]:
            return self
        if not 0 <= m < self.anchors.shape[0]:
            raise ValueError(f"the feature map has {self.anchors.shape[0]} anchors, "
                             f"{m} were asked for")
        return FeatureMapParams("rbf", self.anchors[:m], self.sigma, self.mean[:m], self.radius)


def l2_normalize_rows(x: Any, xp: Any) -> Any:
    """Rows divided by their ℓ2 norm; a zero row stays zero."""
    norms = xp.sqrt(xp.einsum("ij,ij->i", x, x))[:, None]
    return x / xp.where(norms > 0, norms, 1)


def _rbf_columns(buf: Any, x: Any, anchors: Any, sigma: float, xp: Any,
                 x_sq: Any = None) -> None:
    """Write exp(−‖x − a‖² / 2σ²) for every row and anchor into the first m columns of
    ``buf`` (n × (m + 1), C-contiguous; ``x_sq``: the rows' ‖x‖² when at hand).

    The GEMM writes those columns (a strided view; NumPy's BLAS takes it as it is, CuPy gets a
    copy); ‖x‖² − 2⟨x, a⟩ + ‖a‖², the clamp, the scale and the exp then run over the whole
    buffer as one contiguous array (each such pass is 1.2–4× slower over the strided n × m
    view), the last column from 0 with ‖a‖² := 0, so it ends finite and the caller overwrites
    it (Φ's bias column)."""
    m = anchors.shape[0]
    body = buf[:, :m]
    buf[:, m] = 0
    if xp is np:
        xp.matmul(x, anchors.T, out=body)
    else:
        body[...] = x @ anchors.T
    buf *= -2
    buf += (xp.einsum("ij,ij->i", x, x) if x_sq is None else x_sq)[:, None]
    a_sq = xp.zeros(m + 1, dtype=buf.dtype)
    a_sq[:m] = xp.einsum("ij,ij->i", anchors, anchors)
    buf += a_sq[None, :]
    xp.maximum(buf, 0, out=buf)
    buf *= -1.0 / (2 * sigma * sigma)
    xp.exp(buf, out=buf)


def _with_zero(a: Any, xp: Any, dtype: Any) -> Any:
    """``a`` with a 0 appended (a kernel mean for Φ's bias column)."""
    out = xp.zeros(a.shape[0] + 1, dtype=dtype)
    out[:-1] = xp.asarray(a, dtype=dtype)
    return out


def fit_feature_map(kind: FeatureMapKind, first_chunk: np.ndarray[Any, Any], n_anchors: int,
                    seed: int, coverage: float | None = None) -> FeatureMapParams:
    """Fit φ on the first chunk: ``n_anchors`` anchors drawn from it (at most all its points),
    σ = mean point-to-anchor distance. ``coverage`` q (growth on) also sets the novelty
    radius: the q-quantile of the chunk's distances to their nearest other anchor, so a chunk
    from the same distribution has about 1 − q of its points beyond it."""
    x = np.asarray(first_chunk, dtype=np.float64)
    d = x.shape[1]
    if kind == "identity":
        return FeatureMapParams("identity", np.zeros((0, d)), 0.0, np.zeros(0))
    if kind != "rbf":
        raise ValueError(f"feature map must be 'identity' or 'rbf', not {kind!r}")
    rng = np.random.default_rng([seed, 7919])
    m = min(n_anchors, x.shape[0])
    chosen = np.sort(rng.choice(x.shape[0], size=m, replace=False))
    anchors = x[chosen]
    sq = np.maximum((x * x).sum(1)[:, None] - 2 * x @ anchors.T
                    + (anchors * anchors).sum(1)[None, :], 0)
    sigma = float(np.sqrt(sq).mean())
    if sigma <= 0:
        sigma = 1.0
    radius = 0.0
    if coverage is not None and m > 1:
        own = sq[chosen, np.arange(m)]
        sq[chosen, np.arange(m)] = np.inf  # an anchor's distance to itself does not count
        radius = float(np.quantile(np.sqrt(sq.min(axis=1)), coverage))
        sq[chosen, np.arange(m)] = own
    # The kernel's mean column from the distances at hand, in place (it took a second
    # n × m × d GEMM before: a third of a first round).
    sq *= -1.0 / (2 * sigma * sigma)
    mean = np.exp(sq, out=sq).mean(axis=0)
    return FeatureMapParams("rbf", anchors, sigma, mean, radius)


def novel_anchors(x: np.ndarray[Any, Any], nearest_sq: np.ndarray[Any, Any], radius: float,
                  coverage: float, limit: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """Anchors to add for a chunk ``x`` (host) whose squared distances to the nearest anchor
    are ``nearest_sq``: k-means++ draws (probability ∝ squared distance) among the points
    beyond ``radius``, each draw updating the distances, until at most 1 − ``coverage`` of
    the chunk lies beyond the radius or ``limit`` anchors were drawn. Returns k × d."""
    n = x.shape[0]
    allowed = int(np.floor((1.0 - coverage) * n))
    r2 = radius * radius
    dist = np.asarray(nearest_sq, dtype=np.float64)
    # Only points beyond the radius are drawn or updated (distances only fall, so a point
    # within it stays within): each draw costs O(points still beyond · d), not O(n · d).
    live = np.flatnonzero(dist > r2)
    dist = dist[live]
    picked: list[int] = []
    while len(picked) < limit and live.size > allowed:
        total = dist.sum()
        j = int(rng.choice(live.size, p=dist / total)) if np.isfinite(total) else 0
        picked.append(int(live[j]))
        diff = x[live] - x[live[j]]
        np.minimum(dist, np.einsum("ij,ij->i", diff, diff), out=dist)
        still = dist > r2
        live, dist = live[still], dist[still]
    return x[np.asarray(picked, dtype=np.int64)].astype(np.float64).reshape(len(picked),
                                                                             x.shape[1])


def map_and_grow(params: FeatureMapParams, x: Any, backend: Backend, limit: int,
                 coverage: float, rng: np.random.Generator
                 ) -> tuple[FeatureMapParams, Any]:
    """(φ after growth, Φ = φ(X) under it) for a chunk: up to ``limit`` new anchors from the
    chunk's points beyond the novelty radius (:func:`novel_anchors`), appended after the old
    ones (before the bias column), with kernel mean 0. The old columns of Φ are exactly those
    :func:`apply_feature_map` gives; the chunk's kernel against the old anchors is computed
    once and also yields each point's nearest-anchor distance."""
    if params.kind != "rbf" or limit <= 0 or params.radius <= 0:
        return params, apply_feature_map(params, x, backend)
    xp = backend.xp
    x = backend.asarray(x, dtype=backend.dtype)
    n, m = x.shape[0], params.anchors.shape[0]
    anchors = backend.asarray(params.anchors, dtype=backend.dtype)
    phi = xp.empty((n, m + 1), dtype=backend.dtype)  # Φ as it is when no anchor is added
    x_sq = xp.einsum("ij,ij->i", x, x)
    _rbf_columns(phi, x, anchors, params.sigma, xp, x_sq)
    kmax = backend.to_numpy(phi[:, :m].max(axis=1)).astype(np.float64)
    tiny = float(np.finfo(np.dtype(str(phi.dtype))).tiny)
    nearest_sq = -2.0 * params.sigma ** 2 * np.log(np.maximum(kmax, tiny))
    x_host = np.asarray(backend.to_numpy(x), dtype=np.float64)  # no copy on NumPy float64
    new = novel_anchors(x_host, nearest_sq, params.radius, coverage, limit, rng)
    k = new.shape[0]
    phi -= _with_zero(params.mean, xp, backend.dtype)[None, :]
    phi[:, -1] = 1
    if k == 0:
        return params, phi
    grown = FeatureMapParams(
        "rbf", np.concatenate([np.asarray(params.anchors, dtype=np.float64), new]),
        params.sigma, np.concatenate([np.asarray(params.mean, dtype=np.float64),
                                      np.zeros(k)]), params.radius)
    fresh = xp.empty((n, k + 1), dtype=backend.dtype)
    _rbf_columns(fresh, x, backend.asarray(new, dtype=backend.dtype), params.sigma, xp, x_sq)
    wide = xp.empty((n, m + k + 1), dtype=backend.dtype)
    wide[:, :m] = phi[:, :m]
    wide[:, m:m + k] = fresh[:, :k]
    wide[:, -1] = 1
    return grown, wide


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
        _rbf_columns(phi, x, anchors, params.sigma, xp)
        phi -= _with_zero(params.mean, xp, backend.dtype)[None, :]
    phi[:, -1] = 1
    return phi
