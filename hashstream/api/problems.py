"""problem+json: the one error body of the API, and its place in the OpenAPI schema.

Every route names the error statuses it can answer (``responses=problems.responses(404, 422)``);
each refers to one ``Problem`` component, so a client generated from ``/openapi.json`` parses
every error with one model. FastAPI's own 422 (a list under ``detail``) is never sent: the
validation handler answers problem+json, and :func:`install` documents it so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from hashstream.api.schemas import Problem

PROBLEM = "application/problem+json"
_REF = "#/components/schemas/Problem"

_TEXT = {
    400: "Malformed body: not JSON, empty, or not a readable .npz (field `body`)",
    401: "Missing or invalid API key (field `Authorization`)",
    404: "Not found: the index (field `name`) or the thing the path names",
    409: "Conflict with the index's state (the field says which)",
    413: "Payload too large: over HASHSTREAM_MAX_BODY_BYTES, or a limit on items or .npz "
         "bytes",
    415: "Unsupported media type (field `Content-Type`)",
    422: "Invalid input: the field is named, the detail says why",
    429: "The index's backlog passed a limit (member `limit` names the setting: "
         "HASHSTREAM_MAX_QUEUED_ITEMS or HASHSTREAM_MAX_QUEUED_SECONDS); retry after "
         "Retry-After seconds, the time its worker takes to drain it below the limit",
    503: "Service unavailable: Redis is unreachable",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer realm", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds until the backlog is estimated to be below "
                                         "the limit", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "seconds to wait before retrying, when retrying soon "
                                         "can succeed", "schema": {"type": "integer"}}},
}

# Statuses shared by whole groups of routes.
AUTHED = (401, 503)  # every route behind the API key reads Redis
JSON_BODY = (400, 413, 415, 422)  # routes that read a JSON body


def responses(*statuses: int, notes: Mapping[int, str] | None = None,
              headers: Mapping[int, Mapping[str, Any]] | None = None
              ) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route or router: each status as problem+json with the one
    ``Problem`` schema; ``notes`` replace a status's generic description, ``headers`` add
    to its documented headers."""
    notes, headers = notes or {}, headers or {}
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"description": notes.get(status, _TEXT[status]),
                                 "content": {PROBLEM: {"schema": {"$ref": _REF}}}}
        documented = {**_HEADERS.get(status, {}), **headers.get(status, {})}
        if documented:
            entry["headers"] = documented
        out[status] = entry
    return out


def problem(status: int, title: str, detail: str, field: str | None = None,
            extra: Mapping[str, Any] | None = None) -> JSONResponse:
    """An error answer: RFC 9457 problem details, ``field`` naming the input at fault,
    ``extra`` its extension members (a 429's ``limit`` and backlog)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    if field is not None:
        body["field"] = field
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _problem_schema() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["properties"]["field"]["description"] = (
        "the input at fault: a body field (dotted path), a query or path parameter, a header "
        "(Authorization, Content-Type) or `body`")
    return schema


def _is_fastapi_422(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the ``Problem`` component, and any 422 FastAPI documented by default
    (``HTTPValidationError``, a body never sent) replaced by the problem+json one."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = _problem_schema()
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.get("responses", {})
            if "422" in answers and _is_fastapi_422(answers["422"]):
                answers["422"] = responses(422)[422]
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install(app: FastAPI,
            *more: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Make ``app.openapi()`` return the schema through :func:`document`, then each of
    ``more`` (a router's own additions), built once."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = document(build())
            for step in more:
                schema = step(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
