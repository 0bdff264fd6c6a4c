"""The NumPy fallback of the flat scan (``np.bitwise_count`` on the code words): the same
results as the compiled kernels, used when they cannot be imported or ``backend="numpy"``.

Every function reads the blocked store of :class:`~hashstream.hamming.index.HammingIndex`
(blocks of ``per_block`` codes; a block holds word 0 of its codes, then word 1, ...) through a
:class:`Layout`, over positions [0, n); ``removed`` marks removed positions (nonzero)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hashstream.hamming.ranges import sort_ranges

__all__ = ["Layout", "numpy_range", "numpy_topk"]

_POS_BITS = 40
_POS_PAD = -1


@dataclass(frozen=True)
class Layout:
    """Code geometry: ``words`` words of dtype ``wdtype`` a code, ``per_block`` codes a block."""

    bits: int
    words: int
    per_block: int
    wdtype: np.dtype[Any]


def _distances(lay: Layout, store: NDArray[np.uint8], qw: NDArray[Any], begin: int, end: int
               ) -> NDArray[np.int32]:
    """(q × (end - begin)) Hamming distances of positions [begin, end)."""
    B, W = lay.per_block, lay.words
    blk0, blk1 = begin // B, -(-end // B)
    words = store[blk0:blk1].view(lay.wdtype).reshape(blk1 - blk0, W, B)
    x = np.bitwise_xor(words[None, :, :, :], qw[:, None, :, None])
    d: NDArray[np.int32] = np.bitwise_count(x).sum(axis=2, dtype=np.int32)
    return d.reshape(qw.shape[0], -1)[:, begin - blk0 * B:end - blk0 * B]


def _chunks(lay: Layout, nq: int) -> tuple[int, int]:
    """Queries and positions per step (about 4M code words of XOR at a time)."""
    qc = max(1, min(nq, 64))
    pc = max(lay.per_block, (1 << 22) // (qc * lay.words) // lay.per_block * lay.per_block)
    return qc, pc


def numpy_topk(lay: Layout, store: NDArray[np.uint8], removed: NDArray[np.uint8], n: int,
               n_removed: int, qw: NDArray[Any], k: int
               ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """Exact top-k (distances, positions), rows in (distance, position) order, padded with
    ``bits + 1`` / -1."""
    nq = qw.shape[0]
    qc, pc = _chunks(lay, nq)
    invalid = np.int64(((lay.bits + 1) << _POS_BITS) | ((1 << _POS_BITS) - 1))
    out_d = np.empty((nq, k), dtype=np.int32)
    out_p = np.empty((nq, k), dtype=np.int64)
    for q0 in range(0, nq, qc):
        q = qw[q0:q0 + qc]
        best = np.full((q.shape[0], 0), invalid, dtype=np.int64)
        for p0 in range(0, n, pc):
            p1 = min(n, p0 + pc)
            d = _distances(lay, store, q, p0, p1).astype(np.int64)
            keys = (d << _POS_BITS) | np.arange(p0, p1, dtype=np.int64)[None, :]
            if n_removed:
                keys[:, removed[p0:p1] != 0] = invalid
            cat = np.concatenate([best, keys], axis=1)
            if cat.shape[1] > k:
                cat = np.partition(cat, k - 1, axis=1)[:, :k]
            best = cat
        best.sort(axis=1)
        best = best[:, :k]
        valid = best != invalid
        out_d[q0:q0 + qc] = np.where(valid, best >> _POS_BITS, lay.bits + 1)
        out_p[q0:q0 + qc] = np.where(valid, best & ((1 << _POS_BITS) - 1), _POS_PAD)
    return out_d, out_p


def numpy_range(lay: Layout, store: NDArray[np.uint8], removed: NDArray[np.uint8], n: int,
                n_removed: int, qw: NDArray[Any], radius: int
                ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
    """Every position within ``radius``: (lims, distances, positions) (see ranges)."""
    nq = qw.shape[0]
    qc, pc = _chunks(lay, nq)
    qs, ds, ps = [], [], []
    for q0 in range(0, nq, qc):
        q = qw[q0:q0 + qc]
        for p0 in range(0, n, pc):
            p1 = min(n, p0 + pc)
            d = _distances(lay, store, q, p0, p1)
            hit = d <= radius
            if n_removed:
                hit &= (removed[p0:p1] == 0)[None, :]
            qi, pi = np.nonzero(hit)
            qs.append(qi + q0)
            ds.append(d[qi, pi])
            ps.append(pi.astype(np.int64) + p0)
    return sort_ranges(np.concatenate(qs), np.concatenate(ds).astype(np.int32),
                       np.concatenate(ps), nq)
