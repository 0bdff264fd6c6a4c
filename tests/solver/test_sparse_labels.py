"""Labels as class lists in the round: memory independent of c², states stored by the dense
code still load and continue the stream exactly."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.round import learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

DATA = Path(__file__).parent / "data"
N_CLASSES = 5000
PEAK_LIMIT_MB = 60  # a dense c × c float64 alone would be 200 MB, a dense L̂ (n × c) 80 MB


@pytest.mark.parametrize("distinct", [None, 10])
def test_many_classes_memory_is_bounded(np_backend: Backend, distinct: int | None) -> None:
    """A 2,000-item chunk (d = 32, 16 bits) with single labels over 5,000 classes (spread
    over all of them, or only 10 distinct class numbers up to 4,999): two rounds stay under
    a small traced peak, and the objective still never rises."""
    rng = np.random.default_rng(0)
    cfg = SDOHSettings(bits=16, feature_map="identity", seed=0)
    n = 2000
    pool = np.r_[np.arange(9) * 500, N_CLASSES - 1]
    chunks = []
    for _ in range(2):
        cls = rng.integers(0, N_CLASSES, n) if distinct is None else pool[rng.integers(0, 10, n)]
        chunks.append((rng.standard_normal((n, 32)), ClassLists(np.arange(n + 1), cls,
                                                                  N_CLASSES)))
    tracemalloc.start()
    try:
        state = None
        results = []
        for x, labels in chunks:
            res = learn_chunk(state, x, labels, cfg, np_backend, trace=True)
            state = res.state
            results.append(res)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT_MB * 2**20, f"peak traced memory {peak / 2**20:.1f} MB"
    assert state is not None and state.n_classes == N_CLASSES
    assert isinstance(state.label_gram, sp.csr_array)
    assert state.label_gram.nnz <= (10 if distinct else N_CLASSES)
    assert results[1].loss["old"] > 0 and results[1].loss["exemplar"] > 0
    for res in results:
        values = [v for _, v in res.trace]
        assert all(b <= a + 1e-9 * abs(a) for a, b in zip(values, values[1:], strict=False))


def test_state_stored_by_the_dense_code_continues_exactly(np_backend: Backend) -> None:
    """``dense_label_state.npz`` was written by the code before class lists (dense c × c
    ``label_gram``, dense nq × c ``exemplar_labels``) with the next chunk and what that code
    learned from it (multi-label, lemon similarity, nearest_center exemplars). The state
    loads, and the next round gives the same codes, loss and label statistics."""
    with np.load(DATA / "dense_label_state.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    stored = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("state/")}
    assert "label_gram" in stored and "exemplar_labels" in stored
    state = SDOHState.from_arrays(stored)
    np.testing.assert_array_equal(state.label_gram.toarray(), stored["label_gram"])
    assert state.exemplar_labels == ClassLists.from_dense(stored["exemplar_labels"])
    # stored again, it is in the new form, and reads back to the same state
    again = state.to_arrays()
    assert "label_gram" not in again and "exemplar_labels" not in again
    assert {"label_gram_indptr", "label_gram_indices", "label_gram_data",
            "exemplar_label_indptr", "exemplar_label_classes",
            "exemplar_label_n_classes"} <= again.keys()
    back = SDOHState.from_arrays(again)
    assert all(np.array_equal(v, back.to_arrays()[k]) for k, v in again.items())

    cfg = SDOHSettings(bits=8, n1=10, n2=10, feature_map="identity", old_similarity="lemon",
                       exemplar_policy="nearest_center", exemplar_keep="random",
                       term_scaling="paper", seed=40)  # the settings that code had
    res = learn_chunk(state, arrays["chunk/features"],
                      ClassLists.from_dense(arrays["chunk/labels"]), cfg, np_backend)
    np.testing.assert_array_equal(res.codes, arrays["expect/codes"])
    loss = np.array([res.loss[str(k)] for k in arrays["expect/loss_keys"]])
    np.testing.assert_allclose(loss, arrays["expect/loss"], rtol=1e-9)
    np.testing.assert_array_equal(res.state.exemplar_labels.to_dense(),
                                  arrays["expect/exemplar_labels"])
    np.testing.assert_allclose(res.state.label_gram.toarray(), arrays["expect/label_gram"],
                               rtol=1e-12, atol=1e-12)
