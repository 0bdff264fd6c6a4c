"""The array backend: NumPy/CuPy choice and NumPy–CuPy parity of a whole stream of rounds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hashstream.solver.backend import Backend, BackendUnavailable, cupy_available, get_backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.round import encode, learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

HAS_CUPY = cupy_available()
CL = ClassLists.from_dense

BACKENDS = [
    "numpy",
    pytest.param("cupy", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not HAS_CUPY,
                                                   reason="CuPy or a CUDA device is missing")]),
]


def _run(backend: Backend, chunks: list[tuple[Any, Any]], cfg: SDOHSettings,
         queries: np.ndarray) -> tuple[list[np.ndarray], dict[str, np.ndarray], np.ndarray]:
    state: SDOHState | None = None
    codes = []
    for x, lab in chunks:
        res = learn_chunk(state, backend.asarray(x), CL(lab), cfg, backend)
        assert isinstance(res.codes, np.ndarray)  # codes come back to the host
        state = res.state
        codes.append(res.codes)
    assert state is not None
    return codes, state.to_arrays(backend), encode(state, backend.asarray(queries), backend)


# Each round option with a backend-specific code path: the feature maps (RBF with and without
# anchor growth), the exemplar policies (the condensed one runs its own descent), the old-data
# weight, multi-label rows and a code length that is not a power of two.
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "defaults": ({}, {}),
    "identity": ({"feature_map": "identity"}, {}),
    "rbf without growth": ({"anchor_growth": "off", "n_anchors": 60}, {}),
    "nearest_center, paper weight": ({"exemplar_policy": "nearest_center",
                                      "old_weight": "paper", "exemplar_keep": "random"}, {}),
    "condensed": ({"exemplar_policy": "condensed", "condensed_per_class": 4,
                   "condensed_steps": 20}, {}),
    "multi-label, 24 bits": ({"bits": 24}, {"multilabel": True}),
}


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_backend_parity(name: str, config: str, make_stream: Any) -> None:
    """The same chunks through learn_chunk on NumPy float64 and on ``name`` in float64.

    A sign taken at an exact tie (a DCC column or φP entry that is 0 up to rounding) may flip
    between backends, whose BLAS sums in different orders, so codes must agree on ≥ 99 % of
    bits rather than all of them; P must agree to 1e-6 relative.
    """
    settings, data = CONFIGS[config]
    stream = make_stream(30, n_classes=5, dim=24, n_chunks=3, chunk=150, n_queries=80, **data)
    cfg = SDOHSettings(**{"bits": 32, "n1": 40, "n2": 40, "seed": 30, **settings})
    reference = get_backend("numpy")
    other = get_backend(name, dtype="float64")  # type: ignore[arg-type]
    assert other.name == name
    assert other.dtype == np.float64
    ref_codes, ref_state, ref_q = _run(reference, stream.chunks, cfg, stream.query_features)
    codes, state, q = _run(other, stream.chunks, cfg, stream.query_features)
    for a, b in zip(ref_codes, codes, strict=True):
        assert a.shape == b.shape and b.dtype == np.int8
        assert (a == b).mean() >= 0.99
    p_ref, p = ref_state["projection"], state["projection"]
    assert np.linalg.norm(p - p_ref) <= 1e-6 * np.linalg.norm(p_ref)
    assert (ref_q == q).mean() >= 0.99
    assert q.dtype == np.int8 and set(np.unique(q)) <= {-1, 1}
    assert state.keys() == ref_state.keys()
    for key in ("centers", "exemplar_label_indptr", "exemplar_label_classes"):
        np.testing.assert_array_equal(state[key], ref_state[key])


@pytest.mark.parametrize("beta", [1.0, 10.0])
def test_rounds_stable_under_rounding_noise(make_stream: Any, beta: float) -> None:
    """CPU stand-in for backend parity: a 1e-14 relative change of the features (the size of
    the differences between two BLAS libraries) must not change the learned codes or P.

    LIBRARY BUG (sdoh_hc.orthogonal_balanced): once codes collapse onto class codes, Z̄ is rank
    deficient and the V-step completes V with the eigenvectors eigh returns for the zero
    eigenvalues (an arbitrary basis) and with a Householder QR whose column signs follow the
    sign of entries that are 0 up to rounding; V then changes by O(1) under rounding noise, and
    so do the codes of this and every later round (measured: up to 8 % of bits, P off by 30 %).
    """
    stream = make_stream(30, n_classes=5, dim=24, n_chunks=3, chunk=150, n_queries=80)
    cfg = SDOHSettings(bits=32, n1=40, n2=40, seed=30, beta=beta)
    backend = get_backend("numpy")
    rng = np.random.default_rng(1)
    noisy = [(x * (1 + 1e-14 * rng.standard_normal(x.shape)), lab) for x, lab in stream.chunks]
    ref_codes, ref_state, ref_q = _run(backend, stream.chunks, cfg, stream.query_features)
    codes, state, q = _run(backend, noisy, cfg, stream.query_features)
    for a, b in zip(ref_codes, codes, strict=True):
        assert (a == b).mean() >= 0.99
    p_ref, p = ref_state["projection"], state["projection"]
    assert np.linalg.norm(p - p_ref) <= 1e-6 * np.linalg.norm(p_ref)
    assert (ref_q == q).mean() >= 0.99


def test_auto_backend_without_cupy() -> None:
    backend = get_backend("auto")
    if HAS_CUPY:
        assert backend.name == "cupy"
        assert backend.dtype == np.float32
    else:
        assert backend.name == "numpy"
        assert backend.xp is np
        assert backend.dtype == np.float64
    assert get_backend("numpy", dtype="float32").dtype == np.float32
    arr = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(backend.to_numpy(backend.asarray(arr)), arr)


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is available here")
def test_cupy_backend_unavailable_raises() -> None:
    with pytest.raises(BackendUnavailable, match="cupy"):
        get_backend("cupy")


def test_unknown_backend_raises() -> None:
    with pytest.raises(ValueError, match="backend"):
        get_backend("torch")  # type: ignore[arg-type]


def test_numpy_cho_solve() -> None:
    rng = np.random.default_rng(31)
    m = rng.standard_normal((7, 7))
    a = m @ m.T + np.eye(7)
    b = rng.standard_normal((7, 3))
    x = get_backend("numpy").cho_solve(a, b)
    np.testing.assert_allclose(a @ x, b, rtol=1e-10, atol=1e-10)
