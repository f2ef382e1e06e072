"""Recall under repeated churn: delete 10 %, re-insert, consolidate, many times over.

A graph that is repaired after every delete may drift from what a fresh build would give.
This measures it on the index API: build the set, then for each cycle delete a random 10 % of
the live points, insert those same vectors again under new ids (so the live data stays the
same set of vectors and the exact top-10 stays comparable), and consolidate. Recall@10 at
ef=64 is taken before and after each consolidation and compared with a fresh build of the
same vectors in the same run.

    python -m bench.measure.churn [--set minilm-wordnet-181k-384-angular] [--cycles 10]
    # writes bench/results/churn.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="minilm-wordnet-181k-384-angular")
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--share", type=float, default=0.1, help="share deleted per cycle")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--out", default="bench/results/churn.json")
    args = ap.parse_args()

    import quiver
    from bench.harness.datasets import get_dataset
    from quiver import exact_search, recall_at_k

    data = get_dataset(args.set)
    x, q = data.train, data.test
    n = x.shape[0]
    _, gt = exact_search(x, q, 10, "cosine")  # the live vectors are always all of x
    rng = np.random.default_rng(0)
    quiver.warmup()

    def recall(index: quiver.Index) -> float:
        return round(float(recall_at_k(index.search(q, 10, args.ef).distances, gt, 10)), 4)

    t0 = time.perf_counter()
    fresh = quiver.Index(x.shape[1], "cosine", num_threads=args.threads)
    fresh.add(x)
    build_s = time.perf_counter() - t0
    fresh_recall = recall(fresh)
    print(f"fresh build: recall {fresh_recall} in {build_s:.1f} s", flush=True)

    index = quiver.Index(x.shape[1], "cosine", num_threads=args.threads)
    index.add(x)
    source = np.arange(n)  # label -> row of x
    labels = np.arange(n)  # live labels
    cycles = []
    for cycle in range(1, args.cycles + 1):
        gone = rng.choice(labels, size=int(args.share * n), replace=False)
        index.delete(gone)
        new = np.arange(source.shape[0], source.shape[0] + gone.shape[0])
        source = np.concatenate([source, source[gone]])
        t = time.perf_counter()
        index.add(x[source[new]], ids=new)
        insert_s = time.perf_counter() - t
        labels = np.concatenate([np.setdiff1d(labels, gone), new])
        before = recall(index)
        t = time.perf_counter()
        result = index.consolidate()
        row = {
            "cycle": cycle,
            "recall_before_consolidation": before,
            "recall_after_consolidation": recall(index),
            "insert_s": round(insert_s, 2),
            "consolidate_s": round(time.perf_counter() - t, 2),
            "rows_repaired": int(result.repaired),
            "rows_removed": int(result.removed),
        }
        cycles.append(row)
        print(row, flush=True)
    out = {
        "command": "python -m bench.measure.churn " + " ".join(sys.argv[1:]),
        "set": args.set,
        "n": n,
        "threads": args.threads,
        "ef": args.ef,
        "share_per_cycle": args.share,
        "fresh_build_recall": fresh_recall,
        "fresh_build_s": round(build_s, 1),
        "cycles": cycles,
        "loadavg": os.getloadavg(),
    }
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
