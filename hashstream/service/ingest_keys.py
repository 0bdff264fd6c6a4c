"""Idempotent ingest: an ``Idempotency-Key`` sent with a chunk makes a retry of the same request
(after a lost answer, a timeout, a 503) answer what the first one did instead of queueing the
chunk again. A key lives ``HASHSTREAM_INGEST_KEY_LIFETIME_S`` (a day by default) and is bound to
its chunk by a fingerprint: reused for another chunk, it is refused with 422.

An ingest sent without a key gets one the service makes (:func:`server_key`), remembered
``HASHSTREAM_SERVER_KEY_LIFETIME_S`` (15 minutes): the store retries a lost reply under it,
and a 503 whose outcome stays unknown names it (:class:`OutcomeUnknown`) so the client can
resend under it and have the chunk queued exactly once."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import numpy as np

from hashstream.service.chunks import ParsedChunk
from hashstream.service.errors import InvalidInput, Unavailable

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
# How long a key the service made is remembered. A retry after a 503 comes within seconds to
# minutes (Retry-After: 5; the Python client's retry_for), and every keyless ingest leaves a
# record (~0.45 kB of Redis memory, measured: key, chunk id, answer, expiry) for this long:
# 15 minutes holds ~100 times less than the day of a client's key would (a 1000-chunk/s
# keyless stream: ~0.4 GB, not ~39 GB).
SERVER_KEY_LIFETIME_S = 900.0
SERVER_KEY_PREFIX = "server-"


def checked_key(value: str) -> str:
    """The header's value, or a 422 naming it: 1–255 visible ASCII characters (a UUID is the
    usual choice)."""
    if not 1 <= len(value) <= MAX_KEY_CHARS or not all(33 <= ord(c) <= 126 for c in value):
        raise InvalidInput(f"{HEADER} must be 1–{MAX_KEY_CHARS} visible ASCII characters "
                           "(no spaces), e.g. a UUID", HEADER)
    return value


def server_key() -> str:
    """A key for an ingest sent without one: ``server-`` and a random UUID's 32 hex digits,
    a valid client key (the client may resend under it after a 503 that names it) that no
    other request's key equals unless it was copied from that 503."""
    return SERVER_KEY_PREFIX + uuid.uuid4().hex


class OutcomeUnknown(Unavailable):
    """503: Redis's reply to queueing the chunk was lost on every try, so whether it is queued
    is not known; the answer names the key (header and ``idempotency_key``) under which a
    resend of the same request is queued exactly once or answered the first answer."""

    retry_after = 5

    def __init__(self, key: str, attempts: int) -> None:
        super().__init__(f"Redis's reply to queueing this chunk was lost ({attempts} tries); "
                         "whether it is queued is not known: resend the same request with "
                         f"header {HEADER}: {key} and it is queued exactly once (or answered "
                         "its first answer)")
        self.extra["idempotency_key"] = key
        self.headers[HEADER] = key


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
    """The answer stored with the key (the chunk id is the script's to add), and a random
    ``call`` that makes the record this request's own: a retry of a lost reply that finds it
    knows its own run queued the chunk (not a concurrent request with the same key)."""
    rest = {k: v for k, v in answer.items() if k != "chunk_id"}
    return json.dumps({"answer": rest, "fingerprint": chunk_fingerprint,
                       "call": uuid.uuid4().hex[:16]}, separators=(",", ":"))


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
