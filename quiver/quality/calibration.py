"""Target-recall search: choose ``ef`` from a calibration instead of asking users to guess it.

:func:`calibrate` samples stored points and uses each as a query that must behave like an
unseen one: its own row is never returned and is made a dead end (no out-edges) for the
search, because a stored point's own adjacency list leads straight to its neighbours and
would make the calibration optimistic. It finds each query's exact top-k among the other
stored points and measures the index's recall@k over a grid of ``ef``. The result,
a :class:`Calibration`, is saved in the index manifest; :meth:`Calibration.ef_for` returns
the smallest ``ef`` that reached a target recall. A calibration goes stale when the index
grows or shrinks by more than :data:`REFRESH_FACTOR` or has changed (adds + deletes) by more
than its size at calibration; the index then recalibrates on the next target-recall search.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from quiver.engine.state import IndexState, SearchPlan
from quiver.metrics import Metric
from quiver.recall import recall_at_k

if TYPE_CHECKING:
    from quiver.engine.vamana import VamanaIndex as Index

#: List sizes measured (dense enough that the chosen one overshoots a target by little).
CALIBRATION_EFS = (
    10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128, 160, 192, 256, 384, 512, 768,
    1024,
)  # fmt: skip
#: Recall at which calibration stops raising ef.
SATURATED = 0.999
#: Stored points used as queries (each costs one exact scan of the index).
DEFAULT_QUERIES = 300
#: A calibration is stale once the live count is this many times larger or smaller.
REFRESH_FACTOR = 2.0
_BLOCK_ROWS = 65_536
#: Query rows are searched in groups of at most this fraction of the index, so that the dead
#: ends made for one group hardly change the graph the group searches.
_GROUP_FRACTION = 0.005


@dataclass(frozen=True)
class Calibration:
    """Measured recall@``k`` of an index at each ``ef`` (leave-one-out stored queries).

    ``count``: live points when measured; ``queries``: how many were used.
    """

    k: int
    efs: tuple[int, ...]
    recalls: tuple[float, ...]
    count: int
    queries: int
    seconds: float

    def ef_for(self, target: float) -> int:
        """Smallest calibrated ``ef`` whose recall reached ``target`` (else the largest)."""
        for ef, recall in zip(self.efs, self.recalls, strict=True):
            if recall >= target:
                return ef
        return self.efs[-1]

    def stale(self, count: int, changes: int) -> bool:
        """True when ``count`` live points, after ``changes`` adds and deletes since the
        calibration, differ too much from what was calibrated."""
        return (
            count > REFRESH_FACTOR * self.count
            or REFRESH_FACTOR * count < self.count
            or changes > self.count
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (stored in the manifest)."""
        out = asdict(self)
        out["efs"] = list(self.efs)
        out["recalls"] = [round(r, 5) for r in self.recalls]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        return cls(
            int(d["k"]),
            tuple(int(e) for e in d["efs"]),
            tuple(float(r) for r in d["recalls"]),
            int(d["count"]),
            int(d["queries"]),
            float(d["seconds"]),
        )


def _segment_blocks(state: IndexState) -> Any:
    """(first row, float block) over the stored vectors of ``state``, in row order."""
    starts = state.segment_starts
    for i, segment in enumerate(state.segments):
        for b0 in range(0, segment.shape[0], _BLOCK_ROWS):
            yield int(starts[i]) + b0, np.asarray(segment[b0 : b0 + _BLOCK_ROWS])


