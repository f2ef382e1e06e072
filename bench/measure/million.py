"""1M-scale run: ~1.12M x 384 cosine vectors, build, save, reopen memory-mapped, search.

    python -m bench.measure.million [--threads 2] [--ef 32 64 128] [--target-cos 0.92]
    python -m bench.measure.million --step data      # only the data set and its ground truth

The set is the 561,071 train vectors of ``minilm-text-562k-384-angular`` followed by a second
copy of them with isotropic Gaussian noise, ``normalise(x + sigma * g)`` with ``g ~ N(0, I)``.
``sigma`` is chosen so that a noisy copy's expected cosine to its source is ``--target-cos``
(``sigma = sqrt((1/c^2 - 1) / D)``: 0.92 gives sigma = 0.0217, 0.75 gives 0.0450). The set is
named after it: ``minilm-text-1m-noise092-384-angular`` for 0.92. All 1,122,142 rows are kept
(no truncation). The queries are the 562k set's 1,000 test queries, and the ground truth is their
exact top-100 (``quiver.exact_search``), computed in blocks of base rows that are cached one
by one, so an interrupted run resumes where it stopped. Everything lives in
``<data dir>/<set name>/`` (``~/.cache/quiver/datasets``, outside git).

Steps, each in a fresh subprocess so that peak RSS is per step:

1. ``data``: the vectors (``train.npy``), queries, ground truth and a few facts about the noisy
   copies (their cosine to the source; how often a source's nearest neighbour is its copy).
2. ``build``: ``quiver.Index`` with default parameters, ``num_threads`` threads, from the
   memory-mapped ``train.npy``; build seconds and peak RSS (``VmHWM``); the index is saved to
   ``<set dir>/index``.
3. ``search``: the float file's pages are evicted from the page cache, the index is reopened
   with ``Index.open`` (floats memory-mapped) and the RSS growth on open is compared with the
   float file's size; then, per ef, recall@10, code distances per query and batch QPS (median
   of ``--repeats`` timed passes after one untimed pass, all queries in one call).

Writes one JSON row per step (and per ef) to ``--out``, each with the load average at its start
and end (``os.getloadavg``), since other jobs may share the cores. The process CPU time is
recorded beside the wall time (``build_cpu_s``; ``queries_per_cpu_second``, all threads
together), as a figure that other jobs on the machine inflate far less.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness.datasets import data_dir

log = logging.getLogger("bench.measure.million")

NAME = "minilm-text-1m-noise{cos:03d}-384-angular"  # cos = 100 x the target cosine
SOURCE = "minilm-text-562k-384-angular"
K_TRUTH = 100
BASE_BLOCK = 131_072  # rows per cached ground-truth block
NOISE_CHUNK = 65_536  # rows per noise chunk (bounds the temporary memory)
STEPS = ("data", "build", "search")


def set_name(target_cos: float) -> str:
    """Name of the set made with ``target_cos``, e.g. ``minilm-text-1m-noise092-384-angular``."""
    return NAME.format(cos=round(100 * target_cos))


def set_dir(target_cos: float) -> Path:
    """Folder of the set: ``<data dir>/<set_name(target_cos)>``."""
    path = data_dir() / set_name(target_cos)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sigma_for_cosine(target_cos: float, dim: int) -> float:
    """Noise scale whose expected cosine between ``x`` (unit) and ``x + sigma g`` is ``target_cos``.

    ``|x + sigma g|^2 ~ 1 + D sigma^2`` and ``x . (x + sigma g) ~ 1``, so
    ``cos ~ 1 / sqrt(1 + D sigma^2)``.
    """
    return float(np.sqrt((1.0 / target_cos**2 - 1.0) / dim))


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32)


# --------------------------------------------------------------------------- data


def _write_vectors(directory: Path, sigma: float, seed: int) -> dict[str, Any]:
    """Write ``train.npy`` (sources then noisy copies) and ``test.npy``; return facts."""
    from bench.harness.datasets import get_dataset

    source = get_dataset(SOURCE)
    n, dim = source.train.shape
    tmp = directory / "train.npy.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(2 * n, dim))
    rng = np.random.default_rng(seed)
    cosines = np.empty(n, dtype=np.float32)
    for start in range(0, n, NOISE_CHUNK):
        x = _unit(source.train[start : start + NOISE_CHUNK])
        noisy = _unit(x + sigma * rng.standard_normal(x.shape, dtype=np.float32))
        out[start : start + len(x)] = x
        out[n + start : n + start + len(x)] = noisy
        cosines[start : start + len(x)] = np.einsum("ij,ij->i", x, noisy)
    out.flush()
    del out
    tmp.replace(directory / "train.npy")
    np.save(directory / "test.npy", _unit(source.test))
    return {
        "n_source": int(n),
        "n": int(2 * n),
        "dim": int(dim),
        "copy_cosine_mean": round(float(cosines.mean()), 4),
        "copy_cosine_p1_p99": [round(float(v), 4) for v in np.percentile(cosines, [1, 99])],
    }


def _top_k_block(base: np.ndarray, queries: np.ndarray, start: int, k: int) -> tuple:
    from quiver import exact_search

    ids, dists = exact_search(np.ascontiguousarray(base), queries, k, "cosine")
    return np.where(ids >= 0, ids + start, -1), dists


def _ground_truth(directory: Path, train: np.ndarray, queries: np.ndarray) -> None:
    """Exact top-``K_TRUTH`` of every query, one cached block of base rows at a time."""
    parts = directory / "truth-blocks"
    parts.mkdir(exist_ok=True)
    all_ids, all_dists = [], []
    for start in range(0, train.shape[0], BASE_BLOCK):
        part = parts / f"rows-{start:09d}-k{K_TRUTH}.npz"
        if not part.is_file():
            t0 = time.perf_counter()
            ids, dists = _top_k_block(train[start : start + BASE_BLOCK], queries, start, K_TRUTH)
            tmp = part.with_name(part.stem + ".tmp.npz")
            np.savez(tmp, ids=ids, dists=dists)
            tmp.replace(part)
            log.info("truth block at row %d: %.1f s", start, time.perf_counter() - t0)
        with np.load(part) as z:
            all_ids.append(z["ids"])
            all_dists.append(z["dists"])
    ids = np.concatenate(all_ids, axis=1)
    dists = np.concatenate(all_dists, axis=1)
    order = np.lexsort((ids, dists), axis=1)[:, :K_TRUTH]
    np.save(directory / "neighbors.npy", np.take_along_axis(ids, order, axis=1))
    np.save(directory / "distances.npy", np.take_along_axis(dists, order, axis=1))


def _copy_is_nearest(train: np.ndarray, n_source: int, sample: int, seed: int) -> float:
    """Share of sampled source rows whose nearest other row is their own noisy copy."""
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(n_source, size=sample, replace=False))
    best_id = np.full(sample, -1, dtype=np.int64)
    best_d = np.full(sample, np.inf)
    queries = np.ascontiguousarray(train[rows])
    for start in range(0, train.shape[0], BASE_BLOCK):
        ids, dists = _top_k_block(train[start : start + BASE_BLOCK], queries, start, 2)
        for j in range(2):  # skip the row itself
            keep = (ids[:, j] != rows) & (dists[:, j] < best_d)
            best_d[keep] = dists[keep, j]
            best_id[keep] = ids[keep, j]
    return float(np.mean(best_id == rows + n_source))


def step_data(args: argparse.Namespace) -> dict[str, Any]:
    """Build (or reuse) the vectors and the ground truth; return the data set's facts."""
    directory = set_dir(args.target_cos)
    facts_file = directory / "facts.json"
    sigma = sigma_for_cosine(args.target_cos, 384)
    facts: dict[str, Any] = {}
    if facts_file.is_file():
        facts = json.loads(facts_file.read_text())
        if facts.get("sigma") != round(sigma, 6) or facts.get("seed") != args.seed:
            raise SystemExit(
                f"{directory} holds a set made with sigma {facts.get('sigma')}, seed "
                f"{facts.get('seed')}; remove the folder to rebuild with sigma {sigma:.6f}"
            )
    t0 = time.perf_counter()
    if not (directory / "train.npy").is_file():
        facts = {"sigma": round(sigma, 6), "seed": args.seed, "target_cos": args.target_cos}
        facts.update(_write_vectors(directory, sigma, args.seed))
        facts_file.write_text(json.dumps(facts, indent=2))
    train = np.load(directory / "train.npy", mmap_mode="r")
    queries = np.load(directory / "test.npy")
    if not (directory / "distances.npy").is_file():
        _ground_truth(directory, train, queries)
    if "copy_is_nearest_neighbour" not in facts:
        facts["copy_is_nearest_neighbour"] = round(
            _copy_is_nearest(train, facts["n_source"], 1000, args.seed), 4
        )
        top10 = np.load(directory / "neighbors.npy")[:, :10]
        facts["noisy_share_of_true_top10"] = round(float(np.mean(top10 >= facts["n_source"])), 4)
        facts_file.write_text(json.dumps(facts, indent=2))
    return {"data_seconds_this_run": round(time.perf_counter() - t0, 1), **facts}


