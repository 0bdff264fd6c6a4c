"""The hits of a search as flat NumPy arrays, query by query, nearest first.

A search builds no Python object per hit: the ranked ids, distances, the model version that
made each hit's code and each hit's class lists stay arrays from the Hamming scan to the
answer. The HTTP layer encodes them (JSON or ``.npz``); :meth:`SearchHits.rows` gives the
hits as dicts (``id``, ``distance``, ``labels``, ``model_version``) where Python wants them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def concat_ranges(starts: Array, lengths: Array) -> Array:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths)
    out: Array = np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)
    return out


@dataclass(frozen=True)
class SearchHits:
    """Hits of ``n_queries`` queries at index ``version``: query i's are entries
    ``offsets[i]:offsets[i + 1]`` of ``ids``, ``distances`` and ``model_versions``; hit j's
    labels are ``label_classes[label_offsets[j]:label_offsets[j + 1]]``, internal class
    numbers that ``class_labels`` maps to the client's labels. ``partitions``: the partitions
    searched of a partitioned index (None: unpartitioned)."""

    version: int
    offsets: Array
    ids: Array
    distances: Array
    model_versions: Array
    label_offsets: Array
    label_classes: Array
    class_labels: Sequence[int | str]
    partitions: list[int] | None = None

    @classmethod
    def empty(cls, version: int, n_queries: int, class_labels: Sequence[int | str],
              partitions: list[int] | None = None) -> SearchHits:
        """No hits for any of ``n_queries`` queries."""
        none = np.zeros(0, dtype=np.int64)
        return cls(version, np.zeros(n_queries + 1, dtype=np.int64), none,
                   np.zeros(0, dtype=np.int32), none, np.zeros(1, dtype=np.int64), none,
                   class_labels, partitions)

    @property
    def n_queries(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def counts(self) -> Array:
        """Hits per query."""
        out: Array = np.diff(self.offsets)
        return out

    def _client_labels(self) -> list[int | str]:
        """Every hit's labels as the client sent them, concatenated."""
        names = self.class_labels
        return [names[c] for c in self.label_classes.tolist()]

    def labels(self) -> list[list[int | str]]:
        """Each hit's labels as the client sent them (one list per hit, in hit order)."""
        values = self._client_labels()
        bounds = self.label_offsets.tolist()
        return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def label_values(self) -> Array:
        """The labels of every hit, concatenated (``label_offsets`` bounds each hit's):
        int64 for an index of integer labels, text otherwise."""
        values = self._client_labels()
        if values and isinstance(values[0], str):
            return np.asarray(values, dtype=np.str_)
        return np.asarray(values, dtype=np.int64)

    def rows(self) -> list[list[dict[str, Any]]]:
        """Per query, its hits as dicts (the JSON answer's ``results``)."""
        ids, dist = self.ids.tolist(), self.distances.tolist()
        made, labels = self.model_versions.tolist(), self.labels()
        bounds = self.offsets.tolist()
        return [[{"id": ids[j], "distance": dist[j], "labels": labels[j],
                  "model_version": made[j]} for j in range(a, b)]
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def padded(self, width: int) -> tuple[Array, Array, Array]:
        """(ids int64, distances int32, model versions int64), each ``n_queries × width``
        with −1 past a query's hits."""
        q = self.n_queries
        counts = self.counts
        rows = np.repeat(np.arange(q, dtype=np.int64), counts)
        cols = np.arange(self.ids.shape[0], dtype=np.int64) - np.repeat(self.offsets[:-1],
                                                                        counts)
        out = []
        for values, dtype in ((self.ids, np.int64), (self.distances, np.int32),
                              (self.model_versions, np.int64)):
            grid = np.full((q, width), -1, dtype=dtype)
            grid[rows, cols] = values
            out.append(grid)
        return out[0], out[1], out[2]
