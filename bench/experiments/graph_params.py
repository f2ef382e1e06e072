"""Build parameters at matched recall: CPU per query and build time for (R, alpha, L).

    python -m bench.experiments.graph_params [SET] --configs 64,1.0,128 64,1.03,128 ...

For each ``max_degree,alpha,build_list_size`` builds the set's index (2 threads, wall time)
and saves it under the data cache (a later run reuses it; ``--rebuild`` builds again), then
measures over ``--ef`` recall@10 on the set's 1,000 queries and code distances per query.
CPU time per query on one thread (``time.thread_time``) is taken in ``--rounds`` rounds that
alternate the configurations, keeping each setting's best, so that a slow spell of the
machine hits every configuration alike. The CPU per query at each target recall is
interpolated linearly in ef between the swept points. Prints one JSON line per setting and
one summary line per configuration.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import quiver
from bench.harness.datasets import data_dir
from bench.harness.runner import score
from bench.harness.sets import load_dataset

TARGETS = (0.90, 0.95, 0.98)


def at_recall(rows: list[dict], target: float, key: str) -> float | None:
    """``key`` interpolated linearly between the two swept settings around ``target``."""
    for lo, hi in zip(rows, rows[1:], strict=False):
        if lo["recall"] < target <= hi["recall"]:
            t = (target - lo["recall"]) / (hi["recall"] - lo["recall"])
            return round(lo[key] + t * (hi[key] - lo[key]), 2)
    if rows and rows[0]["recall"] >= target:
        return rows[0][key]
    return None


def built(ds, name: str, config: str, rebuild: bool) -> tuple[quiver.Index, float | None]:
    """The index of ``config`` (saved under the data cache) and its build seconds, if built."""
    r, alpha, lsize = config.split(",")
    params = {"max_degree": int(r), "alpha": float(alpha), "build_list_size": int(lsize)}
    path: Path = data_dir() / "graph-params" / f"{name}-{r}-{alpha}-{lsize}"
    if path.exists() and not rebuild:
        return quiver.Index.open(path), None
    index = quiver.Index(ds.train.shape[1], "cosine", num_threads=2, **params)
    start = time.perf_counter()
    index.add(ds.train)
    build_s = time.perf_counter() - start
    index.save(path)
    return quiver.Index.open(path), build_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-wordnet-181k-384-angular")
    p.add_argument("--configs", nargs="+", default=["64,1.0,128"])
    p.add_argument("--ef", type=int, nargs="+", default=[12, 16, 20, 24, 32, 40, 48, 64])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rebuild", action="store_true")
    args = p.parse_args()
    ds = load_dataset(args.set)
    queries = np.ascontiguousarray(ds.test)
    indexes, rows, summaries = {}, {}, {}
    for config in args.configs:
        index, build_s = built(ds, args.set, config, args.rebuild)
        indexes[config] = index
        degree = float(np.mean(index.state().degrees[: len(index)]))
        summaries[config] = {"config": config, "build_s": build_s, "mean_degree": round(degree, 1)}
        rows[config] = []
        for ef in args.ef:
            recall = score(ds, queries, index.search(queries, k=10, ef=ef, num_threads=1).ids, 10)
            ndist = index.search_stats(queries, k=10, ef=ef)["mean_distances"]
            row = {"config": config, "ef": ef, "recall": round(float(recall), 4)}
            rows[config].append({**row, "code_distances": round(ndist, 1), "us_per_query": None})
    for _ in range(args.rounds):
        for config, index in indexes.items():
            for row in rows[config]:
                t0 = time.thread_time()
                index.search(queries, k=10, ef=row["ef"], num_threads=1)
                us = (time.thread_time() - t0) / len(queries) * 1e6
                best = row["us_per_query"]
                row["us_per_query"] = round(us if best is None else min(best, us), 2)
    for config in args.configs:
        for row in rows[config]:
            print(json.dumps(row), flush=True)
        summary = summaries[config]
        for target in TARGETS:
            summary[f"us_at_{target}"] = at_recall(rows[config], target, "us_per_query")
            summary[f"dist_at_{target}"] = at_recall(rows[config], target, "code_distances")
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
