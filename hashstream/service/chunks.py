"""Ingest payloads: parse JSON or .npz bodies into a validated chunk, and the chunk's encoding as
a Redis Stream entry.

A parsed chunk (:class:`ParsedChunk`) holds the client's labels as sent (CSR lists of int64 or
string values); the index maps them to internal class numbers and the queued :class:`Chunk`
holds :class:`ClassLists`, the form labels keep through the stream, the solver and the code
store. Every rejection names the field at fault; nothing is truncated or reinterpreted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hashstream.service.cross_modal import dense_text, pad_tokens
from hashstream.service.errors import InvalidInput, MalformedBody, PayloadTooLarge
from hashstream.service.npz_body import read_npz
from hashstream.solver.class_lists import ClassLists
from hashstream.store.codec import CodecError, decode_array, encode_array, encode_array_as

Role = Literal["train", "query"]
LabelKind = Literal["int", "str"]
MAX_LABEL_CHARS = 256
_INT64 = (-(2**63), 2**63 - 1)
_NPZ_MEMBERS = ("features", "image", "labels", "label_indptr", "label_classes", "ids", "text",
                "tokens")


@dataclass(frozen=True)
class ChunkLimits:
    """Bounds on one chunk: items, labels per item, decompressed .npz bytes."""

    max_items: int = 100_000
    max_labels_per_item: int = 1_000
    max_decompressed_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class ClientLabels:
    """Labels as the client sent them: item i has ``values[indptr[i]:indptr[i+1]]``, all int64
    or all strings (``kind``)."""

    indptr: np.ndarray[Any, Any]
    values: np.ndarray[Any, Any]
    kind: LabelKind

    @property
    def n(self) -> int:
        return int(self.indptr.shape[0] - 1)

    def distinct(self) -> tuple[list[str], np.ndarray[Any, Any]]:
        """The distinct labels as text (the class map's keys) and each entry's position among
        them; raises when an item repeats a class."""
        uniq, inverse = np.unique(self.values, return_inverse=True)
        inverse = inverse.ravel().astype(np.int64)
        if len(uniq):
            rows = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))
            key = rows * len(uniq) + inverse
            if len(np.unique(key)) < len(key):
                sorted_key = np.sort(key)
                dup = int(sorted_key[np.flatnonzero(np.diff(sorted_key) == 0)[0]])
                row, cls = divmod(dup, len(uniq))
                raise InvalidInput(f"labels[{row}] repeats the class {uniq[cls].item()!r}; "
                                   "each class once per item (0/1 rows go in label_matrix)",
                                   "labels")
        return [str(v) for v in uniq.tolist()], inverse


@dataclass(frozen=True)
class ParsedChunk:
    """A chunk as the client sent it, checked for everything that does not need the index."""

    features: np.ndarray[Any, Any]
    labels: ClientLabels
    ids: np.ndarray[Any, Any] | None
    role: Role
    text: np.ndarray[Any, Any] | None = None  # cross-modal pairs: dense text or padded tokens

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class Chunk:
    """A queued chunk: features n × d float32 (float16 when queued so and read back: rounds
    widen them), labels as internal class lists, ids int64
    (None for held-out query chunks, which never enter the database)."""

    features: np.ndarray[Any, Any]
    labels: ClassLists
    ids: np.ndarray[Any, Any] | None
    role: Role
    text: np.ndarray[Any, Any] | None = None

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    def to_fields(self, features_dtype: str = "float32") -> dict[str, bytes | memoryview]:
        """The Redis Stream entry of this chunk, its features stored as ``features_dtype``
        (the index's ``queue_dtype``) in the one copy made of them."""
        fields: dict[str, bytes | memoryview] = {
            "role": self.role.encode(),
            "features": encode_array_as(self.features, features_dtype),
            "label_indptr": encode_array(self.labels.indptr),
            "label_classes": encode_array(self.labels.classes)}
        if self.ids is not None:
            fields["ids"] = encode_array(self.ids)
        if self.text is not None:
            fields["text"] = encode_array(self.text)
        return fields

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes], copy: bool = True) -> Chunk:
        """Inverse of :meth:`to_fields`; raises :class:`CodecError` for a corrupt entry.
        ``copy=False``: the arrays are read-only views of ``fields``' bytes (no copy)."""
        try:
            role = fields[b"role"].decode()
            features = decode_array(fields[b"features"], copy=copy)
            if b"label_indptr" not in fields and b"labels" in fields:
                # an entry queued before labels became class lists: dense 0/1 rows whose
                # column j is class j (the index's class map was seeded as the identity)
                legacy = ClassLists.from_dense(decode_array(fields[b"labels"]))
                indptr, classes = legacy.indptr, legacy.classes
            else:
                indptr = decode_array(fields[b"label_indptr"], copy=copy)
                classes = decode_array(fields[b"label_classes"], copy=copy)
            ids = decode_array(fields[b"ids"], copy=copy) if b"ids" in fields else None
            text = decode_array(fields[b"text"], copy=copy) if b"text" in fields else None
        except KeyError as exc:
            raise CodecError(f"stream entry lacks {exc}") from exc
        except UnicodeDecodeError as exc:
            raise CodecError(f"stream entry has an undecodable role: {exc}") from exc
        if role not in ("train", "query"):
            raise CodecError(f"stream entry has role {role!r}")
        if features.ndim != 2 or indptr.ndim != 1 or indptr.shape[0] != features.shape[0] + 1:
            raise CodecError("stream entry's features and label_indptr do not agree")
        if role == "train" and (ids is None or ids.shape != (features.shape[0],)):
            raise CodecError("stream entry's ids do not match its features")
        try:
            labels = ClassLists.of(indptr, classes)
        except ValueError as exc:
            raise CodecError(f"stream entry's labels are invalid: {exc}") from exc
        return cls(features, labels, ids, "query" if role == "query" else "train", text)


