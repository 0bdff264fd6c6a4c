"""The hot routes without FastAPI's per-request machinery.

A search (``/indexes/{name}/search`` and ``/search``) is the request users make most, and
FastAPI's routing and parameter solving cost more than a single-vector search itself (at 1M
items ~0.7 ms against a 0.5 ms service call, measured in bench/RESULTS.md). This ASGI layer
answers such a request with exactly what the FastAPI route would answer: the same auth check,
the same code in the same thread pool, the app's own exception handlers for errors, and the
route set on the scope, so metrics label it as before. A GET is taken when every query
parameter is plain — a known name given once, integers as plain digits, ``modality``/
``target`` one of their values; a POST always (its route reads only the body). Anything else
(a repeated or unknown parameter, ``k=1.0``, a HEAD, a root path) goes to the FastAPI route,
which gives the same answer for the plain requests too and the canonical 422 for the rest;
``/openapi.json`` still documents the routes.
"""

from __future__ import annotations

import re
from inspect import isawaitable
from typing import Any
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hashstream.api.deps import require_api_key
from hashstream.api.routes.search import search_get_answer, search_post_answer
from hashstream.api.search_answer import wants_npz
from hashstream.service.search_options import SearchOptions

_NAMED = re.compile(r"/indexes/([^/]+)/search")  # as Starlette compiles "{name}"
_DIGITS = re.compile(r"0|[1-9][0-9]{0,14}")  # a plain non-negative integer, as pydantic reads it
_INTEGERS = frozenset({"item", "k", "min_version", "max_distance"})
_CHOICES = {"modality": frozenset({"image", "text"}),
            "target": frozenset({"pairs", "image", "text"})}
_NAMED_PARAMS = frozenset({"vector", "item", "k", "modality", "target", "min_version",
                           "labels_any", "labels_all", "max_distance"})
_DEFAULT_PARAMS = _NAMED_PARAMS - {"modality", "target"}


def plain_query(query_string: bytes, allowed: frozenset[str]) -> dict[str, str] | None:
    """The query's parameters when every one is plain (see the module docstring); None when
    the FastAPI route must read them. Decoded as Starlette decodes them."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    args = dict(pairs)
    if len(args) != len(pairs) or not allowed.issuperset(args):
        return None
    for key, value in args.items():
        if key in _INTEGERS and not _DIGITS.fullmatch(value):
            return None
        if key in _CHOICES and value not in _CHOICES[key]:
            return None
    return args


class SearchFastPath:
    """Pure ASGI layer in front of the router that answers the searches it can itself;
    ``named`` and ``default`` are the GET and POST routes of ``/indexes/{name}/search`` and
    ``/search`` by method. ``answered`` counts them (the tests check the path is taken)."""

    def __init__(self, app: ASGIApp, named: dict[str, APIRoute],
                 default: dict[str, APIRoute]) -> None:
        self.app = app
        self.named = named
        self.default = default
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method") if scope["type"] == "http" else None
        if method not in ("GET", "POST") or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/search":
            name, routes, allowed = None, self.default, _DEFAULT_PARAMS
        elif (match := _NAMED.fullmatch(path)) is not None:
            name, routes, allowed = match.group(1), self.named, _NAMED_PARAMS
        else:
            await self.app(scope, receive, send)
            return
        args: dict[str, str] = {}
        if method == "GET":
            plain = plain_query(scope.get("query_string", b""), allowed)
            if plain is None:
                await self.app(scope, receive, send)
                return
            args = plain
        route = routes[method]
        self.answered += 1
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {} if name is None else {"name": name}
        request = Request(scope, receive)
        app: Starlette = scope["app"]
        try:
            settings = app.state.settings
            index = settings.default_index if name is None else name
            await require_api_key(request, settings)
            if method == "POST":
                response = await search_post_answer(index, request, app.state.search, settings)
            else:
                response = await self._get(index, args, request, app.state.search)
        except Exception as exc:
            response = await _handled(app, request, exc)
        await response(scope, receive, send)

    async def _get(self, index: str, args: dict[str, str], request: Request,
                   search: Any) -> Response:
        options = SearchOptions.from_query(args.get("labels_any"), args.get("labels_all"),
                                           _int(args.get("max_distance")))
        content, kind = await run_in_threadpool(
            search_get_answer, index, search, args.get("vector"), _int(args.get("item")),
            int(args.get("k", "10")), args.get("modality", "image"),
            args.get("target", "pairs"), _int(args.get("min_version")), options,
            wants_npz(request))
        return Response(content, media_type=kind)


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


async def _handled(app: Starlette, request: Request, exc: Exception) -> Any:
    """The app's exception handler's answer to ``exc`` (the nearest class in its MRO), as the
    router's exception middleware would give it; re-raised when the app has none."""
    for cls in type(exc).__mro__:
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            answer = handler(request, exc)
            return await answer if isawaitable(answer) else answer
    raise exc