# --------------------------------------------------------------------------- build


def step_build(args: argparse.Namespace) -> dict[str, Any]:
    """Build the index from the memory-mapped vectors, save it; report time and peak RSS."""
    import numba

    import quiver
    from bench.harness.memory import rss_breakdown, status_bytes

    numba.set_num_threads(args.threads)
    quiver.warmup()
    directory = set_dir(args.target_cos)
    train = np.load(directory / "train.npy", mmap_mode="r")
    before = rss_breakdown()
    c0 = time.process_time()
    t0 = time.perf_counter()
    index = quiver.Index(train.shape[1], "cosine", num_threads=args.threads)
    index.add(train)
    build_s = time.perf_counter() - t0
    build_cpu_s = time.process_time() - c0
    peak = status_bytes("VmHWM")["VmHWM"]
    after = rss_breakdown()
    t0 = time.perf_counter()
    index.save(directory / "index")
    save_s = time.perf_counter() - t0
    stats = index.stats()
    return {
        "n": len(index),
        "threads": args.threads,
        "params": {k: stats[k] for k in ("max_degree", "build_list_size", "alpha", "seed")},
        "build_s": round(build_s, 1),
        "build_cpu_s": round(build_cpu_s, 1),
        "graph_build_s": stats["build_seconds"],
        "save_s": round(save_s, 1),
        "rss_before_build_mb": round(before["total"] / 1e6),
        "peak_rss_mb": round(peak / 1e6),
        "rss_after_build_mb": {k: round(v / 1e6) for k, v in after.items()},
        "hot_mb": round(stats["hot_bytes"] / 1e6, 1),
        "float_mb": round(stats["cold_bytes"] / 1e6, 1),
        "mean_degree": round(stats["mean_degree"], 1),
    }


