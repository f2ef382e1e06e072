"""Result types returned by the public API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class SearchResult(NamedTuple):
    """Top-k of each query: ``ids`` int64 (q, k), padded with -1, and ``distances`` float32
    (q, k), padded with inf, ascending (smaller = closer). Unpacks as ``ids, distances``: ids
    first, as hnswlib's ``knn_query`` returns ``(labels, distances)``; FAISS's ``search`` returns
    ``(D, I)``, distances first."""

    ids: np.ndarray
    distances: np.ndarray


@dataclass(frozen=True)
class Point:
    """A stored point: the user's id, its JSON payload and (on request) its float vector.

    For cosine collections the vector is the stored unit-normalised one.
    """

    id: int | str
    payload: dict[str, Any] | None = None
    vector: list[float] | None = None


@dataclass(frozen=True, init=False)
class ScoredPoint:
    """A search hit. ``score``: cosine similarity (cosine), dot product (ip) or squared
    Euclidean distance (l2); higher is better for cosine and ip, lower for l2."""

    id: int | str
    score: float
    payload: dict[str, Any] | None = None
    vector: list[float] | None = None

    def __init__(
        self,
        id: int | str,  # noqa: A002 - the field's name
        score: float,
        payload: dict[str, Any] | None = None,
        vector: list[float] | None = None,
    ) -> None:
        # the fields straight into the instance dict: a frozen dataclass's own __init__ sets
        # each through object.__setattr__, 2x slower, and a batch of searches makes one hit
        # object per result (10,000 for 1,000 queries of k=10)
        fields = self.__dict__
        fields["id"] = id
        fields["score"] = score
        fields["payload"] = payload
        fields["vector"] = vector


class CompactHits(NamedTuple):
    """Hits of a batch of queries as arrays, for integer ids without payloads or vectors:
    query ``i``'s hits are ``ids[starts[i]:starts[i] + counts[i]]`` (``starts`` the running sum
    of ``counts``) with their ``scores``, best first, as :class:`ScoredPoint` would give them.
    Three arrays instead of one object per hit: what a cluster node sends back (they pickle in
    microseconds) and what :meth:`quiver.Collection.query_compact` returns."""

    ids: np.ndarray  # uint64
    scores: np.ndarray  # float64 (the exact float32 scores, widened)
    counts: np.ndarray  # int64, one per query
