"""The ``condensed`` exemplar policy (IEM-style distribution matching, issue 7)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.sdoh_round import assert_non_increasing, run_stream

from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.condensation import (
    CondenseConfig,
    class_budgets,
    condense_exemplars,
    embedding_mean_gap,
)
from hashstream.solver.sdoh_hc.exemplars import select_exemplars
from hashstream.solver.sdoh_hc.round import learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

REPO = Path(__file__).resolve().parents[2]
RTOL = 1e-9
CL = ClassLists.from_dense


def _clusters(seed: int, n_per_class: int = 300, c: int = 3, d: int = 16
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class a mixture of two Gaussian blobs of different size (not one Gaussian), on a
    raw scale far from unit (pixel-like, 0–255 after clipping); plus random ±1 centers."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(c):
        for blob, share in ((0, 0.7), (1, 0.3)):
            m = int(n_per_class * share)
            mean = 128 + 40 * rng.standard_normal(d)
            scale = 15 if blob == 0 else 30
            xs.append(mean + scale * rng.standard_normal((m, d)))
            ys.append(np.full(m, k))
    x = np.clip(np.vstack(xs), 0, 255)
    y = np.concatenate(ys)
    order = rng.permutation(len(y))
    centers = np.where(rng.random((c, 8)) < 0.5, -1, 1).astype(np.int8)
    return x[order], np.eye(c, dtype=np.uint8)[y[order]], centers


# --------------------------------------------------------------------------- the matching


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_condensation_moves_embedding_means_toward_real(seed: int) -> None:
    """Measured under fresh random networks (not the ones used for training, no perturbation
    and no augmentation): the relative gap between the class means of the synthetic and the
    real embeddings falls clearly below the gap of the starting point (a random sample)."""
    x, lab, centers = _clusters(seed)
    count = 12  # 4 per class
    before = condense_exemplars(x, CL(lab), centers, count, np.random.default_rng(seed),
                                config=CondenseConfig(steps=0))
    after = condense_exemplars(x, CL(lab), centers, count, np.random.default_rng(seed))
    gap_before = embedding_mean_gap(x, CL(lab), before[0], before[1], seed=999 + seed)
    gap_after = embedding_mean_gap(x, CL(lab), after[0], after[1], seed=999 + seed)
    assert gap_after < 0.5 * gap_before, (gap_before, gap_after)
    # the starting point is a random sample of each class's rows, the result is not
    x32 = x.astype(np.float32)
    assert all((x32 == row).all(axis=1).any() for row in before[0])
    assert not np.array_equal(before[0], after[0])


def test_gap_is_zero_for_the_real_set_itself() -> None:
    x, lab, _ = _clusters(5)
    assert embedding_mean_gap(x, CL(lab), x, CL(lab)) == pytest.approx(0.0, abs=1e-10)


def test_matching_without_augmentation_also_converges() -> None:
    """Plain DM (no network or data augmentation) is the ablation; it decreases the gap too."""
    x, lab, centers = _clusters(3)
    plain = CondenseConfig(perturb=0, noise=0, mask=0, mix_prob=0)
    before = condense_exemplars(x, CL(lab), centers, 12, np.random.default_rng(3),
                                config=CondenseConfig(steps=0))
    after = condense_exemplars(x, CL(lab), centers, 12, np.random.default_rng(3), config=plain)
    assert (embedding_mean_gap(x, CL(lab), after[0], after[1])
            < 0.5 * embedding_mean_gap(x, CL(lab), before[0], before[1]))


def test_same_seed_same_exemplars_other_seed_others() -> None:
    x, lab, centers = _clusters(4)
    a = condense_exemplars(x, CL(lab), centers, 10, np.random.default_rng(7))
    b = condense_exemplars(x, CL(lab), centers, 10, np.random.default_rng(7))
    c = condense_exemplars(x, CL(lab), centers, 10, np.random.default_rng(8))
    for u, v in ((a[0], b[0]), (a[2], b[2])):
        assert u.dtype == v.dtype and u.tobytes() == v.tobytes()
    assert a[1] == b[1]
    assert not np.array_equal(a[0], c[0])


def test_shapes_labels_codes_and_range() -> None:
    x, lab, centers = _clusters(6, c=4)
    lab[:5] = 0  # unlabelled rows are not condensed
    x_in, lab_in, centers_in = x.copy(), lab.copy(), centers.copy()
    feats, lists, codes = condense_exemplars(x, CL(lab), centers, 10, np.random.default_rng(0),
                                             config=CondenseConfig(steps=20))
    labels = lists.to_dense()
    # nothing passed in is mutated
    np.testing.assert_array_equal(x, x_in)
    np.testing.assert_array_equal(lab, lab_in)
    np.testing.assert_array_equal(centers, centers_in)
    assert feats.shape == (10, 16) and feats.dtype == np.float32
    assert labels.shape == (10, 4) and labels.dtype == np.uint8
    assert codes.shape == (10, 8) and codes.dtype == np.int8
    assert (labels.sum(axis=1) == 1).all()
    cls = labels.argmax(axis=1)
    assert cls.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]  # grouped by class, 10 over 4 classes
    np.testing.assert_array_equal(codes, centers[cls])  # each code is its class's center row
    assert np.isfinite(feats).all()
    assert (feats >= x.min(axis=0) - 1e-3).all() and (feats <= x.max(axis=0) + 1e-3).all()


def test_per_class_cap_and_empty_chunk_classes() -> None:
    x, lab, centers = _clusters(7, c=3)
    feats, lists, codes = condense_exemplars(x, CL(lab), centers, 100, np.random.default_rng(0),
                                             per_class=2, config=CondenseConfig(steps=3))
    labels = lists.to_dense()
    assert labels.sum(axis=0).tolist() == [2, 2, 2] and feats.shape[0] == codes.shape[0] == 6
    none = condense_exemplars(x, CL(np.zeros_like(lab)), centers, 10, np.random.default_rng(0))
    assert [none[0].shape, none[1].to_dense().shape, none[2].shape] == [(0, 16), (0, 3), (0, 8)]


def test_multilabel_rows_count_for_each_class() -> None:
    x, lab, centers = _clusters(8, c=3)
    lab[:, 2] = 0
    lab[:40, 2] = 1  # class 2 only through multi-label rows that also carry class 0 or 1
    feats, lists, _ = condense_exemplars(x, CL(lab), centers, 9, np.random.default_rng(1),
                                         config=CondenseConfig(steps=5))
    labels = lists.to_dense()
    assert labels.sum(axis=0).tolist() == [3, 3, 3]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(sizes=st.lists(st.integers(0, 30), min_size=1, max_size=8), count=st.integers(0, 120),
       per_class=st.integers(0, 10))
def test_class_budgets_split_evenly_under_caps(sizes: list[int], count: int,
                                               per_class: int) -> None:
    arr = np.asarray(sizes)
    caps = np.minimum(arr, per_class) if per_class > 0 else arr
    b = class_budgets(arr, count, per_class)
    assert b.sum() == min(count, caps.sum())
    assert (b >= 0).all() and (b <= caps).all()
    # even split: a class below its cap has at least as many as any other class, minus one
    below = b < caps
    if below.any():
        assert b[below].min() >= b.max() - 1


def test_select_exemplars_refuses_condensed() -> None:
    lab = np.eye(2)[[0, 1, 0]]
    with pytest.raises(ValueError, match="condensed"):
        select_exemplars("condensed", lab, np.ones((3, 4)), np.ones((2, 4)), 2,
                         np.random.default_rng(0))


def test_settings_accept_condensed_and_check_its_options() -> None:
    cfg = SDOHSettings(exemplar_policy="condensed", condensed_per_class=5, condensed_steps=7)
    assert SDOHSettings.from_dict(cfg.as_dict()) == cfg
    with pytest.raises(ValueError):
        SDOHSettings(condensed_per_class=-1)
    with pytest.raises(ValueError):
        SDOHSettings(condensed_steps=-1)
    with pytest.raises(ValueError):
        CondenseConfig(mask=1.0)


def test_cli_and_api_accept_condensed() -> None:
    from hashstream.api.schemas import CreateIndex
    from hashstream.cli.main import build_parser

    args = build_parser().parse_args(["eval", "--data", "x.npz", "--exemplar-policy",
                                      "condensed", "--condensed-per-class", "3",
                                      "--condensed-steps", "9"])
    assert (args.exemplar_policy, args.condensed_per_class, args.condensed_steps) == (
        "condensed", 3, 9)
    body = CreateIndex(name="a", dim=4, exemplar_policy="condensed", condensed_steps=5)
    cfg = SDOHSettings.from_dict(body.solver_settings())
    assert cfg.exemplar_policy == "condensed" and cfg.condensed_steps == 5


# --------------------------------------------------------------------------- in the round


def test_rounds_with_condensed_memory(np_backend: Backend, make_stream: Any) -> None:
    """End to end on a class-incremental stream: the objective trace never rises, the memory
    holds min(n1, old) kept exemplars plus the synthetic ones (one-hot labels, codes = this
    round's Y rows), the exemplar term is active, and nothing passed in is mutated."""
    stream = make_stream(11, n_classes=5, dim=12, n_chunks=4, chunk=80, n_queries=0)
    copies = [(x.copy(), lab.copy()) for x, lab in stream.chunks]
    cfg = SDOHSettings(bits=16, n1=15, n2=12, exemplar_policy="condensed",
                       condensed_steps=20, feature_map="rbf", n_anchors=30, seed=11)
    results = run_stream(stream.chunks, cfg, np_backend)
    size = 0
    for rnd, ((_x, lab), res) in enumerate(zip(stream.chunks, results, strict=True), start=1):
        assert_non_increasing(res.trace)
        assert len(res.trace) == 3 * cfg.iterations
        mem = res.state
        kept = min(cfg.n1, size)
        present = int(lab.any(axis=0).sum())
        n_new = mem.exemplar_features.shape[0] - kept
        assert n_new == min(cfg.n2, int((lab > 0).any(axis=1).sum()))
        assert present >= 1
        new_l = mem.exemplar_labels.to_dense()[kept:]
        new_c = mem.exemplar_codes[kept:]
        assert (new_l.sum(axis=1) == 1).all()
        assert set(np.flatnonzero(new_l.any(axis=0))) == set(np.flatnonzero(lab.any(axis=0)))
        np.testing.assert_array_equal(new_c, mem.teacher[new_l.argmax(axis=1)])
        assert mem.exemplar_features.dtype == np.float32
        assert mem.exemplar_codes.dtype == np.int8
        if rnd >= 2:
            assert res.loss["exemplar"] > 0
        size = mem.exemplar_features.shape[0]
    for (x, lab), (x0, lab0) in zip(stream.chunks, copies, strict=True):
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(lab, lab0)


def test_condensed_round_is_deterministic_and_state_round_trips(np_backend: Backend,
                                                                make_stream: Any) -> None:
    stream = make_stream(12, n_classes=4, dim=10, n_chunks=3, chunk=70, n_queries=0)
    cfg = SDOHSettings(bits=8, n1=10, n2=10, exemplar_policy="condensed", condensed_steps=10,
                       feature_map="identity", seed=12)
    a = run_stream(stream.chunks, cfg, np_backend)
    b = run_stream(stream.chunks, cfg, np_backend)
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra.codes, rb.codes)
        aa, bb = ra.state.to_arrays(), rb.state.to_arrays()
        assert all(aa[k].tobytes() == bb[k].tobytes() for k in aa)
    # a round from a persisted-and-restored state equals the round from the live state
    restored = SDOHState.from_arrays(a[1].state.to_arrays())
    x, lab = stream.chunks[2]
    res = learn_chunk(restored, x, CL(lab), cfg, np_backend)
    np.testing.assert_array_equal(res.codes, a[2].codes)
    np.testing.assert_array_equal(res.state.exemplar_features, a[2].state.exemplar_features)
    np.testing.assert_array_equal(res.state.exemplar_codes, a[2].state.exemplar_codes)


