"""The requests of the client, built without sending them: one function per operation, shared by
the sync and the async client, which only send (so the two cannot drift apart)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx
import numpy as np

from hashstream.client.chunk_body import Body, Encoding, chunk_body, npz_bytes
from hashstream.client.errors import (
    Backlogged,
    ChunkDeadLettered,
    ChunkNotLearned,
    RoundTimeout,
    Unavailable,
)
from hashstream.client.models import DeadLetter, IndexInfo, LabelFilter, RoundRecord, SearchResult
from hashstream.client.search_arrays import NPZ_MIN_QUERIES, NPZ_SEARCH, SearchArrays

Modality = Literal["image", "text", "tokens"]
Target = Literal["pairs", "image", "text"]
Ties = Literal["insertion", "projection"]
IDEMPOTENCY_KEY = "Idempotency-Key"
_VECTOR_FIELD = {"image": "features", "text": "text", "tokens": "tokens"}


@dataclass(frozen=True)
class Call:
    """One HTTP request: method, path, and what goes with it."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] | None = None


def index_path(name: str, *rest: str) -> str:
    return "/".join(["/indexes", quote(name, safe=""), *(quote(p, safe="") for p in rest)])


def create_index(name: str, dim: int, settings: dict[str, Any]) -> Call:
    return Call("POST", "/indexes", json={"name": name, "dim": dim, **settings})


def ingest(name: str, features: Any, labels: Any, *, label_matrix: Any,
           ids: Sequence[int] | np.ndarray[Any, Any] | None,
           role: Literal["train", "query"] | None, text: Any, tokens: Any,
           encoding: Encoding, idempotency_key: str | None) -> Call:
    """The ingest request, under ``idempotency_key`` (a fresh UUID when None): every retry
    of this Call sends the same key, so the service queues the chunk once."""
    body: Body = chunk_body(features, labels, label_matrix=label_matrix, ids=ids, role=role,
                            text=text, tokens=tokens, encoding=encoding)
    path = index_path(name, "ingest")
    key = {IDEMPOTENCY_KEY: idempotency_key or uuid.uuid4().hex}
    if body.json is not None:
        return Call("POST", path, json=body.json, headers=key)
    return Call("POST", path, params={"role": role} if role else None, content=body.content,
                headers={"Content-Type": body.content_type, **key})


def _rows(vectors: Any) -> list[Any]:
    """One vector or a batch of them as a list of rows."""
    rows = vectors.tolist() if isinstance(vectors, np.ndarray) else list(vectors)
    if rows and not isinstance(rows[0], list | tuple | np.ndarray):
        return [rows]
    return [r.tolist() if isinstance(r, np.ndarray) else list(r) for r in rows]


def _filter_lists(filter: LabelFilter | None) -> dict[str, list[Any]]:
    """The filter's label lists as plain values (NumPy scalars and arrays allowed)."""
    out: dict[str, list[Any]] = {}
    if filter is None:
        return out
    for key, values in (("labels_any", filter.get("labels_any")),
                        ("labels_all", filter.get("labels_all"))):
        if values is not None:
            out[key] = [v.item() if isinstance(v, np.generic) else v for v in values]
    return out


def _joined(values: Sequence[Any]) -> str:
    return ",".join(str(v) for v in values)


def npz_search(vectors: Any, encoding: Encoding) -> bool:
    """Whether a search of ``vectors`` goes as .npz: asked for, or (``auto``) a NumPy batch of
    at least NPZ_MIN_QUERIES rows."""
    if encoding != "auto":
        return encoding == "npz"
    return (isinstance(vectors, np.ndarray) and vectors.ndim == 2
            and vectors.shape[0] >= NPZ_MIN_QUERIES)


def search(name: str, vectors: Any, item: int | None, *, k: int, filter: LabelFilter | None,
           max_distance: int | None, min_version: int | None, modality: Modality,
           target: Target | None, encoding: Encoding = "auto", ties: Ties | None = None
           ) -> Call:
    """By vectors (one or a batch): POST with a JSON body, or an .npz body answered with an
    .npz (see :func:`npz_search`). By a stored item: GET ?item=."""
    if (vectors is None) == (item is None):
        raise ValueError("give vectors or item, exactly one")
    path = index_path(name, "search")
    options = {key: value for key, value in (("max_distance", max_distance),
                                             ("min_version", min_version), ("target", target),
                                             ("ties", ties))
               if value is not None}
    if item is not None:
        params: dict[str, Any] = {"item": int(item), "k": k}
        for key, values in _filter_lists(filter).items():
            params[key] = _joined(values)
        return Call("GET", path, params={**params, **options})
    if npz_search(vectors, encoding):
        rows = np.asarray(vectors)
        arrays: dict[str, Any] = {_VECTOR_FIELD[modality]: rows[None, :] if rows.ndim == 1
                                  else rows, "k": np.int64(k), **_filter_lists(filter)}
        arrays.update({key: np.str_(value) if key in ("target", "ties") else np.int64(value)
                       for key, value in options.items()})
        return Call("POST", path, content=npz_bytes(arrays),
                    headers={"Content-Type": NPZ_SEARCH, "Accept": NPZ_SEARCH})
    body: dict[str, Any] = {_VECTOR_FIELD[modality]: _rows(vectors), "k": k}
    if filter:
        body["filter"] = _filter_lists(filter)
    return Call("POST", path, json={**body, **options})


