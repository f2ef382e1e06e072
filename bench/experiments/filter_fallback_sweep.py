"""Sweep of the filtered search's scan-fallback threshold (``search.LOCAL_SELECTIVITY``).

The threshold is a compile-time constant of the kernels, so each value is one run: set the
constant, clear the Numba cache (``find quiver -name __pycache__ -prune -exec rm -rf {} +``),
then run this script with the value as its label. The MiniLM-WordNet-181k index is built once
and cached under ``--cache``. Prints recall@10 and the batch QPS ratio to unfiltered search
(medians of 3) for two correlated filters and one random 10 % filter, ef=72 as a collection's
default search uses (64 + 8 spare results).

    python -m bench.experiments.filter_fallback_sweep 0.5
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from quiver.engine.state import SearchPlan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("label", help="the LOCAL_SELECTIVITY value the kernels were compiled with")
    ap.add_argument("--cache", default="/tmp/quiver-idx181")
    args = ap.parse_args()

    import quiver
    from bench.measure.filtered_search import load
    from quiver import exact_search, recall_at_k

    data, pos, lexfile = load("minilm-wordnet-181k-384-angular")
    x, q = data.train, data.test
    if not os.path.exists(os.path.join(args.cache, "manifest.json")):
        index = quiver.Index(384, "cosine")
        index.add(x)
        index.save(args.cache)
    index = quiver.Index.open(args.cache)
    state = index.state()
    prepared = index.prepare_queries(q.copy())
    index.search(q[:10], 10, 64)

    def median_seconds(fn) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    base = len(q) / median_seconds(lambda: index.search(q, 10, 64))
    masks = {
        "pos=verb": pos == "verb",
        "lexfile=noun.artifact": lexfile == "noun.artifact",
        "random 10%": np.random.default_rng(0).random(len(x)) < 0.1,
    }
    parts = []
    for name, mask in masks.items():
        _, gt = exact_search(x[mask], q, 10, "cosine")
        grow = max(1.0, (0.25 / mask.mean()) ** 0.5)
        ef_nav = int(min(4 * 72, np.ceil(72 * grow)))
        admit = mask.astype(np.uint8)
        result = {}

        def run(admit=admit, ef_nav=ef_nav, result=result) -> None:
            plan = SearchPlan(18, ef_nav, 72, index.select(state, admit), return_rows=True)
            result["out"] = index.execute(state, prepared, plan)

        secs = median_seconds(run)
        d = result["out"][1][:, :10]
        parts.append(
            f"{name}: recall {recall_at_k(d, gt, 10):.3f}, {len(q) / secs / base:.2f}x unfiltered"
        )
    print(f"LOCAL_SELECTIVITY={args.label} (unfiltered {base:.0f} QPS): " + " | ".join(parts))


if __name__ == "__main__":
    main()
