"""The contract every benchmarked library implements, plus small shared helpers.

An adapter wraps one library with one set of build parameters. The runner drives it the same
way for every library: ``warmup`` (untimed), ``fit`` (timed, RSS measured), then for each
query-time ``ef``: ``set_query_arguments``, ``batch_query`` and ``query``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from types import ModuleType
from typing import Any

import numpy as np

METRICS = ("angular", "euclidean")
INSTALL_HINT = 'pip install -e ".[bench]"'


def require(module: str) -> ModuleType:
    """Import an optional benchmark dependency or fail with the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"the benchmark harness needs {module!r}, which is not installed: {INSTALL_HINT}"
        ) from err


def library_version(distribution: str) -> str | None:
    """Installed version of a distribution (e.g. ``"faiss-cpu"``), or None if absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def normalized(x: np.ndarray) -> np.ndarray:
    """A unit-norm float32 copy of the rows of ``x`` (zero rows stay zero); ``x`` is untouched."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class Adapter(ABC):
    """One library with fixed build parameters, for one metric and thread count.

    Parameters
    ----------
    metric : the data set's ann-benchmarks distance, ``"angular"`` or ``"euclidean"``.
    threads : threads the library may use for building and batched queries.

    Subclasses set ``library`` (the PyPI distribution, for its version), ``uses_ef`` (False
    when there is no query-time knob) and implement ``fit``, ``batch_query``, ``query``.
    Query methods return int64 ids, one row per query, ``-1`` where nothing was found.
    """

    library: str = ""
    uses_ef: bool = True

    def __init__(self, metric: str, threads: int) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.metric = metric
        self.threads = threads
        self.ef = 0

    @property
    @abstractmethod
    def name(self) -> str:
        """Algorithm name, unique per build configuration (e.g. ``"hnswlib-M32-efc128"``)."""

    def build_params(self) -> dict[str, Any]:
        """Build-time parameters (recorded with every result row)."""
        return {}

    def warmup(self) -> float:
        """Compile or load any JIT code; return its seconds (excluded from every timing)."""
        return 0.0

    @abstractmethod
    def fit(self, train: np.ndarray) -> None:
        """Build the index over ``train`` (float32, (n, d)); never modifies ``train``."""

    def set_query_arguments(self, ef: int) -> None:
        """Set the query-time beam width (candidate list size) used by the next queries."""
        self.ef = int(ef)

    @abstractmethod
    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Top-``k`` ids of every query in one call: int64 (nq, k)."""

    @abstractmethod
    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        """Top-``k`` ids of one query vector ``q`` (d,): int64 (k,), computed on one thread.

        This is the latency of one request in a server; a thread team per call would only
        add its start-up and synchronisation to it.
        """

    def memory_bytes(self) -> int | None:
        """Size of the built structure as the library accounts for it (None if unknown)."""
        return None

    def extra_stats(self) -> dict[str, Any]:
        """Library-specific figures gathered after the query sweep (e.g. on-disk size)."""
        return {}

    def specs(self) -> dict[str, Any]:
        """Name, library and version, build parameters, metric and threads."""
        return {
            "name": self.name,
            "library": self.library,
            "version": library_version(self.library) if self.library else None,
            "build_params": self.build_params(),
            "metric": self.metric,
            "threads": self.threads,
        }
