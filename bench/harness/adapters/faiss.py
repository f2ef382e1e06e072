"""FAISS ``IndexHNSWFlat``: HNSW over float32 vectors, FAISS's implementation."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.harness.adapters.base import Adapter, normalized, require


class FaissHnswAdapter(Adapter):
    """``faiss.IndexHNSWFlat``; angular data is normalised and searched by inner product."""

    library = "faiss-cpu"

    def __init__(self, metric: str, threads: int, *, m: int, ef_construction: int) -> None:
        super().__init__(metric, threads)
        self._faiss = require("faiss")
        self._faiss.omp_set_num_threads(threads)
        self._m = m
        self._ef_construction = ef_construction
        self._index: Any = None

    @property
    def name(self) -> str:
        return f"faiss-hnsw-M{self._m}-efc{self._ef_construction}"

    def build_params(self) -> dict[str, Any]:
        return {"M": self._m, "efConstruction": self._ef_construction}

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        if self.metric == "angular":
            return normalized(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def fit(self, train: np.ndarray) -> None:
        faiss = self._faiss
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "angular" else faiss.METRIC_L2
        index = faiss.IndexHNSWFlat(train.shape[1], self._m, metric)
        index.hnsw.efConstruction = self._ef_construction
        index.add(self._prepare(train))
        self._index = index

    def set_query_arguments(self, ef: int) -> None:
        super().set_query_arguments(ef)
        self._index.hnsw.efSearch = self.ef

    def _search(self, queries: np.ndarray, k: int) -> np.ndarray:
        _, ids = self._index.search(self._prepare(queries), k)
        return ids.astype(np.int64, copy=False)

    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        self._faiss.omp_set_num_threads(self.threads)
        return self._search(queries, k)

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        # one query runs on one thread, as in hnswlib and quiver: an OpenMP team per call
        # only adds its start-up and barrier to the latency
        self._faiss.omp_set_num_threads(1)
        return self._search(q[None, :], k)[0]

    def memory_bytes(self) -> int:
        """Size of the serialised index (vectors + graph levels)."""
        return int(self._faiss.serialize_index(self._index).nbytes)
