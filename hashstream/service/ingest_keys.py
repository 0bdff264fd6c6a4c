"""Idempotent ingest: an ``Idempotency-Key`` sent with a chunk makes a retry of the same request
(after a lost answer, a timeout, a 503) answer what the first one did instead of queueing the
chunk again. A key lives ``HASHSTREAM_INGEST_KEY_LIFETIME_S`` (a day by default) and is bound to
its chunk by a fingerprint: reused for another chunk, it is refused with 422."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from hashstream.service.chunks import ParsedChunk
from hashstream.service.errors import InvalidInput

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255


def checked_key(value: str) -> str:
    """The header's value, or a 422 naming it: 1–255 visible ASCII characters (a UUID is the
    usual choice)."""
    if not 1 <= len(value) <= MAX_KEY_CHARS or not all(33 <= ord(c) <= 126 for c in value):
        raise InvalidInput(f"{HEADER} must be 1–{MAX_KEY_CHARS} visible ASCII characters "
                           "(no spaces), e.g. a UUID", HEADER)
    return value


def fingerprint(chunk: ParsedChunk) -> str:
    """What binds a key to its chunk: role, shape, ids, labels, text, and the first and last
    feature rows (hashing every feature byte would cost more than queueing them)."""
    h = hashlib.blake2b(digest_size=16)
    features = chunk.features
    h.update(f"{chunk.role}|{features.shape}|{features.dtype.str}|{chunk.labels.kind}".encode())
    for part in (features[:1], features[-1:], chunk.ids, chunk.labels.indptr, chunk.text):
        h.update(b"|" if part is None else _bytes(part))
    h.update(_bytes(chunk.labels.values))
    return h.hexdigest()


def _bytes(array: np.ndarray[Any, Any]) -> bytes:
    if array.dtype.kind == "O":
        return "\x00".join(map(str, array.ravel().tolist())).encode()
    return np.ascontiguousarray(array).tobytes()


def record(answer: dict[str, Any], chunk_fingerprint: str) -> str:
    """The answer stored with the key (the chunk id is the script's to add)."""
    rest = {k: v for k, v in answer.items() if k != "chunk_id"}
    return json.dumps({"answer": rest, "fingerprint": chunk_fingerprint},
                      separators=(",", ":"))


def replayed(stored: str, chunk_fingerprint: str) -> dict[str, Any]:
    """The first request's answer from its stored record "<chunk id> <record>"; 422 naming
    the header when the key came with another chunk."""
    chunk_id, _, rest = stored.partition(" ")
    kept = json.loads(rest)
    if kept["fingerprint"] != chunk_fingerprint:
        raise InvalidInput(f"this {HEADER} was used for another chunk (other ids, labels, "
                           f"shape or features) and answered chunk {chunk_id}; use a new key "
                           "for every chunk", HEADER)
    return {"chunk_id": chunk_id, **kept["answer"]}
