"""The cluster's batch-QPS ceiling on one machine: S shards searched in-process, no Ray.

    python -m bench.experiments.shard_bound [SET] [--shards 2] [--ef 64] [--rounds 5]

Issue 16 asks a 2-shard cluster for >= 0.7x the batch QPS of one embedded index on the same
cores. Every shard runs every query (at the per-shard ef of ``quiver.cluster.merge.shard_ef``),
so S shards do more search work than one index before any Ray cost. This experiment measures
that ceiling directly: the set's train vectors are split by ``shard_of(row, S)`` (the cluster's
routing of integer ids) into S indexes built in-process, and a batch of the set's 1,000
queries runs on them with one thread per shard (S Python threads; the kernels release the GIL)
at the per-shard ef, the hits merged by exact distance with numpy. The same batch on one
index of all the vectors with S threads is the reference. Recall@10 of both, the QPS (best of
``--rounds`` alternating passes) and the ratio are printed as one JSON line. A real cluster adds
the Ray calls, pickling and the router on top, so its ratio is lower than this one.

``--shard-efs`` and ``--reranks`` sweep other per-shard settings on the same indexes (a grid
of ef and rerank depth per shard; rerank 0 = ef, the default): each row of ``grid`` gives its
recall and QPS against the same embedded reference.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import config as numba_config

import quiver
from bench.harness.runner import score
from bench.harness.sets import load_dataset
from quiver.cluster.hashing import shard_of
from quiver.cluster.merge import shard_ef


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-text-562k-384-angular")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--ef", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--shard-efs", type=int, nargs="*", default=[], help="per-shard ef grid")
    p.add_argument("--reranks", type=int, nargs="*", default=[0], help="0 = ef")
    args = p.parse_args()
    ds = load_dataset(args.set)
    queries = np.ascontiguousarray(ds.test)
    n, s = ds.train.shape[0], args.shards
    owner = np.fromiter((shard_of(i, s) for i in range(n)), dtype=np.int64, count=n)
    members = [np.flatnonzero(owner == j) for j in range(s)]
    threads = min(s, numba_config.NUMBA_NUM_THREADS)  # the reference: S threads, if there are
    whole = quiver.Index(ds.train.shape[1], "cosine", num_threads=threads)
    whole.add(ds.train)
    shards = []
    for rows in members:
        index = quiver.Index(ds.train.shape[1], "cosine", num_threads=threads)
        index.add(ds.train[rows], ids=rows)
        shards.append(index)
    ef_shard = shard_ef(args.ef, 10, s)

    def sharded(pool: ThreadPoolExecutor, ef: int, rerank: int) -> np.ndarray:
        def one_shard(index: quiver.Index) -> tuple[np.ndarray, np.ndarray]:
            result = index.search(queries, k=10, ef=ef, rerank=rerank or None, num_threads=1)
            return result.ids, result.distances

        parts = list(pool.map(one_shard, shards))
        ids = np.concatenate([part[0] for part in parts], axis=1)
        dists = np.concatenate([part[1] for part in parts], axis=1)
        order = np.argsort(dists, axis=1, kind="stable")[:, :10]
        return np.take_along_axis(ids, order, axis=1)

    settings = [(ef_shard, 0)] + [
        (ef, rerank)
        for ef in args.shard_efs
        for rerank in args.reranks
        if (ef, rerank) != (ef_shard, 0) and rerank <= ef
    ]
    best = {"embedded": np.inf} | {setting: np.inf for setting in settings}
    with ThreadPoolExecutor(s) as pool:
        embedded_ids = whole.search(queries, k=10, ef=args.ef).ids
        recall = {setting: score(ds, queries, sharded(pool, *setting), 10) for setting in settings}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            whole.search(queries, k=10, ef=args.ef)
            best["embedded"] = min(best["embedded"], time.perf_counter() - t0)
            for setting in settings:
                t0 = time.perf_counter()
                sharded(pool, *setting)
                best[setting] = min(best[setting], time.perf_counter() - t0)
    qps = {key: round(len(queries) / seconds) for key, seconds in best.items()}
    out = {
        "set": args.set,
        "shards": s,
        "ef": args.ef,
        "ef_per_shard": ef_shard,
        "recall_embedded": round(float(score(ds, queries, embedded_ids, 10)), 4),
        "recall_sharded": round(float(recall[settings[0]]), 4),
        "qps_embedded": qps["embedded"],
        "qps_sharded_in_process": qps[settings[0]],
        "ratio": round(qps[settings[0]] / qps["embedded"], 3),
    }
    if len(settings) > 1:
        out["grid"] = [
            {"ef_per_shard": ef, "rerank": rerank or ef, "recall": round(float(recall[key]), 4),
             "qps": qps[key], "ratio": round(qps[key] / qps["embedded"], 3)}
            for key in settings
            for ef, rerank in [key]
        ]  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
