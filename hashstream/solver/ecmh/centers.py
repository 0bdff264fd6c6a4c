"""The stage-3 term against old classes: class centers in Hamming space, where a new class's
center goes, and the pull of the new items' outputs towards their classes' centers.

ECMH's stage 3 sees only new items, and L_d keeps the codes the old model gave them on the
agreed dimensions, which are often an old class's codes; nothing in the paper's extension
moves a new class away from the old ones. The old codes are never rewritten, so the old
classes' places are known: the binary center of a class is u_j = sgn(Σ b) over the codes of
its items (IDCWH, ``seeds/idcwh.txt``, "intra-class samples clustering"; sgn(0) = +1).

A new class's center starts where the old model puts its items (the same estimate over the
codes sign(F_o + G_o) of stage 2) and moves away from the placed centers by the fewest bit
flips, on the bits L_d holds least, until it is as far from its nearest one as old classes
typically are from theirs (:func:`anchored_centers`); a class without items takes a Hadamard
column (the linear baseline's targets) farthest from the others (:func:`complete_centers`).
The term (:func:`center_loss`) is ECMH's L_h (Eq. 7) with the class centers as targets on
every bit, beside L_d, which still holds every agreed bit (releasing the bits a center moves
from L_d cost old codes 5–21 % on toy data; IDCWH's center likelihood L_csl, tried first,
barely moves codes: its log-sigmoid is content once a code is nearer its center than L/2).
On Wiki's validation split the term lifts new-class image queries and costs old-class ones
more, so ``TrainSettings.center_weight`` is 0 (off) by default (bench/RESULTS.md, "ECMH: a
stage-3 term against old classes").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from hashstream.solver.hadamard import hadamard_centers

Array = np.ndarray[Any, Any]


def class_centers(codes: Tensor, labels: Tensor) -> Tensor:
    """u_j = sgn(Σ_{i has j} b_i) for each label column j of ``labels`` (n × c, 0/1) over
    ``codes`` (n × L, ±1); c × L float, ±1 for classes with items, 0 rows for the others."""
    sums = labels.float().T @ codes.float()
    has = (labels.sum(dim=0) > 0).float()
    return torch.where(sums >= 0, 1.0, -1.0) * has.unsqueeze(1)


def center_rows_from_sums(sums: Array, counts: Array) -> Array:
    """Centers (c × L float32, ±1 or 0 rows) from per-class code sums and item counts, the
    form a stream keeps them in: sgn(sum) where the class has items, else 0."""
    rows = np.where(np.asarray(sums) >= 0, 1.0, -1.0).astype(np.float32)
    return rows * (np.asarray(counts) > 0)[:, None].astype(np.float32)


def _known_rows(known: Tensor | None, n_classes: int, bits: int) -> tuple[Tensor, Tensor]:
    """(c × L rows on the host, placed): the rows of ``known`` that are not all zero, in
    place; zeros and False elsewhere."""
    out = torch.zeros(n_classes, bits)
    placed = torch.zeros(n_classes, dtype=torch.bool)
    if known is not None:
        k = known.detach().cpu().float()[:n_classes]
        has = k.abs().sum(dim=1) > 0
        out[:k.shape[0]][has] = k[has]
        placed[:k.shape[0]] = has
    return out, placed


def complete_centers(known: Tensor | None, n_classes: int, bits: int) -> Tensor:
    """c × L ±1 centers for ``n_classes`` label columns: the rows of ``known`` that are not all
    zero as they are; every other class (ascending) the Hadamard column or negated column
    (:func:`hadamard_centers` order) with the largest Hamming distance to the nearest center
    placed so far (ties: the earlier candidate)."""
    device = known.device if known is not None else torch.device("cpu")
    out, placed = _known_rows(known, n_classes, bits)
    order = 1 << max(0, (bits - 1).bit_length())
    candidates = torch.as_tensor(
        hadamard_centers(bits, max(2 * (order - 1), n_classes)).T.astype(np.float32))
    used = torch.zeros(candidates.shape[0], dtype=torch.bool)
    for j in range(n_classes):
        if placed[j]:
            continue
        if placed.any():
            # Hamming distance = (L − ⟨a, b⟩) / 2 for ±1 rows
            nearest = ((bits - candidates @ out[placed].T) / 2).min(dim=1).values
        else:
            nearest = torch.zeros(candidates.shape[0])
        nearest[used] = -1.0
        pick = int(torch.argmax(nearest))  # the first of the largest
        out[j], used[pick], placed[j] = candidates[pick], True, True
    return out.to(device)


def _distances(row: Tensor, rows: Tensor) -> Tensor:
    """Hamming distances between a ±1 row and ±1 rows: (L − ⟨a, b⟩) / 2."""
    return (row.shape[0] - rows @ row) / 2


def margin_of(centers: Tensor) -> float:
    """The median over ``centers`` (k × L, ±1, k ≥ 2) of the distance to the nearest other
    one: how far apart the old classes typically are."""
    d = (centers.shape[1] - centers @ centers.T) / 2
    d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.median())


def anchored_centers(known: Tensor | None, labels: Tensor, anchor_codes: Tensor,
                     agreement: Tensor) -> Tensor:
    """c × L ±1 centers for the label columns of ``labels`` (M × c, the new items'): rows of
    ``known`` that are not all zero as they are; a class without one starts from the center of
    the codes the old model gives its items, u = sgn(Σ sign(F_o + G_o)) (``anchor_codes``,
    M × L ±1), and then moves away from the centers already placed: while its nearest one is
    closer than the margin (:func:`margin_of` the known centers), a bit it shares with that
    nearest center flips, the one the items' old outputs agree on least (mean of A_α,
    ``agreement``; so L_d resists the move least), each bit at most once. A class without
    items, and every class when fewer than two centers are known, takes
    :func:`complete_centers`' Hadamard column instead."""
    n_classes, bits = int(labels.shape[1]), int(anchor_codes.shape[1])
    cpu_labels, cpu_codes = labels.detach().cpu().float(), anchor_codes.detach().cpu().float()
    cpu_agree = agreement.detach().cpu().float()
    out, placed = _known_rows(known, n_classes, bits)
    if int(placed.sum()) < 2:
        return complete_centers(known, n_classes, bits).to(anchor_codes.device)
    margin = margin_of(out[placed])
    for j in range(n_classes):
        members = cpu_labels[:, j] > 0
        if placed[j] or not members.any():
            continue
        row = torch.where(cpu_codes[members].sum(dim=0) >= 0, 1.0, -1.0)
        held = cpu_agree[members].mean(dim=0)
        free = torch.ones(bits, dtype=torch.bool)
        for _ in range(bits):
            d = _distances(row, out[placed])
            if float(d.min()) >= margin:
                break
            nearest = out[placed][int(torch.argmin(d))]
            options = free & (row == nearest)
            if not options.any():
                break
            bit = int(torch.argmin(torch.where(options, held, float("inf"))))
            row[bit], free[bit] = -row[bit], False
        out[j], placed[j] = row, True
    rest = complete_centers(out, n_classes, bits)  # classes without items
    return rest.to(anchor_codes.device)


def item_targets(labels: Tensor, centers: Tensor) -> Tensor:
    """Each item's target code (M × L float ±1): the center of its class, the sign of the sum
    of its classes' centers when it has several (ties +1), as the linear baseline's
    :func:`~hashstream.solver.linear_baseline.center_targets`."""
    return torch.where(labels.float() @ centers.float() >= 0, 1.0, -1.0)


def center_loss(rep: Tensor, targets: Tensor, beta: float) -> Tensor:
    """ECMH's L_h form (Eq. 7) towards class centers instead of the unified codes C, on every
    bit: the entry mean of (β t − rep)² over the m × L rows, ``targets`` t the rows' class
    centers (:func:`item_targets`)."""
    return ((beta * targets - rep) ** 2).mean()
