"""The benchmark harness (bench/): scoring, frontier math, data I/O, adapters, runner end to end.

Small data only: the benchmarks themselves are not run here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import quiver
from bench.harness.adapters import ALGORITHMS, make_adapter
from bench.harness.datasets import AnnDataset
from bench.harness.report import Point, pareto_frontier, qps_at_recall, summary_markdown
from bench.harness.runner import check_ids, is_complete, neighbor_distances, score

REPO = Path(__file__).resolve().parents[1]


def _dataset(n: int, nq: int, dim: int, distance: str, seed: int = 0) -> AnnDataset:
    """Random data with exact ground truth in the ann-benchmarks convention."""
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((n, dim), dtype=np.float32)
    test = rng.standard_normal((nq, dim), dtype=np.float32)
    metric = "cosine" if distance == "angular" else "l2"
    ids, dists = quiver.exact_search(train, test, min(n, 100), metric)
    if distance == "euclidean":
        dists = np.sqrt(np.maximum(dists, 0))
    return AnnDataset(train, test, ids, dists, distance, dim)


# ----------------------------------------------------------------------------- scoring


def test_tied_neighbours_count_as_hits() -> None:
    # three copies of the nearest point: any of them is a correct answer
    base = np.eye(4, dtype=np.float32)
    train = np.vstack([base[[0, 0, 0]], base[1:], base[1:] * 3]).astype(np.float32)
    query = np.array([[1.0, 0.1, 0.0, 0.0]], dtype=np.float32)
    ids, dists = quiver.exact_search(train, query, 9, "l2")
    ds = AnnDataset(train, query, ids, np.sqrt(dists), "euclidean", 4)
    # k=2: the truth names two of the three copies; the third copy is just as good
    assert score(ds, query, np.array([[2, 1]]), k=2) == 1.0
    assert score(ds, query, np.array([[2, 0]]), k=2) == 1.0
    # a farther point does not count, padding never counts
    assert score(ds, query, np.array([[2, 3]]), k=2) == 0.5
    assert score(ds, query, np.array([[2, -1]]), k=2) == 0.5


def test_returned_ids_are_checked() -> None:
    check_ids(np.array([[0, 1, -1, -1]]), n=2)
    with pytest.raises(ValueError, match="same id twice"):
        check_ids(np.array([[0, 1, 0]]), n=3)
    with pytest.raises(ValueError, match="out of range"):
        check_ids(np.array([[0, 3]]), n=3)


def test_recomputed_distances_use_the_file_convention() -> None:
    train = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    query = np.array([[0.0, 0.0]], dtype=np.float32)
    ids = np.array([[0, 1, -1]])
    l2 = neighbor_distances(train, query, ids, "euclidean")
    np.testing.assert_allclose(l2, [[5.0, 2.0, np.inf]])  # plain, not squared, L2
    query = np.array([[0.0, 1.0]], dtype=np.float32)
    ang = neighbor_distances(train, query, ids[:, :2], "angular")
    np.testing.assert_allclose(ang, [[1 - 0.8, 0.0]], atol=1e-12)


# ----------------------------------------------------------------------------- frontier math


def test_pareto_frontier_drops_dominated_points() -> None:
    points = [(0.5, 900.0), (0.8, 1000.0), (0.9, 100.0), (0.85, 50.0), (1.0, 10.0), (1.0, 5.0)]
    assert pareto_frontier(points) == [Point(0.8, 1000.0), Point(0.9, 100.0), Point(1.0, 10.0)]
    assert pareto_frontier([(0.7, 10.0), (0.7, 10.0)]) == [Point(0.7, 10.0)]
    assert pareto_frontier([]) == []


def test_qps_at_matched_recall_interpolates_log_qps() -> None:
    frontier = [Point(0.8, 1000.0), Point(0.9, 100.0), Point(1.0, 10.0)]
    assert qps_at_recall(frontier, 0.9) == pytest.approx(100.0)
    assert qps_at_recall(frontier, 0.85) == pytest.approx(math.sqrt(1000 * 100))
    assert qps_at_recall(frontier, 0.95) == pytest.approx(math.sqrt(100 * 10))
    assert qps_at_recall(frontier, 0.975) == pytest.approx(10 ** (2 - 0.75))
    assert qps_at_recall(frontier, 1.0) == pytest.approx(10.0)
    # below the frontier's lowest recall: that point's QPS (a lower bound)
    assert qps_at_recall(frontier, 0.5) == pytest.approx(1000.0)
    # beyond the best recall it never reached: no value
    assert qps_at_recall(frontier[:2], 0.95) is None
    assert qps_at_recall([], 0.9) is None


def _rows(algorithm: str, points: list[tuple[float, float]], build_s: float) -> list[dict]:
    return [
        {"algorithm": algorithm, "threads": 2, "k": 10, "recall": r, "recall_single": r,
         "batch_qps": q, "single_qps": q / 2, "build_s": build_s, "index_bytes": 10_000_000,
         "memory_bytes": None, "jit_s": 0.0}
        for r, q in points
    ]  # fmt: skip


def test_summary_table_ratios_and_na() -> None:
    rows = _rows("quiver", [(0.9, 2000.0), (0.99, 200.0)], 4.0)
    rows += _rows("other", [(0.9, 1000.0), (0.95, 500.0)], 2.0)
    text = summary_markdown(rows, baseline="quiver")
    other = next(line for line in text.splitlines() if line.startswith("| other | 2.00x"))
    cells = [c.strip() for c in other.strip("|").split("|")]
    # batch 0.90 / 0.95 / 0.99, single 0.90 / 0.95 / 0.99, build, memory
    assert cells[1] == "2.00x" and cells[3] == "n/a" and cells[4] == "2.00x"
    assert cells[7] == "2.00x" and cells[8] == "1.00x"


def test_summary_names_the_best_other_algorithm_per_recall() -> None:
    rows = _rows("quiver", [(0.9, 2000.0), (0.99, 200.0)], 4.0)
    rows += _rows("slow", [(0.9, 1000.0), (0.99, 100.0)], 2.0)
    rows += _rows("fast-low", [(0.9, 4000.0), (0.95, 100.0)], 2.0)
    text = summary_markdown(rows, baseline="quiver")
    best = next(line for line in text.splitlines() if line.startswith("| **best other**"))
    cells = [c.strip() for c in best.strip("|").split("|")]
    # batch 0.90: fast-low (4000 QPS) is best; 0.95: slow (~316) beats fast-low (100);
    # 0.99: only slow reaches it
    assert cells[1] == "0.50x (fast-low)"
    assert cells[2] == "2.00x (slow)" and cells[3] == "2.00x (slow)"


def _in_run(rows: list[dict], command: str, started: str) -> list[dict]:
    return [{**row, "command": command, "started": started} for row in rows]


def test_best_other_leaves_out_systems_from_another_run() -> None:
    """A faster system timed by another command (or on another day) is shown, marked, but is
    not the best other: ratios only hold within one run."""
    run = "python -m bench run set --threads 2"
    rows = _in_run(_rows("quiver", [(0.9, 2000.0), (0.99, 200.0)], 4.0), run, "2026-12-05T10:00")
    rows += _in_run(_rows("slow", [(0.9, 1000.0), (0.99, 100.0)], 2.0), run, "2026-12-05T10:05")
    stale = _rows("stale-fast", [(0.9, 9000.0), (0.99, 900.0)], 2.0)
    rows += _in_run(stale, run, "2026-11-26T10:00")  # the same command on another day
    rows += _in_run(_rows("other-cmd", [(0.9, 8000.0)], 2.0), run + " --force", "2026-12-05T09")
    text = summary_markdown(rows, baseline="quiver")
    lines = text.splitlines()
    best = next(line for line in lines if line.startswith("| **best other** (same run)"))
    cells = [c.strip() for c in best.strip("|").split("|")]
    assert cells[1] == "2.00x (slow)" and cells[3] == "2.00x (slow)"
    assert any(line.startswith("| stale-fast‡ |") for line in lines)
    assert any(line.startswith("| other-cmd‡ |") for line in lines)
    assert any(line.startswith("| slow |") for line in lines)
    # the ratio rows still compare with every system
    assert any(line.startswith("| stale-fast | 0.22x") for line in lines)


# ----------------------------------------------------------------------------- data


def test_hdf5_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    from bench.harness.datasets import read_hdf5, write_hdf5
    from bench.harness.sets import dataset_label, load_dataset

    ds = _dataset(50, 5, 8, "euclidean")
    squared = ds.distances**2
    path = tmp_path / "tiny-8-euclidean.hdf5"
    write_hdf5(path, ds.train, ds.test, ds.neighbors, squared, "l2")
    back = read_hdf5(path)
    assert back.distance == "euclidean" and back.dimension == 8
    np.testing.assert_array_equal(back.train, ds.train)
    np.testing.assert_array_equal(back.neighbors, ds.neighbors)
    np.testing.assert_allclose(back.distances, ds.distances, rtol=1e-6)  # stored as plain L2
    assert dataset_label(str(path)) == "tiny-8-euclidean"
    np.testing.assert_array_equal(load_dataset(str(path)).test, ds.test)


# ----------------------------------------------------------------------------- adapters


def _available(name: str) -> str:
    if name.startswith("hnswlib"):
        pytest.importorskip("hnswlib")
    if name.startswith("faiss"):
        pytest.importorskip("faiss")
    if name.startswith("diskann"):
        pytest.importorskip("diskannpy")  # not in the dev extra: `make test` installs it
    return name


def test_missing_library_names_the_extra() -> None:
    from bench.harness.adapters.base import require

    with pytest.raises(ImportError, match=r'pip install -e "\.\[bench\]"'):
        require("no_such_module_for_quiver_bench")


@pytest.mark.parametrize("distance", ["angular", "euclidean"])
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_adapter_contract(
    name: str, distance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # memory_bytes() may save a file
    ds = _dataset(500, 20, 16, distance, seed=1)
    if name == "usearch-i8-M32" and distance == "euclidean":
        with pytest.raises(ValueError, match="must be 'angular'"):
            make_adapter(name, distance, threads=1)  # its int8 storage normalises vectors
        return
    adapter = make_adapter(_available(name), distance, threads=1)
    adapter.warmup()
    train = ds.train.copy()
    adapter.fit(train)
    np.testing.assert_array_equal(train, ds.train)  # input untouched
    adapter.apply_setting(adapter.sweep_settings([40], 10)[-1])  # ef=40, or the widest setting
    ids = adapter.batch_query(ds.test, 10)
    one = adapter.query(ds.test[0], 10)
    assert ids.shape == (20, 10) and ids.dtype == np.int64
    assert one.shape == (10,) and one.dtype == np.int64
    check_ids(ids, 500)
    assert (ids >= 0).all()
    specs = adapter.specs()
    assert specs["name"] == name and specs["threads"] == 1
    if not name.startswith(("usearch-i8", "diskann-disk", "faiss-hnsw-sq8")):  # no floats kept
        assert adapter.memory_bytes() > 500 * 16 * 4 * 0.9
    else:
        assert adapter.memory_bytes() > 500 * 16 * 0.9  # at least a byte per dimension
    recall = score(ds, ds.test, ids, 10)
    if name.startswith("bruteforce"):
        assert recall == 1.0
        np.testing.assert_array_equal(one, ids[0])
    elif not name.startswith(("faiss-binary", "diskann-disk")):
        # 1-bit codes of 16-d random data navigate badly; so do DiskANN's 4-byte PQ codes
        assert recall > 0.5


# ----------------------------------------------------------------------------- runner


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_runner_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    from bench.harness.datasets import write_hdf5

    ds = _dataset(400, 30, 16, "angular", seed=2)
    data = tmp_path / "tiny-16-angular.hdf5"
    write_hdf5(data, ds.train, ds.test, ds.neighbors, ds.distances, "cosine")
    out = tmp_path / "results"
    args = ["run", str(data), "--algorithms", "quiver", "bruteforce-numpy", "--threads", "1",
            "--ef", "5", "10", "20", "--out-dir", str(out)]  # fmt: skip
    proc = _bench(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]

    quiver_file = out / "tiny-16-angular" / "quiver-t1.json"
    payload = json.loads(quiver_file.read_text())
    assert payload["complete"] and payload["k"] == 10
    rows = payload["rows"]
    assert [r["ef"] for r in rows] == [10, 20]  # ef < k skipped
    for row in rows:
        assert 0.0 <= row["recall"] <= 1.0 and row["batch_qps"] > 0 and row["single_qps"] > 0
        assert row["p50_ms"] <= row["p99_ms"]
        assert row["threads"] == 1 and row["thread_env"]["NUMBA_NUM_THREADS"] == "1"
        assert row["hot_bytes"] > 0 and row["disk_bytes"] > 0 and row["jit_s"] >= 0
        assert row["versions"]["numpy"] and row["cpu"] and "bench run" in row["command"]
        assert row["specs"]["build_params"]["max_degree"] == 64
    brute = json.loads((out / "tiny-16-angular" / "bruteforce-numpy-t1.json").read_text())
    assert [r["ef"] for r in brute["rows"]] == [None] and brute["rows"][0]["recall"] == 1.0
    assert is_complete(quiver_file, [10, 20], 10) and not is_complete(quiver_file, [40], 10)

    # resumable: complete files are skipped
    mtime = quiver_file.stat().st_mtime_ns
    proc = _bench(tmp_path, *args)
    assert proc.returncode == 0 and "skipped" in proc.stderr
    assert quiver_file.stat().st_mtime_ns == mtime

    pytest.importorskip("matplotlib")
    proc = _bench(tmp_path, "report", "tiny-16-angular", "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "tiny-16-angular" / "pareto-batch-t1.png").stat().st_size > 0
    summary = (out / "tiny-16-angular" / "summary.md").read_text()
    assert "| quiver |" in summary and "| bruteforce-numpy |" in summary
