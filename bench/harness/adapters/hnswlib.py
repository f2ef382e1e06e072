"""hnswlib: HNSW over float32 vectors (the usual in-memory graph baseline)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness.adapters.base import Adapter, require

_SPACE = {"angular": "cosine", "euclidean": "l2"}


class HnswlibAdapter(Adapter):
    """``hnswlib.Index`` with graph degree ``M`` and build beam ``ef_construction``."""

    library = "hnswlib"

    def __init__(self, metric: str, threads: int, *, m: int, ef_construction: int) -> None:
        super().__init__(metric, threads)
        self._hnswlib = require("hnswlib")
        self._m = m
        self._ef_construction = ef_construction
        self._index: Any = None

    @property
    def name(self) -> str:
        return f"hnswlib-M{self._m}-efc{self._ef_construction}"

    def build_params(self) -> dict[str, Any]:
        return {"M": self._m, "ef_construction": self._ef_construction, "random_seed": 0}

    def fit(self, train: np.ndarray) -> None:
        index = self._hnswlib.Index(space=_SPACE[self.metric], dim=train.shape[1])
        index.init_index(
            max_elements=train.shape[0],
            M=self._m,
            ef_construction=self._ef_construction,
            random_seed=0,
        )
        index.set_num_threads(self.threads)
        index.add_items(train, np.arange(train.shape[0]), num_threads=self.threads)
        self._index = index

    def set_query_arguments(self, ef: int) -> None:
        super().set_query_arguments(ef)
        self._index.set_ef(self.ef)

    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        labels, _ = self._index.knn_query(queries, k=k, num_threads=self.threads)
        return labels.astype(np.int64)

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        labels, _ = self._index.knn_query(q, k=k, num_threads=1)
        return labels[0].astype(np.int64)

    def memory_bytes(self) -> int:
        """Size of the saved index file: hnswlib's memory layout, written as is."""
        with tempfile.TemporaryDirectory(prefix="hnswlib-bench-") as tmp:
            path = Path(tmp) / "index.bin"
            self._index.save_index(str(path))
            return path.stat().st_size
