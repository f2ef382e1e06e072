"""The contract every benchmarked library implements, plus small shared helpers.

An adapter wraps one library with one set of build parameters. The runner drives it the same
way for every library: ``warmup`` (untimed), ``fit`` (timed, RSS measured), then for each
query-time setting of ``sweep_settings``: ``apply_setting``, ``batch_query`` and ``query``.

Most libraries have one query-time knob, a beam width the runner sweeps as ``ef``. A library
with several knobs (partitions probed and candidates re-ranked, say) declares its own list of
settings instead: ``sweep_settings`` returns them, each with a short label, and every result row
records the label and the arguments the library actually ran with (``query_arguments``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

METRICS = ("angular", "euclidean")
INSTALL_HINT = 'pip install -e ".[bench]"'


def require(module: str, install: str = INSTALL_HINT) -> ModuleType:
    """Import an optional benchmark dependency or fail with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"the benchmark harness needs {module!r}, which is not installed: {install}"
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


class QuerySetting(NamedTuple):
    """One point of a query-time sweep: a short label and the arguments it stands for."""

    label: str
    args: dict[str, Any]


def ef_settings(efs: Sequence[int], k: int) -> list[QuerySetting]:
    """One setting per beam width ``ef`` >= ``k`` (a narrower beam cannot return k results)."""
    return [QuerySetting(f"ef={ef}", {"ef": int(ef)}) for ef in efs if ef >= k]


def grid_settings(**knobs: Sequence[int]) -> list[QuerySetting]:
    """Every combination of the knobs' values, labelled ``"name=value,name=value"``.

    The order is the knobs' order, the last varying fastest: ``grid_settings(a=[1, 2],
    b=[3, 4])`` gives a=1,b=3; a=1,b=4; a=2,b=3; a=2,b=4.
    """
    combos: list[dict[str, Any]] = [{}]
    for name, values in knobs.items():
        combos = [{**combo, name: int(v)} for combo in combos for v in values]
    return [QuerySetting(",".join(f"{n}={v}" for n, v in c.items()), c) for c in combos]


def spread(total: int, fractions: Sequence[float]) -> list[int]:
    """``round(f * total)`` for each fraction, at least 1 and at most ``total``, deduplicated."""
    return sorted({min(total, max(1, round(f * total))) for f in fractions})


class Adapter(ABC):
    """One library with fixed build parameters, for one metric and thread count.

    Parameters
    ----------
    metric : the data set's ann-benchmarks distance, ``"angular"`` or ``"euclidean"``.
    threads : threads the library may use for building and batched queries.

    Subclasses set ``library`` (the PyPI distribution, for its version), ``uses_ef`` (False
    when there is no query-time knob) and implement ``fit``, ``batch_query``, ``query``.
    Query methods return int64 ids, one row per query, ``-1`` where nothing was found.
    A library with several query-time knobs overrides ``sweep_settings``, ``apply_setting``
    and ``query_arguments``.
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

    def sweep_settings(self, efs: Sequence[int], k: int) -> list[QuerySetting]:
        """The query-time settings the runner measures, in order (called after ``fit``).

        By default one per ``ef`` >= ``k``, or one empty setting when there is no knob; an
        adapter with several knobs returns its own list and ignores ``efs``.
        """
        if not self.uses_ef:
            return [QuerySetting("default", {})]
        return ef_settings(efs, k)

    def apply_setting(self, setting: QuerySetting) -> None:
        """Make ``setting`` the one the next queries use."""
        if "ef" in setting.args:
            self.set_query_arguments(setting.args["ef"])

    def query_arguments(self) -> dict[str, Any]:
        """The library's own query-time arguments now in force (recorded with each row)."""
        return {"ef": self.ef} if self.uses_ef else {}

    @abstractmethod
    def batch_query(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Top-``k`` ids of every query in one call: int64 (nq, k)."""

    @abstractmethod
    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        """Top-``k`` ids of one query vector ``q`` (d,): int64 (k,), computed on one thread.

        This is the latency of one request in a server; a thread team per call would only
        add its start-up and synchronisation to it.
        """

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Vectors as the peers get them: unit rows for angular data (so inner product or L2
        order equals cosine order), C-contiguous float32 for euclidean data."""
        if self.metric == "angular":
            return normalized(x)
        return np.ascontiguousarray(x, dtype=np.float32)

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
