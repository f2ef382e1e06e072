"""Responses built and serialised in the worker pool, off the event loop.

Turning a large result into JSON (a batch of thousands of hit lists, a page of payloads) is CPU
work; on the event loop it would stall every other request, ``/healthz`` included, for as long
as it runs. Route handlers hand :func:`rendered` a function that does the work and builds the
response (plain JSON-ready dicts and lists, shaped as the response models say); it runs with
the serialisation (orjson) in one worker-pool call, and the loop only sends the bytes.

Reads never fail on stored data: a payload stored before payloads were bounded may nest deeper
than a JSON encoder allows; it is then replaced in the response by a note saying so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from starlette.responses import Response

from quiver.db import payloads

from .deps import ServerState

logger = logging.getLogger(__name__)

#: The key of the note that replaces an unreadable stored payload in a response.
UNREADABLE_PAYLOAD_KEY = "_unreadable_payload"
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class JsonResponse(Response):
    """A JSON response serialised with orjson (numpy arrays and scalars included)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_OPTIONS)


async def rendered(state: ServerState, build: Callable[[], Any], t0: float) -> Response:
    """The response envelope (``{"result": ..., "time": ...}``, as
    :class:`~quiver.server.schemas.Response`) of what ``build()`` returns, built and serialised
    in the worker pool; ``t0`` is when the request started."""
    body = await state.run(render_json, build, t0)
    return Response(body, media_type="application/json")


def render_json(build: Callable[[], Any], t0: float) -> bytes:
    """The JSON envelope of ``build()``: a JSON-ready value, or an iterator of them for a list
    result.

    A list is built and serialised one item at a time: each item's objects are freed before
    the next is built (millions of live objects would make the garbage collector stop every
    thread, the event loop's included, for long pauses), and no single serialiser call holds
    the GIL for the whole result.
    """
    result = build()
    if isinstance(result, Iterator):
        body = b"[" + b",".join(_to_json(item) for item in result) + b"]"
    else:
        body = _to_json(result)
    seconds = orjson.dumps(time.perf_counter() - t0)
    return b'{"result":' + body + b',"time":' + seconds + b"}"


def _to_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        if not _replace_deep_payloads(value):
            raise
        return orjson.dumps(value, option=_OPTIONS)


def _replace_deep_payloads(value: Any) -> int:
    """Replace every payload nested deeper than the limit with a note; how many."""
    limit = payloads.MAX_PAYLOAD_DEPTH
    replaced = 0
    for item in _records(value):
        payload = item.get("payload")
        if payload is not None and payloads.payload_depth(payload, stop_after=limit) > limit:
            note = (
                f"the stored payload nests deeper than {limit} levels and cannot be returned; "
                "upsert the point again with a flatter payload"
            )
            item["payload"] = {UNREADABLE_PAYLOAD_KEY: note}
            replaced += 1
    if replaced:
        logger.warning("replaced %d stored payloads nested deeper than %d levels", replaced, limit)
    return replaced


def _records(value: Any) -> Iterator[dict[str, Any]]:
    """Every point record (a dict with an ``id``) inside ``value``, through lists and the
    ``points`` of a result."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "id" in item:
                yield item
            elif isinstance(item.get("points"), list):
                stack.extend(item["points"])
        elif isinstance(item, list):
            stack.extend(item)
