"""The round's update of the ``residual_net`` query encoder sgn(φ(q)P + g(q)).

After a round's P is solved, g takes ``query_steps`` steps towards the part of the stored codes
that φP misses: the chunk's learned codes and the exemplar memory's codes (the memory replays
earlier chunks, so g does not forget them). Rows are drawn class-balanced: in class-incremental
order a chunk of one new class is as many rows as the whole memory, and uniform draws spent half
of every step on it (chosen on validation splits: bench/RESULTS.md). The encoder never feeds back
into the codes a round learns (B still starts from sgn(ΦP)), so the learned database is the same
with either encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.feature_map import FeatureMapParams, apply_feature_map
from hashstream.solver.query_net import QueryNet, init_query_net, train_query_net
from hashstream.solver.sdoh_hc.settings import SDOHSettings


def fit_query_net(net: QueryNet | None, settings: SDOHSettings, round_: int,
                  feature_map: FeatureMapParams, projection: Any,
                  chunk: tuple[Any, Any, Any], memory: tuple[Any, Any],
                  memory_from_chunk: np.ndarray[Any, Any] | None,
                  backend: Backend, labels: ClassLists) -> QueryNet | None:
    """g after this round, or None under the linear encoder.

    ``chunk`` is (features, ±1 codes, Φ) of the chunk, Φ as the round computed it;
    ``memory`` is (features, ±1 codes) of the exemplar memory, whose last
    ``len(memory_from_chunk)`` rows are the chunk rows it names (None: no row is a chunk row).
    Only the other memory rows get φ computed here. ``labels``: the class lists of the chunk's
    rows and then the memory's (:func:`class_balanced_weights`). ``net`` None (the first
    round, or a state stored by the linear encoder) starts g from these rows' statistics, at
    g = 0."""
    if settings.query_encoder != "residual_net":
        return None
    xp, dt = backend.xp, backend.dtype
    features, codes, phi = chunk
    x = np.concatenate([backend.to_numpy(features), backend.to_numpy(memory[0])])
    targets = np.concatenate([backend.to_numpy(codes), backend.to_numpy(memory[1])])
    if net is None:
        net = init_query_net(x, settings.bits, settings.query_hidden, settings.seed)
    p = backend.asarray(projection, dtype=dt)
    n_memory = int(memory[0].shape[0])
    reused = 0 if memory_from_chunk is None else len(memory_from_chunk)
    linear_chunk = phi @ p
    parts = [linear_chunk]
    if n_memory > reused:
        fresh = backend.asarray(memory[0][:n_memory - reused])
        parts.append(apply_feature_map(feature_map, fresh, backend) @ p)
    if reused:
        parts.append(linear_chunk[backend.asarray(memory_from_chunk)])
    residual = backend.asarray(targets, dtype=dt) - xp.concatenate(parts)
    rng = np.random.default_rng([settings.seed, round_, 65537])
    return train_query_net(net, x, residual, settings.query_steps, rng, backend,
                           class_balanced_weights(labels))


def class_balanced_weights(labels: ClassLists) -> np.ndarray[Any, Any]:
    """A weight per row such that every class draws the same total weight: the mean over the
    row's classes of 1 / (rows of that class); a row without classes weighs as a row of a
    class of one."""
    counts = np.bincount(labels.classes, minlength=labels.n_classes).astype(np.float64)
    per_row = np.bincount(labels.row_of_entry(), weights=1.0 / counts[labels.classes],
                          minlength=labels.n)
    sizes = labels.counts()
    return np.where(sizes > 0, per_row / np.maximum(sizes, 1), 1.0)
