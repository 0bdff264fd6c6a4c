"""The SDOH-HC round: learn codes for one chunk and the next model state (paper Eq. 7).

``learn_chunk(state, X, L)`` is pure: state in, codes and new state out, so any worker can run
the next round from persisted state. The updates are the ones worked out in SOLVER.md: a
closed-form V-step, discrete cyclic coordinate descent (DCC) for B and Y, accumulators H1, H2,
G, F, and P = (G + λI)⁻¹F. The old data enter only through H1 and H2, so a round costs
O(n) in the chunk size and nothing in the size of the past.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.dcc import dcc
from hashstream.solver.feature_map import (
    FeatureMapParams,
    apply_feature_map,
    fit_feature_map,
    l2_normalize_rows,
    map_and_grow,
)
from hashstream.solver.hadamard import grow_centers, hadamard_centers
from hashstream.solver.query_net import QueryNet, query_net_output
from hashstream.solver.sdoh_hc.condensation import CondenseConfig, condense_exemplars
from hashstream.solver.sdoh_hc.exemplars import (
    select_class_balanced,
    select_exemplars,
    select_random,
)
from hashstream.solver.sdoh_hc.query_encoder import fit_query_net
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import (
    SDOHState,
    empty_label_gram,
    resize_label_gram,
)
from hashstream.solver.sdoh_hc.term_weights import term_weights

# Sqn is formed in blocks of this many exemplars, so memory stays O(n · block).
_SQN_BLOCK = 4096
# Above this many (new label set, exemplar label set) pairs, Sqn is formed in blocks instead.
_MAX_GROUP_PAIRS = 4096


class InputError(ValueError):
    """A chunk the solver cannot learn from (shape, NaN/Inf, empty); the message names it."""


@dataclass
class RoundResult:
    """What a round returns: the chunk's codes (n × r, ±1 int8, host), the new state, the
    value of each term of Eq. 7 at the end, seconds per step, and optionally the objective
    after every V, B and Y step (``trace``)."""

    codes: np.ndarray[Any, Any]
    state: SDOHState
    loss: dict[str, float]
    seconds: dict[str, float]
    trace: list[tuple[str, float]] = field(default_factory=list)


def sign(x: Any, xp: Any) -> Any:
    """sgn with sgn(0) = +1, so codes are deterministic."""
    return xp.where(x >= 0, 1, -1).astype(x.dtype)


def check_chunk(features: Any, labels: ClassLists, dim: int | None = None,
                bits: int | None = None) -> None:
    """Raise :class:`InputError` naming the field when a chunk is malformed.

    A round needs more rows than bits: V (n × r) must satisfy VᵀV = nI with Vᵀ1 = 0.
    Labels are :class:`ClassLists` (valid by construction: class numbers in range, no NaN)."""
    if not isinstance(labels, ClassLists):
        raise InputError(f"labels must be ClassLists (ClassLists.from_dense converts an n × c "
                         f"0/1 matrix), got {type(labels).__name__}")
    if features.ndim != 2:
        raise InputError(f"features must be a 2-D array (n × d), got {features.ndim}-D")
    if features.shape[0] == 0:
        raise InputError("features: the chunk is empty")
    if labels.n != features.shape[0]:
        raise InputError(f"labels has {labels.n} rows but features has "
                         f"{features.shape[0]}")
    if bits is not None and features.shape[0] <= bits:
        raise InputError(f"features: a chunk needs more rows than bits "
                         f"({features.shape[0]} rows, {bits} bits)")
    if dim is not None and features.shape[1] != dim:
        raise InputError(f"features has dimension {features.shape[1]}, the model expects {dim}")
    if not np.isfinite(np.asarray(features)).all():
        raise InputError("features contains NaN or Inf")


def initial_state(settings: SDOHSettings, first_chunk: np.ndarray[Any, Any],
                  n_classes: int) -> SDOHState:
    """The state before round 1: feature map fitted on the first chunk, Ỹ = Cᵀ, zero sums."""
    r = settings.bits
    fm = fit_feature_map(settings.feature_map, first_chunk, settings.first_anchors,
                         settings.seed, settings.anchor_coverage if settings.grows_anchors
                         else None)
    d = int(first_chunk.shape[1])
    m = fm.output_dim(d)
    centers = hadamard_centers(r, n_classes, settings.seed)
    return SDOHState(
        round=0, n_seen=0, dim=d, centers=centers, teacher=centers.T.copy(),
        h1=np.zeros((n_classes, r)), h2=np.zeros((r, r)), g=np.zeros((m, m)),
        f=np.zeros((m, r)), label_gram=empty_label_gram(n_classes),
        label_sum=np.zeros(n_classes), projection=np.zeros((m, r)), feature_map=fm,
        exemplar_features=np.zeros((0, d), dtype=np.float32),
        exemplar_labels=ClassLists.empty(n_classes),
        exemplar_codes=np.zeros((0, r), dtype=np.int8),
    )


def grow_classes(state: SDOHState, n_classes: int, seed: int, backend: Backend) -> SDOHState:
    """Grow c to ``n_classes``: new Hadamard columns, teacher rows = their transpose, zero rows
    in H1 and the label statistics; the exemplar memory's class lists widen (no copy)."""
    c = state.n_classes
    if n_classes <= c:
        return state
    xp = backend.xp
    extra = n_classes - c
    centers = grow_centers(backend.to_numpy(state.centers), n_classes, seed)
    new_rows = backend.asarray(centers[:, c:].T.copy())
    r = state.bits

    def pad_rows(a: Any, width: int) -> Any:
        a = backend.asarray(a)
        return xp.concatenate([a, xp.zeros((extra, width), dtype=a.dtype)], axis=0)

    return SDOHState(
        round=state.round, n_seen=state.n_seen, dim=state.dim, centers=backend.asarray(centers),
        teacher=xp.concatenate([backend.asarray(state.teacher), new_rows], axis=0),
        h1=pad_rows(state.h1, r), h2=state.h2, g=state.g, f=state.f,
        label_gram=resize_label_gram(state.label_gram, n_classes),
        label_sum=xp.concatenate([backend.asarray(state.label_sum), xp.zeros(extra)]),
        projection=state.projection, feature_map=state.feature_map,
        exemplar_features=state.exemplar_features,
        exemplar_labels=state.exemplar_labels.widen(n_classes),
        exemplar_codes=state.exemplar_codes, query_net=state.query_net,
    )


