"""The application factory: ``create_app(settings)`` builds a self-contained FastAPI app.

Nothing is global: each app owns its settings, database handle, worker-pool limiter and
metrics registry (tests build several). ``uvicorn --factory quiver.server.app:create_app``
works too, with settings from the environment.

Start-up opens the database (taking its directory lock) and then, in the background, opens every
collection and compiles what a query needs (by running one on a collection that has points);
``/readyz`` answers 503 until that is done, while ``/healthz`` answers at once. The rest of the
Numba kernels (insertion, batch search) compile after that, in the background: ``/readyz`` says
so in its message, and an upsert arriving meanwhile waits for them. With a warm Numba cache all
of it loads in well under a second. Shutdown (after uvicorn has drained in-flight requests)
closes the database, which checkpoints the collections and flushes the write-ahead log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from anyio import CapacityLimiter
from fastapi import Depends, FastAPI

import quiver
from quiver import CorruptIndexError, Database

from .batcher import QueryBatcher
from .deps import ServerState, require_api_key
from .docs import install_docs, operation_id
from .errors import install_error_handlers
from .lean import LeanPathMiddleware, lean_routes
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, ObserveMiddleware
from .qdrant import mount_qdrant
from .redact import redact_paths
from .routes import collections, ops, points, query, snapshots
from .routes.snapshots import remove_partial_snapshots
from .settings import Settings
from .timeouts import BodyTimeoutMiddleware

logger = logging.getLogger(__name__)

UPLOAD_SUFFIX = "/snapshots/upload"


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app serving the database in ``settings.db_dir`` (settings from the environment
    when ``None``)."""
    settings = settings if settings is not None else Settings()
    state = ServerState(
        settings=settings,
        limiter=CapacityLimiter(settings.concurrency()),
        write_limiter=CapacityLimiter(settings.max_writers),
        metrics=Metrics(lambda: _collection_infos(state)),
        snapshot_dir=settings.resolved_snapshot_dir(),
    )
    app = FastAPI(
        title="quiver",
        version=quiver.__version__,
        summary="Vector search on 2-bit codes: collections, points, top-k queries.",
        lifespan=_lifespan,
        openapi_url=None,  # served by install_docs, behind the API key
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.quiver = state
    install_error_handlers(app)
    install_docs(app, public=settings.public_docs)

    app.include_router(ops.router)
    secured = [Depends(require_api_key)]
    for module in (collections, points, query, snapshots):
        app.include_router(module.router, dependencies=secured)
    if settings.qdrant_prefix:
        mount_qdrant(app, state, settings.qdrant_prefix)

    def limit_for(path: str) -> tuple[int, str]:
        if path.endswith(UPLOAD_SUFFIX):
            return settings.max_upload_bytes, "QUIVER_MAX_UPLOAD_BYTES"
        return settings.max_body_bytes, "QUIVER_MAX_BODY_BYTES"

    # The last added runs first: observe everything, including 413s and 408s. The lean
    # path runs inside the limits and the metrics, right outside FastAPI's error handling.
    if settings.lean_queries:
        batcher = None
        if settings.query_batching:
            batcher = QueryBatcher(state.run, state.metrics.query_batch.observe)
        routes = lean_routes(state, batcher)
        app.add_middleware(LeanPathMiddleware, state=state, routes=routes, batcher=batcher)
    app.add_middleware(
        BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s, min_rate=settings.body_min_rate
    )
    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    app.add_middleware(ObserveMiddleware, metrics=state.metrics, access_log=settings.access_log)
    return app


def open_cluster(settings: Settings) -> Any:
    """A :class:`quiver.Cluster` on the Ray cluster ``settings.cluster``: the same verbs as the
    database, so the routes serve it unchanged (collections created over HTTP get
    ``cluster_shards`` x ``cluster_replicas``)."""
    from quiver.cluster import Cluster

    address = None if settings.cluster in ("", "local") else settings.cluster
    return Cluster(
        address,
        data_dir=settings.db_dir,
        namespace=settings.cluster_namespace,
        fsync=settings.fsync,
        num_threads=settings.threads,
        shards=settings.cluster_shards,
        replicas=settings.cluster_replicas,
    )


def _collection_infos(state: ServerState) -> Iterator[dict[str, Any]]:
    """``info()`` of every collection, for the metrics scrape (none before ready)."""
    if not state.ready or state.db is None:
        return
    for name in state.db.list_collections():
        try:
            yield state.db.get_collection(name).info()
        except (LookupError, CorruptIndexError):  # dropped meanwhile, or damaged
            continue


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.quiver
    s = state.settings
    logger.info(
        "opening database",
        extra={"db_dir": str(s.db_dir), "fsync": s.fsync, "threads": s.threads},
    )
    await state.write(remove_partial_snapshots, state.snapshot_dir)
    if s.cluster is not None:
        state.db = await state.write(open_cluster, s)
    else:
        state.db = await state.write(
            Database, s.db_dir, fsync=s.fsync, num_threads=s.threads, isolate_damaged=True
        )
    warm = asyncio.get_running_loop().create_task(_warm_up(state))
    try:
        yield
    finally:
        state.ready = False
        if not warm.done():
            await asyncio.shield(warm)  # a thread running warmup can't be interrupted
        logger.info("closing database (checkpoint, flush the log)")
        await state.write(state.db.close)
        state.metrics.ready.set(0)
        logger.info("database closed")


async def _warm_up(state: ServerState) -> None:
    """Open every collection and compile the query kernels, report ready, then compile the
    remaining kernels in the background."""
    db = state.db
    if db is None:
        return
    try:
        t0 = time.perf_counter()
        failed = db.failed_collections()  # damaged: listed as failed, the others serve
        names = [n for n in await state.run(db.list_collections) if n not in failed]
        for name in names:
            await state.run(db.get_collection, name)
        seconds = await state.run(_compile_query_path, db, names)
        state.collections = list(names)
        state.warming = True
        state.ready = True
        state.metrics.ready.set(1)
        logger.info(
            "ready",
            extra={
                "collections": len(names),
                "warmup_s": round(seconds, 3),
                "startup_s": round(time.perf_counter() - t0, 3),
            },
        )
        seconds = await state.run(quiver.warmup)
        logger.info("every kernel compiled", extra={"warmup_s": round(seconds, 3)})
    except Exception as exc:
        state.startup_error = redact_paths(f"start-up failed: {type(exc).__name__}: {exc}")
        state.ready = False
        state.metrics.ready.set(0)
        logger.exception("start-up failed")
    finally:
        state.warming = False


def _compile_query_path(db: Database, names: list[str]) -> float:
    """Compile (or load from the cache) what a one-vector query runs, by running one on the
    first collection with points; seconds taken (0 when there is none: then the first query
    of a new collection compiles it, or waits for the background warm-up)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for name in names:
        coll = db.get_collection(name)
        if coll.count():
            coll.search(rng.standard_normal(coll.dim).astype(np.float32), k=1, ef=8)
            break
    return time.perf_counter() - t0
