"""Query throughput with the float vectors warm in the page cache and evicted from it.

    python -m bench.measure.rerank_cache minilm-wordnet-181k-384-angular \
        [--ef 32 64 128] [--threads 2]

The float32 vectors are read only by the rerank, through a memory map of the Arrow segment
files. This builds an index, saves it, and for each ef measures batch QPS (all queries in one
call) twice: warm, after one untimed pass, and cold, after evicting the segment files' pages
with ``posix_fadvise(DONTNEED)``. The index is closed and reopened around each eviction,
because mapped pages cannot be dropped. Prints one JSON row per ef. Linux only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import quiver
from bench.harness.memory import mapped_file_rss
from bench.harness.sets import load_dataset


def evict(paths: list[Path]) -> None:
    """Drop the page-cache pages of ``paths`` (they must not be mapped by anyone)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed_search(index: quiver.Index, queries: np.ndarray, ef: int, truth: np.ndarray) -> tuple:
    t0 = time.perf_counter()
    _, dists = index.search(queries, k=10, ef=ef)
    seconds = time.perf_counter() - t0
    return len(queries) / seconds, quiver.recall_at_k(dists, truth, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = load_dataset(args.dataset)
    metric = "cosine" if data.distance == "angular" else "l2"
    quiver.warmup()
    with tempfile.TemporaryDirectory(prefix="quiver-rerank-", dir=os.environ.get("TMPDIR")) as tmp:
        built = quiver.Index(data.train.shape[1], metric, num_threads=args.threads)
        built.add(data.train)
        built.save(tmp)
        del built
        segments = sorted(Path(tmp).glob("vectors-*.arrow"))
        for ef in args.ef:
            warm, cold, resident = [], [], []
            for _ in range(args.repeats):
                gc.collect()
                evict(segments)
                index = quiver.Index.open(tmp, num_threads=args.threads)
                cold.append(timed_search(index, data.test, ef, data.distances))
                resident.append(mapped_file_rss("/vectors-"))
                warm.append(timed_search(index, data.test, ef, data.distances))
                del index
            row = {
                "dataset": args.dataset,
                "threads": args.threads,
                "ef": ef,
                "recall": round(cold[0][1], 4),
                "qps_warm": round(float(np.median([w[0] for w in warm]))),
                "qps_cold": round(float(np.median([c[0] for c in cold]))),
                "float_file_mb": round(sum(p.stat().st_size for p in segments) / 1e6, 1),
                "resident_after_cold_pass_mb": round(float(np.median(resident)) / 1e6, 1),
                "command": "python -m bench.measure.rerank_cache " + " ".join(sys.argv[1:]),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
