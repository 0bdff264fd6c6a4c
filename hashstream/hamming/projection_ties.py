"""Top-k by Hamming distance with the items at one distance ordered by a real-valued query.

A query's code is the sign of a real-valued projection (φ(q)P, a network's output). Learned
codes collapse onto few values (hash centers), so whole classes sit at one distance from a
query and insertion order would decide among them. Here the items at one distance are ranked
by their code's inner product with the query's projection (the asymmetric distance of
Gordo et al., used only within a tie), then by insertion: the same distances as the plain top-k,
a better order within them. Exact: every item at the k-th distance is scored (a range search
at that radius), so the cost grows with the tie at the cut, up to the whole view.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from hashstream.hamming.byte_tables import byte_table, table_scores
from hashstream.hamming.index import HammingView

__all__ = ["search_projection_ties"]


def search_projection_ties(view: HammingView, queries: NDArray[np.uint8],
                           projection: NDArray[Any], k: int
                           ) -> tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.float32]]:
    """Exact top-k of packed ``queries`` (q × bytes) in ``view``, ranked by (distance,
    −⟨projection, code⟩, insertion); ``projection`` is q × bits (its signs are the queries).
    Returns (distances, ids, scores), each q × k, padded as :meth:`HammingView.search` (id −1,
    distance bits + 1, score −inf); a query's scores are on the scale of its projection row
    divided by the power of two just above its largest |value|."""
    z = np.nan_to_num(np.asarray(projection, dtype=np.float64))
    if z.shape != (queries.shape[0], view.bits):
        raise ValueError(f"projection must be {queries.shape[0]} × {view.bits}, not {z.shape}")
    # each row scaled by a power of two (exact) to a largest |z| in [1/2, 1): the order within
    # a query is the same, and float32 scores stay finite however large the query's values
    _, exponent = np.frexp(np.abs(z).max(axis=1, keepdims=True))
    z = np.ldexp(z, -exponent).astype(np.float32)
    distances, ids = view.search(queries, k)
    scores = np.full(ids.shape, -np.inf, dtype=np.float32)
    for q in range(queries.shape[0]):
        found = int(np.count_nonzero(ids[q] >= 0))
        if found == 0:
            continue
        # every live item within the k-th distance: those nearer are all in the top k
        # already; those at it compete for the places left
        _, dist, pos = view.range_positions(queries[q:q + 1], int(distances[q, found - 1]))
        score = table_scores(view.codes_at(pos), byte_table(z[q], view.code_bytes))
        order = _ranked(dist, score, pos, found)
        distances[q, :found] = dist[order]
        ids[q, :found] = view.ids_at(pos[order])
        scores[q, :found] = score[order]
    return distances, ids, scores


def _ranked(dist: NDArray[np.int32], score: NDArray[np.float32], pos: NDArray[np.int64],
            keep: int) -> NDArray[np.int64]:
    """Indices of the first ``keep`` rows by (distance, −score, position), where every row at
    a distance below the largest is kept: those are sorted, and at the largest only the best
    ``keep`` − (their number) are selected (a partition, not a sort of the whole tie; the rows
    at the largest distance come in position order)."""
    last = dist.max()
    near = np.flatnonzero(dist < last)
    tie = np.flatnonzero(dist == last)
    wanted = keep - near.size
    if wanted < tie.size:
        # the wanted-th best score at the cut; above it all are in, at it the earliest
        cut = -np.partition(-score[tie], wanted - 1)[wanted - 1]
        above, at = tie[score[tie] > cut], tie[score[tie] == cut]
        tie = np.concatenate([above, at[:wanted - above.size]])
    rows = np.concatenate([near, tie])
    return rows[np.lexsort((pos[rows], -score[rows], dist[rows]))]
