"""ECMH solver: A_α and S by hand, each loss against its paper formula, vocabulary growth,
Algorithm 1 lowering the objective, Algorithm 2 leaving the old model and old codes alone, and
the model ↔ arrays round trip."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from hashstream.solver.ecmh.agreement import agreement_matrix, similarity, unified_codes
from hashstream.solver.ecmh.extend import extend, fine_tune
from hashstream.solver.ecmh.losses import (
    common_space_loss,
    distillation_loss,
    hash_loss,
    objective,
)
from hashstream.solver.ecmh.networks import (
    build_model,
    grow_vocabulary,
    image_representations,
    sign,
    text_representations,
)
from hashstream.solver.ecmh.settings import PAD_ID, NetworkConfig, TrainSettings
from hashstream.solver.ecmh.state_io import StateError, from_arrays, same_state, to_arrays
from hashstream.solver.ecmh.train import core_algorithm, paired_data, train_from_scratch
from hashstream.solver.metrics import evaluate

Array = np.ndarray[Any, Any]
FAST = TrainSettings(epochs=12, extend_epochs=6, warmup_epochs=3, batch_size=80, seed=0,
                     lr=3e-3, device="cpu")  # a small budget: a large step


def toy(seed: int, n: int = 160, classes: tuple[int, ...] = (0, 1, 2), n_classes: int = 5,
        tokens: bool = False) -> tuple[Array, Array, Array]:
    """Image and text (dense, or ids with ``PAD_ID`` padding) from per-class means; one label
    each. Class k's words are 8k..8k+7, so later classes bring new word ids."""
    rng = np.random.default_rng(seed)
    means_rng = np.random.default_rng(1234)
    img_means = means_rng.standard_normal((n_classes, 12)) * 2
    txt_means = means_rng.standard_normal((n_classes, 6)) * 2
    y = rng.choice(np.asarray(classes), n)
    labels = np.eye(n_classes, dtype=np.uint8)[y]
    image = (img_means[y] + rng.standard_normal((n, 12))).astype(np.float32)
    if not tokens:
        return image, (txt_means[y] + rng.standard_normal((n, 6))).astype(np.float32), labels
    ids = np.full((n, 7), PAD_ID, dtype=np.int64)
    for i in range(n):
        length = rng.integers(3, 8)
        ids[i, :length] = 8 * y[i] + rng.integers(0, 8, length)
    return image, ids, labels


def config(tokens: bool = False, vocab: int = 24) -> NetworkConfig:
    if tokens:
        return NetworkConfig(bits=16, image_dim=12, text_kind="tokens", vocab_blocks=(vocab,),
                             embed_dim=8, image_hidden=(32,), text_hidden=(32,))
    return NetworkConfig(bits=16, image_dim=12, text_dim=6, image_hidden=(32,),
                         text_hidden=(32,))


@pytest.fixture(scope="module", params=[False, True], ids=["dense", "tokens"])
def old_model(request: pytest.FixtureRequest) -> tuple[bool, Any, tuple[Array, Array, Array]]:
    """A model trained on classes 0–2 (token ids 0..23), shared by the tests of this module."""
    tokens = bool(request.param)
    data = toy(0, classes=(0, 1, 2), tokens=tokens)
    return tokens, train_from_scratch(config(tokens), *data, FAST).model, data


# --- Eq. 2, 3, 8 -------------------------------------------------------------------------


