"""Updates without rebuilds: delete 20 %, insert 20 % new, consolidate; recall and cost.

MiniLM-WordNet-181k through the database API: load 80 % of the train vectors, delete a random
20 % of them, insert the held-back 20 %, then measure recall@10 at ef=64 against exact search
over the final live points (before and after consolidation) and compare with a fresh build of
the same points in the same run; consolidation time is compared with that fresh build's time.

    python -m bench.measure.updates                    # writes bench/results/updates.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="minilm-wordnet-181k-384-angular")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--out", default="bench/results/updates.json")
    args = ap.parse_args()

    import quiver
    from bench.harness.datasets import get_dataset
    from quiver import exact_search, recall_at_k

    data = get_dataset(args.set)
    x, q = data.train, data.test
    n = x.shape[0]
    rng = np.random.default_rng(0)
    order = rng.permutation(n)
    first, extra = order[: int(0.8 * n)], order[int(0.8 * n) :]
    gone = rng.choice(first, size=int(0.2 * len(first)), replace=False)
    live = np.sort(np.concatenate([np.setdiff1d(first, gone), extra]))
    _, gt = exact_search(x[live], q, 10, "cosine")
    quiver.warmup()

    def recall(c) -> float:
        hits = c.search_batch(q, k=10, ef=args.ef)
        got = np.array([[1 - h.score for h in hs] + [np.inf] * (10 - len(hs)) for hs in hits])
        return round(float(recall_at_k(got, gt, 10)), 4)

    def load(c, ids) -> float:
        t0 = time.perf_counter()
        for s in range(0, len(ids), 20_000):
            chunk = ids[s : s + 20_000]
            c.upsert(chunk.tolist(), x[chunk])
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        db = quiver.Database(
            tmp, num_threads=args.threads, checkpoint_bytes=1 << 40, consolidate_fraction=1.0
        )
        c = db.create_collection("updated", x.shape[1])
        load_first = load(c, first)
        t0 = time.perf_counter()
        for s in range(0, len(gone), 5_000):
            c.delete(gone[s : s + 5_000].tolist())
        delete_s = time.perf_counter() - t0
        insert_s = load(c, extra)
        r_updated = recall(c)
        t0 = time.perf_counter()
        consolidation = c.consolidate()  # graph repair + compaction, then a checkpoint
        consolidate_total_s = time.perf_counter() - t0
        r_consolidated = recall(c)
        fresh = db.create_collection("fresh", x.shape[1])
        fresh_s = load(fresh, live)
        r_fresh = recall(fresh)
        db.close()
    result = {
        "command": "python -m bench.measure.updates " + " ".join(sys.argv[1:]),
        "set": args.set,
        "threads": args.threads,
        "ef": args.ef,
        "initial_points": int(len(first)),
        "deleted": int(len(gone)),
        "inserted": int(len(extra)),
        "final_points": int(len(live)),
        "load_initial_s": round(load_first, 2),
        "delete_s": round(delete_s, 2),
        "insert_s": round(insert_s, 2),
        "recall_after_updates": r_updated,
        "recall_after_consolidation": r_consolidated,
        "recall_fresh_build": r_fresh,
        "consolidate_graph_s": consolidation["seconds"],
        "consolidate_total_s": round(consolidate_total_s, 2),
        "rows_repaired": consolidation["repaired"],
        "fresh_build_s": round(fresh_s, 2),
        "consolidate_to_fresh_build": round(consolidate_total_s / fresh_s, 3),
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
