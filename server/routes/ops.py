"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import StateDep, require_api_key
from ..redact import redact_paths
from ..schemas import Health

router = APIRouter(tags=["operations"])

WARMING_MESSAGE = (
    "ready for queries; the insertion and batch-search kernels are still compiling in the "
    "background (upserts and batch queries wait for them)"
)


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    """Always 200 while the process serves HTTP (no API key needed)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "starting, or start-up failed"}},
    summary="Readiness: collections open and kernels compiled",
)
async def readyz(state: StateDep) -> Health | JSONResponse:
    """200 once every collection is open and a query's Numba kernels are compiled; 503
    before. While the other kernels (insertion, batch search) still compile in the background
    the message says so: an upsert then waits for them."""
    if state.ready and state.db is not None:
        # Not through the worker pool: readiness must answer while every slot is busy.
        failed = {n: redact_paths(m) for n, m in state.db.failed_collections().items()}
        return Health(
            status="ready",
            collections=len(state.db.list_collections()),
            message=WARMING_MESSAGE if state.warming else None,
            failed_collections=failed or None,
        )
    status = "failed" if state.startup_error else "starting"
    body = Health(status=status, message=state.startup_error)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    summary="Prometheus metrics",
)
async def metrics(state: StateDep, _: Annotated[None, Depends(require_api_key)]) -> Response:
    """Request counts and latencies by route, and every collection's size, in Prometheus text."""
    body = await state.run(generate_latest, state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
