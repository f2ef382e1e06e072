"""Registry of benchmarked algorithms: name -> factory ``(metric, threads) -> Adapter``.

Library modules are imported inside the factories, so listing names (or running quiver
alone) never imports hnswlib or FAISS.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.harness.adapters.base import Adapter

Factory = Callable[[str, int], Adapter]


def _quiver(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.quiver import QuiverAdapter

    return QuiverAdapter(metric, threads)


def _hnswlib(m: int, ef_construction: int) -> Factory:
    def make(metric: str, threads: int) -> Adapter:
        from bench.harness.adapters.hnswlib import HnswlibAdapter

        return HnswlibAdapter(metric, threads, m=m, ef_construction=ef_construction)

    return make


def _faiss_hnsw(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.faiss import FaissHnswAdapter

    return FaissHnswAdapter(metric, threads, m=32, ef_construction=128)


def _faiss_binary(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.faiss_binary import FaissBinaryRerankAdapter

    return FaissBinaryRerankAdapter(metric, threads, m=32, ef_construction=128)


def _faiss_hnsw_sq8(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.faiss_quantized import FaissHnswSqAdapter

    return FaissHnswSqAdapter(metric, threads, m=32, ef_construction=128)


def _faiss_ivf_rabitq(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.faiss_quantized import FaissIvfRabitqAdapter

    return FaissIvfRabitqAdapter(metric, threads, lists_per_sqrt_n=4.0)


def _scann(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.scann import ScannAdapter

    return ScannAdapter(metric, threads, leaves_per_sqrt_n=2.0, avq_threshold=0.2, reorder=100)


def _usearch(dtype: str) -> Factory:
    def make(metric: str, threads: int) -> Adapter:
        from bench.harness.adapters.usearch import UsearchAdapter

        return UsearchAdapter(metric, threads, dtype=dtype, connectivity=32, expansion_add=128)

    return make


def _diskann_memory(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.diskann import DiskannMemoryAdapter

    return DiskannMemoryAdapter(metric, threads, graph_degree=64, complexity=128, alpha=1.2)


def _diskann_disk(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.diskann import DiskannDiskAdapter

    return DiskannDiskAdapter(
        metric, threads, graph_degree=64, complexity=128, beam_width=4, cached_nodes=0
    )


def _bruteforce(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.bruteforce import BruteForceAdapter

    return BruteForceAdapter(metric, threads)


ALGORITHMS: dict[str, Factory] = {
    "quiver": _quiver,
    "hnswlib-M32-efc128": _hnswlib(32, 128),
    "hnswlib-M16-efc200": _hnswlib(16, 200),
    "faiss-hnsw-M32-efc128": _faiss_hnsw,
    "faiss-binary-hnsw-M32-rerank": _faiss_binary,
    "faiss-hnsw-sq8-M32": _faiss_hnsw_sq8,
    "faiss-ivf-rabitq-refine": _faiss_ivf_rabitq,
    "scann-ah2-leaves2sqrtn": _scann,
    "usearch-f32-M32": _usearch("f32"),
    "usearch-i8-M32": _usearch("i8"),
    "diskann-mem-R64-L128": _diskann_memory,
    "diskann-disk-R64-L128": _diskann_disk,
    "bruteforce-numpy": _bruteforce,
}


def make_adapter(name: str, metric: str, threads: int) -> Adapter:
    """Instantiate algorithm ``name`` (a key of :data:`ALGORITHMS`)."""
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {name!r}; known: {sorted(ALGORITHMS)}")
    adapter = ALGORITHMS[name](metric, threads)
    if adapter.name != name:
        raise RuntimeError(f"algorithm {name!r} built an adapter named {adapter.name!r}")
    return adapter


__all__ = ["ALGORITHMS", "Adapter", "make_adapter"]