def test_agreement_matrix_hand_case() -> None:
    f = torch.tensor([[0.5, -0.2, 0.05, 0.1], [-0.3, 0.3, 0.9, -0.7]])
    g = torch.tensor([[0.4, -0.5, 0.5, 0.6], [0.3, 0.2, -0.9, -0.11]])
    # same sign and both |·| > α = 0.1 (strict: 0.1 itself is not above it)
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    assert torch.equal(agreement_matrix(f, g, 0.1), expected)
    assert torch.equal(agreement_matrix(f, g, 0.0)[0], torch.tensor([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError):
        agreement_matrix(f, g[:, :3], 0.1)


def test_similarity_and_unified_codes() -> None:
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    assert torch.equal(similarity(labels, labels), torch.tensor(
        [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    f = torch.tensor([[0.2, -0.5, 0.3]])
    g = torch.tensor([[-0.2, 0.1, 0.4]])
    assert torch.equal(unified_codes(f, g), torch.tensor([[1.0, -1.0, 1.0]]))  # sign(0) = +1
    assert sign(torch.tensor([0.0, -0.0, -1e-9, 2.0])).tolist() == [1, 1, -1, 1]


# --- Eq. 4, 6, 7 against the formulas, in float64 -----------------------------------------


@pytest.fixture
def small() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    m, bits = 7, 5

    def t(*shape: int) -> torch.Tensor:
        return torch.tanh(torch.randn(*shape, generator=gen, dtype=torch.float64) * 2)

    labels = (torch.rand(m, 4, generator=gen) < 0.4).double()
    return {"F": t(m, bits), "G": t(m, bits), "Fo": t(m, bits), "Go": t(m, bits),
            "A": (torch.rand(m, bits, generator=gen) < 0.5).double(),
            "C": torch.where(torch.randn(m, bits, generator=gen) >= 0, 1.0, -1.0).double(),
            "S": similarity(labels, labels).double(), "labels": labels}


def test_distillation_loss_formula(small: dict[str, torch.Tensor]) -> None:
    F, G, Fo, Go, A = (small[k].numpy() for k in ("F", "G", "Fo", "Go", "A"))
    m, bits = F.shape
    expected = (np.sum((A * (F - Fo)) ** 2) + np.sum((A * (G - Go)) ** 2)) / (m * bits ** 2)
    got = (distillation_loss(small["F"], small["Fo"], small["A"])
           + distillation_loss(small["G"], small["Go"], small["A"]))
    assert float(got) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("form", ["paper", "likelihood"])
def test_common_space_loss_formula(small: dict[str, torch.Tensor], form: Any) -> None:
    F, G, A, S = (small[k].numpy() for k in ("F", "G", "A", "S"))
    m, bits = F.shape
    delta = ((1 - A) * F) @ G.T  # Eq. 5
    dissimilar = delta if form == "paper" else np.log1p(np.exp(delta))
    expected = (np.sum((1 - S) * dissimilar)
                + np.sum(S * (np.log(1 + np.exp(delta)) - delta))) / (m * m * bits)  # Eq. 6
    got = common_space_loss(small["F"], small["G"], small["S"], small["A"], form)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_hash_loss_formula(small: dict[str, torch.Tensor]) -> None:
    F, G, A, C = (small[k].numpy() for k in ("F", "G", "A", "C"))
    m, bits = F.shape
    beta = 0.5
    expected = (np.sum(((1 - A) * (beta * C - F)) ** 2)
                + np.sum(((1 - A) * (beta * C - G)) ** 2)) / (m * m * bits)  # Eq. 7
    got = (hash_loss(small["F"], small["C"], small["A"], beta, m)
           + hash_loss(small["G"], small["C"], small["A"], beta, m))
    assert float(got) == pytest.approx(expected, rel=1e-12)
    total = objective(small["F"], small["G"], small["labels"], small["C"], small["A"],
                      small["Fo"], small["Go"], beta, "likelihood", block=3)
    assert total["hash"] == pytest.approx(expected, rel=1e-12)
    assert total["total"] == pytest.approx(
        total["distillation"] + total["common"] + total["hash"], rel=1e-12)


def test_batch_losses_average_to_the_full_set_loss(small: dict[str, torch.Tensor]) -> None:
    """Mini-batch scalings are unbiased: averaging over a partition gives the full value."""
    F, G, A, C, S, Fo = (small[k] for k in ("F", "G", "A", "C", "S", "Fo"))
    n = F.shape[0]
    full_c = common_space_loss(F, G, S, A)
    full_h = hash_loss(F, C, A, 0.5, n)
    full_d = distillation_loss(F, Fo, A)
    rows = [list(range(0, 4)), list(range(4, 7))]
    w = [len(r) / n for r in rows]
    assert float(sum(wi * common_space_loss(F[r], G, S[r], A[r]) for wi, r in zip(w, rows,
                                                                                strict=True))
                 ) == pytest.approx(float(full_c), rel=1e-12)
    assert float(sum(wi * hash_loss(F[r], C[r], A[r], 0.5, n) for wi, r in zip(w, rows,
                                                                           strict=True))
                 ) == pytest.approx(float(full_h), rel=1e-12)
    assert float(sum(wi * distillation_loss(F[r], Fo[r], A[r]) for wi, r in zip(w, rows,
                                                                            strict=True))
                 ) == pytest.approx(float(full_d), rel=1e-12)


# --- networks --------------------------------------------------------------------------


def test_vocabulary_growth_keeps_old_rows_bit_identical() -> None:
    model = build_model(config(tokens=True), seed=1)
    grown = grow_vocabulary(model, 40, seed=2)
    assert grown.config.vocab_blocks == (24, 16)
    assert grown.tnet.embedding is not None and model.tnet.embedding is not None
    weight = grown.tnet.embedding.weight()
    assert weight.shape == (40, 8)
    assert torch.equal(weight[:24], model.tnet.embedding.weight())
    # texts of old words only: same outputs; the old model still ignores the new ids
    _, ids, _ = toy(0, n=20, tokens=True)
    ids = np.where(ids >= 24, PAD_ID, ids)
    t = torch.as_tensor(ids)
    assert torch.equal(text_representations(grown, t), text_representations(model, t))
    assert grow_vocabulary(model, 10).config.vocab_blocks == (24,)  # never shrinks
    assert model.config.vocab_blocks == (24,)  # the input model is untouched


def test_warm_up_moves_only_the_new_word_vectors() -> None:
    image, ids, labels = toy(0, classes=(3, 4), tokens=True)  # words 24..39 are new
    model = build_model(config(tokens=True), seed=1)
    grown = grow_vocabulary(model, 40, seed=2)
    data = paired_data(grown.config, image, ids, labels, torch.device("cpu"))
    warm = core_algorithm(grown, data, FAST, epochs=3, train_image=False,
                          text_scope="new_embeddings").model
    assert warm.tnet.embedding is not None and grown.tnet.embedding is not None
    assert torch.equal(warm.tnet.embedding.blocks[0], grown.tnet.embedding.blocks[0])
    assert not torch.equal(warm.tnet.embedding.blocks[1], grown.tnet.embedding.blocks[1])
    for a, b in zip(warm.tnet.head.parameters(), grown.tnet.head.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(warm.inet.parameters(), grown.inet.parameters(), strict=True):
        assert torch.equal(a, b)


# --- Algorithm 1 -------------------------------------------------------------------------


def _map(model: Any, image: Array, text: Array, labels: Array) -> float:
    data = paired_data(model.config, image, text, labels, model.device)
    f = image_representations(model, data.image)
    g = text_representations(model, data.text)
    return evaluate(sign(f).numpy(), labels, sign(f + g).numpy(), labels).map


@pytest.mark.parametrize("tokens", [False, True])
def test_training_lowers_the_objective_and_separates_classes(tokens: bool) -> None:
    image, text, labels = toy(0, n=200, classes=(0, 1, 2, 3, 4), tokens=tokens)
    result = train_from_scratch(config(tokens, vocab=40), image, text, labels, FAST,
                                log_every=5)
    first, last = result.history[0]["total"], result.history[-1]["total"]
    assert last < 0.7 * first
    assert result.history[0]["distillation"] == 0.0  # A = 0 from scratch
    assert set(np.unique(result.codes.numpy())) <= {-1.0, 1.0}
    assert _map(result.model, image, text, labels) > 0.8


def test_same_seed_same_model() -> None:
    image, text, labels = toy(0, n=60)
    settings = TrainSettings(**{**FAST.as_dict(), "epochs": 2})
    a = train_from_scratch(config(), image, text, labels, settings)
    b = train_from_scratch(config(), image, text, labels, settings)
    assert same_state(a.model, b.model)
    assert torch.equal(a.codes, b.codes)


# --- Algorithm 2 -------------------------------------------------------------------------


def test_extension_leaves_old_model_and_old_codes_alone(old_model: Any) -> None:
    tokens, old, (image, text, labels) = old_model
    before = old.copy()
    old_data = paired_data(old.config, image, text, labels, old.device)
    old_codes = sign(image_representations(old, old_data.image)
                     + text_representations(old, old_data.text)).numpy()
    stored = old_codes.copy()

    new_image, new_text, new_labels = toy(1, classes=(3, 4), tokens=tokens)
    new_data = paired_data(old.config, new_image, new_text, new_labels, old.device)
    # the default step: a larger one overshoots the strongly weighted L_d in the first epochs
    ext = extend(old, new_data, TrainSettings(**{**FAST.as_dict(), "lr": TrainSettings().lr}))
    ft = fine_tune(old, new_data, FAST)

    assert same_state(old, before)  # θ_o untouched by extension and fine-tuning
    assert np.array_equal(old_codes, stored)  # old codes are not an input, never rewritten
    recomputed = sign(image_representations(old, old_data.image)
                      + text_representations(old, old_data.text)).numpy()
    assert np.array_equal(recomputed, stored)
    assert not same_state(ext.model, old)
    assert ext.agreement.shape == (new_image.shape[0], 16)
    assert set(np.unique(ext.agreement.numpy())) <= {0.0, 1.0}
    assert ext.core.history[-1]["total"] < ext.core.history[0]["total"]
    if tokens:
        assert ext.model.config.vocab_blocks == (24, 16)
        assert ext.warmup is not None and "16 new word vectors" in ext.warmup_note
        assert ft.model.config.vocab_blocks == (24, 16)
        # stage 3 may move old word vectors (paper: every layer but the CNN) unless frozen
        frozen = extend(old, new_data, TrainSettings(**{**FAST.as_dict(), "warmup_epochs": 1,
                                                         "extend_epochs": 2,
                                                         "train_old_embeddings": False}))
        assert frozen.model.tnet.embedding is not None and old.tnet.embedding is not None
        assert torch.equal(frozen.model.tnet.embedding.blocks[0], old.tnet.embedding.blocks[0])
    else:
        assert ext.warmup is None and "dense" in ext.warmup_note
        assert ext.seconds["warmup"] == 0.0


# --- persistence -------------------------------------------------------------------------


def test_model_round_trips_through_arrays_exactly(old_model: Any) -> None:
    tokens, model, (image, text, labels) = old_model
    if tokens:
        model = grow_vocabulary(model, 40, seed=5)  # two vocabulary blocks
    arrays = to_arrays(model)
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    assert arrays["config_json"].dtype == np.uint8
    # what the memory codec keeps: raw bytes, dtype, shape
    stored = {k: (v.tobytes(), v.dtype.str, v.shape) for k, v in arrays.items()}
    restored = from_arrays({k: np.frombuffer(b, dtype=d).reshape(s)
                            for k, (b, d, s) in stored.items()})
    assert same_state(model, restored)
    data = paired_data(model.config, image, text, labels, model.device)
    assert torch.equal(image_representations(model, data.image),
                       image_representations(restored, data.image))
    assert torch.equal(text_representations(model, data.text),
                       text_representations(restored, data.text))
    again = to_arrays(restored)
    assert again.keys() == arrays.keys()
    assert all(np.array_equal(again[k], arrays[k]) and again[k].dtype == arrays[k].dtype
               for k in arrays)


def test_from_arrays_rejects_bad_state() -> None:
    arrays = to_arrays(build_model(config()))
    with pytest.raises(StateError, match="missing"):
        from_arrays({k: v for k, v in arrays.items() if k != "inet.layers.0.weight"})
    bad = dict(arrays)
    bad["inet.layers.0.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(StateError, match="shape"):
        from_arrays(bad)
    bad = dict(arrays)
    bad["inet.layers.0.weight"] = arrays["inet.layers.0.weight"].astype(np.float64)
    with pytest.raises(StateError, match="dtype"):
        from_arrays(bad)
    with pytest.raises(StateError, match="config_json"):
        from_arrays({k: v for k, v in arrays.items() if k != "config_json"})
