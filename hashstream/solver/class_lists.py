"""Labels as class lists: the one form labels take from ingest to the solver and the code store.

Item ``i`` has the classes ``classes[indptr[i]:indptr[i + 1]]``: dense internal class numbers
``0 … n_classes − 1`` (the service maps each client label to one), unique within an item. Memory
grows with items × labels per item, never with the largest class number; a dense n × c matrix
is made only where a caller asks for one (:meth:`ClassLists.to_dense`), for small c.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

IntArray = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class ClassLists:
    """CSR class lists of ``n`` items over ``n_classes`` classes (``indptr`` int64 of n + 1,
    ``classes`` int32 of nnz)."""

    indptr: np.ndarray[Any, Any]
    classes: np.ndarray[Any, Any]
    n_classes: int

    def __post_init__(self) -> None:
        indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        classes = np.ascontiguousarray(self.classes, dtype=np.int32)
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "classes", classes)
        if indptr.ndim != 1 or indptr.shape[0] < 1 or indptr[0] != 0:
            raise ValueError("indptr must be a 1-D array starting at 0")
        if (np.diff(indptr) < 0).any() or int(indptr[-1]) != classes.shape[0]:
            raise ValueError("indptr must be non-decreasing and end at len(classes)")
        if classes.size and (int(classes.min()) < 0 or int(classes.max()) >= self.n_classes):
            raise ValueError(f"class numbers must lie in 0..{self.n_classes - 1}")

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], n_classes: int | None = None) -> ClassLists:
        """From per-item lists of class numbers (each list sorted here)."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        classes = np.fromiter((c for r in rows for c in sorted(r)), dtype=np.int64,
                              count=int(indptr[-1]))
        return cls.of(indptr, classes).widen(n_classes or 0)

    @classmethod
    def of(cls, indptr: np.ndarray[Any, Any], classes: np.ndarray[Any, Any]) -> ClassLists:
        """From CSR arrays stored without their width: ``n_classes`` = largest class + 1."""
        classes = np.asarray(classes)
        return cls(indptr, classes, int(classes.max()) + 1 if classes.size else 0)

    @classmethod
    def from_dense(cls, labels: np.ndarray[Any, Any]) -> ClassLists:
        """From an n × c 0/1 matrix (the format of offline data sets)."""
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise ValueError(f"labels must be an n × c 0/1 matrix, got {labels.ndim}-D")
        rows, cols = np.nonzero(labels)
        indptr = np.zeros(labels.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=labels.shape[0]), out=indptr[1:])
        return cls(indptr, cols, int(labels.shape[1]))

    @classmethod
    def empty(cls, n_classes: int = 0) -> ClassLists:
        return cls(np.zeros(1, np.int64), np.zeros(0, np.int32), n_classes)

    @classmethod
    def concat(cls, blocks: Sequence[ClassLists]) -> ClassLists:
        """Blocks stacked row-wise; ``n_classes`` is the widest block's."""
        if not blocks:
            return cls.empty()
        offsets = np.cumsum([0] + [int(b.indptr[-1]) for b in blocks[:-1]])
        indptr = np.concatenate([blocks[0].indptr[:1]]
                                + [b.indptr[1:] + off for b, off in zip(blocks, offsets,
                                                                          strict=True)])
        return cls(indptr, np.concatenate([b.classes for b in blocks]),
                   max(b.n_classes for b in blocks))

    # --- views ----------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        return int(self.classes.shape[0])

    def row(self, i: int) -> np.ndarray[Any, Any]:
        return self.classes[self.indptr[i]:self.indptr[i + 1]]

    def counts(self) -> IntArray:
        """Labels per item."""
        return np.diff(self.indptr)

    def row_of_entry(self) -> IntArray:
        """The item of each entry of ``classes`` (nnz)."""
        return np.repeat(np.arange(self.n, dtype=np.int64), self.counts())

    def widen(self, n_classes: int) -> ClassLists:
        """The same lists over at least ``n_classes`` classes (classes not yet seen)."""
        if n_classes <= self.n_classes:
            return self
        return ClassLists(self.indptr, self.classes, n_classes)

    def take(self, rows: np.ndarray[Any, Any] | Sequence[int]) -> ClassLists:
        """The lists of ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # Entry positions: each row's start repeated, plus 0..length-1 within the row.
        pos = np.repeat(starts - indptr[:-1], lengths) + np.arange(int(indptr[-1]))
        return ClassLists(indptr, self.classes[pos], self.n_classes)

    def to_sparse(self, dtype: Any = np.float64, normalize: bool = False) -> sp.csr_array:
        """n × n_classes CSR matrix of ones, or of 1/√k (``normalize``: L̂, unit rows)."""
        counts = self.counts()
        if normalize:
            per_row = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
            data = np.repeat(per_row, counts).astype(dtype)
        else:
            data = np.ones(self.nnz, dtype=dtype)
        return sp.csr_array((data, self.classes, self.indptr), shape=(self.n, self.n_classes))

    def by_class(self, dtype: Any = np.float32) -> sp.csr_array:
        """n_classes × n CSR matrix of ones: the items of each class (``to_sparse`` transposed)."""
        return self.to_sparse(dtype).T.tocsr()

    def has_any(self, mask: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """n booleans: True where the item has at least one class ``k`` with ``mask[k]``
        (``mask``: booleans over at least ``n_classes`` classes)."""
        hit = np.asarray(mask, dtype=bool)[self.classes]
        return np.bincount(self.row_of_entry()[hit], minlength=self.n) > 0

    def first_class(self, missing: int = -1) -> IntArray:
        """The smallest class of each item (``missing`` for an item with no class)."""
        out = np.full(self.n, missing, dtype=np.int64)
        counts = self.counts()
        nonempty = counts > 0
        if self.nnz:
            out[nonempty] = np.minimum.reduceat(self.classes, self.indptr[:-1][nonempty])
        return out

    def shares_any(self, other: ClassLists,
                   other_by_class: sp.csr_array | None = None) -> np.ndarray[Any, Any]:
        """self.n × other.n booleans: True where the two items share at least one class.

        Only the classes ``self`` uses are touched: a dense (classes of self) × self.n block
        times the sparse rows of ``other.by_class()`` (pass it as ``other_by_class`` when
        calling for many blocks of ``self``). Memory O(self.n × other.n + nnz), never n × c.
        """
        by_class = other.by_class() if other_by_class is None else other_by_class
        if self.nnz == 0 or other.n == 0:
            return np.zeros((self.n, other.n), dtype=bool)
        cols, local = np.unique(self.classes, return_inverse=True)
        keep = cols < by_class.shape[0]  # classes ``other`` has never had share nothing
        cols = cols[keep]
        remap = np.cumsum(keep) - 1
        entry = keep[local]
        dense = np.zeros((len(cols), self.n), dtype=np.float32)
        dense[remap[local[entry]], self.row_of_entry()[entry]] = 1
        counts = by_class[cols].T @ dense  # other.n × self.n overlap counts (exact in float32)
        return np.ascontiguousarray((np.asarray(counts) > 0).T)

    def to_dense(self, width: int | None = None) -> np.ndarray[Any, Any]:
        """n × width 0/1 uint8 matrix (width defaults to ``n_classes``); for small c only."""
        width = self.n_classes if width is None else width
        out = np.zeros((self.n, width), dtype=np.uint8)
        out[self.row_of_entry(), self.classes] = 1
        return out

    def to_arrays(self, prefix: str = "label_") -> dict[str, np.ndarray[Any, Any]]:
        """``{prefix}indptr``, ``{prefix}classes`` and ``{prefix}n_classes`` for persistence."""
        return {f"{prefix}indptr": self.indptr, f"{prefix}classes": self.classes,
                f"{prefix}n_classes": np.asarray(self.n_classes, dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray[Any, Any]],
                    prefix: str = "label_") -> ClassLists:
        return cls(arrays[f"{prefix}indptr"], arrays[f"{prefix}classes"],
                   int(arrays[f"{prefix}n_classes"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassLists):
            return NotImplemented
        return (self.n_classes == other.n_classes and np.array_equal(self.indptr, other.indptr)
                and np.array_equal(self.classes, other.classes))

    __hash__ = None  # type: ignore[assignment]
