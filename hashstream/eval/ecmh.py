"""`hashstream ecmh-eval`: the extension protocol of the ECMH paper (Table 1) on any .npz.

Classes are split into old and new; an item is new when it has any new class. An old model is
trained on the old-class training items, then extended to the new-class training items three
ways: ECMH (Algorithm 2), plain fine-tuning (the old model trained on the new data with
A_α = 0 and no distillation) and joint retraining from scratch on old + new. Old items keep the
codes the old model gave them under ECMH and fine-tuning (never rewritten); joint retraining
re-encodes them. Rows, as in the paper's §3.4:

- ``old_codes``: old-class queries, encoded by the model under test, against the old-class
  database items' codes from the OLD model (forward compatibility);
- ``old_tasks`` / ``new_tasks`` / ``all_tasks``: old-class / new-class / all queries against
  the whole database, old and new items ("combine old and new data as the database").

The paper draws the database from held-out data; here the database is the training items (the
usual Wiki protocol; everything that is not a query when the file has no split) and the
queries are ``test_idx``. Database codes are the unified C = sign(F + G) (Eq. 8, §2.1); i2t
queries are INet codes sign(F), t2i queries TNet codes sign(G). ``--database-codes cross``
instead gives the database sign(G) for i2t and sign(F) for t2i.

``--loss dhd|idcwh`` trains INet/TNet with DHD or IDCWH instead of L_c + L_h in all three
runs (old model, joint retraining, extension and fine-tuning); ECMH's extension then adds its
L_d to that objective and every run after the old model continues from the old model's proxies
or centers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hashstream.eval.online_hashing import DatasetError
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.ecmh.settings import (
    DISTILL_WEIGHTS,
    PAD_ID,
    DHDSettings,
    IDCWHSettings,
    NetworkConfig,
    TrainSettings,
)
from hashstream.solver.linear_baseline import (
    DEFAULT_MAX_VOCABULARY,
    LinearHash,
    center_targets,
    fit_linear_hash,
    sign_codes,
    token_counts,
    token_vocabulary,
)
from hashstream.solver.metrics import evaluate

if TYPE_CHECKING:  # PyTorch loads only when a run starts, not when the CLI is built
    from hashstream.solver.ecmh.extend import ExtensionResult
    from hashstream.solver.ecmh.networks import ECMHModel
    from hashstream.solver.ecmh.train import CoreResult, EpochCallback

Array = np.ndarray[Any, Any]
TextInput = Literal["auto", "dense", "tokens"]
DatabaseCodes = Literal["unified", "cross"]
ProgressFactory = Callable[[str, int], "EpochCallback"]
"""``progress(stage description, epochs)`` → the epoch callback of that stage."""

ROWS = ("old_codes", "old_tasks", "new_tasks", "all_tasks")
METHOD_LABELS = {"linear": "linear → centers (all tasks, refit)"}
"""Table labels of methods whose result key is not self-explanatory."""


@dataclass(frozen=True)
class CrossModalData:
    """Paired images and texts with labels; ``text`` is dense (n × t float) or word ids
    (n × T int, ``PAD_ID`` and every negative id padding)."""

    image: Array
    text: Array
    text_kind: Literal["dense", "tokens"]
    labels: Array
    train_idx: Array | None
    test_idx: Array | None


def load_cross_modal(path: str | Path, text_input: TextInput = "auto") -> CrossModalData:
    """Read ``features`` (image), ``text`` (dense) or ``tokens`` (ids), ``labels`` (n × c 0/1)
    and optional ``train_idx`` / ``test_idx``; 'auto' takes ``tokens`` when present."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k in (
                "features", "text", "tokens", "labels", "train_idx", "test_idx")}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path} as .npz: {exc}") from exc
    for key in ("features", "labels"):
        if key not in arrays:
            raise DatasetError(f"{path} has no array named {key!r}")
    kind: Literal["dense", "tokens"]
    if text_input == "auto":
        kind = "tokens" if "tokens" in arrays else "dense"
    else:
        kind = text_input
    text_key = "tokens" if kind == "tokens" else "text"
    if text_key not in arrays:
        raise DatasetError(f"{path} has no array named {text_key!r}")
    x, t, y = arrays["features"], arrays[text_key], arrays["labels"]
    n = x.shape[0]
    if x.ndim != 2 or y.ndim != 2 or t.ndim != 2 or not n == t.shape[0] == y.shape[0]:
        raise DatasetError(f"features {x.shape}, {text_key} {t.shape} and labels {y.shape} "
                           "must be 2-D with one row per item")
    if not np.isfinite(x).all():
        raise DatasetError("features contains NaN or Inf")
    if kind == "tokens":
        if not np.issubdtype(t.dtype, np.integer):
            raise DatasetError("tokens must be integer word ids (negative = padding)")
        t = np.where(t < 0, PAD_ID, t).astype(np.int64)
    else:
        if not np.isfinite(t).all():
            raise DatasetError("text contains NaN or Inf")
        t = t.astype(np.float32, copy=False)
    if not np.isin(y, (0, 1)).all():
        raise DatasetError("labels must be 0/1")
    split: dict[str, Array | None] = {}
    for key in ("train_idx", "test_idx"):
        idx = arrays.get(key)
        if idx is not None and (idx.ndim != 1 or (idx.size and (idx.min() < 0
                                                                or idx.max() >= n))):
            raise DatasetError(f"{key} must be a 1-D array of row indices")
        split[key] = None if idx is None else idx.astype(np.int64)
    return CrossModalData(x.astype(np.float32, copy=False), t, kind, y.astype(np.uint8),
                          split["train_idx"], split["test_idx"])


