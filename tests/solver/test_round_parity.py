"""The round's fast paths against straightforward references on random and degenerate inputs
(issue 16): the V-step from r × r Grams against the SVD of the centred Z (and its seeded
completion against a Householder QR), the grouped exemplar similarity (one product per group
and the padded batches) against the dense Sqn, anchor growth's imputation against the
column-gather formulation, the query net's in-place Adam against plain Adam, its targets from
the round's Φ against φ recomputed, and the P step against a dense solve. Where a fast path
could be wrong in a way the comparison might not see, a deliberately wrong variant is shown
to fail it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from support.sdoh_round import CL

from hashstream.solver.backend import get_backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.feature_map import apply_feature_map, fit_feature_map, map_and_grow
from hashstream.solver.query_net import (
    BATCH,
    LEARNING_RATE,
    WEIGHT_DECAY,
    QueryNet,
    init_query_net,
    train_query_net,
)
from hashstream.solver.sdoh_hc import exemplars
from hashstream.solver.sdoh_hc import round as sdoh_round
from hashstream.solver.sdoh_hc.query_encoder import fit_query_net
from hashstream.solver.sdoh_hc.round import learn_chunk, orthogonal_balanced
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

NUMPY = get_backend("numpy")

# --------------------------------------------------------------------------- V-step


def _reference_v(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """√n U Wᵀ from the SVD of the centred Z (unique when Z̄ has r distinct σ > 0), and σ."""
    n = z.shape[0]
    u, sigma, w_t = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    return np.sqrt(n) * u @ w_t, sigma


def _feasible_and_optimal(v: np.ndarray, z: np.ndarray, tol: float) -> None:
    n, r = z.shape
    np.testing.assert_allclose(v.T @ v, n * np.eye(r), atol=tol * n)
    np.testing.assert_allclose(v.sum(axis=0), np.zeros(r), atol=tol * n)
    _, sigma = _reference_v(z)
    best = np.sqrt(n) * sigma.sum()
    assert np.sum(v * z) == pytest.approx(best, rel=tol, abs=tol * max(1.0, best))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("n", "r"), [(2000, 32), (65, 64), (300, 8)])
def test_v_step_equals_the_svd_reference(seed: int, n: int, r: int) -> None:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, r)) * rng.uniform(0.1, 10, r) + rng.standard_normal(r)
    v = orthogonal_balanced(z, np.random.default_rng(seed), NUMPY)
    ref, _ = _reference_v(z)
    np.testing.assert_allclose(v, ref, atol=1e-9 * np.sqrt(n))
    _feasible_and_optimal(v, z, 1e-10)


@pytest.mark.parametrize("spread", [1e2, 1e5, 1e7])
def test_v_step_ill_conditioned(spread: float) -> None:
    """σ from 1 down to 1/spread: every direction is real; the Gram's κ² is up to 1e14."""
    rng = np.random.default_rng(3)
    n, r = 400, 16
    u, _ = np.linalg.qr(rng.standard_normal((n, r)) - 0.0)
    u -= u.mean(axis=0)
    u, _ = np.linalg.qr(u)
    w, _ = np.linalg.qr(rng.standard_normal((r, r)))
    sigma = np.logspace(0, -np.log10(spread), r)
    z = u @ np.diag(sigma) @ w.T + 2.0
    v = orthogonal_balanced(z, np.random.default_rng(0), NUMPY)
    np.testing.assert_allclose(v.T @ v, n * np.eye(r), atol=1e-12 * n)
    # The offset's rounding in Z̄ = Z − 1·mean, amplified by 1/σ_min, tilts V off 1 exactly
    # as much as it tilts the SVD of the same Z̄; the objective is checked on Z̄ itself.
    zc = z - z.mean(axis=0)
    ref, sv = _reference_v(z)
    assert np.abs(v.sum(axis=0)).max() <= 2 * np.abs(ref.sum(axis=0)).max() + 1e-9 * n
    assert np.sum(v * zc) == pytest.approx(np.sqrt(n) * sv.sum(), rel=1e-12)


