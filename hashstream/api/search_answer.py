"""A search's answer as bytes: JSON (orjson, straight from the hit arrays) or ``.npz``.

The JSON is what ``SearchResponse`` documents (index, model_version, results of hits with id,
distance, labels, model_version, partitions), written without building or re-validating a
pydantic object per hit. The ``.npz`` form (``Accept: application/x-npz``) is for large
batches: ``ids`` (int64), ``distances`` (int32) and ``model_versions`` (int64), each q × w with
−1 past a query's hits (w: the most hits any query has), ``counts`` (hits per query),
``labels`` (every hit's labels, concatenated: int64 or text) with ``label_offsets`` (hit j's
labels are ``labels[label_offsets[j]:label_offsets[j + 1]]``, hits in query order),
``model_version`` and ``index`` (0-d), and ``partitions`` for a partitioned index.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson
from fastapi import Request

from hashstream.service.search_hits import SearchHits

NPZ = "application/x-npz"
JSON = "application/json"


def wants_npz(request: Request) -> bool:
    """Whether the request's Accept header names the .npz answer."""
    accept = request.headers.get("accept", "")
    return NPZ in (part.split(";")[0].strip().lower() for part in accept.split(","))


def json_answer(index: str, hits: SearchHits) -> bytes:
    """The ``SearchResponse`` JSON of ``hits``."""
    return orjson.dumps({"index": index, "model_version": hits.version,
                         "results": hits.rows(), "partitions": hits.partitions})


def npz_answer(index: str, hits: SearchHits) -> bytes:
    """The ``.npz`` answer of ``hits`` (module docstring)."""
    counts = hits.counts
    width = int(counts.max()) if counts.size else 0
    ids, distances, made_by = hits.padded(width)
    arrays: dict[str, Any] = {
        "ids": ids, "distances": distances, "model_versions": made_by,
        "counts": counts.astype(np.int64), "labels": hits.label_values(),
        "label_offsets": hits.label_offsets, "model_version": np.int64(hits.version),
        "index": np.str_(index)}
    if hits.partitions is not None:
        arrays["partitions"] = np.asarray(hits.partitions, dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def answer(index: str, hits: SearchHits, npz: bool) -> tuple[bytes, str]:
    """(body, media type) of the answer the client asked for."""
    return (npz_answer(index, hits), NPZ) if npz else (json_answer(index, hits), JSON)
