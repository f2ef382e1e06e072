"""Query: top-k by vector or by a stored point's id, one query or a batch."""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter
from starlette.responses import Response as RawResponse

from quiver import ScoredPoint

from ..deps import CollectionDep, LimitsDep, StateDep
from ..rendering import rendered
from ..schemas import (
    QueryBatchRequest,
    QueryRequest,
    QueryResult,
    Response,
    ScoredRecord,
)
from .common import ERRORS, stack_vectors

router = APIRouter(prefix="/collections/{name}/points", tags=["query"])


def _hits(points: list[ScoredPoint]) -> QueryResult:
    return QueryResult(
        points=[
            ScoredRecord(
                id=p.id,
                score=float(p.score),
                payload=p.payload,
                vector=None if p.vector is None else np.asarray(p.vector).tolist(),
            )
            for p in points
        ]
    )


@router.post(
    "/query", response_model=Response[QueryResult], responses=ERRORS, summary="Nearest points"
)
async def query_points(
    body: QueryRequest, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> RawResponse:
    """The ``k`` nearest points to ``vector``, or to the stored point ``query_id`` (which is
    not among its own results), best first."""
    t0 = time.perf_counter()
    limits.k(body.k, body.ef)
    limits.filter(body.filter)
    if body.vector is None:
        request = body.search_request(ids=[body.query_id])
    else:
        request = body.search_request(vectors=np.asarray(body.vector, dtype=np.float32))
    results = await state.run(coll.query, request)
    return await rendered(state, lambda: _hits(results[0]), t0)


@router.post(
    "/query/batch",
    response_model=Response[list[QueryResult]],
    responses=ERRORS,
    summary="Nearest points of many vectors",
)
async def query_batch_points(
    body: QueryBatchRequest, coll: CollectionDep, state: StateDep, limits: LimitsDep
) -> RawResponse:
    """One result list per vector, in order; the queries run in parallel."""
    t0 = time.perf_counter()
    limits.k(body.k, body.ef)
    limits.batch(len(body.vectors), "query vectors")
    limits.results(len(body.vectors), body.k + body.offset)
    limits.filter(body.filter)
    vectors = await state.run(stack_vectors, body.vectors, coll.dim)
    results = await state.run(coll.query, body.search_request(vectors=vectors))
    return await rendered(state, lambda: (_hits(r) for r in results), t0)
