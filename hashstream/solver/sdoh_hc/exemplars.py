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

from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.settings import ExemplarPolicy

IntArray = np.ndarray[Any, np.dtype[np.int64]]


def select_random(n: int, count: int, rng: np.random.Generator) -> IntArray:
    """``count`` distinct row indices of ``n``, sorted."""
    count = min(count, n)
    return np.sort(rng.choice(n, size=count, replace=False)).astype(np.int64)


def select_class_balanced(labels: ClassLists, count: int,
                          rng: np.random.Generator) -> IntArray:
    """Round-robin over classes present in ``labels`` (in class order), each turn taking an
    unused random row of that class; multi-label rows count for each of their classes."""
    n = labels.n
    count = min(count, n)
    order = rng.permutation(n)
    # Each class's queue: its rows in the order of the permutation (entries sorted by class,
    # then by position in ``order``), cut at the class boundaries.
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    rows = labels.row_of_entry()
    by_class = np.lexsort((position[rows], labels.classes))
    queue_rows = rows[by_class]
    starts = np.flatnonzero(np.r_[True, np.diff(labels.classes[by_class]) != 0]) \
        if labels.nnz else np.zeros(0, dtype=np.int64)
    bounds = np.r_[starts, labels.nnz]
    if labels.nnz and int(labels.counts().max()) == 1:  # no row waits in two queues
        chosen = round_robin_disjoint(queue_rows, bounds, count)
    else:
        chosen = round_robin(queue_rows, bounds, count, n)
    if len(chosen) < count:  # unlabelled rows fill what is left
        taken = np.zeros(n, dtype=bool)
        taken[chosen] = True
        chosen = np.concatenate([chosen, order[~taken[order]][: count - len(chosen)]])
    return np.sort(chosen.astype(np.int64))


def round_robin(queue_rows: IntArray, bounds: IntArray, count: int, n: int) -> IntArray:
    """Up to ``count`` distinct rows from the queues ``queue_rows[bounds[i]:bounds[i + 1]]``,
    one from each queue in turn, skipping rows another queue already gave."""
    queues = [queue_rows[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
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
    return np.asarray(chosen, dtype=np.int64)


def round_robin_disjoint(queue_rows: IntArray, bounds: IntArray, count: int) -> IntArray:
    """:func:`round_robin` where no row is in two queues (single-label data), without the
    Python loop: turn t takes the t-th row of every queue still that long, in queue order, so
    the picks are the entries sorted by (place in their queue, queue)."""
    sizes = np.diff(bounds)
    place = np.arange(len(queue_rows)) - np.repeat(bounds[:-1], sizes)
    queue = np.repeat(np.arange(len(sizes)), sizes)
    return queue_rows[np.lexsort((queue, place))[:count]].astype(np.int64)


def select_nearest_center(labels: ClassLists, codes: np.ndarray[Any, Any],
                          centers: np.ndarray[Any, Any], count: int) -> IntArray:
    """Rows whose code is nearest (mean Hamming distance) to their own classes' centers
    (``centers``: c × r, ±1). Ties go to the earlier row; unlabelled rows come last.

    Distances are taken only for the (row, class) entries of ``labels``: O(nnz · r)."""
    n, r = codes.shape
    count = min(count, n)
    rows = labels.row_of_entry()
    agree = np.einsum("ij,ij->i", codes[rows].astype(np.int32),
                      centers[labels.classes].astype(np.int32))
    dist = (r - agree.astype(np.float64)) / 2  # Hamming distance of each entry
    n_labels = labels.counts().astype(np.float64)
    total = np.bincount(rows, weights=dist, minlength=n)
    mean_dist = np.where(n_labels > 0, total / np.maximum(n_labels, 1), np.inf)
    return np.sort(np.argsort(mean_dist, kind="stable")[:count]).astype(np.int64)


def select_exemplars(policy: ExemplarPolicy, labels: ClassLists,
                     codes: np.ndarray[Any, Any], centers: np.ndarray[Any, Any], count: int,
                     rng: np.random.Generator) -> IntArray:
    """Indices of the chunk rows to add to the exemplar memory under ``policy``."""
    if policy == "random":
        return select_random(labels.n, count, rng)
    if policy == "class_balanced":
        return select_class_balanced(labels, count, rng)
    if policy == "nearest_center":
        return select_nearest_center(labels, codes, centers, count)
    if policy == "condensed":
        raise ValueError("exemplar policy 'condensed' makes synthetic exemplars, not a "
                         "selection of rows: use condensation.condense_exemplars")
    raise ValueError(f"unknown exemplar policy {policy!r}")
