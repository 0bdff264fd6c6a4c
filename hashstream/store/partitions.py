"""How a partitioned index splits a round's segment over its partitions, and joins it back.

An item's partition is ``id mod P`` (service-assigned ids are consecutive: even shares; an
upsert lands in the same partition as the item it replaces). A segment is a dict of arrays
with one row per item (codes per target, ids, model versions), labels as CSR
(``label_indptr``/``label_indices``), and 0-d fields (``version``); a part keeps the rows of
its partition in their order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray[Any, Any]]
CSR = ("label_indptr", "label_indices")


def partition_of(ids: np.ndarray[Any, Any], partitions: int) -> np.ndarray[Any, Any]:
    """The partition of each id."""
    return np.asarray(ids, dtype=np.int64) % partitions


def _per_row(array: np.ndarray[Any, Any], n: int) -> bool:
    """Whether a segment field holds one row per item (else it is segment-wide, e.g. 0-d)."""
    return bool(array.ndim) and array.shape[0] == n


def _take(segment: Arrays, rows: np.ndarray[Any, Any], n: int) -> Arrays:
    out: Arrays = {}
    for field, array in segment.items():
        if field in CSR:
            continue
        out[field] = array[rows] if _per_row(array, n) else array
    if "label_indptr" in segment:
        indptr, classes = segment["label_indptr"], segment["label_indices"]
        starts, stops = indptr[rows], indptr[rows + 1]
        lengths = stops - starts
        out["label_indptr"] = np.concatenate([[0], np.cumsum(lengths)]).astype(indptr.dtype)
        if lengths.sum():
            picks = np.repeat(starts - out["label_indptr"][:-1], lengths) \
                + np.arange(int(lengths.sum()))
            out["label_indices"] = classes[picks]
        else:
            out["label_indices"] = classes[:0]
    return out


def split_segment(segment: Arrays, partitions: int) -> dict[int, Arrays]:
    """Partition → the part of ``segment`` with that partition's items (every partition has
    a part, possibly empty)."""
    ids = segment["ids"]
    of = partition_of(ids, partitions)
    return {p: _take(segment, np.flatnonzero(of == p), len(ids)) for p in range(partitions)}


def join_parts(parts: list[Arrays]) -> Arrays:
    """The parts of one segment as one segment (partition after partition)."""
    if not parts:
        return {}
    out: Arrays = {}
    n = [len(p["ids"]) for p in parts]
    for field, first in parts[0].items():
        if field in CSR:
            continue
        if _per_row(first, n[0]):
            out[field] = np.concatenate([p[field] for p in parts])
        else:
            out[field] = first
    if "label_indptr" in parts[0]:
        offsets = np.cumsum([0] + [int(p["label_indptr"][-1]) for p in parts])
        out["label_indptr"] = np.concatenate(
            [parts[0]["label_indptr"][:1]]
            + [p["label_indptr"][1:] + off for p, off in zip(parts, offsets, strict=False)])
        out["label_indices"] = np.concatenate([p["label_indices"] for p in parts])
    return out
