"""The API documentation (/openapi.json, /docs, /redoc), behind the API key when one is set.

FastAPI serves its documentation routes without any dependency; the app is built without them
and these routes are added instead, needing the key unless ``Settings.public_docs`` says the
documentation is public. (A browser sends no ``api-key`` header, so with a key the interactive
pages need ``public_docs``, or a proxy that adds the header.)
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from .deps import require_api_key

OPENAPI_URL = "/openapi.json"


def install_docs(app: FastAPI, public: bool) -> None:
    """Add the documentation routes to ``app`` (built with ``openapi_url=None``)."""
    dependencies = [] if public else [Depends(require_api_key)]

    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{app.title} - Swagger UI")

    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{app.title} - ReDoc")

    for path, endpoint in ((OPENAPI_URL, openapi), ("/docs", swagger), ("/redoc", redoc)):
        app.add_api_route(
            path, endpoint, include_in_schema=False, dependencies=dependencies, methods=["GET"]
        )
