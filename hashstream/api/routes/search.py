"""Search by vector, by stored item, and in batches; ranked by Hamming distance.

The hot path builds no pydantic object per hit and re-validates nothing: each route returns
its answer as bytes (:mod:`hashstream.api.search_answer`: orjson from the hit arrays, or an
``.npz`` when the client sends ``Accept: application/x-npz``). ``response_model`` stays on
every route, so ``/openapi.json`` documents ``SearchResponse`` as before. A POST body is JSON
(``SearchRequest``, validated by pydantic from the raw bytes) or an ``.npz`` of the same
fields (:mod:`hashstream.service.search_body`), for large batches.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from hashstream.api.deps import SearchDep, SettingsDep, media_type
from hashstream.api.problems import JSON_BODY, responses
from hashstream.api.schemas import (
    LABELS_ALL,
    LABELS_ANY,
    MAX_DISTANCE,
    MIN_VERSION,
    TIES,
    SearchRequest,
    SearchResponse,
)
from hashstream.api.search_answer import JSON, NPZ, answer, wants_npz
from hashstream.service.errors import InvalidInput, UnsupportedMediaType
from hashstream.service.replicas import SearchService
from hashstream.service.search_body import BatchSearch, one_query_field, read_npz_search
from hashstream.service.search_hits import SearchHits
from hashstream.service.search_options import SearchOptions, Ties
from hashstream.service.settings import Settings

router = APIRouter(tags=["search"])

_NOTES = {404: "No index of this name (field `name`), or no stored item with this id (field "
               "`item`)",
          409: "min_version is ahead of the index's committed version, or the index has no "
               "committed round yet",
          503: "Redis is unreachable, or (field `min_version`, with Retry-After) this replica "
               "did not reach min_version within HASHSTREAM_REPLICA_WAIT_MS"}
_NPZ_ANSWER: dict[int | str, dict[str, Any]] = {200: {"content": {NPZ: {"schema": {
    "type": "string", "format": "binary",
    "description": "with Accept: application/x-npz: ids, distances, model_versions (q × w, "
    "−1 past a query's hits), counts, labels + label_offsets (each hit's labels, "
    "concatenated), model_version, index, partitions (partitioned indexes)"}}}}}
GET_ERRORS = {**_NPZ_ANSWER, **responses(404, 409, 422, 503, notes=_NOTES)}
POST_ERRORS = {**_NPZ_ANSWER, **responses(404, 409, 503, *JSON_BODY, notes=_NOTES)}
_NPZ_BODIES = ("application/x-npz", "application/octet-stream", "application/zip")
_BODY_DOC: dict[str, Any] = {"requestBody": {"required": True, "content": {
    JSON: {"schema": {"$ref": "#/components/schemas/SearchRequest"}},
    "application/octet-stream": {"schema": {
        "type": "string", "format": "binary",
        "description": "large batches: an .npz of the JSON body's fields as arrays — one of "
        "features / image / text (q × d numbers) or tokens (q × T word ids, −1 pads); "
        "optional k, min_version, max_distance (integers), target, ties (text), labels_any, "
        "labels_all (1-d, the index's label type). Also taken as application/x-npz (as "
        "ingest takes .npz chunks)"}}}}}


def _get(name: str, search: SearchService, vector: str | None, item: int | None, k: int,
         modality: str, target: str, min_version: int | None, options: SearchOptions,
         npz: bool) -> tuple[bytes, str]:
    if (vector is None) == (item is None):
        raise InvalidInput("give exactly one of vector=v1,v2,… or item=ID", "vector")
    hits: SearchHits
    if item is not None:
        hits = search.search_item(name, item, k, min_version, options)
    else:
        assert vector is not None
        hits = search.search_vector_text(name, vector, k, modality, target, min_version,
                                         options)
    return answer(name, hits, npz)


def _json_batch(body: bytes) -> BatchSearch:
    """The batch search of a JSON body; FastAPI's validation errors (400 for a body that is
    empty or no JSON, 422 naming the field) for one that is not a ``SearchRequest``."""
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",),
                                       "msg": "Field required", "input": None}])
    try:
        request = SearchRequest.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors()]) from None
    field_name, rows = one_query_field({f: getattr(request, f) for f in
                                        ("features", "image", "text", "tokens")
                                        if getattr(request, f) is not None})
    flt = request.filter
    options = SearchOptions(
        tuple(flt.labels_any) if flt is not None and flt.labels_any is not None else None,
        tuple(flt.labels_all) if flt is not None and flt.labels_all is not None else None,
        request.max_distance, ties=request.ties)
    return BatchSearch(field_name, rows, request.k, request.target, request.min_version,
                       options)


def _post(name: str, search: SearchService, body: bytes, npz_body: bool, settings: Settings,
          npz: bool) -> tuple[bytes, str]:
    batch = (read_npz_search(body, settings.chunk_limits().max_decompressed_bytes)
             if npz_body else _json_batch(body))
    if batch.n_queries > settings.max_batch_queries:
        raise InvalidInput(f"at most {settings.max_batch_queries} query vectors per request",
                           batch.field_name)
    hits = search.search_rows(name, batch.field_name, batch.rows, batch.k, batch.target,
                              batch.min_version, batch.options)
    return answer(name, hits, npz)


async def search_get_response(name: str, request: Request, search: SearchService, *,
                              vector: str | None, item: int | None, k: int,
                              min_version: int | None, labels_any: str | None,
                              labels_all: str | None, max_distance: int | None,
                              modality: str = "image", target: str = "pairs",
                              ties: Ties = "insertion") -> Response:
    """The answer of a GET search from its query parameters (also run by
    :mod:`hashstream.api.search_fast_path`): the label filter read, the search in the thread
    pool. The default index's route has no ``modality`` or ``target``."""
    options = SearchOptions.from_query(labels_any, labels_all, max_distance, ties)
    content, kind = await run_in_threadpool(_get, name, search, vector, item, k, modality,
                                            target, min_version, options, wants_npz(request))
    return Response(content, media_type=kind)


