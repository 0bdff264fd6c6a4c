"""The async twin of :class:`hashstream.client.Client` (httpx.AsyncClient): the same methods,
arguments and answers, awaited. Both build their requests in :mod:`hashstream.client.calls`."""

from __future__ import annotations

import asyncio
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
from hashstream.client.sync import headers_for


class AsyncClient:
    """``async with AsyncClient(base_url, api_key) as hs: await hs.search(...)``; see
    :class:`hashstream.client.Client` for each method."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 http: httpx.AsyncClient | None = None) -> None:
        self._owned = http is None
        self.http = http if http is not None else httpx.AsyncClient(
            base_url=base_url, timeout=timeout, headers=headers_for(api_key))
        if http is not None and api_key:
            self.http.headers.update(headers_for(api_key))

    async def close(self) -> None:
        if self._owned:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(self, call: Call) -> httpx.Response:
        response = await self.http.request(call.method, call.path, params=call.params,
                                           json=call.json, content=call.content,
                                           headers=call.headers)
        raise_for_problem(response)
        return response

    async def _json(self, call: Call) -> Any:
        return (await self._send(call)).json()

    async def create_index(self, name: str, dim: int, **settings: Any) -> IndexInfo:
        info: IndexInfo = await self._json(calls.create_index(name, dim, settings))
        return info

    async def index(self, name: str) -> IndexInfo:
        info: IndexInfo = await self._json(Call("GET", calls.index_path(name)))
        return info

    async def indexes(self) -> list[IndexInfo]:
        infos: list[IndexInfo] = (await self._json(Call("GET", "/indexes")))["indexes"]
        return infos

    async def delete_index(self, name: str) -> None:
        await self._send(Call("DELETE", calls.index_path(name)))

    async def ingest(self, name: str, features: Any, labels: Any = None, *,
                     label_matrix: Any = None,
                     ids: Sequence[int] | np.ndarray[Any, Any] | None = None,
                     role: Literal["train", "query"] | None = None, text: Any = None,
                     tokens: Any = None, encoding: Encoding = "auto",
                     retry_for: float = 0.0, idempotency_key: str | None = None) -> ChunkId:
        call = calls.ingest(name, features, labels, label_matrix=label_matrix, ids=ids,
                            role=role, text=text, tokens=tokens, encoding=encoding,
                            idempotency_key=idempotency_key)
        retry = calls.IngestRetry(retry_for)
        while True:
            try:
                return ChunkId.of(await self._json(call))
            except calls.RESENDABLE as exc:
                wait = retry.wait(exc)
                if wait is None:
                    raise
                await asyncio.sleep(wait)

    async def rounds(self, name: str, since: int = 0) -> list[RoundRecord]:
        records: list[RoundRecord] = (await self._json(calls.rounds(name, since)))["rounds"]
        return records

    async def wait_for_round(self, name: str, chunk_id: str, *, timeout: float = 120.0,
                             poll: float = 0.1) -> RoundRecord:
        watch = calls.RoundWatch(name, chunk_id, timeout)
        while True:
            found = watch.see_rounds(await self._json(watch.rounds_call()))
            if found is not None:
                return found
            while watch.see_dead_letters(await self._json(watch.dead_letters_call())):
                pass
            watch.check_settled()
            await asyncio.sleep(poll)

    async def wait_idle(self, name: str, *, timeout: float = 120.0, poll: float = 0.1
                        ) -> IndexInfo:
        deadline = time.monotonic() + timeout
        while True:
            info = await self.index(name)
            if calls.check_idle(info, deadline, timeout):
                return info
            await asyncio.sleep(poll)

    async def search(self, name: str, vectors: Any = None, *, item: int | None = None,
                     k: int = 10, filter: LabelFilter | None = None,
                     max_distance: int | None = None, min_version: int | None = None,
                     modality: Modality = "image", target: Target | None = None,
                     encoding: Encoding = "auto", ties: Ties | None = None) -> SearchResult:
        return calls.search_answer(await self._send(calls.search(
            name, vectors, item, k=k, filter=filter, max_distance=max_distance,
            min_version=min_version, modality=modality, target=target, encoding=encoding,
            ties=ties)))

    async def search_arrays(self, name: str, vectors: Any, *, k: int = 10,
                            filter: LabelFilter | None = None, max_distance: int | None = None,
                            min_version: int | None = None, modality: Modality = "image",
                            target: Target | None = None, ties: Ties | None = None) -> SearchArrays:
        return calls.search_arrays(await self._send(calls.search(
            name, vectors, None, k=k, filter=filter, max_distance=max_distance,
            min_version=min_version, modality=modality, target=target, encoding="npz",
            ties=ties)))

    async def item(self, name: str, item_id: int, *, min_version: int | None = None) -> Item:
        found: Item = await self._json(calls.item(name, item_id, min_version))
        return found

    async def delete_item(self, name: str, item_id: int) -> DeletedItems:
        answer: DeletedItems = await self._json(calls.delete_item(name, item_id))
        return answer

    async def delete_items(self, name: str, ids: Sequence[int] | np.ndarray[Any, Any]
                           ) -> DeletedItems:
        answer: DeletedItems = await self._json(calls.delete_items(name, ids))
        return answer

    async def dead_letters(self, name: str) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        while True:
            page: list[DeadLetter] = (await self._json(calls.dead_letters(
                name, out[-1]["id"] if out else None)))["dead_letters"]
            out.extend(page)
            if len(page) < calls.DEAD_LETTER_PAGE:
                return out

    async def requeue_dead_letter(self, name: str, entry_id: str) -> str:
        answer = await self._json(calls.requeue_dead_letter(name, entry_id))
        return str(answer["chunk_id"])

    async def delete_dead_letter(self, name: str, entry_id: str) -> None:
        await self._send(Call("DELETE", calls.index_path(name, "dead-letters", entry_id)))
