"""Map exceptions to HTTP responses with one body shape: ``{"error": code, "message": text}``.

Domain errors keep their meaning: bad input is 400, unknown collections and points 404, an
existing collection 409, a locked or not-yet-ready database 503. Schema violations are 422
(with the per-field ``detail``), limits 413 (sizes) or 422 (values). A write the disk refused
is 507 ``insufficient_storage`` when the disk or quota is full (nothing was written: retry once
space is freed), else 500 ``io_error``.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from quiver.errors import (
    ERROR_CODES,
    CollectionExistsError,
    CollectionNotFoundError,
    CorruptIndexError,
    DatabaseLockedError,
    InvalidFilterError,
    InvalidInputError,
    PointNotFoundError,
    QuiverError,
    ShardUnavailableError,
)

from .redact import redact_paths

logger = logging.getLogger(__name__)

_STATUS: dict[type[Exception], int] = {
    InvalidFilterError: 400,
    InvalidInputError: 400,
    CollectionNotFoundError: 404,
    PointNotFoundError: 404,
    CollectionExistsError: 409,
    DatabaseLockedError: 503,
    ShardUnavailableError: 503,
    CorruptIndexError: 500,
}
#: (exception class, HTTP status, error code), most specific first.
DOMAIN_ERRORS: tuple[tuple[type[Exception], int, str], ...] = tuple(
    (cls, _STATUS[cls], code) for cls, code in ERROR_CODES
)

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
}


class ApiError(StarletteHTTPException):
    """An HTTP error with an explicit error code (limits, auth, readiness)."""

    def __init__(
        self, status_code: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.error = error


def error_response(
    status: int, error: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The one error body shape (absolute server paths in ``message`` reduced to names)."""
    body = {"error": error, "message": redact_paths(message), **extra}
    return JSONResponse(body, status, headers=headers)


def _summarise(errors: list[dict[str, Any]]) -> str:
    """``body.points.0.id: Input should be ...; ...`` (first three problems)."""
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _jsonable(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without the raw input or exception objects (may be huge or not JSON)."""
    return [
        {
            k: (v if k != "ctx" else {c: str(x) for c, x in v.items()})
            for k, v in e.items()
            if k not in ("input", "url")
        }
        for e in errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        for cls, status, code in DOMAIN_ERRORS:
            if isinstance(exc, cls):
                if status >= 500:
                    logger.error("%s: %s", code, exc, exc_info=exc)
                return error_response(status, code, str(exc))
        logger.error("unhandled quiver error", exc_info=exc)
        return error_response(500, "internal_error", str(exc))

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        return error_response(422, "validation_error", _summarise(errors), detail=_jsonable(errors))

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "error", None) or _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    async def os_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("I/O error answering %s %s", request.method, request.url.path, exc_info=exc)
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return error_response(507, "insufficient_storage", f"the disk is full: {exc}")
        return error_response(500, "io_error", str(exc))

    async def recursion_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(400, "invalid_input", "request body is nested too deeply")

    async def unicode_error(request: Request, exc: Exception) -> JSONResponse:
        # JSON may escape lone UTF-16 surrogates ("\ud800"), which no UTF-8 file can store.
        return error_response(
            400, "invalid_input", f"text that is not valid Unicode (a lone surrogate?): {exc}"
        )

    app.add_exception_handler(QuiverError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    # a QuiverError that is an OSError (CorruptIndexError) keeps domain_error: Starlette picks
    # the handler by the exception's MRO, where QuiverError comes first
    app.add_exception_handler(OSError, os_error)
    app.add_exception_handler(RecursionError, recursion_error)
    app.add_exception_handler(UnicodeError, unicode_error)
