"""Single filtered queries with and without a write before each one.

MiniLM-WordNet-181k with its WordNet payloads through the database API, one thread: the median
latency of one ``search`` call filtered on ``lexfile = noun.artifact`` (7.8 % of the points),
first with no writes, then with one upsert before every query (each write publishes a new
snapshot, so whatever a filter caches per snapshot is lost and must be rebuilt).

    python -m bench.measure.filter_writes [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np

FILTER = {"must": [{"key": "lexfile", "match": {"value": "noun.artifact"}}]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()

    import quiver
    from bench.measure.filtered_search import load

    data, pos, lexfile = load("minilm-wordnet-181k-384-angular")
    x, q = data.train, data.test
    n = x.shape[0]
    payloads = [{"pos": pos[i], "lexfile": lexfile[i]} for i in range(n)]
    result = {"command": "python -m bench.measure.filter_writes " + " ".join(sys.argv[1:])}
    with tempfile.TemporaryDirectory() as tmp:
        db = quiver.Database(tmp, num_threads=1, checkpoint_bytes=1 << 40)
        c = db.create_collection("w", x.shape[1])
        for s in range(0, n, 20_000):
            e = min(n, s + 20_000)
            c.upsert(list(range(s, e)), x[s:e], payloads[s:e])
        quiver.warmup()
        for label, write in (("no_writes_p50_ms", False), ("upsert_before_each_p50_ms", True)):
            c.search(q[0], k=10, filter=FILTER)
            times = []
            for i in range(args.queries):
                if write:
                    c.upsert([n + i], x[i : i + 1], [payloads[i]])
                t0 = time.perf_counter()
                c.search(q[i], k=10, filter=FILTER)
                times.append(time.perf_counter() - t0)
            result[label] = round(float(np.median(times)) * 1e3, 3)
        db.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
