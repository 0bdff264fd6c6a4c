"""Ingest: JSON bodies for small chunks, .npz bodies (application/octet-stream) for bulk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from hashstream.api.deps import IndexesDep, SettingsDep, media_type
from hashstream.api.problems import JSON_BODY, responses
from hashstream.api.schemas import IngestAccepted
from hashstream.service.chunks import (
    ParsedChunk,
    parse_json_chunk,
    parse_npz_chunk,
    validate_chunk,
)
from hashstream.service.errors import PayloadTooLarge, UnsupportedMediaType
from hashstream.service.ingest_keys import HEADER, checked_key
from hashstream.service.registry import IndexService
from hashstream.service.settings import Settings

router = APIRouter(tags=["ingest"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {
                "type": "object", "required": ["features", "labels"],
                "properties": {
                    "features": {"type": "array", "items": {"type": "array",
                                                            "items": {"type": "number"}}},
                    "labels": {"type": "array", "items": {"type": "array", "items": {
                        "oneOf": [{"type": "integer"}, {"type": "string"}]}},
                               "description": "class labels of each item (integers or strings, "
                               "one type per index; each class once per item)"},
                    "label_matrix": {"type": "array", "items": {"type": "array", "items": {
                        "type": "integer", "enum": [0, 1]}},
                        "description": "instead of labels: n × c 0/1 rows (column j = class j)"},
                    "ids": {"type": "array", "items": {"type": "integer"}},
                    "role": {"type": "string", "enum": ["train", "query"]}}}},
            "application/octet-stream": {"schema": {
                "type": "string", "format": "binary",
                "description": ".npz with features (n × d) and labels (n × c 0/1) or "
                "label_indptr + label_classes (class lists in CSR form), optional ids"}},
        },
    }
}


_KEY_DOC = ("any 1–255 visible ASCII characters, new for every chunk (a UUID): a retry of the "
            "same request with the same key (after a lost answer, a timeout, a 503) is "
            "answered what the first one was (header Idempotent-Replayed: true) and queues "
            "nothing; the key is remembered HASHSTREAM_INGEST_KEY_LIFETIME_S (a day). "
            "Without one the service makes one (remembered HASHSTREAM_SERVER_KEY_LIFETIME_S, "
            "15 minutes) and names it in a 503 whose outcome is not known")

# A 503 of an ingest: Redis unreachable before anything was queued, or the queueing's reply
# lost on every try (then the key to resend under is named).
_UNKNOWN = {503: "Service unavailable: Redis is unreachable, or its reply to queueing the "
                 "chunk was lost on every try (retried under the request's Idempotency-Key, "
                 "or one the service made): then whether the chunk is queued is not known, "
                 "and the header Idempotency-Key and the member `idempotency_key` name the "
                 "key; resend the same request under it and it is queued exactly once"}
_UNKNOWN_HEADERS = {503: {HEADER: {
    "description": "when the outcome is not known: the key to resend the same request "
                   "under (the request's own, or one the service made)",
    "schema": {"type": "string"}}}}


class _Ingest:
    """One ingest request: the body read whole (a client still sending it would not see an
    early answer), a retry under a known Idempotency-Key answered from its record, else a 429
    if the index is backlogged, else the chunk parsed and queued: under the client's key, or
    (none sent) under one :meth:`IndexService.ingest` makes and remembers a short time."""

    def __init__(self, request: Request, response: Response, settings: Settings,
                 indexes: IndexService, role: Literal["train", "query"] | None,
                 key: str | None) -> None:
        self.request, self.response, self.settings = request, response, settings
        self.indexes, self.role = indexes, role
        self.key = None if key is None else checked_key(key)

    async def parse(self, name: str) -> tuple[ParsedChunk, str | None]:
        """The chunk, and the record of an earlier ingest under the key (None: first)."""
        kind = media_type(self.request)
        is_json = kind in ("application/json", "")
        if not is_json and kind not in ("application/octet-stream", "application/x-npz",
                                        "application/zip"):
            raise UnsupportedMediaType(f"Content-Type {kind!r} is not accepted; send "
                                       "application/json or application/octet-stream (.npz)",
                                       "Content-Type")
        body = await self.request.body()
        limit = self.settings.max_json_bytes
        if is_json and len(body) > limit:
            raise PayloadTooLarge(f"JSON bodies are limited to {limit} bytes "
                                  "(HASHSTREAM_MAX_JSON_BYTES); send bulk chunks as .npz "
                                  "(application/octet-stream)", "body")
        seen = (None if self.key is None
                else await run_in_threadpool(self.indexes.ingest_record, name, self.key))
        if seen is None:
            await run_in_threadpool(self.indexes.check_backlog, name,
                                    self.settings.backlog_limits())
        parse = parse_json_chunk if is_json else parse_npz_chunk
        chunk = await run_in_threadpool(parse, body, self.role or "train",
                                        self.settings.chunk_limits())
        return chunk, seen

    async def queue(self, name: str, chunk: ParsedChunk, seen: str | None) -> dict[str, Any]:
        if self.key is None:
            return await run_in_threadpool(self.indexes.ingest, name, chunk,
                                           self.settings.server_key_lifetime_s)
        answer, again = await run_in_threadpool(
            self.indexes.ingest_once, name, chunk, self.key,
            self.settings.ingest_key_lifetime_s, seen)
        if again:
            self.response.headers["Idempotent-Replayed"] = "true"
        return answer


async def _ingest(
        request: Request, response: Response, indexes: IndexesDep, settings: SettingsDep,
        role: Literal["train", "query"] | None = Query(
            None, description="role of an .npz chunk (JSON bodies carry it inside)"),
        idempotency_key: str | None = Header(None, alias=HEADER, description=_KEY_DOC),
) -> _Ingest:
    return _Ingest(request, response, settings, indexes, role, idempotency_key)


IngestDep = Annotated[_Ingest, Depends(_ingest)]


@router.post("/indexes/{name}/ingest", status_code=202, response_model=IngestAccepted,
             response_model_exclude_none=True, openapi_extra=_BODY_DOC,
             summary="Queue a chunk for the next round",
             responses=responses(404, *JSON_BODY, 429, 503, notes=_UNKNOWN,
                                 headers=_UNKNOWN_HEADERS))
async def ingest(name: str, call: IngestDep) -> dict[str, Any]:
    chunk, seen = await call.parse(name)
    return await call.queue(name, chunk, seen)


@router.post("/ingest", status_code=202, response_model=IngestAccepted,
             response_model_exclude_none=True, openapi_extra=_BODY_DOC,
             summary="Queue a chunk for the default index (created on first use)",
             responses=responses(*JSON_BODY, 429, 503, notes=_UNKNOWN,
                                 headers=_UNKNOWN_HEADERS))
async def ingest_default(call: IngestDep) -> dict[str, Any]:
    name = call.settings.default_index
    chunk, seen = await call.parse(name)
    if seen is None:
        dim = int(chunk.features.shape[1])
        # Validate before creating the index: a rejected first chunk must not fix its dimension.
        await run_in_threadpool(validate_chunk, chunk, dim)
        await run_in_threadpool(call.indexes.ensure, name, dim)
    return await call.queue(name, chunk, seen)
