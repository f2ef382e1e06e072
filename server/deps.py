"""Dependencies of the route handlers: server state, database, collection, limits, auth,
and the bounded worker pool that runs index calls off the event loop."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader

from quiver import Collection, Database

from .errors import ApiError
from .metrics import Metrics
from .schemas import CollectionNamePattern, Filter, HasIdCondition
from .settings import Settings

logger = logging.getLogger(__name__)
R = TypeVar("R")

API_KEY_HEADER = "api-key"


@dataclass
class ServerState:
    """Everything one app instance owns; lives on ``app.state.quiver``."""

    settings: Settings
    limiter: CapacityLimiter
    write_limiter: CapacityLimiter
    metrics: Metrics
    snapshot_dir: FsPath
    db: Database | None = None
    ready: bool = False
    warming: bool = False  # ready, with kernels still compiling in the background
    startup_error: str | None = None
    collections: list[str] = field(default_factory=list)

    async def run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run a blocking read (search, get, count...) in the worker pool, at most
        ``settings.concurrency()`` at once."""
        call = functools.partial(fn, *args, **kwargs) if args or kwargs else fn
        return await anyio.to_thread.run_sync(call, limiter=self.limiter)

    async def write(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run a blocking write in its own small pool. Writes to a collection take turns (its
        write lock, then an fsync), so queued writes wait there without holding the readers'
        slots: a burst of upserts never starves the queries."""
        call = functools.partial(fn, *args, **kwargs) if args or kwargs else fn
        return await anyio.to_thread.run_sync(call, limiter=self.write_limiter)


async def get_state(request: Request) -> ServerState:
    """The app's :class:`ServerState`."""
    state: ServerState = request.app.state.quiver
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


async def get_db(state: StateDep) -> Database:
    """The open database; 503 until start-up (open, warm-up) has finished."""
    if not state.ready or state.db is None:
        message = state.startup_error or "the server is starting (opening collections, warm-up)"
        raise ApiError(503, "not_ready", message, headers={"Retry-After": "1"})
    return state.db


DbDep = Annotated[Database, Depends(get_db)]

CollectionName = Annotated[
    str,
    Path(
        pattern=CollectionNamePattern,
        description="collection name: 1-64 of A-Z a-z 0-9 _ -",
        examples=["wordnet"],
    ),
]


async def get_collection(name: CollectionName, db: DbDep) -> Collection:
    """The collection named in the path (404 ``collection_not_found`` if it doesn't exist)."""
    return db.get_collection(name)


CollectionDep = Annotated[Collection, Depends(get_collection)]


@dataclass(frozen=True)
class Limits:
    """The configurable request limits, checked on top of the schemas' hard caps."""

    settings: Settings

    def batch(self, n: int, what: str) -> None:
        """413 when a request carries more than ``max_batch`` items."""
        if n > self.settings.max_batch:
            raise ApiError(
                413,
                "payload_too_large",
                f"{n} {what} in one request; the limit is {self.settings.max_batch} "
                "(QUIVER_MAX_BATCH): split the batch",
            )

    def k(self, k: int, ef: int | None) -> None:
        """422 when ``k`` or ``ef`` exceeds the server's limit."""
        if k > self.settings.max_k:
            raise ApiError(
                422,
                "limit_exceeded",
                f"k={k} exceeds the server limit of {self.settings.max_k} (QUIVER_MAX_K)",
            )
        if ef is not None and ef > self.settings.max_ef:
            raise ApiError(
                422,
                "limit_exceeded",
                f"ef={ef} exceeds the server limit of {self.settings.max_ef} (QUIVER_MAX_EF)",
            )

    def results(self, queries: int, k: int) -> None:
        """422 when a batch query could return more than ``max_batch_results`` hits."""
        total = queries * k
        if total > self.settings.max_batch_results:
            raise ApiError(
                422,
                "limit_exceeded",
                f"{queries} query vectors x k={k} = {total} results in one request; the limit "
                f"is {self.settings.max_batch_results} (QUIVER_MAX_BATCH_RESULTS): split the "
                "batch or lower k",
            )

    def filter(self, flt: Filter | None) -> None:
        """413 when a filter's ``has_id`` lists hold more than ``max_batch`` ids together."""
        ids = sum(len(c.has_id) for c in _conditions(flt) if isinstance(c, HasIdCondition))
        self.batch(ids, "ids in the filter's has_id lists")

    def dim(self, dim: int) -> None:
        """422 when a new collection's dimension exceeds ``max_dim``."""
        if dim > self.settings.max_dim:
            raise ApiError(
                422,
                "limit_exceeded",
                f"dim={dim} exceeds the server limit of {self.settings.max_dim} (QUIVER_MAX_DIM)",
            )


def _conditions(flt: Filter | None) -> Iterator[Any]:
    """Every condition of a filter, nested filters' included."""
    stack = [flt] if flt is not None else []
    while stack:
        f = stack.pop()
        for condition in (*(f.must or ()), *(f.should or ()), *(f.must_not or ())):
            if isinstance(condition, Filter):
                stack.append(condition)
            else:
                yield condition


async def get_limits(state: StateDep) -> Limits:
    """The limits of this server."""
    return Limits(state.settings)


LimitsDep = Annotated[Limits, Depends(get_limits)]

_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="required when the server runs with an API key (QUIVER_API_KEY)",
)


async def require_api_key(
    state: StateDep, provided: Annotated[str | None, Depends(_api_key_header)]
) -> None:
    """401 unless the server has no key or the ``api-key`` header matches it (constant time)."""
    key = state.settings.api_key
    if key is None:
        return
    if provided is None or not hmac.compare_digest(
        provided.encode("utf-8", "surrogatepass"), key.get_secret_value().encode("utf-8")
    ):
        raise ApiError(
            401,
            "unauthorized",
            f"missing or wrong API key: send it in the '{API_KEY_HEADER}' header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
