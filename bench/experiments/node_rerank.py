"""One cluster node's search of a batch at several rerank depths, through Ray.

    python -m bench.experiments.node_rerank [SET] [--limit 200000] [--reranks 54 32 16]

Loads the first ``--limit`` vectors of SET into a 2-shard cluster of simulated one-CPU Ray
nodes (one search thread each, thread pools pinned to 2 like ``bench.measure.cluster_scaling``)
and times one node's ``search`` of the set's queries (shard 0, per-shard ef ``--ef``) at each
``--reranks`` depth in turn, ``--rounds`` times; the other node idles. It shows that a
request's rerank depth reaches the node's index (the database once planned every search with
a rerank of its whole ef). One JSON line: median milliseconds per depth.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from bench.harness.runner import thread_env
from bench.harness.sets import load_dataset
from bench.measure.cluster_scaling import METRICS, loaded_cluster

NAMESPACE = "quiver-node-rerank"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-text-562k-384-angular")
    p.add_argument("--limit", type=int, default=200_000)
    p.add_argument("--ef", type=int, default=54)
    p.add_argument("--reranks", type=int, nargs="+", default=[54, 32, 16])
    p.add_argument("--rounds", type=int, default=11)
    args = p.parse_args()
    os.environ.update(thread_env(2))  # before numba loads; the Ray processes inherit them
    ds = load_dataset(args.set)
    train = np.ascontiguousarray(ds.train[: args.limit], dtype=np.float32)
    queries = np.ascontiguousarray(ds.test, dtype=np.float32)
    metric = METRICS[ds.distance]
    with loaded_cluster(train, metric, 2, NAMESPACE, "qnoderr", name="rr") as (cluster, _, _):
        import ray

        layout = cluster._router.collection("rr")  # noqa: SLF001 - one node, on purpose
        node = cluster._router.node(layout.shards[0].primary)  # noqa: SLF001
        seconds: dict[int, list[float]] = {r: [] for r in args.reranks}
        for r in range(args.rounds):
            for depth in args.reranks if r % 2 == 0 else args.reranks[::-1]:
                options = {"vectors": queries, "k": 10, "ef": args.ef, "rerank": depth,
                           "with_payload": False, "with_vector": False}  # fmt: skip
                t0 = time.perf_counter()
                ray.get(node.search.remote("rr", 0, options))
                seconds[depth].append(time.perf_counter() - t0)
        out = {
            "set": args.set, "limit": len(train), "queries": len(queries), "ef": args.ef,
            "rounds": args.rounds,
            "median_ms": {d: round(1000 * float(np.median(t)), 1) for d, t in seconds.items()},
        }  # fmt: skip
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
