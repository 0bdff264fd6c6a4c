"""Ingest payloads: parse JSON or .npz bodies into a validated :class:`Chunk`, and the chunk's
encoding as a Redis Stream entry.

Every rejection names the field at fault (``features``, ``labels``, ``ids``, ``role``) so a
client can fix its request; nothing is truncated silently.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hashstream.memory.codec import CodecError, decode_array, encode_array
from hashstream.service.cross_modal import dense_text, pad_tokens
from hashstream.service.errors import InvalidInput, MalformedBody

Role = Literal["train", "query"]
MAX_CLASS_ID = 100_000


@dataclass(frozen=True)
class Chunk:
    """A validated chunk: features n × d float32, labels n × c 0/1 uint8, ids int64 or None."""

    features: np.ndarray[Any, Any]
    labels: np.ndarray[Any, Any]
    ids: np.ndarray[Any, Any] | None
    role: Role
    text: np.ndarray[Any, Any] | None = None  # cross-modal pairs: dense text or padded tokens

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    def to_fields(self) -> dict[str, bytes]:
        """The Redis Stream entry of this chunk (ids must be assigned by now)."""
        assert self.ids is not None
        fields = {"role": self.role.encode(), "features": encode_array(self.features),
                  "labels": encode_array(self.labels), "ids": encode_array(self.ids)}
        if self.text is not None:
            fields["text"] = encode_array(self.text)
        return fields

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Chunk:
        role = fields[b"role"].decode()
        text = decode_array(fields[b"text"]) if b"text" in fields else None
        return cls(decode_array(fields[b"features"]), decode_array(fields[b"labels"]),
                   decode_array(fields[b"ids"]), "query" if role == "query" else "train", text)


def labels_from_class_lists(rows: Any) -> np.ndarray[Any, Any]:
    """``[[class ids…], …]`` → n × (max id + 1) 0/1 matrix."""
    if not isinstance(rows, list):
        raise InvalidInput("labels must be a list of lists of class ids", "labels")
    flat: list[int] = []
    row_of: list[int] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InvalidInput(f"labels[{i}] must be a list of class ids", "labels")
        for cls in row:
            if isinstance(cls, bool) or not isinstance(cls, int):
                raise InvalidInput(f"labels[{i}] holds {cls!r}; class ids are integers",
                                   "labels")
            if cls < 0 or cls > MAX_CLASS_ID:
                raise InvalidInput(f"labels[{i}] holds class id {cls}; ids run 0..{MAX_CLASS_ID}",
                                   "labels")
            flat.append(cls)
            row_of.append(i)
    width = (max(flat) + 1) if flat else 1
    out = np.zeros((len(rows), width), dtype=np.uint8)
    out[row_of, flat] = 1
    return out


def _features(value: Any) -> np.ndarray[Any, Any]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("features must be a non-empty list of vectors (the chunk is empty)",
                           "features")
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"features must be a list of equal-length numeric vectors ({exc})",
                           "features") from exc
    if arr.ndim != 2:
        raise InvalidInput("features must be a list of equal-length numeric vectors", "features")
    return arr


def _ids(value: Any, n: int) -> np.ndarray[Any, Any] | None:
    if value is None:
        return None
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int)
                                          for v in value):
        raise InvalidInput("ids must be a list of integers", "ids")
    try:
        return np.asarray(value, dtype=np.int64)
    except OverflowError as exc:
        raise InvalidInput("ids must fit in a signed 64-bit integer", "ids") from exc


def parse_json_chunk(body: bytes, default_role: Role = "train") -> Chunk:
    """Parse ``{"features": [[…]], "labels": [[class ids…]], "ids"?: [...], "role"?: …}``."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBody(f"body is not valid JSON: {exc}", "body") from exc
    if not isinstance(payload, dict):
        raise MalformedBody("body must be a JSON object with features and labels", "body")
    if "image" in payload and "features" not in payload:  # cross-modal pairs
        payload["features"] = payload.pop("image")
    for key in ("features", "labels"):
        if key not in payload:
            raise InvalidInput(f"{key} is required", key)
    unknown = set(payload) - {"features", "labels", "ids", "role", "text", "tokens"}
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}", sorted(unknown)[0])
    role = payload.get("role", default_role)
    if role not in ("train", "query"):
        raise InvalidInput("role must be 'train' or 'query'", "role")
    features = _features(payload["features"])
    labels = labels_from_class_lists(payload["labels"])
    text = None
    if "tokens" in payload:
        text = pad_tokens(payload["tokens"])
    elif "text" in payload:
        text = dense_text(payload["text"])
    return Chunk(features, labels, _ids(payload.get("ids"), features.shape[0]), role, text)


