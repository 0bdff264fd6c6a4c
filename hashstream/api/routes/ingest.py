"""Ingest: JSON bodies for small chunks, .npz bodies (application/octet-stream) for bulk."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from hashstream.api.deps import IndexesDep, SettingsDep
from hashstream.api.schemas import IngestAccepted
from hashstream.service.chunks import Chunk, parse_json_chunk, parse_npz_chunk, validate_chunk
from hashstream.service.errors import ServiceError

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
                    "labels": {"type": "array", "items": {"type": "array",
                                                          "items": {"type": "integer"}},
                               "description": "class ids of each item"},
                    "ids": {"type": "array", "items": {"type": "integer"}},
                    "role": {"type": "string", "enum": ["train", "query"]}}}},
            "application/octet-stream": {"schema": {
                "type": "string", "format": "binary",
                "description": ".npz with features (n × d), labels (n × c 0/1), optional ids"}},
        },
    }
}


class UnsupportedMediaType(ServiceError):
    status = 415
    title = "Unsupported media type"


async def _parse(request: Request, role: Literal["train", "query"] | None) -> Chunk:
    body = await request.body()
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind in ("application/json", ""):
        return await run_in_threadpool(parse_json_chunk, body, role or "train")
    if kind in ("application/octet-stream", "application/x-npz", "application/zip"):
        return await run_in_threadpool(parse_npz_chunk, body, role or "train")
    raise UnsupportedMediaType(f"Content-Type {kind!r} is not accepted; send application/json "
                               "or application/octet-stream (.npz)", "Content-Type")


@router.post("/indexes/{name}/ingest", status_code=202, response_model=IngestAccepted,
             response_model_exclude_none=True, openapi_extra=_BODY_DOC,
             summary="Queue a chunk for the next round")
async def ingest(name: str, request: Request, indexes: IndexesDep,
                 role: Literal["train", "query"] | None = Query(
                     None, description="role of an .npz chunk (JSON bodies carry it inside)"),
                 ) -> dict[str, Any]:
    chunk = await _parse(request, role)
    return await run_in_threadpool(indexes.ingest, name, chunk)


@router.post("/ingest", status_code=202, response_model=IngestAccepted,
             response_model_exclude_none=True, openapi_extra=_BODY_DOC,
             summary="Queue a chunk for the default index (created on first use)")
async def ingest_default(request: Request, indexes: IndexesDep, settings: SettingsDep,
                         role: Literal["train", "query"] | None = Query(None)) -> dict[str, Any]:
    chunk = await _parse(request, role)
    name = settings.default_index
    dim = int(chunk.features.shape[1])
    # Validate before creating the index: a rejected first chunk must not fix its dimension.
    await run_in_threadpool(validate_chunk, chunk, dim)
    await run_in_threadpool(indexes.ensure, name, dim)
    return await run_in_threadpool(indexes.ingest, name, chunk)
