"""Index resources: create, list, describe, delete, and their round records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from hashstream.api.deps import IndexesDep
from hashstream.api.schemas import CreateIndex, IndexInfo
from hashstream.service.cross_modal import CrossModalSettings
from hashstream.service.errors import InvalidInput
from hashstream.solver.settings import SDOHSettings

router = APIRouter(tags=["indexes"])


@router.post("/indexes", status_code=201, response_model=IndexInfo, summary="Create an index")
async def create_index(body: CreateIndex, indexes: IndexesDep) -> dict[str, Any]:
    try:
        settings = SDOHSettings.from_dict(body.solver_settings())
        cross = (CrossModalSettings.from_dict(body.cross_modal_settings())
                 if body.kind == "cross-modal" else None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(str(exc), "settings") from exc
    await run_in_threadpool(indexes.create, body.name, body.dim, settings, cross,
                            body.max_classes)
    return await run_in_threadpool(indexes.describe, body.name)


@router.get("/indexes", summary="All indexes")
async def list_indexes(indexes: IndexesDep) -> dict[str, list[dict[str, Any]]]:
    names = await run_in_threadpool(indexes.names)
    return {"indexes": [await run_in_threadpool(indexes.describe, n) for n in names]}


@router.get("/indexes/{name}", response_model=IndexInfo, summary="One index")
async def get_index(name: str, indexes: IndexesDep) -> dict[str, Any]:
    return await run_in_threadpool(indexes.describe, name)


@router.delete("/indexes/{name}", status_code=204, summary="Delete an index and all its state")
async def delete_index(name: str, indexes: IndexesDep) -> Response:
    await run_in_threadpool(indexes.delete, name)
    return Response(status_code=204)


@router.get("/indexes/{name}/rounds", summary="Every round's record (metrics, losses, timings)")
async def rounds(name: str, indexes: IndexesDep,
                 since: int = Query(0, ge=0, le=2**31 - 1,
                                    description="only rounds after this one")
                 ) -> dict[str, Any]:
    await run_in_threadpool(indexes.config, name)
    records = await run_in_threadpool(indexes.store.rounds, name, since, -1)
    queue = await run_in_threadpool(indexes.store.queue_depth, name)
    return {"index": name, "queue_depth": queue, "rounds": records}
