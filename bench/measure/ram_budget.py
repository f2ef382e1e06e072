"""Search when the float vectors do not fit in RAM: a memory limit around the search process.

    sudo python -m bench.measure.ram_budget --set minilm-text-1m-noise092-384-angular \\
        [--share 0.25] [--ef 32 64 128] [--modes advised mapped] [--out FILE]

The regime quiver's design exists for: the hot set (codes + graph) stays in memory while the
float32 vectors live in files and only the rerank reads them. Each measurement runs in a fresh
child process placed in its own memory cgroup (v2 ``memory.max``, or v1
``memory.limit_in_bytes``, which both count the page cache), so that the kernel keeps at most
the allowed share of the float file in the page cache and the rerank reads the rest from disk.
Each child opens its index, loads the queries and runs two queries (every kernel loaded), drops
the float file's cached pages, then caps its own cgroup at its anonymous memory at that moment
(the interpreter's heap, JIT code, the hot set, the queries) + 48 MB for library code +
``--share`` x the float file: the process keeps what it holds and may cache only about that
share of the float vectors (quiver's "hot + 25 % of the floats"). The page-cache pages of the index
files are dropped (``POSIX_FADV_DONTNEED``) before each child starts.

Per mode (``float_access`` of ``Index.open``: ``advised`` reads each group's rerank rows ahead,
``mapped`` faults them in one by one) and per ef, after one untimed pass over the queries:
recall@10, batch QPS (median of ``--repeats`` passes, ``--threads`` threads), single-query
latency p50/p99 (``--single`` queries, one thread), and the bytes the process read from storage
(``/proc/self/io`` ``read_bytes``) and its major page faults per query. The same is measured
without a limit (``mapped``, pages warm) as the reference, and the ratio limited / unlimited is
reported. Needs root and a writable cgroup memory controller; exits with a message otherwise.

``--modes diskann-disk`` measures DiskANN's disk index (the harness adapter
``diskann-disk-R64-L128``: PQ codes in RAM, graph and vectors read from its file by its own
I/O) the same way: built once without a limit into ``<set dir>/diskann-disk``, then searched
without and with a limit set by the same rule (its own usage once loaded + the same share of
quiver's float file); its recall comes from the exact distances of the ids it
returns. Other peers keep their vectors in RAM and are not run under the limit.

Sets: any harness set (``python -m bench list``; its default index is built once and saved
under ``<data dir>/ram-budget-index/<set>``) or the 1.12M set of ``bench.measure.million``
(its saved ``index/``). Writes one JSON row per (mode, ef) to ``--out`` with the command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness.datasets import data_dir
from bench.measure.million import _evict, load_average

CGROUP_V1 = Path("/sys/fs/cgroup/memory")
CGROUP_V2 = Path("/sys/fs/cgroup")
MB = 1e6
UNLIMITED = 1 << 40  # a cgroup "limit" that never binds (the child sets its own)
CODE_PAGES = 48 * 1024 * 1024  # room for the library code pages a search touches
BUILD_TIMEOUT = 3600  # seconds for building a peer's index (not a measurement)


# --------------------------------------------------------------------------- data


def _paths(set_name: str) -> tuple[Path, Path, Path, Path]:
    """(index dir, queries .npy, ground-truth distances .npy, set dir) of a set, built once."""
    if set_name.startswith("minilm-text-1m"):
        directory = data_dir() / set_name
        return directory / "index", directory / "test.npy", directory / "distances.npy", directory
    directory = data_dir() / "ram-budget-index" / set_name
    index_dir = directory / "index"
    if not (index_dir / "manifest.json").is_file() or not (directory / "test.npy").is_file():
        import quiver
        from bench.harness.sets import load_dataset

        ds = load_dataset(set_name)
        directory.mkdir(parents=True, exist_ok=True)
        index = quiver.Index(ds.train.shape[1], "cosine", num_threads=2)
        index.add(ds.train)
        index.save(index_dir)
        np.save(directory / "test.npy", np.ascontiguousarray(ds.test))
        np.save(directory / "distances.npy", np.ascontiguousarray(ds.distances))
        np.save(directory / "train.npy", np.ascontiguousarray(ds.train))  # for peers
    if not (directory / "train.npy").is_file():  # a set dir made before peers were measured
        from bench.harness.sets import load_dataset

        np.save(directory / "train.npy", np.ascontiguousarray(load_dataset(set_name).train))
    return index_dir, directory / "test.npy", directory / "distances.npy", directory


# --------------------------------------------------------------------------- cgroups


def _cgroup_root() -> tuple[Path, str, str]:
    """(parent folder, limit file, usage file) of a writable memory controller."""
    if (CGROUP_V1 / "memory.limit_in_bytes").is_file():
        return CGROUP_V1, "memory.limit_in_bytes", "memory.max_usage_in_bytes"
    if (CGROUP_V2 / "cgroup.controllers").is_file() and "memory" in (
        CGROUP_V2 / "cgroup.subtree_control"
    ).read_text():
        return CGROUP_V2, "memory.max", "memory.peak"
    raise SystemExit("no writable memory cgroup controller (v1 or v2) here: run as root on Linux")


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[Path]:
    """A fresh memory cgroup limited to ``limit`` bytes; removed on exit."""
    root, limit_file, _ = _cgroup_root()
    path = root / f"quiver-ram-budget-{os.getpid()}"
    try:
        path.mkdir()
        (path / limit_file).write_text(str(limit))
    except OSError as exc:
        raise SystemExit(f"cannot create a memory cgroup under {root}: {exc}") from exc
    try:
        yield path
    finally:
        for _ in range(50):  # the child has exited; the kernel frees the group shortly after
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)


# --------------------------------------------------------------------------- child


def _read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return 0


def _major_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


def child(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Open the index with ``--mode`` and measure every ef (runs inside the cgroup)."""
    import numba

    import quiver

    numba.set_num_threads(args.threads)
    quiver.warmup()
    index_dir, queries_file, truth_file, set_dir = _paths(args.set)
    queries = np.load(queries_file)
    truth = np.load(truth_file)
    if args.mode == PEER:
        return _peer_child(args, set_dir, queries, truth)
    index = quiver.Index.open(index_dir, num_threads=args.threads, float_access=args.mode)
    index.search(queries[:2], k=10, ef=16)  # every kernel loaded before the usage is read
    limit = _limit_self(args, index_dir)
    rows = []
    for ef, rerank in args.ef:
        row = _measure(
            args,
            queries,
            truth,
            lambda e=ef, r=rerank: index.search(queries, k=10, ef=e, rerank=r).distances,
            lambda q, e=ef, r=rerank: index.search(q, k=10, ef=e, rerank=r, num_threads=1),
        )
        row = {
            "mode": args.mode,
            "memory_limit_mb": None if limit is None else round(limit / MB, 1),
            "reads_ahead": index.reads_ahead,
            "ef": ef,
            "rerank": rerank or ef,
            "threads": args.threads,
            **row,
        }
        print(json.dumps(row), flush=True)  # a timed-out child keeps what it measured
        rows.append(row)
    return rows


