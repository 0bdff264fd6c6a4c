"""Synthetic data makers: labelled Gaussian streams (solver), class clusters, npz bodies and JSON
chunks (service). Every test makes its own data from a seed."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


@dataclass
class Stream:
    """A synthetic labelled stream: chunks (features, labels) plus held-out queries.

    ``chunks[i][1]`` has as many label columns as classes seen up to chunk i when the stream
    was made with ``grow_labels=True`` (class-incremental growth of c), else all columns.
    """

    chunks: list[tuple[Array, Array]]
    query_features: Array
    query_labels: Array
    n_classes: int
    all_features: Array = field(default_factory=lambda: np.zeros((0, 0)))
    all_labels: Array = field(default_factory=lambda: np.zeros((0, 0)))


def gaussian_stream(seed: int, *, n_classes: int = 6, dim: int = 32, n_chunks: int = 4,
                    chunk: int = 120, n_queries: int = 100, multilabel: bool = False,
                    class_incremental: bool = True, grow_labels: bool = True,
                    noise: float = 1.0) -> Stream:
    """Gaussian clusters, one mean per class; a multi-label row (2–3 labels) is the mean of its
    classes' means plus noise. Class-incremental order sorts the stream by first label."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_classes, dim)) * 1.5
    n_total = n_chunks * chunk + n_queries
    labels = np.zeros((n_total, n_classes), dtype=np.float64)
    first = rng.integers(0, n_classes, n_total)
    labels[np.arange(n_total), first] = 1
    if multilabel:
        for i in range(n_total):
            extra = rng.integers(1, 3)  # one or two more labels: 2–3 in all
            others = rng.choice(np.delete(np.arange(n_classes), first[i]), size=extra,
                                replace=False)
            labels[i, others] = 1
    features = (labels @ means) / labels.sum(axis=1, keepdims=True)
    features = features + noise * rng.standard_normal((n_total, dim))
    q_idx = np.arange(n_queries)
    s_idx = np.arange(n_queries, n_total)
    if class_incremental:
        s_idx = s_idx[np.argsort(first[s_idx], kind="stable")]
    chunks = []
    seen = 0
    for i in range(n_chunks):
        idx = s_idx[i * chunk:(i + 1) * chunk]
        lab = labels[idx]
        if grow_labels:
            seen = max(seen, int(np.flatnonzero(lab.any(axis=0)).max()) + 1)
            lab = lab[:, :seen]
        chunks.append((features[idx].copy(), lab.copy()))
    return Stream(chunks=chunks, query_features=features[q_idx], query_labels=labels[q_idx],
                  n_classes=n_classes, all_features=features[s_idx], all_labels=labels[s_idx])


class Clusters:
    """Gaussian class clusters in ``dim`` dimensions, well apart (one class per item)."""

    def __init__(self, seed: int, dim: int = 32, n_classes: int = 5, spread: float = 4.0,
                 noise: float = 1.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.dim, self.n_classes, self.noise = dim, n_classes, noise
        self.means = self.rng.standard_normal((n_classes, dim)) * spread

    def sample(self, n: int, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows: float32 features and their class ids."""
        if classes is None:
            cls = self.rng.integers(0, self.n_classes, n)
        else:
            cls = np.resize(np.asarray(classes), n)
        x = self.means[cls] + self.noise * self.rng.standard_normal((n, self.dim))
        return x.astype(np.float32), cls.astype(np.int64)

    def vector(self, cls: int) -> np.ndarray:
        return self.sample(1, [cls])[0][0]


def one_hot(cls: np.ndarray, width: int) -> np.ndarray:
    return np.eye(width, dtype=np.uint8)[cls]


def npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def json_chunk(features: np.ndarray, cls: np.ndarray, ids: Any = None,
               role: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"features": features.tolist(),
                            "labels": [[int(c)] for c in cls]}
    if ids is not None:
        body["ids"] = [int(i) for i in ids]
    if role is not None:
        body["role"] = role
    return body


def train_chunk(seed: int, n: int = 120, dim: int = 8, ids: Any = None) -> Any:
    """A parsed training chunk (what ``IndexService.ingest`` takes): ``n`` items of three
    separated classes in ``dim`` dimensions, one int label each."""
    from hashstream.service.chunks import ClientLabels, ParsedChunk

    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 3, n)
    x = (np.eye(3, dim)[cls] * 4 + rng.standard_normal((n, dim))).astype(np.float32)
    labels = ClientLabels(np.arange(n + 1, dtype=np.int64), cls.astype(np.int64), "int")
    return ParsedChunk(x, labels, ids, "train")
