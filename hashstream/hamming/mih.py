"""Multi-index hashing tables for :class:`~hashstream.hamming.index.HammingIndex` (Norouzi et
al.; the search itself is in the compiled kernels, csrc/mih.c): the substring layout, building
the tables, when they are stale, the per-query work budget and when ``auto`` mode stops trying.

The tunables (``MIH_BUDGET`` and the floor) stay in :mod:`hashstream.hamming.index`, which
passes them in."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["UNLIMITED", "MIHTables", "build_tables", "mostly_fell_back", "query_budget", "stale",
           "substrings"]

UNLIMITED = 1 << 62
"""Budget of ``mode="mih"``: never fall back."""


@dataclass
class MIHTables:
    """Multi-index hashing tables over positions [0, n0) (see csrc/mih.h)."""

    n0: int
    sub_off: NDArray[np.int32]
    sub_len: NDArray[np.int32]
    offsets: NDArray[np.uint32]
    perm: NDArray[np.uint32]
    codes: NDArray[np.uint8]

    @property
    def m(self) -> int:
        return int(self.sub_len.size)

    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.perm.nbytes + self.codes.nbytes)


def substrings(bits: int, n: int, sub_bits: int | None) -> tuple[list[int], list[int]]:
    """Cut ``bits`` into m near-equal substrings of about log2(n) - 7 bits (8 to 24).

    Norouzi et al. take log2(n) bits (buckets of ~1 code); here a probe is a cache miss while
    a bucket is scanned 8 codes per instruction, so buckets of ~128 codes balance the two
    (measured in bench/hamming.py)."""
    target = sub_bits if sub_bits is not None else round(math.log2(max(n, 2))) - 7
    target = int(min(max(target, 8), 24, bits))
    m = max(1, round(bits / target), math.ceil(bits / 24))
    base, extra = divmod(bits, m)
    lengths = [base + (1 if j < extra else 0) for j in range(m)]
    offsets = [sum(lengths[:j]) for j in range(m)]
    return offsets, lengths


def build_tables(native: Any, store: NDArray[np.uint8], n0: int, lane: int, words: int,
                 bits: int, sub_bits: int | None, threads: int) -> MIHTables:
    """Tables over the first n0 codes of the blocked store, built by the compiled kernels."""
    offs, lens = substrings(bits, n0, sub_bits)
    sub_off = np.array(offs, dtype=np.int32)
    sub_len = np.array(lens, dtype=np.int32)
    offsets = np.empty(sum((1 << s) + 1 for s in lens), dtype=np.uint32)
    perm = np.empty(len(lens) * n0, dtype=np.uint32)
    codes = np.empty(len(lens) * n0 * words * lane, dtype=np.uint8)
    native.mih_build(store, n0, lane, words, bits, sub_off, sub_len, len(lens), offsets, perm,
                     codes, threads)
    return MIHTables(n0, sub_off, sub_len, offsets, perm, codes)


def stale(tables: MIHTables | None, n: int) -> bool:
    """Whether tables must be (re)built for n codes: codes added since they were built are
    scanned flat until they exceed a quarter of the tables."""
    return tables is None or n - tables.n0 > tables.n0 // 4


def query_budget(tables: MIHTables, words: int, nq: int, fraction: float, minimum: int) -> int:
    """MIH work per query before it falls back: ``fraction`` of the stored code words (at least
    ``minimum``); a batch of a few queries gets up to 4x: its flat scan is bound by memory, not
    by the popcounts, and costs more per query."""
    scale = min(4, max(1, 16 // max(nq, 1)))
    return max(minimum, int(fraction * scale * tables.n0 * words))


def mostly_fell_back(status: NDArray[np.uint8]) -> bool:
    """Whether most queries of a search ran out of budget (``auto`` then scans flat a while)."""
    return bool(status.size and 2 * int(status.sum()) > status.size)
