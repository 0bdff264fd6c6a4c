"""Data behind the ops dashboard: summaries of every index and the hash-center heat maps."""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.service.indexes import IndexService


def center_distances(indexes: IndexService, name: str) -> dict[str, Any]:
    """Center-to-center Hamming distances of the hash-center memory's latest round and the
    round before it (c × c each; classes that did not exist yet are absent)."""
    indexes.config(name)
    version = indexes.store.version(name)
    wanted = [v for v in (version - 1, version) if v >= 1]
    centers = indexes.store.load_centers(name, wanted)
    out = []
    for rnd in wanted:
        y = centers.get(rnd)
        if y is None:
            continue
        y = y.astype(np.int32)
        dist = (y.shape[1] - y @ y.T) // 2
        out.append({"round": rnd, "bits": int(y.shape[1]), "distances": dist.tolist()})
    return {"index": name, "rounds": out}


def summary(indexes: IndexService) -> dict[str, Any]:
    """One line per index: sizes, queue depth and the latest round's headline figures."""
    store = indexes.store
    rows = []
    for name in store.list_indexes():
        version, depth, last = store.status(name)
        rec = last or {}
        rows.append({"name": name, "model_version": version, "queue_depth": depth,
                     "dead_letters": store.dead_letter_count(name),
                     "n_database": rec.get("n_database", 0), "n_classes": rec.get("n_classes", 0),
                     "map": rec.get("map"), "precision_r2": rec.get("precision_r2"),
                     "seconds": rec.get("seconds", {}).get("learn")})
    return {"indexes": rows}