def exact_top_k(
    state: IndexState, queries: np.ndarray, query_rows: np.ndarray, k: int, metric: Metric
) -> np.ndarray:
    """Exact distances (q, k) float32, ascending, of each query's ``k`` nearest live rows.

    ``queries`` are prepared (unit-normalised for cosine); each query's own row is left out.
    Distances follow the index's convention (cosine ``1 - cos``, ip ``-dot``, l2 squared).
    """
    nq = queries.shape[0]
    best = np.full((nq, 0), np.inf, dtype=np.float32)
    q_sq = np.einsum("ij,ij->i", queries, queries)[:, None]
    for start, block in _segment_blocks(state):
        stop = min(start + block.shape[0], state.count)
        if stop <= start:
            break
        block = block[: stop - start]
        dots = queries @ block.T
        if metric == Metric.COSINE:
            d = 1.0 - dots
        elif metric == Metric.IP:
            d = -dots
        else:
            d = np.maximum(q_sq - 2.0 * dots + np.einsum("ij,ij->i", block, block), 0.0)
        d[:, state.live[start:stop] == 0] = np.inf
        own = (query_rows >= start) & (query_rows < stop)
        d[np.flatnonzero(own), query_rows[own] - start] = np.inf
        merged = np.concatenate([best, d.astype(np.float32)], axis=1)
        keep = min(k, merged.shape[1])
        best = np.sort(np.partition(merged, keep - 1, axis=1)[:, :keep], axis=1)
    if best.shape[1] < k:
        pad = np.full((nq, k - best.shape[1]), np.inf, dtype=np.float32)
        best = np.concatenate([best, pad], axis=1)
    return best


def _search_without_self(
    index: Index, state: IndexState, q: np.ndarray, rows: np.ndarray, k: int, ef: int
) -> np.ndarray:
    """Distances (q, k) of each query's top-``k`` with its own row dropped: ``k + 1`` results
    with list size ``ef + 1`` (the own row, always near the top, takes one slot)."""
    plan = SearchPlan(k + 1, ef + 1, ef + 1, None, True)
    found, dists, _ = index.execute(state, q, plan)
    own = found == rows[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)  # else drop the last
    keep = np.ones(found.shape, dtype=bool)
    keep[np.arange(found.shape[0]), drop] = False
    return dists[keep].reshape(-1, k)


def calibrate(
    index: Index,
    k: int = 10,
    queries: int = DEFAULT_QUERIES,
    efs: tuple[int, ...] = CALIBRATION_EFS,
    seed: int = 0,
) -> Calibration:
    """Measure ``index``'s recall@``k`` at each ``ef`` of ``efs`` on sampled stored points.

    A stored point is not an unseen query: searched as it is, its own out-edges lead straight
    to its neighbours (an optimistic bound); with its out-edges removed (in a private copy of
    the degrees, for a small group of query rows at a time) its neighbourhood has a hole
    (a pessimistic bound: its neighbours' edges were pruned in its favour). The calibrated
    recall is the midpoint of the two, each scored against the exact top-``k`` of the other
    points (ann-benchmarks tie rule, :func:`quiver.recall_at_k`). The grid stops once both
    bounds reach :data:`SATURATED`.
    """
    t0 = time.perf_counter()
    state = index.state()
    live = np.flatnonzero(state.live[: state.count])
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(live, size=min(queries, live.shape[0]), replace=False))
    q = index.vectors_of_rows(state, rows)
    truth = exact_top_k(state, q, rows, k, Metric[index.metric.upper()])
    group = max(1, int(_GROUP_FRACTION * live.shape[0]))
    order = rng.permutation(rows.shape[0])  # groups spread over the whole index
    views = []
    for g0 in range(0, rows.shape[0], group):
        members = np.sort(order[g0 : g0 + group])
        degrees = state.degrees.copy()
        degrees[rows[members]] = 0
        views.append((members, state._replace(degrees=degrees)))
    grid, upper, lower = [], [], []
    for ef in (ef for ef in efs if ef >= k):
        hi = recall_at_k(_search_without_self(index, state, q, rows, k, ef), truth, k)
        d = np.empty((rows.shape[0], k), dtype=np.float32)
        for members, view in views:
            d[members] = _search_without_self(index, view, q[members], rows[members], k, ef)
        grid.append(ef)
        upper.append(hi)
        lower.append(recall_at_k(d, truth, k))
        if min(hi, lower[-1]) >= SATURATED:
            break
    # recall cannot fall with a longer list: smooth sampling noise away
    mid = np.maximum.accumulate((np.array(upper) + np.array(lower)) / 2)
    return Calibration(
        k, tuple(grid), tuple(float(r) for r in mid), int(live.shape[0]), int(rows.shape[0]),
        time.perf_counter() - t0,
    )  # fmt: skip