def grow_anchors(state: SDOHState, features: Any, settings: SDOHSettings, backend: Backend,
                 round_: int) -> tuple[SDOHState, Any]:
    """(state with φ's anchors grown for this chunk, Φ of the chunk under them).

    New anchors (``feature_map.map_and_grow``) go after the old ones, before the bias column,
    so P's rows stay anchors + bias; P's new rows are 0 until the round solves it, and every
    old entry of G, F and P stays bit-identical. The past items' values in the new columns
    are gone, so G's and F's new rows are imputed (:func:`_impute_new_columns`); zeros would
    claim the new anchors' kernel is 0 on all old data, which the wide kernel (σ = mean
    distance) never is, and P's new rows would fit the new chunk alone. Without growth (or
    once ``n_anchors`` are held) this is ``apply_feature_map``."""
    fm = state.feature_map
    m = int(fm.anchors.shape[0])
    limit = settings.n_anchors - m if settings.grows_anchors and round_ > 1 else 0
    rng = np.random.default_rng([settings.seed, round_, 104729])
    grown, phi = map_and_grow(fm, features, backend, limit, settings.anchor_coverage, rng)
    k = int(grown.anchors.shape[0]) - m
    if k == 0:
        return state, phi
    xp, dt = backend.xp, backend.dtype
    g_old, f_old = backend.asarray(state.g, dtype=dt), backend.asarray(state.f, dtype=dt)
    # the old columns keep their places; the bias column moves from m to m + k (slices, no
    # index arrays)
    g = xp.zeros((m + k + 1, m + k + 1), dtype=dt)
    g[:m, :m] = g_old[:m, :m]
    g[:m, -1] = g_old[:m, -1]
    g[-1, :m] = g_old[-1, :m]
    g[-1, -1] = g_old[-1, -1]
    f = _spread_rows(f_old, m, k, xp)
    projection = _spread_rows(backend.asarray(state.projection, dtype=dt), m, k, xp)
    projection[m:m + k] = 0
    if int(state.exemplar_codes.shape[0]):
        g_on, g_nn, f_n = _impute_new_columns(
            g_old, f_old, apply_feature_map(grown, state.exemplar_features, backend),
            backend.asarray(state.exemplar_codes, dtype=dt), m, k, state.n_seen, settings.lam,
            backend)
        g[:m, m:m + k] = g_on[:m]
        g[-1, m:m + k] = g_on[-1]
        g[m:m + k, :m] = g_on[:m].T
        g[m:m + k, -1] = g_on[-1]
        g[m:m + k, m:m + k] = g_nn
        f[m:m + k] = f_n
    else:
        f[m:m + k] = 0
    return replace(state, feature_map=grown, g=g, f=f, projection=projection), phi


def _spread_rows(a: Any, m: int, k: int, xp: Any) -> Any:
    """(m + 1)-row ``a`` with k rows (left uninitialised) opened before its last row."""
    out = xp.empty((m + k + 1, a.shape[1]), dtype=a.dtype)
    out[:m] = a[:m]
    out[-1] = a[-1]
    return out


def _impute_new_columns(g_old: Any, f_old: Any, phi_ex: Any, codes_ex: Any, m: int, k: int,
                        n_seen: int, lam: float, backend: Backend) -> tuple[Any, Any, Any]:
    """G's new blocks and F's new rows for the past, from the exemplar memory (past items).

    On the exemplars (``phi_ex``: their Φ under the grown map, anchors m to m + k new), the
    new columns φ_n are regressed on the old ones φ_o (bias included, last, as in G_oo):
    φ_n ≈ φ_o W + e. The past then gets G_on = G_oo W, G_nn = WᵀG_oo W + s·ΣeᵀE and
    F_n = WᵀF_o + s·ΣeᵀB (s = past items per exemplar): exact where φ_new is a linear
    function of φ_old, the residual's share estimated from the sample. The completed G is
    [I W]ᵀG_oo[I W] + diag(0, s·ΣeᵀE), positive semi-definite whatever W is.

    One Gram of all of Φ_ex (syrk) holds φ_oᵀφ_o and φ_oᵀφ_n, and e = Φ_ex Ŵ with Ŵ = −W on
    the old rows and I on the new ones: no column of Φ_ex is gathered."""
    xp = backend.xp
    full = phi_ex.T @ phi_ex
    gram = _old_block(full, m, k, xp)
    gram.ravel()[::m + 2] += lam  # + λI without an identity
    cross = xp.concatenate([full[:m, m:m + k], full[-1:, m:m + k]])  # φ_oᵀφ_n
    w = backend.cho_solve(gram, cross)  # (m + 1) × k
    w_hat = xp.zeros((m + k + 1, k), dtype=w.dtype)
    w_hat[:m] = -w[:m]
    w_hat[-1] = -w[-1]
    w_hat[m:m + k] = xp.eye(k, dtype=w.dtype)
    resid = phi_ex @ w_hat  # φ_n − φ_o W
    s = n_seen / phi_ex.shape[0]
    g_on = g_old @ w
    g_nn = w.T @ g_on + s * (resid.T @ resid)
    f_n = w.T @ f_old + s * (resid.T @ codes_ex)
    return g_on, (g_nn + g_nn.T) / 2, f_n


