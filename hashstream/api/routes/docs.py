"""Swagger UI at /docs from assets installed with the service (no CDN: the page works offline).

The JS/CSS come from the ``fastapi-offline`` package's static folder (Swagger UI 5; the 4.x of
``swagger-ui-bundle`` cannot render the OpenAPI 3.1 schema FastAPI emits). ReDoc is off.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
ASSET_DIR = files("fastapi_offline") / "static"


def install(app: FastAPI) -> None:
    """Mount the assets at /docs/assets and the page at /docs. Both stay open without an API
    key, like /healthz: they carry no data (the page reads /openapi.json)."""
    app.mount(ASSETS, StaticFiles(directory=str(ASSET_DIR)), name="swagger-ui")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            # No badge that sends the schema to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None})
