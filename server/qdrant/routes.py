"""Thin handlers of the Qdrant-compatible API: parse, run in the worker pool, wrap the result
in Qdrant's envelope ``{"result": ..., "status": "ok", "time": seconds}``."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

import quiver
from quiver import Collection
from quiver.errors import CollectionNotFoundError

from ..deps import CollectionDep, CollectionName, DbDep, LimitsDep, StateDep
from ..fastbody import FastBodyRoute
from ..schemas import MAX_ID_CHARS
from . import execute
from . import translate as tr
from .schemas import (
    CountPoints,
    CreateCollection,
    CreateFieldIndex,
    DeletePayload,
    DeletePoints,
    QueryBatch,
    QueryPoints,
    RetrievePoints,
    ScrollPoints,
    SearchBatch,
    SearchPoints,
    SetPayload,
    UpdateCollection,
    UpsertPoints,
)

logger = logging.getLogger(__name__)
router = APIRouter(route_class=FastBodyRoute)  # bodies parsed from bytes by their model
#: The groups of operations in the OpenAPI document.
TAG_SERVICE = ["qdrant: service"]
TAG_COLLECTIONS = ["qdrant: collections"]
TAG_POINTS = ["qdrant: points"]
TAG_SEARCH = ["qdrant: search"]
TAG_INDEXES = ["qdrant: payload indexes"]

#: The Qdrant REST API version this subset follows (the qdrant-client it is tested with).
QDRANT_API_VERSION = "1.20.0"
_operation_ids = itertools.count()


def envelope(result: Any, t0: float, headers: dict[str, str] | None = None) -> JSONResponse:
    """Qdrant's success envelope."""
    body = {"result": result, "status": "ok", "time": time.perf_counter() - t0}
    return JSONResponse(body, headers=headers)


def completed() -> dict[str, Any]:
    """Qdrant's UpdateResult: quiver acknowledges a write once it is durable and searchable,
    so ``wait=true`` and ``wait=false`` both answer ``completed``."""
    return {"operation_id": next(_operation_ids), "status": "completed"}


def _payload_types(request: Request) -> dict[str, dict[str, str]]:
    """Payload index types asked for through this API, per collection (in memory)."""
    types: dict[str, dict[str, str]] = request.app.state.payload_types
    return types


@router.get("/", tags=TAG_SERVICE, summary="Version")
async def root() -> JSONResponse:
    """Title and the Qdrant API version followed (the client checks it)."""
    t0 = time.perf_counter()
    body = {
        "title": "quiver (Qdrant-compatible REST subset)",
        "version": QDRANT_API_VERSION,
        "quiver_version": quiver.__version__,
    }
    return JSONResponse(body | {"time": time.perf_counter() - t0})


@router.get("/collections", tags=TAG_COLLECTIONS, summary="List collections")
async def get_collections(db: DbDep, state: StateDep) -> JSONResponse:
    t0 = time.perf_counter()
    names = await state.run(db.list_collections)
    return envelope({"collections": [{"name": n} for n in names]}, t0)


@router.get("/collections/{name}/exists", tags=TAG_COLLECTIONS, summary="Does a collection exist")
async def collection_exists(name: CollectionName, db: DbDep) -> JSONResponse:
    t0 = time.perf_counter()
    return envelope({"exists": name in db.list_collections()}, t0)