def _old_block(a: Any, m: int, k: int, xp: Any) -> Any:
    """The (m + 1) × (m + 1) block of the old columns (the first m and the last) of a square
    (m + k + 1) matrix, by slices."""
    out = xp.empty((m + 1, m + 1), dtype=a.dtype)
    out[:m, :m] = a[:m, :m]
    out[:m, m] = a[:m, -1]
    out[m, :m] = a[-1, :m]
    out[m, m] = a[-1, -1]
    return out


def encode(state: SDOHState, features: Any, backend: Backend) -> np.ndarray[Any, Any]:
    """Codes of new items under the current model: sgn(φ(X) P [+ g(X)]), ±1 int8, n × r
    (host)."""
    return encode_with(state.feature_map, state.projection, features, backend, state.query_net)


def project(state: SDOHState, features: Any, backend: Backend) -> np.ndarray[Any, Any]:
    """φ(X) P [+ g(X)] before the sign (host, n × r, the backend's dtype): the real-valued query
    whose sign is its code; its inner product with a database code orders the items at one
    distance."""
    return project_with(state.feature_map, state.projection, features, backend,
                        state.query_net)


def project_with(feature_map: FeatureMapParams, projection: Any, features: Any,
                 backend: Backend, query_net: QueryNet | None = None) -> np.ndarray[Any, Any]:
    """:func:`project` from φ's parameters and P alone (what a search replica holds)."""
    return np.asarray(backend.to_numpy(_projection_of(feature_map, projection, features,
                                                      backend, query_net)))


def encode_with(feature_map: FeatureMapParams, projection: Any, features: Any,
                backend: Backend, query_net: QueryNet | None = None) -> np.ndarray[Any, Any]:
    """sgn(φ(X) P) from φ's parameters and P alone (what a search replica holds), plus the
    query network's g(X) inside the sign when there is one."""
    z = _projection_of(feature_map, projection, features, backend, query_net)
    return backend.to_numpy(sign(z, backend.xp)).astype(np.int8)


def _projection_of(feature_map: FeatureMapParams, projection: Any, features: Any,
                   backend: Backend, query_net: QueryNet | None) -> Any:
    """φ(X) P, plus g(X) when there is a query network (on the backend)."""
    phi = apply_feature_map(feature_map, features, backend)
    z = phi @ backend.asarray(projection, dtype=backend.dtype)
    if query_net is not None:
        z += query_net_output(query_net, features, backend)
    return z


@dataclass
class _Terms:
    """Everything of Eq. 7 that is fixed during one round's alternating updates."""

    backend: Backend
    r: int
    n: int
    # Multipliers of the terms for this round (``term_weights``; 0 for a term that is off).
    beta: float
    theta_distill: float
    theta_hadamard: float
    eta: float
    l_hat: Any  # L̂, n × c sparse (SciPy CSR on NumPy, cupyx CSR on CuPy)
    l_hat_t: Any  # L̂ᵀ, c × n sparse
    l_hat_sq: float  # ‖L̂‖²
    old_weight: float  # old-term multiplier · s, applied to ⟨B, L̂H1⟩ (0 when the term is off)
    old_quad: float  # old-term multiplier, applied to ⟨BᵀB, H2⟩
    l_h1: Any  # L̂ H1, n × r
    h2: Any
    old_const: float  # old-term multiplier · r² ‖S_no‖²
    ex_weight: float  # the exemplar term's multiplier (0 when it is off)
    ex_lin: Any  # E = Sqnᵀ B̃q, n × r (zeros when the term is off)
    ex_gram: Any  # B̃qᵀB̃q, r × r
    ex_const: float  # r² ‖Sqn‖²
    teacher: Any  # Ỹ, c × r
    centers_t: Any  # Cᵀ, c × r

    @property
    def xp(self) -> Any:
        return self.backend.xp

    def objective(self, b: Any, v: Any, y: Any) -> dict[str, float]:
        """Each term of Eq. 7 at (B, V, Y); their sum is the objective J."""
        xp, r = self.xp, self.r
        btb = b.T @ b
        out = {
            "old": self.old_const - 2 * r * self.old_weight * float(xp.sum(b * self.l_h1))
            + self.old_quad * float(xp.sum(btb * self.h2)),
            "exemplar": self.ex_weight * (self.ex_const - 2 * r * float(xp.sum(self.ex_lin * v))
                                          + float(xp.sum(self.ex_gram * (v.T @ v)))),
            "quantization": self.beta * float(xp.sum((b - v) ** 2)),
            "distillation": 0.0,
            "hadamard": self.theta_hadamard * float(xp.sum((self.centers_t - y) ** 2)),
            "center": self.eta * (r * r * self.l_hat_sq
                                  - 2 * r * float(xp.sum((self.l_hat_t @ b) * y))
                                  + float(xp.sum(btb * (y.T @ y)))),
        }
        if self.theta_distill:
            # ‖rK − ỸYᵀ‖² = r²c² − 2r⟨KỸ, Y⟩ + ⟨ỸᵀỸ, YᵀY⟩ (K = 2I − 11ᵀ, so ‖K‖² = c²):
            # r × r products only, never the c × c matrices.
            c, t = y.shape[0], self.teacher
            k_t = 2 * t - t.sum(axis=0, keepdims=True)
            out["distillation"] = self.theta_distill * (
                float(r * r) * c * c - 2 * r * float(xp.sum(k_t * y))
                + float(xp.sum((t.T @ t) * (y.T @ y))))
        out["total"] = sum(out.values())
        return out

    def v_step(self, b: Any, rng: np.random.Generator) -> Any:
        """max tr(VᵀZ) s.t. VᵀV = nI, Vᵀ1 = 0; Z = r Sqnᵀ B̃q + β B (closed form)."""
        return orthogonal_balanced(self.ex_weight * self.r * self.ex_lin + self.beta * b, rng,
                                   self.backend)

    def b_step(self, b: Any, v: Any, y: Any, sweeps: int) -> Any:
        """DCC on min tr(B A Bᵀ) − 2 tr(BᵀQ) (SOLVER.md, B-step)."""
        r = self.r
        q = self.old_weight * r * self.l_h1 + self.beta * v + self.eta * r * (self.l_hat @ y)
        a = self.old_quad * self.h2 + self.eta * (y.T @ y)
        return dcc(b, q, a, sweeps, self.backend)

    def y_step(self, b: Any, y: Any, sweeps: int) -> Any:
        """DCC on the Y sub-problem: Q_Y = θ(rKỸ + Cᵀ) + η r L̂ᵀB, A_Y = θỸᵀỸ + η BᵀB."""
        r = self.r
        q = self.theta_hadamard * self.centers_t + self.eta * r * (self.l_hat_t @ b)
        a = self.eta * (b.T @ b)
        if self.theta_distill:
            t = self.teacher
            k_t = 2 * t - t.sum(axis=0, keepdims=True)  # K Ỹ with K = 2I − 11ᵀ
            q = q + self.theta_distill * r * k_t
            a = a + self.theta_distill * (t.T @ t)
        return dcc(y, q, a, sweeps, self.backend)


