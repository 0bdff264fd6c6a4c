"""The ops dashboard (a static page polling JSON), its data routes, and Prometheus /metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from hashstream.api import chart_library
from hashstream.api.deps import IndexesDep, SettingsDep, require_api_key
from hashstream.api.metrics import render
from hashstream.api.problems import AUTHED, responses
from hashstream.service import dashboard_data
from hashstream.service.errors import NotFound

STATIC = Path(__file__).resolve().parent.parent / "static"
# The page and its script carry no data, so a browser can load them without a key; every data
# route below asks for one (the page prompts for it on a 401).
page_router = APIRouter(tags=["dashboard"])
router = APIRouter(tags=["dashboard"], dependencies=[Depends(require_api_key)],
                   responses=responses(*AUTHED))


@page_router.get("/dashboard", include_in_schema=False)
def dashboard_page() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")


@page_router.get("/dashboard/static/{filename}", include_in_schema=False)
def dashboard_static(filename: str) -> FileResponse:
    files = {p.name: p for p in STATIC.iterdir()}
    if filename not in files:
        raise NotFound(f"no static file {filename!r}", "filename")
    kind = {"js": "text/javascript", "css": "text/css"}.get(filename.rsplit(".", 1)[-1],
                                                           "application/octet-stream")
    return FileResponse(files[filename], media_type=kind)


@page_router.get("/dashboard/vendor/plotly.min.js", include_in_schema=False)
async def chart_library_bundle(request: Request) -> Response:
    """plotly.js from the installed ``plotly`` package (gzipped when the browser takes it)."""
    path = chart_library.bundle_path()
    if path is None:
        raise NotFound("the plotly package is not installed (pip install plotly): the "
                       "dashboard draws its charts with the plotly.js it ships", "filename")
    headers = {"Cache-Control": "public, max-age=86400", "Vary": "Accept-Encoding"}
    if "gzip" not in request.headers.get("accept-encoding", ""):
        return FileResponse(path, media_type="text/javascript", headers=headers)
    body = await run_in_threadpool(chart_library.gzipped, path)
    return Response(body, media_type="text/javascript",
                    headers={**headers, "Content-Encoding": "gzip"})


@router.get("/dashboard/summary",
            summary="Every index (most recently active first) with its latest round's figures, "
                    "and the live workers")
async def summary(indexes: IndexesDep, settings: SettingsDep) -> dict[str, Any]:
    return await run_in_threadpool(dashboard_data.summary, indexes, settings.backlog_limits())


@router.get("/indexes/{name}/centers",
            summary="Center-to-center Hamming distances, latest and previous round",
            responses=responses(404))
async def centers(name: str, indexes: IndexesDep) -> dict[str, Any]:
    return await run_in_threadpool(dashboard_data.center_distances, indexes, name)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(render, request.app.state.registry)
    return Response(body, media_type="text/plain; version=0.0.4")
