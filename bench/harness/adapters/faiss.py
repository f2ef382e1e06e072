"""FAISS ``IndexHNSWFlat``: HNSW over float32 vectors, FAISS's implementation.

:class:`FaissAdapter` holds what every FAISS adapter shares: angular data normalised and
searched by inner product, the OpenMP pool pinned to ``threads`` for batches and to one
thread for single queries, and the serialised index as the structure's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.harness.adapters.base import Adapter, require


class FaissAdapter(Adapter):
    """Shared FAISS plumbing; subclasses build ``self._index`` in ``fit``."""

    library = "faiss-cpu"

    def __init__(self, metric: str, threads: int) -> None:
        super().__init__(metric, threads)
        self._faiss = require("faiss")
        self._faiss.omp_set_num_threads(threads)
        self._index: Any = None

    @property
    def faiss_metric(self) -> int:
        """FAISS's metric constant: inner product over unit vectors for angular data."""
        faiss = self._faiss
        return faiss.METRIC_INNER_PRODUCT if self.metric == "angular" else faiss.METRIC_L2

    def _search(self, queries: np.ndarray, k: int) -> np.ndarray:
        _, ids = self._index.search(self.prepare(queries), k)
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
        """Size of the serialised index (what FAISS keeps: codes, vectors, graph, lists)."""
        return int(self._faiss.serialize_index(self._index).nbytes)


class FaissHnswAdapter(FaissAdapter):
    """``faiss.IndexHNSWFlat`` with degree ``m`` and build beam ``ef_construction``."""

    def __init__(self, metric: str, threads: int, *, m: int, ef_construction: int) -> None:
        super().__init__(metric, threads)
        self._m = m
        self._ef_construction = ef_construction

    @property
    def name(self) -> str:
        return f"faiss-hnsw-M{self._m}-efc{self._ef_construction}"

    def build_params(self) -> dict[str, Any]:
        return {"M": self._m, "efConstruction": self._ef_construction}

    def new_index(self, dim: int) -> Any:
        """The empty index ``fit`` trains and fills (float32 storage here)."""
        return self._faiss.IndexHNSWFlat(dim, self._m, self.faiss_metric)

    def fit(self, train: np.ndarray) -> None:
        x = self.prepare(train)
        index = self.new_index(x.shape[1])
        index.hnsw.efConstruction = self._ef_construction
        index.train(x)  # nothing to learn for float storage; the quantisers' ranges otherwise
        index.add(x)
        self._index = index

    def set_query_arguments(self, ef: int) -> None:
        super().set_query_arguments(ef)
        self._index.hnsw.efSearch = self.ef

    def query_arguments(self) -> dict[str, Any]:
        return {"efSearch": int(self._index.hnsw.efSearch)}
