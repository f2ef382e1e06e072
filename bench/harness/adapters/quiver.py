"""quiver: Vamana graph searched over 2-bit codes, exact float32 rerank of ``ef`` candidates."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import quiver
from bench.harness.adapters.base import Adapter

_METRIC = {"angular": "cosine", "euclidean": "l2"}


class QuiverAdapter(Adapter):
    """``quiver.Index`` with its default build parameters unless given."""

    library = "quiver"

    def __init__(
        self,
        metric: str,
        threads: int,
        **params: Any,
    ) -> None:
        super().__init__(metric, threads)
        # quiver's own defaults unless a parameter is given explicitly
        self._params = {**quiver.BuildParams().to_dict(), **params}
        self._params.pop("seed")
        self._index: quiver.Index | None = None

    @property
    def name(self) -> str:
        return "quiver"

    def build_params(self) -> dict[str, Any]:
        return dict(self._params)

    def warmup(self) -> float:
        return quiver.warmup()

    def fit(self, train: np.ndarray) -> None:
        index = quiver.Index(
            train.shape[1], _METRIC[self.metric], num_threads=self.threads, **self._params
        )
        index.add(train)
        self._index = index

    @property
    def index(self) -> quiver.Index:
        """The index that :meth:`fit` built (for measurements beyond the adapter contract)."""
        if self._index is None:
            raise RuntimeError("call fit() before querying")
        return self._index

    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(queries, k=k, ef=self.ef).ids

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(q, k=k, ef=self.ef, num_threads=1).ids[0]

    def memory_bytes(self) -> int:
        """Hot set (codes + graph + id map) plus the float32 vectors held for the rerank."""
        stats = self.index.stats()
        return int(stats["hot_bytes"] + stats["cold_bytes"])

    def extra_stats(self) -> dict[str, Any]:
        """``hot_bytes`` (what must stay in RAM) and ``disk_bytes`` (size of a saved index).

        Saving maps the float vectors from the saved files afterwards, so the runner calls
        this only after the query sweep.
        """
        index = self.index
        with tempfile.TemporaryDirectory(prefix="quiver-bench-") as tmp:
            index.save(tmp)
            disk = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
        return {"hot_bytes": int(index.stats()["hot_bytes"]), "disk_bytes": int(disk)}
