"""The binary batch search: queries sent as an ``.npz`` body, hits received as an ``.npz``
(``Accept: application/x-npz``), for batches where JSON's float-to-text round trip and a dict
per hit cost more than the search itself."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from hashstream.client.models import Hit, SearchResult

NPZ_SEARCH = "application/x-npz"
NPZ_MIN_QUERIES = 32  # `encoding="auto"` sends a NumPy batch of at least this many as .npz
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class SearchArrays:
    """A search's hits as arrays: ``ids``, ``distances`` and ``model_versions`` are q × w
    (−1 past query i's ``counts[i]`` hits); hit j of the hits in query order has the labels
    ``labels[label_offsets[j]:label_offsets[j + 1]]``. ``model_version``: the index version
    searched; ``partitions``: those searched of a partitioned index (else None)."""

    index: str
    model_version: int
    ids: Array
    distances: Array
    model_versions: Array
    counts: Array
    labels: Array
    label_offsets: Array
    partitions: list[int] | None = None

    @classmethod
    def from_npz(cls, content: bytes) -> SearchArrays:
        with np.load(io.BytesIO(content), allow_pickle=False) as z:
            parts = z["partitions"].tolist() if "partitions" in z.files else None
            return cls(str(z["index"]), int(z["model_version"]), z["ids"], z["distances"],
                       z["model_versions"], z["counts"], z["labels"], z["label_offsets"],
                       parts)

    def result(self) -> SearchResult:
        """The same answer as the JSON form: per query, its hits as dicts."""
        labels = self.labels.tolist()
        bounds = self.label_offsets.tolist()
        ids, dist, made = self.ids.tolist(), self.distances.tolist(), self.model_versions.tolist()
        results: list[list[Hit]] = []
        j = 0
        for i, count in enumerate(self.counts.tolist()):
            hits: list[Hit] = []
            for c in range(count):
                hits.append({"id": ids[i][c], "distance": dist[i][c],
                             "labels": labels[bounds[j]:bounds[j + 1]],
                             "model_version": made[i][c]})
                j += 1
            results.append(hits)
        return {"index": self.index, "model_version": self.model_version, "results": results,
                "partitions": self.partitions}