def _host64(a: Any, backend: Backend) -> np.ndarray[Any, Any]:
    """``a`` on the host in float64 (no copy when it is one already)."""
    return np.asarray(backend.to_numpy(a), dtype=np.float64)


def _orthonormal_complement(basis: np.ndarray[Any, Any], count: int,
                            rng: np.random.Generator, *,
                            centred: bool = False) -> np.ndarray[Any, Any]:
    """``count`` orthonormal columns orthogonal to ``basis`` (orthonormal columns) and, when
    ``centred``, to the constant vector too, from seeded random vectors projected off them
    twice; then orthonormalised as a QR with a positive diagonal would (unique, so
    reproducible), here by a Cholesky factor of their Gram taken twice: the projected random
    vectors are well conditioned, and this needs no n × count factorisation."""
    extra = rng.standard_normal((basis.shape[0], count))
    for _ in range(2):
        extra -= basis @ (basis.T @ extra)
        if centred:
            extra -= extra.mean(axis=0)
    for _ in range(2):
        low = np.linalg.cholesky(extra.T @ extra)
        extra = extra @ np.linalg.inv(low).T
    return extra


def orthogonal_balanced(z: Any, rng: np.random.Generator, backend: Backend) -> Any:
    """argmax tr(VᵀZ) over VᵀV = nI, Vᵀ1 = 0 (DGH's closed form), computed stably.

    With Z̄ = Z − 1·mean = U Σ Wᵀ, V = √n U Wᵀ over the directions with σ above rounding
    noise; the rest (Z̄ is rank deficient once codes settle on class centers) is completed with
    seeded orthonormal vectors orthogonal to 1 and U, paired with a seeded completion of W.
    Any completion is a maximiser; seeding it keeps V a continuous function of Z.

    No n × r factorisation: only r × r Grams leave the device. Pass 1 takes the eigenvectors
    of Z̄ᵀZ̄ (in float64) as Q₁ = Z̄ W Λ^−½, orthonormal up to κ²ε; pass 2 orthonormalises Q₁
    by its own Gram (Q = Q₁ S) and takes the SVD of R = QᵀZ̄ (Z̄ = Q R), the r × r problem the
    Householder path solved, so singular values down to the noise floor are kept as before.
    Device work: four n × r × r products, all GEMMs, on either backend.
    """
    xp = backend.xp
    n, r = z.shape
    if n <= r:
        raise InputError(f"a chunk needs more rows than bits ({n} rows, {r} bits)")
    dt = z.dtype
    zc = z - z.mean(axis=0, keepdims=True)
    z64 = zc if dt == np.float64 else zc.astype(np.float64)
    lam, w = np.linalg.eigh(backend.to_numpy(z64.T @ z64))
    # Eigenvalues at eigh's resolution (ε·λ_max per entry of an r × r matrix) are not
    # directions; the noise floor of Z itself is applied to the singular values of R below.
    top = float(lam[-1]) if r else 0.0
    keep1 = lam > max(r * _EPS64 * top, 1e-300)
    m1 = w[:, keep1] / np.sqrt(lam[keep1])
    q1 = zc @ backend.asarray(m1, dtype=dt)
    k = q1.shape[1]
    lam2, e = np.linalg.eigh(_host64(q1.T @ q1, backend))
    keep2 = lam2 > 1e-4 * (float(lam2[-1]) if k else 0.0)  # Q₁ ≈ orthonormal: λ₂ ≈ 1
    s2 = e[:, keep2] / np.sqrt(lam2[keep2])  # Q = Q₁ S orthonormal
    # R = QᵀZ̄
    a, sigma, w_t = np.linalg.svd(s2.T @ _host64(q1.T @ zc, backend), full_matrices=False)
    # Noise is judged against the scale of Z itself: when the centred Z̄ is all rounding noise
    # (every row alike), its own largest σ is noise too.
    eps = float(np.finfo(dt).eps)
    flat = z.ravel()
    z_norm = math.sqrt(float(xp.vdot(flat, flat)))
    keep = sigma > max(max(n, r) * eps * z_norm, 1e-300)
    to_u = s2 @ a[:, keep]  # U = Q₁ S a over the kept directions
    w_keep = w_t[keep].T
    kept = int(keep.sum())
    if kept == r:
        return math.sqrt(n) * (q1 @ backend.asarray(to_u @ w_keep.T, dtype=dt))
    u_keep = q1 @ backend.asarray(to_u, dtype=dt)
    u_extra = _orthonormal_complement(_host64(u_keep, backend), r - kept, rng, centred=True)
    w_extra = _orthonormal_complement(w_keep, r - kept, rng)
    u_all = xp.concatenate([u_keep, backend.asarray(u_extra, dtype=dt)], axis=1)
    return math.sqrt(n) * (u_all @ backend.asarray(np.hstack([w_keep, w_extra]).T, dtype=dt))


_EPS64 = float(np.finfo(np.float64).eps)


