"""diskannpy (DiskANN's Python bindings): the Vamana graph in memory, and on disk with PQ.

Both indexes are built into a temporary folder that lives as long as the adapter. Angular
data is normalised and searched by L2 (the same order as cosine on unit vectors). The query
knob ``ef`` is DiskANN's search list size (``complexity``, L_search).

- :class:`DiskannMemoryAdapter`: ``build_memory_index`` + ``StaticMemoryIndex``: graph and
  float32 vectors in RAM.
- :class:`DiskannDiskAdapter`: ``build_disk_index`` + ``StaticDiskIndex``: graph and float32
  vectors in one file read by ``beam_width`` sector reads per hop; only PQ codes
  (``pq_bytes`` per vector: ``search_memory_maximum`` is derived from it) and
  ``cached_nodes`` graph nodes stay in RAM. The float vectors on disk re-rank the result.

Threads: ``num_threads=threads`` for the build, the index and ``batch_search``. A single
query is a ``batch_search`` of one query with ``num_threads=1`` (it runs on the calling
thread): diskannpy 0.7's one-vector ``search`` returned zeros (memory index) or one id
repeated (disk index) here, with numpy 2.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from bench.harness.adapters.base import Adapter, library_version, require
from bench.harness.adapters.files import tree_bytes

GIB = float(1 << 30)
VERSION = "0.7.0"
INSTALL = f"pip install --no-deps diskannpy=={VERSION} (its metadata pins numpy==1.25)"


class DiskannAdapter(Adapter):
    """Shared diskannpy plumbing; subclasses build and open ``self._index`` in ``fit``."""

    library = "diskannpy"

    def __init__(
        self, metric: str, threads: int, *, graph_degree: int, complexity: int, alpha: float
    ) -> None:
        super().__init__(metric, threads)
        self._diskannpy = require("diskannpy", INSTALL)
        if library_version("diskannpy") != VERSION:
            found = library_version("diskannpy")
            raise ImportError(
                f"the adapter is written for diskannpy {VERSION}, found {found}: {INSTALL}"
            )
        self._graph_degree = graph_degree
        self._complexity = complexity
        self._alpha = alpha
        self._folder = tempfile.TemporaryDirectory(prefix="diskann-bench-")
        self._index: Any = None

    @property
    def folder(self) -> str:
        """Where the index files are."""
        return self._folder.name

    def build_params(self) -> dict[str, Any]:
        return {
            "R": self._graph_degree,
            "L": self._complexity,
            "alpha": self._alpha,
            "distance": "l2 over unit vectors" if self.metric == "angular" else "l2",
        }

    def query_arguments(self) -> dict[str, Any]:
        return {"complexity": self.ef}

    @staticmethod
    def _ids(identifiers: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """DiskANN's uint32 ids as int64, ``-1`` where it found nothing (an infinite or
        maximal distance, or the id ``2**32 - 1``)."""
        ids = np.asarray(identifiers).astype(np.int64)
        dist = np.asarray(distances)
        missing = (ids == np.iinfo(np.uint32).max) | ~np.isfinite(dist)
        ids[missing] = -1
        return ids

    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        found = self._batch_search(self.prepare(queries), k, self.threads)
        return self._ids(found.identifiers, found.distances)

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        found = self._batch_search(self.prepare(q[None, :]), k, 1)
        return self._ids(found.identifiers, found.distances)[0]

    def _batch_search(self, queries: np.ndarray, k: int, threads: int) -> Any:
        return self._index.batch_search(queries, k, self.ef, threads)


class DiskannMemoryAdapter(DiskannAdapter):
    """``StaticMemoryIndex``: Vamana graph + float32 vectors in RAM."""

    @property
    def name(self) -> str:
        return f"diskann-mem-R{self._graph_degree}-L{self._complexity}"

    def fit(self, train: np.ndarray) -> None:
        dk = self._diskannpy
        dk.build_memory_index(
            self.prepare(train), distance_metric="l2", index_directory=self.folder,
            complexity=self._complexity, graph_degree=self._graph_degree,
            num_threads=self.threads, alpha=self._alpha,
        )  # fmt: skip
        self._index = dk.StaticMemoryIndex(
            self.folder, num_threads=self.threads, initial_search_complexity=self._complexity
        )

    def memory_bytes(self) -> int:
        """Size of the saved index: graph + float32 vectors, as the memory index loads them."""
        return tree_bytes(self.folder, "ann*")


class DiskannDiskAdapter(DiskannAdapter):
    """``StaticDiskIndex``: graph + floats on disk, PQ codes (and a node cache) in RAM."""

    def __init__(
        self,
        metric: str,
        threads: int,
        *,
        graph_degree: int,
        complexity: int,
        beam_width: int,
        cached_nodes: int,
        pq_bytes: int | None = None,
        build_memory_gb: float = 8.0,
    ) -> None:
        super().__init__(
            metric, threads, graph_degree=graph_degree, complexity=complexity, alpha=1.2
        )
        self._beam_width = beam_width
        self._cached_nodes = cached_nodes
        self._pq_bytes = pq_bytes
        self._build_memory_gb = build_memory_gb
        self._search_memory_gb = 0.0

    @property
    def name(self) -> str:
        return f"diskann-disk-R{self._graph_degree}-L{self._complexity}"

    def build_params(self) -> dict[str, Any]:
        return {
            **super().build_params(),
            "alpha": "DiskANN's disk-build default, 1.2 (diskannpy 0.7 does not expose it)",
            "beam_width": self._beam_width,
            "cached_nodes": self._cached_nodes,
            "pq_bytes_per_vector": self._pq_bytes or "dim / 4 (quiver's 2-bit code size)",
            "search_memory_maximum_gb": self._search_memory_gb or None,
            "build_memory_maximum_gb": self._build_memory_gb,
        }

    def fit(self, train: np.ndarray) -> None:
        self.build(train, self.folder)
        self.open(self.folder)

    def build(self, train: np.ndarray, folder: str) -> None:
        """Build the disk index into ``folder`` (kept by the caller: ``bench.measure.ram_budget``
        builds once outside its memory limit and opens it inside)."""
        n, dim = train.shape
        pq_bytes = self._pq_bytes or max(1, dim // 4)
        # DiskANN gives each vector floor(budget / n) PQ bytes (budgets under 1.25 GB are
        # taken as they are): ask for exactly pq_bytes per vector, half a byte to spare
        self._search_memory_gb = (n * (pq_bytes + 0.5)) / GIB
        self._diskannpy.build_disk_index(
            self.prepare(train), distance_metric="l2", index_directory=folder,
            complexity=self._complexity, graph_degree=self._graph_degree,
            search_memory_maximum=self._search_memory_gb,
            build_memory_maximum=self._build_memory_gb, num_threads=self.threads,
        )  # fmt: skip

    def open(self, folder: str) -> None:
        """Open a disk index built by :meth:`build` for searching."""
        # num_threads here sizes the per-thread search contexts: opening with one hung here
        # (diskannpy 0.7), so at least two; every search still passes its own thread count.
        # cache_mechanism 1 picks the cached nodes with sample queries; 0 = no node cache.
        self._index = self._diskannpy.StaticDiskIndex(
            folder, num_threads=max(2, self.threads), num_nodes_to_cache=self._cached_nodes,
            cache_mechanism=1 if self._cached_nodes else 0,
        )  # fmt: skip

    def query_arguments(self) -> dict[str, Any]:
        return {"complexity": self.ef, "beam_width": self._beam_width}

    def _batch_search(self, queries: np.ndarray, k: int, threads: int) -> Any:
        return self._index.batch_search(queries, k, self.ef, threads, beam_width=self._beam_width)

    def memory_bytes(self) -> int:
        """What the disk index keeps in RAM: PQ codes and pivots (the node cache not counted)."""
        return tree_bytes(self.folder, "*pq*")

    def extra_stats(self) -> dict[str, Any]:
        """``disk_bytes``: the on-disk graph + vectors file the searches read."""
        return {"disk_bytes": tree_bytes(self.folder, "*_disk.index")}
