"""Collections: create, list, describe, drop."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from ..deps import CollectionName, DbDep, LimitsDep, StateDep
from ..redact import public_info, redact_paths
from ..schemas import (
    CollectionDescription,
    CollectionInfo,
    CollectionList,
    CreateCollection,
    ErrorBody,
    Response,
)

router = APIRouter(prefix="/collections", tags=["collections"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid input"},
    404: {"model": ErrorBody, "description": "unknown collection"},
}


@router.get("", response_model=Response[CollectionList], summary="List collections")
async def list_collections(db: DbDep, state: StateDep) -> Response[CollectionList]:
    """Names of all collections, sorted."""
    t0 = time.perf_counter()
    names = await state.run(db.list_collections)
    result = CollectionList(collections=[CollectionDescription(name=n) for n in sorted(names)])
    return Response(result=result, time=time.perf_counter() - t0)


@router.put(
    "/{name}",
    response_model=Response[CollectionInfo],
    responses={**_ERRORS, 409: {"model": ErrorBody, "description": "the collection exists"}},
    summary="Create a collection",
)
async def create_collection(
    name: CollectionName, body: CreateCollection, db: DbDep, state: StateDep, limits: LimitsDep
) -> Response[CollectionInfo]:
    """Create an empty collection (409 ``collection_exists`` if the name is taken)."""
    t0 = time.perf_counter()
    limits.dim(body.dim)
    params = body.model_dump()
    coll = await state.write(db.create_collection, name, params.pop("dim"), **params)
    info = await state.run(coll.info)
    return Response(result=CollectionInfo(**public_info(info)), time=time.perf_counter() - t0)


@router.get(
    "/{name}",
    response_model=Response[CollectionInfo],
    responses=_ERRORS,
    summary="Describe a collection",
)
async def collection_info(
    name: CollectionName, db: DbDep, state: StateDep
) -> Response[CollectionInfo]:
    """Count, dim, metric, id type, parameters, hot/cold bytes, deleted points and status; a
    collection that could not be opened (damaged files) has status ``failed`` and the reason
    in ``error``, while the others keep serving."""
    t0 = time.perf_counter()
    failed = db.failed_collections().get(name)
    if failed is not None:
        result = CollectionInfo(name=name, status="failed", error=redact_paths(failed))
        return Response(result=result, time=time.perf_counter() - t0)
    coll = await state.run(db.get_collection, name)
    info = await state.run(coll.info)
    return Response(result=CollectionInfo(**public_info(info)), time=time.perf_counter() - t0)


@router.delete(
    "/{name}", response_model=Response[bool], responses=_ERRORS, summary="Drop a collection"
)
async def drop_collection(name: CollectionName, db: DbDep, state: StateDep) -> Response[bool]:
    """Delete the collection and its files (404 if it doesn't exist). Snapshots are kept."""
    t0 = time.perf_counter()
    await state.write(db.drop_collection, name)
    return Response(result=True, time=time.perf_counter() - t0)
