"""Target-recall search: choose ``ef`` from a calibration instead of asking users to guess it.

:func:`calibrate` samples stored points, uses each as a query with its own row left out
(leave-one-out, so it behaves like an unseen query from the same data), finds its exact top-k
among the stored points and measures the index's recall@k over a grid of ``ef``. The result,
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

from quiver.metrics import Metric
from quiver.recall import recall_at_k

if TYPE_CHECKING:
    from quiver.index import Index, IndexState

#: List sizes measured (dense enough that the chosen one overshoots a target by little).
CALIBRATION_EFS = (
    10, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256, 320,
    384, 512, 768, 1024,
)  # fmt: skip
#: Stored points used as queries (each costs one exact scan of the index).
DEFAULT_QUERIES = 500
#: A calibration is stale once the live count is this many times larger or smaller.
REFRESH_FACTOR = 2.0
_BLOCK_ROWS = 65_536


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


def calibrate(
    index: Index,
    k: int = 10,
    queries: int = DEFAULT_QUERIES,
    efs: tuple[int, ...] = CALIBRATION_EFS,
    seed: int = 0,
) -> Calibration:
    """Measure ``index``'s recall@``k`` at each ``ef`` of ``efs`` on sampled stored points.

    Each sampled point is searched with ``k + 1`` results and list size ``ef + 1`` (its own
    row, always found, takes one slot), its own row is dropped, and the rest is scored against
    the exact top-``k`` (ann-benchmarks tie rule, :func:`quiver.recall_at_k`).
    """
    t0 = time.perf_counter()
    state = index.state()
    live = np.flatnonzero(state.live[: state.count])
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(live, size=min(queries, live.shape[0]), replace=False))
    q = index.vectors_of_rows(state, rows)
    truth = exact_top_k(state, q, rows, k, Metric[index.metric.upper()])
    recalls = []
    grid = tuple(ef for ef in efs if ef >= k)
    for ef in grid:
        found, dists, _ = index.search_state(state, q, k + 1, ef + 1, ef + 1, return_rows=True)
        own = found == rows[:, None]
        # drop each query's own row (or the last result when it was not found)
        drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
        keep = np.ones(found.shape, dtype=bool)
        keep[np.arange(found.shape[0]), drop] = False
        recalls.append(recall_at_k(dists[keep].reshape(-1, k), truth, k))
    # recall cannot fall with a longer list: smooth sampling noise away
    recalls = list(np.maximum.accumulate(recalls))
    return Calibration(
        k, grid, tuple(float(r) for r in recalls), int(live.shape[0]), int(rows.shape[0]),
        time.perf_counter() - t0,
    )  # fmt: skip
