"""The peer adapters of the benchmark harness: ScaNN, quantised FAISS, usearch, DiskANN.

Each is fitted on 2,000 seeded clustered vectors and checked against the exact oracle at a
generous query setting: recall@10 above a named floor, int64 ids of the right shape, single
and batch queries agreeing, and the thread count honoured where the process shows it.
Also the sweep helpers and a run through ``python -m bench`` of an adapter with two knobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import quiver
from bench.harness.adapters import make_adapter
from bench.harness.adapters.base import QuerySetting, ef_settings, grid_settings, spread
from bench.harness.datasets import AnnDataset
from bench.harness.runner import check_ids, score

REPO = Path(__file__).resolve().parents[1]
N, NQ, DIM, K = 2000, 300, 32, 10
GENEROUS_EF = 200

# recall@10 each adapter must beat at its most generous setting on the clustered data below
RECALL_FLOOR = {
    "scann-ah2-leaves2sqrtn": 0.95,
    "faiss-hnsw-sq8-M32": 0.95,
    "faiss-ivf-rabitq-refine": 0.97,
    "usearch-f32-M32": 0.98,
    "usearch-i8-M32": 0.90,  # int8 storage, no float rerank
    "diskann-mem-R64-L128": 0.98,
    "diskann-disk-R64-L128": 0.97,
}
MODULE_OF = {"scann": "scann", "faiss": "faiss", "usearch": "usearch", "diskann": "diskannpy"}


def _library(name: str) -> str:
    module = MODULE_OF[name.split("-")[0]]
    if module == "diskannpy":
        # not in the dev extra (its metadata pins numpy==1.25): `make test` installs it with
        # --no-deps; a plain `pip install -e .[dev]` does not
        pytest.importorskip("diskannpy")
    return module


def clustered(n: int, nq: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points around 20 random centres (so partitions mean something), and queries alike."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    train = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, dim))
    test = centres[rng.integers(0, 20, nq)] + 0.5 * rng.standard_normal((nq, dim))
    return train.astype(np.float32), test.astype(np.float32)


@pytest.fixture(scope="module", params=["angular", "euclidean"])
def data(request: pytest.FixtureRequest) -> AnnDataset:
    distance = request.param
    train, test = clustered(N, NQ, DIM, seed=7)
    metric = "cosine" if distance == "angular" else "l2"
    ids, dists = quiver.exact_search(train, test, 100, metric)
    if distance == "euclidean":
        dists = np.sqrt(np.maximum(dists, 0))
    return AnnDataset(train, test, ids, dists, distance, DIM)


def _generous(adapter) -> QuerySetting:
    """The sweep's last (widest) setting; for beam-width adapters ef=GENEROUS_EF."""
    return adapter.sweep_settings([GENEROUS_EF], K)[-1]


# ----------------------------------------------------------------------------- sweep helpers


def test_sweep_settings_helpers() -> None:
    assert ef_settings([5, 10, 40], k=10) == [
        QuerySetting("ef=10", {"ef": 10}),
        QuerySetting("ef=40", {"ef": 40}),
    ]
    grid = grid_settings(nprobe=[1, 4], k_factor=[3, 10])
    assert [s.label for s in grid] == [
        "nprobe=1,k_factor=3", "nprobe=1,k_factor=10", "nprobe=4,k_factor=3", "nprobe=4,k_factor=10"
    ]  # fmt: skip
    assert grid[3].args == {"nprobe": 4, "k_factor": 10}
    assert spread(100, [0.001, 0.01, 0.012, 0.5, 2.0]) == [1, 50, 100]


# ----------------------------------------------------------------------------- adapters