# --- labels -------------------------------------------------------------------------------
def _within_item_limit(labels: ClientLabels, limits: ChunkLimits, field: str) -> ClientLabels:
    """``labels``, once no item has more classes than ``limits.max_labels_per_item`` (every
    label form goes through here)."""
    counts = np.diff(labels.indptr)
    if counts.size and int(counts.max()) > limits.max_labels_per_item:
        i = int(counts.argmax())
        raise InvalidInput(f"{field}[{i}] has {int(counts[i])} classes; at most "
                           f"{limits.max_labels_per_item} per item", field)
    return labels


def _class_lists_json(rows: Any) -> ClientLabels:
    """``[[label…], …]`` with int or string labels (one type per chunk)."""
    if not isinstance(rows, list):
        raise InvalidInput("labels must be a list of lists of class labels", "labels")
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    flat: list[Any] = []
    kind: LabelKind | None = None
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InvalidInput(f"labels[{i}] must be a list of class labels", "labels")
        for value in row:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise InvalidInput(f"labels[{i}] holds {value!r}; a class label is an integer "
                                   "or a string", "labels")
            this: LabelKind = "str" if isinstance(value, str) else "int"
            if kind is None:
                kind = this
            elif this != kind:
                raise InvalidInput(f"labels[{i}] mixes {kind} and {this} class labels; use one "
                                   "type per index", "labels")
            if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
                raise InvalidInput(f"labels[{i}] holds {value}; integer labels must fit in "
                                   "int64", "labels")
            if isinstance(value, str) and not 1 <= len(value) <= MAX_LABEL_CHARS:
                raise InvalidInput(f"labels[{i}] holds a label of {len(value)} characters; "
                                   f"string labels have 1–{MAX_LABEL_CHARS}", "labels")
            flat.append(value)
        indptr[i + 1] = len(flat)
    kind = kind or "int"
    values = (np.asarray(flat, dtype=np.int64) if kind == "int"
              else np.asarray(flat, dtype=np.str_) if flat else np.zeros(0, dtype="<U1"))
    return ClientLabels(indptr, values, kind)


def _from_matrix(matrix: np.ndarray[Any, Any], field: str) -> ClientLabels:
    """n × c 0/1 rows → int labels: column j is class j."""
    if matrix.ndim != 2 or matrix.dtype.kind not in "biuf":
        raise InvalidInput(f"{field} must be an n × c 0/1 matrix", field)
    if not np.isin(matrix, (0, 1)).all():
        raise InvalidInput(f"{field} must hold only 0 and 1", field)
    lists = ClassLists.from_dense(matrix)
    return ClientLabels(lists.indptr, lists.classes.astype(np.int64), "int")


