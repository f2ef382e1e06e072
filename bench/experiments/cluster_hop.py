"""Where a cluster search's time goes on one machine: the Ray hop, the driver and the shards.

    python -m bench.experiments.cluster_hop [SET] [--points 50000] [--shards 2] [--clients 16]

Issue 16 asks 16 concurrent clients of single queries through a 2-shard cluster for >= 0.5x
the throughput of one embedded collection. The clients' searches are micro-batched, so what
bounds the cluster is the round trip of one batch. On a simulated cluster of ``--shards``
one-CPU Ray nodes (127.0.0.1, one thread per node, the first ``--points`` train vectors of
SET) this measures, for batches of 1 and of ``--clients`` queries (medians over ``--batches``
calls, one at a time):

* ``cluster_ms``: ``ClusterCollection.search_batch`` end to end (router, fan-out, merge);
* ``node_call_ms``: one node actor's ``search`` of one shard, called directly through Ray;
* ``ping_ms``: a bare call to a node actor (Ray's own round trip);
* ``local_ms``: the same search on an embedded collection holding one shard's share of the
  points, one thread, at the per-shard ef (what a node computes);
* ``driver_cpu_ms``: this process's CPU time per ``search_batch`` (all its threads: Python
  and Ray's core worker).

Then ``--clients`` threads of single searches for ``--seconds`` against the embedded
collection (``--threads`` threads) and against the cluster: QPS, their ratio, the mean batch
the micro-batcher formed and the driver's CPU per second. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from bench.measure.cluster_scaling import METRICS, concurrent, load, loaded_cluster, sequential

NAMESPACE = "quiver-hop"
WARMUP = 5
LOAD_BATCH = 5000


def median_ms(fn: Any, batches: list[np.ndarray]) -> float:
    """Median milliseconds of ``fn(batch)`` over ``batches``, one call at a time."""
    timed = sequential(lambda i: fn(batches[i % len(batches)]), len(batches), warmup=WARMUP)
    return timed["p50_ms"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-text-562k-384-angular")
    p.add_argument("--points", type=int, default=50_000)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    from bench.harness.sets import load_dataset

    ds = load_dataset(args.set)
    train = np.ascontiguousarray(ds.train[: args.points], dtype=np.float32)
    queries = np.ascontiguousarray(ds.test[:1000], dtype=np.float32)
    metric = METRICS[ds.distance]
    session = loaded_cluster(train, metric, args.shards, NAMESPACE, "qhop", 200 << 20, name="hop")
    with session as (cluster, coll, temp):
        import ray

        import quiver
        from quiver.cluster.calls import node_actor_name
        from quiver.cluster.hashing import group_by_shard
        from quiver.cluster.merge import shard_ef

        one_shard = quiver.Database(temp / "one-shard", num_threads=1).create_collection(
            "hop", train.shape[1], metric
        )
        rows = group_by_shard(list(range(len(train))), args.shards)[0]  # shard 0's points
        for start in range(0, len(rows), LOAD_BATCH):
            part = rows[start : start + LOAD_BATCH]
            one_shard.upsert(part, train[part])
        embedded = quiver.Database(temp / "embedded", num_threads=args.threads).create_collection(
            "hop", train.shape[1], metric
        )
        load(embedded, train, LOAD_BATCH)
        ef = shard_ef(None, 10, args.shards)
        node = ray.get_actor(node_actor_name(cluster.nodes[0]), namespace=NAMESPACE)
        options = {"k": 10, "ef": ef, "filter": None, "score_threshold": None,
                   "with_payload": False, "with_vector": False}  # fmt: skip
        out: dict[str, Any] = {"set": args.set, "points": len(train), "shards": args.shards,
                               "shard_ef": ef, "batch": {}}  # fmt: skip
        for size in (1, args.clients):
            batches = [queries[(i * size) % 1000 :][:size] for i in range(args.batches)]
            c0 = time.process_time()
            cluster_ms = median_ms(coll.search_batch, batches)
            driver = (time.process_time() - c0) / (len(batches) + WARMUP) * 1000
            out["batch"][size] = {
                "cluster_ms": cluster_ms,
                "driver_cpu_ms": round(driver, 3),
                "node_call_ms": median_ms(
                    lambda b: ray.get(node.search.remote("hop", 0, {**options, "vectors": b})),
                    batches,
                ),
                "ping_ms": median_ms(lambda b: ray.get(node.ping.remote()), batches),
                "local_ms": median_ms(lambda b: one_shard.search_batch(b, ef=ef), batches),
            }
        emb = concurrent(lambda q: embedded.search(q), queries, args.clients, args.seconds)
        b0, s0, c0, w0 = coll.batcher.batches, coll.batcher.searches, os.times(), time.time()
        clu = concurrent(lambda q: coll.search(q), queries, args.clients, args.seconds)
        c1, wall = os.times(), time.time() - w0  # (with the warm-up ``concurrent`` runs first)
        batches_run = max(1, coll.batcher.batches - b0)
        out["concurrent"] = {
            "clients": args.clients,
            "embedded_qps": emb["qps"],
            "cluster_qps": clu["qps"],
            "ratio": round(clu["qps"] / emb["qps"], 3),
            "cluster_p50_ms": clu["p50_ms"],
            "cluster_p99_ms": clu["p99_ms"],
            "mean_batch": round((coll.batcher.searches - s0) / batches_run, 1),
            "driver_cpu_per_s": round((c1.user + c1.system - c0.user - c0.system) / wall, 3),
        }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
