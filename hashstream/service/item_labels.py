"""The class lists of a replica's items by position, appended segment by segment.

Positions are the replica's HammingIndex positions (the same order of appends, compacted with
the same kept positions), so a hit's labels are one array read away, with no Python object per
item. While every item has exactly one class the lists are one int32 per item; the first item
with another count switches to CSR (int64 offsets + int32 classes). Arrays grow by half their
size; a :class:`ItemLabelsView` keeps reading the arrays of its moment (appends write past its
size, growth and compaction make new arrays)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hashstream.solver.class_lists import ClassLists

Array = np.ndarray[Any, Any]


def _grown(a: Array, used: int, need: int) -> Array:
    """``a`` itself when it holds ``need`` entries, else a copy of its first ``used`` entries in
    an array of about 1.5× ``need``."""
    if need <= a.shape[0]:
        return a
    out = np.zeros(max(need, a.shape[0] + a.shape[0] // 2, 16), dtype=a.dtype)
    out[:used] = a[:used]
    return out


@dataclass(frozen=True)
class ItemLabelsView:
    """The class lists of positions [0, n) at one moment (``indptr`` None: one class each)."""

    n: int
    classes: Array
    indptr: Array | None

    def row(self, position: int) -> Array:
        if self.indptr is None:
            return self.classes[position:position + 1]
        return self.classes[self.indptr[position]:self.indptr[position + 1]]

    def admits(self, any_of: Array | None, all_of: Array | None) -> Array:
        """Whether each position's classes include one of ``any_of`` (when given) and every
        one of ``all_of`` (when given; distinct class numbers): one pass over the lists."""
        if self.indptr is None:
            classes, rows = self.classes[:self.n], None
        else:
            classes = self.classes[:int(self.indptr[self.n])]
            rows = np.repeat(np.arange(self.n), np.diff(self.indptr[:self.n + 1]))
        ok = np.ones(self.n, dtype=bool)
        for wanted, need in ((any_of, 1), (all_of, 0 if all_of is None else len(all_of))):
            if wanted is None:
                continue
            hit = np.isin(classes, wanted)
            counts = hit.astype(np.int64) if rows is None else np.bincount(
                rows[hit], minlength=self.n)
            ok &= counts >= need
        return ok


class ItemLabels:
    """Growable class lists by position; one writer (the replica's loader)."""

    def __init__(self) -> None:
        self._n = 0
        self._nnz = 0
        self._classes = np.zeros(0, dtype=np.int32)
        self._indptr: Array | None = None

    def __len__(self) -> int:
        return self._n

    def nbytes(self) -> int:
        """Bytes held (capacity included)."""
        return int(self._classes.nbytes + (0 if self._indptr is None else self._indptr.nbytes))

    def view(self) -> ItemLabelsView:
        return ItemLabelsView(self._n, self._classes, self._indptr)

    def append(self, labels: ClassLists) -> None:
        """Append the lists of ``labels.n`` items at positions n, n + 1, …"""
        n, m = self._n, labels.n
        if self._indptr is None and not (labels.counts() == 1).all():
            indptr = np.zeros(max(n + m + 1, 16), dtype=np.int64)
            indptr[:n + 1] = np.arange(n + 1)
            self._indptr = indptr
        self._classes = _grown(self._classes, self._nnz, self._nnz + labels.nnz)
        self._classes[self._nnz:self._nnz + labels.nnz] = labels.classes
        if self._indptr is not None:
            self._indptr = _grown(self._indptr, n + 1, n + m + 1)
            self._indptr[n + 1:n + m + 1] = labels.indptr[1:] + self._nnz
        self._nnz += labels.nnz
        self._n = n + m

    def compact(self, kept: Array) -> None:
        """Keep the lists of positions ``kept`` (in that order), as the index's compaction did;
        new arrays, so views keep theirs."""
        view = self.view()
        if view.indptr is None:
            self._classes = view.classes[kept].copy()
            self._nnz = self._n = int(kept.size)
            return
        lists = ClassLists(view.indptr[:view.n + 1], view.classes[:self._nnz],
                           int(view.classes[:self._nnz].max(initial=-1)) + 1).take(kept)
        self._classes = lists.classes.copy()
        self._indptr = lists.indptr.copy()
        self._nnz, self._n = lists.nnz, lists.n
