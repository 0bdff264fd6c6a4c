"""An ingest chunk as a request body: ``.npz`` when the features are a NumPy array (bulk: no
float-to-text round trip), JSON when they are lists.

Labels are each item's class list (ints or strings, one type per index) or, for one class per
item, a flat sequence; ``label_matrix`` takes n × c 0/1 rows instead (column j = class j).
Nothing is checked here that the service checks itself: its 422 names the field.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Encoding = Literal["auto", "npz", "json"]
NPZ = "application/octet-stream"


@dataclass(frozen=True)
class Body:
    """What to send: JSON (``json``) or bytes (``content``) with its Content-Type."""

    json: dict[str, Any] | None = None
    content: bytes | None = None
    content_type: str = "application/json"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | np.integer | np.str_)


def class_lists(labels: Any) -> list[list[Any]]:
    """Each item's class list as plain Python values: a flat sequence (one class per item) or a
    sequence of sequences; NumPy arrays of either shape too."""
    if isinstance(labels, np.ndarray):
        if labels.ndim == 1:
            return [[v] for v in labels.tolist()]
        return [list(row) for row in labels.tolist()]
    out: list[list[Any]] = []
    for row in labels:
        if _is_scalar(row):
            out.append([row.item() if isinstance(row, np.generic) else row])
        else:
            values = row.tolist() if isinstance(row, np.ndarray) else list(row)
            out.append([v.item() if isinstance(v, np.generic) else v for v in values])
    return out


def _label_arrays(labels: Any) -> dict[str, np.ndarray[Any, Any]]:
    """Class lists in CSR form, the .npz members ``label_indptr`` and ``label_classes``."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iuU":
        # one class per item: no Python loop
        return {"label_indptr": np.arange(len(labels) + 1, dtype=np.int64),
                "label_classes": labels.astype(np.int64) if labels.dtype.kind != "U"
                else labels}
    rows = class_lists(labels)
    flat = [v for row in rows for v in row]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in rows], out=indptr[1:])
    kinds = {type(v) for v in flat}
    if kinds <= {int}:
        classes = np.asarray(flat, dtype=np.int64)
    elif kinds <= {str}:
        classes = np.asarray(flat, dtype=np.str_)
    else:
        raise ValueError("labels must be all integers or all strings (one type per index); "
                         f"got {sorted(k.__name__ for k in kinds)}")
    return {"label_indptr": indptr, "label_classes": classes}


def _padded_tokens(tokens: Any) -> np.ndarray[Any, Any]:
    """Word-id rows of any lengths → n × T int64, padded with −1 (the service's pad id)."""
    if isinstance(tokens, np.ndarray):
        return tokens.astype(np.int64, copy=False)
    rows = [list(row) for row in tokens]
    out = np.full((len(rows), max((len(r) for r in rows), default=1) or 1), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def _as_lists(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def chunk_body(features: Any, labels: Any = None, *, label_matrix: Any = None,
               ids: Sequence[int] | np.ndarray[Any, Any] | None = None,
               role: Literal["train", "query"] | None = None, text: Any = None,
               tokens: Any = None, encoding: Encoding = "auto") -> Body:
    """The body of one chunk (``role`` travels in the body for JSON, as ``?role=`` for .npz:
    the caller adds it). ``encoding="auto"`` picks .npz for NumPy features."""
    if (labels is None) == (label_matrix is None):
        raise ValueError("give labels (class lists per item) or label_matrix (0/1 rows), "
                         "exactly one")
    use_npz = encoding == "npz" or (encoding == "auto" and isinstance(features, np.ndarray))
    if not use_npz:
        body: dict[str, Any] = {"features": _as_lists(features)}
        if labels is not None:
            body["labels"] = class_lists(labels)
        else:
            body["label_matrix"] = _as_lists(label_matrix)
        if ids is not None:
            body["ids"] = [int(i) for i in ids]
        if role is not None:
            body["role"] = role
        if text is not None:
            body["text"] = _as_lists(text)
        if tokens is not None:
            body["tokens"] = [list(map(int, row)) for row in _as_lists(tokens)]
        return Body(json=body)
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "features": np.asarray(features, dtype=np.float32)}
    if labels is not None:
        arrays.update(_label_arrays(labels))
    else:
        arrays["labels"] = np.asarray(label_matrix, dtype=np.uint8)
    if ids is not None:
        arrays["ids"] = np.asarray(ids, dtype=np.int64)
    if text is not None:
        arrays["text"] = np.asarray(text, dtype=np.float32)
    if tokens is not None:
        arrays["tokens"] = _padded_tokens(tokens)
    return Body(content=npz_bytes(arrays), content_type=NPZ)


def npz_bytes(arrays: dict[str, Any]) -> bytes:
    """``arrays`` as the bytes of an uncompressed ``.npz``."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