@pytest.mark.parametrize("name", sorted(RECALL_FLOOR))
def test_peer_adapter_recall_ids_and_modes(
    name: str, data: AnnDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _library(name)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # index folders, serialised files
    if name == "usearch-i8-M32" and data.distance == "euclidean":
        with pytest.raises(ValueError, match="metric must be 'angular'"):
            make_adapter(name, data.distance, threads=2)
        return
    adapter = make_adapter(name, data.distance, threads=2)
    train = data.train.copy()
    adapter.fit(train)
    np.testing.assert_array_equal(train, data.train)  # input untouched
    setting = _generous(adapter)
    adapter.apply_setting(setting)
    args = adapter.query_arguments()
    assert args and all(isinstance(v, int | float) for v in args.values())

    batch = adapter.batch_query(data.test, K)
    assert batch.shape == (NQ, K) and batch.dtype == np.int64
    check_ids(batch, N)
    recall = score(data, data.test, batch, K)
    assert recall > RECALL_FLOOR[name], f"{name} {setting.label}: recall {recall:.4f}"

    single = np.stack([adapter.query(q, K) for q in data.test])
    assert single.shape == (NQ, K) and single.dtype == np.int64
    check_ids(single, N)
    same = np.mean([set(a) == set(b) for a, b in zip(single, batch, strict=True)])
    assert same >= 0.95, f"single and batch answers agree on only {same:.1%} of queries"
    assert abs(score(data, data.test, single, K) - recall) <= 0.01

    specs = adapter.specs()
    assert specs["name"] == name and specs["version"] and specs["threads"] == 2
    assert adapter.memory_bytes() > 0


def test_query_settings_change_the_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the narrowest and widest settings of the two-knob adapters differ in recall: the knobs
    # reach the library
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    train, test = clustered(N, 100, DIM, seed=3)
    ids, dists = quiver.exact_search(train, test, 100, "cosine")
    ds = AnnDataset(train, test, ids, dists, "angular", DIM)
    for name in ("scann-ah2-leaves2sqrtn", "faiss-ivf-rabitq-refine"):
        adapter = make_adapter(name, "angular", threads=1)
        adapter.fit(train)
        settings = adapter.sweep_settings([GENEROUS_EF], K)
        assert len(settings) >= 6 and len({s.label for s in settings}) == len(settings)
        recalls = []
        for setting in (settings[0], settings[-1]):
            adapter.apply_setting(setting)
            recalls.append(score(ds, test, adapter.batch_query(test, K), K))
        assert recalls[0] + 0.1 < recalls[1], (name, recalls)


def test_faiss_single_queries_run_on_one_thread() -> None:
    faiss = pytest.importorskip("faiss")
    train, test = clustered(500, 20, 16, seed=5)
    adapter = make_adapter("faiss-hnsw-sq8-M32", "angular", threads=3)
    adapter.fit(train)
    adapter.batch_query(test, K)
    assert faiss.omp_get_max_threads() == 3
    adapter.query(test[0], K)
    assert faiss.omp_get_max_threads() == 1


_THREAD_PROBE = """
import os, sys
import numpy as np
from bench.harness.adapters import make_adapter
name, threads = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.standard_normal((3000, 16)).astype(np.float32)
adapter = make_adapter(name, "angular", threads)
before = len(os.listdir("/proc/self/task"))
adapter.fit(x)
adapter.apply_setting(adapter.sweep_settings([40], 10)[-1])
adapter.batch_query(x[:500], 10)
print(len(os.listdir("/proc/self/task")) - before)
"""


@pytest.mark.parametrize(
    "name", ["scann-ah2-leaves2sqrtn", "faiss-hnsw-sq8-M32", "diskann-mem-R64-L128"]
)
def test_thread_pools_have_the_requested_size(name: str, tmp_path: Path) -> None:
    # Libraries that keep a pool show it in /proc/self/task: with one more thread than the
    # machine has cores, an honoured setting gives `threads` workers (the caller may be one
    # of them); a library sizing its pool from the hardware would give at most cores - 1 or
    # cores. usearch starts threads per call, so it shows nothing afterwards: not checked.
    _library(name)
    threads = (os.cpu_count() or 1) + 1
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    proc = subprocess.run(
        [sys.executable, "-c", _THREAD_PROBE, name, str(threads)],
        cwd=REPO, env={**env, "TMPDIR": str(tmp_path)}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    extra = int(proc.stdout.strip().splitlines()[-1])
    assert threads - 1 <= extra <= threads, f"{name}: {extra} new threads for threads={threads}"


# ----------------------------------------------------------------------------- runner


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO, env={**os.environ, "TMPDIR": str(tmp_path)}, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip


def test_runner_sweeps_an_adapters_own_settings(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    pytest.importorskip("matplotlib")
    from bench.harness.datasets import write_hdf5

    train, test = clustered(1000, 30, 16, seed=2)
    ids, dists = quiver.exact_search(train, test, 100, "cosine")
    data = tmp_path / "tiny-16-angular.hdf5"
    write_hdf5(data, train, test, ids, dists, "cosine")
    out = tmp_path / "results"
    args = ["run", str(data), "--algorithms", "faiss-ivf-rabitq-refine", "faiss-hnsw-sq8-M32",
            "--threads", "1", "--ef", "20", "40", "--single-queries", "10",
            "--out-dir", str(out)]  # fmt: skip
    proc = _bench(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]

    ivf = json.loads((out / "tiny-16-angular" / "faiss-ivf-rabitq-refine-t1.json").read_text())
    rows = ivf["rows"]
    assert ivf["complete"] and len(rows) > 2  # its own grid, not the two efs
    assert all(r["ef"] is None for r in rows)
    first = rows[0]
    assert first["setting"] == f"nprobe={first['query_args']['nprobe']},k_factor=3"
    assert first["query_args"]["k_factor"] == 3.0
    assert first["specs"]["build_params"]["nlist"] == round(4 * 1000**0.5)
    sq8 = json.loads((out / "tiny-16-angular" / "faiss-hnsw-sq8-M32-t1.json").read_text())
    assert [(r["setting"], r["query_args"]) for r in sq8["rows"]] == [
        ("ef=20", {"efSearch": 20}), ("ef=40", {"efSearch": 40})
    ]  # fmt: skip

    proc = _bench(tmp_path, "report", "tiny-16-angular", "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (out / "tiny-16-angular" / "summary.md").read_text()
    assert "| faiss-ivf-rabitq-refine |" in summary and "| faiss-hnsw-sq8-M32 |" in summary
