"""The three ECMH losses (paper §2.4, Eq. 1): self-taught distillation L_d (Eq. 4), common space
learning L_c (Eq. 5–6) and hash function learning L_h (Eq. 7), with the paper's scalings.

Each function takes the rows of one modality that a step updates (a mini-batch of m of the M
items, or all of them). The scalings are written so that, over a random batch, the expected
value equals the paper's full-set term: λ_d = 1/(M L²) becomes 1/(m L²), λ_c = λ_h = 1/(M² L)
become 1/(m M L). With m = M they are exactly the paper's.

``ObjectiveHead`` is the interface of the alternative objectives (``TrainSettings.loss``):
DHD (:mod:`~hashstream.solver.ecmh.dhd`) and IDCWH (:mod:`~hashstream.solver.ecmh.idcwh`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from hashstream.solver.ecmh.agreement import similarity
from hashstream.solver.ecmh.settings import CommonLoss


def distillation_loss(rep: Tensor, rep_old: Tensor, agreement: Tensor) -> Tensor:
    """One modality's term of L_d (Eq. 4): λ_d ‖A_α ∘ (F_{n|θn} − F_{n|θo})‖²_F.

    Keeps the dimensions where the old model's image and text agreed (A_α = 1) where they were.
    """
    m, bits = rep.shape
    return ((agreement * (rep - rep_old)) ** 2).sum() / (m * bits * bits)


def common_space_loss(rep: Tensor, other: Tensor, sim: Tensor, agreement: Tensor,
                      form: CommonLoss = "likelihood") -> Tensor:
    """L_c (Eq. 5–6) with Δ = ((1 − A_α) ∘ F) Gᵀ over the disagreed dimensions of ``rep``.

    ``form='paper'`` is Eq. 6 as printed, λ_c (‖(1 − S) ∘ Δ‖_S + ‖S ∘ (log(1 + e^Δ) − Δ)‖_S).
    Its dissimilar term is linear in Δ, and its minimum over tanh outputs is the collapse
    F = −G = a constant vector (Δ = −L for every pair, similar or not): with c balanced classes
    the dissimilar pairs outweigh the similar ones, so it beats any code that separates classes
    (see ``bench/RESULTS.md``). ``form='likelihood'`` (default) puts log(1 + e^Δ) in the
    dissimilar term too, which is the negative log-likelihood of DCMH that the paper builds on
    (§2.4: "other possible choices of L_c, as long as they obey the core idea"):
    λ_c ‖(1 − S) ∘ log(1 + e^Δ) + S ∘ (log(1 + e^Δ) − Δ)‖_S.

    ``rep`` (m × L) is the modality being updated, ``other`` (M × L) the other modality's
    representations of all M items, ``sim`` the m × M similarity S (Eq. 3; 0/1, any dtype).
    log(1 + e^Δ) − Δ is evaluated as softplus(−Δ), the same value without the cancellation
    for large Δ.
    """
    m, bits = rep.shape
    delta = ((1.0 - agreement) * rep) @ other.T
    sim = sim.to(delta.dtype)
    if form == "paper":
        terms = (1.0 - sim) * delta + sim * softplus(-delta)
    else:
        # (1 − S) log(1 + e^Δ) + S (log(1 + e^Δ) − Δ) = log(1 + e^Δ) − S Δ: one softplus.
        terms = softplus(delta) - sim * delta
    return terms.sum() / (m * other.shape[0] * bits)


def hash_loss(rep: Tensor, codes: Tensor, agreement: Tensor, beta: float,
              n_total: int) -> Tensor:
    """One modality's term of L_h (Eq. 7): λ_h ‖(1 − A_α) ∘ (β C − F)‖²_F.

    ``codes`` are the rows of C for the same items as ``rep``; β < 1 smooths the ±1 targets
    towards the tanh range; ``n_total`` is M, the number of items in the whole training set.
    """
    m, bits = rep.shape
    return (((1.0 - agreement) * (beta * codes - rep)) ** 2).sum() / (m * n_total * bits)


@torch.no_grad()
def objective(f: Tensor, g: Tensor, labels: Tensor, codes: Tensor, agreement: Tensor,
              f_old: Tensor | None, g_old: Tensor | None, beta: float,
              form: CommonLoss = "likelihood", block: int = 2048,
              distill_scale: float = 1.0) -> dict[str, float]:
    """The full-set objective of Eq. 1, L = L_d + L_c + L_h, for logging and tests.

    L_d is 0 without old representations (training from scratch, A_α = 0) and multiplied by
    ``distill_scale`` (1: the paper's λ_d; training uses ``distill_weight`` × L). L_c uses
    Δ = ((1 − A_α) ∘ F) Gᵀ as Eq. 5 writes it; rows are taken ``block`` at a time so the
    M × M matrices Δ and S never exist whole.
    """
    n = f.shape[0]
    if n == 0:
        return {"distillation": 0.0, "common": 0.0, "hash": 0.0, "total": 0.0}
    l_d = 0.0
    if f_old is not None and g_old is not None:
        l_d = distill_scale * float(distillation_loss(f, f_old, agreement)
                                    + distillation_loss(g, g_old, agreement))
    l_c = 0.0
    for i in range(0, n, block):
        rows = slice(i, min(i + block, n))
        sim = similarity(labels[rows], labels)
        part = common_space_loss(f[rows], g, sim, agreement[rows], form)
        l_c += float(part) * (rows.stop - rows.start) / n
    l_h = float(hash_loss(f, codes, agreement, beta, n) + hash_loss(g, codes, agreement, beta, n))
    return {"distillation": l_d, "common": l_c, "hash": l_h, "total": l_d + l_c + l_h}


class ObjectiveHead(nn.Module):
    """Trainable class-level targets shared by INet and TNet (DHD's hash proxies, IDCWH's
    class centers) and the objective that trains a network against them; the alternative to
    L_c + L_h chosen by ``TrainSettings.loss``. Rows are classes (label columns); a head grows
    by appending rows, never touching the old ones.
    """

    def batch_terms(self, net: nn.Module, inputs: Tensor, labels: Tensor, other: Tensor,
                    generator: torch.Generator | None) -> tuple[Tensor, dict[str, Tensor]]:
        """One mini-batch of one modality: ``inputs`` go through ``net``; ``labels`` (m × c,
        0/1) are theirs and ``other`` (m × L) the other modality's current representations of
        the same items. Returns the representation to store for these items and the weighted
        terms of the loss (their sum is what a step minimises)."""
        raise NotImplementedError

    def _init_rows(self, n_classes: int, bits: int, generator: torch.Generator | None) -> None:
        """The first block of class rows (c × ``bits``), drawn by :meth:`_block`."""
        self.bits = bits
        self.blocks = nn.ParameterList([self._block(n_classes, generator)])

    def _block(self, rows: int, generator: torch.Generator | None) -> nn.Parameter:
        """``rows`` freshly initialised class rows."""
        raise NotImplementedError

    def rows(self) -> Tensor:
        """All class rows, c × L (blocks in the order they were added)."""
        blocks = list(self.blocks)
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0)

    @property
    def n_classes(self) -> int:
        return sum(int(p.shape[0]) for p in self.blocks)

    def grow(self, n_classes: int, generator: torch.Generator) -> None:
        """Append rows so the head covers ``n_classes`` classes; old rows are untouched."""
        if n_classes <= self.n_classes:
            return
        ref = self.blocks[0]
        fresh = self._block(n_classes - self.n_classes, generator)
        self.blocks.append(nn.Parameter(fresh.detach().to(ref.device, ref.dtype)))
        self._grown()

    def _grown(self) -> None:
        """Hook after :meth:`grow` added rows (drop caches sized by the class count)."""

    @torch.no_grad()
    def full_objective(self, inet: nn.Module, tnet: nn.Module, image: Tensor, text: Tensor,
                       labels: Tensor, f: Tensor, g: Tensor, seed: int = 0,
                       block: int = 4096) -> dict[str, float]:
        """The objective over the whole set, for logging and tests: each modality's mean
        per-item loss (``block`` rows at a time), summed over the two modalities. Random
        views come from a generator seeded with ``seed``, so two calls see the same views."""
        n = int(labels.shape[0])
        out: dict[str, float] = {}
        if n == 0:
            return {"total": 0.0}
        gen = torch.Generator(device=labels.device).manual_seed(seed)
        for net, x, other in ((inet, image, g), (tnet, text, f)):
            for i in range(0, n, block):
                rows = slice(i, min(i + block, n))
                _, terms = self.batch_terms(net, x[rows], labels[rows], other[rows], gen)
                for key, value in terms.items():
                    out[key] = out.get(key, 0.0) + float(value) * (rows.stop - rows.start) / n
        out["total"] = sum(out.values())
        return out
