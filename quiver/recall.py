"""Recall@k with the ann-benchmarks rule: the one recall function used everywhere."""

from __future__ import annotations

import numpy as np

#: ann-benchmarks' tolerance: a result within this distance of the true k-th neighbour counts.
DISTANCE_EPSILON = 1e-3


def recall_at_k(
    distances: np.ndarray, true_distances: np.ndarray, k: int, epsilon: float = DISTANCE_EPSILON
) -> float:
    """Mean recall@k over queries, counting ties as ann-benchmarks does.

    A returned neighbour counts when its distance is ``<= true k-th distance + epsilon``; padding
    (inf) never counts. When fewer than ``k`` true neighbours exist (``n < k``), the denominator
    is the number that exist.

    Parameters
    ----------
    distances : (q, >=k) distances of the returned neighbours, as the searched system reports
        them (or recomputed), ascending.
    true_distances : (q, >=k) exact distances of the true neighbours, ascending.
    """
    got = np.asarray(distances, dtype=np.float64)[:, :k]
    true = np.asarray(true_distances, dtype=np.float64)[:, :k]
    if got.shape[0] != true.shape[0]:
        raise ValueError(f"query count mismatch: {got.shape[0]} results vs {true.shape[0]} truths")
    exists = np.isfinite(true).sum(axis=1)
    threshold = np.where(
        exists > 0, true[np.arange(true.shape[0]), np.maximum(exists - 1, 0)], -np.inf
    )
    hits = (np.isfinite(got) & (got <= threshold[:, None] + epsilon)).sum(axis=1)
    per_query = np.where(exists > 0, np.minimum(hits, exists) / np.maximum(exists, 1), 1.0)
    return float(per_query.mean())
