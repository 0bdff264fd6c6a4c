"""The FastAPI application: routes, the body-size limit, auth, and problem+json errors."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hashstream import __version__
from hashstream.api import problems
from hashstream.api.deps import require_api_key
from hashstream.api.metrics import IndexCollector, RequestMetrics
from hashstream.api.problems import problem
from hashstream.api.routes import (
    dashboard,
    dead_letters,
    docs,
    health,
    indexes,
    ingest,
    items,
    search,
)
from hashstream.api.search_fast_path import SearchFastPath
from hashstream.service.errors import PayloadTooLarge, ServiceError
from hashstream.service.services import Services
from hashstream.service.settings import Settings, get_settings

log = logging.getLogger("hashstream.api")


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A receive() that returns ``messages`` first, then defers to ``then``."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


class BodyLimit:
    """Reject bodies over ``limit`` bytes with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.limit + 1
                if declared > self.limit:
                    await self._reject(scope, receive, send)
                    return
                # The server holds the body to its declared length: nothing more to count.
                await self.app(scope, receive, send)
                return
        # No declared length (chunked upload): read and count the body here, so an oversized
        # one is refused with 413 before any route parses it; the app gets the bytes replayed.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await self._reject(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks),
                                        "more_body": False}], receive), send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, PayloadTooLarge.title,
                           f"body exceeds {self.limit} bytes (HASHSTREAM_MAX_BODY_BYTES)", "body")
        await response(scope, receive, send)


def _field_of(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
    return ".".join(loc) or "body"


def _route(router: APIRouter, path: str, method: str) -> APIRoute:
    """The router's ``method`` route of ``path``."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods
                                                                               or ()):
            return route
    raise LookupError(f"no {method} route {path}")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; Redis is opened in the lifespan (``settings.redis_url`` must be set)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.redis_url:
            raise RuntimeError("REDIS_URL is not set; `hashstream serve` starts an embedded "
                               "Redis and sets it")
        services = Services.open(settings.redis_url, settings.key_prefix, max_k=settings.max_k,
                                 scan_backend=settings.search_backend,
                                 replica_wait_ms=settings.replica_wait_ms,
                                 serve_partitions=settings.served_partitions(),
                                 search_tables=settings.search_tables,
                                 redis_timeout_s=settings.redis_timeout_s)
        app.state.settings = settings
        app.state.indexes = services.indexes
        app.state.dead_letters = services.dead_letters
        app.state.search = services.search
        app.state.items = services.items
        app.state.registry.register(IndexCollector(app.state.indexes, app.state.search))
        yield
        services.close()

    # /docs comes from routes.docs (local Swagger UI assets); ReDoc would need a CDN: off.
    app = FastAPI(title="hashstream", version=__version__, lifespan=lifespan,
                  description="Streaming online hashing (SDOH-HC) with Redis-held state.",
                  docs_url=None, redoc_url=None,
                  # operationId = the route function's name: what generated clients call
                  generate_unique_id_function=lambda route: route.name)
    # search.document adds the POST bodies' schema components (its routes read the body)
    problems.install(app, search.document)
    app.state.registry = CollectorRegistry()
    auth = [Depends(require_api_key)]
    app.include_router(health.router)
    app.include_router(health.ready_router)
    docs.install(app)
    app.include_router(dashboard.page_router)
    app.include_router(dashboard.router)
    for router in (indexes.router, ingest.router, search.router, items.router,
                   dead_letters.router):
        app.include_router(router, dependencies=auth,
                           responses=problems.responses(*problems.AUTHED))

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        response = problem(exc.status, exc.title, exc.message, exc.field, exc.extra)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="hashstream"'
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return problem(400, "Malformed body", f"body is not valid JSON: {first.get('msg')}",
                           "body")
        if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
            return problem(400, "Malformed body", "the body is empty; send a JSON object",
                           "body")
        detail = "; ".join(f"{_field_of(e)}: {e.get('msg')}" for e in errors[:5])
        return problem(422, "Invalid input", detail, _field_of(first))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "HTTP error", str(exc.detail))

    @app.exception_handler(redis.ConnectionError)
    async def redis_down(request: Request, exc: redis.ConnectionError) -> JSONResponse:
        return problem(503, "Service unavailable", f"Redis is unreachable: {exc}")

    @app.exception_handler(redis.TimeoutError)
    async def redis_slow(request: Request, exc: redis.TimeoutError) -> JSONResponse:
        # the Redis socket timeout (HASHSTREAM_REDIS_TIMEOUT_S) passed: Redis stalled, e.g. in
        # a slow append-only-file write under load. The request may or may not have taken
        # effect (an ingest's lost reply is retried under its key first: OutcomeUnknown).
        response = problem(503, "Service unavailable", f"Redis did not answer in time ({exc}); "
                           "whether this request took effect is not known")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(json.dumps({"event": "unhandled_error", "path": request.url.path,
                              "error": repr(exc)}))
        return problem(500, "Internal error", "unexpected error; see the service log")

    if settings.search_fast_path:
        named, default = "/indexes/{name}/search", "/search"
        app.add_middleware(SearchFastPath,
                           named={m: _route(search.router, named, m) for m in ("GET", "POST")},
                           default={m: _route(search.router, default, m)
                                    for m in ("GET", "POST")})
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, registry=app.state.registry)
    return app