def search_answer(response: Any) -> SearchResult:
    """A search response's answer, JSON or .npz (by its Content-Type)."""
    if response.headers.get("content-type", "").startswith(NPZ_SEARCH):
        return SearchArrays.from_npz(response.content).result()
    result: SearchResult = response.json()
    return result


def search_arrays(response: Any) -> SearchArrays:
    """The arrays of an .npz search answer."""
    return SearchArrays.from_npz(response.content)


def item(name: str, item_id: int, min_version: int | None = None) -> Call:
    params = None if min_version is None else {"min_version": min_version}
    return Call("GET", index_path(name, "items", str(int(item_id))), params=params)


def delete_item(name: str, item_id: int) -> Call:
    return Call("DELETE", index_path(name, "items", str(int(item_id))))


def delete_items(name: str, ids: Sequence[int] | np.ndarray[Any, Any]) -> Call:
    return Call("POST", index_path(name, "items", "delete"), json={"ids": [int(i) for i in ids]})


def requeue_dead_letter(name: str, entry_id: str) -> Call:
    return Call("POST", index_path(name, "dead-letters", entry_id, "requeue"))


def rounds(name: str, since: int = 0) -> Call:
    return Call("GET", index_path(name, "rounds"), params={"since": since})


DEAD_LETTER_PAGE = 1000  # the most the route lists at once


def dead_letters(name: str, after: str | None = None) -> Call:
    """A page of dead letters, oldest first, after the entry ``after``."""
    params: dict[str, Any] = {"limit": DEAD_LETTER_PAGE}
    if after is not None:
        params["after"] = after
    return Call("GET", index_path(name, "dead-letters"), params=params)


# what a resend of an ingest may mend (its Idempotency-Key makes the resend safe)
RESENDABLE = (Backlogged, Unavailable, httpx.TransportError)


class IngestRetry:
    """How long to wait before sending a chunk again, for ``retry_for`` seconds in all (the
    same for both clients): after a 429 or a 503, what its Retry-After says (1 s if nothing);
    after a transport failure (the answer lost, a timeout), 1 s. The request's
    Idempotency-Key makes every resend safe: a chunk the service had queued is not queued
    again."""

    def __init__(self, retry_for: float) -> None:
        self.deadline = time.monotonic() + retry_for if retry_for > 0 else None

    def wait(self, error: Exception) -> float | None:
        """Seconds to sleep before the next try, or None to give up: no retrying asked for,
        an error a resend cannot mend, or the next try would come after the deadline."""
        if self.deadline is None:
            return None
        if not isinstance(error, RESENDABLE):
            return None
        retry_after = error.retry_after if isinstance(error, Backlogged | Unavailable) else None
        wait = retry_after if retry_after is not None else 1.0
        return wait if time.monotonic() + wait <= self.deadline else None


class RoundWatch:
    """The decisions of ``wait_for_round``, apart from the sending: which rounds to read next,
    and what the answers mean for the chunk.

    Each poll reads the queue depth with the round records after the last one seen, then the
    dead letters after the last one seen. A round's commit acknowledges its chunks and records
    them in one transaction, and a dead-lettered chunk leaves the queue as it becomes a dead
    letter; so once the depth read first is 0, a chunk found in neither was learned by no
    round (:class:`ChunkNotLearned`)."""

    def __init__(self, name: str, chunk_id: str, timeout: float) -> None:
        self.name, self.chunk_id, self.timeout = name, chunk_id, timeout
        self.deadline = time.monotonic() + timeout
        self.since = 0
        self.after: str | None = None
        self.queue_depth: int | None = None

    def rounds_call(self) -> Call:
        return rounds(self.name, self.since)

    def see_rounds(self, answer: dict[str, Any]) -> RoundRecord | None:
        """The record of the round that learned the chunk, if among these."""
        self.queue_depth = int(answer["queue_depth"])
        found: RoundRecord | None = None
        for record in answer["rounds"]:
            self.since = max(self.since, int(record["round"]))
            if found is None and self.chunk_id in record.get("chunks", ()):
                found = record
        return found

    def dead_letters_call(self) -> Call:
        return dead_letters(self.name, self.after)

    def see_dead_letters(self, answer: dict[str, Any]) -> bool:
        """Raises :class:`ChunkDeadLettered` when the chunk is among these; True when another
        page may follow (this one was full)."""
        entries: list[DeadLetter] = answer["dead_letters"]
        for entry in entries:
            self.after = entry["id"]
            if entry["chunk_id"] == self.chunk_id:
                raise ChunkDeadLettered(self.chunk_id, dict(entry))
        return len(entries) >= DEAD_LETTER_PAGE

    def check_settled(self) -> None:
        """Raises when the chunk will never be learned, or the time is up."""
        if self.queue_depth == 0:
            raise ChunkNotLearned(
                f"no chunk {self.chunk_id} is queued in index {self.name!r}, and no round "
                "learned it: a held-out query chunk (never learned), or not a chunk of this "
                "index")
        if time.monotonic() >= self.deadline:
            raise RoundTimeout(f"no round of index {self.name!r} learned chunk {self.chunk_id} "
                               f"within {self.timeout:g} s (queue depth {self.queue_depth})")


def check_idle(info: IndexInfo, deadline: float, timeout: float) -> bool:
    """True once the index's queue is empty; raises when the time is up first."""
    if info["queue_depth"] == 0:
        return True
    if time.monotonic() >= deadline:
        raise RoundTimeout(f"index {info['name']!r} still queues {info['queue_depth']} "
                           f"chunk(s) after {timeout:g} s")
    return False