def _measure(args, queries: np.ndarray, truth: np.ndarray, batch, single) -> dict[str, Any]:
    """One setting: an untimed pass (the page cache reaches its steady state), ``repeats``
    timed passes of ``batch()`` (which returns the result distances), then ``single(q)`` on
    the first ``args.single`` queries; recall, QPS, latency, storage reads and major faults."""
    import quiver

    load_start = load_average()
    batch()
    read0, faults0 = _read_bytes(), _major_faults()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        dists = batch()
        times.append(time.perf_counter() - t0)
    read1, faults1 = _read_bytes(), _major_faults()
    latencies = []
    for q in queries[: args.single]:
        t0 = time.perf_counter()
        single(q)
        latencies.append(time.perf_counter() - t0)
    batch_queries = args.repeats * len(queries)
    return {
        "recall_at_10": round(quiver.recall_at_k(dists, truth, 10), 4),
        "qps": round(len(queries) / float(np.median(times))),
        "qps_all_passes": [round(len(queries) / t) for t in times],
        "single_p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 3),
        "single_p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 3),
        "read_kb_per_query": round((read1 - read0) / batch_queries / 1e3, 2),
        "major_faults_per_query": round((faults1 - faults0) / batch_queries, 2),
        "loadavg_start": load_start,
        "loadavg_end": load_average(),
    }


