"""Search by vector, by stored item, and in batches; ranked by Hamming distance."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from hashstream.api.deps import SearchDep, SettingsDep, require_json
from hashstream.api.problems import JSON_BODY, responses
from hashstream.api.schemas import (
    LABELS_ALL,
    LABELS_ANY,
    MAX_DISTANCE,
    MIN_VERSION,
    SearchRequest,
    SearchResponse,
)
from hashstream.service.errors import InvalidInput
from hashstream.service.search_options import SearchOptions

router = APIRouter(tags=["search"])

_NOTES = {404: "No index of this name (field `name`), or no stored item with this id (field "
               "`item`)",
          409: "min_version is ahead of the index's committed version, or the index has no "
               "committed round yet",
          503: "Redis is unreachable, or (field `min_version`, with Retry-After) this replica "
               "did not reach min_version within HASHSTREAM_REPLICA_WAIT_MS"}
GET_ERRORS = responses(404, 409, 422, 503, notes=_NOTES)
POST_ERRORS = responses(404, 409, 503, *JSON_BODY, notes=_NOTES)


def _get(name: str, search: Any, vector: str | None, item: int | None, k: int,
         modality: str = "image", target: str = "pairs", min_version: int | None = None,
         options: SearchOptions | None = None) -> dict[str, Any]:
    if (vector is None) == (item is None):
        raise InvalidInput("give exactly one of vector=v1,v2,… or item=ID", "vector")
    if item is not None:
        version, hits = search.search_item(name, item, k, min_version, options)
        results = [hits]
    else:
        assert vector is not None
        version, results = search.search_vector_text(name, vector, k, modality, target,
                                                     min_version, options)
    return _answer(name, search, version, results)


def _options(labels_any: str | None, labels_all: str | None,
             max_distance: int | None) -> SearchOptions:
    return SearchOptions.from_query(labels_any, labels_all, max_distance)


def _answer(name: str, search: Any, version: int, results: list[Any]) -> dict[str, Any]:
    out = {"index": name, "model_version": version, "results": results}
    partitions = search.partitions_served(name)
    if partitions is not None:
        out["partitions"] = partitions
    return out


def _post(name: str, search: Any, body: SearchRequest, max_batch: int) -> dict[str, Any]:
    given = {f: getattr(body, f) for f in ("features", "image", "text", "tokens")
             if getattr(body, f) is not None}
    if len(given) != 1:
        raise InvalidInput("give exactly one of features (or image), text, tokens", "features")
    field_name, rows = next(iter(given.items()))
    if len(rows) > max_batch:
        raise InvalidInput(f"at most {max_batch} query vectors per request", field_name)
    flt = body.filter
    options = SearchOptions(
        tuple(flt.labels_any) if flt is not None and flt.labels_any is not None else None,
        tuple(flt.labels_all) if flt is not None and flt.labels_all is not None else None,
        body.max_distance)
    version, results = search.search_rows(name, field_name, rows, body.k, body.target,
                                          body.min_version, options)
    return _answer(name, search, version, results)


@router.get("/indexes/{name}/search", response_model=SearchResponse,
            summary="k nearest items of one vector or one stored item", responses=GET_ERRORS)
async def search_get(name: str, search: SearchDep,
                     vector: str | None = Query(None, description="v1,v2,… (d numbers)"),
                     item: int | None = Query(None, description="id of a stored item"),
                     k: int = Query(10, description="neighbours, 1..HASHSTREAM_MAX_K"),
                     modality: Literal["image", "text"] = Query(
                         "image", description="cross-modal: which network encodes the vector"),
                     target: Literal["pairs", "image", "text"] = Query(
                         "pairs", description="cross-modal: which codes of the pairs to rank"),
                     min_version: int | None = Query(None, ge=0, description=MIN_VERSION),
                     labels_any: str | None = Query(None, description=LABELS_ANY + ", e.g. 3,5"),
                     labels_all: str | None = Query(None, description=LABELS_ALL + ", e.g. 3,7"),
                     max_distance: int | None = Query(None, ge=0, description=MAX_DISTANCE),
                     ) -> dict[str, Any]:
    options = _options(labels_any, labels_all, max_distance)
    return await run_in_threadpool(_get, name, search, vector, item, k, modality,
                                   target, min_version, options)


@router.post("/indexes/{name}/search", response_model=SearchResponse,
             dependencies=[Depends(require_json)], responses=POST_ERRORS,
             summary="k nearest items of each vector of a batch")
async def search_post(name: str, body: SearchRequest, search: SearchDep,
                      settings: SettingsDep) -> dict[str, Any]:
    return await run_in_threadpool(_post, name, search, body,
                                   settings.max_batch_queries)


@router.get("/search", response_model=SearchResponse, summary="Search the default index",
            responses=GET_ERRORS)
async def search_default_get(search: SearchDep, settings: SettingsDep,
                             vector: str | None = Query(None), item: int | None = Query(None),
                             k: int = Query(10, description="neighbours, 1..HASHSTREAM_MAX_K"),
                             min_version: int | None = Query(None, ge=0,
                                                             description=MIN_VERSION),
                             labels_any: str | None = Query(None, description=LABELS_ANY),
                             labels_all: str | None = Query(None, description=LABELS_ALL),
                             max_distance: int | None = Query(None, ge=0,
                                                              description=MAX_DISTANCE),
                             ) -> dict[str, Any]:
    options = _options(labels_any, labels_all, max_distance)
    return await run_in_threadpool(_get, settings.default_index, search, vector,
                                   item, k, "image", "pairs", min_version, options)


@router.post("/search", response_model=SearchResponse, summary="Batch search the default index",
             dependencies=[Depends(require_json)], responses=POST_ERRORS)
async def search_default_post(body: SearchRequest, search: SearchDep,
                              settings: SettingsDep) -> dict[str, Any]:
    return await run_in_threadpool(_post, settings.default_index, search, body,
                                   settings.max_batch_queries)
