"""The synchronous client: every operation of the API as a method, errors as typed exceptions
(:mod:`hashstream.client.errors`), answers as typed JSON (:mod:`hashstream.client.models`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import httpx
import numpy as np

from hashstream.client import calls
from hashstream.client.calls import Call, Modality, Target, Ties
from hashstream.client.chunk_body import Encoding
from hashstream.client.errors import raise_for_problem
from hashstream.client.models import (
    ChunkId,
    DeadLetter,
    DeletedItems,
    IndexInfo,
    Item,
    LabelFilter,
    RoundRecord,
    SearchResult,
)
from hashstream.client.search_arrays import SearchArrays


def headers_for(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """A client of one hashstream service::

        with Client("http://127.0.0.1:8000", api_key=None) as hs:
            hs.create_index("images", dim=512, bits=64)
            chunk = hs.ingest("images", features, labels)       # NumPy → .npz, lists → JSON
            hs.wait_for_round("images", chunk)
            hits = hs.search("images", query, k=10)["results"][0]

    ``http`` replaces the httpx client it would make (a ``fastapi.testclient.TestClient``
    runs the app in-process); the client then leaves closing it to the caller.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 http: httpx.Client | None = None) -> None:
        self._owned = http is None
        self.http = http if http is not None else httpx.Client(
            base_url=base_url, timeout=timeout, headers=headers_for(api_key))
        if http is not None and api_key:
            self.http.headers.update(headers_for(api_key))

    def close(self) -> None:
        if self._owned:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call) -> httpx.Response:
        response = self.http.request(call.method, call.path, params=call.params, json=call.json,
                                     content=call.content, headers=call.headers)
        raise_for_problem(response)
        return response

    def _json(self, call: Call) -> Any:
        return self._send(call).json()

    # --- indexes ---------------------------------------------------------------------------
    def create_index(self, name: str, dim: int, **settings: Any) -> IndexInfo:
        """Create an index of ``dim``-dimensional features; ``settings`` are any fields of
        ``POST /indexes`` (``bits``, ``method``, ``kind``, ``seed``, …)."""
        info: IndexInfo = self._json(calls.create_index(name, dim, settings))
        return info

    def index(self, name: str) -> IndexInfo:
        """One index: its settings, model version, queue depth and counts."""
        info: IndexInfo = self._json(Call("GET", calls.index_path(name)))
        return info

    def indexes(self) -> list[IndexInfo]:
        infos: list[IndexInfo] = self._json(Call("GET", "/indexes"))["indexes"]
        return infos

    def delete_index(self, name: str) -> None:
        self._send(Call("DELETE", calls.index_path(name)))

    # --- ingest and rounds -----------------------------------------------------------------
    def ingest(self, name: str, features: Any, labels: Any = None, *, label_matrix: Any = None,
               ids: Sequence[int] | np.ndarray[Any, Any] | None = None,
               role: Literal["train", "query"] | None = None, text: Any = None,
               tokens: Any = None, encoding: Encoding = "auto",
               retry_for: float = 0.0, idempotency_key: str | None = None) -> ChunkId:
        """Queue a chunk for the next round; its id (:class:`ChunkId`). ``features`` n × d
        (a NumPy array is sent as .npz, lists as JSON; ``encoding`` forces one); ``labels``
        each item's classes (a flat sequence for one class per item) or ``label_matrix`` n × c
        0/1; ``ids`` int64 ids (else the service assigns them, see ``ChunkId.id_range``);
        ``role="query"`` for held-out queries; ``text``/``tokens`` for cross-modal pairs.

        Every ingest carries an Idempotency-Key (``idempotency_key``, else a fresh UUID), so a
        resend never queues the chunk twice. A backlogged index answers 429
        (:class:`~hashstream.client.errors.Backlogged`), an unreachable Redis 503
        (:class:`~hashstream.client.errors.Unavailable`), a lost answer an
        ``httpx.TransportError``: each is raised, or with ``retry_for`` > 0 the chunk is sent
        again after each Retry-After (1 s after a transport failure) for up to that many
        seconds in all (then the last error is raised). Pass your own ``idempotency_key`` to
        resend safely across processes or restarts."""
        call = calls.ingest(name, features, labels, label_matrix=label_matrix, ids=ids,
                            role=role, text=text, tokens=tokens, encoding=encoding,
                            idempotency_key=idempotency_key)
        retry = calls.IngestRetry(retry_for)
        while True:
            try:
                return ChunkId.of(self._json(call))
            except calls.RESENDABLE as exc:
                wait = retry.wait(exc)
                if wait is None:
                    raise
                time.sleep(wait)

    def rounds(self, name: str, since: int = 0) -> list[RoundRecord]:
        """The records of the rounds after round ``since``, oldest first."""
        records: list[RoundRecord] = self._json(calls.rounds(name, since))["rounds"]
        return records

    def wait_for_round(self, name: str, chunk_id: str, *, timeout: float = 120.0,
                       poll: float = 0.1) -> RoundRecord:
        """The record of the round that learned ``chunk_id`` (an :meth:`ingest` answer), once
        committed. Raises :class:`~hashstream.client.errors.ChunkDeadLettered` when its rounds
        kept failing, :class:`~hashstream.client.errors.ChunkNotLearned` for a chunk no round
        will learn (a query chunk), :class:`~hashstream.client.errors.RoundTimeout` after
        ``timeout`` seconds. Reads every round record once, then only new ones."""
        watch = calls.RoundWatch(name, chunk_id, timeout)
        while True:
            found = watch.see_rounds(self._json(watch.rounds_call()))
            if found is not None:
                return found
            while watch.see_dead_letters(self._json(watch.dead_letters_call())):
                pass
            watch.check_settled()
            time.sleep(poll)

    def wait_idle(self, name: str, *, timeout: float = 120.0, poll: float = 0.1) -> IndexInfo:
        """The index once its queue is empty: every chunk accepted before the call learned,
        stored (query chunks) or dead-lettered."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.index(name)
            if calls.check_idle(info, deadline, timeout):
                return info
            time.sleep(poll)

    # --- search and items ------------------------------------------------------------------
    def search(self, name: str, vectors: Any = None, *, item: int | None = None, k: int = 10,
               filter: LabelFilter | None = None, max_distance: int | None = None,
               min_version: int | None = None, modality: Modality = "image",
               target: Target | None = None, encoding: Encoding = "auto",
               ties: Ties | None = None) -> SearchResult:
        """The ``k`` nearest items of each query: ``vectors`` (one, or a batch of rows) or the
        stored ``item``. ``filter`` keeps hits carrying any of ``labels_any`` and all of
        ``labels_all``; ``max_distance`` keeps hits within that Hamming radius (still at most
        ``k``); ``ties="projection"`` orders the hits at one distance by the query's
        real-valued projection (vectors only; the default orders them by insertion);
        ``min_version`` waits for that model version (read-your-writes). Cross-modal:
        ``modality`` of the vectors (image, dense text or tokens), ``target`` the codes to
        rank. ``results[i]`` holds query i's hits, nearest first. ``encoding``: ``auto``
        sends a NumPy batch of 32 rows or more as .npz and reads an .npz answer (the same
        result), ``json`` or ``npz`` force one."""
        return calls.search_answer(self._send(calls.search(
            name, vectors, item, k=k, filter=filter, max_distance=max_distance,
            min_version=min_version, modality=modality, target=target, encoding=encoding,
            ties=ties)))

    def search_arrays(self, name: str, vectors: Any, *, k: int = 10,
                      filter: LabelFilter | None = None, max_distance: int | None = None,
                      min_version: int | None = None, modality: Modality = "image",
                      target: Target | None = None, ties: Ties | None = None) -> SearchArrays:
        """A batch search as arrays (:class:`SearchArrays`), sent and answered as .npz: for
        large batches, with no dict per hit."""
        return calls.search_arrays(self._send(calls.search(
            name, vectors, None, k=k, filter=filter, max_distance=max_distance,
            min_version=min_version, modality=modality, target=target, encoding="npz",
            ties=ties)))

    def item(self, name: str, item_id: int, *, min_version: int | None = None) -> Item:
        """One stored item: labels, code (hex), the model version and round that made it."""
        found: Item = self._json(calls.item(name, item_id, min_version))
        return found

    def delete_item(self, name: str, item_id: int) -> DeletedItems:
        """Delete one stored item (:class:`NotFound` when it is not stored)."""
        answer: DeletedItems = self._json(calls.delete_item(name, item_id))
        return answer

    def delete_items(self, name: str, ids: Sequence[int] | np.ndarray[Any, Any]
                     ) -> DeletedItems:
        """Delete stored items; which ids were deleted and which were unknown."""
        answer: DeletedItems = self._json(calls.delete_items(name, ids))
        return answer

    # --- dead letters ----------------------------------------------------------------------
    def dead_letters(self, name: str) -> list[DeadLetter]:
        """Every dead letter of the index (chunks whose rounds kept failing), oldest first."""
        out: list[DeadLetter] = []
        while True:
            page: list[DeadLetter] = self._json(calls.dead_letters(
                name, out[-1]["id"] if out else None))["dead_letters"]
            out.extend(page)
            if len(page) < calls.DEAD_LETTER_PAGE:
                return out

    def requeue_dead_letter(self, name: str, entry_id: str) -> str:
        """Put a dead letter back on the queue; its new chunk id."""
        answer = self._json(calls.requeue_dead_letter(name, entry_id))
        return str(answer["chunk_id"])

    def delete_dead_letter(self, name: str, entry_id: str) -> None:
        self._send(Call("DELETE", calls.index_path(name, "dead-letters", entry_id)))
