"""The SDOH-HC round's purity and determinism: same seed same result, inputs untouched, the
state's round trip, and pure feature maps and encoding."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from support.sdoh_round import CL, run_stream, state_arrays_equal

from hashstream.solver.backend import Backend
from hashstream.solver.feature_map import apply_feature_map, fit_feature_map
from hashstream.solver.sdoh_hc.round import encode, learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

# --------------------------------------------------------------------------- determinism


def test_same_seed_same_result_different_seed_different_codes(np_backend: Backend,
                                                               make_stream: Any) -> None:
    stream = make_stream(11, n_classes=5, dim=16, n_chunks=3, chunk=70)
    cfg = SDOHSettings(bits=16, n1=25, n2=25, seed=1)
    a = run_stream(stream.chunks, cfg, np_backend, trace=False)
    b = run_stream(stream.chunks, cfg, np_backend, trace=False)
    c = run_stream(stream.chunks, replace(cfg, seed=2), np_backend, trace=False)
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra.codes, rb.codes)
        assert state_arrays_equal(ra.state, rb.state)
        assert ra.loss == rb.loss
    # Round 1's codes may all sit on the (seed-free) centers; the exemplar draw is seeded.
    assert not state_arrays_equal(a[0].state, c[0].state)


@pytest.mark.parametrize("feature_dtype", [np.float64, np.float32])
def test_inputs_not_mutated(np_backend: Backend, make_stream: Any, feature_dtype: Any) -> None:
    stream = make_stream(12, n_classes=4, dim=12, n_chunks=3, chunk=60)
    cfg = SDOHSettings(bits=16, n1=20, n2=20, feature_map="rbf", n_anchors=25, seed=12)
    state: SDOHState | None = None
    for x, lab in stream.chunks:
        x = x.astype(feature_dtype)
        x_copy, lab_copy = x.copy(), lab.copy()
        before = state.to_arrays() if state is not None else None
        before_copy = ({k: v.copy() for k, v in before.items()} if before is not None else None)
        res = learn_chunk(state, x, CL(lab), cfg, np_backend, trace=True)
        np.testing.assert_array_equal(x, x_copy)
        np.testing.assert_array_equal(lab, lab_copy)
        if state is not None:
            assert before_copy is not None
            after = state.to_arrays()
            for k, v in before_copy.items():
                np.testing.assert_array_equal(after[k], v, err_msg=k)
            q = stream.query_features[:10].astype(feature_dtype)
            q_copy = q.copy()
            encode(state, q, np_backend)
            np.testing.assert_array_equal(q, q_copy)
        state = res.state


@pytest.mark.parametrize("feature_map", ["identity", "rbf"])
def test_state_round_trip(np_backend: Backend, make_stream: Any, tmp_path: Any,
                          feature_map: str) -> None:
    stream = make_stream(13, n_classes=5, dim=12, n_chunks=3, chunk=60)
    cfg = SDOHSettings(bits=16, n1=20, n2=20, feature_map=feature_map, n_anchors=30, seed=13)
    results = run_stream(stream.chunks[:2], cfg, np_backend, trace=False)
    state = results[-1].state
    arrays = state.to_arrays()
    restored = SDOHState.from_arrays(arrays)
    assert state_arrays_equal(state, restored)
    assert restored.round == state.round == 2
    assert restored.n_seen == state.n_seen and restored.dim == state.dim
    assert restored.feature_map.kind == feature_map
    # through an .npz file as well
    path = tmp_path / "state.npz"
    np.savez(path, **arrays)
    with np.load(path, allow_pickle=False) as z:
        from_file = SDOHState.from_arrays({k: z[k] for k in z.files})
    assert state_arrays_equal(state, from_file)

    x, lab = stream.chunks[2]
    a = learn_chunk(state, x, CL(lab), cfg, np_backend)
    b = learn_chunk(restored, x, CL(lab), cfg, np_backend)
    c = learn_chunk(from_file, x, CL(lab), cfg, np_backend)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.codes, c.codes)
    assert state_arrays_equal(a.state, b.state)
    assert state_arrays_equal(a.state, c.state)
    np.testing.assert_array_equal(encode(state, stream.query_features, np_backend),
                                  encode(from_file, stream.query_features, np_backend))


def test_from_arrays_rejects_unknown_feature_map(np_backend: Backend) -> None:
    rng = np.random.default_rng(0)
    res = learn_chunk(None, rng.standard_normal((40, 5)), CL(np.eye(2)[rng.integers(0, 2, 40)]),
                      SDOHSettings(bits=8, n1=5, n2=5), np_backend)
    arrays = res.state.to_arrays()
    arrays["feature_map_kind"] = np.frombuffer(b"bogus", dtype=np.uint8).copy()
    with pytest.raises(ValueError, match="bogus"):
        SDOHState.from_arrays(arrays)


# --------------------------------------------------------------------------- feature maps


@pytest.mark.parametrize(("n", "n_anchors", "m"), [(100, 30, 31), (50, 50, 51), (20, 64, 21)])
def test_rbf_feature_map_shape_and_purity(np_backend: Backend, n: int, n_anchors: int,
                                          m: int) -> None:
    rng = np.random.default_rng(14)
    x = rng.standard_normal((n, 7))
    params = fit_feature_map("rbf", x, n_anchors, seed=14)
    assert params.kind == "rbf"
    assert params.anchors.shape == (min(n, n_anchors), 7)
    assert params.output_dim(7) == m
    assert params.sigma > 0
    # anchors are rows of the first chunk
    assert all((np.abs(x - a).sum(axis=1) == 0).any() for a in params.anchors)
    phi = apply_feature_map(params, x, np_backend)
    assert phi.shape == (n, m)
    np.testing.assert_array_equal(phi[:, -1], 1.0)
    # the frozen mean centres the first chunk's kernel columns
    np.testing.assert_allclose(phi[:, :-1].mean(axis=0), 0, atol=1e-12)
    q = rng.standard_normal((9, 7)) * 2
    batch = apply_feature_map(params, q, np_backend)
    for i in range(q.shape[0]):
        # a row alone and in a batch go through different BLAS kernels: equal up to rounding
        np.testing.assert_allclose(apply_feature_map(params, q[i:i + 1], np_backend)[0],
                                   batch[i], rtol=1e-12, atol=1e-14)
    # nothing in φ depends on the other rows: a batch of the query twice, or reversed
    np.testing.assert_allclose(apply_feature_map(params, q[::-1], np_backend), batch[::-1],
                               rtol=1e-12, atol=1e-14)


def test_identity_feature_map(np_backend: Backend) -> None:
    x = np.random.default_rng(15).standard_normal((12, 5))
    x[3] = 0.0  # a zero row stays zero
    params = fit_feature_map("identity", x, 100, seed=0)
    assert params.output_dim(5) == 6
    phi = apply_feature_map(params, x, np_backend)
    norms = np.linalg.norm(phi[:, :-1], axis=1)
    np.testing.assert_allclose(np.delete(norms, 3), 1.0)
    np.testing.assert_array_equal(phi[3, :-1], 0.0)
    np.testing.assert_array_equal(phi[:, -1], 1.0)


def test_unknown_feature_map_raises() -> None:
    with pytest.raises(ValueError):
        fit_feature_map("poly", np.ones((4, 2)), 3, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("feature_map", ["identity", "rbf"])
def test_encode_is_pure_and_signed(np_backend: Backend, make_stream: Any,
                                   feature_map: str) -> None:
    stream = make_stream(16, n_classes=4, dim=12, n_chunks=2, chunk=80, n_queries=40)
    cfg = SDOHSettings(bits=24, n1=20, n2=20, feature_map=feature_map, n_anchors=40, seed=16)
    state = run_stream(stream.chunks, cfg, np_backend, trace=False)[-1].state
    codes = encode(state, stream.query_features, np_backend)
    assert codes.shape == (40, 24)
    assert codes.dtype == np.int8
    assert set(np.unique(codes)) == {-1, 1}
    for i in range(0, 40, 7):
        np.testing.assert_array_equal(
            encode(state, stream.query_features[i:i + 1], np_backend)[0], codes[i])
    # reversed batch order gives the same codes per row
    np.testing.assert_array_equal(encode(state, stream.query_features[::-1], np_backend),
                                  codes[::-1])
