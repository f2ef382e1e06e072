"""Per-shard rerank depth through a real (simulated) cluster: split over the shards vs full.

    python -m bench.experiments.shard_rerank_ab [SET] [--shards 2] [--rounds 5]

``quiver.cluster.merge.shard_rerank`` gives each shard ``ceil(rerank / S)`` rows to rerank (at
least k); before, each shard reranked its whole per-shard ef. This loads SET into a cluster of
``--shards`` simulated one-CPU Ray nodes and times ``search_batch`` of the set's queries at the
default ef with both rules, alternating (this study swaps the module function on purpose),
after scoring the recall@10 of each. One JSON line: recall, median and best QPS per rule.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from bench.harness.runner import score
from bench.harness.sets import load_dataset
from bench.measure.cluster_scaling import METRICS, loaded_cluster

NAMESPACE = "quiver-rerank-ab"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-text-562k-384-angular")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    ds = load_dataset(args.set)
    train = np.ascontiguousarray(ds.train, dtype=np.float32)
    queries = np.ascontiguousarray(ds.test, dtype=np.float32)
    metric = METRICS[ds.distance]
    with loaded_cluster(train, metric, args.shards, NAMESPACE, "qrerank") as (_, coll, _):
        import quiver.cluster.merge as merge

        rules: dict[str, Any] = {
            "split": merge.shard_rerank,
            "full": lambda rerank, ef, k, shards, shard_ef: shard_ef,
        }
        out: dict[str, Any] = {"set": args.set, "shards": args.shards, "rules": {}}
        seconds: dict[str, list[float]] = {name: [] for name in rules}
        for name, rule in rules.items():
            merge.shard_rerank = rule
            hits = coll.search_batch(queries)
            ids = np.array([[h.id for h in q] + [-1] * (10 - len(q)) for q in hits])
            out["rules"][name] = {"recall": round(float(score(ds, queries, ids, 10)), 4)}
        for r in range(args.rounds):
            for name in rules if r % 2 == 0 else reversed(list(rules)):
                merge.shard_rerank = rules[name]
                t0 = time.perf_counter()
                coll.search_batch(queries)
                seconds[name].append(time.perf_counter() - t0)
        merge.shard_rerank = rules["split"]
        for name, times in seconds.items():
            out["rules"][name]["qps_median"] = round(len(queries) / float(np.median(times)))
            out["rules"][name]["qps_best"] = round(len(queries) / min(times))
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