@pytest.mark.parametrize("rank", [0, 1, 5, 31])
def test_v_step_rank_deficient(rank: int) -> None:
    """Codes settled on class codes: Z̄ of rank < r; V completes the null directions."""
    rng = np.random.default_rng(rank)
    n, r = 500, 32
    classes = rng.integers(0, rank + 1, n)
    z = np.where(rng.random((rank + 1, r)) < 0.5, -1.0, 1.0)[classes] * 0.03 + 0.5
    if rank == 0:
        z = np.ones((n, r)) * 0.1  # centred: rounding noise only
    v = orthogonal_balanced(z, np.random.default_rng(1), NUMPY)
    _feasible_and_optimal(v, z, 1e-9)
    # continuous in Z: a relative 1e-14 change moves V by rounding only
    noisy = z * (1 + 1e-14 * rng.standard_normal(z.shape))
    moved = orthogonal_balanced(noisy, np.random.default_rng(1), NUMPY)
    assert np.abs(moved - v).max() < 1e-6


def test_v_step_float32_backend() -> None:
    """The CuPy dtype on the CPU: the Gram is taken in float64, V meets the constraints to
    float32 precision."""
    backend = get_backend("numpy", "float32")
    rng = np.random.default_rng(9)
    z = (rng.standard_normal((1000, 32)) + 1).astype(np.float32)
    v = orthogonal_balanced(z, np.random.default_rng(0), backend)
    assert v.dtype == np.float32
    v64 = v.astype(np.float64)
    np.testing.assert_allclose(v64.T @ v64, 1000 * np.eye(32), atol=1e-4 * 1000)
    ref, _ = _reference_v(z.astype(np.float64))
    np.testing.assert_allclose(v64, ref, atol=1e-3)


def _householder_complement(basis: np.ndarray, count: int, rng: np.random.Generator,
                            centred: bool) -> np.ndarray:
    """The reference completion: the same seeded vectors projected off [1/√n, basis] twice,
    then a Householder QR with its diagonal made positive."""
    n = basis.shape[0]
    if centred:
        basis = np.hstack([np.full((n, 1), 1 / np.sqrt(n)), basis])
    extra = rng.standard_normal((n, count))
    for _ in range(2):
        extra -= basis @ (basis.T @ extra)
    q, r = np.linalg.qr(extra)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


@pytest.mark.parametrize(("n", "kept", "count"), [(2000, 10, 22), (500, 0, 32), (40, 7, 1)])
def test_v_step_completion_equals_householder_qr(n: int, kept: int, count: int) -> None:
    """The rank-deficient V-step's seeded completion (Cholesky QR of the projected vectors)
    equals the Householder QR with a positive diagonal of the same vectors, to rounding; it
    is orthonormal and orthogonal to 1 and to the basis. A variant that skips the centring
    is not orthogonal to 1."""
    rng = np.random.default_rng(n)
    raw = rng.standard_normal((n, kept))
    basis = np.linalg.qr(raw - raw.mean(axis=0))[0] if kept else np.zeros((n, 0))
    got = sdoh_round._orthonormal_complement(basis, count, np.random.default_rng(3),
                                             centred=True)
    want = _householder_complement(basis, count, np.random.default_rng(3), centred=True)
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(got.T @ got, np.eye(count), atol=1e-13)
    assert np.abs(got.sum(axis=0)).max() < 1e-11
    assert kept == 0 or np.abs(basis.T @ got).max() < 1e-13
    wrong = sdoh_round._orthonormal_complement(basis, count, np.random.default_rng(3))
    assert np.abs(wrong.sum(axis=0)).max() > 1e-3


# --------------------------------------------------------------------------- exemplar similarity


