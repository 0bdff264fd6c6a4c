"""Single items: read one, delete one, delete a batch (and the short forms on the default
index)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from hashstream.api.deps import ItemsDep, SettingsDep, require_json
from hashstream.api.problems import JSON_BODY, responses
from hashstream.api.schemas import MIN_VERSION, DeletedItems, DeleteItems, ItemInfo
from hashstream.service.errors import NotFound
from hashstream.service.items import ItemService

router = APIRouter(tags=["items"])

_NOTES = {404: "No index of this name (field `name`), or no stored item with this id (field "
               "`item_id`)",
          409: "The item is in a partition this replica does not serve (HASHSTREAM_SERVE_"
               "PARTITIONS), or min_version is ahead of the committed version",
          503: "Redis is unreachable, or this replica did not reach the version the answer "
               "needs in time (field `min_version`, with Retry-After)"}
ONE_ERRORS = responses(404, 409, 422, 503, notes=_NOTES)
MANY_ERRORS = responses(404, 409, 503, *JSON_BODY, notes={
    **_NOTES, 404: "No index of this name (field `name`)",
    409: "Some ids are in partitions this replica does not serve (field `ids`)"})

DELETE_ONE = ("Delete one stored item: gone from every search once answered, and from the "
              "count in GET /indexes/{name}; an upsert of its id queued before the delete is "
              "cancelled, one ingested after it stores the id again. 404 when it is not "
              "stored.")
DELETE_MANY = ("Delete stored items: answers which ids this request deleted and which were "
               "unknown (not stored, not committed yet, or deleted already); see the single "
               "delete.")


def _delete_one(items: ItemService, name: str, item_id: int) -> dict[str, Any]:
    answer = items.delete(name, [item_id], "item_id")
    if not answer["deleted"]:
        raise NotFound(f"no stored item with id {item_id}", "item_id")
    return answer


@router.get("/indexes/{name}/items/{item_id}", response_model=ItemInfo,
            summary="One stored item: labels, code, model version and round",
            responses=ONE_ERRORS)
async def get_item(name: str, item_id: int, items: ItemsDep,
                   min_version: int | None = Query(None, ge=0, description=MIN_VERSION)
                   ) -> dict[str, Any]:
    return await run_in_threadpool(items.item, name, item_id, min_version)


@router.delete("/indexes/{name}/items/{item_id}", response_model=DeletedItems,
               summary="Delete one stored item", description=DELETE_ONE,
               responses=ONE_ERRORS)
async def delete_item(name: str, item_id: int, items: ItemsDep) -> dict[str, Any]:
    return await run_in_threadpool(_delete_one, items, name, item_id)


@router.post("/indexes/{name}/items/delete", response_model=DeletedItems,
             dependencies=[Depends(require_json)], summary="Delete stored items by id",
             description=DELETE_MANY, responses=MANY_ERRORS)
async def delete_items(name: str, body: DeleteItems, items: ItemsDep) -> dict[str, Any]:
    return await run_in_threadpool(items.delete, name, body.ids)


@router.get("/items/{item_id}", response_model=ItemInfo,
            summary="One stored item of the default index", responses=ONE_ERRORS)
async def get_default_item(item_id: int, items: ItemsDep, settings: SettingsDep,
                           min_version: int | None = Query(None, ge=0,
                                                           description=MIN_VERSION)
                           ) -> dict[str, Any]:
    return await run_in_threadpool(items.item, settings.default_index, item_id, min_version)


@router.delete("/items/{item_id}", response_model=DeletedItems,
               summary="Delete one stored item of the default index", description=DELETE_ONE,
               responses=ONE_ERRORS)
async def delete_default_item(item_id: int, items: ItemsDep,
                              settings: SettingsDep) -> dict[str, Any]:
    return await run_in_threadpool(_delete_one, items, settings.default_index, item_id)


@router.post("/items/delete", response_model=DeletedItems,
             dependencies=[Depends(require_json)],
             summary="Delete stored items of the default index", description=DELETE_MANY,
             responses=MANY_ERRORS)
async def delete_default_items(body: DeleteItems, items: ItemsDep,
                               settings: SettingsDep) -> dict[str, Any]:
    return await run_in_threadpool(items.delete, settings.default_index, body.ids)
