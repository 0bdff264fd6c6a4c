"""The class lists of a replica's items by position, appended segment by segment.

Positions are the replica's HammingIndex positions (the same order of appends, compacted with
the same kept positions), so a hit's labels are one array read away, with no Python object per
item. While every item has exactly one class the lists are one int32 per item; the first item
with another count switches to CSR (int64 offsets + int32 classes). Arrays grow by half their
size; a :class:`ItemLabelsView` keeps reading the arrays of its moment (appends write past its
size, growth and compaction make new arrays)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashstream.service.search_hits import concat_ranges
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


ADMITTED_KEPT = 8  # label filters whose admitted positions a view keeps (n bytes each)
_ADMITTED_LOCK = threading.Lock()


@dataclass(frozen=True)
class ItemLabelsView:
    """The class lists of positions [0, n) at one moment (``indptr`` None: one class each),
    and the positions its latest label filters admitted (the same filter again costs
    nothing; at most :data:`ADMITTED_KEPT` of them, one byte per position each)."""

    n: int
    classes: Array
    indptr: Array | None
    admitted: dict[tuple[Any, ...], Array] = field(default_factory=dict, compare=False,
                                                   repr=False)

    def row(self, position: int) -> Array:
        if self.indptr is None:
            return self.classes[position:position + 1]
        return self.classes[self.indptr[position]:self.indptr[position + 1]]

    def rows_at(self, positions: Array) -> tuple[Array, Array]:
        """The class lists at ``positions`` at once: (classes per position, their classes
        concatenated in order)."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.indptr is None:
            out: Array = self.classes[positions].astype(np.int64)
            return np.ones(positions.shape[0], dtype=np.int64), out
        starts = self.indptr[positions]
        lengths = self.indptr[positions + 1] - starts
        return lengths, self.classes[concat_ranges(starts, lengths)].astype(np.int64)

    def admits(self, any_of: Array | None, all_of: Array | None, n_classes: int) -> Array:
        """Whether each position's classes include one of ``any_of`` (when given) and every
        one of ``all_of`` (when given; distinct class numbers below ``n_classes``, the classes
        known): one gather over the lists and a running count."""
        key = (None if any_of is None else tuple(np.asarray(any_of).tolist()),
               None if all_of is None else tuple(np.asarray(all_of).tolist()), n_classes)
        cached = self.admitted.get(key)
        if cached is None:
            cached = self._admits(any_of, all_of, n_classes)
            cached.flags.writeable = False
            with _ADMITTED_LOCK:  # searches share the view: one writer of the cache at a time
                while len(self.admitted) >= ADMITTED_KEPT:
                    del self.admitted[next(iter(self.admitted))]
                self.admitted[key] = cached
        return cached

    def _admits(self, any_of: Array | None, all_of: Array | None, n_classes: int) -> Array:
        n = self.n
        nnz = n if self.indptr is None else int(self.indptr[n])
        classes = self.classes[:nnz]
        ok = np.ones(n, dtype=bool)
        for wanted, need in ((any_of, 1), (all_of, 0 if all_of is None else len(all_of))):
            if wanted is None:
                continue
            table = np.zeros(n_classes + 1, dtype=bool)  # the last entry: beyond the known
            table[np.asarray(wanted)[(wanted >= 0) & (wanted < n_classes)]] = True
            hit = np.take(table, classes, mode="clip")
            if self.indptr is None:
                ok &= hit if need == 1 else need == 0
                continue
            indptr = self.indptr[:n + 1]
            at = np.flatnonzero(hit)
            if at.size * 16 < nnz:  # few matching entries: find their rows
                matches = np.bincount(np.searchsorted(indptr[1:], at, side="right"),
                                      minlength=n)
            else:  # many: differences of the running count at the row bounds
                running: np.ndarray[Any, Any] = np.zeros(
                    nnz + 1, dtype=np.int32 if nnz < 2**31 else np.int64)
                np.cumsum(hit, out=running[1:])
                matches = running[indptr[1:]] - running[indptr[:-1]]
            ok &= matches >= need
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
