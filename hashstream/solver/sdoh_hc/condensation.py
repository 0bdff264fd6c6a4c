"""Condensed exemplars (IEM, ``../seeds/iem.txt``): synthetic per-class exemplars learned by
distribution matching of feature embeddings, with network and data augmentation.

The ``condensed`` exemplar policy stores, instead of n2 raw points of the chunk, the same number
of synthetic vectors, a few per class, whose embedding distribution matches the class's real
points under randomly initialised embedding networks (DM, Zhao & Bilen 2023), as in IEM:

* **Embedding networks.** Each step draws a fresh two-layer ReLU MLP, ψ(x) = relu(W2ᵀ
  relu(W1ᵀx + b1) + b2), initialised like PyTorch's ``nn.Linear`` (U(±1/√fan_in)), and shares
  it across the classes of that step. The inputs are the chunk's features standardised per
  dimension (chunk mean and standard deviation), so the networks see unit-scale inputs
  whatever the raw scale (Fashion-MNIST pixels are 0–255).
* **Network augmentation** (IEM Eq. 4): each layer's weights and bias are perturbed,
  θ ← θ + ρ‖θ‖_F · ε/‖ε‖_F with ε ~ N(0, I), ``perturb`` = ρ. Note: on top of a freshly drawn
  random network this mainly widens the family of networks (a Gaussian component on the
  uniform initialisation and a jitter of the weight norm); with vectors there is no
  pretrained-vs-initialised distinction to exploit.
* **Data augmentation**, adapted from images to feature vectors. IEM's multi-formation packs
  several downscaled images of a class into one synthetic image; a feature vector has no
  spatial layout to pack into, and the solver uses the stored vector as it is (no decoder),
  so we use three differentiable, class-preserving transforms instead:
  (1) *within-class mixing* — with probability ``mix_prob`` per step every row is replaced by
  λx_i + (1 − λ)x_π(i) with a random partner π(i) of the same class and set, λ ~ U(0, 1) per
  row: the closest analogue of multi-formation (each augmented sample carries information of
  several exemplars, so the synthetic set must also match the real one on its convex
  combinations, which spreads the exemplars over the class instead of collapsing them);
  (2) *feature masking* — each dimension is set to the chunk mean (0 after standardising)
  with probability ``mask``, the vector analogue of DSA's cutout / random erasing;
  (3) *Gaussian noise* of standard deviation ``noise`` (standardised units), the analogue of
  colour jitter. The transforms are *Siamese* (DSA): the same mask, the same mixing decision
  and the same noise level apply to the real and the synthetic batch of a step. Augmenting
  only the synthetic side would move the matched target (the exemplars would be pulled to
  compensate for the transform); with the same transform on both sides, equal distributions
  stay a minimiser of the loss, and the augmentations only add views.
* **Loss** (IEM Eq. 7): Σ_c ‖mean ψ(A(real_c)) − mean ψ(A(syn_c))‖², real_c a random batch
  of at most ``real_batch`` rows of class c (by default all of them: a sampled real batch
  adds target noise of the same order as the k-sample error being corrected); gradients are
  written out by hand (NumPy only, float32, no autograd), and the synthetic vectors take Adam
  steps of size ``lr``/√k_c with a cosine schedule (the error of a k-row mean is ∝ 1/√k, so
  is the move each row needs; a fixed step leaves a noise floor above the starting gap for
  large k), projected back into the per-dimension range of the chunk (pixels stay valid
  pixels; constant dimensions stay constant).

Synthetic exemplars start from random real rows of their class (as DM does), so zero steps
gives a class-balanced random sample. Each gets the one-hot label of its class (a multi-label
row counts towards each of its classes' real sets; rows with no label are not condensed).

**Codes: the class's current center row Y_c**, not sgn(φ(s)P). A synthetic vector is not an
item of the chunk, so it has no learned code of its own; the code that the round drives every
point of class c towards is Y_c (the η‖rL̂ − BYᵀ‖² term), and a real exemplar chosen by the
``nearest_center`` rule stores exactly Y_c. Encoding with the new P would instead depend on how
P extrapolates to a point that may lie off the data manifold (with the RBF map its kernel
profile matches no real item) and would copy P's errors on that class into the memory that is
meant to correct them next round. The cost: all exemplars of a class share one code, so the
memory no longer carries within-class code variation; their features still weigh the exemplar
term through the cosine similarities of Sqn.

Everything is seeded by the ``numpy.random.Generator`` passed in: same generator state, same
exemplars. Nothing passed in is mutated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hashstream.solver.class_lists import ClassLists

Array = np.ndarray[Any, Any]
_F32 = np.float32


@dataclass(frozen=True)
class CondenseConfig:
    """Knobs of the condensation (defaults tuned on Fashion-MNIST chunks; see bench/RESULTS.md).

    ``steps`` outer iterations (one fresh perturbed network each), Adam step ``lr``/√k in
    standardised units, embedding MLP widths ``hidden`` and ``embed``, at most ``real_batch``
    real rows per class and step, network perturbation ρ = ``perturb``, and the data
    augmentation rates ``noise``, ``mask`` and ``mix_prob``.
    """

    steps: int = 100
    lr: float = 0.1
    hidden: int = 128
    embed: int = 64
    real_batch: int = 2048
    perturb: float = 0.1
    noise: float = 0.1
    mask: float = 0.1
    mix_prob: float = 0.5

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError("steps must be non-negative")
        if self.lr <= 0 or self.hidden < 1 or self.embed < 1 or self.real_batch < 1:
            raise ValueError("lr, hidden, embed and real_batch must be positive")
        if self.perturb < 0 or self.noise < 0:
            raise ValueError("perturb and noise must be non-negative")
        if not (0 <= self.mask < 1 and 0 <= self.mix_prob <= 1):
            raise ValueError("mask must be in [0, 1) and mix_prob in [0, 1]")


@dataclass(frozen=True)
class _Net:
    """ψ(x) = relu(relu(x W1 + b1) W2 + b2): a random embedding network (float32)."""

    w1: Array  # d × h
    b1: Array  # h
    w2: Array  # h × e
    b2: Array  # e

    def forward(self, x: Array) -> tuple[Array, tuple[Array, Array, Array]]:
        z1 = x @ self.w1 + self.b1
        h1 = np.maximum(z1, 0)
        z2 = h1 @ self.w2 + self.b2
        return np.maximum(z2, 0), (z1, z2, h1)

    def input_grad(self, cache: tuple[Array, Array, Array], g_out: Array) -> Array:
        """∂(Σ g_out ⊙ ψ(x))/∂x: back through both ReLUs (weights are not trained)."""
        z1, z2, _ = cache
        g_z2 = g_out * (z2 > 0)
        g_z1 = (g_z2 @ self.w2.T) * (z1 > 0)
        grad: Array = g_z1 @ self.w1.T
        return grad


def _linear(fan_in: int, fan_out: int, perturb: float,
            rng: np.random.Generator) -> tuple[Array, Array]:
    """PyTorch's default ``nn.Linear`` initialisation, then IEM's weight perturbation."""
    bound = 1.0 / np.sqrt(fan_in)
    w = rng.uniform(-bound, bound, (fan_in, fan_out))
    b = rng.uniform(-bound, bound, fan_out)
    if perturb > 0:
        out = []
        for p in (w, b):
            eps = rng.standard_normal(p.shape)
            out.append(p + perturb * np.linalg.norm(p) * eps / max(np.linalg.norm(eps), 1e-12))
        w, b = out
    return w.astype(_F32), b.astype(_F32)


def random_network(dim: int, hidden: int, embed: int, perturb: float,
                   rng: np.random.Generator) -> _Net:
    """A freshly initialised (and, with ``perturb`` > 0, perturbed) embedding network."""
    w1, b1 = _linear(dim, hidden, perturb, rng)
    w2, b2 = _linear(hidden, embed, perturb, rng)
    return _Net(w1, b1, w2, b2)


@dataclass(frozen=True)
class _Aug:
    """One step's Siamese augmentation: feature mask, mixing on/off, noise level."""

    keep: Array | None  # d, 1 where the feature is kept (float32); None = no masking
    mix: bool
    noise: float

    def apply(self, x: Array, rng: np.random.Generator
              ) -> tuple[Array, tuple[Array, Array] | None]:
        """A(x) and what its input gradient needs (λ, π) when mixing is on."""
        cache = None
        if self.mix and x.shape[0] > 1:
            lam = rng.random((x.shape[0], 1), dtype=_F32)
            perm = rng.permutation(x.shape[0])
            x = lam * x + (1 - lam) * x[perm]
            cache = (lam, perm)
        if self.keep is not None:
            x = x * self.keep
        if self.noise > 0:
            x = x + _F32(self.noise) * rng.standard_normal(x.shape, dtype=_F32)
        return x, cache

    def input_grad(self, cache: tuple[Array, Array] | None, g: Array) -> Array:
        if self.keep is not None:
            g = g * self.keep
        if cache is None:
            return g
        lam, perm = cache
        out = lam * g
        out[perm] += (1 - lam) * g  # π is a permutation: no index repeats
        return out


