"""Algorithm 2 of ECMH: extend a trained model to new classes with the new data alone, and the
plain fine-tuning baseline of the paper's §3.2.

Stage 1 (warm-up) grows TNet's vocabulary by the new words and trains only their vectors by the
core algorithm with everything else frozen; stage 2 takes F_{n|θo}, G_{n|θo} and A_α (Eq. 2) of
the new data under the old parameters; stage 3 trains INet and TNet by the core algorithm with
the self-taught distillation loss. Old codes are not an input: they are never rewritten.

With ``TrainSettings.loss`` 'dhd' or 'idcwh' every stage trains with that objective and the
old run's head (``CoreResult.head``: proxies or centers of the old classes, grown by rows for
the new ones); stage 3 adds ECMH's L_d to it, so the agreed dimensions still hold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from torch import Tensor

from hashstream.solver.ecmh.agreement import agreement_matrix, unified_codes
from hashstream.solver.ecmh.centers import anchored_centers, item_targets
from hashstream.solver.ecmh.losses import ObjectiveHead
from hashstream.solver.ecmh.networks import (
    ECMHModel,
    grow_vocabulary,
    image_representations,
    text_representations,
)
from hashstream.solver.ecmh.settings import TrainSettings
from hashstream.solver.ecmh.train import CoreResult, EpochCallback, PairedData, core_algorithm


@dataclass(frozen=True)
class ExtensionResult:
    """The extended model and what each stage produced.

    ``warmup`` is None when stage 1 did not run; ``warmup_note`` says why (dense text has no
    vocabulary; no new words; zero warm-up epochs). ``agreement`` is A_α, ``f_old``/``g_old``
    the stage-2 representations, ``centers`` the class centers of stage 3's term against old
    classes (None when it is off). ``seconds`` has 'warmup', 'old_representations', 'extend'
    (stage 3) and 'total'.
    """

    model: ECMHModel
    warmup: CoreResult | None
    warmup_note: str
    agreement: Tensor
    f_old: Tensor
    g_old: Tensor
    core: CoreResult
    seconds: dict[str, float]
    centers: Tensor | None = None


def new_vocabulary_size(model: ECMHModel, data: PairedData) -> int:
    """Vocabulary needed for ``data``: the current size, or the largest new word id + 1."""
    if model.config.text_kind != "tokens" or data.text.numel() == 0:
        return model.config.vocab_size
    return max(model.config.vocab_size, int(data.text.max()) + 1)


def extend(model: ECMHModel, data: PairedData, settings: TrainSettings, *,
           log_every: int = 10,
           on_epoch: dict[str, EpochCallback] | None = None,
           head: ObjectiveHead | None = None,
           old_centers: Tensor | None = None) -> ExtensionResult:
    """Algorithm 2: a new model for the old and the new classes, trained on ``data`` (the new
    pairs) only; ``model`` (θ_o) is left untouched.

    ``old_centers`` (c_o × L, ±1 rows; 0 rows for classes without codes) are the class
    centers of the stored codes (:func:`~hashstream.solver.ecmh.centers.class_centers`).
    With ``settings.center_weight`` > 0 stage 3 adds the term against old classes
    (:mod:`~hashstream.solver.ecmh.centers`): a class without a center gets one placed away
    from the others (:func:`~hashstream.solver.ecmh.centers.anchored_centers`; Hadamard
    columns when fewer than two are known) and every output is pulled towards its class's
    center, beside L_d.

    ``on_epoch`` maps a stage name ('warmup', 'extend') to its progress callback. ``head`` is
    the old run's objective head (``settings.loss`` 'dhd' or 'idcwh'; left untouched, a fresh
    one when None); the extended head is ``result.core.head``.
    """
    callbacks = on_epoch or {}
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    grown = grow_vocabulary(model, new_vocabulary_size(model, data), seed=settings.seed + 1)
    warmup: CoreResult | None = None
    if model.config.text_kind != "tokens":
        note = "skipped: dense text features have no vocabulary to warm up"
    elif grown.config.vocab_size == model.config.vocab_size:
        note = "skipped: the new data has no new word ids"
    elif settings.warmup_epochs == 0:
        note = "skipped: warmup_epochs is 0 (new word vectors keep their random start)"
    else:
        # Stage 1 (Alg. 2 lines 2–4): INet frozen, TNet frozen except the new word vectors.
        warmup = core_algorithm(grown, data, settings, epochs=settings.warmup_epochs,
                                train_image=False, text_scope="new_embeddings",
                                seed=settings.seed + 2, log_every=log_every,
                                on_epoch=callbacks.get("warmup"), head=head)
        grown = warmup.model
        head = warmup.head
        note = (f"ran {settings.warmup_epochs} epochs on "
                f"{grown.config.vocab_size - model.config.vocab_size} new word vectors")
    seconds["warmup"] = warmup.seconds if warmup is not None else 0.0

    # Stage 2 (lines 3, 6, 7): representations of the new data under θ_o, and A_α (Eq. 2).
    t0 = time.perf_counter()
    f_old = image_representations(grown, data.image)
    g_old = text_representations(grown, data.text)
    agreement = agreement_matrix(f_old, g_old, settings.alpha)
    seconds["old_representations"] = time.perf_counter() - t0

    # Stage 3 (lines 5, 8): every layer trains, with L_d keeping the agreed dimensions.
    scope = "all" if settings.train_old_embeddings else "all_but_old_embeddings"
    centers = targets = None
    if settings.center_weight > 0:
        # the term against old classes: new classes' centers placed away from the old ones
        centers = anchored_centers(old_centers, data.labels, unified_codes(f_old, g_old),
                                   agreement)
        targets = item_targets(data.labels, centers)
    core = core_algorithm(grown, data, settings, epochs=settings.extend_epochs,
                          agreement=agreement, f_old=f_old, g_old=g_old, text_scope=scope,
                          freeze_first_layer=settings.freeze_first_layer,
                          seed=settings.seed + 3, log_every=log_every,
                          on_epoch=callbacks.get("extend"), head=head, targets=targets)
    seconds["extend"] = core.seconds
    seconds["total"] = time.perf_counter() - started
    return ExtensionResult(core.model, warmup, note, agreement, f_old, g_old, core, seconds,
                           centers)


def fine_tune(model: ECMHModel, data: PairedData, settings: TrainSettings, *,
              log_every: int = 10, on_epoch: EpochCallback | None = None,
              head: ObjectiveHead | None = None) -> CoreResult:
    """The fine-tuning baseline (§3.2): continue training ``model`` on the new data alone by
    Algorithm 1 with A_α = 0 and no distillation, for ``settings.extend_epochs`` epochs. New
    word ids get fresh vectors, trained with everything else (no separate warm-up). With
    'dhd' / 'idcwh' the objective continues from ``head``, the old run's."""
    grown = grow_vocabulary(model, new_vocabulary_size(model, data), seed=settings.seed + 1)
    return core_algorithm(grown, data, settings, epochs=settings.extend_epochs,
                          seed=settings.seed + 3, log_every=log_every, on_epoch=on_epoch,
                          head=head)