def _reference_similarity(xn: np.ndarray, xq: np.ndarray, bq: np.ndarray, ln: ClassLists,
                          lq: ClassLists, r: int) -> tuple[np.ndarray, float]:
    """Dense Sqn: cosine where the two items share a label, else −1."""
    def unit(a: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(a, axis=1, keepdims=True)
        return a / np.where(norms > 0, norms, 1)

    c = max(ln.n_classes, lq.n_classes, 1)
    share = (lq.to_dense(c).astype(int) @ ln.to_dense(c).astype(int).T) > 0
    sqn = np.where(share, unit(xq.astype(np.float64)) @ unit(xn).T, -1.0)
    return sqn.T @ bq, r * r * float((sqn * sqn).sum())


def _labels(rng: np.random.Generator, n: int, c: int, kind: str) -> ClassLists:
    if kind == "single":
        return ClassLists(np.arange(n + 1), rng.integers(0, c, n), c)
    if kind == "skewed":  # one class holds most rows, some rows have no label
        cls = np.where(rng.random(n) < 0.8, 0, rng.integers(0, c, n))
        rows = [[] if rng.random() < 0.05 else [int(k)] for k in cls]
        return ClassLists.from_lists(rows, c)
    rows = [list(np.flatnonzero(rng.random(c) < 0.3)) for _ in range(n)]
    return ClassLists.from_lists(rows, c)


def _state_with_memory(xq: np.ndarray, lq: ClassLists, bq: np.ndarray) -> SDOHState:
    settings = SDOHSettings(bits=bq.shape[1], feature_map="identity")
    state = sdoh_round.initial_state(settings, xq.astype(np.float64), lq.n_classes)
    return replace(state, exemplar_features=xq, exemplar_labels=lq, exemplar_codes=bq)


@pytest.fixture(params=["looped", "batched"])
def similarity_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of forming the grouped similarity: one product per group (few groups, the
    default here) and the padded batches (forced by a group limit of 0)."""
    if request.param == "batched":
        monkeypatch.setattr(sdoh_round, "_LOOP_GROUPS", 0)
    return str(request.param)


@pytest.mark.parametrize("kind", ["single", "skewed", "multi"])
@pytest.mark.parametrize("seed", [0, 1])
def test_exemplar_similarity_equals_dense_sqn(kind: str, seed: int, similarity_path: str
                                              ) -> None:
    rng = np.random.default_rng(seed)
    n, nq, d, r, c = 300, 120, 20, 16, 5
    xn = rng.standard_normal((n, d))
    xq = rng.standard_normal((nq, d)).astype(np.float32)
    xn[:3] = 0  # zero rows stay zero
    xq[:2] = 0
    ln, lq = _labels(rng, n, c, kind), _labels(rng, nq, c, kind)
    bq = np.where(rng.random((nq, r)) < 0.5, -1, 1).astype(np.int8)
    e, gram, const = sdoh_round._exemplar_similarity(_state_with_memory(xq, lq, bq), xn, ln,
                                                     NUMPY, r)
    e_ref, const_ref = _reference_similarity(xn, xq, bq.astype(np.float64), ln, lq, r)
    np.testing.assert_allclose(e, e_ref, rtol=1e-12, atol=1e-10)
    assert const == pytest.approx(const_ref, rel=1e-12)
    np.testing.assert_array_equal(gram, bq.T.astype(np.float64) @ bq)


def test_exemplar_similarity_degenerate_groups(monkeypatch: pytest.MonkeyPatch,
                                               similarity_path: str) -> None:
    """Groups with no sharing partner, one label set only, and the padded blocks split over
    several batches by the byte cap."""
    rng = np.random.default_rng(4)
    n, nq, d, r = 90, 40, 8, 8
    xn, xq = rng.standard_normal((n, d)), rng.standard_normal((nq, d)).astype(np.float32)
    bq = np.where(rng.random((nq, r)) < 0.5, -1, 1).astype(np.int8)
    cases = [
        (ClassLists(np.arange(n + 1), np.full(n, 3), 6),  # no exemplar has class 3
         ClassLists(np.arange(nq + 1), rng.integers(0, 3, nq), 6)),
        (ClassLists(np.arange(n + 1), np.zeros(n, int), 1),  # one set on both sides
         ClassLists(np.arange(nq + 1), np.zeros(nq, int), 1)),
        (ClassLists.from_lists([[]] * n, 2), ClassLists.from_lists([[]] * nq, 2)),
    ]
    for capped in (False, True):
        if capped:
            monkeypatch.setattr(sdoh_round, "_GROUP_BLOCK_BYTES", 1)
        for ln, lq in cases + [(_labels(rng, n, 4, "multi"), _labels(rng, nq, 4, "multi"))]:
            e, _, const = sdoh_round._exemplar_similarity(_state_with_memory(xq, lq, bq), xn,
                                                          ln, NUMPY, r)
            e_ref, const_ref = _reference_similarity(xn, xq, bq.astype(np.float64), ln, lq, r)
            np.testing.assert_allclose(e, e_ref, rtol=1e-12, atol=1e-10)
            assert const == pytest.approx(const_ref, rel=1e-12)


def test_exemplar_similarity_many_label_sets_fallback() -> None:
    """Past the pair limit the blocked dense path answers, with the same values."""
    rng = np.random.default_rng(5)
    n, nq, d, r, c = 200, 150, 6, 8, 12
    ln, lq = _labels(rng, n, c, "multi"), _labels(rng, nq, c, "multi")
    groups = len(sdoh_round.label_set_groups(ln)[1]) * len(sdoh_round.label_set_groups(lq)[1])
    assert groups > sdoh_round._MAX_GROUP_PAIRS
    xn, xq = rng.standard_normal((n, d)), rng.standard_normal((nq, d)).astype(np.float32)
    bq = np.where(rng.random((nq, r)) < 0.5, -1, 1).astype(np.int8)
    e, _, const = sdoh_round._exemplar_similarity(_state_with_memory(xq, lq, bq), xn, ln,
                                                  NUMPY, r)
    e_ref, const_ref = _reference_similarity(xn, xq, bq.astype(np.float64), ln, lq, r)
    np.testing.assert_allclose(e, e_ref, rtol=1e-12, atol=1e-10)
    assert const == pytest.approx(const_ref, rel=1e-12)


def test_exemplar_similarity_without_cosine_scaling_fails_the_reference(
        monkeypatch: pytest.MonkeyPatch, similarity_path: str) -> None:
    """The comparison above sees a wrong fast path: raw inner products instead of cosines
    (inverse norms of 1) move E and ‖Sqn‖² far from the dense reference."""
    rng = np.random.default_rng(8)
    n, nq, d, r, c = 200, 80, 12, 8, 4
    xn = rng.standard_normal((n, d)) * 3
    xq = (rng.standard_normal((nq, d)) * 3).astype(np.float32)
    ln, lq = _labels(rng, n, c, "single"), _labels(rng, nq, c, "single")
    bq = np.where(rng.random((nq, r)) < 0.5, -1, 1).astype(np.int8)
    monkeypatch.setattr(sdoh_round, "_inverse_norms", lambda a, xp: xp.ones(a.shape[0]))
    e, _, const = sdoh_round._exemplar_similarity(_state_with_memory(xq, lq, bq), xn, ln,
                                                  NUMPY, r)
    e_ref, const_ref = _reference_similarity(xn, xq, bq.astype(np.float64), ln, lq, r)
    assert not np.allclose(e, e_ref, rtol=1e-6, atol=1e-6)
    assert const != pytest.approx(const_ref, rel=1e-6)


def test_label_set_groups_match_dense_unique() -> None:
    rng = np.random.default_rng(6)
    for kind in ("single", "skewed", "multi"):
        labels = _labels(rng, 200, 6, kind)
        inv, first = sdoh_round.label_set_groups(labels)
        _, ref_first, ref_inv = np.unique(labels.to_dense(), axis=0, return_index=True,
                                          return_inverse=True)
        np.testing.assert_array_equal(inv, ref_inv.ravel())
        np.testing.assert_array_equal(first, ref_first)


# --------------------------------------------------------------------------- anchor growth


def _reference_grow(state: SDOHState, grown_map: Any, settings: SDOHSettings
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """G, F and P after growth as first written: φ of the exemplars under the grown map,
    its old columns gathered by index (bias last), G_oo + λI by an identity, and every block
    placed through index arrays."""
    m = state.feature_map.anchors.shape[0]
    k = grown_map.anchors.shape[0] - m
    old = np.r_[np.arange(m), m + k]
    phi_ex = apply_feature_map(grown_map, state.exemplar_features, NUMPY)
    phi_o, phi_n = phi_ex[:, old], phi_ex[:, m:m + k]
    w = np.linalg.solve(phi_o.T @ phi_o + settings.lam * np.eye(m + 1), phi_o.T @ phi_n)
    resid = phi_n - phi_o @ w
    s = state.n_seen / phi_ex.shape[0]
    g_on = state.g @ w
    g_nn = w.T @ g_on + s * (resid.T @ resid)
    codes = state.exemplar_codes.astype(np.float64)
    g = np.zeros((m + k + 1,) * 2)
    g[np.ix_(old, old)] = state.g
    g[np.ix_(old, np.arange(m, m + k))] = g_on
    g[np.ix_(np.arange(m, m + k), old)] = g_on.T
    g[m:m + k, m:m + k] = (g_nn + g_nn.T) / 2
    f = np.zeros((m + k + 1, state.f.shape[1]))
    f[old] = state.f
    f[m:m + k] = w.T @ state.f + s * (resid.T @ codes)
    projection = np.zeros_like(f)
    projection[old] = state.projection
    return g, f, projection


def test_anchor_growth_imputation_equals_the_gathered_reference() -> None:
    """Growth's G, F and P (old blocks placed by slices, the imputation from one Gram of the
    exemplars' Φ, the residual as one product) against the index-gather formulation. A
    variant that leaves the bias column in place of the first new anchor differs."""
    rng = np.random.default_rng(21)
    settings = SDOHSettings(bits=8, n_anchors=60, first_anchor_share=0.5, n1=25, n2=25)
    d = 6
    first = rng.standard_normal((90, d))
    state = learn_chunk(None, first, CL(np.eye(3)[rng.integers(0, 3, 90)]), settings,
                        NUMPY).state
    far = rng.standard_normal((90, d)) + 8.0  # beyond the novelty radius: anchors grow
    grown, _ = sdoh_round.grow_anchors(state, far, settings, NUMPY, 2)
    m = state.feature_map.anchors.shape[0]
    k = grown.feature_map.anchors.shape[0] - m
    assert k > 0
    g, f, projection = _reference_grow(state, grown.feature_map, settings)
    scale = np.abs(g).max()
    np.testing.assert_allclose(grown.g, g, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(grown.f, f, rtol=0, atol=1e-10 * np.abs(f).max())
    np.testing.assert_array_equal(grown.projection, projection)
    bias_unmoved = g.copy()
    bias_unmoved[[m, m + k]] = bias_unmoved[[m + k, m]]
    assert not np.allclose(grown.g, bias_unmoved, rtol=0, atol=1e-6 * scale)


# --------------------------------------------------------------------------- query net


def _plain_adam(net: QueryNet, x: np.ndarray, residual: np.ndarray, steps: int,
                rng: np.random.Generator) -> list[np.ndarray]:
    """The textbook loop: gradients, then m₁, m₂ and the bias-corrected step per array."""
    inputs = ((x - net.mean) / net.scale).astype(np.float64)
    params = [np.array(a, dtype=np.float64) for a in (net.w1, net.b1, net.w2, net.b2)]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    n = x.shape[0]
    batch = min(BATCH, n)
    passes = -(-steps * batch // n)
    order = np.concatenate([rng.permutation(n) for _ in range(passes)])[:steps * batch]
    for t in range(1, steps + 1):
        rows = order[(t - 1) * batch:t * batch]
        xb, yb = inputs[rows], residual[rows]
        w1, b1, w2, b2 = params
        pre = xb @ w1 + b1
        hidden = np.maximum(pre, 0)
        err = (hidden @ w2 + b2 - yb) / batch
        grad_hidden = (err @ w2.T) * (pre > 0)
        grads = [xb.T @ grad_hidden, grad_hidden.sum(0), hidden.T @ err, err.sum(0)]
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = g + WEIGHT_DECAY * p
            first[i] = 0.9 * first[i] + 0.1 * g
            second[i] = 0.999 * second[i] + 0.001 * g * g
            m_hat = first[i] / (1 - 0.9 ** t)
            v_hat = second[i] / (1 - 0.999 ** t)
            p -= LEARNING_RATE * m_hat / (np.sqrt(v_hat) + 1e-8 / np.sqrt(1 - 0.999 ** t))
    return params


@pytest.mark.parametrize(("d", "hidden", "steps"), [(24, 40, 60), (600, 512, 20)])
def test_query_net_adam_equals_plain_adam(d: int, hidden: int, steps: int) -> None:
    """The blocked, in-place float32 Adam (600 × 512 spans three row blocks) against the
    textbook update in float64: equal up to float32 rounding."""
    rng = np.random.default_rng(d)
    x = rng.standard_normal((500, d))
    residual = np.where(rng.random((500, 8)) < 0.5, -1.0, 1.0) * 0.6
    net = init_query_net(x, 8, hidden, seed=1)
    trained = train_query_net(net, x, residual, steps, np.random.default_rng(2), NUMPY)
    ref = _plain_adam(net, x, residual, steps, np.random.default_rng(2))
    for got, want in zip((trained.w1, trained.b1, trained.w2, trained.b2), ref, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=2e-5 + 2e-4 * np.abs(want).max())


def test_query_net_targets_reuse_the_rounds_phi() -> None:
    """fit_query_net with the chunk's Φ and the memory's chunk rows named gives the net that
    φ recomputed for every row gives (the residual targets agree to rounding)."""
    rng = np.random.default_rng(11)
    n, d, r = 120, 10, 8
    settings = SDOHSettings(bits=r, n_anchors=30, query_hidden=16, query_steps=30,
                            query_encoder="residual_net")
    x = rng.standard_normal((n, d))
    fm = fit_feature_map("rbf", x, 30, 0)
    phi = apply_feature_map(fm, x, NUMPY)
    projection = rng.standard_normal((phi.shape[1], r))
    codes = np.where(rng.random((n, r)) < 0.5, -1, 1).astype(np.int8)
    old = rng.standard_normal((25, d)).astype(np.float32)
    taken = rng.choice(n, 15, replace=False)
    memory = (np.concatenate([old, x[taken].astype(np.float32)]),
              np.concatenate([codes[:25], codes[taken]]))
    labels = ClassLists.from_lists([[i % 3] for i in range(n + 25 + 15)])
    fast = fit_query_net(None, settings, 3, fm, projection, (x, codes, phi), memory, taken,
                         NUMPY, labels)
    slow = fit_query_net(None, settings, 3, fm, projection, (x, codes, phi), memory, None,
                         NUMPY, labels)
    assert fast is not None and slow is not None
    for a, b in ((fast.w1, slow.w1), (fast.w2, slow.w2), (fast.b2, slow.b2)):
        np.testing.assert_allclose(a, b, atol=1e-4)


# --------------------------------------------------------------------------- P step


def test_p_step_equals_a_dense_solve(make_stream: Any) -> None:
    stream = make_stream(12, n_classes=4, dim=20, n_chunks=3, chunk=120, n_queries=10)
    settings = SDOHSettings(bits=16, n1=40, n2=40, n_anchors=50, query_encoder="linear")
    state = None
    for x, labels in stream.chunks:
        g_before = None if state is None else state.g.copy()
        state = learn_chunk(state, x, CL(labels), settings, NUMPY).state
        m = state.g.shape[0]
        want = np.linalg.solve(state.g + settings.lam * np.eye(m), state.f)
        np.testing.assert_allclose(state.projection, want, rtol=1e-8,
                                   atol=1e-10 * np.abs(want).max())
        if g_before is not None:  # the previous state's sums were not touched
            assert not np.shares_memory(g_before, state.g)


# --------------------------------------------------------------------------- exemplar selection


@pytest.mark.parametrize("seed", range(4))
def test_round_robin_without_shared_rows_equals_the_loop(seed: int) -> None:
    """Class-balanced selection on single-label data (no row in two queues): the sorted picks
    equal the turn-by-turn loop's, for counts below, at and above the labelled rows. A variant
    that drains each queue before the next (class-major order) differs."""
    rng = np.random.default_rng(seed)
    n, c = 300, 7
    classes = rng.integers(0, c, n)
    queue_rows = np.concatenate([np.flatnonzero(classes == k)[rng.permutation(
        int((classes == k).sum()))] for k in range(c)])
    bounds = np.r_[0, np.cumsum(np.bincount(classes, minlength=c))]
    for count in (1, 40, 299, 300, 350):
        want = exemplars.round_robin(queue_rows, bounds, count, n)
        got = exemplars.round_robin_disjoint(queue_rows, bounds, count)
        np.testing.assert_array_equal(got, want)
    class_major = queue_rows[:40]
    assert set(class_major) != set(exemplars.round_robin(queue_rows, bounds, 40, n))


def test_class_balanced_single_label_matches_the_multi_label_path() -> None:
    """select_class_balanced on single-label rows (the vectorised turns) picks what the same
    rows give through the general path (one unlabelled row added, so the general path runs
    for it too)."""
    rng = np.random.default_rng(5)
    n, c = 200, 5
    lists = [[int(k)] for k in rng.integers(0, c, n)]
    single = ClassLists.from_lists(lists, c)
    both = ClassLists.from_lists(lists + [[0, 1]], c)  # one row in two queues: the loop
    for count in (10, 57, 200):
        got = exemplars.select_class_balanced(single, count, np.random.default_rng(9))
        order = np.random.default_rng(9).permutation(n)
        position = np.empty(n, dtype=np.int64)
        position[order] = np.arange(n)
        rows = single.row_of_entry()
        by_class = np.lexsort((position[rows], single.classes))
        bounds = np.r_[np.flatnonzero(np.r_[True, np.diff(single.classes[by_class]) != 0]),
                       single.nnz]
        want = np.sort(exemplars.round_robin(rows[by_class], bounds, count, n))
        np.testing.assert_array_equal(got, want)
    assert len(exemplars.select_class_balanced(both, 57, np.random.default_rng(9))) == 57


# --------------------------------------------------------------------------- RBF map


@pytest.mark.parametrize("grow", [False, True])
def test_rbf_map_equals_the_textbook_kernel(grow: bool) -> None:
    """Φ of the RBF map (kernel columns written by the GEMM into Φ, the elementwise passes over
    the whole buffer) against exp(−‖x − a‖²/2σ²) − mean from pairwise differences, bias 1;
    with growth, the grown columns too (mean 0). A variant that forgets the kernel mean
    differs."""
    rng = np.random.default_rng(17)
    x0 = rng.standard_normal((60, 5))
    fm = fit_feature_map("rbf", x0, 20, 0, 0.9)
    x = rng.standard_normal((40, 5)) * (4.0 if grow else 1.0)
    if grow:
        fm, phi = map_and_grow(fm, x, NUMPY, 10, 0.9, np.random.default_rng(2))
        assert fm.anchors.shape[0] > 20
    else:
        phi = apply_feature_map(fm, x, NUMPY)
    sq = ((x[:, None, :] - fm.anchors[None, :, :]) ** 2).sum(axis=2)
    want = np.exp(-sq / (2 * fm.sigma ** 2)) - fm.mean
    np.testing.assert_allclose(phi[:, :-1], want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(phi[:, -1], 1.0)
    assert not np.allclose(phi[:, :-1], want + fm.mean, rtol=0, atol=1e-6)
