"""Range-search results as a FAISS-style triple ``(lims, distances, positions-or-ids)``: query
i's rows are ``[lims[i], lims[i + 1])``, sorted by (distance, insertion order)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["concat_ranges", "sort_ranges", "split_ranges"]


def split_ranges(
    lims: NDArray[np.int64], distances: NDArray[np.int32], ids: NDArray[np.int64]
) -> list[tuple[NDArray[np.int32], NDArray[np.int64]]]:
    """``range_search``'s triple as one (distances, ids) pair per query."""
    return [(distances[lims[i]:lims[i + 1]], ids[lims[i]:lims[i + 1]])
            for i in range(len(lims) - 1)]


def sort_ranges(qidx: NDArray[Any], d: NDArray[np.int32], pos: NDArray[np.int64], nq: int
                ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
    """The triple of hits given as (query number, distance, position) rows in any order."""
    order = np.lexsort((pos, d, qidx))
    lims = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(np.bincount(qidx, minlength=nq), out=lims[1:])
    return lims, d[order], pos[order]


def concat_ranges(parts: list[tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64],
                                    NDArray[Any]]], nq: int
                  ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
    """Merge range results given per part as (lims, D, positions, query numbers of its rows)."""
    qs, ds, ps = [], [], []
    for lims, d, pos, which in parts:
        counts = np.diff(lims)
        qs.append(np.repeat(np.asarray(which, dtype=np.int64), counts))
        ds.append(d)
        ps.append(pos)
    return sort_ranges(np.concatenate(qs), np.concatenate(ds), np.concatenate(ps), nq)