def _label_matrix_json(rows: Any) -> ClientLabels:
    if not isinstance(rows, list) or any(not isinstance(r, list) for r in rows):
        raise InvalidInput("label_matrix must be a list of 0/1 rows", "label_matrix")
    width = len(rows[0]) if rows else 0
    for i, row in enumerate(rows):
        if len(row) != width or any(isinstance(v, bool) or v not in (0, 1) for v in row):
            raise InvalidInput(f"label_matrix[{i}] must be a 0/1 row of {width} integers",
                               "label_matrix")
    return _from_matrix(np.asarray(rows, dtype=np.uint8).reshape(len(rows), width),
                        "label_matrix")


def _label_csr_npz(indptr: np.ndarray[Any, Any], classes: np.ndarray[Any, Any],
                   n: int) -> ClientLabels:
    if indptr.ndim != 1 or indptr.dtype.kind not in "iu" or indptr.shape[0] != n + 1:
        raise InvalidInput(f"label_indptr must be n + 1 = {n + 1} integers", "label_indptr")
    indptr = indptr.astype(np.int64)
    counts = np.diff(indptr)
    if indptr[0] != 0 or (counts < 0).any() or indptr[-1] != classes.shape[0]:
        raise InvalidInput("label_indptr must start at 0, never decrease and end at "
                           "len(label_classes)", "label_indptr")
    if classes.ndim != 1:
        raise InvalidInput("label_classes must be 1-D", "label_classes")
    if classes.dtype.kind in "iu":
        if classes.dtype.kind == "u" and classes.size and int(classes.max()) > _INT64[1]:
            raise InvalidInput("integer labels must fit in int64", "label_classes")
        return ClientLabels(indptr, classes.astype(np.int64), "int")
    if classes.dtype.kind == "U":
        lengths = np.char.str_len(classes) if classes.size else np.zeros(0, int)
        if lengths.size and (lengths.min() < 1 or lengths.max() > MAX_LABEL_CHARS):
            raise InvalidInput(f"string labels have 1–{MAX_LABEL_CHARS} characters",
                               "label_classes")
        return ClientLabels(indptr, classes, "str")
    raise InvalidInput("label_classes must be integers or unicode strings", "label_classes")


# --- bodies -------------------------------------------------------------------------------
def _features(value: Any, limits: ChunkLimits) -> np.ndarray[Any, Any]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("features must be a non-empty list of vectors (the chunk is empty)",
                           "features")
    _check_items(len(value), limits)
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"features must be a list of equal-length numeric vectors ({exc})",
                           "features") from exc
    if arr.ndim != 2:
        raise InvalidInput("features must be a list of equal-length numeric vectors", "features")
    return arr


def _check_items(n: int, limits: ChunkLimits) -> None:
    if n > limits.max_items:
        raise PayloadTooLarge(f"the chunk has {n} items; at most {limits.max_items} per chunk "
                              "(HASHSTREAM_MAX_CHUNK_ITEMS): split it", "features")


def _ids(value: Any) -> np.ndarray[Any, Any] | None:
    if value is None:
        return None
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int)
                                          for v in value):
        raise InvalidInput("ids must be a list of integers", "ids")
    try:
        return np.asarray(value, dtype=np.int64)
    except OverflowError as exc:
        raise InvalidInput("ids must fit in a signed 64-bit integer", "ids") from exc


def parse_json_chunk(body: bytes, default_role: Role = "train",
                     limits: ChunkLimits | None = None) -> ParsedChunk:
    """Parse ``{"features": [[…]], "labels": [[label…]] | "label_matrix": [[0/1…]],
    "ids"?: […], "role"?: …}`` (cross-modal pairs: ``image`` and ``text`` or ``tokens``)."""
    limits = limits or ChunkLimits()
    if not body.strip():
        raise MalformedBody("the body is empty; send a JSON object", "body")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedBody(f"body is not valid JSON: {exc}", "body") from exc
    if not isinstance(payload, dict):
        raise MalformedBody("body must be a JSON object with features and labels", "body")
    if "image" in payload and "features" not in payload:  # cross-modal pairs
        payload["features"] = payload.pop("image")
    unknown = set(payload) - {"features", "labels", "label_matrix", "ids", "role", "text",
                              "tokens"}
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}", sorted(unknown)[0])
    if "features" not in payload:
        raise InvalidInput("features is required", "features")
    if ("labels" in payload) == ("label_matrix" in payload):
        raise InvalidInput("give labels (class lists per item) or label_matrix (0/1 rows), "
                           "exactly one", "labels")
    role = payload.get("role", default_role)
    if role not in ("train", "query"):
        raise InvalidInput("role must be 'train' or 'query'", "role")
    features = _features(payload["features"], limits)
    labels = (_within_item_limit(_class_lists_json(payload["labels"]), limits, "labels")
              if "labels" in payload else _within_item_limit(
                  _label_matrix_json(payload["label_matrix"]), limits, "label_matrix"))
    text = None
    if "tokens" in payload:
        text = pad_tokens(payload["tokens"])
    elif "text" in payload:
        text = dense_text(payload["text"])
    return ParsedChunk(features, labels, _ids(payload.get("ids")), role, text)


