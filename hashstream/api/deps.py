"""Typed dependencies of the routes: settings, services, auth.

Each is ``async def``: none blocks, and FastAPI runs a plain ``def`` dependency in its thread
pool (a thread hop per dependency per request: most of a small search's time)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from hashstream.service.errors import ServiceError, UnsupportedMediaType
from hashstream.service.items import ItemService
from hashstream.service.registry import IndexService
from hashstream.service.replicas import SearchService
from hashstream.service.settings import Settings


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_indexes(request: Request) -> IndexService:
    return request.app.state.indexes  # type: ignore[no-any-return]


async def get_search(request: Request) -> SearchService:
    return request.app.state.search  # type: ignore[no-any-return]


async def get_items(request: Request) -> ItemService:
    return request.app.state.items  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
IndexesDep = Annotated[IndexService, Depends(get_indexes)]
SearchDep = Annotated[SearchService, Depends(get_search)]
ItemsDep = Annotated[ItemService, Depends(get_items)]


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """When API keys are configured, demand ``Authorization: Bearer <key>`` (constant time)."""
    keys = settings.api_key_list()
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    supplied = token.strip().encode()
    ok = False
    for key in keys:  # compare against every key so timing does not reveal which matched
        ok |= hmac.compare_digest(supplied, key.encode())
    if scheme.lower() != "bearer" or not ok:
        raise Unauthorized("missing or invalid API key (Authorization: Bearer <key>)",
                           "Authorization")


def media_type(request: Request) -> str:
    """The request's media type without parameters ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def require_json(request: Request) -> None:
    """JSON routes answer a wrong Content-Type with 415, as ingest does."""
    kind = media_type(request)
    if kind not in ("", "application/json") and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {kind!r} is not accepted; send "
                                   "application/json", "Content-Type")
