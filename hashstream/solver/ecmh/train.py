"""Algorithm 1 of ECMH (the core algorithm) and training a model from scratch with it.

Each epoch updates INet on mini-batches of images with TNet and C fixed, then TNet on
mini-batches of texts with INet and C fixed, then sets C = sign(F + G) (Eq. 8). F and G are
the per-item representation buffers of the DCMH-style alternating scheme: every batch step
writes its fresh rows back, and L_c of a batch is taken against the other modality's whole
buffer. Training from scratch is the core algorithm with A_α = 0 (paper §2.5).

``TrainSettings.loss`` swaps L_c + L_h for another objective with trainable class-level
targets shared by both modalities (an :class:`~hashstream.solver.ecmh.losses.ObjectiveHead`):
DHD's hash proxies or IDCWH's class centers. The head travels with the result
(``CoreResult.head``) so an extension continues from the old classes' proxies or centers.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hashstream.solver.ecmh.agreement import similarity, unified_codes
from hashstream.solver.ecmh.centers import center_loss
from hashstream.solver.ecmh.dhd import DHDHead
from hashstream.solver.ecmh.idcwh import IDCWHHead
from hashstream.solver.ecmh.losses import (
    ObjectiveHead,
    common_space_loss,
    distillation_loss,
    hash_loss,
    objective,
)
from hashstream.solver.ecmh.networks import (
    ECMHModel,
    build_model,
    image_representations,
    image_tensor,
    resolve_device,
    text_representations,
    text_tensor,
)
from hashstream.solver.ecmh.settings import NetworkConfig, TrainSettings

_FULL_SIMILARITY_MAX = 1 << 27  # entries of S kept whole (128 MiB as uint8)

EpochCallback = Callable[[int, int, dict[str, float]], None]
"""``on_epoch(epoch, epochs, objective)``; the objective is {} on epochs that are not logged."""


@dataclass(frozen=True)
class PairedData:
    """M image–text pairs on one device: images M × d, texts M × t (dense) or M × T (ids),
    labels M × c as float 0/1."""

    image: Tensor
    text: Tensor
    labels: Tensor

    @property
    def n(self) -> int:
        return int(self.image.shape[0])


def paired_data(config: NetworkConfig, image: np.ndarray[Any, Any], text: np.ndarray[Any, Any],
                labels: np.ndarray[Any, Any], device: torch.device) -> PairedData:
    """Move NumPy arrays onto ``device`` once, in the dtypes the networks take."""
    if not image.shape[0] == text.shape[0] == labels.shape[0]:
        raise ValueError(f"image {image.shape}, text {text.shape} and labels {labels.shape} "
                         "must have the same number of rows")
    return PairedData(image_tensor(image, device), text_tensor(config, text, device),
                      torch.as_tensor(np.asarray(labels, dtype=np.float32), device=device))


@dataclass(frozen=True)
class CoreResult:
    """A trained model, the final C (M × L float ±1), the F and G buffers, the full-set
    objective (Eq. 1, or the chosen objective's) at logged epochs (epoch 0 is before any
    update), the training time in seconds (objective logging excluded) and the objective's
    head (DHD proxies, IDCWH centers; None for ECMH's own loss)."""

    model: ECMHModel
    codes: Tensor
    f: Tensor
    g: Tensor
    history: list[dict[str, float]]
    seconds: float
    head: ObjectiveHead | None = None


def make_head(settings: TrainSettings, bits: int, n_classes: int,
              device: torch.device) -> ObjectiveHead | None:
    """A fresh head for ``settings.loss`` (None for 'ecmh'), initialised from the seed."""
    generator = torch.Generator().manual_seed(settings.seed + 11)
    head: ObjectiveHead
    if settings.loss == "dhd":
        head = DHDHead(n_classes, bits, settings.dhd, generator)
    elif settings.loss == "idcwh":
        head = IDCWHHead(n_classes, bits, settings.idcwh, generator)
    else:
        return None
    return head.to(device)


def _prepare_head(head: ObjectiveHead | None, settings: TrainSettings, bits: int,
                  n_classes: int, device: torch.device, seed: int) -> ObjectiveHead | None:
    """A copy of ``head`` with at least ``n_classes`` rows, or a fresh one; None for 'ecmh'."""
    if settings.loss == "ecmh":
        if head is not None:
            raise ValueError("an objective head was given but settings.loss is 'ecmh'")
        return None
    if head is None:
        return make_head(settings, bits, n_classes, device)
    expected = DHDHead if settings.loss == "dhd" else IDCWHHead
    if not isinstance(head, expected):
        raise ValueError(f"settings.loss is {settings.loss!r} but the head is a "
                         f"{type(head).__name__}")
    head = copy.deepcopy(head)
    if isinstance(head, DHDHead):
        head.settings = settings.dhd
    elif isinstance(head, IDCWHHead):
        head.settings = settings.idcwh
    head.grow(n_classes, torch.Generator().manual_seed(seed + 13))
    return head.to(device)


def _optimizer(params: Iterable[nn.Parameter], settings: TrainSettings
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR] | None:
    plist = list(params)
    if not plist:
        return None
    opt: torch.optim.Optimizer
    if settings.optimizer == "adam":
        opt = torch.optim.Adam(plist, lr=settings.lr)
    else:
        opt = torch.optim.SGD(plist, lr=settings.lr)
    # Paper §3.1: the learning rate drops by 5 % every 100 steps.
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=settings.lr_decay_every,
                                            gamma=settings.lr_decay)
    return opt, sched


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def core_algorithm(model: ECMHModel, data: PairedData, settings: TrainSettings, *,
                   epochs: int, agreement: Tensor | None = None, f_old: Tensor | None = None,
                   g_old: Tensor | None = None, train_image: bool = True,
                   text_scope: str = "all", freeze_first_layer: bool = False,
                   seed: int | None = None, log_every: int = 10,
                   on_epoch: EpochCallback | None = None,
                   head: ObjectiveHead | None = None,
                   targets: Tensor | None = None) -> CoreResult:
    """Algorithm 1 on ``data`` starting from a copy of ``model`` (which is left untouched).

    ``agreement`` is A_α (M × L; None means all zeros, as when training from scratch);
    ``f_old``/``g_old`` are F_{n|θo}, G_{n|θo} for L_d (None: L_d is left out).
    ``train_image=False`` skips the INet pass; ``text_scope`` picks the TNet parameters that
    move ('all', 'new_embeddings', 'all_but_old_embeddings'); ``freeze_first_layer`` keeps
    the first (hidden) layer of INet and of TNet's head fixed; parameters outside the
    optimisers keep their exact values. The objective is logged before training, every
    ``log_every`` epochs and after the last. L_d (when ``f_old``/``g_old`` are given) is
    weighted as ``settings.l_d_weight`` × its entry mean, whatever the objective.

    With ``settings.loss`` 'dhd' or 'idcwh' each batch step minimises that objective instead
    of L_c + L_h (plus the weighted L_d); ``head`` (copied, never changed) carries the
    proxies or centers of an earlier run, grown to the label columns of ``data``; without it
    a fresh head is made. Its parameters train in every pass that trains any network.

    ``targets`` (M × L, ±1: each item's class center) adds the term against old classes,
    ``settings.center_weight`` × :func:`~hashstream.solver.ecmh.centers.center_loss`, to
    every batch step of both modalities (logged as 'centers').
    """
    if (f_old is None) != (g_old is None):
        raise ValueError("give both F_{n|θo} and G_{n|θo} or neither")
    model = model.copy()
    n, bits, device = data.n, model.config.bits, model.device
    if n == 0:
        raise ValueError("cannot train on zero items")
    a = agreement if agreement is not None else torch.zeros(n, bits, device=device)
    run_seed = settings.seed if seed is None else seed
    generator = torch.Generator().manual_seed(run_seed)
    head = _prepare_head(head, settings, bits, int(data.labels.shape[1]), device, run_seed)
    views = torch.Generator(device=device).manual_seed(run_seed + 17)  # DHD's random views
    image_opt = (_optimizer(model.image_parameters(freeze_first_layer), settings)
                 if train_image else None)
    text_opt = _optimizer(model.text_parameters(text_scope, freeze_first_layer), settings)
    # L_d as ``distill_weight`` × the entry mean of A_α ∘ (F − F_{n|θo})²; distillation_loss
    # is that mean / L (the paper's λ_d = 1/(m L²)), hence the factor L.
    distill_scale = settings.l_d_weight * bits
    head_opt = _optimizer(head.parameters(), settings) if head is not None else None
    f = image_representations(model, data.image)
    g = text_representations(model, data.text)
    codes = unified_codes(f, g)
    beta, batch = settings.beta, settings.batch_size
    # S (Eq. 3) is fixed for the run: kept whole as bytes while that is small, else per batch.
    full_sim = (similarity(data.labels, data.labels).to(torch.uint8)
                if head is None and n * n <= _FULL_SIMILARITY_MAX else None)

    center_weight = settings.center_weight if targets is not None else 0.0
    if targets is not None and targets.shape != (n, bits):
        raise ValueError(f"targets {tuple(targets.shape)} must be one row of {bits} bits per "
                         f"item ({n})")

    def log() -> dict[str, float]:
        f_now = image_representations(model, data.image)
        g_now = text_representations(model, data.text)
        out = log_objective(f_now, g_now)
        if targets is not None and center_weight > 0:
            with torch.no_grad():
                term = center_weight * float(center_loss(f_now, targets, beta)
                                             + center_loss(g_now, targets, beta))
            out["centers"] = term
            out["total"] += term
        return out

    def log_objective(f_now: Tensor, g_now: Tensor) -> dict[str, float]:
        if head is None:
            return objective(f_now, g_now, data.labels, codes, a, f_old, g_old, beta,
                             settings.common_loss, distill_scale=distill_scale)
        out = head.full_objective(model.inet, model.tnet, data.image, data.text, data.labels,
                                  f_now, g_now, seed=run_seed)
        if f_old is not None and g_old is not None:
            with torch.no_grad():
                l_d = distill_scale * float(
                    distillation_loss(f_now, f_old, a) + distillation_loss(g_now, g_old, a))
            out["distillation"] = l_d
            out["total"] += l_d
        return out

    def run_pass(net: nn.Module, inputs: Tensor, own: Tensor, other: Tensor, old: Tensor | None,
                 opt: tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]) -> None:
        # Lines 3–8 (INet) or 9–14 (TNet) of Algorithm 1; ``own`` is the buffer updated here.
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            a_b = a[idx]
            rep: Tensor
            if head is None:
                rep = net(inputs[idx])
                sim = (full_sim[idx] if full_sim is not None
                       else similarity(data.labels[idx], data.labels))
                loss = common_space_loss(rep, other, sim, a_b, settings.common_loss)
                loss = loss + hash_loss(rep, codes[idx], a_b, beta, n)
            else:
                rep, terms = head.batch_terms(net, inputs[idx], data.labels[idx], other[idx],
                                              views)
                loss = torch.stack(list(terms.values())).sum()
            if old is not None:
                loss = loss + distill_scale * distillation_loss(rep, old[idx], a_b)
            if targets is not None and center_weight > 0:
                loss = loss + center_weight * center_loss(rep, targets[idx], beta)
            opt[0].zero_grad(set_to_none=True)
            if head_opt is not None:
                head_opt[0].zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt[0].step()
            opt[1].step()
            if head_opt is not None:
                head_opt[0].step()
                head_opt[1].step()
            own[idx] = rep.detach()

    history = [{"epoch": 0.0, **log()}]
    seconds = 0.0
    model.inet.train()
    model.tnet.train()
    for epoch in range(1, epochs + 1):
        _sync(device)
        started = time.perf_counter()
        if image_opt is not None:
            run_pass(model.inet, data.image, f, g, f_old, image_opt)
        if text_opt is not None:
            run_pass(model.tnet, data.text, g, f, g_old, text_opt)
        codes = unified_codes(f, g)  # line 15, Eq. 8
        _sync(device)
        seconds += time.perf_counter() - started
        record: dict[str, float] = {}
        if epoch % max(1, log_every) == 0 or epoch == epochs:
            record = {"epoch": float(epoch), **log()}
            history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, epochs, record)
    model.inet.eval()
    model.tnet.eval()
    return CoreResult(model, codes, f, g, history, seconds, head)


def train_from_scratch(config: NetworkConfig, image: np.ndarray[Any, Any],
                       text: np.ndarray[Any, Any], labels: np.ndarray[Any, Any],
                       settings: TrainSettings, *, device: torch.device | None = None,
                       log_every: int = 10, on_epoch: EpochCallback | None = None
                       ) -> CoreResult:
    """A new model trained on the given pairs by Algorithm 1 with A_α = 0 for
    ``settings.epochs`` epochs; the input standardisers are fitted on these images/texts."""
    device = device or resolve_device(settings.device)
    data = paired_data(config, image, text, labels, device)
    model = build_model(config, seed=settings.seed, device=device, image=data.image,
                        text=data.text)
    return core_algorithm(model, data, settings, epochs=settings.epochs, log_every=log_every,
                          on_epoch=on_epoch)