def _safe_norms(a: Any, xp: Any) -> Any:
    """Row norms as a column, with 1 where a row is zero (so zero rows stay zero)."""
    norms = xp.sqrt(xp.einsum("ij,ij->i", a, a))[:, None]
    return xp.where(norms > 0, norms, 1)


# Pad value of the label-set keys: below −(any class number), so a shorter set sorts first.
_KEY_PAD = -(1 << 40)


def label_set_groups(labels: ClassLists) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Group items by label set: (group of each item, first item of each group).

    Groups come in the order ``np.unique(labels.to_dense(), axis=0)`` would give them, without
    the dense matrix: each row's classes, sorted and negated, padded with a value below every
    class, compare lexicographically exactly as the 0/1 rows do. A chunk whose longest row is
    far longer than the average falls back to Python tuples with the same order."""
    n, nnz = labels.n, labels.nnz
    counts = labels.counts()
    rows = labels.row_of_entry()
    order = np.lexsort((labels.classes, rows))  # row by row, classes ascending
    neg = -labels.classes[order].astype(np.int64)
    kmax = max(int(counts.max()) if n else 0, 1)
    if kmax == 1:  # at most one class a row (single-label data): 1-D keys, same order
        keys1 = np.full(n, _KEY_PAD, dtype=np.int64)
        keys1[rows] = neg
        _, first, inv = np.unique(keys1, return_index=True, return_inverse=True)
        return inv.ravel().astype(np.int64), first.astype(np.int64)
    if n * kmax <= 16 * max(nnz, n):
        keys = np.full((n, kmax), _KEY_PAD, dtype=np.int64)
        keys[rows, np.arange(nnz) - np.repeat(labels.indptr[:-1], counts)] = neg
        _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        return inv.ravel().astype(np.int64), first.astype(np.int64)
    tuples = [tuple(neg[a:b].tolist()) for a, b in zip(labels.indptr[:-1], labels.indptr[1:],
                                                        strict=True)]
    index = {key: g for g, key in enumerate(sorted(set(tuples)))}
    inv_l = np.fromiter((index[t] for t in tuples), dtype=np.int64, count=n)
    first_l = np.full(len(index), n, dtype=np.int64)
    np.minimum.at(first_l, inv_l, np.arange(n, dtype=np.int64))
    return inv_l, first_l


def _exemplar_similarity(state: SDOHState, x: Any, labels: ClassLists,
                         backend: Backend, r: int) -> tuple[Any, Any, float]:
    """E = Sqnᵀ B̃q (n × r), B̃qᵀB̃q and r²‖Sqn‖² without forming all of Sqn.

    Sqn[i, j] = ⟨x̂q_i, x̂n_j⟩ where exemplar i and new point j share a label, else −1. Rows
    are grouped by their label set; a group of new points needs inner products only with the
    exemplars whose label sets overlap its own, and the −1 entries of the rest sum to
    −(Σ B̃q − Σ of the overlapping B̃q). Single-label data thus costs n·nq·d / c, not n·nq·d.
    Many distinct label sets (dense multi-label data) fall back to Sqn in blocks. Labels stay
    class lists throughout: grouping hashes rows, overlaps are sparse products.
    """
    xp, dt = backend.xp, backend.dtype
    lq = state.exemplar_labels
    bq = backend.asarray(state.exemplar_codes, dtype=dt)
    new_groups = label_set_groups(labels)
    old_groups = label_set_groups(lq)
    if len(new_groups[1]) * len(old_groups[1]) <= _MAX_GROUP_PAIRS:
        e, sq_norm = _grouped_similarity(x, state.exemplar_features, bq, (labels, *new_groups),
                                         (lq, *old_groups), backend)
        return e, bq.T @ bq, r * r * sq_norm
    n, nq = x.shape[0], bq.shape[0]
    e = xp.zeros((n, r), dtype=dt)
    sq_norm = 0.0
    xq = l2_normalize_rows(backend.asarray(state.exemplar_features).astype(dt), xp)
    xn = l2_normalize_rows(x, xp)
    new_by_class = labels.by_class()
    for start in range(0, nq, _SQN_BLOCK):
        stop = min(start + _SQN_BLOCK, nq)
        share_host = lq.take(np.arange(start, stop)).shares_any(labels, new_by_class)
        share = backend.asarray(share_host)
        sqn = xp.where(share, xq[start:stop] @ xn.T, -1.0)
        e += sqn.T @ bq[start:stop]
        sq_norm += float(xp.sum(sqn * sqn))
    return e, bq.T @ bq, r * r * sq_norm


# Most bytes of padded per-group blocks the grouped exemplar similarity forms at once.
_GROUP_BLOCK_BYTES = 1 << 28
# Up to this many label-set groups of new rows meeting some exemplar, the grouped similarity
# takes one product per group on contiguous slices (no padding, no gathered blocks); above it,
# groups of alike size share padded batched products (fewer calls, some wasted work).
_LOOP_GROUPS = 64

_Groups = tuple[ClassLists, np.ndarray[Any, Any], np.ndarray[Any, Any]]


def _grouped_similarity(x: Any, xq_raw: Any, bq: Any, new: _Groups, old: _Groups,
                        backend: Backend) -> tuple[Any, float]:
    """E and ‖Sqn‖² by label-set group, as batched products with no loop over groups.

    Group a of new rows meets the exemplar rows of every old group sharing a label with it.
    Groups of alike size (the same power of two of rows and of shared exemplar rows) form one
    batch, padded to its largest: one batched GEMM (groups × rows × d by groups × d × shared
    rows) gives the raw inner products, scaled to cosines by the inverse row norms, with 0 as
    the inverse norm of a padding slot (and of a zero row), so padding adds nothing and wastes
    under 4× the work of its batch. At most one batch per pair of powers of two (single-label
    chunks: one or two batches, whatever the number of classes), split further only past the
    bytes the round's memory estimate allows; ‖Sqn‖² is summed on the device and read once.
    Only index arrays are built on the host."""
    xp, dt = backend.xp, backend.dtype
    labels, inv_n, first_n = new
    lq, inv_q, first_q = old
    n, d = x.shape
    nq, r = bq.shape
    g_n, g_q = len(first_n), len(first_q)
    shares = labels.take(first_n).shares_any(lq.take(first_q))  # g_n × g_q
    order_n = np.argsort(inv_n, kind="stable")
    count_n = np.bincount(inv_n, minlength=g_n)
    if int(((count_n > 0) & shares.any(axis=1)).sum()) <= _LOOP_GROUPS:
        return _looped_similarity(x, xq_raw, bq, (order_n, count_n), inv_q, shares, backend)
    start_n = np.concatenate([[0], np.cumsum(count_n)[:-1]]).astype(np.int64)
    slot_n = np.arange(n, dtype=np.int64) - np.repeat(start_n, count_n)
    order_q = np.argsort(inv_q, kind="stable")
    count_q = np.bincount(inv_q, minlength=g_q)
    start_q = np.concatenate([[0], np.cumsum(count_q)])
    # The exemplar rows each new group meets: the ranges of its sharing groups, concatenated.
    pair_a, pair_b = np.nonzero(shares)
    length = count_q[pair_b]
    total = int(length.sum())
    shared = np.bincount(pair_a, weights=length, minlength=g_n).astype(np.int64)
    pair_start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    entry = np.arange(total, dtype=np.int64)
    source_q = order_q[np.repeat(start_q[pair_b] - pair_start, length) + entry]
    group_q = np.repeat(pair_a, length)
    group_start = np.concatenate([[0], np.cumsum(shared)[:-1]]).astype(np.int64)
    slot_q = entry - group_start[group_q]
    inv_norm_n = _inverse_norms(x, xp)
    xq = backend.asarray(xq_raw).astype(dt)
    inv_norm_q = _inverse_norms(xq, xp)
    bq_total = bq.sum(axis=0)
    e = xp.empty((n, r), dtype=dt)
    sq_norm = float((count_n * (nq - shared)).sum())  # the −1 entries
    sq_dev = xp.zeros((), dtype=dt)
    lonely = np.flatnonzero(shared[inv_n] == 0)  # items whose label set no exemplar shares
    if len(lonely):
        e[backend.asarray(lonely)] = -bq_total
    # no more at once than the worker's memory estimate allows for this step (budget.py):
    # the chunk's and the memory's features plus a block of Sqn
    cap = min(_GROUP_BLOCK_BYTES, 8 * (min(nq, _SQN_BLOCK) * n + (n + nq) * d))
    for batch in _size_batches(count_n, shared, cap, d + r + 1):
        rows_n = _padded(batch, inv_n[order_n], slot_n, order_n, count_n)
        rows_q = _padded(batch, group_q, slot_q, source_q, shared)
        take_n = backend.asarray(np.maximum(rows_n, 0))
        take_q = backend.asarray(np.maximum(rows_q, 0))
        in_q = backend.asarray(rows_q >= 0, dtype=dt)
        scale_n = inv_norm_n[take_n] * backend.asarray(rows_n >= 0, dtype=dt)
        cos = xp.matmul(x[take_n], xq[take_q].transpose(0, 2, 1))
        cos *= scale_n[:, :, None]
        cos *= (inv_norm_q[take_q] * in_q)[:, None, :]
        sq_dev += xp.vdot(cos.ravel(), cos.ravel())
        bq_pad = bq[take_q]  # padding columns of cos are 0
        part = xp.matmul(cos, bq_pad)
        part += (xp.einsum("gk,gkr->gr", in_q, bq_pad) - bq_total)[:, None, :]
        filled = np.flatnonzero(rows_n.ravel() >= 0)  # integer positions: no device sync
        e[backend.asarray(rows_n.ravel()[filled])] = part.reshape(-1, r)[backend.asarray(filled)]
    return e, sq_norm + float(sq_dev)


def _looped_similarity(x: Any, xq_raw: Any, bq: Any,
                       new: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
                       group_q: np.ndarray[Any, Any], shares: np.ndarray[Any, Any],
                       backend: Backend) -> tuple[Any, float]:
    """E and ‖Sqn‖² with one product per label-set group of new rows (few groups).

    Rows of both sides are sorted by group once, so a group's rows are a contiguous slice and
    its cosines are one GEMM of exactly its pairs: the slice against the exemplar rows of its
    sharing groups (a slice too where those groups are consecutive, always so for single-label
    data; gathered otherwise), scaled by the inverse row norms afterwards (pairs values, fewer
    than the rows' n·d and nq·d whenever a group meets fewer than d exemplar rows). No padding;
    ‖Sqn‖² is summed on the device and read once."""
    xp, dt = backend.xp, backend.dtype
    order_n, count_n = new
    n, nq, r = x.shape[0], bq.shape[0], bq.shape[1]
    g_q = shares.shape[1]
    order_q = np.argsort(group_q, kind="stable")
    start_q = np.concatenate([[0], np.cumsum(np.bincount(group_q, minlength=g_q))])
    start_n = np.concatenate([[0], np.cumsum(count_n)])
    take_n, take_q = backend.asarray(order_n), backend.asarray(order_q)
    xn = x[take_n]
    scale_n = _inverse_norms(xn, xp)[:, None]
    xq = backend.asarray(xq_raw)[take_q].astype(dt)
    scale_q = _inverse_norms(xq, xp)
    bq_sorted = bq[take_q]
    bq_total = bq_sorted.sum(axis=0)
    e_sorted = xp.empty((n, r), dtype=dt)
    sq_dev = xp.zeros((), dtype=dt)
    shared_rows = np.diff(start_q)
    sq_norm = 0.0  # the −1 entries
    for a in np.flatnonzero(count_n):
        lo, hi = int(start_n[a]), int(start_n[a + 1])
        sharing = np.flatnonzero(shares[a])
        sq_norm += float(count_n[a] * (nq - shared_rows[sharing].sum()))
        if len(sharing) == 0:
            e_sorted[lo:hi] = -bq_total
            continue
        if sharing[-1] - sharing[0] == len(sharing) - 1:  # consecutive groups: one slice
            rows: Any = slice(int(start_q[sharing[0]]), int(start_q[sharing[-1] + 1]))
        else:
            rows = backend.asarray(np.concatenate([np.arange(start_q[b], start_q[b + 1])
                                                   for b in sharing]))
        cos = xn[lo:hi] @ xq[rows].T
        cos *= scale_n[lo:hi]
        cos *= scale_q[rows]
        sq_dev += xp.vdot(cos.ravel(), cos.ravel())
        b_rows = bq_sorted[rows]
        part = cos @ b_rows
        part += b_rows.sum(axis=0) - bq_total
        e_sorted[lo:hi] = part
    e = xp.empty_like(e_sorted)
    e[take_n] = e_sorted
    return e, sq_norm + float(sq_dev)


def _size_batches(rows: np.ndarray[Any, Any], shared: np.ndarray[Any, Any], cap: int,
                  width: int) -> list[np.ndarray[Any, Any]]:
    """Groups that meet some exemplar, batched by (⌈log₂ rows⌉, ⌈log₂ shared rows⌉) and split
    so that a batch's padded blocks (``width`` values a padded row, 8 bytes each, plus the
    rows × shared cosines) stay under ``cap`` bytes."""
    live = np.flatnonzero((shared > 0) & (rows > 0))
    if len(live) == 0:
        return []
    key = np.ceil(np.log2(rows[live])).astype(np.int64) * 64 \
        + np.ceil(np.log2(shared[live])).astype(np.int64)
    out: list[np.ndarray[Any, Any]] = []
    for k in np.unique(key):
        groups = live[key == k]
        most_rows, most_shared = int(rows[groups].max()), int(shared[groups].max())
        per_group = 8 * ((most_rows + most_shared) * width + most_rows * most_shared)
        step = max(1, cap // per_group)
        out.extend(groups[i:i + step] for i in range(0, len(groups), step))
    return out


def _padded(batch: np.ndarray[Any, Any], group: np.ndarray[Any, Any],
            slot: np.ndarray[Any, Any], value: np.ndarray[Any, Any],
            size: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """len(batch) × (largest size in the batch): ``value`` of each entry whose ``group`` is in
    ``batch``, at its ``slot``; −1 in the padding."""
    where = np.full(len(size), -1, dtype=np.int64)
    where[batch] = np.arange(len(batch))
    pick = where[group] >= 0
    out = np.full((len(batch), int(size[batch].max())), -1, dtype=np.int64)
    out[where[group[pick]], slot[pick]] = value[pick]
    return out


def _inverse_norms(a: Any, xp: Any) -> Any:
    """1/‖row‖ of each row, 0 for a zero row (so it stays a zero row)."""
    norms = xp.sqrt(xp.einsum("ij,ij->i", a, a))
    return xp.where(norms > 0, 1 / xp.where(norms > 0, norms, 1), 0)


def _canonical(m: Any) -> sp.csr_array:
    """``m`` as a CSR array with sorted indices and no duplicates (a stable stored form)."""
    out = sp.csr_array(m)
    out.sum_duplicates()
    out.sort_indices()
    return out


def learn_chunk(state: SDOHState | None, features: Any, labels: ClassLists,
                settings: SDOHSettings, backend: Backend, *,
                trace: bool = False) -> RoundResult:
    """One SDOH-HC round on a chunk (``features`` n × d, ``labels`` class lists of the n items).

    ``state`` is the previous round's (``None`` before round 1: the feature map is fitted on
    this chunk). ``labels.n_classes`` above the model's c grows c; below, the lists are read
    over the model's c classes. Nothing passed in is mutated. No array of n × c or c × c is
    formed: L̂ is sparse and every label product is a sparse one.
    """
    xp, dt = backend.xp, backend.dtype
    features_host = backend.to_numpy(features)
    check_chunk(features_host, labels, None if state is None else state.dim, settings.bits)
    if state is None:
        state = initial_state(settings, features_host, max(labels.n_classes, 1))
    if state.bits != settings.bits:
        raise InputError(f"settings.bits is {settings.bits} but the state has {state.bits}")
    n, r = labels.n, settings.bits
    rnd = state.round + 1
    rng = np.random.default_rng([settings.seed, rnd])
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        backend.synchronize()
        now = time.perf_counter()
        seconds[name] = seconds.get(name, 0.0) + now - clock
        clock = now

    state = grow_classes(state, labels.n_classes, settings.seed, backend)
    c = state.n_classes
    labels = labels.widen(c)
    l_hat_host = labels.to_sparse(np.float64, normalize=True)  # n × c CSR
    l_hat_t_host = l_hat_host.T.tocsr()  # c × n CSR
    l_hat = backend.sparse(l_hat_host)
    l_hat_t = backend.sparse(l_hat_t_host)
    l_hat_colsum = np.asarray(l_hat_t_host.sum(axis=1)).ravel()  # L̂ᵀ1, c
    new_gram = _canonical(l_hat_t_host @ l_hat_host)  # L̂ᵀL̂, c × c sparse
    x = backend.asarray(features, dtype=dt)
    state, phi = grow_anchors(state, x, settings, backend, rnd)
    lap("features")

    n_old = state.n_seen
    n_ex = int(state.exemplar_codes.shape[0])
    weights = term_weights(settings, n=n, r=r, c=c, n_old=n_old, n_exemplars=n_ex)
    use_old = weights.old > 0
    s = 2.0 if settings.old_similarity == "lemon" else 1.0
    h1 = backend.asarray(state.h1, dtype=dt)
    h2 = backend.asarray(state.h2, dtype=dt)
    old_const = 0.0
    if use_old:
        cross = float(new_gram.multiply(state.label_gram).sum())  # ⟨L̂ᵀL̂, Σ L̂_oldᵀL̂_old⟩
        old_const = weights.old * r * r * s * s * cross
        if settings.old_similarity == "lemon":
            lsum = backend.to_numpy(state.label_sum).astype(np.float64)
            old_const += weights.old * r * r * (n * n_old - 2 * s * float(l_hat_colsum @ lsum))

    use_ex = weights.exemplar > 0
    if use_ex:
        e, ex_gram, ex_const = _exemplar_similarity(state, x, labels, backend, r)
    else:
        e, ex_gram, ex_const = xp.zeros((n, r), dtype=dt), xp.zeros((r, r), dtype=dt), 0.0
    lap("exemplar_similarity")

    terms = _Terms(
        backend=backend, r=r, n=n, beta=weights.quantization,
        theta_distill=weights.distillation, theta_hadamard=weights.hadamard, eta=weights.center,
        l_hat=l_hat, l_hat_t=l_hat_t, l_hat_sq=float(np.sum(l_hat_host.data ** 2)),
        old_weight=weights.old * s, old_quad=weights.old, l_h1=l_hat @ h1, h2=h2,
        old_const=old_const, ex_weight=weights.exemplar, ex_lin=e, ex_gram=ex_gram,
        ex_const=ex_const, teacher=backend.asarray(state.teacher, dtype=dt),
        centers_t=backend.asarray(state.centers, dtype=dt).T,
    )
    if rnd == 1:
        b = xp.asarray(np.where(rng.random((n, r)) < 0.5, -1.0, 1.0), dtype=dt)
    else:
        b = sign(phi @ backend.asarray(state.projection, dtype=dt), xp)
    y = terms.teacher.copy()
    steps: list[tuple[str, float]] = []
    v = b
    lap("warm_start")  # the terms' fixed products and B₀ = sgn(ΦP)
    for _ in range(settings.iterations):
        v = terms.v_step(b, rng)
        lap("v")
        if trace:
            steps.append(("V", terms.objective(b, v, y)["total"]))
        b = terms.b_step(b, v, y, settings.sweeps)
        lap("b")
        if trace:
            steps.append(("B", terms.objective(b, v, y)["total"]))
        y = terms.y_step(b, y, settings.sweeps)
        lap("y")
        if trace:
            steps.append(("Y", terms.objective(b, v, y)["total"]))
    loss = terms.objective(b, v, y)

    g = phi.T @ phi  # new arrays, added to in place: the state's sums stay as they were
    g += backend.asarray(state.g, dtype=dt)
    f = phi.T @ b
    f += backend.asarray(state.f, dtype=dt)
    reg = g.copy()
    reg.ravel()[::reg.shape[0] + 1] += settings.lam  # G + λI without an m × m identity
    projection = backend.cho_solve(reg, f)
    lap("p")

    codes = backend.to_numpy(b).astype(np.int8)
    y_host = backend.to_numpy(y).astype(np.int8)
    new_exemplars, from_chunk = _update_exemplars(state, features_host, labels, codes, y_host,
                                                  settings, rng, backend)
    lap("memory")
    query_net = fit_query_net(
        state.query_net, settings, rnd, state.feature_map, projection,
        (features_host, codes, phi),
        (new_exemplars["exemplar_features"], new_exemplars["exemplar_codes"]), from_chunk,
        backend, ClassLists.concat([labels, new_exemplars["exemplar_labels"]]))
    lap("query_net")
    new_state = SDOHState(
        round=rnd, n_seen=n_old + n, dim=state.dim, centers=state.centers,
        teacher=backend.asarray(y_host), h1=h1 + l_hat_t @ v, h2=h2 + v.T @ v, g=g, f=f,
        label_gram=_canonical(state.label_gram + new_gram),
        label_sum=backend.asarray(state.label_sum, dtype=dt)
        + backend.asarray(l_hat_colsum, dtype=dt),
        projection=projection, feature_map=state.feature_map, query_net=query_net,
        **new_exemplars,
    )
    lap("memory")
    return RoundResult(codes=codes, state=new_state, loss=loss, seconds=seconds, trace=steps)


def _update_exemplars(state: SDOHState, x: np.ndarray[Any, Any], labels: ClassLists,
                      codes: np.ndarray[Any, Any], y: np.ndarray[Any, Any],
                      settings: SDOHSettings, rng: np.random.Generator,
                      backend: Backend) -> tuple[dict[str, Any], np.ndarray[Any, Any] | None]:
    """Keep n1 old exemplars (``exemplar_keep``), add n2 of this chunk chosen by the policy (or, for
    ``condensed``, n2 synthetic exemplars with their class's row of Y as code); also the chunk
    rows of the added exemplars (None when they are synthetic), so φ of them is not redone.

    The memory is small and its selection is index work, so it stays on the host."""
    old_f = backend.to_numpy(state.exemplar_features)
    old_c = backend.to_numpy(state.exemplar_codes)
    keep = (select_class_balanced(state.exemplar_labels, settings.n1, rng)
            if settings.exemplar_keep == "class_balanced"
            else select_random(old_f.shape[0], settings.n1, rng))
    new_l: ClassLists
    new: np.ndarray[Any, Any] | None = None
    if settings.exemplar_policy == "condensed":
        new_f, new_l, new_c = condense_exemplars(
            x, labels, y, settings.n2, rng, per_class=settings.condensed_per_class,
            config=CondenseConfig(steps=settings.condensed_steps))
    else:
        new = select_exemplars(settings.exemplar_policy, labels, codes, y, settings.n2, rng)
        new_f = x[new].astype(np.float32)
        new_l = labels.take(new)
        new_c = codes[new]
    return {
        "exemplar_features": np.concatenate([old_f[keep], new_f]),
        "exemplar_labels": ClassLists.concat([state.exemplar_labels.take(keep), new_l])
        .widen(state.n_classes),
        "exemplar_codes": np.concatenate([old_c[keep], new_c]),
    }, new