@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**16), bits=st.sampled_from([8, 16]), n2=st.integers(1, 40),
       per_class=st.integers(0, 5), feature_map=st.sampled_from(["identity", "rbf"]),
       multilabel=st.booleans())
def test_trace_never_increases_with_condensed(np_backend: Backend, make_stream: Any,
                                              seed: int, bits: int, n2: int, per_class: int,
                                              feature_map: str, multilabel: bool) -> None:
    stream = make_stream(seed, n_classes=4 if multilabel else 3, dim=12, n_chunks=3,
                         chunk=60, n_queries=0, multilabel=multilabel,
                         class_incremental=not multilabel)
    cfg = SDOHSettings(bits=bits, n1=20, n2=n2, exemplar_policy="condensed",
                       condensed_per_class=per_class, condensed_steps=5,
                       feature_map=feature_map, n_anchors=30, seed=seed)
    for res in run_stream(stream.chunks, cfg, np_backend):
        assert_non_increasing(res.trace)
        assert set(np.unique(res.state.exemplar_codes)) <= {-1, 1}


def test_condensed_round_does_not_import_torch() -> None:
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from hashstream.solver.backend import get_backend
        from hashstream.solver.class_lists import ClassLists
        from hashstream.solver.sdoh_hc.round import learn_chunk
        from hashstream.solver.sdoh_hc.settings import SDOHSettings
        rng = np.random.default_rng(0)
        cfg = SDOHSettings(bits=8, n2=6, exemplar_policy="condensed", condensed_steps=3,
                           feature_map="identity")
        lab = np.eye(2)[rng.integers(0, 2, 40)]
        learn_chunk(None, rng.standard_normal((40, 5)), ClassLists.from_dense(lab), cfg,
                    get_backend("numpy"))
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("mask", "mix", "noise"), [(None, False, 0.0), (0.3, True, 0.1),
                                                    (0.0, True, 0.0)])
