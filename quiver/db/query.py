"""The search executor: runs a :class:`~quiver.db.request.SearchRequest` on a collection view.

Path of one query: the request (validated once) -> the planner's :class:`SearchPlan` for the
view -> ``VamanaIndex.execute`` (kernels) -> rows and exact distances -> hits: rows deleted
meanwhile, older versions and the query point dropped, the score threshold applied, the
first ``offset`` hits skipped, payloads (or the selected keys) and vectors attached.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quiver.db.payloads import decode_payload
from quiver.db.planner import FilterPlanner
from quiver.db.request import SearchRequest
from quiver.db.view import CollectionView
from quiver.engine.vamana import VamanaIndex
from quiver.types import CompactHits, Point, ScoredPoint


def select_payload(payload: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    """Only the top-level ``keys`` of ``payload`` that it has (an empty dict for None)."""
    if not payload:
        return {}
    return {key: payload[key] for key in keys if key in payload}


def make_point(
    index: VamanaIndex, view: CollectionView, row: int, with_payload: Any, with_vector: bool
) -> Point:
    """The point stored in ``row`` of ``view``; ``with_payload`` True, False or a key tuple."""
    payload = None
    if with_payload is not False:
        payload = decode_payload(view.payloads[row])
        if with_payload is not True:
            payload = select_payload(payload, with_payload)
    vector = index.vectors_of_rows(view.state, [row])[0].tolist() if with_vector else None
    return Point(view.ids[row], payload, vector)


#: The compact path checks a query's hits for repeated ids pairwise ((q, w, w) booleans); wider
#: hit rows take the per-hit path.
COMPACT_MAX_WIDTH = 256


def score_of(metric: str, distance: Any) -> Any:
    """The user-facing score of an index distance (cosine similarity, dot, squared L2); of
    each element of an array of distances too."""
    if metric == "cosine":
        return 1.0 - distance
    if metric == "ip":
        return -distance
    return distance


class QueryExecutor:
    """Executes search requests for one collection (its index, planner and metric)."""

    def __init__(self, index: VamanaIndex, planner: FilterPlanner, metric: str) -> None:
        self._index = index
        self._planner = planner
        self._metric = metric
        self._lower_is_better = metric == "l2"

    def run(
        self,
        view: CollectionView,
        queries: np.ndarray,
        request: SearchRequest,
        ef: int,
        rerank: int,
        excluded: list[Any] | None = None,
        current: bool = True,
    ) -> list[list[ScoredPoint]]:
        """Hits per query of ``request`` with validated ``queries`` (q, D) and resolved ``ef``
        and ``rerank`` depth.

        ``excluded[i]``: the id left out of query ``i``'s results (a query by stored id).
        """
        rows, dists = self._search(view, queries, request, ef, rerank, excluded, current)
        return self._hit_lists(view, rows, dists, request, excluded)

    def run_compact(
        self,
        view: CollectionView,
        queries: np.ndarray,
        request: SearchRequest,
        ef: int,
        rerank: int,
        excluded: list[int] | None = None,
        current: bool = True,
    ) -> CompactHits:
        """:meth:`run` as :class:`~quiver.types.CompactHits`: the same hits, for integer ids
        and a request without payloads or vectors (the caller checks), with no per-hit object
        (about 10 us per query less)."""
        rows, dists = self._search(view, queries, request, ef, rerank, excluded, current)
        if rows.shape[1] > COMPACT_MAX_WIDTH:
            return compact_hit_lists(self._hit_lists(view, rows, dists, request, excluded))
        return self._compact(view, rows, dists, request, excluded)

    def _search(
        self,
        view: CollectionView,
        queries: np.ndarray,
        request: SearchRequest,
        ef: int,
        rerank: int,
        excluded: list[Any] | None,
        current: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        k = request.params.k
        skip = request.offset + (1 if excluded is not None else 0)
        flt = request.parsed_filter
        plan = self._planner.plan(view, flt, k, ef, rerank=rerank, skip=skip, current=current)
        rows, dists, _ = self._index.execute(view.state, self._index.prepare_queries(queries), plan)
        return rows, dists

    def _hit_lists(
        self,
        view: CollectionView,
        rows: np.ndarray,
        dists: np.ndarray,
        request: SearchRequest,
        excluded: list[Any] | None,
    ) -> list[list[ScoredPoint]]:
        return [
            self._hits(view, rows[i], dists[i], request, None if excluded is None else excluded[i])
            for i in range(rows.shape[0])
        ]

    def _compact(
        self,
        view: CollectionView,
        rows: np.ndarray,
        dists: np.ndarray,
        request: SearchRequest,
        excluded: list[int] | None,
    ) -> CompactHits:
        """What :meth:`_hits` keeps, decided for all queries at once with masks, step for
        step: rows up to the first -1 padding, live, not the query point, not an id already
        kept higher up (an older version), up to the first one below the score threshold,
        then ``offset`` skipped and ``k`` kept."""
        q, width = rows.shape
        valid = np.logical_and.accumulate(rows >= 0, axis=1)
        safe = np.where(valid, rows, 0)
        valid &= view.state.live[safe] != 0
        ids = view.ids
        pids = np.fromiter(
            (ids[r] for r in safe.ravel().tolist()), dtype=np.uint64, count=safe.size
        ).reshape(q, width)
        if excluded is not None:
            valid &= pids != np.array(excluded, dtype=np.uint64)[:, None]
        same = (pids[:, :, None] == pids[:, None, :]) & valid[:, None, :]
        valid &= ~np.tril(same, k=-1).any(axis=2)  # an earlier kept row holds the same id
        scores = score_of(self._metric, dists.astype(np.float64))  # elementwise
        threshold = request.score_threshold
        if threshold is not None:
            fails = scores > threshold if self._lower_is_better else scores < threshold
            valid &= ~np.logical_or.accumulate(valid & fails, axis=1)  # sorted: stop there
        rank = np.cumsum(valid, axis=1)
        skip = request.offset
        keep = valid & (rank > skip) & (rank <= skip + request.params.k)
        return CompactHits(pids[keep], scores[keep], keep.sum(axis=1).astype(np.int64))

    def _hits(
        self,
        view: CollectionView,
        rows: np.ndarray,
        dists: np.ndarray,
        request: SearchRequest,
        exclude: Any,
    ) -> list[ScoredPoint]:
        hits: list[ScoredPoint] = []
        seen: set[Any] = set()
        live = view.state.live
        ids = view.ids
        k, skip = request.params.k, request.offset
        threshold = request.score_threshold
        with_payload, with_vector = request.with_payload, request.with_vector
        for row, dist in zip(rows.tolist(), dists.tolist(), strict=True):
            if row < 0 or len(hits) == k:
                break
            pid = ids[row]
            if not live[row] or pid == exclude or pid in seen:
                continue  # deleted meanwhile, the query point, or an older version
            score = score_of(self._metric, dist)
            if threshold is not None and (
                score > threshold if self._lower_is_better else score < threshold
            ):
                break  # hits are sorted: the rest are worse
            seen.add(pid)
            if skip:
                skip -= 1
                continue
            if with_payload is not False or with_vector:
                point = make_point(self._index, view, row, with_payload, with_vector)
                hits.append(ScoredPoint(pid, score, point.payload, point.vector))
            else:  # the common case: one object per hit
                hits.append(ScoredPoint(pid, score))
        return hits


def answers_compact(id_type: str, request: SearchRequest) -> bool:
    """Whether ``request``'s hits can come as :class:`~quiver.types.CompactHits` from a
    collection of ``id_type`` ids: integer ids, and no payloads or vectors asked for."""
    return id_type == "uint64" and request.with_payload is False and not request.with_vector


def compact_hit_lists(hits: list[list[ScoredPoint]]) -> CompactHits:
    """:class:`~quiver.types.CompactHits` of hit lists without payloads or vectors, of
    integer ids."""
    counts = np.fromiter(map(len, hits), dtype=np.int64, count=len(hits))
    total = int(counts.sum())
    flat = [h for query in hits for h in query]
    ids = np.fromiter((h.id for h in flat), dtype=np.uint64, count=total)
    scores = np.fromiter((h.score for h in flat), dtype=np.float64, count=total)
    return CompactHits(ids, scores, counts)
