"""Data behind the ops dashboard: summaries of every index and the hash-center heat maps."""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.service.registry import IndexService

# The heat maps show at most this many classes (the first ones): c × c numbers in a JSON reply
# must stay small whatever the index holds (5,000 classes would be 25 million).
MAX_HEATMAP_CLASSES = 200


def center_distances(indexes: IndexService, name: str) -> dict[str, Any]:
    """Center-to-center Hamming distances of the hash-center memory's latest round and the
    round before it (the first ``MAX_HEATMAP_CLASSES`` classes; classes that did not exist yet
    are absent)."""
    out = []
    for rnd, y in indexes.recent_centers(name).items():
        y = y[:MAX_HEATMAP_CLASSES].astype(np.int32)
        dist = (y.shape[1] - y @ y.T) // 2
        out.append({"round": rnd, "bits": int(y.shape[1]), "distances": dist.tolist()})
    return {"index": name, "rounds": out, "max_classes_shown": MAX_HEATMAP_CLASSES}


def summary(indexes: IndexService) -> dict[str, Any]:
    """One line per index: sizes, queue depth and the latest round's headline figures."""
    rows = []
    for row in indexes.overview():
        rec = row["last"] or {}
        rows.append({"name": row["name"], "model_version": row["version"],
                     "queue_depth": row["queue_depth"], "dead_letters": row["dead_letters"],
                     "n_database": rec.get("n_database", 0), "n_classes": rec.get("n_classes", 0),
                     "map": rec.get("map"), "precision_r2": rec.get("precision_r2"),
                     "seconds": rec.get("seconds", {}).get("learn")})
    return {"indexes": rows}
