"""Stage 3's term against old classes (``TrainSettings.center_weight``, issue 14 item 5): class
centers of stored codes, where a new class's center goes, L_d released on the bits it moved,
and on toy clusters a new class's image queries leave the old class they landed on while the
old codes hold."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from hashstream.solver.ecmh.centers import (
    anchored_centers,
    class_centers,
    complete_centers,
    item_targets,
    margin_of,
)
from hashstream.solver.ecmh.extend import extend
from hashstream.solver.ecmh.networks import ECMHModel, encode_pairs
from hashstream.solver.ecmh.settings import NetworkConfig, TrainSettings
from hashstream.solver.ecmh.train import paired_data, train_from_scratch
from hashstream.solver.metrics import evaluate

Array = np.ndarray[Any, Any]


def hamming(a: Tensor, b: Tensor) -> Tensor:
    return (a.shape[-1] - a @ b.T) / 2


# --- centers -------------------------------------------------------------------------------


def test_class_centers_are_the_sign_of_summed_codes() -> None:
    codes = torch.tensor([[1., 1, -1], [1., -1, -1], [-1., -1, -1], [1., 1, 1]])
    labels = torch.tensor([[1., 0, 0], [1., 0, 0], [1., 0, 0], [0., 1, 0]])
    centers = class_centers(codes, labels)
    assert torch.equal(centers, torch.tensor([[1., -1, -1], [1., 1, 1], [0., 0, 0]]))


def test_a_new_class_on_an_old_center_moves_by_the_least_held_bits() -> None:
    """A new class whose old-model codes sit on old class 0 moves until it is as far from every
    placed center as the old classes are from their nearest (here 4 bits), flipping the bits
    its items agree on least first; a new class already far from the old ones keeps its
    center."""
    bits = 8
    known = torch.zeros(4, bits)
    known[0] = torch.ones(bits)
    known[1] = torch.tensor([-1., -1, -1, -1, 1, 1, 1, 1])
    assert margin_of(known[:2]) == 4.0
    labels = torch.tensor([[0., 0, 1, 0]] * 3 + [[0., 0, 0, 1]] * 3)
    codes = torch.cat([torch.ones(3, bits),  # class 2: on old class 0
                       torch.tensor([[1., 1, 1, 1, -1, -1, -1, -1]] * 3)])  # class 3: far
    agreement = torch.ones(6, bits)
    agreement[:3, 6:] = 0.0  # class 2's items agree least on bits 6 and 7
    centers = anchored_centers(known, labels, codes, agreement)
    assert torch.equal(centers[:2], known[:2])
    assert hamming(centers[2:3], centers[[0, 1, 3]]).min() >= 4
    assert (centers[2, 6:] == -1).all()  # the least-agreed bits flipped first
    assert torch.equal(centers[3], codes[3])
    assert torch.equal(item_targets(labels, centers)[0], centers[2])


def test_without_known_centers_new_classes_take_distinct_hadamard_columns() -> None:
    centers = complete_centers(None, 5, 16)
    d = hamming(centers, centers)
    assert torch.equal(centers.abs(), torch.ones(5, 16))
    assert (d + 16 * torch.eye(5) >= 8).all()  # Hadamard columns: at least L/2 apart


# --- the term on toy clusters ----------------------------------------------------------------

TOY = NetworkConfig(bits=16, image_dim=20, text_dim=6, image_hidden=(32,), text_hidden=(32,))
TOY_SETTINGS = TrainSettings(epochs=30, extend_epochs=30, device="cpu", seed=0)
OLD, NEW = [0, 1, 2], [3, 4, 5]
WEIGHT = 30.0  # against L_d 300: new image queries 0.47 → 0.94 mAP (0.72 at weight 1)


class Clusters:
    """The service tests' toy pairs (tests/service/test_cross_modal.py): class k has a 20-d
    image mean and a 6-d text mean, both N(0, 3²), items add N(0, 1) noise."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.image_means = self.rng.standard_normal((6, 20)) * 3
        self.text_means = self.rng.standard_normal((6, 6)) * 3

    def draw(self, n: int, classes: list[int]) -> tuple[Array, Array, Array]:
        y = self.rng.choice(classes, n)
        return ((self.image_means[y] + self.rng.standard_normal((n, 20))).astype(np.float32),
                (self.text_means[y] + self.rng.standard_normal((n, 6))).astype(np.float32),
                np.eye(6, dtype=np.uint8)[y])


def toy_run(weight: float) -> dict[str, float]:
    """Old model on classes 0–2, extension to 3–5 with ``center_weight`` = ``weight`` (the
    defaults otherwise, L_d 300); the old items' codes stay the old model's. Returns the
    new-class image queries' mAP against the whole database, their mean Hamming distance to
    the nearest old-class center, and old-code retrieval (I→T, T→I) relative to the old
    model's."""
    data = Clusters(0)
    queries = data.draw(120, OLD + NEW)
    old_items, new_items = data.draw(200, OLD), data.draw(200, NEW)
    old = train_from_scratch(TOY, *old_items, TOY_SETTINGS).model
    old_db = encode_pairs(old, old_items[0], old_items[1])["pairs"]
    centers = class_centers(torch.as_tensor(old_db).float(), torch.as_tensor(old_items[2]))
    new = paired_data(TOY, *new_items, old.device)
    ext = extend(old, new, replace(TOY_SETTINGS, center_weight=weight),
                 old_centers=centers).model
    database = np.concatenate([old_db, encode_pairs(ext, new_items[0], new_items[1])["pairs"]])
    db_labels = np.concatenate([old_items[2], new_items[2]])
    is_new = queries[2][:, NEW].any(axis=1)

    def codes(model: ECMHModel, mask: Array) -> dict[str, Array]:
        return encode_pairs(model, queries[0][mask], queries[1][mask])

    new_image = codes(ext, is_new)["image"]
    to_old = hamming(torch.as_tensor(new_image).float(), centers[OLD]).min(dim=1).values
    ratios = []
    for side in ("image", "text"):
        before, after = (evaluate(codes(m, ~is_new)[side], queries[2][~is_new], old_db,
                                  old_items[2]).map for m in (old, ext))
        ratios.append(after / before)
    return {"new_i2t": evaluate(new_image, queries[2][is_new], database, db_labels).map,
            "to_old": float(to_old.mean()), "old_i2t": ratios[0], "old_t2i": ratios[1]}


