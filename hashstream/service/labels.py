"""Label matrices: 0/1 rows ↔ CSR class-id lists (the code store's form), and padding."""

from __future__ import annotations

from typing import Any

import numpy as np


def labels_to_csr(labels: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any],
                                                          np.ndarray[Any, Any]]:
    """0/1 rows → (indptr, class ids), the code store's label form."""
    rows, cols = np.nonzero(labels)
    indptr = np.zeros(labels.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=labels.shape[0]), out=indptr[1:])
    return indptr, cols.astype(np.int32)


def csr_to_dense(indptr: np.ndarray[Any, Any], indices: np.ndarray[Any, Any],
                 width: int) -> np.ndarray[Any, Any]:
    out = np.zeros((len(indptr) - 1, width), dtype=np.uint8)
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    out[rows, indices] = 1
    return out


def widen(labels: np.ndarray[Any, Any], width: int) -> np.ndarray[Any, Any]:
    """0/1 rows padded with zero columns to ``width`` classes (classes not yet seen)."""
    return np.pad(labels, ((0, 0), (0, max(0, width - labels.shape[1]))))


def pad_labels(labels: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """Label blocks of different class counts stacked at the widest one."""
    width = max(lab.shape[1] for lab in labels)
    return np.concatenate([widen(lab, width) for lab in labels])
