"""The Qdrant-compatible sub-application: its routes and Qdrant's error shape
``{"status": {"error": message}, "time": 0.0}`` with Qdrant's status codes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import quiver
from quiver.errors import QuiverError

from ..deps import ServerState, require_api_key
from ..docs import install_docs, operation_id
from ..errors import DOMAIN_ERRORS
from .routes import root, router

logger = logging.getLogger(__name__)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Qdrant's error body."""
    return JSONResponse({"status": {"error": message}, "time": 0.0}, status, headers=headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "Format error in JSON body: " + "; ".join(parts)


def create_qdrant_app(state: ServerState) -> FastAPI:
    """The sub-application serving ``state``'s database (mount it under the prefix). The API
    key, when set, is the same one, in the same ``api-key`` header qdrant-client sends."""
    app = FastAPI(
        title="quiver: Qdrant-compatible REST subset",
        version=quiver.__version__,
        summary="The subset of Qdrant's REST API that qdrant-client and LangChain use.",
        openapi_url=None,  # served by install_docs, behind the API key as quiver's own
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.quiver = state
    app.state.payload_types = {}
    install_docs(app, public=state.settings.public_docs)
    app.include_router(router, dependencies=[Depends(require_api_key)])

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        for cls, status, code in DOMAIN_ERRORS:
            if isinstance(exc, cls):
                if status >= 500:
                    logger.error("%s: %s", code, exc, exc_info=exc)
                return error_response(status, str(exc))
        logger.error("unhandled quiver error", exc_info=exc)
        return error_response(500, str(exc))

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(list(exc.errors())))

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), exc.headers)

    app.add_exception_handler(QuiverError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    return app


def mount_qdrant(app: FastAPI, state: ServerState, prefix: str) -> None:
    """Serve the Qdrant-compatible API under ``prefix`` of ``app``; ``GET <prefix>`` without
    the trailing slash answers too (qdrant-client's version check asks for it)."""
    app.mount(prefix, create_qdrant_app(state))
    app.add_api_route(prefix, root, methods=["GET"], include_in_schema=False)
