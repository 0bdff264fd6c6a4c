"""The two measurement matrices of ECMH (paper §2.4): agreement A_α (Eq. 2) and similarity S
(Eq. 3), plus the unified code update C = sign(F + G) (Eq. 8)."""

from __future__ import annotations

import torch
from torch import Tensor


def agreement_matrix(f_old: Tensor, g_old: Tensor, alpha: float) -> Tensor:
    """A_α (Eq. 2): 1 where F_{n|θo} and G_{n|θo} agree in sign and both exceed α in magnitude.

    ``f_old``, ``g_old`` are the deep representations of the new data under the old parameters
    (M × L); the result is an M × L float 0/1 matrix. A zero entry has no sign to agree with,
    and any α ≥ 0 excludes it anyway through the strict ``> α``.
    """
    if f_old.shape != g_old.shape:
        raise ValueError(f"F {tuple(f_old.shape)} and G {tuple(g_old.shape)} differ in shape")
    agree = (torch.sign(f_old) == torch.sign(g_old)) & (f_old.abs() > alpha) & (
        g_old.abs() > alpha)
    return agree.to(f_old.dtype)


def similarity(labels_a: Tensor, labels_b: Tensor) -> Tensor:
    """S (Eq. 3): S[i, j] = 1 when item i of ``labels_a`` shares a label with item j of
    ``labels_b`` (rows are 0/1 label vectors), else 0."""
    return ((labels_a.float() @ labels_b.float().T) > 0).float()


def unified_codes(f: Tensor, g: Tensor) -> Tensor:
    """C = sign(F + G) (Eq. 8) as float ±1, with sign(0) = +1."""
    return torch.where(f + g >= 0, 1.0, -1.0).to(f.dtype)