def _float_files(index_dir: Path) -> list[Path]:
    manifest = json.loads((index_dir / "manifest.json").read_text())
    return [index_dir / s["file"] for s in manifest["segments"]]


def _limit_self(args: argparse.Namespace, index_dir: Path) -> int | None:
    """In a limited child (``--cgroup``): drop the float file's cached pages, then cap this
    process's own cgroup at its anonymous memory (the interpreter's heap, JIT code, the opened
    index's hot set, the queries) + :data:`CODE_PAGES` + ``share`` x the float file."""
    if not args.cgroup:
        return None
    from bench.harness.memory import rss_breakdown

    _, limit_file, _ = _cgroup_root()
    _evict(_float_files(index_dir))
    # the process's anonymous memory (heap, hot set, JIT code) plus CODE_PAGES for the library
    # code it runs: counting every mapped library page (~150 MB, mostly cold) let the kernel
    # evict them and cache nearly all the floats instead (no reads at share 0.25 on 181k)
    floats = sum(f.stat().st_size for f in _float_files(index_dir))
    limit = int(rss_breakdown()["anon"] + CODE_PAGES + args.share * floats)
    (Path(args.cgroup) / limit_file).write_text(str(limit))
    return limit


PEER = "diskann-disk"  # the --modes name of DiskANN's disk index
PEER_ALGORITHM = "diskann-disk-R64-L128"  # its harness adapter (same build parameters)


