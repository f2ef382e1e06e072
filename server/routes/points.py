"""Points: upsert, delete (by ids or filter), get one / many, count, scroll."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from starlette.responses import Response as RawResponse

from quiver import Collection
from quiver.errors import InvalidInputError

from ..arrow_points import MEDIA_TYPE as ARROW_MEDIA_TYPE
from ..arrow_points import points_of, read_table
from ..deps import CollectionDep, Limits, LimitsDep, StateDep
from ..fastbody import FastBodyRoute
from ..rendering import rendered
from ..schemas import (
    MAX_ID_CHARS,
    CountRequest,
    CountResult,
    DeletePoints,
    DeleteResult,
    GetPoints,
    Record,
    Response,
    ScrollRequest,
    ScrollResult,
    UpsertPoints,
    UpsertResult,
    VectorEncoding,
    filter_dict,
)
from ..vectors import decode_block
from .common import ERRORS, parse_path_id, record, stack_vectors

router = APIRouter(prefix="/collections/{name}/points", tags=["points"], route_class=FastBodyRoute)


@router.put("", response_model=Response[UpsertResult], responses=ERRORS, summary="Upsert points")
async def upsert_points(
    body: UpsertPoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> Response[UpsertResult]:
    """Insert or replace a batch of points (ids unique within the batch): ``points``, or the
    columns ``ids``, ``vectors`` (base64 float32) and ``payloads``. The response is sent after
    the batch is in the write-ahead log, in one log record and one graph insertion."""
    t0 = time.perf_counter()
    limits.batch(body.count, "points")
    n = await state.write(upsert_body, coll, body)
    return Response(result=UpsertResult(upserted=n), time=time.perf_counter() - t0)


def upsert_body(coll: Collection, body: UpsertPoints) -> int:
    """Decode the batch's vectors and upsert it (in the writers' pool: one hop)."""
    if body.points is not None:
        ids = [p.id for p in body.points]
        vectors = stack_vectors([p.vector for p in body.points], coll.dim)
        payloads = [p.payload for p in body.points]
    else:
        ids, payloads = body.ids or [], body.payloads or []
        vectors = decode_block(body.vectors or "", coll.dim)
        if vectors.shape[0] != len(ids):
            raise InvalidInputError(
                f"{len(ids)} ids but {vectors.shape[0]} vectors of dim {coll.dim} in 'vectors'"
            )
    return coll.upsert(ids, vectors, payloads if any(p is not None for p in payloads) else None)


@router.put(
    "/arrow",
    response_model=Response[UpsertResult],
    responses=ERRORS,
    summary="Upsert points from an Arrow IPC stream",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {ARROW_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upsert_arrow(
    request: Request, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> Response[UpsertResult]:
    """Insert or replace the points of an Arrow IPC stream: an ``id`` column, a ``vector``
    column of ``FixedSizeList<float32>[dim]`` and one column per payload key (nulls leave the
    key out). Applied as one batch, like ``PUT /points``."""
    t0 = time.perf_counter()
    body = await request.body()
    n = await state.write(_upsert_arrow, coll, body, limits)
    return Response(result=UpsertResult(upserted=n), time=time.perf_counter() - t0)


def _upsert_arrow(coll: Collection, body: bytes, limits: Limits) -> int:
    table = read_table(body)
    limits.batch(table.num_rows, "points")
    if table.num_rows == 0:
        raise InvalidInputError("the Arrow stream holds no points")
    ids, vectors, payloads = points_of(table, coll.dim)
    return coll.upsert(ids, vectors, payloads)


@router.post(
    "/delete", response_model=Response[DeleteResult], responses=ERRORS, summary="Delete points"
)
async def delete_points(
    body: DeletePoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> Response[DeleteResult]:
    """Delete by ``points`` (ids; unknown ids are ignored) or by ``filter``."""
    t0 = time.perf_counter()
    if body.points is not None:
        limits.batch(len(body.points), "ids")
        n = await state.write(coll.delete, body.points)
    else:
        limits.filter(body.filter)
        n = await state.write(coll.delete_by_filter, filter_dict(body.filter))
    return Response(result=DeleteResult(deleted=n), time=time.perf_counter() - t0)


@router.get("/{id}", response_model=Response[Record], responses=ERRORS, summary="Get a point")
async def get_point(
    id: Annotated[str, PathParam(max_length=MAX_ID_CHARS, description="point id")],
    coll: CollectionDep,
    state: StateDep,
    with_payload: bool = True,
    with_vector: bool = False,
    vector_encoding: VectorEncoding = "float",
) -> RawResponse:
    """One point by id (404 ``point_not_found`` if it doesn't exist)."""
    t0 = time.perf_counter()
    pid = parse_path_id(coll, id)
    p = await state.run(coll.get, pid, with_payload=with_payload, with_vector=with_vector)
    return await rendered(state, lambda: record(p, vector_encoding), t0)


@router.post("", response_model=Response[list[Record]], responses=ERRORS, summary="Get many points")
async def retrieve_points(
    body: GetPoints, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> RawResponse:
    """The points with these ids, in request order; missing ids are skipped."""
    t0 = time.perf_counter()
    limits.batch(len(body.ids), "ids")
    points = await state.run(
        coll.retrieve, body.ids, with_payload=body.with_payload, with_vector=body.with_vector
    )
    return await rendered(state, lambda: (record(p, body.vector_encoding) for p in points), t0)


@router.post(
    "/count", response_model=Response[CountResult], responses=ERRORS, summary="Count points"
)
async def count_points(
    body: CountRequest, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> Response[CountResult]:
    """Number of points, or of points matching ``filter``."""
    t0 = time.perf_counter()
    limits.filter(body.filter)
    n = await state.run(coll.count, filter_dict(body.filter))
    return Response(result=CountResult(count=n), time=time.perf_counter() - t0)


@router.post(
    "/scroll", response_model=Response[ScrollResult], responses=ERRORS, summary="Page through"
)
async def scroll_points(
    body: ScrollRequest, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> RawResponse:
    """A page of points in id order from ``offset``; pass ``next_page_offset`` to continue."""
    t0 = time.perf_counter()
    limits.k(body.limit, None)
    limits.filter(body.filter)
    points, next_offset = await state.run(
        coll.scroll,
        limit=body.limit,
        offset=body.offset,
        filter=filter_dict(body.filter),
        with_payload=body.with_payload,
        with_vector=body.with_vector,
    )

    def build() -> dict[str, Any]:
        records = [record(p, body.vector_encoding) for p in points]
        return {"points": records, "next_page_offset": next_offset}

    return await rendered(state, build, t0)
