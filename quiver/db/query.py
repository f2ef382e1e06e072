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
from quiver.types import Point, ScoredPoint


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


def score_of(metric: str, distance: float) -> float:
    """The user-facing score of an index distance (cosine similarity, dot, squared L2)."""
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
        excluded: list[Any] | None = None,
        current: bool = True,
    ) -> list[list[ScoredPoint]]:
        """Hits per query of ``request`` with validated ``queries`` (q, D) and resolved ``ef``.

        ``excluded[i]``: the id left out of query ``i``'s results (a query by stored id).
        """
        k = request.params.k
        skip = request.offset + (1 if excluded is not None else 0)
        plan = self._planner.plan(view, request.parsed_filter, k, ef, skip=skip, current=current)
        rows, dists, _ = self._index.execute(view.state, self._index.prepare_queries(queries), plan)
        return [
            self._hits(view, rows[i], dists[i], request, None if excluded is None else excluded[i])
            for i in range(queries.shape[0])
        ]

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
