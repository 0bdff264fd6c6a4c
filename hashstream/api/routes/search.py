"""Search by vector, by stored item, and in batches; ranked by Hamming distance."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from hashstream.api.deps import IndexesDep, SearchDep, SettingsDep
from hashstream.api.schemas import SearchRequest, SearchResponse
from hashstream.service.errors import InvalidInput

router = APIRouter(tags=["search"])


def _parse_vector(text: str) -> np.ndarray[Any, Any]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise InvalidInput("vector must be comma-separated numbers", "vector") from exc
    return np.asarray([values], dtype=np.float32)


def _get(name: str, indexes: Any, search: Any, vector: str | None, item: int | None,
         k: int) -> dict[str, Any]:
    if (vector is None) == (item is None):
        raise InvalidInput("give exactly one of vector=v1,v2,… or item=ID", "vector")
    if item is not None:
        version, hits = search.search_item(name, item, k)
        results = [hits]
    else:
        assert vector is not None
        dim = indexes.config(name).dim
        version, results = search.search_vectors(name, _parse_vector(vector), k, dim)
    return {"index": name, "model_version": version, "results": results}


def _post(name: str, indexes: Any, search: Any, body: SearchRequest,
          max_batch: int) -> dict[str, Any]:
    if len(body.features) > max_batch:
        raise InvalidInput(f"at most {max_batch} query vectors per request", "features")
    try:
        features = np.asarray(body.features, dtype=np.float32)
    except ValueError as exc:
        raise InvalidInput("features must be equal-length vectors", "features") from exc
    dim = indexes.config(name).dim
    version, results = search.search_vectors(name, features, body.k, dim)
    return {"index": name, "model_version": version, "results": results}


@router.get("/indexes/{name}/search", response_model=SearchResponse,
            summary="k nearest items of one vector or one stored item")
async def search_get(name: str, indexes: IndexesDep, search: SearchDep,
                     vector: str | None = Query(None, description="v1,v2,… (d numbers)"),
                     item: int | None = Query(None, description="id of a stored item"),
                     k: int = Query(10, ge=1)) -> dict[str, Any]:
    return await run_in_threadpool(_get, name, indexes, search, vector, item, k)


@router.post("/indexes/{name}/search", response_model=SearchResponse,
             summary="k nearest items of each vector of a batch")
async def search_post(name: str, body: SearchRequest, indexes: IndexesDep, search: SearchDep,
                      settings: SettingsDep) -> dict[str, Any]:
    return await run_in_threadpool(_post, name, indexes, search, body,
                                   settings.max_batch_queries)


@router.get("/search", response_model=SearchResponse, summary="Search the default index")
async def search_default_get(indexes: IndexesDep, search: SearchDep, settings: SettingsDep,
                             vector: str | None = Query(None), item: int | None = Query(None),
                             k: int = Query(10, ge=1)) -> dict[str, Any]:
    return await run_in_threadpool(_get, settings.default_index, indexes, search, vector,
                                   item, k)


@router.post("/search", response_model=SearchResponse, summary="Batch search the default index")
async def search_default_post(body: SearchRequest, indexes: IndexesDep, search: SearchDep,
                              settings: SettingsDep) -> dict[str, Any]:
    return await run_in_threadpool(_post, settings.default_index, indexes, search, body,
                                   settings.max_batch_queries)
