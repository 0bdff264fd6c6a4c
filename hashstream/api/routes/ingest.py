"""Ingest: JSON bodies for small chunks, .npz bodies (application/octet-stream) for bulk."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
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


async def _parse(request: Request, role: Literal["train", "query"] | None,
                 settings: Settings, indexes: IndexService, name: str) -> ParsedChunk:
    """The body, read whole (a client still sending it would not see an early answer), then
    refused with 429 if the index is backlogged, else parsed."""
    kind = media_type(request)
    is_json = kind in ("application/json", "")
    if not is_json and kind not in ("application/octet-stream", "application/x-npz",
                                    "application/zip"):
        raise UnsupportedMediaType(f"Content-Type {kind!r} is not accepted; send "
                                   "application/json or application/octet-stream (.npz)",
                                   "Content-Type")
    body = await request.body()
    if is_json and len(body) > settings.max_json_bytes:
        raise PayloadTooLarge(f"JSON bodies are limited to {settings.max_json_bytes} bytes "
                              "(HASHSTREAM_MAX_JSON_BYTES); send bulk chunks as .npz "
                              "(application/octet-stream)", "body")
    await run_in_threadpool(indexes.check_backlog, name, settings.backlog_limits())
    parse = parse_json_chunk if is_json else parse_npz_chunk
    return await run_in_threadpool(parse, body, role or "train", settings.chunk_limits())


@router.post("/indexes/{name}/ingest", status_code=202, response_model=IngestAccepted,
             response_model_exclude_none=True, openapi_extra=_BODY_DOC,
             summary="Queue a chunk for the next round",
             responses=responses(404, *JSON_BODY, 429))
async def ingest(name: str, request: Request, indexes: IndexesDep, settings: SettingsDep,
                 role: Literal["train", "query"] | None = Query(
                     None, description="role of an .npz chunk (JSON bodies carry it inside)"),
                 ) -> dict[str, Any]:
    chunk = await _parse(request, role, settings, indexes, name)
    return await run_in_threadpool(indexes.ingest, name, chunk)


@router.post("/ingest", status_code=202, response_model=IngestAccepted,
             response_model_exclude_none=True, openapi_extra=_BODY_DOC,
             summary="Queue a chunk for the default index (created on first use)",
             responses=responses(*JSON_BODY, 429))
async def ingest_default(request: Request, indexes: IndexesDep, settings: SettingsDep,
                         role: Literal["train", "query"] | None = Query(None)) -> dict[str, Any]:
    name = settings.default_index
    chunk = await _parse(request, role, settings, indexes, name)
    dim = int(chunk.features.shape[1])
    # Validate before creating the index: a rejected first chunk must not fix its dimension.
    await run_in_threadpool(validate_chunk, chunk, dim)
    await run_in_threadpool(indexes.ensure, name, dim)
    return await run_in_threadpool(indexes.ingest, name, chunk)
