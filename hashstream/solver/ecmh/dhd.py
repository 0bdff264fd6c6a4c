"""Deep Hash Distillation (DHD; Jang et al., ECCV 2022, ``seeds/dhd.txt``) as the training
objective of INet/TNet (``TrainSettings.loss='dhd'``).

Per mini-batch of one modality (Eq. 8, averaged over the batch):

    L = L_HP(y, p_T, τ) + λ1 L_SdH(h_T, h_S) + λ2 L_bce-Q(h_T)     (+ λ2 L_bce-Q(P))

- views: the weak (teacher) view x̃_T and the strong (student) view x̃_S of the same items.
  Images here are feature vectors, so the paper's image transformations (crop, flip, colour
  jitter, grey, blur) become feature-space ones: dropout of input features, Gaussian noise
  scaled per feature by the input's standard deviation, and mixing with another item of the
  batch (weight < 1/2, so the row keeps its label). Each happens to a row with probability
  ``*_prob`` in the strong view and ``*_prob`` × s_T in the weak view (paper §3.1: one
  transformation family, the teacher's occurrence probabilities scaled by s_T). Dense text gets
  the same three; token text gets word dropout (ids set to padding).
- L_SdH (Eq. 2) = 1 − cos(h_S, sg(h_T)): the teacher's code is a fixed target.
- L_HP (Eq. 3–4) = H(y, softmax(cos(P, h_T) / τ)) with trainable hash proxies P (one row per
  class) and y normalised to sum 1 (the paper's multi-label rule).
- L_bce-Q (Eq. 5–7) = (1/K) Σ_k H_b(b⁺_k, g⁺(h_k)) + H_b(b⁻_k, g⁻(h_k)),
  g^±(h) = exp(−(h ∓ 1)² / 2σ²), b⁺ = (sgn(h) + 1)/2 (sgn(0) = +1), b⁻ = 1 − b⁺; applied to the
  proxies too (paper §3.2).

Cross-modal use: INet and TNet share the proxies, so both modalities learn to point at the same
class proxy; the proxies are the only coupling between them (no pairwise L_c).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.functional import cosine_similarity, log_softmax, normalize

from hashstream.solver.ecmh.losses import ObjectiveHead
from hashstream.solver.ecmh.networks import MLPHead, TNet
from hashstream.solver.ecmh.settings import PAD_ID, DHDSettings


def _rand(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=torch.float32)


def augment_features(x: Tensor, std: Tensor, prob_scale: float, settings: DHDSettings,
                     generator: torch.Generator | None = None) -> Tensor:
    """A random view of dense feature rows ``x`` (m × d), same shape and dtype.

    ``std`` (d,) is the per-feature standard deviation that scales the noise; ``prob_scale``
    multiplies the occurrence probability of every transformation (1 for the strong view,
    s_T for the weak one). The random numbers drawn do not depend on the probabilities.
    """
    s = settings
    m, d = x.shape
    out = x
    # Feature dropout, rescaled so that a feature's expected value is kept.
    rows = _rand((m, 1), x, generator) < s.dropout_prob * prob_scale
    keep = (_rand((m, d), x, generator) >= s.dropout_rate).to(x.dtype)
    out = torch.where(rows, out * keep / (1.0 - s.dropout_rate), out)
    # Gaussian noise, σ_noise × the feature's own spread.
    rows = _rand((m, 1), x, generator) < s.noise_prob * prob_scale
    noise = torch.randn((m, d), generator=generator, device=x.device, dtype=x.dtype)
    out = out + rows.to(x.dtype) * s.noise_std * std.to(x.dtype) * noise
    # Mixing with another item of the batch, weight λ ~ U(0, mix_max) < 1/2.
    rows = _rand((m, 1), x, generator) < s.mix_prob * prob_scale
    lam = _rand((m, 1), x, generator).to(x.dtype) * s.mix_max * rows.to(x.dtype)
    partner = torch.randperm(m, generator=generator, device=x.device) if m > 0 else \
        torch.zeros(0, dtype=torch.long, device=x.device)
    return (1.0 - lam) * out + lam * x[partner]


def augment_tokens(ids: Tensor, prob_scale: float, settings: DHDSettings,
                   generator: torch.Generator | None = None) -> Tensor:
    """A random view of word-id rows: word dropout (ids set to ``PAD_ID``) in a row with
    probability ``dropout_prob`` × ``prob_scale``, each word with ``dropout_rate``."""
    m, t = ids.shape
    rows = _rand((m, 1), ids, generator) < settings.dropout_prob * prob_scale
    drop = _rand((m, t), ids, generator) < settings.dropout_rate
    return torch.where(rows & drop, torch.full_like(ids, PAD_ID), ids)


def input_std(net: nn.Module) -> Tensor | None:
    """The per-feature standard deviation of ``net``'s inputs, from its frozen standardiser
    (1 / scale); None for a TNet over word ids."""
    if isinstance(net, MLPHead):
        return 1.0 / net.scale
    if isinstance(net, TNet):
        return None if net.embedding is not None else 1.0 / net.head.scale
    raise TypeError(f"no input statistics for {type(net).__name__}")


def make_view(inputs: Tensor, std: Tensor | None, prob_scale: float, settings: DHDSettings,
              generator: torch.Generator | None = None) -> Tensor:
    """Dense rows (``std`` given) through :func:`augment_features`, id rows through
    :func:`augment_tokens`."""
    if std is None:
        return augment_tokens(inputs, prob_scale, settings, generator)
    return augment_features(inputs, std, prob_scale, settings, generator)


def hash_proxy_loss(h: Tensor, proxies: Tensor, labels: Tensor, tau: float) -> Tensor:
    """L_HP (Eq. 3–4), the mean over rows of H(y, softmax(cos(P, h) / τ)); label rows are
    normalised to sum 1 (an unlabelled row contributes 0)."""
    y = labels.to(h.dtype)
    y = y / y.sum(dim=1, keepdim=True).clamp_min(1.0)
    logits = normalize(h, dim=1) @ normalize(proxies, dim=1).T / tau
    return (-(y * log_softmax(logits, dim=1)).sum(dim=1)).mean()


def self_distillation_loss(h_teacher: Tensor, h_student: Tensor) -> Tensor:
    """L_SdH (Eq. 2), the mean over rows of 1 − cos(h_S, h_T); no gradient reaches h_T."""
    return (1.0 - cosine_similarity(h_student, h_teacher.detach(), dim=1)).mean()


def bce_quantization_loss(h: Tensor, sigma: float) -> Tensor:
    """L_bce-Q (Eq. 5–7), averaged over rows and the K elements of each row.

    With d^± = (h ∓ 1)² / 2σ², g^± = exp(−d^±): −log g = d exactly and
    −log(1 − g) = −log(−expm1(−d)), so no likelihood underflows for far-off values (the
    proxies are not bounded). The label b⁺ = (sgn(h) + 1)/2 is a constant (sgn(0) = +1).
    """
    b_pos = (h.detach() >= 0).to(h.dtype)
    two_var = 2.0 * sigma * sigma
    d_pos = (h - 1.0) ** 2 / two_var
    d_neg = (h + 1.0) ** 2 / two_var

    def bce(u: Tensor, d: Tensor) -> Tensor:
        # H_b(u, e^{−d}) = u d − (1 − u) log(1 − e^{−d}); the second factor only where u < 1.
        miss = torch.where(u < 1, d, torch.ones_like(d))
        return u * d - (1.0 - u) * torch.log(-torch.expm1(-miss))

    return (bce(b_pos, d_pos) + bce(1.0 - b_pos, d_neg)).mean()


class DHDHead(ObjectiveHead):
    """The hash proxies P (c × L, trainable, shared by INet and TNet) and the DHD objective.

    Proxies are held as row blocks, one per growth, initialised U(−a, a) with
    a = (5/3)·√(6 / (c₀ + L)) (Xavier with the tanh gain, as the authors' code).
    """

    def __init__(self, n_classes: int, bits: int, settings: DHDSettings,
                 generator: torch.Generator | None = None) -> None:
        # Same opening as IDCWHHead.__init__: each head checks its size, keeps its settings,
        # then lets ObjectiveHead draw the first block of class rows by its own _block.
        super().__init__()
        if n_classes < 1 or bits < 1:
            raise ValueError("a DHD head needs at least one class and one bit")
        self.settings = settings
        self.bound = (5.0 / 3.0) * math.sqrt(6.0 / (n_classes + bits))
        self._init_rows(n_classes, bits, generator)

    def _block(self, rows: int, generator: torch.Generator | None) -> nn.Parameter:
        init = (torch.rand(rows, self.bits, generator=generator) * 2.0 - 1.0) * self.bound
        return nn.Parameter(init)

    def proxies(self) -> Tensor:
        return self.rows()

    def batch_terms(self, net: nn.Module, inputs: Tensor, labels: Tensor, other: Tensor,
                    generator: torch.Generator | None) -> tuple[Tensor, dict[str, Tensor]]:
        """Teacher and student views in one forward pass; returns h_T and the weighted terms
        'proxy' (L_HP), 'self_distillation' (λ1 L_SdH), 'quantization' (λ2 L_bce-Q of h_T,
        plus of the proxies when ``quantize_proxies``)."""
        s = self.settings
        m = int(inputs.shape[0])
        std = input_std(net)
        teacher = make_view(inputs, std, s.teacher_scale, s, generator)
        student = make_view(inputs, std, 1.0, s, generator)
        both: Tensor = net(torch.cat([teacher, student]))
        h_t, h_s = both[:m], both[m:]
        p = self.proxies()
        quant = bce_quantization_loss(h_t, s.sigma)
        if s.quantize_proxies:
            quant = quant + bce_quantization_loss(p, s.sigma)
        return h_t, {"proxy": hash_proxy_loss(h_t, p, labels, s.tau),
                     "self_distillation": s.lambda_sdh * self_distillation_loss(h_t, h_s),
                     "quantization": s.lambda_q * quant}
