"""Exact brute-force k-NN: the recall oracle for tests and the ground truth for benchmarks.

Blocked over queries and base rows so that the distance matrix in flight stays bounded
(``query_block x base_block`` floats), whatever the data size.
"""

from __future__ import annotations

import numpy as np

from quiver.metrics import Metric, parse_metric
from quiver.types import SearchResult

_QUERY_BLOCK = 1024
_BASE_BLOCK = 65536


def _normalized(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def _block_distances(
    q: np.ndarray, b: np.ndarray, b_sqnorm: np.ndarray, metric: Metric
) -> np.ndarray:
    dots = q @ b.T
    if metric == Metric.COSINE:
        return 1.0 - dots
    if metric == Metric.IP:
        return -dots
    q_sqnorm = np.einsum("ij,ij->i", q, q)[:, None]
    return np.maximum(q_sqnorm - 2.0 * dots + b_sqnorm[None, :], 0.0)


def _exact_rows(q: np.ndarray, rows: np.ndarray, base: np.ndarray, metric: Metric) -> np.ndarray:
    """Distances of each query to its chosen base rows, recomputed directly in float64."""
    safe = np.where(rows < 0, 0, rows)
    x = base[safe.ravel()].astype(np.float64)
    if metric == Metric.COSINE:
        x = _normalized(x)
    x = x.reshape(rows.shape + (base.shape[1],))
    qd = q.astype(np.float64)[:, None, :]
    if metric == Metric.L2:
        d = np.sum((x - qd) ** 2, axis=2)
    elif metric == Metric.IP:
        d = -np.sum(x * qd, axis=2)
    else:
        d = 1.0 - np.sum(x * qd, axis=2)
    return np.where(rows < 0, np.inf, d)


def exact_search(
    base: np.ndarray, queries: np.ndarray, k: int, metric: str | Metric = "cosine"
) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact ``k`` nearest base rows of each query.

    Parameters
    ----------
    base, queries : float arrays of shape (n, d) and (q, d).
    k : number of neighbours; when ``n < k`` the rows are padded with id -1 and distance inf.
    metric : ``"cosine"`` (1 - cos), ``"ip"`` (-dot) or ``"l2"`` (squared Euclidean).

    Returns
    -------
    ids : int64 (q, k), row numbers of ``base``, ascending by distance.
    distances : float32 (q, k).
    """
    metric = parse_metric(metric)
    base = np.asarray(base, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    if metric == Metric.COSINE:
        queries = _normalized(queries)
    n = base.shape[0]
    nq = queries.shape[0]
    ids = np.full((nq, k), -1, dtype=np.int64)
    dists = np.full((nq, k), np.inf, dtype=np.float32)
    take = min(k, n)
    if take == 0 or nq == 0:
        return ids, dists
    for q0 in range(0, nq, _QUERY_BLOCK):
        q = queries[q0 : q0 + _QUERY_BLOCK]
        best_d = np.full((q.shape[0], 0), np.inf, dtype=np.float32)
        best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
        for b0 in range(0, n, _BASE_BLOCK):
            b = base[b0 : b0 + _BASE_BLOCK]
            if metric == Metric.COSINE:
                b = _normalized(b)
            b_sq = np.einsum("ij,ij->i", b, b) if metric == Metric.L2 else None
            d = _block_distances(q, b, b_sq, metric).astype(np.float32)
            cand_d = np.concatenate([best_d, d], axis=1)
            cand_i = np.concatenate(
                [best_i, np.broadcast_to(np.arange(b0, b0 + b.shape[0]), d.shape)], axis=1
            )
            keep = min(take + 8, cand_d.shape[1])  # a little slack for the exact re-sort
            part = np.argpartition(cand_d, keep - 1, axis=1)[:, :keep]
            best_d = np.take_along_axis(cand_d, part, axis=1)
            best_i = np.take_along_axis(cand_i, part, axis=1)
        exact = _exact_rows(q, best_i, base, metric)
        order = np.lexsort((best_i, exact), axis=1)[:, :take]
        ids[q0 : q0 + q.shape[0], :take] = np.take_along_axis(best_i, order, axis=1)
        dists[q0 : q0 + q.shape[0], :take] = np.take_along_axis(exact, order, axis=1)
    return ids, dists


class FlatIndex:
    """Exact brute-force index with the same ``add`` / ``search`` contract as :class:`Index`.

    The recall oracle: every query scans every vector (float32, blocked). Ids follow the same
    rules as ``Index`` (non-negative int64, consecutive when not given, no duplicates).
    """

    def __init__(self, dim: int, metric: str | Metric = "cosine") -> None:
        from quiver.validation import positive_int

        self._dim = positive_int(dim, "dim")
        self._metric = parse_metric(metric)
        self._chunks: list[np.ndarray] = []
        self._labels = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._labels.shape[0])

    def add(self, vectors: object, ids: object = None) -> np.ndarray:
        """Store vectors (copied); return their ids."""
        from quiver.validation import as_ids, as_matrix

        x = as_matrix(vectors, self._dim)
        if ids is None:
            start = int(self._labels.max()) + 1 if len(self) else 0
            labels = np.arange(start, start + x.shape[0], dtype=np.int64)
        else:
            labels = as_ids(ids, x.shape[0], existing=self._labels)
        self._chunks.append(x)
        self._labels = np.concatenate([self._labels, labels])
        return labels

    def search(self, queries: object, k: int = 10) -> SearchResult:
        """Exact top-k: ids (int64, -1 padded) and distances (float32, inf padded)."""
        from quiver.validation import as_matrix, positive_int

        q = as_matrix(queries, self._dim, "queries")
        k = positive_int(k, "k")
        if not self._chunks:
            return SearchResult(
                np.full((q.shape[0], k), -1, np.int64), np.full((q.shape[0], k), np.inf, np.float32)
            )
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        rows, dists = exact_search(self._chunks[0], q, k, self._metric)
        ids = np.where(rows >= 0, self._labels[np.maximum(rows, 0)], -1)
        return SearchResult(ids, dists)