# --------------------------------------------------------------------------- search


def _evict(paths: list[Path]) -> None:
    """Drop the page-cache pages of ``paths`` (not mapped by this process)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def step_search(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Reopen the saved index memory-mapped; RSS on open, then recall and QPS per ef."""
    import numba

    import quiver
    from bench.harness.memory import mapped_file_rss, rss_breakdown

    numba.set_num_threads(args.threads)
    quiver.warmup()
    directory = set_dir(args.target_cos)
    queries = np.load(directory / "test.npy")
    truth = np.load(directory / "distances.npy")
    segments = sorted((directory / "index").glob("vectors-*.arrow"))
    _evict(segments)
    mb = 1e6
    before = rss_breakdown()
    index = quiver.Index.open(directory / "index", num_threads=args.threads)
    after = rss_breakdown()
    stats = index.stats()
    open_row: dict[str, Any] = {
        "step": "open",
        "n": len(index),
        "float_file_mb": round(sum(p.stat().st_size for p in segments) / mb, 1),
        "hot_mb": round(stats["hot_bytes"] / mb, 1),
        "anon_rss_growth_on_open_mb": round((after["anon"] - before["anon"]) / mb, 1),
        "file_rss_growth_on_open_mb": round((after["file"] - before["file"]) / mb, 1),
        "float_file_resident_after_open_mb": round(mapped_file_rss("/vectors-") / mb, 1),
    }
    t0 = time.perf_counter()
    _, dists = index.search(queries, k=10, ef=args.ef[0])
    open_row["first_pass_after_eviction_qps"] = round(len(queries) / (time.perf_counter() - t0))
    open_row["first_pass_ef"] = args.ef[0]
    resident = mapped_file_rss("/vectors-")
    open_row["float_file_resident_after_first_pass_mb"] = round(resident / mb, 1)
    rows = [open_row]
    for ef in args.ef:
        load_start = load_average()
        index.search(queries, k=10, ef=ef)  # untimed: pages and caches warm
        times, cpu = [], []
        for _ in range(args.repeats):
            c0 = time.process_time()
            t0 = time.perf_counter()
            _, dists = index.search(queries, k=10, ef=ef)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        rows.append(
            {
                "step": "search",
                "ef": ef,
                "threads": args.threads,
                "recall_at_10": round(quiver.recall_at_k(dists, truth, 10), 4),
                "qps": round(len(queries) / float(np.median(times))),
                "qps_all_passes": [round(len(queries) / t) for t in times],
                "queries_per_cpu_second": round(len(queries) / float(np.median(cpu))),
                "code_distances_per_query": round(
                    index.search_stats(queries, k=10, ef=ef)["mean_distances"]
                ),
                "anon_rss_mb": round(rss_breakdown()["anon"] / mb),
                "float_file_resident_mb": round(mapped_file_rss("/vectors-") / mb, 1),
                "loadavg_start": load_start,
                "loadavg_end": load_average(),
            }
        )
    return rows