@dataclass(frozen=True)
class ProtocolConfig:
    """One run of the protocol; ``settings`` is every training hyper-parameter."""

    bits: int = 32
    new_classes: tuple[int, ...] | None = None  # None: the last ⌈0.3 c⌉ classes
    queries: int | None = None  # without test_idx: this many seeded queries (None: 20 %)
    validation: float | None = None  # this share of the training items as queries instead
    image_hidden: tuple[int, ...] = NetworkConfig.image_hidden
    text_hidden: tuple[int, ...] = NetworkConfig.text_hidden
    embed_dim: int = 256
    database_codes: DatabaseCodes = "unified"
    settings: TrainSettings = field(default_factory=TrainSettings)
    log_every: int = 10


@dataclass(frozen=True)
class Split:
    queries: Array
    database: Array
    new_classes: tuple[int, ...]
    is_new: Array  # per item of the whole file


def split_items(data: CrossModalData, config: ProtocolConfig) -> Split:
    """Queries (``test_idx``, else a seeded sample), database (``train_idx``, else the rest)
    and which items are new (any label among the new classes).

    With ``config.validation`` = v the evaluation queries are set aside unseen: a seeded share
    v of the training items (the database above) becomes the queries and the rest the
    database, so settings can be chosen without looking at the evaluation queries.
    """
    n, c = data.labels.shape
    new = config.new_classes
    if new is None:
        k = max(1, int(np.ceil(0.3 * c)))
        new = tuple(range(c - k, c))
    if not new or min(new) < 0 or max(new) >= c or len(set(new)) != len(new):
        raise DatasetError(f"new classes {new} must be distinct class indices in 0..{c - 1}")
    if len(new) == c:
        raise DatasetError("at least one class must stay old")
    rng = np.random.default_rng([config.settings.seed, 4242])
    if data.test_idx is not None:
        queries = np.unique(data.test_idx)
    else:
        size = config.queries if config.queries is not None else max(1, n // 5)
        if not 0 < size < n:
            raise DatasetError(f"--queries {size} must be between 1 and {n - 1}")
        queries = np.sort(rng.choice(n, size=size, replace=False))
    if data.train_idx is not None:
        database = np.setdiff1d(np.unique(data.train_idx), queries)
    else:
        database = np.setdiff1d(np.arange(n), queries)
    if config.validation is not None:
        if not 0 < config.validation < 1:
            raise DatasetError(f"--validation {config.validation} must be between 0 and 1")
        size = int(round(config.validation * database.size))
        if not 0 < size < database.size:
            raise DatasetError(f"--validation {config.validation} leaves no validation "
                               f"queries or no database among {database.size} training items")
        held = np.random.default_rng([config.settings.seed, 4343]).permutation(database)
        queries, database = np.sort(held[:size]), np.sort(held[size:])
    is_new: Array = np.asarray(data.labels[:, list(new)].any(axis=1), dtype=bool)
    for name, idx in (("old-class database", database[~is_new[database]]),
                      ("new-class database", database[is_new[database]]),
                      ("old-class query", queries[~is_new[queries]]),
                      ("new-class query", queries[is_new[queries]])):
        if idx.size == 0:
            raise DatasetError(f"the {name} set is empty; choose other --new-classes")
    return Split(queries, database, tuple(int(i) for i in new), is_new)


def _network_config(data: CrossModalData, config: ProtocolConfig, train: Array) -> NetworkConfig:
    if data.text_kind == "tokens":
        vocab = max(1, int(data.text[train].max(initial=-1)) + 1)
        return NetworkConfig(bits=config.bits, image_dim=data.image.shape[1],
                             text_kind="tokens", vocab_blocks=(vocab,),
                             embed_dim=config.embed_dim, image_hidden=config.image_hidden,
                             text_hidden=config.text_hidden)
    return NetworkConfig(bits=config.bits, image_dim=data.image.shape[1], text_kind="dense",
                         text_dim=data.text.shape[1], image_hidden=config.image_hidden,
                         text_hidden=config.text_hidden)


@dataclass(frozen=True)
class Codes:
    """±1 int8 codes of some items under one model: image sign(F), text sign(G), unified
    sign(F + G); and F and G themselves (float32), with which a query's hits at one distance
    are ordered (``*_projection_ties``)."""

    image: Array
    text: Array
    unified: Array
    image_real: Array
    text_real: Array

    @classmethod
    def of(cls, f: Array, g: Array) -> Codes:
        """The codes of real-valued outputs F and G (the linear baseline's)."""
        f, g = np.asarray(f, dtype=np.float32), np.asarray(g, dtype=np.float32)
        return cls(sign_codes(f), sign_codes(g), sign_codes(f + g), f, g)

    def take(self, mask: Array) -> Codes:
        return Codes(*(getattr(self, k)[mask] for k in _CODE_FIELDS))

    @staticmethod
    def concat(parts: list[Codes]) -> Codes:
        return Codes(*(np.concatenate([getattr(p, k) for p in parts]) for k in _CODE_FIELDS))


_CODE_FIELDS = ("image", "text", "unified", "image_real", "text_real")


def encode_items(model: ECMHModel, data: CrossModalData, idx: Array) -> Codes:
    """Codes of items ``idx`` under ``model`` (sign(0) = +1), with F and G."""
    from hashstream.solver.ecmh.networks import encode_pairs_with

    codes, f, g = encode_pairs_with(model, data.image[idx], data.text[idx])
    return Codes(codes["image"], codes["text"], codes["pairs"], f, g)


@dataclass(frozen=True)
class LinearBaseline:
    """The non-incremental linear reference: per modality a ridge map onto the Hadamard
    centers of the items' classes (``hashstream.solver.linear_baseline``)."""

    image: LinearHash
    text: LinearHash
    vocabulary: Array | None  # token text: the word ids counted; dense text: None

    def _text_features(self, data: CrossModalData, idx: Array) -> Array:
        if self.vocabulary is None:
            return data.text[idx]
        return token_counts(data.text[idx], self.vocabulary)

    def encode(self, data: CrossModalData, idx: Array) -> Codes:
        """Codes of items ``idx``: image sign(F), text sign(G), unified sign(F + G) with F, G
        the two linear outputs (as ECMH's Eq. 8)."""
        return Codes.of(self.image.project(data.image[idx]),
                        self.text.project(self._text_features(data, idx)))


def fit_linear_baseline(data: CrossModalData, train: Array, bits: int, seed: int = 0,
                        max_vocabulary: int = DEFAULT_MAX_VOCABULARY) -> LinearBaseline:
    """Fit both modalities on items ``train`` at once (default λ = trace/d of each Gram)."""
    targets = center_targets(data.labels[train], bits, seed)
    vocab = None
    text = data.text[train]
    if data.text_kind == "tokens":
        vocab = token_vocabulary(text, max_vocabulary)
        text = token_counts(text, vocab)
    return LinearBaseline(fit_linear_hash(data.image[train], targets),
                          fit_linear_hash(text, targets), vocab)


def _score(queries: Codes, q_labels: Array, database: Codes, db_labels: Array,
           mode: DatabaseCodes) -> dict[str, float]:
    db_i2t = database.unified if mode == "unified" else database.text
    db_t2i = database.unified if mode == "unified" else database.image
    # ECMH trains on dense label matrices; scoring takes class lists (converted once here).
    q_lists, db_lists = ClassLists.from_dense(q_labels), ClassLists.from_dense(db_labels)
    i2t = evaluate(queries.image, q_lists, db_i2t, db_lists, query_projection=queries.image_real)
    t2i = evaluate(queries.text, q_lists, db_t2i, db_lists, query_projection=queries.text_real)
    # mAP@all (stable tie-break, the paper's), the tie-aware mAP (random order within ties)
    # and the mAP with ties ordered by the query's F or G (a search with ties=projection)
    assert i2t.map_projection_ties is not None and t2i.map_projection_ties is not None
    return {"i2t": i2t.map, "t2i": t2i.map,
            "i2t_tie_aware": i2t.map_tie_aware, "t2i_tie_aware": t2i.map_tie_aware,
            "i2t_projection_ties": i2t.map_projection_ties,
            "t2i_projection_ties": t2i.map_projection_ties}


def _table_rows(q_codes: Codes, q_labels: Array, q_new: Array, old_db: Codes,
                old_db_labels: Array, db: Codes, db_labels: Array,
                mode: DatabaseCodes) -> dict[str, dict[str, float]]:
    old = ~q_new
    return {
        "old_codes": _score(q_codes.take(old), q_labels[old], old_db, old_db_labels, mode),
        "old_tasks": _score(q_codes.take(old), q_labels[old], db, db_labels, mode),
        "new_tasks": _score(q_codes.take(q_new), q_labels[q_new], db, db_labels, mode),
        "all_tasks": _score(q_codes, q_labels, db, db_labels, mode),
    }


def _history_tail(history: list[dict[str, float]]) -> dict[str, Any]:
    return {"first": history[0], "last": history[-1]}


@dataclass(frozen=True)
class OldModelRun:
    """The split and the old model: trained on the old-class database items, with their
    codes (never rewritten) and its own old-codes row (the reference of forward
    compatibility)."""

    split: Split
    old_train: Array
    new_train: Array
    core: CoreResult
    old_db: Codes
    old_codes: dict[str, float]

    @property
    def database(self) -> Array:
        """The database items in the order their codes are concatenated: old, then new."""
        return np.concatenate([self.old_train, self.new_train])


def _stage_progress(progress: ProgressFactory | None) -> Callable[[str, int],
                                                                   EpochCallback | None]:
    def cb(desc: str, epochs: int) -> EpochCallback | None:
        return progress(desc, epochs) if progress is not None and epochs > 0 else None

    return cb


def train_old_model(data: CrossModalData, config: ProtocolConfig,
                    progress: ProgressFactory | None = None) -> OldModelRun:
    """Split the items and train the old model on the old-class database items."""
    from hashstream.solver.ecmh.networks import resolve_device
    from hashstream.solver.ecmh.train import train_from_scratch

    settings = config.settings
    sp = split_items(data, config)
    old_train = sp.database[~sp.is_new[sp.database]]
    new_train = sp.database[sp.is_new[sp.database]]
    lab = data.labels
    old = train_from_scratch(_network_config(data, config, old_train), data.image[old_train],
                             data.text[old_train], lab[old_train], settings,
                             device=resolve_device(settings.device),
                             log_every=config.log_every,
                             on_epoch=_stage_progress(progress)(
                                 f"old model {config.bits} bits", settings.epochs))
    old_db = encode_items(old.model, data, old_train)
    q, q_new = sp.queries, sp.is_new[sp.queries]
    old_q = encode_items(old.model, data, q)
    ref = _score(old_q.take(~q_new), lab[q][~q_new], old_db, lab[old_train],
                 config.database_codes)
    return OldModelRun(sp, old_train, new_train, old, old_db, ref)


def extension_rows(data: CrossModalData, config: ProtocolConfig, old: OldModelRun,
                   settings: TrainSettings | None = None,
                   progress: ProgressFactory | None = None
                   ) -> tuple[dict[str, dict[str, float]], ExtensionResult]:
    """ECMH's extension (Algorithm 2) of the old model to the new-class database items with
    ``settings`` (default ``config.settings``), and its Table 1 rows; old items keep the old
    model's codes, and their class centers (sgn of the summed unified codes per class) are
    what stage 3's term against old classes keeps new classes away from."""
    import torch

    from hashstream.solver.ecmh.centers import class_centers
    from hashstream.solver.ecmh.extend import extend
    from hashstream.solver.ecmh.train import paired_data

    settings = settings or config.settings
    lab, model, new_train = data.labels, old.core.model, old.new_train
    cb = _stage_progress(progress)
    new_pairs = paired_data(model.config, data.image[new_train], data.text[new_train],
                            lab[new_train], model.device)
    stage_cbs = {"extend": cb("ecmh stage 3 (extend)", settings.extend_epochs)}
    if data.text_kind == "tokens":  # dense text has no vocabulary: stage 1 is skipped
        stage_cbs["warmup"] = cb("ecmh stage 1 (warm-up)", settings.warmup_epochs)
    old_centers = class_centers(torch.as_tensor(old.old_db.unified),
                                torch.as_tensor(lab[old.old_train]))
    ext = extend(model, new_pairs, settings, log_every=config.log_every,
                 on_epoch={k: v for k, v in stage_cbs.items() if v is not None},
                 head=old.core.head, old_centers=old_centers)
    q = old.split.queries
    db = Codes.concat([old.old_db, encode_items(ext.model, data, new_train)])
    rows = _table_rows(encode_items(ext.model, data, q), lab[q], old.split.is_new[q],
                       old.old_db, lab[old.old_train], db, lab[old.database],
                       config.database_codes)
    return rows, ext


def run_protocol(data: CrossModalData, config: ProtocolConfig,
                 progress: ProgressFactory | None = None) -> dict[str, Any]:
    """Train the old model, extend it three ways, and score the Table 1 rows; returns the
    JSON-ready result."""
    import torch

    from hashstream.solver.ecmh.extend import fine_tune
    from hashstream.solver.ecmh.train import paired_data, train_from_scratch

    settings = config.settings
    cb = _stage_progress(progress)
    run = train_old_model(data, config, progress)
    sp, old_train, new_train, old, old_db = (run.split, run.old_train, run.new_train,
                                             run.core, run.old_db)
    old_model, device, lab = old.model, old.model.device, data.labels
    q = sp.queries
    q_new = sp.is_new[q]
    db_labels = lab[run.database]
    mode = config.database_codes
    result: dict[str, Any] = {"old_model": {"old_codes": run.old_codes}}

    result["ecmh"], ext = extension_rows(data, config, run, progress=progress)
    new_pairs = paired_data(old_model.config, data.image[new_train], data.text[new_train],
                            lab[new_train], device)
    ft = fine_tune(old_model, new_pairs, settings, log_every=config.log_every,
                   on_epoch=cb("fine-tuning", settings.extend_epochs), head=old.head)
    ft_db = Codes.concat([old_db, encode_items(ft.model, data, new_train)])
    result["fine_tuning"] = _table_rows(encode_items(ft.model, data, q), lab[q], q_new, old_db,
                                        lab[old_train], ft_db, db_labels, mode)

    all_train = np.concatenate([old_train, new_train])
    net_joint = _network_config(data, config, all_train)
    joint = train_from_scratch(net_joint, data.image[all_train], data.text[all_train],
                               lab[all_train], settings, device=device,
                               log_every=config.log_every,
                               on_epoch=cb(f"joint retraining {config.bits} bits",
                                           settings.epochs))
    t0 = time.perf_counter()
    joint_db = encode_items(joint.model, data, all_train)
    reencode = time.perf_counter() - t0
    result["joint"] = _table_rows(encode_items(joint.model, data, q), lab[q], q_new, old_db,
                                  lab[old_train], joint_db, db_labels, mode)

    # The linear baseline: both modalities fitted on all training items at once, scored on the
    # same queries and database; its old_codes row uses its own old-item codes (reference).
    t0 = time.perf_counter()
    lin = fit_linear_baseline(data, all_train, config.bits, settings.seed)
    lin_db = lin.encode(data, all_train)
    lin_seconds = time.perf_counter() - t0
    result["linear"] = _table_rows(lin.encode(data, q), lab[q], q_new,
                                   lin_db.take(np.arange(old_train.size)), lab[old_train],
                                   lin_db, db_labels, mode)
    lin_targets = center_targets(lab[all_train], config.bits, settings.seed)
    result["linear_baseline"] = {
        "ridge": {"image": lin.image.ridge, "text": lin.text.ridge},
        "text_features": "dense" if lin.vocabulary is None else
        f"token counts over the {lin.vocabulary.size} most frequent training words",
        "train_items": int(all_train.size),
        "train_code_equals_target": {
            "image": float((lin_db.image == lin_targets).all(axis=1).mean()),
            "text": float((lin_db.text == lin_targets).all(axis=1).mean()),
            "unified": float((lin_db.unified == lin_targets).all(axis=1).mean())},
    }

    result["seconds"] = {
        "old_model": old.seconds,
        "ecmh_extend": ext.seconds["warmup"] + ext.seconds["old_representations"]
        + ext.seconds["extend"],
        "ecmh_stages": {k: ext.seconds[k] for k in ("warmup", "old_representations",
                                                    "extend")},
        "fine_tuning": ft.seconds,
        "joint": joint.seconds,
        "joint_reencode_database": reencode,
        "linear": lin_seconds,
    }
    result["objective"] = {"old_model": _history_tail(old.history),
                           "ecmh_extend": _history_tail(ext.core.history),
                           "fine_tuning": _history_tail(ft.history),
                           "joint": _history_tail(joint.history)}
    result["agreement_fraction"] = float(ext.agreement.mean())
    result["warmup"] = ext.warmup_note
    result["counts"] = {"old_train": int(old_train.size), "new_train": int(new_train.size),
                        "old_queries": int((~q_new).sum()), "new_queries": int(q_new.sum())}
    result["new_classes"] = list(sp.new_classes)
    result["config"] = {"bits": config.bits, "image_hidden": list(config.image_hidden),
                        "text_hidden": list(config.text_hidden), "embed_dim": config.embed_dim,
                        "text_kind": data.text_kind, "database_codes": mode,
                        "validation": config.validation, "device": device.type,
                        "threads": torch.get_num_threads(),
                        **settings.as_dict()}
    result["protocol"] = _protocol(data, config, sp)
    return result


def _protocol(data: CrossModalData, config: ProtocolConfig, sp: Split) -> dict[str, str]:
    db_codes = ("unified C = sign(F + G) of each database item (paper Eq. 8, §2.1); i2t "
                "queries are INet codes sign(F), t2i queries TNet codes sign(G)"
                if config.database_codes == "unified" else
                "cross: i2t against the database's TNet codes sign(G), t2i against its INet "
                "codes sign(F)")
    if config.validation is not None:
        split = (f"validation: queries = {sp.queries.size} training items held out with the "
                 f"seed ({config.validation:g} of them), database = the other training items; "
                 "the evaluation queries are not used")
    else:
        split = (("queries = test_idx" if data.test_idx is not None else
                  f"queries = {sp.queries.size} items sampled with the seed")
                 + "; database = " + ("train_idx" if data.train_idx is not None
                                      else "the other items")
                 + " (the paper draws its database from held-out data; here, as usual for "
                 "Wiki, the database is the training items)")
    return {
        "split": split,
        "new_items": f"an item is new when it has any of classes {list(sp.new_classes)}; the "
        "old model is trained on the old-class database items only",
        "database_codes": db_codes,
        "old_codes": "old-class queries encoded by the model under test against the "
        "old-class database items' codes from the old model (forward compatibility)",
        "old_tasks": "old-class queries against the whole database (old + new items), paper "
        "§3.4; old items keep their old-model codes under ECMH and fine-tuning (never "
        "rewritten), joint retraining re-encodes them",
        "new_tasks": "new-class queries against the whole database",
        "all_tasks": "all queries against the whole database",
        "joint_old_codes": "joint retraining starts from scratch, so its old_codes row is a "
        "reference only: its codes are not meant to match the old model's",
        "fine_tuning": "the old model trained on the new items only by Algorithm 1 with "
        "A_α = 0 and no distillation, for the same epochs as ECMH stage 3",
        "loss": _loss_note(config.settings),
        "linear": "linear → centers (all tasks, refit): per modality, ridge regression of "
        "the standardised features plus a bias onto the Hadamard centers of each item's "
        "classes (multi-label: sign of their sum), λ = trace/d, fitted on all training items "
        "at once (the non-incremental reference); codes sgn(X W), unified sgn(F + G); same "
        "queries, database and scoring as the other rows; its old_codes row compares against "
        "its own codes of the old-class database items (a reference only)",
        "seconds": "training steps only (objective logging excluded); ecmh_extend = "
        "warm-up + old representations and A_α + stage 3",
    }


def _loss_note(settings: TrainSettings) -> str:
    if settings.loss == "dhd":
        return ("DHD (L_HP + λ1 L_SdH + λ2 L_bce-Q, proxies shared by INet and TNet, "
                "feature-space weak/strong views) instead of L_c + L_h; the extension adds "
                f"ECMH's L_d as an entry mean × {settings.l_d_weight:g}; extension and "
                "fine-tuning continue from the old model's proxies")
    if settings.loss == "idcwh":
        return ("IDCWH (L_clw + γ L_csl + β L_quant, centers shared by INet and TNet, binary "
                f"centers by {settings.idcwh.center_update!r}) instead of L_c + L_h; the "
                f"extension adds ECMH's L_d as an entry mean × {settings.l_d_weight:g}; "
                "extension and fine-tuning continue from the old model's centers")
    return (f"L_c form {settings.common_loss!r} (Eq. 6 as printed collapses; "
            "'likelihood' is DCMH's negative log-likelihood); λ_c = λ_h = 1/(M² L) as the "
            "paper, per mini-batch as unbiased estimates; the extension's L_d as an entry "
            f"mean × {settings.l_d_weight:g} (the paper's λ_d = 1/(M L²) is the weight 1/L)"
            + (f"; stage 3 adds the term against old classes × {settings.center_weight:g}"
               if settings.center_weight > 0 else ""))


def add_parser(subparsers: Any) -> None:
    """Register ``ecmh-eval`` and its flags on a ``argparse`` sub-parser collection."""
    d = TrainSettings()
    w = ProtocolConfig().image_hidden
    p = subparsers.add_parser(
        "ecmh-eval", help="run the ECMH extension protocol (paper Table 1) on an .npz",
        description="Train ECMH on the old classes, extend it to the new classes (ECMH, "
        "fine-tuning, joint retraining) and score old codes, old, new and all tasks (mAP, "
        "image→text and text→image).")
    p.add_argument("--data", required=True, help=".npz with features, text or tokens (ids, "
                   "negative = padding), labels, optional train_idx/test_idx")
    p.add_argument("--bits", type=int, default=32, help="code length L (default 32)")
    p.add_argument("--new-classes", default=None,
                   help="comma-separated class indices that arrive later (default: the last "
                   "30%% of classes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_out", default=None, help="write the result here")
    p.add_argument("--text-input", choices=("auto", "dense", "tokens"), default="auto",
                   help="which text array to use (auto: tokens when present)")
    p.add_argument("--queries", type=int, default=None,
                   help="seeded queries when the file has no test_idx (default 20%% of items)")
    p.add_argument("--database-codes", choices=("unified", "cross"), default="unified",
                   help="database codes: unified sign(F+G) (paper) or the other modality's")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help=f"Algorithm 1 epochs for the old model and joint (default {d.epochs})")
    p.add_argument("--extend-epochs", type=int, default=d.extend_epochs,
                   help=f"ECMH stage 3 and fine-tuning epochs (default {d.extend_epochs})")
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs,
                   help=f"stage 1 epochs, token text only (default {d.warmup_epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=d.optimizer,
                   help="adam (default) or the paper's sgd (then use --lr 1.5)")
    p.add_argument("--lr", type=float, default=d.lr, help=f"default {d.lr}")
    p.add_argument("--alpha", type=float, default=d.alpha, help="agreement threshold α")
    p.add_argument("--beta", type=float, default=d.beta, help="code smoothing β")
    p.add_argument("--common-loss", choices=("likelihood", "paper"), default=d.common_loss,
                   help="L_c form: likelihood (default) or Eq. 6 as printed (collapses)")
    p.add_argument("--loss", choices=("ecmh", "dhd", "idcwh"), default=d.loss,
                   help="training objective of INet/TNet: ecmh (L_c + L_h, default), dhd "
                   "(Deep Hash Distillation) or idcwh (improved deep classwise hashing)")
    p.add_argument("--distill-weight", type=float, default=None,
                   help="weight of ECMH's L_d (× its entry mean) in the extension (default "
                   + ", ".join(f"{k} {v:g}" for k, v in DISTILL_WEIGHTS.items()) + ")")
    p.add_argument("--center-weight", type=float, default=d.center_weight,
                   help="weight of stage 3's term against old classes (outputs pulled to "
                   "their classes' centers: old classes' from their codes, new classes' "
                   f"placed away from them; 0: off, as the paper; default {d.center_weight:g})")
    p.add_argument("--dhd-tau", type=float, default=d.dhd.tau,
                   help=f"DHD proxy temperature τ (default {d.dhd.tau})")
    p.add_argument("--idcwh-centers", choices=("sign", "dcc"), default=d.idcwh.center_update,
                   help="IDCWH binary centers: sign = sgn(Σ b) (paper, default); dcc = "
                   "SDOH-HC's discrete center step")
    p.add_argument("--freeze-old-embeddings", action="store_true",
                   help="stage 3 keeps the old word vectors fixed")
    p.add_argument("--freeze-first-layer", action=argparse.BooleanOptionalAction,
                   default=d.freeze_first_layer,
                   help="stage 3 keeps the first hidden layer of INet and TNet fixed "
                   f"(default {'on' if d.freeze_first_layer else 'off'})")
    p.add_argument("--hidden", type=int, nargs="*", default=list(w),
                   help=f"hidden widths of INet and TNet (default {' '.join(map(str, w))}; "
                   "give none for linear nets)")
    p.add_argument("--image-hidden", type=int, nargs="*", default=None,
                   help="INet's hidden widths, overriding --hidden (none: linear INet)")
    p.add_argument("--text-hidden", type=int, nargs="*", default=None,
                   help="TNet's hidden widths, overriding --hidden (none: linear TNet head)")
    p.add_argument("--validation", type=float, default=None, metavar="SHARE",
                   help="score on this share of the training items, held out (e.g. 0.2), "
                   "instead of the evaluation queries: for choosing settings")
    p.add_argument("--embed-dim", type=int, default=256, help="DAN word-vector size")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> ProtocolConfig:
    """The protocol configuration the parsed flags describe (ValueError when invalid)."""
    new: tuple[int, ...] | None = None
    if args.new_classes:
        try:
            new = tuple(int(v) for v in str(args.new_classes).split(",") if v.strip())
        except ValueError as exc:
            raise ValueError(f"--new-classes must be comma-separated integers: {exc}") from exc
    settings = TrainSettings(epochs=args.epochs, extend_epochs=args.extend_epochs,
                             warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
                             optimizer=args.optimizer, lr=args.lr, alpha=args.alpha,
                             beta=args.beta, common_loss=args.common_loss,
                             train_old_embeddings=not args.freeze_old_embeddings,
                             freeze_first_layer=args.freeze_first_layer,
                             seed=args.seed, device=args.device, loss=args.loss,
                             distill_weight=args.distill_weight,
                             center_weight=args.center_weight,
                             dhd=replace(DHDSettings(), tau=args.dhd_tau),
                             idcwh=replace(IDCWHSettings(), center_update=args.idcwh_centers))
    if args.bits < 1:
        raise ValueError("--bits must be positive")
    hidden = tuple(args.hidden)
    image_hidden = hidden if args.image_hidden is None else tuple(args.image_hidden)
    text_hidden = hidden if args.text_hidden is None else tuple(args.text_hidden)
    if any(width < 1 for width in (*image_hidden, *text_hidden)):
        raise ValueError("hidden widths must be positive")
    if args.validation is not None and not 0 < args.validation < 1:
        raise ValueError("--validation must be between 0 and 1")
    return ProtocolConfig(bits=args.bits, new_classes=new, queries=args.queries,
                          validation=args.validation, image_hidden=image_hidden,
                          text_hidden=text_hidden, embed_dim=args.embed_dim,
                          database_codes=args.database_codes, settings=settings)


