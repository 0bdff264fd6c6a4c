"""Improved Deep Classwise Hashing (IDCWH; Zhang & Yan, ICPR 2020, ``seeds/idcwh.txt``) as the
training objective of INet/TNet (``TrainSettings.loss='idcwh'``).

Per mini-batch of one modality:

    L = L_clw + γ L_csl + β L_quant

- L_clw, the normalised-Gaussian classwise loss: for code h_i and learnable class centers μ_j,
  −Σ_j y_ji log [exp(−‖h_i − μ_j‖²/2σ²) / Σ_k exp(−‖h_i − μ_k‖²/2σ²)], averaged over the
  batch (the slides sum over the N items; y is normalised to sum 1 for multi-label rows).
- binary center estimation: u_j = sgn(Σ_{i: y_ji = 1} b_i) with b = sgn(h) and sgn(0) = +1,
  the minimiser of Σ_i Σ_j y_ji ‖u_j − b_i‖² over u_j ∈ {−1, 1}^L, for every class j present
  in the batch (Z of them). Cross-modal: the b of a batch are the codes of both modalities of
  its items (the modality being trained and the other one's current representations).
- L_csl, the center similarity loss: θ_zj = ½ L cos(u_z, μ_j), s_zj = 1 when u_z is class j's
  estimate, −Σ (s θ − log(1 + e^θ)), here averaged over the Z × c pairs; it moves only the
  centers μ (the slides: min over M), pulling each toward its binary estimate and away from
  the others'.
- L_quant = ‖b_i − h_i‖², averaged over the batch.

``center_update='dcc'`` swaps the estimate for SDOH-HC's discrete center step (see
:func:`dcc_centers`), to compare the two ways of adapting binary centers to the codes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.functional import log_softmax, normalize, softplus

from hashstream.solver.ecmh.losses import ObjectiveHead
from hashstream.solver.ecmh.settings import IDCWHSettings
from hashstream.solver.hadamard import hadamard_centers


def binary_sign(x: Tensor) -> Tensor:
    """sgn with sgn(0) = +1, as ±1 in the dtype of ``x``."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def estimate_centers(codes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """IDCWH's binary centers: u_j = sgn(Σ_i y_ji b_i) (sgn(0) = +1) for every class j with at
    least one item. ``codes`` n × L (±1), ``labels`` n × c (0/1). Returns U (Z × L, ±1) and the
    Z class indices, ascending."""
    sums = labels.to(codes.dtype).T @ codes
    present = torch.nonzero(labels.sum(dim=0) > 0).flatten()
    return binary_sign(sums[present]), present


def dcc_centers(start: Tensor, codes: Tensor, labels: Tensor, classes: Tensor,
                hadamard: Tensor, theta: float, eta: float, sweeps: int) -> Tensor:
    """SDOH-HC's center step (its Eq. 1 for fixed B, the Y-step of ``sdoh_hc.py``) for the
    rows ``classes``: min_U θ‖C_Z − U‖² + η‖r L̂ − B Uᵀ‖² over U ∈ {−1, 1}^{Z×r}, i.e.
    min tr(U A Uᵀ) − 2 tr(Uᵀ Q) with Q = θ C_Z + η r L̂ᵀB (rows ``classes``), A = η BᵀB, by
    ``sweeps`` sweeps of discrete cyclic coordinate descent from ``start``.

    ``hadamard`` is c × r (class rows of the fixed Hadamard centers C), L̂ the label rows
    scaled to unit length. The rows of U are independent given A, so solving for the present
    classes only is exact. Without the quadratic term and with θ = 0 the minimiser is
    sgn(Σ b) of each class, IDCWH's estimate (:func:`estimate_centers`).
    """
    r = codes.shape[1]
    lab = labels.to(codes.dtype)
    l_hat = lab / lab.norm(dim=1, keepdim=True).clamp_min(1e-12)
    q = theta * hadamard[classes].to(codes.dtype) + eta * r * (l_hat.T @ codes)[classes]
    a = eta * (codes.T @ codes)
    u = start.clone()
    for _ in range(sweeps):
        for k in range(r):
            col = q[:, k] - u @ a[:, k] + u[:, k] * a[k, k]
            u[:, k] = binary_sign(col)
    return u


def classwise_loss(h: Tensor, centers: Tensor, labels: Tensor, sigma: float) -> Tensor:
    """L_clw: the mean over rows of −Σ_j y_j log softmax_j(−‖h − μ_j‖² / 2σ²), y normalised
    to sum 1 (an unlabelled row contributes 0)."""
    y = labels.to(h.dtype)
    y = y / y.sum(dim=1, keepdim=True).clamp_min(1.0)
    sq = ((h.unsqueeze(1) - centers.unsqueeze(0)) ** 2).sum(dim=2)
    return (-(y * log_softmax(-sq / (2.0 * sigma * sigma), dim=1)).sum(dim=1)).mean()


def center_similarity_loss(estimates: Tensor, classes: Tensor, centers: Tensor) -> Tensor:
    """L_csl averaged over the Z × c pairs: θ = ½ L cos(u_z, μ_j), s_zj = [classes[z] = j],
    mean of log(1 + e^θ) − s θ. No gradient reaches ``estimates``."""
    bits = centers.shape[1]
    theta = 0.5 * bits * (normalize(estimates.detach(), dim=1) @ normalize(centers, dim=1).T)
    s = torch.zeros_like(theta)
    s[torch.arange(classes.numel(), device=theta.device), classes] = 1.0
    return (softplus(theta) - s * theta).mean()


def quantization_loss(h: Tensor) -> Tensor:
    """‖sgn(h) − h‖², summed over bits and averaged over rows (sgn(0) = +1, a constant)."""
    return ((binary_sign(h.detach()) - h) ** 2).sum(dim=1).mean()


class IDCWHHead(ObjectiveHead):
    """The learnable class centers M (c × L, shared by INet and TNet) and the IDCWH objective.

    Centers are held as row blocks, one per growth, initialised U(−1, 1).
    """

    def __init__(self, n_classes: int, bits: int, settings: IDCWHSettings,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if n_classes < 1 or bits < 1:
            raise ValueError("an IDCWH head needs at least one class and one bit")
        self.settings = settings
        self._hadamard: Tensor | None = None
        self._init_rows(n_classes, bits, generator)

    def _block(self, rows: int, generator: torch.Generator | None) -> nn.Parameter:
        return nn.Parameter(torch.rand(rows, self.bits, generator=generator) * 2.0 - 1.0)

    def centers(self) -> Tensor:
        return self.rows()

    def _grown(self) -> None:
        self._hadamard = None

    def hadamard(self, device: torch.device) -> Tensor:
        """The fixed Hadamard centers of SDOH-HC, c × L (seed 0), for ``center_update='dcc'``."""
        if (self._hadamard is None or self._hadamard.shape[0] != self.n_classes
                or self._hadamard.device != device):
            cols = hadamard_centers(self.bits, self.n_classes, 0)
            self._hadamard = torch.as_tensor(cols.T.astype("float32"), device=device)
        return self._hadamard

    def binary_centers(self, codes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """U and its class indices from ±1 ``codes``, by the configured center update."""
        s = self.settings
        u, classes = estimate_centers(codes, labels)
        if s.center_update == "dcc":
            u = dcc_centers(u, codes, labels, classes, self.hadamard(codes.device),
                            s.dcc_theta, s.dcc_eta, s.dcc_sweeps)
        return u, classes

    def batch_terms(self, net: nn.Module, inputs: Tensor, labels: Tensor, other: Tensor,
                    generator: torch.Generator | None) -> tuple[Tensor, dict[str, Tensor]]:
        """h = net(inputs); terms 'classwise' (L_clw), 'center_similarity' (γ L_csl, centers
        estimated from sgn(h) and sgn(other)) and 'quantization' (β L_quant)."""
        s = self.settings
        h: Tensor = net(inputs)
        mu = self.centers()
        codes = torch.cat([binary_sign(h.detach()), binary_sign(other.detach())])
        u, classes = self.binary_centers(codes, torch.cat([labels, labels]))
        return h, {"classwise": classwise_loss(h, mu, labels, s.sigma),
                   "center_similarity": s.gamma * center_similarity_loss(u, classes, mu),
                   "quantization": s.quant * quantization_loss(h)}
