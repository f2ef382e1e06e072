"""Searches beside a writer: search QPS idle and during a continuous upsert/delete load.

Loads MiniLM-WordNet (50k by default) into a collection, then runs reader threads that search
(batches of 10 held-out queries, k=10, with payloads) for a fixed time, first alone and then
while a writer thread upserts batches of new points and deletes older ones without pause.
Reports both QPS, their ratio, the write rate, and any error (there must be none; every hit
must be a live-or-recently-written id whose payload matches it).

    python -m bench.measure.concurrency                 # writes bench/results/concurrency.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="minilm-wordnet-50k-384-angular")
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=200, help="points per upsert call")
    ap.add_argument("--out", default="bench/results/concurrency.json")
    args = ap.parse_args()

    import quiver
    from bench.harness.datasets import get_dataset

    data = get_dataset(args.set)
    x, q = data.train, data.test
    n = x.shape[0]
    first = n // 2
    errors: list[str] = []
    written = set(range(first))
    with tempfile.TemporaryDirectory() as tmp:
        db = quiver.Database(tmp)
        c = db.create_collection("live", x.shape[1])
        for s in range(0, first, 10_000):
            ids = list(range(s, min(first, s + 10_000)))
            c.upsert(ids, x[ids], [{"i": i} for i in ids])
        quiver.warmup()

        def read(stop: threading.Event, count: list[int], seed: int) -> None:
            rng = np.random.default_rng(seed)
            while not stop.is_set():
                batch = q[rng.integers(0, len(q), size=10)]
                try:
                    for hits in c.search_batch(batch, k=10, with_payload=True):
                        if len(hits) != 10:
                            errors.append(f"{len(hits)} hits")
                        for h in hits:
                            if h.id not in written or h.payload["i"] != h.id:
                                errors.append(f"bad hit {h}")
                except Exception as exc:  # recorded: the run must have none
                    errors.append(repr(exc))
                count[0] += len(batch)

        def phase(write: bool) -> dict:
            stop = threading.Event()
            counts = [[0] for _ in range(args.readers)]
            readers = [
                threading.Thread(target=read, args=(stop, counts[i], i))
                for i in range(args.readers)
            ]
            for t in readers:
                t.start()
            t0 = time.perf_counter()
            writes, nxt, oldest = 0, first, 0
            while time.perf_counter() - t0 < args.seconds:
                if not write:
                    time.sleep(0.05)
                    continue
                ids = list(range(nxt, nxt + args.batch))
                rows = [i % n for i in ids]
                written.update(ids)
                c.upsert(ids, x[rows], [{"i": i} for i in ids])
                c.delete(list(range(oldest, oldest + args.batch // 2)))
                nxt += args.batch
                oldest += args.batch // 2
                writes += args.batch
            elapsed = time.perf_counter() - t0
            stop.set()
            for t in readers:
                t.join()
            return {
                "search_qps": round(sum(k[0] for k in counts) / elapsed, 1),
                "upserts_per_s": round(writes / elapsed, 1),
            }

        idle = phase(write=False)
        busy = phase(write=True)
        info = c.info()
        db.close()
    result = {
        "command": "python -m bench.measure.concurrency " + " ".join(sys.argv[1:]),
        "set": args.set,
        "readers": args.readers,
        "seconds": args.seconds,
        "idle": idle,
        "during_writes": busy,
        "qps_ratio": round(busy["search_qps"] / idle["search_qps"], 3),
        "errors": len(errors),
        "first_errors": errors[:5],
        "final_count": info["count"],
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
