"""Dead letters of an index: chunks whose rounds kept failing, to inspect, requeue or delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from hashstream.api.deps import IndexesDep
from hashstream.api.problems import responses
from hashstream.service.dead_letters import DeadLetters

router = APIRouter(tags=["dead letters"])


def _dead(request: Request) -> DeadLetters:
    return request.app.state.dead_letters  # type: ignore[no-any-return]


@router.get("/indexes/{name}/dead-letters", summary="Chunks moved aside after failed rounds",
            responses=responses(404, 422))
async def list_dead_letters(name: str, request: Request, indexes: IndexesDep,
                            after: str | None = Query(None, description="page after this id"),
                            limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    await run_in_threadpool(indexes.config, name)
    return await run_in_threadpool(_dead(request).list, name, after, limit)


@router.post("/indexes/{name}/dead-letters/{entry_id}/requeue", status_code=202,
             summary="Put a dead-lettered chunk back on the ingest queue",
             responses=responses(404, 422))
async def requeue_dead_letter(name: str, entry_id: str, request: Request,
                              indexes: IndexesDep) -> dict[str, Any]:
    await run_in_threadpool(indexes.config, name)
    return await run_in_threadpool(_dead(request).requeue, name, entry_id)


@router.delete("/indexes/{name}/dead-letters/{entry_id}", status_code=204,
               summary="Discard a dead-lettered chunk", responses=responses(404, 422))
async def delete_dead_letter(name: str, entry_id: str, request: Request,
                             indexes: IndexesDep) -> Response:
    await run_in_threadpool(indexes.config, name)
    await run_in_threadpool(_dead(request).delete, name, entry_id)
    return Response(status_code=204)
