"""Recall@10 and batch QPS of ``quiver.Index.search`` on the bundled slice, per ef.

    python -m bench.measure.search_timing [--threads 2] [--ef 24 48] [--repeats 9]

Builds the index once (the default parameters), then times the 1,000 test queries as one
batch ``--repeats`` times per ef and keeps the best (the least disturbed). Prints one JSON
line. Run it alternately with two checkouts' interpreters to compare them on the same machine
state. Run it from a copy of ``bench/`` outside both checkouts, so that each interpreter
imports its own checkout's quiver (``cp -r bench /tmp/t && cd /tmp/t && PYTHONPATH=.
<checkout>/.venv/bin/python -m bench.measure.search_timing``). The recall shows whether the
graphs are the same, the QPS whether the search path changed.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import quiver
from bench.harness.bundled import load_wordnet_slice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ef", type=int, nargs="+", default=[24, 48])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    data = load_wordnet_slice()
    queries, truth = data.test, data.neighbors[:, :10]
    index = quiver.Index(data.train.shape[1], num_threads=args.threads)
    index.add(data.train)
    row: dict[str, object] = {"threads": args.threads}
    for ef in args.ef:
        index.search(queries, k=10, ef=ef)  # warm
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ids = index.search(queries, k=10, ef=ef).ids
            best = min(best, time.perf_counter() - t0)
        hits = [len(set(a) & set(b)) for a, b in zip(ids, truth, strict=True)]
        recall = float(np.mean(hits)) / 10
        row[f"ef{ef}"] = {"recall": round(recall, 4), "qps": round(len(queries) / best)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
