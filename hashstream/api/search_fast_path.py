"""The hot routes without FastAPI's per-request machinery.

A search (``/indexes/{name}/search`` and ``/search``) is the request users make most, and
FastAPI's routing and parameter solving cost more than a single-vector search itself (at 1M
items ~0.7 ms against a 0.5 ms service call, measured in bench/RESULTS.md). This ASGI layer
answers such a request with exactly what the FastAPI route would answer: the same auth check,
the same code in the same thread pool, the app's own exception handlers for errors, and the
route set on the scope, so metrics label it as before. A GET is taken when every query
parameter is plain — one of the route's, given once, an integer one as plain digits, a
``Literal`` one (``modality``, ``target``) one of its values, all read from the route's own
signature (:class:`PlainQuery`); a POST always (its route reads only the body). Anything else
(a repeated or unknown parameter, ``k=1.0``, a HEAD, a root path) goes to the FastAPI route,
which gives the same answer for the plain requests too and the canonical 422 for the rest;
``/openapi.json`` still documents the routes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any, Literal, get_args, get_origin
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from hashstream.api.deps import require_api_key
from hashstream.api.routes.search import search_get_response, search_post_answer

_NAMED = re.compile(r"/indexes/([^/]+)/search")  # as Starlette compiles "{name}"
_DIGITS = re.compile(r"0|[1-9][0-9]{0,14}")  # a plain non-negative integer, as pydantic reads it


@dataclass(frozen=True)
class PlainQuery:
    """The query parameters of a GET route as its signature declares them: each one's
    default, which are integers, and the values of each ``Literal`` one."""

    defaults: dict[str, Any]
    integers: frozenset[str]
    choices: dict[str, frozenset[str]]

    @classmethod
    def of(cls, route: APIRoute) -> PlainQuery:
        defaults: dict[str, Any] = {}
        integers: set[str] = set()
        choices: dict[str, frozenset[str]] = {}
        for param in route.dependant.query_params:
            kind = param.field_info.annotation
            defaults[param.alias] = param.default
            if get_origin(kind) is Literal:
                choices[param.alias] = frozenset(get_args(kind))
            elif int in (kind, *get_args(kind)):
                integers.add(param.alias)
        return cls(defaults, frozenset(integers), choices)

    def read(self, query_string: bytes) -> dict[str, str] | None:
        """The query's parameters when every one is plain (see the module docstring); None
        when the FastAPI route must read them. Decoded as Starlette decodes them."""
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        args = dict(pairs)
        if len(args) != len(pairs) or not self.defaults.keys() >= args.keys():
            return None
        for key, value in args.items():
            if key in self.integers and not _DIGITS.fullmatch(value):
                return None
            if key in self.choices and value not in self.choices[key]:
                return None
        return args

    def arguments(self, args: dict[str, str]) -> dict[str, Any]:
        """Every parameter of the route, as the route would receive it from ``args``."""
        return {**self.defaults,
                **{k: int(v) if k in self.integers else v for k, v in args.items()}}


class SearchFastPath:
    """Pure ASGI layer in front of the router that answers the searches it can itself;
    ``named`` and ``default`` are the GET and POST routes of ``/indexes/{name}/search`` and
    ``/search`` by method. ``answered`` counts them (the tests check the path is taken)."""

    def __init__(self, app: ASGIApp, named: dict[str, APIRoute],
                 default: dict[str, APIRoute]) -> None:
        self.app = app
        self.named = named
        self.default = default
        self.named_query = PlainQuery.of(named["GET"])
        self.default_query = PlainQuery.of(default["GET"])
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method") if scope["type"] == "http" else None
        if method not in ("GET", "POST") or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/search":
            name, routes, query = None, self.default, self.default_query
        elif (match := _NAMED.fullmatch(path)) is not None:
            name, routes, query = match.group(1), self.named, self.named_query
        else:
            await self.app(scope, receive, send)
            return
        args: dict[str, str] = {}
        if method == "GET":
            plain = query.read(scope.get("query_string", b""))
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
                response = await search_get_response(index, request, app.state.search,
                                                     **query.arguments(args))
        except Exception as exc:
            response = await _handled(app, request, exc)
        await response(scope, receive, send)


async def _handled(app: Starlette, request: Request, exc: Exception) -> Any:
    """The app's exception handler's answer to ``exc`` (the nearest class in its MRO), as the
    router's exception middleware would give it; re-raised when the app has none."""
    for cls in type(exc).__mro__:
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            answer = handler(request, exc)
            return await answer if isawaitable(answer) else answer
    raise exc
