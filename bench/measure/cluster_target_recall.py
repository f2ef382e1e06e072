"""What a ``target_recall`` search gives on a sharded collection: global recall@10 and per-shard
ef under each per-shard rule, against one index on the same points.

    python -m bench.measure.cluster_target_recall      # bundled slice, 3 shards
    python -m bench.measure.cluster_target_recall --points 3000 --out ""

The shards are what a cluster builds: the points split by ``quiver.cluster.hashing.shard_of``
into ``--shards`` :class:`quiver.Index` (the same code a node's collection runs: its
calibration and its search), each searched for ``k`` results with its own ef, the hits merged
by exact distance. No Ray: the per-shard ef and the merge are what the cluster's nodes and
router compute; only the transport is left out. Rules compared, per target:

* ``one index``: the single index's calibrated ef (``Index.ef_for_recall(target, k)``);
* ``target per shard``: each shard calibrates its own ef for the target at k (the rule before
  the merged calibration);
* ``merged``: what the cluster does now (:func:`quiver.cluster.merge.shard_options` and
  :func:`~quiver.cluster.merge.resolve_target_recall`: each shard calibrates for the target
  at ``shard_recall_k`` results, its share of the global top k; docs/SCALING.md);
* ``shard ef / sqrt(S)``: each shard's calibrated ef for the target at k divided by
  ``sqrt(S)`` (the fixed-ef rule applied to the calibrated ef; measured, not adopted).

Reported: recall@k of the merged hits against the exact top k (``quiver.exact_search``) of
``--queries`` held-out queries, each shard's ef, and their sum (the work: code distances grow
with ef). Recall and ef only, no timing: the figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = (0.8, 0.9, 0.95, 0.98, 0.99)


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean recall@k of id rows ``found`` against the exact ``truth``."""
    hits = sum(
        len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)
    )
    return hits / (k * len(truth))


def merged_search(shards: list[Any], rows: list[np.ndarray], queries: np.ndarray, k: int,
                  efs: list[int]) -> np.ndarray:  # fmt: skip
    """Each shard's top ``k`` at its ef, merged by exact distance: global ids (q, k)."""
    ids, dists = [], []
    for index, global_rows, ef in zip(shards, rows, efs, strict=True):
        res = index.search(queries, k=k, ef=ef)
        ids.append(np.where(res.ids >= 0, global_rows[np.maximum(res.ids, 0)], -1))
        dists.append(res.distances)
    all_ids, all_dists = np.hstack(ids), np.hstack(dists)
    order = np.argsort(all_dists, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_ids, order, axis=1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=20000, help="first N train vectors of the slice")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/cluster-target-recall.json")
    args = ap.parse_args(argv)

    import quiver
    from bench.harness.bundled import load_wordnet_slice
    from quiver.cluster.hashing import shard_of
    from quiver.cluster.merge import (
        DEFAULT_EF_EXPONENT,
        RECALL_K,
        resolve_target_recall,
        shard_options,
    )
    from quiver.db.request import SearchRequest

    data = load_wordnet_slice()
    x, q, k = data.train[: args.points], data.test[: args.queries], args.k
    truth, _ = quiver.exact_search(x, q, k, "cosine")
    one = quiver.Index(x.shape[1], num_threads=args.threads)
    one.add(x)
    owner = np.array([shard_of(i, args.shards) for i in range(len(x))])
    rows = [np.flatnonzero(owner == s) for s in range(args.shards)]
    shards = []
    for r in rows:
        index = quiver.Index(x.shape[1], num_threads=args.threads)
        index.add(x[r])
        shards.append(index)

    def rule(efs: list[int]) -> dict[str, Any]:
        found = merged_search(shards, rows, q, k, efs)
        return {"efs": efs, "ef_sum": sum(efs), "recall": recall(found, truth, k)}

    results = []
    for target in TARGETS:
        ef_one = one.ef_for_recall(target, k)
        request = SearchRequest(vectors=q[:1], k=k, target_recall=target)
        options = shard_options(request, args.shards, DEFAULT_EF_EXPONENT)
        row = {
            "target": target,
            "one_index": {
                "ef": ef_one,
                "recall": recall(one.search(q, k=k, ef=ef_one).ids, truth, k),
            },
            "target_per_shard": rule([s.ef_for_recall(target, k) for s in shards]),
            "merged": {
                "recall_k": options[RECALL_K],
                **rule([resolve_target_recall(options, s.ef_for_recall)["ef"] for s in shards]),
            },
            "shard_ef_over_sqrt_s": rule(
                [
                    max(k, math.ceil(s.ef_for_recall(target, k) / math.sqrt(args.shards)))
                    for s in shards
                ]
            ),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    command = ["python -m bench.measure.cluster_target_recall", *(argv or sys.argv[1:])]
    out = {
        "command": " ".join(command),
        "data": f"bundled minilm-wordnet-21k slice: first {len(x)} train vectors, {len(q)} queries",
        "shards": args.shards,
        "k": k,
        "shard_sizes": [len(r) for r in rows],
        "results": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
