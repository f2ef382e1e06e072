"""Run one data set through every adapter, each in its own process, into JSON result files.

The parent (:func:`run`) starts one child process per algorithm (``python -m bench.harness.runner``)
with the thread count pinned through the environment before any library loads
(``OMP_NUM_THREADS``, ``NUMBA_NUM_THREADS``, BLAS variables), so FAISS's OpenMP pool and
Numba's threads never share a process and resident memory is measured per system. The child
(:func:`child_main`) loads the data, warms up, builds the index while watching RSS, then sweeps
``ef`` (or the adapter's own query settings, for libraries with several knobs): recall@k from
distances it recomputes itself, batch QPS (median of 3), single-query QPS and latency
percentiles. It writes ``<out>/<dataset>/<algorithm>-t<threads>.json`` after every point and
marks it complete at the end; complete files are skipped on rerun.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import importlib.metadata
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness.adapters import ALGORITHMS, Adapter, make_adapter
from bench.harness.adapters.base import QuerySetting
from bench.harness.datasets import AnnDataset
from bench.harness.memory import status_bytes
from bench.harness.sets import dataset_label, load_dataset
from bench.paths import BENCH_DIR, RESULTS_DIR

log = logging.getLogger(__name__)

DEFAULT_EFS = (10, 20, 40, 64, 80, 120, 200, 400, 800)
DEFAULT_OUT_DIR = RESULTS_DIR
BATCH_REPEATS = 3
FORMAT_VERSION = 1
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
VERSIONED = (
    "numpy", "numba", "quiver", "hnswlib", "faiss-cpu", "scann", "usearch", "diskannpy", "h5py",
    "pyarrow",
)  # fmt: skip

# ----------------------------------------------------------------------------- environment


def rss_bytes() -> int:
    """Resident set size of this process now (``VmRSS``)."""
    return status_bytes("VmRSS")["VmRSS"]


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS; False if refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError as err:
        log.warning("cannot reset peak RSS (%s): peak_fit_bytes includes data loading", err)
        return False
    return True


def release_free_heap() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); False where unavailable.

    Called around ``fit`` so RSS growth counts what the index keeps, not what the allocator
    retained from freed temporaries.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def software_versions() -> dict[str, str | None]:
    """Versions of Python and of every library a result can depend on (None = absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def git_revision() -> str | None:
    """``git describe --always --dirty`` of the working tree, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            cwd=BENCH_DIR,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def thread_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child pinned to ``threads`` threads in every thread pool."""
    env = dict(os.environ if base is None else base)
    for var in THREAD_ENV_VARS:
        env[var] = str(threads)
    return env


# ----------------------------------------------------------------------------- scoring


def check_ids(ids: np.ndarray, n: int) -> None:
    """Raise ValueError unless every row's ids are unique and in ``[0, n)`` (-1 = padding)."""
    if ids.ndim != 2:
        raise ValueError(f"expected a 2-D id array, got shape {ids.shape}")
    valid = ids >= 0
    if (ids[valid] >= n).any() or (ids[~valid] != -1).any():
        raise ValueError(f"ids out of range [0, {n}) returned")
    ordered = np.sort(np.where(valid, ids, -1 - np.arange(ids.shape[1])), axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise ValueError("an algorithm returned the same id twice for one query")


def neighbor_distances(
    train: np.ndarray, queries: np.ndarray, ids: np.ndarray, distance: str
) -> np.ndarray:
    """Distances of the returned ``ids`` recomputed from the float data, the file's convention.

    ``angular``: 1 - cos; ``euclidean``: plain (not squared) L2. Padding (-1) gives inf.
    """
    rows = np.asarray(train[np.maximum(ids, 0)], dtype=np.float64)  # (q, k, d)
    q = np.asarray(queries, dtype=np.float64)[:, None, :]
    if distance == "angular":
        norms = np.linalg.norm(rows, axis=2) * np.linalg.norm(q, axis=2)
        dots = np.einsum("qkd,qkd->qk", rows, np.broadcast_to(q, rows.shape))
        cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        dist = 1.0 - cos
    elif distance == "euclidean":
        dist = np.linalg.norm(rows - q, axis=2)
    else:
        raise ValueError(f"unknown distance {distance!r}")
    dist[ids < 0] = np.inf
    return dist


def score(ds: AnnDataset, queries: np.ndarray, ids: np.ndarray, k: int) -> float:
    """Recall@k of ``ids`` for the first ``len(ids)`` test queries (ids checked first)."""
    import quiver

    check_ids(ids, ds.train.shape[0])
    if ds.distances.shape[1] < k:
        raise ValueError(f"ground truth has {ds.distances.shape[1]} neighbours, k={k}")
    dist = neighbor_distances(ds.train, queries, ids, ds.distance)
    return quiver.recall_at_k(dist, ds.distances[: len(ids)], k)


# ----------------------------------------------------------------------------- child


def time_batch(adapter: Adapter, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """One untimed warm-up call, then ``BATCH_REPEATS`` timed calls over all queries."""
    ids = adapter.batch_query(queries, k)
    seconds = []
    for _ in range(BATCH_REPEATS):
        t0 = time.perf_counter()
        ids = adapter.batch_query(queries, k)
        seconds.append(time.perf_counter() - t0)
    return np.asarray(ids, dtype=np.int64), seconds


def time_single(adapter: Adapter, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One call per query; returns the ids (nq, k) and each call's seconds."""
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    seconds = np.empty(queries.shape[0])
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        ids[i] = adapter.query(q, k)
        seconds[i] = time.perf_counter() - t0
    return ids, seconds


def build(adapter: Adapter, train: np.ndarray) -> dict[str, Any]:
    """Time ``fit`` and measure resident memory around it.

    ``index_bytes`` is the RSS growth from just before to just after ``fit`` (garbage
    collected and heap trimmed both times); ``peak_fit_bytes`` the peak RSS during ``fit``
    above the starting point, temporaries included.
    """
    gc.collect()
    trimmed = release_free_heap()
    before = rss_bytes()
    peak_reset = reset_peak_rss()
    t0 = time.perf_counter()
    adapter.fit(train)
    build_s = time.perf_counter() - t0
    peak = status_bytes("VmHWM")["VmHWM"]
    gc.collect()
    release_free_heap()
    after = rss_bytes()
    return {
        "build_s": build_s,
        "heap_trimmed": trimmed,
        "rss_before_fit_bytes": before,
        "rss_after_fit_bytes": after,
        "index_bytes": after - before,
        "peak_fit_bytes": peak - before if peak_reset else None,
        "memory_bytes": adapter.memory_bytes(),
    }


def sweep(
    adapter: Adapter,
    ds: AnnDataset,
    settings: Sequence[QuerySetting],
    k: int,
    single_queries: int | None,
    on_row: Callable[[dict[str, Any]], None],
) -> None:
    """Measure every query setting; hand each finished row to ``on_row``.

    A row records the setting's label, ``ef`` (None where the library has no single beam
    width) and ``query_args``, the arguments the library actually ran with.
    """
    test = np.ascontiguousarray(ds.test, dtype=np.float32)
    single = test if single_queries is None else test[:single_queries]
    for setting in settings:
        adapter.apply_setting(setting)
        ids, batch_s = time_batch(adapter, test, k)
        single_ids, latency = time_single(adapter, single, k)
        row = {
            "ef": setting.args.get("ef"),
            "setting": setting.label,
            "query_args": adapter.query_arguments(),
            "recall": score(ds, test, ids, k),
            "recall_single": score(ds, single, single_ids, k),
            "batch_qps": len(test) / float(np.median(batch_s)),
            "batch_seconds": batch_s,
            "single_qps": len(single) / float(latency.sum()),
            "single_queries": len(single),
            "p50_ms": float(np.percentile(latency, 50) * 1e3),
            "p99_ms": float(np.percentile(latency, 99) * 1e3),
            "mean_ms": float(latency.mean() * 1e3),
        }
        log.info(
            "%s %s recall=%.4f batch %.0f QPS, single %.0f QPS (p50 %.3f ms, p99 %.3f ms)",
            adapter.name, setting.label, row["recall"], row["batch_qps"], row["single_qps"],
            row["p50_ms"], row["p99_ms"],
        )  # fmt: skip
        on_row(row)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of one (data set, algorithm, threads) measurement process."""
    p = argparse.ArgumentParser(
        prog="python -m bench.harness.runner", description="one benchmark child"
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--algorithm", required=True, choices=sorted(ALGORITHMS))
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--ef", type=int, nargs="+", required=True)
    p.add_argument("--single-queries", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--command", default="")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s [{args.algorithm} t={args.threads}] %(message)s"
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # one line per SIMD variant tried
    import numba

    numba.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    adapter = make_adapter(args.algorithm, ds.distance, args.threads)
    jit_s = adapter.warmup()
    log.info("%d x %d train, %d queries; warm-up %.2f s", *ds.train.shape, len(ds.test), jit_s)
    train = np.ascontiguousarray(ds.train, dtype=np.float32)
    built = build(adapter, train)
    log.info("built in %.2f s, RSS +%.1f MB", built["build_s"], built["index_bytes"] / 1e6)

    common = {
        "dataset": dataset_label(args.dataset),
        "algorithm": adapter.name,
        "threads": args.threads,
        "k": args.k,
        "n_train": int(train.shape[0]),
        "n_test": int(ds.test.shape[0]),
        "dim": int(train.shape[1]),
        "distance": ds.distance,
        "jit_s": jit_s,
        **built,
        "specs": adapter.specs(),
        "versions": software_versions(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "thread_env": {var: os.environ.get(var) for var in THREAD_ENV_VARS},
        "git": git_revision(),
        "command": args.command,
        "child_command": shlex.join(
            [Path(sys.executable).name, "-m", "bench.harness.runner", *sys.argv[1:]]
        ),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    rows: list[dict[str, Any]] = []
    header = {"format": FORMAT_VERSION, "dataset": common["dataset"], "algorithm": adapter.name,
              "threads": args.threads, "k": args.k}  # fmt: skip

    def on_row(row: dict[str, Any]) -> None:
        rows.append({**common, **row})
        write_json(args.out, {**header, "complete": False, "rows": rows})

    settings = adapter.sweep_settings(args.ef, args.k)
    if not settings:
        raise SystemExit(f"no query setting to measure: every --ef is below k={args.k}")
    sweep(adapter, ds, settings, args.k, args.single_queries, on_row)
    extra = adapter.extra_stats()
    final = [{**row, **extra} for row in rows]
    write_json(args.out, {**header, "complete": True, "rows": final})
    log.info("wrote %s", args.out)
    return 0


# ----------------------------------------------------------------------------- parent


def result_path(out_dir: Path, dataset: str, algorithm: str, threads: int) -> Path:
    """Where the rows of one (data set, algorithm, threads) go."""
    return Path(out_dir) / dataset / f"{algorithm}-t{threads}.json"


def is_complete(path: Path, efs: Sequence[int], k: int) -> bool:
    """True when ``path`` holds a finished run with this ``k`` and every requested ``ef``.

    A run whose rows have no ``ef`` (an algorithm without a query-time knob, or one that sweeps
    its own query settings) is complete as is.
    """
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not payload.get("complete") or payload.get("k") != k:
        return False
    done = {row.get("ef") for row in payload.get("rows", [])}
    if done == {None}:
        return True
    return {ef for ef in efs if ef >= k} <= done


def run(
    dataset: str,
    algorithms: Sequence[str],
    threads: int,
    efs: Sequence[int] = DEFAULT_EFS,
    k: int = 10,
    out_dir: Path = DEFAULT_OUT_DIR,
    *,
    force: bool = False,
    single_queries: int | None = None,
    timeout: float | None = None,
    command: str = "",
) -> list[str]:
    """Benchmark ``algorithms`` on ``dataset``, one child process each; return those that failed.

    ``dataset`` is a name known to :mod:`bench.harness.sets` or an ``.hdf5`` path.
    """
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown:
        raise KeyError(f"unknown algorithms {unknown}; known: {sorted(ALGORITHMS)}")
    label = dataset_label(dataset)
    failed = []
    for i, algorithm in enumerate(algorithms, 1):
        out = result_path(out_dir, label, algorithm, threads)
        tag = f"[{i}/{len(algorithms)}] {label} {algorithm} threads={threads}"
        if not force and is_complete(out, efs, k):
            log.info("%s: complete in %s, skipped (--force reruns)", tag, out)
            continue
        cmd = [sys.executable, "-m", "bench.harness.runner", "--dataset", dataset,
               "--algorithm", algorithm, "--threads", str(threads), "--k", str(k),
               "--ef", *map(str, efs), "--out", str(out), "--command", command]  # fmt: skip
        if single_queries is not None:
            cmd += ["--single-queries", str(single_queries)]
        log.info("%s: running", tag)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=thread_env(threads), timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            log.error("%s: timed out after %s s", tag, timeout)
            failed.append(algorithm)
            continue
        if proc.returncode != 0:
            log.error("%s: child exited with %d", tag, proc.returncode)
            failed.append(algorithm)
        else:
            log.info("%s: done in %.0f s", tag, time.perf_counter() - t0)
    return failed


if __name__ == "__main__":
    raise SystemExit(child_main())