@pytest.fixture(scope="module")
def toy() -> dict[float, dict[str, float]]:
    return {weight: toy_run(weight) for weight in (0.0, WEIGHT)}


def test_the_term_moves_new_image_queries_away_from_old_classes(
        toy: dict[float, dict[str, float]]) -> None:
    """Without the term (the paper's extension, L_d 300) the new classes' image queries land
    among an old class's codes and retrieve poorly; with it they leave the old classes."""
    off, on = toy[0.0], toy[WEIGHT]
    assert off["new_i2t"] < 0.6, off
    assert on["new_i2t"] > 0.85, on
    assert on["to_old"] >= off["to_old"] + 2.0, (off, on)


def test_the_term_keeps_old_codes_on_toy_clusters(toy: dict[float, dict[str, float]]) -> None:
    on = toy[WEIGHT]
    assert on["old_i2t"] >= 0.98 and on["old_t2i"] >= 0.98, on


def test_centers_must_match_the_items() -> None:
    old = train_from_scratch(TOY, *Clusters(1).draw(60, OLD), replace(TOY_SETTINGS, epochs=1))
    new = paired_data(TOY, *Clusters(2).draw(30, NEW), old.model.device)
    with pytest.raises(ValueError, match="center_weight"):
        TrainSettings(center_weight=-1.0)
    result = extend(old.model, new, replace(TOY_SETTINGS, extend_epochs=1, center_weight=1.0))
    assert result.centers is not None and result.centers.shape == (6, 16)
    assert "centers" in result.core.history[-1]


# --- the method (service rounds) keeps the class centers of its codes -------------------------


def test_rounds_keep_class_code_sums_and_extend_with_their_centers() -> None:
    """Each round adds its pairs' unified codes to per-class sums (state arrays, so a restarted
    worker has them); an extension with ``center_weight`` uses their centers and, on the toy
    clusters, gives the new classes' image queries better retrieval than without."""
    from hashstream.solver.class_lists import ClassLists
    from hashstream.solver.ecmh.method import ECMHMethod
    from hashstream.solver.ecmh.settings import CrossModalSettings

    def unpack_codes(packed: Array, bits: int) -> Array:
        return np.where(np.unpackbits(packed, axis=1)[:, :bits] > 0, 1, -1).astype(np.int8)

    data = Clusters(0)
    queries = data.draw(120, OLD + NEW)
    old_items, new_items = data.draw(200, OLD), data.draw(200, NEW)
    is_new = queries[2][:, NEW].any(axis=1)
    maps = {}
    for weight in (0.0, 30.0):
        method = ECMHMethod(CrossModalSettings(text_dim=6, image_hidden=(32,),
                                               text_hidden=(32,), epochs=30, extend_epochs=30,
                                               center_weight=weight), bits=16, dim=20)
        first = method.learn(None, old_items[0], ClassLists.from_dense(old_items[2]),
                             text=old_items[1])
        sums, counts = first.state_arrays["class_code_sums"], first.state_arrays[
            "class_code_counts"]
        pairs = unpack_codes(first.codes["pairs"], 16).astype(np.int64)
        assert np.array_equal(sums, old_items[2].T.astype(np.int64) @ pairs)
        assert np.array_equal(counts, old_items[2].sum(axis=0)) and not counts[3:].any()
        restored = method.state_from_arrays(first.state_arrays, first.model)
        assert np.array_equal(restored.code_sums, sums)
        second = method.learn(restored, new_items[0], ClassLists.from_dense(new_items[2]),
                              text=new_items[1])
        assert second.record["action"] == "extend"
        assert second.state_arrays["class_code_sums"].shape == (6, 16)
        assert np.array_equal(second.state_arrays["class_code_counts"][:3], counts[:3])
        database = np.concatenate([unpack_codes(first.codes["pairs"], 16),
                                   unpack_codes(second.codes["pairs"], 16)])
        db_labels = np.concatenate([old_items[2], new_items[2]])
        image = unpack_codes(second.encoder.encode(queries[0][is_new], "image"), 16)
        maps[weight] = evaluate(image, queries[2][is_new], database, db_labels).map
    assert maps[30.0] > maps[0.0] + 0.1, maps


def test_the_index_setting_reaches_the_training_settings() -> None:
    from hashstream.solver.ecmh.settings import CrossModalSettings

    stored = CrossModalSettings(center_weight=2.5).as_dict()
    assert CrossModalSettings.from_dict(stored).train_settings().center_weight == 2.5
    assert CrossModalSettings.from_dict({}).train_settings().center_weight == 0.0
