"""bench/ann_benchmarks/quiver: the ann-benchmarks plugin, imported as ann-benchmarks would
(``from ..base.module import BaseANN``) with a minimal stand-in base class."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

import quiver

PLUGIN = Path(__file__).resolve().parents[1] / "bench" / "ann_benchmarks" / "quiver"

STAND_IN_BASE = '''
class BaseANN:
    """The part of ann-benchmarks' BaseANN the runner relies on."""

    def done(self):
        pass

    def get_memory_usage(self):
        return 0.0

    def get_additional(self):
        return {}

    def batch_query(self, X, n):
        self.res = [self.query(q, n) for q in X]

    def get_batch_results(self):
        return self.res

    def __str__(self):
        return self.name
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """``ann_benchmarks.algorithms.quiver.module`` in a stand-in package tree."""
    root = tmp_path_factory.mktemp("annb")
    algorithms = root / "ann_benchmarks" / "algorithms"
    (algorithms / "base").mkdir(parents=True)
    for package in (root / "ann_benchmarks", algorithms, algorithms / "base"):
        (package / "__init__.py").write_text("")
    (algorithms / "base" / "module.py").write_text(STAND_IN_BASE)
    shutil.copytree(PLUGIN, algorithms / "quiver")
    (algorithms / "quiver" / "__init__.py").write_text("")
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "ann_benchmarks"}
    for key in saved:
        del sys.modules[key]
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("ann_benchmarks.algorithms.quiver.module")
    finally:
        sys.path.remove(str(root))
        for key in [k for k in sys.modules if k.split(".")[0] == "ann_benchmarks"]:
            del sys.modules[key]
        sys.modules.update(saved)


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((8, 32))
    x = rng.standard_normal((2000, 8)) @ basis + 0.1 * rng.standard_normal((2000, 32))
    q = rng.standard_normal((40, 8)) @ basis + 0.1 * rng.standard_normal((40, 32))
    return x.astype(np.float32), q.astype(np.float32)


def _exact(x: np.ndarray, q: np.ndarray, metric: str, k: int) -> np.ndarray:
    if metric == "angular":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        return np.argsort(-(q @ xn.T), axis=1)[:, :k]
    d = ((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    return np.argsort(d, axis=1)[:, :k]


@pytest.mark.parametrize("metric", ["angular", "euclidean"])
def test_fit_query_batch_query_recall(plugin: ModuleType, metric: str) -> None:
    k = 10
    x, q = _data(seed=7)
    algo = plugin.Quiver(metric, {"max_degree": 32, "build_list_size": 64})
    algo.fit(x)
    algo.set_query_arguments(48)
    assert "ef=48" in str(algo) and "max_degree=32" in str(algo)
    single = [algo.query(v, k) for v in q]
    algo.batch_query(q, k)
    batch = algo.get_batch_results()
    assert [list(r) for r in single] == [list(r) for r in batch]
    truth = _exact(x, q, metric, k)
    recall = np.mean([len(set(r) & set(t)) / k for r, t in zip(batch, truth, strict=True)])
    assert recall >= 0.9, recall
    assert all(len(set(r)) == len(r) == k for r in batch)  # the runner rejects duplicates
    assert algo.get_additional()["hot_bytes"] > 0
    algo.done()


def test_rejects_an_unknown_distance(plugin: ModuleType) -> None:
    with pytest.raises(ValueError, match="jaccard"):
        plugin.Quiver("jaccard", {})


def test_config_names_the_class_and_valid_build_params() -> None:
    config = yaml.safe_load((PLUGIN / "config.yml").read_text())
    (entry,) = config["float"]["any"]
    assert entry["constructor"] == "Quiver"
    assert entry["module"] == "ann_benchmarks.algorithms.quiver"
    assert entry["base_args"] == ["@metric"]
    for group in entry["run_groups"].values():
        (params,) = group["arg_groups"]
        quiver.Index(8, "cosine", **params)  # accepted build parameters
        (efs,) = group["query_args"]
        assert efs == sorted(efs) and min(efs) >= 1
