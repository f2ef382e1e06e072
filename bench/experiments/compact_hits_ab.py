"""Hits as arrays vs hit objects: ``Collection.query_compact`` against ``query`` + conversion.

    python -m bench.experiments.compact_hits_ab [SET] [--points 25000] [--batch 16] [--ef 54]

A cluster node answers a search of integer ids without payloads as three arrays
(:class:`quiver.CompactHits`). Before, it built one :class:`quiver.ScoredPoint` per hit and
converted the lists to arrays; now ``query_compact`` masks the rows of all queries at once.
This times both on one embedded collection of the first ``--points`` train vectors (one thread,
CPU time per batch of ``--batch`` queries, ``--rounds`` alternating rounds, medians), after
checking that they return the same hits. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

import quiver
from quiver.db.query import compact_hit_lists

LOAD_BATCH = 5000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-wordnet-181k-384-angular")
    p.add_argument("--points", type=int, default=25_000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--ef", type=int, default=54)
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()

    from bench.harness.sets import load_dataset
    from bench.measure.cluster_scaling import METRICS, load

    ds = load_dataset(args.set)
    train = np.ascontiguousarray(ds.train[: args.points], dtype=np.float32)
    queries = np.ascontiguousarray(ds.test, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="qcompact") as tmp:
        db = quiver.Database(tmp, num_threads=1)
        coll = db.create_collection("ab", train.shape[1], METRICS[ds.distance])
        load(coll, train, LOAD_BATCH)
        batches = [
            queries[(i * args.batch) % len(queries) :][: args.batch] for i in range(args.batches)
        ]

        def objects(b: np.ndarray) -> quiver.CompactHits:
            return compact_hit_lists(coll.query(quiver.SearchRequest(vectors=b, ef=args.ef)))

        def arrays(b: np.ndarray) -> quiver.CompactHits:
            return coll.query_compact(quiver.SearchRequest(vectors=b, ef=args.ef))

        for b in batches:
            a, o = arrays(b), objects(b)
            if not all(np.array_equal(x, y) for x, y in zip(a, o, strict=True)):
                raise SystemExit("query_compact and query disagree")
        cpu: dict[str, list[float]] = {"objects": [], "arrays": []}
        for _ in range(args.rounds):
            for name, fn in (("objects", objects), ("arrays", arrays)):
                t0 = time.thread_time()
                for b in batches:
                    fn(b)
                cpu[name].append((time.thread_time() - t0) / len(batches) * 1e3)
        db.close()
    out = {
        "set": args.set, "points": len(train), "batch": args.batch, "ef": args.ef,
        **{f"{k}_cpu_ms": round(float(np.median(v)), 3) for k, v in cpu.items()},
    }  # fmt: skip
    out["saved"] = round(1 - out["arrays_cpu_ms"] / out["objects_cpu_ms"], 3)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
