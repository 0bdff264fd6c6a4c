"""The hot route without FastAPI's per-request machinery.

A single-vector search (``GET /indexes/{name}/search`` and ``GET /search``) is the request an
interactive user makes most, and FastAPI's routing and query-parameter solving cost more than
the search itself (at 1M items ~0.7 ms against a 0.5 ms service call, measured in
bench/RESULTS.md). This ASGI layer answers such a request when every query parameter is plain
— a known name given once, integers as plain digits, ``modality``/``target`` one of their
values — with exactly what the FastAPI route would answer: the same auth check, the same
service call in the same thread pool, the app's own exception handlers for errors, and the
route set on the scope, so metrics label it as before. Anything else (a repeated or unknown
parameter, ``k=1.0``, a HEAD, a root path) goes to the FastAPI route, which gives the same
answer for the plain requests too and the canonical 422 for the rest; ``/openapi.json`` still
documents the route.
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
from hashstream.api.routes.search import search_get_answer
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
    """Pure ASGI layer in front of the router that answers plain single-vector searches
    itself; ``answered`` counts them (the tests check the path is taken)."""

    def __init__(self, app: ASGIApp, named_route: APIRoute, default_route: APIRoute) -> None:
        self.app = app
        self.named_route = named_route
        self.default_route = default_route
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/search":
            name, route, allowed = None, self.default_route, _DEFAULT_PARAMS
        elif (match := _NAMED.fullmatch(path)) is not None:
            name, route, allowed = match.group(1), self.named_route, _NAMED_PARAMS
        else:
            await self.app(scope, receive, send)
            return
        args = plain_query(scope.get("query_string", b""), allowed)
        if args is None:
            await self.app(scope, receive, send)
            return
        self.answered += 1
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {} if name is None else {"name": name}
        request = Request(scope, receive)
        app: Starlette = scope["app"]
        try:
            settings = app.state.settings
            await require_api_key(request, settings)
            options = SearchOptions.from_query(args.get("labels_any"), args.get("labels_all"),
                                               _int(args.get("max_distance")))
            content, kind = await run_in_threadpool(
                search_get_answer, settings.default_index if name is None else name,
                app.state.search, args.get("vector"), _int(args.get("item")),
                int(args.get("k", "10")), args.get("modality", "image"),
                args.get("target", "pairs"), _int(args.get("min_version")), options,
                wants_npz(request))
            response = Response(content, media_type=kind)
        except Exception as exc:
            response = await _handled(app, request, exc)
        await response(scope, receive, send)


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
