"""quiver as an ann-benchmarks algorithm.

Copy this folder to ``ann_benchmarks/algorithms/quiver/`` of an ann-benchmarks checkout (see
``README.md`` here). The class follows ann-benchmarks' algorithm contract: ``fit``,
``set_query_arguments``, ``query``, ``batch_query``, ``get_batch_results``, ``__str__``, and
memory as the base class measures it (the process's resident memory before and after
``fit``). quiver's Numba kernels are compiled in the constructor, so that the memory
``fit`` adds is the index's, not the compiler's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import quiver

from ..base.module import BaseANN

#: ann-benchmarks' distance names -> quiver's metrics.
METRICS = {"angular": "cosine", "euclidean": "l2"}


class Quiver(BaseANN):
    """``quiver.Index`` (Vamana graph on 2-bit codes, exact float32 rerank of ``ef``).

    ``method_param``: ``max_degree`` and ``build_list_size`` (and optionally ``alpha``);
    the query argument is ``ef``.
    """

    def __init__(self, metric: str, method_param: dict[str, Any]) -> None:
        if metric not in METRICS:
            raise ValueError(f"quiver supports {sorted(METRICS)} distances, got {metric!r}")
        self.metric = metric
        self.method_param = dict(method_param)
        self._index: quiver.Index | None = None
        self._ef = 64
        self.res: list[np.ndarray] = []
        self.name = f"quiver({self._params_text()})"
        quiver.warmup()  # compile (or load) the kernels before fit measures memory

    def _params_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.method_param.items()))

    def fit(self, X: np.ndarray) -> None:
        """Build the index over the rows of ``X`` (their row numbers are the ids)."""
        x = np.ascontiguousarray(X, dtype=np.float32)
        self._index = quiver.Index(x.shape[1], METRICS[self.metric], **self.method_param)
        self._index.add(x)

    def set_query_arguments(self, ef: int) -> None:
        self._ef = int(ef)
        self.name = f"quiver({self._params_text()}, ef={self._ef})"

    def _search(self, queries: np.ndarray, n: int, threads: int | None) -> np.ndarray:
        if self._index is None:
            raise RuntimeError("call fit before querying")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        ids, _ = self._index.search(q, k=n, ef=max(self._ef, n), num_threads=threads)
        return ids

    def query(self, v: np.ndarray, n: int) -> np.ndarray:
        """The ids of the ``n`` nearest rows to ``v`` (one thread, as the runner times it)."""
        row = self._search(v[None, :], n, 1)[0]
        return row[row >= 0]

    def batch_query(self, X: np.ndarray, n: int) -> None:
        """All queries at once, on all cores; results via :meth:`get_batch_results`."""
        self.res = [row[row >= 0] for row in self._search(X, n, None)]

    def get_batch_results(self) -> list[np.ndarray]:
        return self.res

    def get_additional(self) -> dict[str, Any]:
        """quiver's own account of the index: hot (RAM) and cold (float vectors) bytes."""
        if self._index is None:
            return {}
        stats = self._index.stats()
        return {"hot_bytes": stats["hot_bytes"], "cold_bytes": stats["cold_bytes"]}

    def done(self) -> None:
        self._index = None

    def __str__(self) -> str:
        return self.name