def _tqdm_progress() -> tuple[ProgressFactory, Callable[[], None]]:
    from tqdm import tqdm

    bars: list[Any] = []

    def factory(desc: str, epochs: int) -> EpochCallback:
        bar = tqdm(total=epochs, unit="epoch", desc=desc, leave=True)
        bars.append(bar)

        def on_epoch(epoch: int, total: int, record: dict[str, float]) -> None:
            if record:
                bar.set_postfix(loss=f"{record['total']:.5f}")
            bar.update(1)
            if epoch == total:
                bar.close()

        return on_epoch

    def close() -> None:
        for bar in bars:
            bar.close()

    return factory, close


def _nothing() -> None:
    return None


def run(args: argparse.Namespace) -> int:
    """Run ``ecmh-eval`` for parsed arguments; prints the table, writes --json; exit code."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"hashstream ecmh-eval: {exc}", file=sys.stderr)
        return 2
    progress: ProgressFactory | None = None
    close: Callable[[], None] = _nothing
    if not args.quiet:
        progress, close = _tqdm_progress()
    try:
        data = load_cross_modal(args.data, args.text_input)
        result = run_protocol(data, config, progress)
    except DatasetError as exc:
        print(f"hashstream ecmh-eval: {exc}", file=sys.stderr)
        return 2
    finally:
        close()
    print(format_table(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    return 0


def format_table(result: dict[str, Any]) -> str:
    """The Table 1 analogue of one result as Markdown (mAP, t2i then i2t as the paper; then
    the tie-aware mAP, where the result has it)."""
    lines = ["| row | method | T→I | I→T | T→I tie-aware | I→T tie-aware | T→I ties by "
             "projection | I→T ties by projection |", "|---|---|---|---|---|---|---|---|"]
    for row in ROWS:
        methods = ["old_model", "fine_tuning", "ecmh", "joint"] if row == "old_codes" else [
            "joint", "fine_tuning", "ecmh"]
        for m in [*methods, "linear"]:
            if row in result.get(m, {}):
                v = result[m][row]
                tie = " | ".join(f"{v[k]:.4f}" if k in v else "–"
                                 for k in ("t2i_tie_aware", "i2t_tie_aware",
                                           "t2i_projection_ties", "i2t_projection_ties"))
                label = METHOD_LABELS.get(m, m)
                lines.append(f"| {row} | {label} | {v['t2i']:.4f} | {v['i2t']:.4f} | {tie} |")
    s = result["seconds"]
    lines.append(f"\nseconds: old model {s['old_model']:.1f}, ECMH extend {s['ecmh_extend']:.1f}, "
                 f"fine-tuning {s['fine_tuning']:.1f}, joint {s['joint']:.1f}"
                 + (f", linear {s['linear']:.2f}" if "linear" in s else ""))
    return "\n".join(lines)