def test_hand_written_gradient_matches_finite_differences(mask: float | None, mix: bool,
                                                          noise: float) -> None:
    """The manual backward pass (both ReLUs, masking, within-class mixing) is the gradient
    of the matching loss: central differences along random directions, in float64."""
    from hashstream.solver.sdoh_hc.condensation import _Aug, matching_loss_grad, random_network

    rng = np.random.default_rng(0)
    d, k = 9, 6
    net = random_network(d, 32, 16, 0.1, rng)
    keep = None if mask is None else (rng.random(d) >= mask).astype(np.float32)
    aug = _Aug(keep, mix, noise)
    syn = rng.standard_normal((k, d))
    mu_real = net.forward(rng.standard_normal((50, d)))[0].mean(axis=0).astype(np.float64)
    _, grad = matching_loss_grad(net, aug, mu_real, syn, np.random.default_rng(5))
    for trial in range(5):
        v = np.random.default_rng(100 + trial).standard_normal((k, d))
        eps = 1e-5
        up, _ = matching_loss_grad(net, aug, mu_real, syn + eps * v, np.random.default_rng(5))
        down, _ = matching_loss_grad(net, aug, mu_real, syn - eps * v, np.random.default_rng(5))
        numeric = (up - down) / (2 * eps)
        assert float((grad * v).sum()) == pytest.approx(numeric, rel=1e-4, abs=1e-9)
