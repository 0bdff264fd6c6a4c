"""The SDOH-HC round's retrieval quality: learned codes beat LSH; the float32 backend works."""

from __future__ import annotations

from typing import Any

import numpy as np
from support.data import gaussian_stream
from support.sdoh_round import run_stream

from hashstream.solver.backend import Backend, get_backend
from hashstream.solver.lsh import RandomProjection
from hashstream.solver.metrics import evaluate
from hashstream.solver.sdoh_hc.round import encode, project
from hashstream.solver.sdoh_hc.settings import SDOHSettings

# --------------------------------------------------------------------------- quality


def test_learned_codes_beat_lsh(np_backend: Backend, make_stream: Any) -> None:
    stream = make_stream(19, n_classes=6, dim=32, n_chunks=4, chunk=300, n_queries=200,
                         noise=2.0)
    cfg = SDOHSettings(bits=16, n1=100, n2=100, seed=19)
    results = run_stream(stream.chunks, cfg, np_backend, trace=False)
    db_codes = np.concatenate([r.codes for r in results])
    db_labels = stream.all_labels
    q_codes = encode(results[-1].state, stream.query_features, np_backend)
    sdoh = evaluate(q_codes, stream.query_labels, db_codes, db_labels).map
    lsh = RandomProjection.fit(stream.chunks[0][0], 16, seed=19)
    base = evaluate(lsh.encode(stream.query_features), stream.query_labels,
                    lsh.encode(stream.all_features), db_labels).map
    # measured: sdoh ≈ 0.9, lsh ≈ 0.35–0.4 on such streams
    assert sdoh > 0.8
    assert sdoh > base + 0.3


def test_numpy_float32_backend_round(make_stream: Any) -> None:
    # get_backend("numpy", "float32") computes in float32 and still gives ±1 codes
    stream = make_stream(20, n_classes=3, dim=8, n_chunks=2, chunk=50)
    be32 = get_backend("numpy", dtype="float32")
    res = run_stream(stream.chunks, SDOHSettings(bits=8, n1=10, n2=10), be32, trace=False)
    assert res[-1].state.projection.dtype == np.float32
    assert set(np.unique(res[-1].codes)) <= {-1, 1}


def test_more_bits_retrieve_better_with_many_classes(np_backend: Backend) -> None:
    """64-bit codes beat 16-bit ones on a 12-class stream (mean over 3 seeds). With the earlier
    centers (the first Sylvester columns: 16 distinct bit rows at any length for 12 classes)
    the gain was 0.003–0.008 per seed (mean 0.006); with distinct rows it is 0.029–0.044."""
    gains = []
    for seed in (1, 2, 3):
        stream = gaussian_stream(seed, n_classes=12, dim=32, n_chunks=4, chunk=300,
                                 n_queries=200, class_incremental=False, grow_labels=False,
                                 noise=3.0)
        maps = []
        for bits in (16, 64):
            results = run_stream(stream.chunks, SDOHSettings(bits=bits, n1=100, n2=100,
                                                             seed=seed), np_backend, trace=False)
            q_codes = encode(results[-1].state, stream.query_features, np_backend)
            maps.append(evaluate(q_codes, stream.query_labels,
                                 np.concatenate([r.codes for r in results]),
                                 stream.all_labels).map)
        gains.append(maps[1] - maps[0])
    assert all(g > 0 for g in gains), gains
    assert float(np.mean(gains)) > 0.02, gains


def test_projection_orders_ties_better_than_chance(np_backend: Backend) -> None:
    """At 16 bits on a 12-class stream the codes tie in large groups; ordering each group by
    ⟨φ(q)P, code⟩ beats a random order within it (the tie-aware mAP) on every seed: measured
    +0.035–0.046 (+0.002–0.004 at 64 bits, where few ties are left)."""
    for seed in (1, 2, 3):
        stream = gaussian_stream(seed, n_classes=12, dim=32, n_chunks=4, chunk=300,
                                 n_queries=200, class_incremental=False, grow_labels=False,
                                 noise=3.0)
        results = run_stream(stream.chunks, SDOHSettings(bits=16, n1=100, n2=100, seed=seed),
                             np_backend, trace=False)
        z = project(results[-1].state, stream.query_features, np_backend)
        codes = encode(results[-1].state, stream.query_features, np_backend)
        np.testing.assert_array_equal(np.where(z >= 0, 1, -1), codes)  # the code is its sign
        scores = evaluate(codes, stream.query_labels,
                          np.concatenate([r.codes for r in results]), stream.all_labels,
                          query_projection=z)
        assert scores.map_projection_ties is not None
        assert scores.map_projection_ties > scores.map_tie_aware + 0.02, (seed, scores)
