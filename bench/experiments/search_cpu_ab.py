"""CPU time per query of ``Index.search`` on a saved index, for before/after kernel changes.

    python bench/experiments/search_cpu_ab.py [SET] [INDEX_DIR] [--ef 24 48]

Builds the set's default index once and saves it to ``INDEX_DIR`` (default: under the data
cache); later runs, from any checkout, reopen the same saved index, so two versions of the
kernels search the very same graph. Each ef is timed over the set's 1,000 queries on one
thread, best of 7, by the thread's CPU time (``time.thread_time``), which leaves out the time
other jobs held the core (a shared machine still inflates it through caches and memory
bandwidth: alternate the checkouts, as ``bench.measure.search_timing`` says). Prints one JSON
line of microseconds per query. Run it from outside both checkouts with
``PYTHONPATH=<checkout>`` so that each run imports its own ``quiver``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import quiver

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's bench/ only

from bench.experiments.saved_index import saved_default_index  # noqa: E402
from bench.harness.sets import load_dataset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-wordnet-21k-384-angular")
    p.add_argument("index_dir", nargs="?", type=Path)
    p.add_argument("--ef", type=int, nargs="+", default=[24, 48])
    args = p.parse_args()
    ds = load_dataset(args.set)
    index = saved_default_index(args.set, ds, args.index_dir)
    queries = np.ascontiguousarray(ds.test)
    out: dict[str, float | str] = {"quiver": str(Path(quiver.__file__).parents[1])}
    for ef in args.ef:
        for _ in range(2):
            index.search(queries, k=10, ef=ef, num_threads=1)
        times = []
        for _ in range(7):
            start = time.thread_time()
            index.search(queries, k=10, ef=ef, num_threads=1)
            times.append(time.thread_time() - start)
        out[f"ef{ef}_us_per_query"] = round(min(times) / len(queries) * 1e6, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