# --------------------------------------------------------------------------- driver


def _run_child(step: str, argv: list[str]) -> list[dict[str, Any]]:
    """Run one step in a fresh interpreter; return the JSON rows it printed."""
    cmd = [sys.executable, "-m", "bench.measure.million", "--step", step, *argv]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _child_argv(args: argparse.Namespace) -> list[str]:
    return [
        "--threads", str(args.threads), "--ef", *map(str, args.ef),
        "--target-cos", str(args.target_cos), "--seed", str(args.seed),
        "--repeats", str(args.repeats),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", choices=("all", *STEPS), default="all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--target-cos", type=float, default=0.92)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/million.jsonl"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.step != "all":
        load_start = load_average()
        result = {"data": step_data, "build": step_build, "search": step_search}[args.step](args)
        for row in result if isinstance(result, list) else [result]:
            row.setdefault("step", args.step)
            row.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%S"))
            row.setdefault("loadavg_start", load_start)
            row.setdefault("loadavg_end", load_average())
            print(json.dumps(row), flush=True)
        return
    name = set_name(args.target_cos)
    command = ("python -m bench.measure.million " + " ".join(sys.argv[1:])).strip()
    rows = []
    for step in STEPS:
        for row in _run_child(step, _child_argv(args)):
            row = {"set": name, **row, "command": command}
            log.info("%s", json.dumps(row))
            rows.append(row)
    kept = []  # rows of the other noise levels stay in the file
    if args.out.is_file():
        kept = [r for r in map(json.loads, args.out.read_text().splitlines()) if r["set"] != name]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in kept + rows))


if __name__ == "__main__":
    main()
