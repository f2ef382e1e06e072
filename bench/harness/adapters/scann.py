"""ScaNN: k-means partitions, anisotropic 4-bit product quantisation (AH), float32 reorder.

The searcher is built through ScaNN's numpy API (``scann.scann_ops_pybind.builder``): a tree
of ``round(leaves_per_sqrt_n * sqrt(n))`` leaves trained on a sample of the data,
``score_ah(2, anisotropic_quantization_threshold=0.2)`` (2 dimensions per 16-centroid block:
4 bits per 2 dimensions) and ``reorder`` with exact float32 distances. Two query-time knobs are
swept together: ``leaves_to_search`` and ``pre_reorder_num_neighbors`` (candidates re-scored).

Threads: training runs on ``threads`` (``set_n_training_threads``); batches use the searcher's
pool, sized with ``set_num_threads(threads)``, through ``search_batched_parallel`` (plain
``search_batched`` on the calling thread when ``threads`` is 1); single queries call ``search``,
which runs on the calling thread.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness.adapters.base import (
    Adapter,
    QuerySetting,
    grid_settings,
    require,
    spread,
)
from bench.harness.adapters.files import tree_bytes

LEAVES_FRACTIONS = (0.01, 0.02, 0.035, 0.05, 0.08, 0.12, 0.2, 0.3, 0.5)
REORDER_DEPTHS = (40, 100, 250)
TRAINING_SAMPLE_MAX = 250_000  # ScaNN's own example: 250k of 1.18M glove vectors
PARALLEL_BATCH = 256  # queries per task handed to ScaNN's pool (search_batched_parallel's default)


class ScannAdapter(Adapter):
    """A ScaNN tree + AH + reorder searcher; angular data is normalised, scored by dot product."""

    library = "scann"

    def __init__(
        self,
        metric: str,
        threads: int,
        *,
        leaves_per_sqrt_n: float = 2.0,
        dims_per_block: int = 2,
        avq_threshold: float = 0.2,
        reorder: int = 100,
    ) -> None:
        super().__init__(metric, threads)
        self._scann = require("scann")
        self._leaves_per_sqrt_n = leaves_per_sqrt_n
        self._dims_per_block = dims_per_block
        self._avq_threshold = avq_threshold
        self._reorder = reorder
        self._num_leaves = 0
        self._sample = 0
        self._searcher: Any = None
        self._leaves_to_search = 0
        self._pre_reorder = reorder

    @property
    def name(self) -> str:
        return f"scann-ah{self._dims_per_block}-leaves{self._leaves_per_sqrt_n:g}sqrtn"

    def build_params(self) -> dict[str, Any]:
        return {
            "num_leaves_rule": f"round({self._leaves_per_sqrt_n:g} * sqrt(n))",
            "num_leaves": self._num_leaves or None,
            "training_sample_size": self._sample or None,
            "spherical": self.metric == "angular",
            "dimensions_per_block": self._dims_per_block,
            "anisotropic_quantization_threshold": self._avq_threshold,
            "hash_type": "lut16",
            "reorder": self._reorder,
            "parallel_batch_size": PARALLEL_BATCH,
        }

    def fit(self, train: np.ndarray) -> None:
        x = self.prepare(train)
        n = x.shape[0]
        self._num_leaves = max(1, round(self._leaves_per_sqrt_n * math.sqrt(n)))
        self._sample = min(n, TRAINING_SAMPLE_MAX)
        distance = "dot_product" if self.metric == "angular" else "squared_l2"
        builder = self._scann.scann_ops_pybind.builder(x, 10, distance)
        builder.set_n_training_threads(self.threads)
        searcher = (
            builder.tree(
                num_leaves=self._num_leaves,
                num_leaves_to_search=max(1, self._num_leaves // 20),
                training_sample_size=self._sample,
                spherical=self.metric == "angular",
            )
            .score_ah(self._dims_per_block, anisotropic_quantization_threshold=self._avq_threshold)
            .reorder(self._reorder)
            .build()
        )
        searcher.set_num_threads(self.threads)
        self._searcher = searcher
        self._leaves_to_search = max(1, self._num_leaves // 20)

    def sweep_settings(self, efs: Sequence[int], k: int) -> list[QuerySetting]:
        """Leaves searched (fractions of the tree) times reorder depths; ``efs`` do not apply."""
        leaves = spread(self._num_leaves, LEAVES_FRACTIONS)
        depths = [d for d in REORDER_DEPTHS if d >= k]
        return grid_settings(leaves=leaves, reorder=depths)

    def apply_setting(self, setting: QuerySetting) -> None:
        self._leaves_to_search = int(setting.args["leaves"])
        self._pre_reorder = int(setting.args["reorder"])

    def query_arguments(self) -> dict[str, Any]:
        return {
            "leaves_to_search": self._leaves_to_search,
            "pre_reorder_num_neighbors": self._pre_reorder,
        }

    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        q = self.prepare(queries)
        args = (q, k, self._pre_reorder, self._leaves_to_search)
        if self.threads == 1:
            ids, dist = self._searcher.search_batched(*args)
        else:
            ids, dist = self._searcher.search_batched_parallel(*args, batch_size=PARALLEL_BATCH)
        return _padded(np.asarray(ids), np.asarray(dist), k)

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        ids, dist = self._searcher.search(
            self.prepare(q[None, :])[0], k, self._pre_reorder, self._leaves_to_search
        )
        return _padded(np.asarray(ids)[None, :], np.asarray(dist)[None, :], k)[0]

    def memory_bytes(self) -> int:
        """Size of the serialised searcher: centroids, 4-bit codes, float32 reorder vectors."""
        with tempfile.TemporaryDirectory(prefix="scann-bench-") as tmp:
            self._searcher.serialize(tmp)
            return tree_bytes(Path(tmp))


def _padded(ids: np.ndarray, dist: np.ndarray, k: int) -> np.ndarray:
    """ScaNN's ids as int64 (rows, k), ``-1`` where it found fewer than ``k``.

    A single search returns a shorter row; a batch pads its rows with id 0 and a NaN distance.
    """
    out = np.full((ids.shape[0], k), -1, dtype=np.int64)
    width = ids.shape[1] if ids.ndim == 2 else 0
    out[:, :width] = np.where(np.isnan(dist), -1, ids.astype(np.int64))
    return out
