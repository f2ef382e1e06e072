"""Micro-batching of concurrent single queries: one engine call per group of them.

Sixteen clients sending one query each cost sixteen worker-pool hand-offs and sixteen engine
calls when served one by one; the event loop, not the search, is then the bottleneck. Here a
query is queued, and a drain task (scheduled after the requests already waiting to run on
the loop) takes every queued query at once: queries of one collection with the same options
share one :meth:`Collection.query` call with their vectors stacked (the engine searches them
in parallel, and the hits are the same as one by one). While a batch runs in the worker pool,
the queries that arrive meanwhile queue up for the next one.

A lone small query (one vector, no filter, a small beam) runs inline on the event loop: the
search takes less time than the hand-off to a worker thread would; when no other request is
being handled (:meth:`QueryBatcher.handling`) it runs at once, without the drain task.
Everything else runs in the worker pool. If a grouped call fails, its queries are rerun one
by one, so that each query gets its own result or its own error (a bad query never fails its
neighbours). Every queued query is answered, even when the drain itself fails (each query then
gets that error) or the collection is closed or dropped mid-batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from quiver import Collection, ScoredPoint, SearchRequest

logger = logging.getLogger(__name__)

#: A lone query runs on the event loop when its beam is at most this wide and it has no
#: filter (a filtered query may scan; it goes to the worker pool).
INLINE_MAX_EF = 128
#: Most small queries a drain runs on the event loop at once (in groups); more go to the pool.
INLINE_MAX_QUERIES = 32
#: Most queries in one engine call (a bigger group is split).
MAX_GROUP = 256

Outcome = tuple[list[ScoredPoint] | None, BaseException | None]


def is_small(request: SearchRequest) -> bool:
    """Whether ``request`` is cheap enough to run on the event loop."""
    if request.n_queries != 1 or request.parsed_filter is not None:
        return False
    if request.target_recall is not None:
        return False
    ef = request.ef if request.ef is not None else max(64, request.k)
    return ef <= INLINE_MAX_EF and request.k + request.offset <= INLINE_MAX_EF


def options_key(request: SearchRequest) -> bytes | None:
    """What queries must share to go in one engine call (their options), or ``None`` for a
    request that runs alone (queries by stored id, several vectors)."""
    if request.vectors is None or request.vectors.shape[0] != 1:
        return None
    try:
        return orjson.dumps(request.options(), option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an option orjson cannot write: not grouped
        return None


@dataclass
class _Group:
    """Queued queries of one collection with the same options."""

    coll: Collection
    requests: list[SearchRequest] = field(default_factory=list)
    futures: list[asyncio.Future[list[ScoredPoint]]] = field(default_factory=list)


def run_group(coll: Collection, requests: list[SearchRequest]) -> list[Outcome]:
    """The hits (or the error) of each request; requests with the same options share one
    engine call, rerun one by one if that call fails."""
    if len(requests) > MAX_GROUP:
        return [
            o
            for i in range(0, len(requests), MAX_GROUP)
            for o in run_group(coll, requests[i : i + MAX_GROUP])
        ]
    if len(requests) > 1:
        try:
            vectors = np.concatenate([r.vectors for r in requests])
            batch = SearchRequest(vectors=vectors, **_options(requests[0]))
            return [(hits, None) for hits in coll.query(batch)]
        except Exception:  # noqa: BLE001 - each query then gets its own answer
            logger.debug("grouped query failed; rerunning its queries one by one", exc_info=True)
    out: list[Outcome] = []
    for request in requests:
        try:
            out.append((coll.query(request)[0], None))
        except Exception as exc:  # noqa: BLE001 - handed to that query's request
            out.append((None, exc))
    return out


def _options(request: SearchRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in SearchRequest.option_names()}


def _run_groups(groups: list[_Group]) -> list[list[Outcome]]:
    return [run_group(g.coll, g.requests) for g in groups]


class QueryBatcher:
    """Queues single queries and runs them in groups (see the module docstring).

    ``run_in_pool(fn)`` runs a blocking call in the server's worker pool; ``on_batch(n)`` is
    told the size of every engine call group (for the metrics).
    """

    def __init__(
        self,
        run_in_pool: Callable[[Callable[[], Any]], Awaitable[Any]],
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run_in_pool = run_in_pool
        self._on_batch = on_batch
        self._pending: dict[tuple[int, bytes], _Group] = {}
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._handling = 0  # requests between arrival and answer (see handling())

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Counts a request from its arrival (before its body is read) to its answer: a small
        query of a request that is alone runs inline at once, with no hop through the drain
        task (there is nothing to group it with)."""
        self._handling += 1
        try:
            yield
        finally:
            self._handling -= 1

    async def query(self, coll: Collection, request: SearchRequest) -> list[ScoredPoint]:
        """The hits of a one-query ``request`` on ``coll`` (raises what the search raises)."""
        if self._handling == 1 and not self._draining and is_small(request):
            hits = coll.query(request)[0]  # alone: nothing to group it with
            if self._on_batch is not None:
                self._on_batch(1)
            return hits
        key = options_key(request)
        if key is None:
            return (await self._run_in_pool(lambda: coll.query(request)))[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[ScoredPoint]] = loop.create_future()
        group = self._pending.get((id(coll), key))  # the group holds coll: ids stay unique
        if group is None:
            group = self._pending[(id(coll), key)] = _Group(coll)
        group.requests.append(request)
        group.futures.append(future)
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())
        return await future

    def _answer_groups(self, groups: list[_Group], outcomes: list[list[Outcome]]) -> None:
        for group, results in zip(groups, outcomes, strict=True):
            if self._on_batch is not None:
                self._on_batch(len(group.requests))
            for future, (hits, error) in zip(group.futures, results, strict=True):
                _answer(future, hits, error)

    async def _drain(self) -> None:
        """Run queued groups until none is left; answer every queued query."""
        groups: list[_Group] = []
        try:
            while self._pending:
                groups = list(self._pending.values())
                self._pending = {}
                inline, pooled = _split(groups)
                if inline:
                    self._answer_groups(inline, _run_groups(inline))
                if pooled:
                    outcomes = await self._run_in_pool(lambda gs=pooled: _run_groups(gs))
                    self._answer_groups(pooled, outcomes)
                groups = []
        except BaseException as exc:  # the pool call itself failed or was cancelled
            for group in [*groups, *self._pending.values()]:
                for future in group.futures:
                    _answer(
                        future,
                        None,
                        exc
                        if isinstance(exc, Exception)
                        else RuntimeError("the query was cancelled (server shutting down)"),
                    )
            self._pending = {}
            if not isinstance(exc, Exception):
                raise
        finally:
            self._draining = False


def _split(groups: list[_Group]) -> tuple[list[_Group], list[_Group]]:
    """(groups run on the event loop, groups run in the worker pool): small queries inline,
    up to ``INLINE_MAX_QUERIES`` of them; the rest in the pool."""
    inline: list[_Group] = []
    pooled: list[_Group] = []
    budget = INLINE_MAX_QUERIES
    for group in groups:
        n = len(group.requests)
        if n <= budget and is_small(group.requests[0]):
            inline.append(group)
            budget -= n
        else:
            pooled.append(group)
    return inline, pooled


def _answer(
    future: asyncio.Future[list[ScoredPoint]],
    hits: list[ScoredPoint] | None,
    error: BaseException | None,
) -> None:
    if future.done():  # its request was cancelled (client gone)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(hits if hits is not None else [])