def parse_npz_chunk(body: bytes, role: Role = "train",
                    limits: ChunkLimits | None = None) -> ParsedChunk:
    """Parse an ``.npz`` archive: ``features``, and ``labels`` (n × c 0/1) or ``label_indptr``
    + ``label_classes``; optionally ``ids`` and (cross-modal) ``text`` or ``tokens``. Array
    headers are checked against the limits before anything is decompressed."""
    limits = limits or ChunkLimits()
    arrays = read_npz(body, members=_NPZ_MEMBERS, max_bytes=limits.max_decompressed_bytes)
    if "image" in arrays and "features" not in arrays:
        arrays["features"] = arrays.pop("image")
    if "features" not in arrays:
        raise InvalidInput("the .npz has no array named 'features'", "features")
    features = arrays["features"]
    if features.dtype.kind not in "fiu" or features.ndim != 2 or features.shape[0] == 0:
        raise InvalidInput("features must be a non-empty n × d numeric array", "features")
    n = int(features.shape[0])
    _check_items(n, limits)
    has_csr = "label_indptr" in arrays or "label_classes" in arrays
    if ("labels" in arrays) == has_csr:
        raise InvalidInput("give labels (n × c 0/1) or label_indptr + label_classes, exactly "
                           "one form", "labels")
    if has_csr:
        if "label_indptr" not in arrays or "label_classes" not in arrays:
            missing = "label_classes" if "label_indptr" in arrays else "label_indptr"
            raise InvalidInput(f"{missing} is required with the other", missing)
        labels = _within_item_limit(
            _label_csr_npz(arrays["label_indptr"], arrays["label_classes"], n), limits,
            "label_classes")
    else:  # its row count is checked with the index's checks (validate_chunk)
        labels = _within_item_limit(_from_matrix(arrays["labels"], "labels"), limits, "labels")
    ids = arrays.get("ids")
    if ids is not None and (ids.ndim != 1 or ids.dtype.kind not in "iu"):
        raise InvalidInput("ids must be a 1-D integer array", "ids")
    text = arrays.get("tokens", arrays.get("text"))
    if text is not None:
        if text.ndim != 2 or text.dtype.kind not in "fiu":
            raise InvalidInput("text/tokens must be a 2-D numeric array", "text")
        text = text.astype(np.int64) if "tokens" in arrays else text.astype(np.float32)
    return ParsedChunk(features.astype(np.float32, copy=False), labels,
                       None if ids is None else ids.astype(np.int64), role, text)


def validate_chunk(chunk: ParsedChunk, dim: int) -> None:
    """Checks that need the index: dimension, row counts, finiteness, ids."""
    n = chunk.n
    if chunk.features.shape[1] != dim:
        raise InvalidInput(f"features have dimension {chunk.features.shape[1]}, the index "
                           f"expects {dim}", "features")
    if chunk.labels.n != n:
        raise InvalidInput(f"labels has {chunk.labels.n} rows but features has {n}", "labels")
    if not np.isfinite(chunk.features).all():
        raise InvalidInput("features contains NaN or Inf", "features")
    if chunk.ids is not None:
        if chunk.role == "query":
            raise InvalidInput("held-out query chunks take no ids (they never enter the "
                               "database)", "ids")
        if chunk.ids.shape[0] != n:
            raise InvalidInput(f"ids has {chunk.ids.shape[0]} entries but features has {n} rows",
                               "ids")
        if (chunk.ids < 0).any():
            raise InvalidInput("ids must be non-negative", "ids")
        if len(np.unique(chunk.ids)) != n:
            raise InvalidInput("ids must be unique within a chunk", "ids")
