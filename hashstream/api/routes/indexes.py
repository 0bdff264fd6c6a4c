"""Index resources: create, list, describe, delete, and their round records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from hashstream.api.deps import IndexesDep
from hashstream.api.problems import responses
from hashstream.api.schemas import CreateIndex, IndexInfo

router = APIRouter(tags=["indexes"])


@router.post("/indexes", status_code=201, response_model=IndexInfo, summary="Create an index",
             responses=responses(400, 409, 413, 422, notes={409: "An index of this name exists "
                                                                 "(field `name`)"}))
async def create_index(body: CreateIndex, indexes: IndexesDep) -> dict[str, Any]:
    method = body.method_name()
    await run_in_threadpool(indexes.create_from_request, body.name, body.dim,
                            body.solver_settings(), body.cross_modal_settings(),
                            body.max_classes, method, body.kind, body.partitions,
                            body.queue_dtype)
    return await run_in_threadpool(indexes.describe, body.name)


@router.get("/indexes", summary="All indexes")
async def list_indexes(indexes: IndexesDep) -> dict[str, list[dict[str, Any]]]:
    names = await run_in_threadpool(indexes.names)
    return {"indexes": [await run_in_threadpool(indexes.describe, n) for n in names]}


@router.get("/indexes/{name}", response_model=IndexInfo, summary="One index",
            responses=responses(404))
async def get_index(name: str, indexes: IndexesDep) -> dict[str, Any]:
    return await run_in_threadpool(indexes.describe, name)


@router.delete("/indexes/{name}", status_code=204, summary="Delete an index and all its state",
               responses=responses(404, 422))
async def delete_index(name: str, indexes: IndexesDep) -> Response:
    await run_in_threadpool(indexes.delete, name)
    return Response(status_code=204)


@router.get("/indexes/{name}/rounds", summary="Every round's record (metrics, losses, timings)",
            responses=responses(404, 422))
async def rounds(name: str, indexes: IndexesDep,
                 since: int = Query(0, ge=0, le=2**31 - 1,
                                    description="only rounds after this one")
                 ) -> dict[str, Any]:
    return await run_in_threadpool(indexes.rounds, name, since)
