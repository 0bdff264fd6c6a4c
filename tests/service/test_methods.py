"""The service's side of the Method seam: configs decoded once, old configs still load, one
method object per index incarnation."""

from __future__ import annotations

from hashstream.service.methods import IndexMethods
from hashstream.service.registry import ConfigCache, IndexConfig
from hashstream.solver.sdoh_hc.settings import SDOHSettings

OLD_SDOH = {"name": "a", "dim": 4, "settings": {"bits": 16}, "kind": "sdoh-hc",
            "max_classes": 10, "created": 1.0}
OLD_CROSS = {"name": "x", "dim": 4, "settings": {"bits": 16}, "kind": "cross-modal",
             "cross_modal": {"text_dim": 3, "image_hidden": [8]}, "created": 2.0}


def test_configs_written_before_methods_still_load() -> None:
    assert IndexConfig.from_json(OLD_SDOH).method == "sdoh-hc"
    cross = IndexConfig.from_json(OLD_CROSS)
    assert (cross.method, cross.kind) == ("ecmh", "cross-modal")
    assert cross.cross_modal is not None and cross.cross_modal.loss == "ecmh"
    assert cross.method_settings()["image_hidden"] == (8,)


def test_round_trip_of_a_new_config() -> None:
    config = IndexConfig("l", 4, SDOHSettings(bits=8, seed=3), "lsh", None, 10, "lsh", 5.0)
    back = IndexConfig.from_json(config.to_json())
    assert back == config and back.method_settings() == {"bits": 8, "seed": 3}


def test_decoded_once_per_index_incarnation() -> None:
    cache = ConfigCache()
    first = cache.decode("a", OLD_SDOH)
    assert cache.decode("a", dict(OLD_SDOH)) is first
    recreated = cache.decode("a", {**OLD_SDOH, "created": 3.0})
    assert recreated is not first and recreated.created == 3.0
    methods = IndexMethods()
    config, method = methods.get("x", OLD_CROSS)
    assert methods.get("x", OLD_CROSS)[1] is method and method.name == "ecmh"
    assert methods.method(IndexConfig.from_json(OLD_CROSS)) is method  # equal config