async def search_post_answer(name: str, request: Request, search: SearchService,
                             settings: Settings) -> Response:
    """The answer of a POST search (JSON or .npz body; also run by
    :mod:`hashstream.api.search_fast_path`)."""
    kind = media_type(request)
    npz_body = kind in _NPZ_BODIES
    if not npz_body and kind not in ("", JSON) and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {kind!r} is not accepted; send "
                                   "application/json or application/x-npz (.npz)",
                                   "Content-Type")
    body = await request.body()
    content, kind = await run_in_threadpool(_post, name, search, body, npz_body, settings,
                                            wants_npz(request))
    return Response(content, media_type=kind)


@router.get("/indexes/{name}/search", response_model=SearchResponse,
            summary="k nearest items of one vector or one stored item", responses=GET_ERRORS)
async def search_get(name: str, request: Request, search: SearchDep,
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
                     ties: Literal["insertion", "projection"] = Query(
                         "insertion", description=TIES),
                     ) -> Response:
    return await search_get_response(
        name, request, search, vector=vector, item=item, k=k, modality=modality,
        target=target, min_version=min_version, labels_any=labels_any, labels_all=labels_all,
        max_distance=max_distance, ties=ties)


@router.post("/indexes/{name}/search", response_model=SearchResponse, responses=POST_ERRORS,
             openapi_extra=_BODY_DOC, summary="k nearest items of each vector of a batch")
async def search_post(name: str, request: Request, search: SearchDep,
                      settings: SettingsDep) -> Response:
    return await search_post_answer(name, request, search, settings)


@router.get("/search", response_model=SearchResponse, summary="Search the default index",
            responses=GET_ERRORS)
async def search_default_get(request: Request, search: SearchDep, settings: SettingsDep,
                             vector: str | None = Query(None), item: int | None = Query(None),
                             k: int = Query(10, description="neighbours, 1..HASHSTREAM_MAX_K"),
                             min_version: int | None = Query(None, ge=0,
                                                             description=MIN_VERSION),
                             labels_any: str | None = Query(None, description=LABELS_ANY),
                             labels_all: str | None = Query(None, description=LABELS_ALL),
                             max_distance: int | None = Query(None, ge=0,
                                                              description=MAX_DISTANCE),
                             ties: Literal["insertion", "projection"] = Query(
                                 "insertion", description=TIES),
                             ) -> Response:
    return await search_get_response(
        settings.default_index, request, search, vector=vector, item=item, k=k,
        min_version=min_version, labels_any=labels_any, labels_all=labels_all,
        max_distance=max_distance, ties=ties)


@router.post("/search", response_model=SearchResponse, summary="Batch search the default index",
             responses=POST_ERRORS, openapi_extra=_BODY_DOC)
async def search_default_post(request: Request, search: SearchDep,
                              settings: SettingsDep) -> Response:
    return await search_post_answer(settings.default_index, request, search, settings)


def _body_components() -> dict[str, Any]:
    """The component schemas FastAPI makes of ``SearchRequest`` as a route's JSON body (built
    by FastAPI itself, on a throwaway app, so they read exactly as for any body model)."""
    probe = FastAPI()

    @probe.post("/")
    def body_of(body: SearchRequest) -> None:  # pragma: no cover - never called
        return None

    schemas: dict[str, Any] = probe.openapi()["components"]["schemas"]
    return {k: v for k, v in schemas.items() if k in ("SearchRequest", "SearchFilter")}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the components the POST bodies refer to (their routes read the body
    themselves, JSON or .npz, so FastAPI does not collect ``SearchRequest`` on its own)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model_name, model_schema in _body_components().items():
        components.setdefault(model_name, model_schema)
    return schema

