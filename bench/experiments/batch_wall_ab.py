"""Wall-clock batch QPS of ``Index.search`` (and build time) on several threads, alone or
beside a CPU hog.

    python bench/experiments/batch_wall_ab.py [SET] [INDEX_DIR] [--ef 24 48 96]
        [--threads 2] [--rounds 7] [--hog-duty 0.5] [--build-limit 50000]

Opens the set's saved default index (``bench.experiments.saved_index``: every checkout
searches the very same graph) and times ``search`` of the set's queries with ``--threads``
threads, median of ``--rounds`` after one untimed pass per ef. With ``--hog-duty D`` a child
process busy-loops for ``D`` of every 10 ms on one core while the timings run (another tenant
of the machine, as on a shared server), and is stopped at the end. With ``--build-limit N``
it also builds an index of the first N train vectors with ``--threads`` threads,
``--build-rounds`` times (median seconds, and a hash of the graph: two checkouts whose kernels
should build the same graph must print the same one). Prints one JSON line: QPS per ef and a
checksum of the ids (two checkouts must find the same neighbours). Run it from outside both
checkouts with ``PYTHONPATH=<checkout>``, alternating, as ``search_cpu_ab.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import quiver

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's bench/ only

from bench.experiments.saved_index import saved_default_index  # noqa: E402
from bench.harness.sets import load_dataset  # noqa: E402

#: The hog: busy for ``duty`` of every 10 ms period, asleep for the rest, until killed.
HOG = """
import sys, time
busy = 0.01 * float(sys.argv[1])
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < busy:
        pass
    time.sleep(0.01 - busy)
"""


def time_build(train: np.ndarray, threads: int, rounds: int) -> dict[str, object]:
    """Median seconds of building an index of ``train`` with ``threads`` threads, and a hash
    of the last build's graph."""
    vectors = np.ascontiguousarray(train, dtype=np.float32)
    quiver.Index(vectors.shape[1], "cosine", num_threads=threads).add(vectors[:2000])  # compile
    seconds = []
    for _ in range(rounds):
        index = quiver.Index(vectors.shape[1], "cosine", num_threads=threads)
        start = time.perf_counter()
        index.add(vectors)
        seconds.append(time.perf_counter() - start)
    hot = index.hot
    graph = hashlib.sha256(hot.adjacency[: hot.count].tobytes()).hexdigest()[:12]
    return {"build_rows": len(vectors), "build_s": round(float(np.median(seconds)), 2),
            "graph_hash": graph}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-wordnet-181k-384-angular")
    p.add_argument("index_dir", nargs="?", type=Path)
    p.add_argument("--ef", type=int, nargs="+", default=[24, 48, 96])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--hog-duty", type=float, default=0.0, help="0: no hog")
    p.add_argument("--build-limit", type=int, default=0, help="0: no build")
    p.add_argument("--build-rounds", type=int, default=3)
    args = p.parse_args()
    if not 0.0 <= args.hog_duty < 1.0:
        p.error(f"--hog-duty must be in [0, 1), got {args.hog_duty}")
    ds = load_dataset(args.set)
    index = saved_default_index(args.set, ds, args.index_dir)
    queries = np.ascontiguousarray(ds.test)
    hog = None
    if args.hog_duty > 0:
        hog = subprocess.Popen([sys.executable, "-c", HOG, str(args.hog_duty)])
    out: dict[str, object] = {
        "quiver": str(Path(quiver.__file__).parents[1]),
        "threads": args.threads,
        "hog_duty": args.hog_duty,
    }
    try:
        for ef in args.ef:
            ids = index.search(queries, k=10, ef=ef, num_threads=args.threads).ids
            times = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                index.search(queries, k=10, ef=ef, num_threads=args.threads)
                times.append(time.perf_counter() - start)
            out[f"ef{ef}_qps"] = round(len(queries) / float(np.median(times)))
            out[f"ef{ef}_ids_checksum"] = int(ids.sum() % 1_000_003)
        if args.build_limit:
            out.update(time_build(ds.train[: args.build_limit], args.threads, args.build_rounds))
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
