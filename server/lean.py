"""The lean path of the hot routes: the same answers as FastAPI's routes, less work.

A one-query request (``POST /collections/{name}/points/query`` and the Qdrant-compatible
``.../points/query`` and ``.../points/search``) spends more of its time in FastAPI's
per-request machinery (dependency resolution, validation of the parsed body, the hand-off to
a worker thread) than in the search; so does a small upsert (``PUT /collections/{name}/points``
with JSON: ~1.1 ms of the event loop's time for 10 points through FastAPI's route, measured by
``bench.experiments.asgi_cost``). :class:`LeanPathMiddleware` sits right outside FastAPI's
exception handling, inside the body limits, the body deadline and the metrics/access-log
middleware (which so apply unchanged), and answers these routes itself when the request is an
ordinary success: the API key matches, the server is ready, the body is JSON that its model
(the route's own pydantic model, ``model_validate_json`` on the raw bytes) accepts, the
collection exists and the limits hold. The search goes through the micro-batcher
(:mod:`~quiver.server.batcher`: grouped with concurrent queries, or inline when small), and the
response is rendered by the route's own functions. An upsert is parsed, checked against the
limits, decoded and applied in one call in the writers' pool (FastAPI's route takes two hops:
the parse, then the write).

Anything else is handed, with the body already read, to the FastAPI app, which answers it
exactly as without this path: every error (401, 404, 413, 422, 503, a search or an upsert
that raises) is rendered by the one error machinery. A read-only query rerun there costs only
time, and only on errors. An upsert that failed is rerun there too: one that failed before
its write (a body that does not parse, over a limit, a bad vector) fails again the same way,
having changed nothing; one whose write failed (a full disk, an fsync error: the group commit
then writes nothing) is attempted once more and answered by its outcome, which is safe because
an upsert is idempotent. A body whose reading failed (over the size limit, past its deadline) is
handed on with a ``receive`` that raises the same error, so FastAPI answers it as before.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quiver import Collection

from . import fastbody
from .batcher import QueryBatcher, is_small
from .deps import API_KEY_HEADER, Limits, ServerState
from .qdrant import execute
from .qdrant import translate as tr
from .qdrant.routes import check_query_limits, envelope
from .qdrant.schemas import QueryPoints, SearchPoints
from .rendering import render_json
from .routes.points import upsert_body
from .routes.query import hits_result, single_request
from .schemas import QueryRequest, UpsertPoints

logger = logging.getLogger(__name__)

#: A result with at most this many hits (and no vectors) is rendered on the event loop.
INLINE_RENDER_HITS = 128
_NAME = r"(?P<name>[A-Za-z0-9_-]{1,64})"  # schemas.CollectionNamePattern

#: A lean route's handler: (state, collection name, raw body, start time) -> the JSON body of
#: its 200 answer.
Handler = Callable[[ServerState, str, bytes, float], Awaitable[bytes]]
_JSON_TYPE = (b"content-type", b"application/json")


@dataclass(frozen=True)
class LeanRoute:
    """A route served on the lean path; ``path`` is its metrics template (what FastAPI's
    route reports as ``scope["route"].path``, the mount prefix included); ``is_query``: its
    requests count toward the micro-batcher's grouping."""

    method: str
    path: str
    pattern: re.Pattern[str]
    handle: Handler
    is_query: bool = True


def lean_routes(state: ServerState, batcher: QueryBatcher | None) -> list[LeanRoute]:
    """The lean routes of a server with these settings."""

    async def quiver_query(state: ServerState, name: str, raw: bytes, t0: float) -> bytes:
        body = _parsed(QueryRequest, raw)
        if body.allow_partial:  # the route adds the coverage of a cluster's partial results
            raise _Deferred("allow_partial")
        coll = _db(state).get_collection(name)
        request = single_request(body, coll, Limits(state.settings))
        if batcher is not None:
            hits = await batcher.query(coll, request)
        elif is_small(request):
            hits = coll.query(request)[0]
        else:
            hits = (await state.run(coll.query, request))[0]

        def build() -> dict[str, Any]:
            return hits_result(hits, body.vector_encoding)

        if len(hits) <= INLINE_RENDER_HITS and not request.with_vector:
            return render_json(build, t0)
        return await state.run(render_json, build, t0)

    async def qdrant_query(state: ServerState, name: str, raw: bytes, t0: float) -> bytes:
        body = _parsed(QueryPoints, raw)
        small = body.prefetch is None and isinstance(body.query, list)
        return await _qdrant_search(state, name, body, execute.query, small, t0)

    async def qdrant_search(state: ServerState, name: str, raw: bytes, t0: float) -> bytes:
        body = _parsed(SearchPoints, raw)
        small = isinstance(body.vector, list)
        return await _qdrant_search(state, name, body, execute.search, small, t0)

    async def quiver_upsert(state: ServerState, name: str, raw: bytes, t0: float) -> bytes:
        coll = _db(state).get_collection(name)
        n = await state.write(_parse_and_upsert, coll, raw, Limits(state.settings))
        return render_json(lambda: {"upserted": n}, t0)

    template = "/collections/{name}/points"
    routes = [
        _route("POST", template + "/query", quiver_query),
        _route("PUT", template, quiver_upsert, is_query=False),
    ]
    prefix = state.settings.qdrant_prefix
    if prefix:
        routes.append(_route("POST", prefix + template + "/query", qdrant_query))
        routes.append(_route("POST", prefix + template + "/search", qdrant_search))
    return routes