def _peer_child(args, set_dir: Path, queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    """DiskANN's disk index: built once without a limit (``--build``) into ``<set
    dir>/diskann-disk``, then opened and searched like quiver (its own I/O reads the disk file;
    only PQ codes stay in RAM). Recall from the exact distances of the ids it returns."""
    from bench.harness.adapters import make_adapter

    adapter = make_adapter(PEER_ALGORITHM, "angular", args.threads)
    folder = set_dir / PEER
    train = np.load(set_dir / "train.npy", mmap_mode="r")
    if args.build:
        if not folder.is_dir():
            staging = set_dir / f"{PEER}.partial"
            shutil.rmtree(staging, ignore_errors=True)  # a build cut short
            staging.mkdir(parents=True)
            adapter.build(np.asarray(train), str(staging))
            staging.rename(folder)
        return []
    adapter.open(str(folder))
    adapter.set_query_arguments(args.ef[0][0])
    adapter.batch_query(queries[:2], 10)  # its search contexts allocated before the usage
    limit = _limit_self(args, set_dir / "index")
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)

    def distances(ids: np.ndarray) -> np.ndarray:
        rows = np.asarray(train[np.clip(ids, 0, None).reshape(-1)]).reshape(*ids.shape, -1)
        rows = rows / np.linalg.norm(rows, axis=2, keepdims=True)
        d = 1.0 - np.einsum("qkd,qd->qk", rows, unit)
        return np.where(ids >= 0, d, np.inf).astype(np.float32)

    rows = []
    for ef, _ in args.ef:
        adapter.set_query_arguments(ef)
        row = _measure(
            args,
            queries,
            truth,
            lambda: distances(adapter.batch_query(queries, 10)),
            lambda q: adapter.query(q, 10),
        )
        row = {
            "mode": PEER,
            "memory_limit_mb": None if limit is None else round(limit / MB, 1),
            "algorithm": PEER_ALGORITHM,
            "ef": ef,
            "rerank": None,
            "threads": args.threads,
            **row,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- driver


def _ef_rerank(text: str) -> tuple[int, int | None]:
    """``"64"`` -> (64, None); ``"64:16"`` -> (64, 16)."""
    ef, _, rerank = text.partition(":")
    return int(ef), int(rerank) if rerank else None


def _ef_text(pair: tuple[int, int | None]) -> str:
    return f"{pair[0]}:{pair[1]}" if pair[1] else str(pair[0])


def _bounded(cmd: list[str], timeout: float, preexec=None) -> subprocess.CompletedProcess:
    """Run ``cmd``; kill it after ``timeout`` seconds and keep what it printed (rc -9)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=preexec)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


def _run_child(args: argparse.Namespace, mode: str, limit: int | None, build: bool = False):
    index_dir, _, _, _ = _paths(args.set)
    _evict(sorted(index_dir.glob("*")))
    cmd = [
        sys.executable, "-m", "bench.measure.ram_budget", "--child", "--set", args.set,
        "--mode", mode, "--threads", str(args.threads), "--repeats", str(args.repeats),
        "--single", str(args.single), "--ef", *map(_ef_text, args.ef),
    ] + (["--build"] if build else [])  # fmt: skip
    if limit is None:
        proc = _bounded(cmd, max(args.timeout, BUILD_TIMEOUT) if build else args.timeout)
        peak = None
    else:
        with memory_cgroup(limit) as group:
            cmd += ["--cgroup", str(group), "--share", str(args.share)]
            _, _, usage_file = _cgroup_root()
            procs = str(group / "cgroup.procs")

            def enter() -> None:  # in the child, before exec: join the group
                with open(procs, "w") as fh:
                    fh.write(str(os.getpid()))

            proc = _bounded(cmd, args.timeout, enter)
            peak_file = group / usage_file
            peak = int(peak_file.read_text()) if peak_file.is_file() else None
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        done = {(r.get("ef"), r.get("rerank")) for r in rows}
        for ef, rerank in args.ef:
            if (ef, rerank or ef) not in done:  # the pairs it never finished
                rows.append(
                    {"mode": mode, "ef": ef, "rerank": rerank or ef, "failed": True,
                     "returncode": proc.returncode, "timeout_s": args.timeout}
                )  # fmt: skip
    for row in rows:
        row.setdefault("memory_limit_mb", None)
        row["cgroup_peak_mb"] = None if peak is None else round(peak / MB, 1)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", default="minilm-text-1m-noise092-384-angular")
    p.add_argument("--share", type=float, default=0.25, help="share of the float file allowed")
    p.add_argument(
        "--ef",
        type=_ef_rerank,
        nargs="+",
        default=[(32, None), (64, None), (128, None)],
        help="ef, or ef:rerank to rerank fewer than ef candidates (each rerank row is a read)",
    )
    p.add_argument("--modes", nargs="+", default=["advised", "mapped"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--single", type=int, default=300, help="single queries timed per ef")
    p.add_argument("--timeout", type=float, default=600, help="seconds per child (mode)")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cgroup", help=argparse.SUPPRESS)
    p.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="mapped", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)  # prints its rows as it measures them
        return
    _cgroup_root()  # fail early without a controller
    index_dir, _, _, _ = _paths(args.set)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    floats = sum((index_dir / s["file"]).stat().st_size for s in manifest["segments"])
    import quiver

    hot = quiver.Index.open(index_dir, float_access="mapped").stats()["hot_bytes"]
    limit = UNLIMITED  # each limited child caps its own group once loaded (_limit_self)
    facts = {
        "set": args.set,
        "share": args.share,
        "float_file_mb": round(floats / MB, 1),
        "hot_mb": round(hot / MB, 1),
        "command": "python -m bench.measure.ram_budget " + " ".join(argv or sys.argv[1:]),
    }
    rows = [{**row, "limited": False} for row in _run_child(args, "mapped", None)]
    for mode in args.modes:
        if mode == PEER:  # built without a limit, then measured without and with it
            _run_child(args, mode, None, build=True)
            rows += [{**row, "limited": False} for row in _run_child(args, mode, None)]
        rows += [{**row, "limited": True} for row in _run_child(args, mode, limit)]
    unlimited = {
        (r["mode"] == PEER, r["ef"], r["rerank"]): r["qps"]
        for r in rows
        if not r["limited"] and "qps" in r
    }
    for row in rows:
        row.update(facts)
        pair = (row.get("mode") == PEER, row.get("ef"), row.get("rerank"))
        if row["limited"] and "qps" in row and pair in unlimited:
            row["qps_vs_unlimited"] = round(row["qps"] / unlimited[pair], 3)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(line + "\n")


if __name__ == "__main__":
    main()
