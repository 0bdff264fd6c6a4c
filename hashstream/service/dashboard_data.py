"""Data behind the ops dashboard: summaries of every index and the hash-center heat maps."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hashstream.service.backlog import BacklogLimits
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


def round_wall_seconds(seconds: dict[str, float]) -> float:
    """A round's wall time from its record's ``seconds``: everything before the commit
    (``total``; records written before it existed have ``learn`` only) plus the commit."""
    before = seconds.get("total", seconds.get("learn", 0.0))
    return float(before) + float(seconds.get("commit", 0.0))


def summary(indexes: IndexService, limits: BacklogLimits | None = None) -> dict[str, Any]:
    """One line per index, most recently active first (sizes, queue depth and lag, dead
    letters, lease holder, the latest round's headline figures, the backlog: items waiting,
    learn rate, ingests refused), ingest's backlog ``limits``, and the live workers with the
    indexes whose round lease each holds now and the latest round each committed."""
    rows = []
    latest_by_worker: dict[str, dict[str, Any]] = {}
    for row in indexes.overview():
        rec = row["last"] or {}
        rows.append({"name": row["name"], "model_version": row["version"],
                     "method": row["method"], "bits": row["bits"],
                     "partitions": row["partitions"], "queue_depth": row["queue_depth"],
                     "queue_lag_s": row["queue_lag_s"], "dead_letters": row["dead_letters"],
                     "queued_items": row["queued_items"], "learn_rate": row["learn_rate"],
                     "refusals": row["refusals"],
                     "lease_holder": row["lease_holder"], "last_active": row["last_active"],
                     "n_database": rec.get("n_database", 0), "n_classes": rec.get("n_classes", 0),
                     "map": rec.get("map"), "precision_r2": rec.get("precision_r2"),
                     "seconds": round_wall_seconds(rec["seconds"]) if rec.get("seconds")
                     else None})
        worker = rec.get("worker")
        if worker and rec.get("ts", 0) > latest_by_worker.get(worker, {}).get("ts", 0):
            latest_by_worker[worker] = {"index": row["name"], "round": rec.get("round"),
                                        "ts": rec.get("ts")}
    workers = []
    for worker, info in sorted(indexes.workers().items()):
        workers.append({"id": worker, "backend": info.get("backend"),
                        "hamming_kernel": info.get("hamming_kernel"),
                        "started": info.get("started"),
                        "holding": [r["name"] for r in rows if r["lease_holder"] == worker],
                        "latest_round": latest_by_worker.get(worker)})
    limits = limits or BacklogLimits()
    return {"indexes": rows, "workers": workers, "now": round(time.time(), 3),
            "backlog_limits": {"items": limits.items, "seconds": limits.seconds}}
