"""A search replica of an index whose RBF anchors grow (real Redis, real worker rounds).

The replica used to keep φ as a fixed field from its first load; with growth it must pick up
each round's anchors with that round's P, so a query is encoded exactly as ``encode(state)``
of the round it is served at. An index stored before growth keeps it off.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.service.chunks import ClientLabels, ParsedChunk
from hashstream.service.index_replica import IndexReplica
from hashstream.service.methods import IndexMethods, decode_state
from hashstream.service.registry import IndexConfig, IndexService
from hashstream.service.worker import RoundRunner
from hashstream.solver.backend import get_backend
from hashstream.solver.metrics import pack_codes
from hashstream.solver.sdoh_hc.round import encode
from hashstream.store.index_store import IndexStore

NAME = "grow"
DIM = 10


def chunk(rng: np.random.Generator, label: int, n: int, first_id: int) -> ParsedChunk:
    """``n`` items of one class around their own far corner (a region no anchor covers)."""
    mean = np.zeros(DIM)
    mean[label] = 30.0
    x = (mean + rng.standard_normal((n, DIM))).astype(np.float32)
    labels = ClientLabels(np.arange(n + 1), np.full(n, label, dtype=np.int64), "int")
    return ParsedChunk(x, labels, np.arange(first_id, first_id + n), "train")


class LoadLog(IndexStore):
    """A real IndexStore that notes which state fields each load reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loads: list[set[str]] = []

    def load_state(self, name: str, fields: list[str] | None = None) -> Any:
        self.loads.append(set(fields or ()))
        return super().load_state(name, fields)


def test_replica_encodes_each_round_with_its_own_grown_anchors(
        redis_client: Any, key_prefix: str) -> None:
    store = LoadLog(redis_client, key_prefix)
    service = IndexService(store)
    service.create_from_request(NAME, DIM, {"bits": 16, "n_anchors": 60, "n1": 20, "n2": 20,
                                            "query_steps": 5, "query_hidden": 16}, None)
    runner = RoundRunner(store)
    methods = IndexMethods()
    config, method = methods.get(NAME, store.config(NAME))
    assert config.settings.anchor_growth == "novelty"
    replica = IndexReplica(0.0)
    rng = np.random.default_rng(0)
    queries = np.concatenate([chunk(rng, j, 8, 0).features for j in range(4)])
    anchors, anchors_read = [], []
    # new classes in new corners (anchors grow), then the first class again (they do not)
    for label, first_id in ((0, 0), (1, 1000), (2, 2000), (3, 3000), (0, 4000), (0, 5000)):
        service.ingest(NAME, chunk(rng, label, 50, first_id))
        assert runner.step(NAME)
        version = store.version(NAME)
        state = decode_state(store, NAME, method)
        anchors.append(state.feature_map.anchors.shape[0])
        store.loads.clear()
        served = replica.advance(store, NAME, config, method, version)
        anchors_read.append(any("feature_map_anchors" in f for f in store.loads))
        assert served.encoder is not None
        np.testing.assert_array_equal(served.encoder.encode(queries),
                                      pack_codes(encode(state, queries, get_backend("numpy"))))
    assert anchors == sorted(anchors) and anchors[3] > anchors[0]
    # the anchors are read when they grew (and first), kept when their stored size held
    assert anchors_read == [True] + [b > a for a, b in zip(anchors, anchors[1:], strict=False)]
    assert not all(anchors_read)
    assert set(replica.fixed) == {"feature_map_kind", "feature_map_sigma"}


def test_a_config_stored_before_growth_keeps_the_first_chunks_anchors() -> None:
    stored = {"name": "old", "dim": DIM, "settings": {"bits": 16}, "method": "sdoh-hc"}
    config = IndexConfig.from_json(stored)
    assert config.settings.anchor_growth == "off"
    assert config.settings.first_anchors == config.settings.n_anchors
    # and keeps its exemplars at random, as it did before exemplar_keep existed
    assert config.settings.exemplar_keep == "random"
    fresh = IndexConfig.from_json({**stored, "settings": {"bits": 16,
                                                          "exemplar_keep": "class_balanced"}})
    assert fresh.settings.exemplar_keep == "class_balanced"