def class_budgets(sizes: Array, count: int, per_class: int = 0) -> Array:
    """Synthetic exemplars per class: ``count`` split evenly over the classes with rows
    (``sizes`` = real rows per class), each capped at its number of rows and, when
    ``per_class`` > 0, at ``per_class``; what a capped class cannot take goes to the others.
    The remainder of an uneven split goes to the lower class indices. Sums to
    min(count, Σ caps)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    caps = np.minimum(sizes, per_class) if per_class > 0 else sizes.copy()
    budget = np.zeros_like(caps)
    remaining = int(min(max(count, 0), int(caps.sum())))
    while remaining > 0:
        open_ = np.flatnonzero(budget < caps)
        share = max(remaining // len(open_), 1)
        for k in open_:
            add = min(share, int(caps[k] - budget[k]), remaining)
            budget[k] += add
            remaining -= add
            if remaining == 0:
                break
    return budget


def _standardizer(x: Array) -> tuple[Array, Array]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 1e-8 * max(float(np.abs(x).max()), 1.0), std, 1.0)


def matching_loss_grad(net: _Net, aug: _Aug, mu_real: Array, syn: Array,
                       rng: np.random.Generator) -> tuple[float, Array]:
    """One class's term of IEM Eq. 7, ‖mean ψ(A(syn)) − mu_real‖², and its gradient in
    ``syn`` (the augmentation's random draws come from ``rng``)."""
    syn_aug, aug_cache = aug.apply(syn, rng)
    emb, net_cache = net.forward(syn_aug)
    diff = emb.mean(axis=0) - mu_real
    g_emb = np.broadcast_to(2 * diff / syn.shape[0], emb.shape)
    grad = aug.input_grad(aug_cache, net.input_grad(net_cache, g_emb))
    return float((diff.astype(np.float64) ** 2).sum()), grad


def condense_features(features: Array, groups: list[Array], init: list[Array],
                      config: CondenseConfig, rng: np.random.Generator) -> list[Array]:
    """Distribution matching: move each class's synthetic rows ``init[i]`` (k_i × d, raw
    feature space) so their embeddings match those of ``features[groups[i]]``; returns the
    new rows (float32, raw space, clipped to the per-dimension range of ``features``)."""
    if config.steps == 0:  # the starting point itself: a random sample of each class
        return [np.asarray(s, dtype=_F32) for s in init]
    x64 = np.asarray(features, dtype=np.float64)
    mean, std = _standardizer(x64)
    z = ((x64 - mean) / std).astype(_F32)
    lo, hi = z.min(axis=0), z.max(axis=0)
    syn: list[Array] = [np.clip(((np.asarray(s, np.float64) - mean) / std).astype(_F32), lo, hi)
                        for s in init]
    m1: list[Array] = [np.zeros_like(s) for s in syn]
    m2: list[Array] = [np.zeros_like(s) for s in syn]
    b1, b2, eps = 0.9, 0.999, 1e-8
    d = z.shape[1]
    for step in range(1, config.steps + 1):
        net = random_network(d, config.hidden, config.embed, config.perturb, rng)
        keep = np.asarray(rng.random(d) >= config.mask, _F32) if config.mask > 0 else None
        aug = _Aug(keep, bool(rng.random() < config.mix_prob), config.noise)
        decay = 0.5 * (1 + np.cos(np.pi * (step - 1) / config.steps))  # cosine schedule
        for i, rows in enumerate(groups):
            s = syn[i]
            if s.shape[0] == 0:
                continue
            if len(rows) > config.real_batch:
                rows = rng.choice(rows, size=config.real_batch, replace=False)
            real_aug, _ = aug.apply(z[rows], rng)
            mu_real = net.forward(real_aug)[0].mean(axis=0)
            _, grad = matching_loss_grad(net, aug, mu_real, s, rng)
            m1[i] = b1 * m1[i] + (1 - b1) * grad
            m2[i] = b2 * m2[i] + (1 - b2) * grad * grad
            m_hat = m1[i] / (1 - b1 ** step)
            v_hat = m2[i] / (1 - b2 ** step)
            lr = config.lr * decay / np.sqrt(s.shape[0])
            syn[i] = np.clip(s - lr * m_hat / (np.sqrt(v_hat) + eps), lo, hi)
    return [(s.astype(np.float64) * std + mean).astype(_F32) for s in syn]


def rows_by_class(labels: ClassLists) -> list[Array]:
    """The rows of each class 0 … n_classes − 1 (ascending), from the class lists."""
    order = np.argsort(labels.classes, kind="stable")  # entries are in row order already
    rows = labels.row_of_entry()[order]
    bounds = np.searchsorted(labels.classes[order], np.arange(labels.n_classes + 1))
    return [rows[bounds[k]:bounds[k + 1]] for k in range(labels.n_classes)]


def condense_exemplars(features: Array, labels: ClassLists, centers: Array, count: int,
                       rng: np.random.Generator, *, per_class: int = 0,
                       config: CondenseConfig | None = None
                       ) -> tuple[Array, ClassLists, Array]:
    """The ``condensed`` policy: ``count`` synthetic exemplars of a chunk.

    ``features`` n × d, ``labels`` the chunk's class lists, ``centers`` the round's Y
    (c × r, ±1, c ≥ ``labels.n_classes``). Returns (features k × d float32, one class per
    exemplar as class lists over c classes, codes k × r int8 = the Y row of each exemplar's
    class), rows grouped by class in class order, k = Σ :func:`class_budgets`. See the module
    docstring for the method and the choice of codes.
    """
    config = config or CondenseConfig()
    x = np.asarray(features)
    y = np.asarray(centers)
    c = max(labels.n_classes, int(y.shape[0]))
    d, r = x.shape[1], y.shape[1]
    budgets = class_budgets(np.bincount(labels.classes, minlength=c), count, per_class)
    classes = np.flatnonzero(budgets > 0)
    if len(classes) == 0:
        return (np.zeros((0, d), _F32), ClassLists.empty(c), np.zeros((0, r), np.int8))
    by_class = rows_by_class(labels)
    groups = [by_class[k] for k in classes]
    init = [x[np.sort(rng.choice(rows, size=int(budgets[k]), replace=False))]
            for k, rows in zip(classes, groups, strict=True)]
    syn = condense_features(x, groups, init, config, rng)
    class_of_row = np.repeat(classes.astype(np.int64), budgets[classes])
    out_labels = ClassLists(np.arange(len(class_of_row) + 1), class_of_row, c)
    codes = np.where(y[class_of_row] >= 0, 1, -1).astype(np.int8)
    return np.concatenate(syn).astype(_F32), out_labels, codes


def embedding_mean_gap(real: Array, real_labels: ClassLists, synthetic: Array,
                       synthetic_labels: ClassLists, *, n_networks: int = 16, seed: int = 12345,
                       hidden: int = 128, embed: int = 64) -> float:
    """How far the synthetic set's class means are from the real ones in embedding space:
    the mean over ``n_networks`` fresh, unperturbed random networks (seeded by ``seed``,
    independent of any condensation run) of Σ_c ‖mean ψ(real_c) − mean ψ(syn_c)‖² / Σ_c
    ‖mean ψ(real_c)‖², over the classes both sets have, with no augmentation; both sets are
    standardised by the real set's statistics. 0 when the means agree."""
    rng = np.random.default_rng(seed)
    x64 = np.asarray(real, dtype=np.float64)
    mean, std = _standardizer(x64)
    zr = ((x64 - mean) / std).astype(_F32)
    zs = ((np.asarray(synthetic, dtype=np.float64) - mean) / std).astype(_F32)
    width = max(real_labels.n_classes, synthetic_labels.n_classes)
    rows_r = rows_by_class(real_labels.widen(width))
    rows_s = rows_by_class(synthetic_labels.widen(width))
    classes = [k for k in range(width) if len(rows_r[k]) and len(rows_s[k])]
    total = 0.0
    for _ in range(n_networks):
        net = random_network(zr.shape[1], hidden, embed, 0.0, rng)
        num = den = 0.0
        for k in classes:
            mu_r = net.forward(zr[rows_r[k]])[0].mean(axis=0).astype(np.float64)
            mu_s = net.forward(zs[rows_s[k]])[0].mean(axis=0).astype(np.float64)
            num += float(((mu_r - mu_s) ** 2).sum())
            den += float((mu_r ** 2).sum())
        total += num / max(den, 1e-30)
    return total / n_networks
