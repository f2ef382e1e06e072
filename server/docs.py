"""The API documentation (/openapi.json, /docs, /redoc), behind the API key when one is set.

FastAPI serves its documentation routes without any dependency; the apps are built without them
and these routes are added instead, needing the key unless ``Settings.public_docs`` says the
documentation is public. (A browser sends no ``api-key`` header, so with a key the interactive
pages need ``public_docs``, or a proxy that adds the header.)

The pages load Swagger UI and ReDoc from ``/docs/assets/``, files shipped by the
``fastapi-offline`` package, not from a CDN: the documentation works on a machine without
internet access. Operation ids are the handlers' names (``upsert_points``, not FastAPI's
``upsert_points_collections__name__points_put``), see :func:`operation_id`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute

from .deps import require_api_key

OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/docs/assets"
#: The files the pages load, served from the package that ships them (and nothing else of it).
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def operation_id(route: APIRoute) -> str:
    """The OpenAPI operation id of a route: its handler's name (``generate_unique_id_function``
    of the apps; the handlers of one app have distinct names, a test checks it)."""
    return route.name


def assets_dir() -> Path:
    """The folder of the Swagger UI and ReDoc files (``fastapi_offline/static``)."""
    return Path(str(files("fastapi_offline").joinpath("static")))


def install_docs(app: FastAPI, public: bool) -> None:
    """Add the documentation routes to ``app`` (built with ``openapi_url=None``). URLs in the
    pages carry the app's mount path (``root_path``), so a mounted sub-app's pages work too."""
    dependencies = [] if public else [Depends(require_api_key)]
    folder = assets_dir()

    async def openapi(request: Request) -> JSONResponse:
        root = _root_path(request)
        spec = app.openapi()
        return JSONResponse({**spec, "servers": [{"url": root}]} if root else spec)

    async def swagger(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_swagger_ui_html(
            openapi_url=root + OPENAPI_URL,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # no badge fetched from the public validator service
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_redoc_html(
            openapi_url=root + OPENAPI_URL,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"no documentation asset {name!r}")
        return FileResponse(folder / name)

    routes = (
        (OPENAPI_URL, openapi),
        ("/docs", swagger),
        ("/redoc", redoc),
        (ASSETS_URL + "/{name}", asset),
    )
    for path, endpoint in routes:
        app.add_api_route(
            path, endpoint, include_in_schema=False, dependencies=dependencies, methods=["GET"]
        )


def _root_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")
