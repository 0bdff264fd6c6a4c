"""The SDOH-HC round as classes grow: class-incremental growth of c, multi-label chunks."""

from __future__ import annotations

from typing import Any

import numpy as np
from support.sdoh_round import CL, assert_non_increasing, run_stream

from hashstream.solver.backend import Backend
from hashstream.solver.hadamard import hadamard_centers
from hashstream.solver.sdoh_hc.round import grow_classes, learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings

# --------------------------------------------------------------------------- classes


def test_class_incremental_growth(np_backend: Backend) -> None:
    rng = np.random.default_rng(9)
    cfg = SDOHSettings(bits=16, n1=20, n2=25, seed=9)
    x1 = rng.standard_normal((60, 10))
    lab1 = np.eye(3)[rng.integers(0, 3, 60)]
    r1 = learn_chunk(None, x1, CL(lab1), cfg, np_backend)
    assert r1.state.n_classes == 3
    np.testing.assert_array_equal(r1.state.centers, hadamard_centers(16, 3, 9))

    grown = grow_classes(r1.state, 5, cfg.seed, np_backend)
    np.testing.assert_array_equal(grown.centers, hadamard_centers(16, 5, 9))
    np.testing.assert_array_equal(grown.teacher[:3], r1.state.teacher)
    np.testing.assert_array_equal(grown.teacher[3:], hadamard_centers(16, 5, 9)[:, 3:].T)
    np.testing.assert_array_equal(grown.h1[:3], r1.state.h1)
    np.testing.assert_array_equal(grown.h1[3:], 0)
    gram = grown.label_gram.toarray()
    np.testing.assert_array_equal(gram[:3, :3], r1.state.label_gram.toarray())
    assert grown.label_gram.shape == (5, 5)
    assert not gram[3:].any() and not gram[:, 3:].any()
    np.testing.assert_array_equal(grown.label_sum[:3], r1.state.label_sum)
    np.testing.assert_array_equal(grown.label_sum[3:], 0)
    grown_ex = grown.exemplar_labels.to_dense()
    assert grown_ex.shape == (r1.state.exemplar_labels.n, 5)
    np.testing.assert_array_equal(grown_ex[:, :3], r1.state.exemplar_labels.to_dense())
    np.testing.assert_array_equal(grown_ex[:, 3:], 0)
    np.testing.assert_array_equal(grown.h2, r1.state.h2)
    assert grow_classes(r1.state, 2, cfg.seed, np_backend) is r1.state

    x2 = rng.standard_normal((60, 10))
    lab2 = np.eye(5)[rng.integers(0, 5, 60)]
    r2 = learn_chunk(r1.state, x2, CL(lab2), cfg, np_backend)
    st2 = r2.state
    assert st2.n_classes == 5
    np.testing.assert_array_equal(st2.centers, hadamard_centers(16, 5, 9))
    assert st2.teacher.shape == (5, 16)
    assert st2.h1.shape == (5, 16) and st2.label_gram.shape == (5, 5)
    kept = min(cfg.n1, r1.state.exemplar_codes.shape[0])
    st2_ex = st2.exemplar_labels.to_dense()
    assert st2_ex.shape == (kept + cfg.n2, 5)
    # exemplars kept from round 1 had only three classes: their new columns are zero
    np.testing.assert_array_equal(st2_ex[:kept, 3:], 0)
    assert st2_ex[kept:, 3:].any()

    # fewer label columns than the model has classes are padded, c does not shrink
    lab3 = np.eye(2)[rng.integers(0, 2, 60)]
    r3 = learn_chunk(st2, rng.standard_normal((60, 10)), CL(lab3), cfg, np_backend)
    assert r3.state.n_classes == 5
    assert r3.state.exemplar_labels.n_classes == 5


def test_multilabel_chunk(np_backend: Backend, make_stream: Any) -> None:
    stream = make_stream(10, n_classes=6, dim=20, n_chunks=3, chunk=80, multilabel=True,
                         class_incremental=False)
    assert all((lab.sum(axis=1) >= 2).all() and (lab.sum(axis=1) <= 3).all()
               for _, lab in stream.chunks)
    cfg = SDOHSettings(bits=16, n1=30, n2=30, seed=10)
    for res, (x, _) in zip(run_stream(stream.chunks, cfg, np_backend), stream.chunks,
                           strict=True):
        assert res.codes.shape == (x.shape[0], 16)
        assert res.codes.dtype == np.int8
        assert set(np.unique(res.codes)) == {-1, 1}
        assert np.isfinite(res.loss["total"])
        assert_non_increasing(res.trace)
    # exemplar labels keep the rows' several labels
    assert (res.state.exemplar_labels.counts() >= 2).all()