@router.put("/collections/{name}", tags=TAG_COLLECTIONS, summary="Create a collection")
async def create_collection(
    name: CollectionName, body: CreateCollection, db: DbDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    """Create a collection with ``id_type="string"`` (integer and UUID ids). Options that
    change nothing in quiver are accepted and listed in the ``x-quiver-ignored`` header."""
    t0 = time.perf_counter()
    new = tr.create_in(body)
    limits.dim(new.dim)
    await state.write(
        db.create_collection, name, new.dim, new.metric, id_type="string", **new.build
    )
    headers = {}
    if new.ignored:
        logger.info("create %r: ignored options %s", name, new.ignored)
        headers["x-quiver-ignored"] = ", ".join(new.ignored)
    return envelope(True, t0, headers)


@router.get("/collections/{name}", tags=TAG_COLLECTIONS, summary="Describe a collection")
async def get_collection(coll: CollectionDep, state: StateDep, request: Request) -> JSONResponse:
    t0 = time.perf_counter()
    types = _payload_types(request).get(coll.name, {})
    info = await state.run(coll.info)
    schema = await state.run(execute.payload_schema, coll, types)
    return envelope(tr.collection_info_out(info, schema), t0)


@router.patch("/collections/{name}", tags=TAG_COLLECTIONS, summary="Update a collection (no-op)")
async def update_collection(coll: CollectionDep, body: UpdateCollection) -> JSONResponse:
    """Accepted where it changes nothing quiver has (optimizer, HNSW tuning); refused for
    quantization, sparse vectors and vector parameters."""
    t0 = time.perf_counter()
    tr.update_in(body)
    return envelope(True, t0)


@router.delete("/collections/{name}", tags=TAG_COLLECTIONS, summary="Delete a collection")
async def delete_collection(
    name: CollectionName, db: DbDep, state: StateDep, request: Request
) -> JSONResponse:
    """``true`` when it existed, ``false`` otherwise (as Qdrant answers)."""
    t0 = time.perf_counter()
    try:
        await state.write(db.drop_collection, name)
    except CollectionNotFoundError:
        return envelope(False, t0)
    _payload_types(request).pop(name, None)
    return envelope(True, t0)


async def _update(
    state: StateDep, limits: LimitsDep, n_ids: int, what: str, run: Callable[..., Any], *args: Any
) -> JSONResponse:
    """A write of ``n_ids`` points (bounded by the batch limit) run in the writers' pool,
    answered as Qdrant's completed UpdateResult."""
    t0 = time.perf_counter()
    limits.batch(n_ids, what)
    await state.write(run, *args)
    return envelope(completed(), t0)


@router.put("/collections/{name}/points", tags=TAG_POINTS, summary="Upsert points")
async def upsert_points(
    body: UpsertPoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    n = len(body.points) if body.points is not None else len(body.batch.ids if body.batch else [])
    return await _update(state, limits, n, "points", execute.upsert, coll, body)


@router.post("/collections/{name}/points/delete", tags=TAG_POINTS, summary="Delete points")
async def delete_points(
    body: DeletePoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    return await _update(state, limits, len(body.points or ()), "ids", execute.delete, coll, body)


@router.post("/collections/{name}/points/payload", tags=TAG_POINTS, summary="Set payload keys")
async def set_payload(
    body: SetPayload, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    n = len(body.points or ())
    return await _update(state, limits, n, "ids", execute.set_payload, coll, body, False)


@router.put("/collections/{name}/points/payload", tags=TAG_POINTS, summary="Overwrite payloads")
async def overwrite_payload(
    body: SetPayload, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    n = len(body.points or ())
    return await _update(state, limits, n, "ids", execute.set_payload, coll, body, True)


@router.post(
    "/collections/{name}/points/payload/delete", tags=TAG_POINTS, summary="Delete payload keys"
)
async def delete_payload(
    body: DeletePayload, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    n = len(body.points or ())
    return await _update(state, limits, n, "ids", execute.delete_payload, coll, body)


@router.post("/collections/{name}/points/payload/clear", tags=TAG_POINTS, summary="Clear payloads")
async def clear_payload(
    body: DeletePoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    n = len(body.points or ())
    return await _update(state, limits, n, "ids", execute.clear_payload, coll, body)


@router.post("/collections/{name}/points", tags=TAG_POINTS, summary="Retrieve points")
async def retrieve_points(
    body: RetrievePoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    t0 = time.perf_counter()
    limits.batch(len(body.ids), "ids")
    return envelope(await state.run(execute.retrieve, coll, body), t0)


@router.get("/collections/{name}/points/{id}", tags=TAG_POINTS, summary="Retrieve a point")
async def get_point(
    id: Annotated[str, PathParam(max_length=MAX_ID_CHARS)], coll: CollectionDep, state: StateDep
) -> JSONResponse:
    t0 = time.perf_counter()
    return envelope(await state.run(execute.get_point, coll, id), t0)


@router.post("/collections/{name}/points/scroll", tags=TAG_POINTS, summary="Scroll points")
async def scroll_points(
    body: ScrollPoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    t0 = time.perf_counter()
    limits.k(body.limit or tr.DEFAULT_LIMIT, None)
    return envelope(await state.run(execute.scroll, coll, body), t0)


@router.post("/collections/{name}/points/count", tags=TAG_POINTS, summary="Count points")
async def count_points(body: CountPoints, coll: CollectionDep, state: StateDep) -> JSONResponse:
    t0 = time.perf_counter()
    return envelope(await state.run(execute.count, coll, body), t0)


def check_query_limits(limits: LimitsDep, body: QueryPoints | SearchPoints) -> None:
    """``limit + offset`` and ``hnsw_ef`` of one query within the server's limits."""
    k = (body.limit or tr.DEFAULT_LIMIT) + (body.offset or 0)
    limits.k(k, body.params.hnsw_ef if body.params else None)


async def _run_queries(
    run: Callable[[Collection, Any], Any],
    searches: list[Any],
    coll: Collection,
    state: StateDep,
    limits: LimitsDep,
) -> list[Any]:
    """The results of ``searches`` (checked against the limits), run in one worker call."""
    limits.batch(len(searches), "queries")
    for search in searches:
        check_query_limits(limits, search)
    return await state.run(lambda: [run(coll, s) for s in searches])


@router.post("/collections/{name}/points/query", tags=TAG_SEARCH, summary="Query points")
async def query_points(
    body: QueryPoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    t0 = time.perf_counter()
    (result,) = await _run_queries(execute.query, [body], coll, state, limits)
    return envelope(result, t0)


@router.post(
    "/collections/{name}/points/query/batch", tags=TAG_SEARCH, summary="Query points in a batch"
)
async def query_batch_points(
    body: QueryBatch, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    t0 = time.perf_counter()
    return envelope(await _run_queries(execute.query, body.searches, coll, state, limits), t0)


@router.post(
    "/collections/{name}/points/search", tags=TAG_SEARCH, summary="Search points (older API)"
)
async def search_points(
    body: SearchPoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    t0 = time.perf_counter()
    (result,) = await _run_queries(execute.search, [body], coll, state, limits)
    return envelope(result, t0)


@router.post(
    "/collections/{name}/points/search/batch",
    tags=TAG_SEARCH,
    summary="Search in a batch (older API)",
)
async def search_batch_points(
    body: SearchBatch, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> JSONResponse:
    t0 = time.perf_counter()
    return envelope(await _run_queries(execute.search, body.searches, coll, state, limits), t0)


@router.put("/collections/{name}/index", tags=TAG_INDEXES, summary="Create a payload index")
async def create_field_index(
    body: CreateFieldIndex, coll: CollectionDep, state: StateDep, request: Request
) -> JSONResponse:
    t0 = time.perf_counter()
    kind = tr.index_type_in(body.field_schema)
    await state.run(coll.create_payload_index, body.field_name)
    _payload_types(request).setdefault(coll.name, {})[body.field_name] = kind
    return envelope(completed(), t0)


@router.delete(
    "/collections/{name}/index/{field_name}", tags=TAG_INDEXES, summary="Delete a payload index"
)
async def delete_field_index(
    field_name: str, coll: CollectionDep, request: Request
) -> JSONResponse:
    """Accepted; quiver keeps the column (filters on the key still work, only faster)."""
    t0 = time.perf_counter()
    _payload_types(request).get(coll.name, {}).pop(field_name, None)
    return envelope(completed(), t0)
