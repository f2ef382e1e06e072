"""Recall and CPU time per query over (ef, rerank depth): is reranking fewer than ef worth it?

    python -m bench.experiments.rerank_depth [SET] [--ef 16 24 32 48 64] [--rerank 10 16 24 32]

quiver reranks all ``ef`` candidates of the beam with exact float32 distances by default. A
wider beam with a shallower rerank may reach the same recall in less time. Reopens the set's
saved default index (built and saved once, as ``search_cpu_ab`` does), then for every ef and
every rerank depth <= ef (plus rerank = ef) measures recall@10 over the set's 1,000 queries
and the CPU time per query on one thread (``time.thread_time``, best of ``--repeats``). Prints
one JSON line per setting and, per target recall, the cheapest setting that reaches it with
rerank = ef and with any depth.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.experiments.saved_index import saved_default_index
from bench.harness.runner import score
from bench.harness.sets import load_dataset

TARGETS = (0.90, 0.95, 0.99)


def cheapest(rows: list[dict], target: float, full_only: bool) -> dict | None:
    """The setting with the least CPU per query whose recall reaches ``target``."""
    ok = [r for r in rows if r["recall"] >= target and (not full_only or r["rerank"] == r["ef"])]
    return min(ok, key=lambda r: r["us_per_query"], default=None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-wordnet-181k-384-angular")
    p.add_argument("--index-dir", type=Path)
    p.add_argument("--ef", type=int, nargs="+", default=[16, 20, 24, 32, 40, 48, 64])
    p.add_argument("--rerank", type=int, nargs="+", default=[10, 12, 16, 20, 24, 32])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    ds = load_dataset(args.set)
    index = saved_default_index(args.set, ds, args.index_dir)
    queries = np.ascontiguousarray(ds.test)
    rows = []
    for ef in args.ef:
        for rerank in sorted({r for r in args.rerank if r < ef} | {ef}):
            kw = {"k": 10, "ef": ef, "rerank": rerank, "num_threads": 1}
            result = index.search(queries, **kw)  # warm-up, and the recall
            recall = score(ds, queries, result.ids, 10)
            times = []
            for _ in range(args.repeats):
                start = time.thread_time()
                index.search(queries, **kw)
                times.append(time.thread_time() - start)
            row = {
                "ef": ef,
                "rerank": rerank,
                "recall": round(float(recall), 4),
                "us_per_query": round(min(times) / len(queries) * 1e6, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    for target in TARGETS:
        full, any_depth = cheapest(rows, target, True), cheapest(rows, target, False)
        print(json.dumps({"target": target, "rerank_eq_ef": full, "any_depth": any_depth}))


if __name__ == "__main__":
    main()
