"""Exact brute force with numpy (BLAS matrix products): the recall-1.0 reference point."""

from __future__ import annotations

import numpy as np

from bench.harness.adapters.base import Adapter, normalized

_BLOCK_FLOATS = 1 << 24  # score-matrix floats per block of queries: 64 MiB


class BruteForceAdapter(Adapter):
    """Scores every query against every vector; no query-time parameter."""

    library = "numpy"
    uses_ef = False

    def __init__(self, metric: str, threads: int) -> None:
        super().__init__(metric, threads)
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._sq_norms = np.zeros(0, dtype=np.float32)

    @property
    def name(self) -> str:
        return "bruteforce-numpy"

    def fit(self, train: np.ndarray) -> None:
        if self.metric == "angular":
            self._vectors = normalized(train)
        else:
            self._vectors = np.array(train, dtype=np.float32)
            self._sq_norms = np.einsum("nd,nd->n", self._vectors, self._vectors)

    def _scores(self, q: np.ndarray) -> np.ndarray:
        """Per (query, vector) values whose ascending order is the distance order (BLAS)."""
        if self.metric == "angular":
            return -(normalized(q) @ self._vectors.T)
        q = np.asarray(q, dtype=np.float32)
        return self._sq_norms[None, :] - 2.0 * (q @ self._vectors.T)

    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        n = self._vectors.shape[0]
        k_eff = min(k, n)
        block = max(1, _BLOCK_FLOATS // max(n, 1))
        out = np.full((queries.shape[0], k), -1, dtype=np.int64)
        for start in range(0, queries.shape[0], block):
            scores = self._scores(queries[start : start + block])
            top = np.argpartition(scores, k_eff - 1, axis=1)[:, :k_eff]
            order = np.argsort(np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            out[start : start + block, :k_eff] = np.take_along_axis(top, order, axis=1)
        return out

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        # einsum instead of a BLAS product: one query runs on one thread, as for every library
        if self.metric == "angular":
            scores = -np.einsum("nd,d->n", self._vectors, normalized(q[None, :])[0])
        else:
            q = np.asarray(q, dtype=np.float32)
            scores = self._sq_norms - 2.0 * np.einsum("nd,d->n", self._vectors, q)
        k_eff = min(k, scores.shape[0])
        top = np.argpartition(scores, k_eff - 1)[:k_eff]
        out = np.full(k, -1, dtype=np.int64)
        out[:k_eff] = top[np.argsort(scores[top], kind="stable")]
        return out

    def memory_bytes(self) -> int:
        return int(self._vectors.nbytes + self._sq_norms.nbytes)
