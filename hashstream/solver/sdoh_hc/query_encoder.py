"""The round's update of the ``residual_net`` query encoder sgn(φ(q)P + g(q)).

After a round's P is solved, g takes ``query_steps`` steps towards the part of the stored codes
that φP misses: the chunk's learned codes and the exemplar memory's codes (the memory replays
earlier chunks, so g does not forget them). The encoder never feeds back into the codes a round
learns (B still starts from sgn(ΦP)), so the learned database is the same with either encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.solver.backend import Backend
from hashstream.solver.feature_map import FeatureMapParams, apply_feature_map
from hashstream.solver.query_net import QueryNet, init_query_net, train_query_net
from hashstream.solver.sdoh_hc.settings import SDOHSettings


def fit_query_net(net: QueryNet | None, settings: SDOHSettings, round_: int,
                  feature_map: FeatureMapParams, projection: Any,
                  chunk: tuple[Any, Any], memory: tuple[Any, Any],
                  backend: Backend) -> QueryNet | None:
    """g after this round, or None under the linear encoder.

    ``chunk`` and ``memory`` are (features, ±1 codes) pairs: the chunk with its learned codes
    and the exemplar memory with its stored ones. ``net`` None (the first round, or a state
    stored by the linear encoder) starts g from these rows' statistics, at g = 0."""
    if settings.query_encoder != "residual_net":
        return None
    x = np.concatenate([backend.to_numpy(chunk[0]), backend.to_numpy(memory[0])])
    codes = np.concatenate([backend.to_numpy(chunk[1]), backend.to_numpy(memory[1])])
    if net is None:
        net = init_query_net(x, settings.bits, settings.query_hidden, settings.seed)
    phi = apply_feature_map(feature_map, x, backend)
    residual = backend.asarray(codes, dtype=backend.dtype) - phi @ backend.asarray(
        projection, dtype=backend.dtype)
    rng = np.random.default_rng([settings.seed, round_, 65537])
    return train_query_net(net, x, residual, settings.query_steps, rng, backend)
