"""The linear → centers baseline: ridge maps of two modalities onto Hadamard class centers."""

from __future__ import annotations

import numpy as np
import pytest

from hashstream.solver.hadamard import hadamard_centers
from hashstream.solver.linear_baseline import (
    center_targets,
    fit_linear_hash,
    sign_codes,
    token_counts,
    token_vocabulary,
)
from hashstream.solver.metrics import evaluate

BITS, CLASSES = 16, 4


def _two_modalities(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Separable classes: class means far apart in both modalities, small noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    image = rng.standard_normal((CLASSES, 20))[y] * 4 + rng.standard_normal((n, 20))
    text = rng.standard_normal((CLASSES, 6))[y] * 4 + rng.standard_normal((n, 6)) * 0.5
    return image.astype(np.float32), text.astype(np.float32), np.eye(CLASSES, dtype=np.uint8)[y]


def test_separable_codes_hit_the_centers_and_retrieve() -> None:
    all_image, all_text, all_labels = _two_modalities(500, seed=1)
    image, text, labels = all_image[:400], all_text[:400], all_labels[:400]
    q_image, q_text, q_labels = all_image[400:], all_text[400:], all_labels[400:]
    targets = center_targets(labels, BITS)
    centers = hadamard_centers(BITS, CLASSES)
    assert np.array_equal(targets, centers.T[labels.argmax(1)])
    img, txt = fit_linear_hash(image, targets), fit_linear_hash(text, targets)
    for model, x in ((img, image), (txt, text)):
        hit = (model.encode(x) == targets).all(axis=1).mean()
        assert hit > 0.9, hit
    db = sign_codes(img.project(image) + txt.project(text))
    i2t = evaluate(img.encode(q_image), q_labels, db, labels).map
    t2i = evaluate(txt.encode(q_text), q_labels, db, labels).map
    rng = np.random.default_rng(7)
    rand_db = sign_codes(rng.standard_normal(db.shape))
    rand = evaluate(sign_codes(rng.standard_normal((100, BITS))), q_labels, rand_db, labels).map
    assert rand < 0.45  # 4 balanced classes: chance ≈ 0.25-0.3
    assert min(i2t, t2i) > rand + 0.4, (i2t, t2i, rand)


def test_multi_label_targets_are_the_sign_of_the_center_sum() -> None:
    centers = hadamard_centers(BITS, CLASSES).astype(int)  # bits × classes
    labels = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 1, 0, 1]])
    got = center_targets(labels, BITS)
    assert got.dtype == np.int8 and got.shape == (5, BITS)
    assert np.array_equal(got[0], centers[:, 0])
    two = centers[:, 0] + centers[:, 1]
    assert (two == 0).any()  # distinct Hadamard columns disagree somewhere: ties exist
    assert np.array_equal(got[1], np.where(two < 0, -1, 1))
    assert np.array_equal(got[1][two == 0], np.ones(int((two == 0).sum())))  # ties → +1
    three = centers[:, :3].sum(axis=1)  # odd count: never a tie, a majority vote
    assert np.array_equal(got[2], np.sign(three))
    assert (got[3] == 1).all()  # no class: the sum is 0 everywhere → +1
    assert not np.array_equal(got[4], got[1])


def test_ridge_default_and_explicit() -> None:
    image, _, labels = _two_modalities(200, seed=2)
    targets = center_targets(labels, BITS)
    model = fit_linear_hash(image, targets)
    assert model.ridge == pytest.approx(200.0)  # trace of ZᵀZ / d = n for standardised z
    heavy = fit_linear_hash(image, targets, ridge=1e9)
    assert np.abs(heavy.weights).max() < 1e-3 < np.abs(model.weights).max()
    assert np.allclose(heavy.bias, targets.mean(axis=0))  # the bias is not penalised
    with pytest.raises(ValueError):
        fit_linear_hash(image, targets[:10])


def test_constant_feature_and_token_counts() -> None:
    x = np.ones((6, 3))
    x[:, 1] = np.arange(6)
    model = fit_linear_hash(x, sign_codes(np.arange(6)[:, None] - 2.5))
    assert np.isfinite(model.weights).all() and model.scale[0] == 1.0
    tokens = np.array([[3, 3, 9, -1], [9, 5, -1, -1], [7, -1, -1, -1]])
    vocab = token_vocabulary(tokens, max_words=2)
    assert vocab.tolist() == [3, 9]
    counts = token_counts(tokens, vocab)
    assert counts.tolist() == [[2, 1], [0, 1], [0, 0]]
