"""Term scaling: a weight means the same pull at any chunk size, and every term does work."""

from __future__ import annotations

import numpy as np
import pytest
from support.data import gaussian_stream

from hashstream.service.registry import IndexConfig
from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.round import learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.term_weights import term_weights


def _duplicated_round(np_backend: Backend, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """Round 2 on a chunk, and round 2 on the same chunk with every item twice."""
    stream = gaussian_stream(5, n_classes=5, dim=16, n_chunks=2, chunk=150, multilabel=True,
                             class_incremental=False, grow_labels=False, noise=1.5)
    cfg = SDOHSettings(bits=16, n1=40, n2=40, feature_map="identity", term_scaling=scaling,
                       seed=5)  # type: ignore[arg-type]
    (x1, l1), (x2, l2) = stream.chunks
    state = learn_chunk(None, x1, ClassLists.from_dense(l1), cfg, np_backend).state
    once = learn_chunk(state, x2, ClassLists.from_dense(l2), cfg, np_backend).codes
    twice = learn_chunk(state, np.vstack([x2, x2]), ClassLists.from_dense(np.vstack([l2, l2])),
                        cfg, np_backend).codes
    return once, twice


def test_normalized_weights_do_not_depend_on_the_chunk_size(np_backend: Backend) -> None:
    """Every item of a chunk twice: under ``normalized`` each term's pull doubles alike, so
    both copies get the codes the single chunk got. Under ``paper`` the old-data term (weight
    n/N_old) doubles its pull against the others and the codes move."""
    once, twice = _duplicated_round(np_backend, "normalized")
    n = once.shape[0]
    np.testing.assert_array_equal(twice[:n], once)
    np.testing.assert_array_equal(twice[n:], once)
    once_p, twice_p = _duplicated_round(np_backend, "paper")
    assert (twice_p[:n] != once_p).any()


@pytest.mark.parametrize("n", [150, 2000, 20000])
def test_pulls_per_entry_equal_the_weights(n: int) -> None:
    """The multipliers give the documented pulls: on B, α r (old: H1's rows sum N_old/c
    codes), β r and η r; on Y, θ r n/c for the Hadamard term, δ r n/c for the distillation
    term (its Q is r·KỸ, entries 2), η r n/c for the center term."""
    r, c, n_old, nq = 32, 10, 7 * n, 1500
    s = SDOHSettings(bits=r, theta=0.3, eta=1.7, beta=0.05, alpha=40.0, gamma=60.0, delta=0.2)
    w = term_weights(s, n=n, r=r, c=c, n_old=n_old, n_exemplars=nq)
    assert w.old * r * n_old / c == pytest.approx(s.alpha * r)
    assert w.exemplar * r * nq / c == pytest.approx(s.gamma * r)
    assert w.quantization == pytest.approx(s.beta * r)
    assert w.center * r == pytest.approx(s.eta * r)
    assert w.hadamard == pytest.approx(s.theta * r * n / c)
    assert w.distillation * r * 2 == pytest.approx(s.delta * r * n / c)
    assert w.center * r * n / c == pytest.approx(s.eta * r * n / c)


def test_switched_off_terms_and_empty_memories_weigh_nothing() -> None:
    s = SDOHSettings(bits=16, use_hadamard_term=False, use_distillation=False)
    w = term_weights(s, n=100, r=16, c=4, n_old=0, n_exemplars=0)
    assert (w.old, w.exemplar, w.hadamard, w.distillation) == (0.0, 0.0, 0.0, 0.0)
    assert w.center > 0 and w.quantization > 0


@pytest.mark.parametrize("switch", ["use_old_term", "use_exemplar_term", "use_distillation",
                                    "use_hadamard_term", "use_center_term"])
def test_every_term_changes_the_codes_on_multi_label_data(np_backend: Backend,
                                                          switch: str) -> None:
    """Switching any one term off changes the learned codes of a multi-label stream. Under the
    raw sums of Eq. 7 the Hadamard term changed 0.0 % of the bits (idle by scale)."""
    stream = gaussian_stream(8, n_classes=8, dim=32, n_chunks=3, chunk=400, multilabel=True,
                             class_incremental=False, grow_labels=False, noise=1.5)

    def codes(cfg: SDOHSettings) -> np.ndarray:
        state, out = None, []
        for x, lab in stream.chunks:
            res = learn_chunk(state, x, ClassLists.from_dense(lab), cfg, np_backend)
            state = res.state
            out.append(res.codes)
        return np.concatenate(out)

    # at δ's default (0.1, chosen on validation splits: bench/RESULTS.md) the distillation
    # term is nearly idle (0.00 % of the bits here), and with it the Hadamard term (Y already
    # sits on the centers); at θ's weight both are live, which is what the switches must show
    base = SDOHSettings(bits=32, n1=200, n2=200, seed=8, delta=0.3)
    changed = float((codes(base) != codes(SDOHSettings(**{**base.as_dict(), switch: False})))
                    .mean())
    assert changed > 0.005, f"{switch} changed {changed:.2%} of the code bits"


def test_configs_stored_before_term_scaling_keep_the_raw_sums() -> None:
    """An index config written before the setting existed reads back as ``paper``; a new
    index gets ``normalized``."""
    old = {"name": "a", "dim": 4, "settings": {k: v for k, v in SDOHSettings().as_dict().items()
                                               if k not in ("term_scaling", "alpha", "gamma")}}
    assert IndexConfig.from_json(old).settings.term_scaling == "paper"
    assert SDOHSettings().term_scaling == "normalized"
    new = IndexConfig.from_json({"name": "b", "dim": 4, "settings": SDOHSettings().as_dict()})
    assert new.settings.term_scaling == "normalized"


def test_the_distillation_weight_defaults_by_scaling_and_stored_configs_keep_theta() -> None:
    """δ was θ until it had its own setting: under paper scaling (Eq. 7) it still follows θ,
    and an index stored without the setting keeps θ whatever θ it has; new normalized indexes
    take δ's own default (0.1), whatever θ they set."""
    from hashstream.service.registry import IndexConfig

    assert SDOHSettings().distill_weight == 0.1 != SDOHSettings().theta
    assert SDOHSettings(theta=1.0).distill_weight == 0.1
    assert SDOHSettings(term_scaling="paper", theta=2.0).distill_weight == 2.0
    assert SDOHSettings(delta=0.0).distill_weight == 0.0
    stored = IndexConfig.from_json({"name": "old", "dim": 4, "method": "sdoh-hc",
                                    "settings": {"bits": 16, "term_scaling": "normalized",
                                                 "theta": 1.0}})
    assert stored.settings.delta is None and stored.settings.distill_weight == 1.0
    again = IndexConfig.from_json({"name": "new", "dim": 4, "method": "sdoh-hc",
                                   "settings": SDOHSettings(bits=16, theta=1.0).as_dict()})
    assert again.settings.distill_weight == 0.1
    with pytest.raises(ValueError, match="delta"):
        SDOHSettings(delta=-1.0)
    n, r, c = 2000, 32, 10
    on = term_weights(SDOHSettings(bits=r, delta=0.5), n=n, r=r, c=c, n_old=0, n_exemplars=0)
    assert on.distillation == pytest.approx(0.5 * n / c / 2)
    assert on.hadamard == pytest.approx(0.3 * r * n / c)  # θ untouched
