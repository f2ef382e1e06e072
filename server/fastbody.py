"""Request bodies parsed straight from bytes into their pydantic model.

FastAPI reads a JSON body with ``json.loads`` (a Python object per number) and then validates
that tree; for a batch of vectors that is most of the request's cost. :class:`FastBodyRoute`
hands the raw bytes to the body model's ``model_validate_json`` (pydantic's Rust parser: no
intermediate objects) and gives FastAPI the validated model, which it then passes through
unchanged. Large bodies are parsed in a worker thread so that the event loop keeps serving.
A body that does not validate, or that pydantic's parser does not read as JSON (lone surrogate
escapes, nesting past its limit), takes FastAPI's own path: the answer is the same as without
this route class, and the dependencies (the API key first) are checked before the body's
errors are reported.
"""

from __future__ import annotations

import email.message
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

#: Bodies larger than this are parsed off the event loop (a thread hop costs ~50 us).
INLINE_PARSE_BYTES = 64 * 1024


def parse_body(model: type[BaseModel], body: bytes) -> BaseModel | None:
    """``body`` as ``model``, or ``None`` if it is not one (FastAPI's path then decides)."""
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this content type as JSON (a body without one is
    refused, FastAPI's strict default)."""
    if not content_type:
        return False
    return _is_json_type(content_type)


@functools.lru_cache(maxsize=256)
def _is_json_type(value: str) -> bool:
    """:func:`is_json` of a content type, parsed as FastAPI parses it (clients send the same
    few values: each is parsed once, not on every request)."""
    message = email.message.Message()
    message["content-type"] = value
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _body_model(route: APIRoute) -> type[BaseModel] | None:
    field = route.body_field
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


class FastBodyRoute(APIRoute):
    """An :class:`APIRoute` whose JSON body (a single pydantic model) is parsed from bytes."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        model = _body_model(self)
        if model is None:
            return handler

        async def parse_then_handle(request: Request) -> Response:
            if is_json(request.headers.get("content-type")):
                body = await request.body()
                if body:
                    if len(body) <= INLINE_PARSE_BYTES:
                        parsed: Any = parse_body(model, body)
                    else:
                        parsed = await anyio.to_thread.run_sync(parse_body, model, body)
                    if parsed is not None:
                        # FastAPI's handler takes the parsed body from here (Request.json()'s
                        # cache) and validates the model instance, which passes it through.
                        request._json = parsed
            return await handler(request)

        return parse_then_handle