def parse_npz_chunk(body: bytes, role: Role = "train") -> Chunk:
    """Parse an ``.npz`` archive holding ``features``, ``labels`` and optionally ``ids``."""
    if not body.startswith(b"PK"):
        raise MalformedBody("body must be an .npz archive (a zip file) with features and labels")
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise MalformedBody("body must be an .npz archive with features and labels")
            arrays = {k: z[k] for k in z.files}
    except MalformedBody:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/zlib raise many types for a bad archive
        raise MalformedBody(f"body is not a readable .npz archive: {exc!r}") from exc
    if "image" in arrays and "features" not in arrays:
        arrays["features"] = arrays.pop("image")
    for key in ("features", "labels"):
        if key not in arrays:
            raise InvalidInput(f"the .npz has no array named {key!r}", key)
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):  # a zip member that is not an .npy file
            raise MalformedBody(f"the .npz member {key!r} is not an array")
    features, labels = arrays["features"], arrays["labels"]
    if features.dtype.kind not in "fiu" or features.ndim != 2 or features.shape[0] == 0:
        raise InvalidInput("features must be a non-empty n × d numeric array", "features")
    if labels.ndim != 2 or labels.dtype.kind not in "biuf":
        raise InvalidInput("labels must be an n × c 0/1 array", "labels")
    if not np.isin(labels, (0, 1)).all():
        raise InvalidInput("labels must hold only 0 and 1", "labels")
    ids = arrays.get("ids")
    if ids is not None and (ids.ndim != 1 or ids.dtype.kind not in "iu"):
        raise InvalidInput("ids must be a 1-D integer array", "ids")
    text = arrays.get("tokens", arrays.get("text"))
    if text is not None:
        if text.ndim != 2 or text.dtype.kind not in "fiu":
            raise InvalidInput("text/tokens must be a 2-D numeric array", "text")
        text = text.astype(np.int64) if "tokens" in arrays else text.astype(np.float32)
    return Chunk(features.astype(np.float32, copy=False), labels.astype(np.uint8, copy=False),
                 None if ids is None else ids.astype(np.int64), role, text)


def validate_chunk(chunk: Chunk, dim: int) -> None:
    """Checks that need the index: dimension, row counts, finiteness, ids."""
    n = chunk.n
    if chunk.features.shape[1] != dim:
        raise InvalidInput(f"features have dimension {chunk.features.shape[1]}, the index "
                           f"expects {dim}", "features")
    if chunk.labels.shape[0] != n:
        raise InvalidInput(f"labels has {chunk.labels.shape[0]} rows but features has {n}",
                           "labels")
    if not np.isfinite(chunk.features).all():
        raise InvalidInput("features contains NaN or Inf", "features")
    if chunk.ids is not None:
        if chunk.ids.shape[0] != n:
            raise InvalidInput(f"ids has {chunk.ids.shape[0]} entries but features has {n} rows",
                               "ids")
        if (chunk.ids < 0).any():
            raise InvalidInput("ids must be non-negative", "ids")
        if len(np.unique(chunk.ids)) != n:
            raise InvalidInput("ids must be unique within a chunk", "ids")


def decode_fields_safely(fields: dict[bytes, bytes]) -> Chunk:
    """Decode a stream entry; a corrupt entry raises :class:`CodecError`."""
    try:
        return Chunk.from_fields(fields)
    except KeyError as exc:
        raise CodecError(f"stream entry lacks {exc}") from exc
