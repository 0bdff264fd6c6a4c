"""Exemplar-memory policies of SDOH-HC: which n2 points of a chunk to remember, and the update.

After each round the memory keeps n1 of its exemplars at random and adds n2 points of the new
chunk (nq = n1 + n2), chosen by a policy: ``random``; ``class_balanced`` (round-robin over the
chunk's classes, so rare classes are represented); ``nearest_center`` (the points whose learned
codes lie closest, in Hamming distance, to their class centers Y; the authors' residual rule).
The fourth policy, ``condensed``, stores synthetic exemplars rather than chunk rows; it lives in
``condensation.py`` and :func:`select_exemplars` refuses it.
Selection runs after B is optimised, not on the chunk's initial codes (SOLVER.md, mistake 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.solver.settings import ExemplarPolicy

IntArray = np.ndarray[Any, np.dtype[np.int64]]


def select_random(n: int, count: int, rng: np.random.Generator) -> IntArray:
    """``count`` distinct row indices of ``n``, sorted."""
    count = min(count, n)
    return np.sort(rng.choice(n, size=count, replace=False)).astype(np.int64)


def select_class_balanced(labels: np.ndarray[Any, Any], count: int,
                          rng: np.random.Generator) -> IntArray:
    """Round-robin over classes present in ``labels`` (n × c 0/1), each turn taking an unused
    random row of that class; multi-label rows count for each of their classes."""
    n = labels.shape[0]
    count = min(count, n)
    order = rng.permutation(n)
    present = np.flatnonzero(labels.any(axis=0))
    queues = [order[labels[order, k] > 0] for k in present]
    cursors = [0] * len(queues)
    taken = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    while len(chosen) < count and queues:
        progressed = False
        for qi, queue in enumerate(queues):
            while cursors[qi] < len(queue) and taken[queue[cursors[qi]]]:
                cursors[qi] += 1
            if cursors[qi] < len(queue) and len(chosen) < count:
                row = int(queue[cursors[qi]])
                taken[row] = True
                chosen.append(row)
                progressed = True
        if not progressed:
            break
    if len(chosen) < count:  # unlabelled rows fill what is left
        rest = order[~taken[order]][: count - len(chosen)]
        chosen.extend(int(i) for i in rest)
    return np.sort(np.asarray(chosen, dtype=np.int64))


def select_nearest_center(labels: np.ndarray[Any, Any], codes: np.ndarray[Any, Any],
                          centers: np.ndarray[Any, Any], count: int) -> IntArray:
    """Rows whose code is nearest (mean Hamming distance) to their own classes' centers
    (``centers``: c × r, ±1). Ties go to the earlier row; unlabelled rows come last."""
    n, r = codes.shape
    count = min(count, n)
    lab = labels.astype(np.float64)
    dist_to_centers = (r - codes.astype(np.float64) @ centers.T.astype(np.float64)) / 2
    n_labels = lab.sum(axis=1)
    mean_dist = np.where(n_labels > 0, (dist_to_centers * lab).sum(axis=1)
                         / np.maximum(n_labels, 1), np.inf)
    return np.sort(np.argsort(mean_dist, kind="stable")[:count]).astype(np.int64)


def select_exemplars(policy: ExemplarPolicy, labels: np.ndarray[Any, Any],
                     codes: np.ndarray[Any, Any], centers: np.ndarray[Any, Any], count: int,
                     rng: np.random.Generator) -> IntArray:
    """Indices of the chunk rows to add to the exemplar memory under ``policy``."""
    if policy == "random":
        return select_random(labels.shape[0], count, rng)
    if policy == "class_balanced":
        return select_class_balanced(labels, count, rng)
    if policy == "nearest_center":
        return select_nearest_center(labels, codes, centers, count)
    if policy == "condensed":
        raise ValueError("exemplar policy 'condensed' makes synthetic exemplars, not a "
                         "selection of rows: use condensation.condense_exemplars")
    raise ValueError(f"unknown exemplar policy {policy!r}")
