"""Binary quantisation baseline: FAISS binary HNSW over 1-bit sign codes + exact float rerank.

Each vector becomes ``D`` bits ``x > 0`` (``np.packbits``, zero-padded to whole bytes), the
graph is built and searched in Hamming space, and the ``ef`` best candidates are re-scored
with exact float32 distances: the usual "binary quantisation + rerank" recipe.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.harness.adapters.base import Adapter, normalized, require

_RERANK_BLOCK_FLOATS = 1 << 20  # gathered candidate floats per block: 4 MiB, reused, cache-sized


def sign_codes(x: np.ndarray) -> np.ndarray:
    """1 bit per dimension (``x > 0``), packed: uint8 (n, ceil(d / 8))."""
    return np.packbits(np.asarray(x) > 0, axis=1)


class FaissBinaryRerankAdapter(Adapter):
    """``faiss.IndexBinaryHNSW`` on sign codes; top ``ef`` re-scored with float distances."""

    library = "faiss-cpu"

    def __init__(self, metric: str, threads: int, *, m: int, ef_construction: int) -> None:
        super().__init__(metric, threads)
        self._faiss = require("faiss")
        self._faiss.omp_set_num_threads(threads)
        self._m = m
        self._ef_construction = ef_construction
        self._index: Any = None
        self._vectors = np.zeros((0, 0), dtype=np.float32)

    @property
    def name(self) -> str:
        return f"faiss-binary-hnsw-M{self._m}-rerank"

    def build_params(self) -> dict[str, Any]:
        return {"M": self._m, "efConstruction": self._ef_construction, "rerank": "ef"}

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        if self.metric == "angular":
            return normalized(x)
        return np.array(x, dtype=np.float32)

    def fit(self, train: np.ndarray) -> None:
        self._vectors = self._prepare(train)
        codes = sign_codes(self._vectors)
        index = self._faiss.IndexBinaryHNSW(codes.shape[1] * 8, self._m)
        index.hnsw.efConstruction = self._ef_construction
        index.add(codes)
        self._index = index

    def set_query_arguments(self, ef: int) -> None:
        super().set_query_arguments(ef)
        self._index.hnsw.efSearch = self.ef

    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        self._faiss.omp_set_num_threads(self.threads)
        return self._search(queries, k)

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        # one query runs on one thread, as in hnswlib and quiver (see FaissHnswAdapter.query)
        self._faiss.omp_set_num_threads(1)
        return self._search(q[None, :], k)[0]

    def _search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Hamming-space graph search for ``ef`` candidates, then the exact rerank."""
        q = self._prepare(queries)
        _, candidates = self._index.search(sign_codes(q), self.ef)
        block = max(1, _RERANK_BLOCK_FLOATS // (self.ef * q.shape[1]))
        out = np.empty((q.shape[0], k), dtype=np.int64)
        for start in range(0, q.shape[0], block):
            stop = start + block
            out[start:stop] = self._rerank(q[start:stop], candidates[start:stop], k)
        return out

    def _rerank(self, q: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
        """Best ``k`` of each row of ``candidates`` by exact distance (smaller = closer)."""
        rows = self._vectors[np.maximum(candidates, 0)]  # (nq, ef, d)
        if self.metric == "angular":
            dist = -np.matmul(rows, q[:, :, None])[:, :, 0]
        else:
            diff = rows - q[:, None, :]
            dist = np.einsum("qcd,qcd->qc", diff, diff)
        dist[candidates < 0] = np.inf
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(candidates, order, axis=1).astype(np.int64)
        ids[np.take_along_axis(dist, order, axis=1) == np.inf] = -1
        return ids

    def memory_bytes(self) -> int:
        """Serialised binary index (codes + graph) plus the float32 vectors kept for rerank."""
        graph = self._faiss.serialize_index_binary(self._index).nbytes
        return int(graph + self._vectors.nbytes)
