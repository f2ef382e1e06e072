"""Snapshots: create, list, download, delete, restore (from the server's store or an upload).

Snapshot files live in ``<snapshot_dir>/<collection>/``, outside the database directory, so
they survive dropping the collection.
"""

from __future__ import annotations

import logging
import os
import tarfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from quiver.errors import CorruptIndexError, FormatVersionError, InvalidInputError

from ..deps import CollectionDep, CollectionName, DbDep, StateDep
from ..errors import ApiError
from ..redact import public_info
from ..schemas import (
    CollectionInfo,
    ErrorBody,
    RecoverSnapshot,
    Response,
    SnapshotDescription,
    SnapshotNamePattern,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/collections/{name}/snapshots", tags=["snapshots"])

SnapshotName = Annotated[str, Path(pattern=SnapshotNamePattern, description="snapshot file")]
SUFFIX = ".snapshot"
PARTIAL_SUFFIX = SUFFIX + ".tmp"  # a snapshot being written (Collection.snapshot) or uploaded
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "not a valid snapshot"},
    404: {"model": ErrorBody, "description": "unknown collection or snapshot"},
}


def _describe(path: FsPath, collection: str) -> SnapshotDescription | None:
    """The listing entry of a snapshot file (``None`` if it was deleted meanwhile)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return SnapshotDescription(
        name=path.name,
        collection=collection,
        size=st.st_size,
        creation_time=datetime.fromtimestamp(st.st_mtime, UTC),
    )


def _not_found(collection: str, snapshot: str) -> ApiError:
    return ApiError(404, "snapshot_not_found", f"no snapshot {snapshot!r} of {collection!r}")


def _snapshot_path(state: StateDep, collection: str, snapshot: str) -> FsPath:
    path = state.snapshot_dir / collection / snapshot
    if not path.is_file():
        raise _not_found(collection, snapshot)
    return path


def remove_partial_snapshots(snapshot_dir: FsPath) -> int:
    """Delete the partial snapshot files a crash (or a full disk) left behind; how many."""
    removed = 0
    for path in snapshot_dir.glob(f"*/*{PARTIAL_SUFFIX}"):
        try:
            path.unlink()
            removed += 1
        except OSError as exc:
            logger.warning("could not remove partial snapshot %s: %s", path.name, exc)
    if removed:
        logger.info("removed partial snapshot files", extra={"count": removed})
    return removed


async def _restore(state: StateDep, db: DbDep, path: FsPath, name: str) -> CollectionInfo:
    """Restore ``path`` as collection ``name``; a file that is no snapshot (damaged, of an
    unknown format version, or missing its files) is a 400 that says why."""
    try:
        coll = await state.write(db.restore_snapshot, path, name)
    except (CorruptIndexError, FormatVersionError, tarfile.TarError) as exc:
        raise InvalidInputError(f"not a valid quiver snapshot: {exc}") from exc
    return CollectionInfo(**public_info(await state.run(coll.info)))


@router.post(
    "",
    response_model=Response[SnapshotDescription],
    responses=_ERRORS,
    summary="Create a snapshot",
)
async def create_snapshot(coll: CollectionDep, state: StateDep) -> Response[SnapshotDescription]:
    """Write a consistent copy of the collection to one file on the server."""
    t0 = time.perf_counter()
    folder = state.snapshot_dir / coll.name
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = FsPath(await state.write(coll.snapshot, folder / f"{coll.name}-{stamp}{SUFFIX}"))
    described = _describe(path, coll.name)
    if described is None:  # deleted by a concurrent request before we could answer
        raise _not_found(coll.name, path.name)
    return Response(result=described, time=time.perf_counter() - t0)


@router.get("", response_model=Response[list[SnapshotDescription]], summary="List snapshots")
async def list_snapshots(
    name: CollectionName, state: StateDep
) -> Response[list[SnapshotDescription]]:
    """Snapshots of the collection ``{name}`` (which need not exist any more), by name (the
    names carry their creation time)."""
    t0 = time.perf_counter()
    folder = state.snapshot_dir / name
    files = sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: p.name)  # names carry the time
    described = (_describe(p, name) for p in files)
    result = [d for d in described if d is not None]
    return Response(result=result, time=time.perf_counter() - t0)


@router.get(
    "/{snapshot}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-tar": {}}, "description": "the snapshot file"},
        404: _ERRORS[404],
    },
    summary="Download a snapshot",
)
async def download_snapshot(
    name: CollectionName, snapshot: SnapshotName, state: StateDep
) -> StreamingResponse:
    """The snapshot file (a tar), for ``quiver.Client.restore_snapshot`` or another server."""
    path = state.snapshot_dir / name / snapshot
    try:
        # Opened here, before the response starts: a concurrent delete can't cut it short.
        f = open(path, "rb")  # noqa: SIM115 (closed by the streaming generator)
    except (FileNotFoundError, IsADirectoryError):
        raise _not_found(name, snapshot) from None
    size = os.fstat(f.fileno()).st_size

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await anyio.to_thread.run_sync(f.read, 1 << 20):
                yield chunk
        finally:
            f.close()

    headers = {
        "content-length": str(size),
        "content-disposition": f'attachment; filename="{snapshot}"',
    }
    return StreamingResponse(chunks(), media_type="application/x-tar", headers=headers)


@router.delete(
    "/{snapshot}", response_model=Response[bool], responses=_ERRORS, summary="Delete a snapshot"
)
async def delete_snapshot(
    name: CollectionName, snapshot: SnapshotName, state: StateDep
) -> Response[bool]:
    """Remove a snapshot file."""
    t0 = time.perf_counter()
    try:
        (state.snapshot_dir / name / snapshot).unlink()
    except (FileNotFoundError, IsADirectoryError):
        raise _not_found(name, snapshot) from None
    return Response(result=True, time=time.perf_counter() - t0)


@router.put(
    "/recover",
    response_model=Response[CollectionInfo],
    responses={**_ERRORS, 409: {"model": ErrorBody, "description": "the collection exists"}},
    summary="Restore a stored snapshot",
)
async def recover_snapshot(
    name: CollectionName, body: RecoverSnapshot, db: DbDep, state: StateDep
) -> Response[CollectionInfo]:
    """Restore a snapshot stored on this server as the new collection ``{name}``."""
    t0 = time.perf_counter()
    path = _snapshot_path(state, body.from_collection or name, body.snapshot)
    info = await _restore(state, db, path, name)
    return Response(result=info, time=time.perf_counter() - t0)


@router.post(
    "/upload",
    response_model=Response[CollectionInfo],
    responses={
        **_ERRORS,
        409: {"model": ErrorBody, "description": "the collection exists"},
        413: {"model": ErrorBody, "description": "over QUIVER_MAX_UPLOAD_BYTES"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
    summary="Upload and restore a snapshot",
)
async def upload_snapshot(
    name: CollectionName, request: Request, db: DbDep, state: StateDep
) -> Response[CollectionInfo]:
    """Restore a snapshot file sent as the raw request body as the new collection ``{name}``.
    The file is kept among ``{name}``'s snapshots once restored (a partial or refused upload is
    not)."""
    t0 = time.perf_counter()
    folder = state.snapshot_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"uploaded-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}{SUFFIX}"
    partial = path.with_name(path.name + ".tmp")
    try:
        async with await anyio.open_file(partial, "wb") as f:
            async for chunk in request.stream():
                await f.write(chunk)
        info = await _restore(state, db, partial, name)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Response(result=info, time=time.perf_counter() - t0)
