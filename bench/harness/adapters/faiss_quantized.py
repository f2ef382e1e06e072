"""Quantised FAISS indexes: HNSW over 8-bit scalar codes, and IVF-RaBitQ with a float refine.

``IndexHNSWSQ`` (SQ8) walks the HNSW graph scoring 8-bit codes (one byte per dimension, a
trained min/max per dimension) and returns the code-space top k: no float rerank. The
IVF-RaBitQ index (``"IVF{nlist},RaBitQ,Refine(Flat)"``) probes ``nprobe`` of ``nlist`` k-means
lists, scores 1-bit RaBitQ codes (queries quantised to ``qb`` bits), and re-scores the best
``k * k_factor`` candidates with the float32 vectors the refine index keeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.harness.adapters.base import QuerySetting, grid_settings, spread
from bench.harness.adapters.faiss import FaissAdapter, FaissHnswAdapter

# IVF-RaBitQ sweep: fractions of nlist probed x refine factors (candidates = k * k_factor)
NPROBE_FRACTIONS = (0.01, 0.02, 0.04, 0.08, 0.15, 0.3)
K_FACTORS = (3, 10, 30)


class FaissHnswSqAdapter(FaissHnswAdapter):
    """``faiss.IndexHNSWSQ``: 8-bit scalar codes, degree ``m``, build beam ``ef_construction``."""

    @property
    def name(self) -> str:
        return f"faiss-hnsw-sq8-M{self._m}"

    def build_params(self) -> dict[str, Any]:
        return {**super().build_params(), "quantizer": "SQ8"}

    def new_index(self, dim: int) -> Any:
        faiss = self._faiss
        return faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, self._m, self.faiss_metric)


class FaissIvfRabitqAdapter(FaissAdapter):
    """``IVF{nlist},RaBitQ,Refine(Flat)`` with ``nlist = round(lists_per_sqrt_n * sqrt(n))``.

    Two query-time knobs, swept together: ``nprobe`` (lists scanned) and the refine's
    ``k_factor`` (``k * k_factor`` candidates re-scored with float32 vectors).
    """

    def __init__(self, metric: str, threads: int, *, lists_per_sqrt_n: float = 4.0) -> None:
        super().__init__(metric, threads)
        self._lists_per_sqrt_n = lists_per_sqrt_n
        self._nlist = 0
        self._ivf: Any = None

    @property
    def name(self) -> str:
        return "faiss-ivf-rabitq-refine"

    def build_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "factory": "IVF{nlist},RaBitQ,Refine(Flat)",
            "nlist_rule": f"round({self._lists_per_sqrt_n:g} * sqrt(n))",
        }
        if self._ivf is not None:
            params.update(nlist=self._nlist, qb=int(self._ivf.qb))
        return params

    def fit(self, train: np.ndarray) -> None:
        faiss = self._faiss
        x = self.prepare(train)
        self._nlist = max(1, round(self._lists_per_sqrt_n * math.sqrt(x.shape[0])))
        index = faiss.index_factory(x.shape[1], f"IVF{self._nlist},RaBitQ,Refine(Flat)",
                                    self.faiss_metric)  # fmt: skip
        index.train(x)  # k-means on FAISS's own sample (256 points per list at most)
        index.add(x)
        self._index = index
        # a downcast view of the IVF part: it lives as long as self._index holds it
        self._ivf = faiss.downcast_index(index.base_index)

    def sweep_settings(self, efs: Sequence[int], k: int) -> list[QuerySetting]:
        """``nprobe`` over fractions of ``nlist`` times refine factors; ``efs`` do not apply."""
        return grid_settings(nprobe=spread(self._nlist, NPROBE_FRACTIONS), k_factor=K_FACTORS)

    def apply_setting(self, setting: QuerySetting) -> None:
        self._ivf.nprobe = int(setting.args["nprobe"])
        self._index.k_factor = float(setting.args["k_factor"])

    def query_arguments(self) -> dict[str, Any]:
        return {"nprobe": int(self._ivf.nprobe), "k_factor": float(self._index.k_factor)}
