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


def _bruteforce(metric: str, threads: int) -> Adapter:
    from bench.harness.adapters.bruteforce import BruteForceAdapter

    return BruteForceAdapter(metric, threads)


ALGORITHMS: dict[str, Factory] = {
    "quiver": _quiver,
    "hnswlib-M32-efc128": _hnswlib(32, 128),
    "hnswlib-M16-efc200": _hnswlib(16, 200),
    "faiss-hnsw-M32-efc128": _faiss_hnsw,
    "faiss-binary-hnsw-M32-rerank": _faiss_binary,
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
