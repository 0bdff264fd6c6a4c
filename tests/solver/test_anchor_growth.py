"""RBF anchors that grow with the stream (``anchor_growth='novelty'``).

A chunk beyond the anchors adds anchors after the old ones; every old entry of φ, G, F and P
stays bit-identical, the completed G stays positive semi-definite, the budget holds, an
encoder pairs P of a round with that round's anchors even when given a later state, stored
states without growth keep behaving as before, and a class-incremental stream of
well-separated classes is retrieved better than with the first chunk's anchors alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support.sdoh_round import CL

from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.feature_map import apply_feature_map
from hashstream.solver.metrics import evaluate
from hashstream.solver.sdoh_hc.method import SDOHEncoder, SDOHMethod
from hashstream.solver.sdoh_hc.round import encode, grow_anchors, learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import (
    FEATURE_MAP_FIELDS,
    FEATURE_MAP_RADIUS,
    SDOHState,
)

D = 12
GROW = {"bits": 16, "n_anchors": 120, "first_anchor_share": 0.25, "n1": 30, "n2": 30,
        "query_steps": 5, "query_hidden": 16}


def cluster(rng: np.random.Generator, center: int, n: int) -> np.ndarray[Any, Any]:
    """``n`` points around 30 · e_center (clusters far apart, one per axis)."""
    mean = np.zeros(D)
    mean[center % D] = 30.0
    return mean + rng.standard_normal((n, D))


def one_class(n: int, label: int, c: int) -> ClassLists:
    return CL(np.eye(c)[np.full(n, label)])


def test_a_chunk_beyond_the_anchors_grows_them_and_keeps_old_entries(
        np_backend: Backend) -> None:
    rng = np.random.default_rng(1)
    cfg = SDOHSettings(**GROW)
    r1 = learn_chunk(None, cluster(rng, 0, 80), one_class(80, 0, 2), cfg, np_backend)
    s1 = r1.state
    m = s1.feature_map.anchors.shape[0]
    assert m == 30 and s1.feature_map.radius > 0  # a quarter of the budget
    x2 = cluster(rng, 1, 80)
    grown, phi = grow_anchors(s1, x2, cfg, np_backend, 2)
    fm = grown.feature_map
    k = fm.anchors.shape[0] - m
    assert 0 < k <= cfg.n_anchors - m
    np.testing.assert_array_equal(fm.anchors[:m], s1.feature_map.anchors)
    np.testing.assert_array_equal(fm.mean[:m], s1.feature_map.mean)
    np.testing.assert_array_equal(fm.mean[m:], 0)  # grown anchors are not centred
    assert (fm.sigma, fm.radius) == (s1.feature_map.sigma, s1.feature_map.radius)
    # new anchors are points of the chunk
    assert all((np.abs(x2 - a).sum(axis=1) == 0).any() for a in fm.anchors[m:])
    old = np.r_[np.arange(m), m + k]  # old columns, bias last
    np.testing.assert_array_equal(phi[:, old], apply_feature_map(s1.feature_map, x2,
                                                                 np_backend))
    np.testing.assert_allclose(phi, apply_feature_map(fm, x2, np_backend), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(grown.g[np.ix_(old, old)], s1.g)
    np.testing.assert_array_equal(grown.f[old], s1.f)
    np.testing.assert_array_equal(grown.projection[old], s1.projection)
    np.testing.assert_array_equal(grown.projection[m:m + k], 0)
    assert grown.g[m:m + k].any() and grown.f[m:m + k].any()  # imputed from the exemplars
    np.testing.assert_array_equal(grown.g, grown.g.T)
    assert np.linalg.eigvalsh(grown.g).min() > -1e-8 * np.abs(grown.g).max()
    # the round itself keeps them too
    s2 = learn_chunk(s1, x2, one_class(80, 1, 2), cfg, np_backend).state
    np.testing.assert_array_equal(s2.feature_map.anchors, fm.anchors)
    assert s2.projection.shape == (m + k + 1, cfg.bits) and s2.g.shape == (m + k + 1,) * 2


def test_a_chunk_the_anchors_cover_adds_none(np_backend: Backend) -> None:
    rng = np.random.default_rng(2)
    cfg = SDOHSettings(**GROW)
    x = cluster(rng, 0, 80)
    s1 = learn_chunk(None, x, one_class(80, 0, 1), cfg, np_backend).state
    # the first chunk again: at most 1 − coverage of it lies beyond the radius by construction
    same, _ = grow_anchors(s1, x, cfg, np_backend, 2)
    assert same is s1


def test_growth_stops_at_the_budget(np_backend: Backend) -> None:
    rng = np.random.default_rng(3)
    cfg = SDOHSettings(**{**GROW, "n_anchors": 45})
    state: SDOHState | None = None
    counts = []
    for label in range(D):
        res = learn_chunk(state, cluster(rng, label, 60), one_class(60, label, D), cfg,
                          np_backend)
        state = res.state
        counts.append(state.feature_map.anchors.shape[0])
    assert counts[0] == 12 and counts[-1] == 45
    assert counts == sorted(counts) and counts[1] > counts[0]  # every new cluster gets some
    assert state is not None and state.projection.shape[0] == 46


def test_encoder_pairs_p_of_a_round_with_that_rounds_anchors(np_backend: Backend) -> None:
    rng = np.random.default_rng(4)
    method = SDOHMethod(SDOHSettings(**GROW), D, np_backend)
    assert set(method.fixed_fields) == {"feature_map_kind", "feature_map_sigma"}
    states, projections = [], []
    state = None
    for label in range(3):
        res = method.learn(state, cluster(rng, label, 70).astype(np.float32),
                           one_class(70, label, 3))
        state = res.state
        states.append(res.state_arrays)
        projections.append(res.projection)
    assert (states[0]["feature_map_anchors"].shape[0] < states[1]["feature_map_anchors"].shape[0]
            < states[2]["feature_map_anchors"].shape[0])
    queries = np.concatenate([cluster(rng, j, 10) for j in range(3)]).astype(np.float32)
    fields = [f for f in method.encoder_fields if f != "projection"]
    # a replica that reads round 2's P while the state already holds round 3
    later = {f: states[2][f] for f in fields if f in states[2]}
    paired = method.encoder({**later, "projection": projections[1]})
    want = SDOHEncoder(method.state_from_arrays(states[1]).feature_map, projections[1],
                       np_backend, method.state_from_arrays(states[2]).query_net)
    np.testing.assert_array_equal(paired.encode(queries), want.encode(queries))
    assert paired.feature_map.anchors.shape[0] == projections[1].shape[0] - 1
    own = method.encoder({f: states[1][f] for f in method.encoder_fields if f in states[1]})
    np.testing.assert_array_equal(
        own.encode(queries),
        np.packbits(encode(method.state_from_arrays(states[1]), queries, np_backend) > 0,
                    axis=1))
    with pytest.raises(ValueError, match="older than P"):  # round 1's anchors, round 3's P
        method.encoder({**{f: states[0][f] for f in fields if f in states[0]},
                        "projection": projections[2]})


def test_without_growth_a_state_stores_and_behaves_as_before(np_backend: Backend) -> None:
    rng = np.random.default_rng(5)
    off = SDOHSettings(**{**GROW, "anchor_growth": "off"})
    assert off.first_anchors == off.n_anchors and not off.grows_anchors
    method = SDOHMethod(off, D, np_backend)
    assert method.fixed_fields == FEATURE_MAP_FIELDS
    r1 = learn_chunk(None, cluster(rng, 0, 80), one_class(80, 0, 2), off, np_backend)
    assert r1.state.feature_map.anchors.shape[0] == 80  # min(n_anchors, n) from the first chunk
    arrays = r1.state.to_arrays()
    assert FEATURE_MAP_RADIUS not in arrays
    r2 = learn_chunk(r1.state, cluster(rng, 1, 80), one_class(80, 1, 2), off, np_backend)
    np.testing.assert_array_equal(r2.state.feature_map.anchors, r1.state.feature_map.anchors)
    # a stored state without a radius never grows, whatever the settings say
    legacy = SDOHState.from_arrays(arrays)
    assert legacy.feature_map.radius == 0
    grown, _ = grow_anchors(legacy, cluster(rng, 1, 80), SDOHSettings(**GROW), np_backend, 2)
    assert grown is legacy


def test_settings_of_growth_are_checked() -> None:
    for bad in ({"first_anchor_share": 0.0}, {"first_anchor_share": 1.5},
                {"anchor_coverage": 1.0}, {"anchor_growth": "always"}):
        with pytest.raises(ValueError):
            SDOHSettings(**bad)  # type: ignore[arg-type]
    assert SDOHSettings(feature_map="identity").grows_anchors is False


@pytest.mark.parametrize("encoder", ["linear", "residual_net"])
def test_class_incremental_stream_beats_the_first_chunks_anchors(
        np_backend: Backend, encoder: str) -> None:
    c, per = 6, 90
    rng = np.random.default_rng(6)
    xs = [cluster(rng, j, per) for j in range(c)]
    q_rng = np.random.default_rng(7)
    queries = np.concatenate([cluster(q_rng, j, 15) for j in range(c)])
    q_labels = CL(np.eye(c)[np.repeat(np.arange(c), 15)])
    scores = {}
    for growth in ("novelty", "off"):
        cfg = SDOHSettings(**{**GROW, "anchor_growth": growth, "query_encoder": encoder})
        state: SDOHState | None = None
        db = []
        for j in range(c):  # one class per chunk, in class order
            res = learn_chunk(state, xs[j], one_class(per, j, c), cfg, np_backend)
            state, db = res.state, [*db, res.codes]
        assert state is not None
        db_labels = CL(np.eye(c)[np.repeat(np.arange(c), per)])
        scores[growth] = evaluate(encode(state, queries, np_backend), q_labels,
                                  np.concatenate(db), db_labels).map
    assert scores["novelty"] > scores["off"] + 0.1, scores
