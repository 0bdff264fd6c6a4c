"""Rounds of a cross-modal index: train (first round), extend (unseen classes) or encode.

Called by the worker with the merged pair chunks of one round; returns what the round commits
(the segment of codes, the small state, a new deep model version if one was trained, and the
record). Old codes are never touched: a round only adds its own pairs' codes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashstream.service.cross_modal import CrossModalSettings
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.metrics import evaluate, pack_codes
from hashstream.store.index_store import IndexStore

Arrays = dict[str, np.ndarray[Any, Any]]


@dataclass
class DeepCache:
    """The worker's view of a cross-modal index at ``version`` (rounds committed)."""

    version: int = -1
    model_version: int = 0
    model: Any = None
    known: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    db_codes: list[np.ndarray[Any, Any]] = field(default_factory=list)
    db_labels: list[ClassLists] = field(default_factory=list)


@dataclass
class DeepRound:
    segment: Arrays
    state: Arrays
    deep_model: tuple[int, Arrays] | None
    record: dict[str, Any]
    cache: DeepCache


def load_cache(store: IndexStore, name: str, version: int) -> DeepCache:
    """Rebuild the cache from Redis (after a restart or a lost race)."""
    from hashstream.solver.ecmh.state_io import from_arrays

    cache = DeepCache(version=version)
    if version == 0:
        return cache
    state = store.load_state(name)
    cache.model_version = int(state["model_version"])
    cache.known = state["known_classes"].astype(bool)
    cache.model = from_arrays(store.load_deep_model(name, cache.model_version))
    for v in range(1, version + 1):
        seg = store.load_segment(name, v)
        cache.db_codes.append(seg["codes"])
        cache.db_labels.append(ClassLists(seg["label_indptr"], seg["label_indices"],
                                          len(cache.known)))
    return cache


def run_round(cache: DeepCache, settings: CrossModalSettings, bits: int, dim: int,
              image: np.ndarray[Any, Any], text: np.ndarray[Any, Any],
              class_lists: ClassLists, ids: np.ndarray[Any, Any],
              queries: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], ClassLists]]
              ) -> DeepRound:
    """Learn (or encode) one round of pairs; nothing in ``cache`` is modified.

    The networks train on dense n × c label rows (c: the index's classes so far, at most its
    ``max_classes``); codes and evaluation keep the class lists. ``queries``: held-out
    (image, text, labels) blocks."""
    from hashstream.solver.ecmh.extend import extend
    from hashstream.solver.ecmh.networks import (
        image_representations,
        text_representations,
    )
    from hashstream.solver.ecmh.settings import NetworkConfig, TrainSettings
    from hashstream.solver.ecmh.state_io import to_arrays
    from hashstream.solver.ecmh.train import paired_data, train_from_scratch

    started = time.perf_counter()
    c = max(class_lists.n_classes, len(cache.known))
    labels = class_lists.to_dense(c)
    known = np.zeros(c, dtype=bool)
    known[: len(cache.known)] = cache.known
    present = labels.any(axis=0)
    unseen = present & ~known
    train = TrainSettings(epochs=settings.epochs, extend_epochs=settings.extend_epochs,
                          warmup_epochs=settings.warmup_epochs, seed=settings.seed,
                          device="cpu")
    model, model_version, action = cache.model, cache.model_version, "encode"
    if model is None:
        vocab = int(text.max()) + 1 if settings.text_kind == "tokens" else 0
        netcfg = NetworkConfig(bits=bits, image_dim=dim, text_kind=settings.text_kind,
                               text_dim=settings.text_dim,
                               vocab_blocks=(max(vocab, 1),) if settings.text_kind == "tokens"
                               else (), embed_dim=settings.embed_dim,
                               image_hidden=settings.image_hidden,
                               text_hidden=settings.text_hidden)
        model = train_from_scratch(netcfg, image, text, labels, train).model
        model_version, action = 1, "train"
    elif unseen.any():
        data = paired_data(model.config, image, text, labels, model.device)
        model = extend(model, data, train).model
        model_version, action = model_version + 1, "extend"
    data = paired_data(model.config, image, text, labels, model.device)
    f = image_representations(model, data.image)
    g = text_representations(model, data.text)
    codes = np.where((f + g).cpu().numpy() >= 0, 1, -1).astype(np.int8)
    image_codes = np.where(f.cpu().numpy() >= 0, 1, -1).astype(np.int8)
    text_codes = np.where(g.cpu().numpy() >= 0, 1, -1).astype(np.int8)
    packed = pack_codes(codes)
    segment = {"codes": packed, "image_codes": pack_codes(image_codes),
               "text_codes": pack_codes(text_codes), "ids": ids,
               "label_indptr": class_lists.indptr, "label_indices": class_lists.classes,
               "model_version": np.full(len(ids), model_version, dtype=np.int32)}
    new_known = known | present
    db_codes = [*cache.db_codes, packed]
    db_labels = [*cache.db_labels, class_lists]
    record: dict[str, Any] = {
        "round": cache.version + 1, "model_version": model_version, "action": action,
        "n_items": int(len(ids)), "n_database": int(sum(len(x) for x in db_codes)),
        "n_classes": int(new_known.sum()), "ts": time.time(),
        "unseen_classes": np.flatnonzero(unseen).tolist(),
        "map": None, "map_i2t": None, "map_t2i": None, "precision_r2": None,
    }
    if queries:
        q_img = np.concatenate([q[0] for q in queries])
        q_txt = np.concatenate([q[1] for q in queries]) \
            if settings.text_kind == "dense" else pad_token_rows([q[1] for q in queries])
        q_lab = ClassLists.concat([q[2] for q in queries])
        all_codes = np.concatenate(db_codes)
        all_labels = ClassLists.concat(db_labels)
        # encoding ignores labels: one placeholder column, not an nq × c matrix
        qd = paired_data(model.config, q_img, q_txt, np.zeros((len(q_img), 1), np.uint8),
                         model.device)
        fq = np.where(image_representations(model, qd.image).cpu().numpy() >= 0, 1, -1)
        gq = np.where(text_representations(model, qd.text).cpu().numpy() >= 0, 1, -1)
        i2t = evaluate(pack_codes(fq), q_lab, all_codes, all_labels, bits=bits)
        t2i = evaluate(pack_codes(gq), q_lab, all_codes, all_labels, bits=bits)
        record.update(map_i2t=i2t.map, map_t2i=t2i.map, map=(i2t.map + t2i.map) / 2,
                      precision_r2=(i2t.precision_r2 + t2i.precision_r2) / 2,
                      n_queries=int(len(q_img)), pr_curve=i2t.as_dict()["pr_curve"])
    record["seconds"] = {"learn": round(time.perf_counter() - started, 6)}
    new_cache = DeepCache(cache.version + 1, model_version, model, new_known, db_codes,
                          db_labels)
    state = {"model_version": np.asarray(model_version), "known_classes":
             new_known.astype(np.uint8)}
    deep = (model_version, to_arrays(model)) if action != "encode" else None
    return DeepRound(segment, state, deep, record, new_cache)


def pad_token_rows(blocks: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    width = max(b.shape[1] for b in blocks)
    return np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-1)
                           for b in blocks])
