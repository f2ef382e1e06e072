"""Pure ASGI middleware: request body limits, and metrics plus one access-log line per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_response
from .metrics import Metrics

access_logger = logging.getLogger("quiver.server.access")


class BodyLimitMiddleware:
    """Answer 413 when a request body exceeds its limit.

    A declared ``Content-Length`` over the limit is refused before the body is read; a chunked
    body is counted as it arrives. ``limit_for(path)`` gives each path its limit (snapshot
    uploads get a larger one).
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], tuple[int, str]]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            message = f"request body is {declared} bytes; the limit is {limit} ({setting})"
            await error_response(413, "payload_too_large", message)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ApiError(
                        413,
                        "payload_too_large",
                        f"request body exceeds the limit of {limit} bytes ({setting})",
                    )
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> str | None:
    """The first Content-Length header (as Starlette's ``Headers.get``; uvicorn gives names in
    lower case), read without building a ``Headers`` object."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return str(value.decode("latin-1"))
    return None


class ObserveMiddleware:
    """Count and time every HTTP request by route template; log it as one JSON line."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        root_path = scope.get("root_path", "")
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - t0
            self.metrics.in_flight.dec()
            route = scope.get("route")
            # a mounted sub-application (the Qdrant-compatible API) extends root_path by its
            # prefix: keep it in the template, apart from quiver's own routes
            mount = scope.get("root_path", "")[len(root_path) :]
            template = mount + getattr(route, "path", "") if route else "<unmatched>"
            self.metrics.observe(scope["method"], template, status, seconds)
            if self.access_log:
                client = scope.get("client")
                access_logger.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": template,
                        "status": status,
                        "ms": round(seconds * 1000, 3),
                        "client": f"{client[0]}:{client[1]}" if client else None,
                    },
                )