M = TypeVar("M", bound=BaseModel)


class _NotParsed(ValueError):
    """The body is not one of the route's model: FastAPI's route reports why."""


class _Deferred(Exception):
    """A request the lean path does not serve (partial results): FastAPI's route does."""


def _parsed(model: type[M], raw: bytes) -> M:
    """``raw`` as ``model`` (the same parse as FastAPI's routes: ``fastbody.parse_body``)."""
    body = fastbody.parse_body(model, raw)
    if body is None:
        raise _NotParsed(model.__name__)
    return body  # type: ignore[return-value]


def _route(method: str, path: str, handle: Handler, is_query: bool = True) -> LeanRoute:
    pattern = re.compile(re.escape(path).replace(re.escape("{name}"), _NAME))
    return LeanRoute(method, path, pattern, handle, is_query)


def _parse_and_upsert(coll: Collection, raw: bytes, limits: Limits) -> int:
    """``PUT /points``'s work in one call in the writers' pool: parse, limits, decode, upsert."""
    body = _parsed(UpsertPoints, raw)
    limits.batch(body.count, "points")
    return upsert_body(coll, body)


def _db(state: ServerState) -> Any:
    db = state.db
    if db is None:
        raise RuntimeError("the database is closed")
    return db


async def _qdrant_search(
    state: ServerState,
    name: str,
    body: QueryPoints | SearchPoints,
    run: Callable[[Any, Any], Any],
    plain_vector: bool,
    t0: float,
) -> bytes:
    """One Qdrant-compatible query, as ``routes._run_queries`` runs it: inline when small."""
    coll = _db(state).get_collection(name)
    limits = Limits(state.settings)
    limits.batch(1, "queries")
    check_query_limits(limits, body)
    limit = (body.limit or tr.DEFAULT_LIMIT) + (body.offset or 0)
    ef = body.params.hnsw_ef if body.params and body.params.hnsw_ef else 64
    small = (
        plain_vector
        and body.filter is None
        and not body.with_vector
        and max(limit, ef) <= INLINE_RENDER_HITS
    )
    result = run(coll, body) if small else await state.run(run, coll, body)
    return bytes(envelope(result, t0).body)


class LeanPathMiddleware:
    """Serve the lean routes; hand everything else to ``app`` (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        state: ServerState,
        routes: list[LeanRoute],
        batcher: QueryBatcher | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.routes = routes
        self.batcher = batcher
        key = state.settings.api_key
        self.api_key = None if key is None else key.get_secret_value().encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._match(scope)
        if route is None or not self._eligible(scope):
            await self.app(scope, receive, send)
            return
        if self.batcher is None or not route.is_query:
            await self._serve(route, scope, receive, send)
            return
        with self.batcher.handling():
            await self._serve(route, scope, receive, send)

    async def _serve(self, route: LeanRoute, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        try:
            raw = await _read_body(receive)
        except Exception as exc:  # over a limit, too slow, the client gone
            await self.app(scope, _replay(b"", receive, exc), send)
            return
        name = route.pattern.fullmatch(scope["path"])["name"]  # type: ignore[index]
        try:
            body = await route.handle(self.state, name, raw, t0)
        except Exception:  # noqa: BLE001 - FastAPI's route answers it, the same way as before
            await self.app(scope, _replay(raw, receive), send)
            return
        scope["route"] = route  # the metrics' route template
        # the headers Starlette's Response(body, media_type="application/json") sends, built
        # without a Response object (this runs once per query, on the event loop)
        headers = [(b"content-length", b"%d" % len(body)), _JSON_TYPE]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _match(self, scope: Scope) -> LeanRoute | None:
        if scope["type"] != "http":
            return None
        method, path = scope["method"], scope["path"]
        for route in self.routes:
            if route.method == method and route.pattern.fullmatch(path):
                return route
        return None

    def _eligible(self, scope: Scope) -> bool:
        """Ready, the right API key (if any), a JSON body: else FastAPI answers."""
        if not self.state.ready or self.state.db is None:
            return False
        content_type = provided = None
        for key, value in scope["headers"]:
            if key == b"content-type" and content_type is None:  # the first, as Starlette
                content_type = value.decode("latin-1")
            elif key == API_KEY_HEADER_BYTES and provided is None:
                provided = value
        if self.api_key is not None and (
            provided is None or not hmac.compare_digest(provided, self.api_key)
        ):
            return False
        return fastbody.is_json(content_type)


API_KEY_HEADER_BYTES = API_KEY_HEADER.encode("ascii")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive, error: BaseException | None = None) -> Receive:
    """A ``receive`` that gives ``body`` (or raises ``error``) once, then the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        if error is not None:
            raise error
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
