"""usearch: HNSW over float32 or int8 vectors (``dtype`` ``"f32"`` or ``"i8"``).

usearch keeps the vectors in the graph's own storage in ``dtype``: with ``"i8"`` each
dimension of a unit vector is stored as a signed byte (usearch scales by 127), so the graph is
walked and the results ranked on the bytes, with no float rerank. Angular data is normalised
and searched with usearch's cosine metric; euclidean data with squared L2 in ``"f32"`` only:
usearch's int8 conversion normalises every vector, which keeps angles and loses lengths.

Threads: ``add(threads=threads)`` and ``search(threads=threads)`` for batches; a single query
is ``search(threads=1)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.harness.adapters.base import Adapter, require

DTYPES = ("f32", "i8")


class UsearchAdapter(Adapter):
    """``usearch.index.Index`` (``connectivity``, ``expansion_add``); ef = expansion_search."""

    library = "usearch"

    def __init__(
        self, metric: str, threads: int, *, dtype: str, connectivity: int, expansion_add: int
    ) -> None:
        super().__init__(metric, threads)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if dtype == "i8" and metric != "angular":
            raise ValueError(
                f"usearch's i8 storage normalises vectors: metric must be 'angular', got {metric!r}"
            )
        self._usearch = require("usearch.index")
        self._dtype = dtype
        self._connectivity = connectivity
        self._expansion_add = expansion_add
        self._index: Any = None

    @property
    def name(self) -> str:
        return f"usearch-{self._dtype}-M{self._connectivity}"

    def build_params(self) -> dict[str, Any]:
        return {
            "dtype": self._dtype,
            "connectivity": self._connectivity,
            "expansion_add": self._expansion_add,
            "metric": "cos" if self.metric == "angular" else "l2sq",
        }

    def fit(self, train: np.ndarray) -> None:
        x = self.prepare(train)
        index = self._usearch.Index(
            ndim=x.shape[1],
            metric="cos" if self.metric == "angular" else "l2sq",
            dtype=self._dtype,
            connectivity=self._connectivity,
            expansion_add=self._expansion_add,
        )
        index.add(np.arange(x.shape[0], dtype=np.uint64), x, threads=self.threads)
        self._index = index

    def set_query_arguments(self, ef: int) -> None:
        super().set_query_arguments(ef)
        self._index.expansion_search = self.ef

    def query_arguments(self) -> dict[str, Any]:
        return {"expansion_search": int(self._index.expansion_search)}

    def _search(self, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
        matches = self._index.search(self.prepare(queries), k, threads=threads)
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
        # one query gives a Matches of the keys found; several a BatchMatches with counts
        counts = np.asarray(getattr(matches, "counts", keys.shape[1])).reshape(-1, 1)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        found = np.arange(keys.shape[1])[None, :] < counts
        out[:, : keys.shape[1]] = np.where(found, keys, -1)
        return out

    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self._search(queries, k, self.threads)

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        return self._search(q[None, :], k, 1)[0]

    def memory_bytes(self) -> int:
        """Size of the index as saved (graph + stored vectors), like hnswlib's saved file."""
        return int(self._index.serialized_length)

    def extra_stats(self) -> dict[str, Any]:
        """usearch's own account of its memory, reserved capacity included."""
        return {"usearch_memory_usage_bytes": int(self._index.memory_usage)}
