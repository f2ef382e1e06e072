"""The micro-batcher: grouped queries answer as one by one, each with its own options and its
own error, and every queued query is answered even when its collection goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import quiver
from quiver import Collection, SearchRequest
from quiver.errors import InvalidInputError, QuiverError
from quiver.server.batcher import QueryBatcher, is_small, options_key

DIM = 16
G_A = {"must": [{"key": "g", "match": {"value": "a"}}]}
N = 400


@pytest.fixture
def db(tmp_path: Path) -> Iterator[quiver.Database]:
    rng = np.random.default_rng(3)
    with quiver.Database(tmp_path / "db") as database:
        coll = database.create_collection("c", DIM, "cosine")
        payloads = [{"g": ["a", "b"][i % 2], "n": i} for i in range(N)]
        coll.upsert(list(range(N)), rng.standard_normal((N, DIM)).astype(np.float32), payloads)
        yield database


def _queries(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(fn)


def _batcher(sizes: list[int], run: Any = _in_thread) -> QueryBatcher:
    return QueryBatcher(run, sizes.append)


def test_grouped_results_equal_one_by_one(db: quiver.Database) -> None:
    coll = db.get_collection("c")
    queries = _queries(24)
    requests = [SearchRequest(vectors=q, k=5, ef=32, filter=G_A) for q in queries]
    sizes: list[int] = []

    async def main() -> list[Any]:
        batcher = _batcher(sizes)
        return await asyncio.gather(*(batcher.query(coll, r) for r in requests))

    got = asyncio.run(main())
    assert got == [coll.query(r)[0] for r in requests]
    assert max(sizes) > 1 and sum(sizes) == len(requests)


def test_per_query_options_are_kept(db: quiver.Database) -> None:
    coll = db.get_collection("c")
    queries = _queries(12, seed=1)
    options: list[dict[str, Any]] = [
        {"k": 3},
        {"k": 7, "ef": 20},
        {"k": 4, "offset": 2},
        {"k": 5, "with_payload": True},
        {"k": 5, "with_payload": ["n"], "with_vector": True},
        {"k": 6, "filter": {"must": [{"key": "g", "match": {"value": "b"}}]}},
    ]
    requests = [
        SearchRequest(vectors=q, **options[i % len(options)]) for i, q in enumerate(queries)
    ]
    sizes: list[int] = []

    async def main() -> list[Any]:
        batcher = _batcher(sizes)
        return await asyncio.gather(*(batcher.query(coll, r) for r in requests))

    got = asyncio.run(main())
    for request, hits in zip(requests, got, strict=True):
        assert hits == coll.query(request)[0]
        assert len(hits) == request.k
    assert sorted(sizes) == [2] * len(options)  # one group per distinct options


def test_a_bad_query_fails_alone(db: quiver.Database) -> None:
    coll = db.get_collection("c")
    good = [SearchRequest(vectors=q, k=4) for q in _queries(5, seed=2)]
    bad = SearchRequest(vectors=_queries(1, seed=3, dim=DIM + 2)[0], k=4)
    requests = [*good[:2], bad, *good[2:]]

    async def main() -> list[Any]:
        batcher = _batcher([])
        return await asyncio.gather(
            *(batcher.query(coll, r) for r in requests), return_exceptions=True
        )

    got = asyncio.run(main())
    assert isinstance(got[2], InvalidInputError) and "dimension" in str(got[2])
    assert [g for i, g in enumerate(got) if i != 2] == [coll.query(r)[0] for r in good]


@pytest.mark.parametrize("action", ["drop", "close"])
def test_collection_gone_mid_batch_answers_every_query(db: quiver.Database, action: str) -> None:
    coll = db.get_collection("c")
    requests = [SearchRequest(vectors=q, k=3, filter=G_A) for q in _queries(10, seed=4)]

    async def dropping_pool(fn: Callable[[], Any]) -> Any:
        if action == "drop":
            await asyncio.to_thread(db.drop_collection, "c")
        else:
            await asyncio.to_thread(coll.close)
        return await asyncio.to_thread(fn)

    async def main() -> list[Any]:
        batcher = QueryBatcher(dropping_pool)
        gathered = asyncio.gather(
            *(batcher.query(coll, r) for r in requests), return_exceptions=True
        )
        return await asyncio.wait_for(gathered, 30)

    got = asyncio.run(main())  # answered, not stuck: hits from the old snapshot, or an error
    assert len(got) == len(requests)
    assert all(isinstance(g, list | QuiverError) for g in got), got


def test_a_failing_pool_answers_every_query_and_the_batcher_recovers(
    db: quiver.Database,
) -> None:
    coll = db.get_collection("c")
    flt = {"must": [{"key": "n", "range": {"gte": 0}}]}  # filtered: goes to the pool
    requests = [SearchRequest(vectors=q, k=3, filter=flt) for q in _queries(6, seed=5)]
    failing = [True]

    async def flaky_pool(fn: Callable[[], Any]) -> Any:
        if failing[0]:
            failing[0] = False
            raise RuntimeError("worker pool unavailable")
        return await asyncio.to_thread(fn)

    async def main() -> tuple[list[Any], list[Any]]:
        batcher = QueryBatcher(flaky_pool)
        first = await asyncio.gather(
            *(batcher.query(coll, r) for r in requests), return_exceptions=True
        )
        second = await asyncio.gather(*(batcher.query(coll, r) for r in requests))
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(g, RuntimeError) for g in first)
    assert second == [coll.query(r)[0] for r in requests]


def test_a_lone_small_query_runs_inline(db: quiver.Database) -> None:
    coll = db.get_collection("c")
    request = SearchRequest(vectors=_queries(1, seed=6)[0], k=5, ef=64)
    assert is_small(request) and options_key(request) is not None
    assert not is_small(SearchRequest(vectors=request.vectors, k=5, ef=500))
    assert not is_small(SearchRequest(vectors=request.vectors, filter=G_A))
    assert options_key(SearchRequest(ids=[3])) is None

    async def no_pool(fn: Callable[[], Any]) -> Any:
        raise AssertionError("a lone small query should not go to the pool")

    async def main() -> Any:
        return await QueryBatcher(no_pool).query(coll, request)

    assert asyncio.run(main()) == coll.query(request)[0]

    many = [SearchRequest(vectors=q, k=5) for q in _queries(8, seed=10)]
    sizes: list[int] = []

    async def grouped() -> list[Any]:  # a group of small queries runs on the loop too
        batcher = QueryBatcher(no_pool, sizes.append)
        return await asyncio.gather(*(batcher.query(coll, r) for r in many))

    assert asyncio.run(grouped()) == [coll.query(r)[0] for r in many]
    assert sizes == [8]


def test_queries_of_two_collections_are_not_mixed(db: quiver.Database) -> None:
    first = db.get_collection("c")
    second = db.create_collection("d", DIM, "cosine")
    second.upsert(list(range(50)), _queries(50, seed=7))
    queries = _queries(8, seed=8)

    async def main() -> list[Any]:
        batcher = _batcher([])
        colls: list[Collection] = [first, second] * 4
        return await asyncio.gather(
            *(
                batcher.query(c, SearchRequest(vectors=q, k=3))
                for c, q in zip(colls, queries, strict=True)
            )
        )

    got = asyncio.run(main())
    for i, hits in enumerate(got):
        coll = first if i % 2 == 0 else second
        assert hits == coll.search(queries[i], k=3)


def test_a_request_handled_alone_skips_the_queue(db: quiver.Database) -> None:
    coll = db.get_collection("c")
    small = SearchRequest(vectors=_queries(1, seed=9)[0], k=4)
    filtered = SearchRequest(vectors=small.vectors, k=4, filter=G_A)
    sizes: list[int] = []
    pooled: list[int] = []

    async def pool(fn: Callable[[], Any]) -> Any:
        pooled.append(1)
        return await asyncio.to_thread(fn)

    async def main() -> tuple[Any, Any]:
        batcher = QueryBatcher(pool, sizes.append)
        with batcher.handling():
            hits = await batcher.query(coll, small)
            assert batcher._task is None  # answered without the drain task
            return hits, await batcher.query(coll, filtered)

    hits, filtered_hits = asyncio.run(main())
    assert hits == coll.query(small)[0] and filtered_hits == coll.query(filtered)[0]
    assert sizes == [1, 1] and pooled == [1]  # the filtered one went to the pool
