"""Query: top-k by vector or by a stored point's id, one query or a batch."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter
from starlette.responses import Response as RawResponse

from quiver import Collection, ScoredPoint, SearchRequest

from ..deps import CollectionDep, Limits, LimitsDep, StateDep
from ..fastbody import FastBodyRoute
from ..rendering import rendered
from ..schemas import QueryBatchRequest, QueryRequest, QueryResult, Response
from ..vectors import decode_block, decode_one
from .common import ERRORS, stack_vectors, vector_out

router = APIRouter(prefix="/collections/{name}/points", tags=["query"], route_class=FastBodyRoute)


def single_request(body: QueryRequest, coll: Collection, limits: Limits) -> SearchRequest:
    """The request of a one-query body, checked against the server's limits."""
    limits.k(body.k, body.ef)
    limits.filter(body.filter)
    if body.vector is None:
        return body.search_request(ids=[body.query_id])
    if isinstance(body.vector, str):
        return body.search_request(vectors=decode_one(body.vector, coll.dim))
    return body.search_request(vectors=np.asarray(body.vector, dtype=np.float32))


def hits_result(points: list[ScoredPoint], encoding: str, partial: bool = False) -> dict[str, Any]:
    """One query's hits as a :class:`~quiver.server.schemas.QueryResult`; with ``partial``,
    its ``coverage`` too (a cluster's hit lists carry it; an embedded search covers all)."""
    out: dict[str, Any] = {
        "points": [
            {
                "id": p.id,
                "score": float(p.score),
                "payload": p.payload,
                "vector": vector_out(p.vector, encoding),
            }
            for p in points
        ]
    }
    if partial:
        out["coverage"] = float(getattr(points, "coverage", 1.0))
    return out


def _run(coll: Collection, request: SearchRequest, allow_partial: bool) -> list[Any]:
    """``coll.query(request)``, allowing partial results where the collection can give them
    (a cluster's; an embedded collection always answers whole)."""
    if allow_partial and getattr(coll, "shards", None) is not None:
        return coll.query(request, allow_partial=True)
    return coll.query(request)


@router.post(
    "/query", response_model=Response[QueryResult], responses=ERRORS, summary="Nearest points"
)
async def query_points(
    body: QueryRequest, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> RawResponse:
    """The ``k`` nearest points to ``vector`` (numbers, or base64 float32), or to the stored
    point ``query_id`` (which is not among its own results), best first."""
    t0 = time.perf_counter()
    request = single_request(body, coll, limits)

    def search() -> dict[str, Any]:  # search and serialise in one worker-pool call
        hits = _run(coll, request, body.allow_partial)[0]
        return hits_result(hits, body.vector_encoding, body.allow_partial)

    return await rendered(state, search, t0)


@router.post(
    "/query/batch",
    response_model=Response[list[QueryResult]],
    responses=ERRORS,
    summary="Nearest points of many vectors",
)
async def query_batch_points(
    body: QueryBatchRequest, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> RawResponse:
    """One result list per vector, in order; the queries run in parallel. ``vectors``: a list
    of vectors or one base64 block of float32 holding them all."""
    t0 = time.perf_counter()
    limits.k(body.k, body.ef)
    n = len(body.vectors) if not isinstance(body.vectors, str) else None
    if n is not None:
        limits.batch(n, "query vectors")
        limits.results(n, body.k + body.offset)
    limits.filter(body.filter)

    def search() -> Any:
        results = _run(coll, _batch_request(body, coll, limits), body.allow_partial)
        return (hits_result(r, body.vector_encoding, body.allow_partial) for r in results)

    return await rendered(state, search, t0)


def _batch_request(body: QueryBatchRequest, coll: Collection, limits: Any) -> SearchRequest:
    """The batch's request, its vectors decoded (in the worker pool)."""
    if isinstance(body.vectors, str):
        vectors = decode_block(body.vectors, coll.dim)
        limits.batch(vectors.shape[0], "query vectors")
        limits.results(vectors.shape[0], body.k + body.offset)
    else:
        vectors = stack_vectors(body.vectors, coll.dim)
    return body.search_request(vectors=vectors)
