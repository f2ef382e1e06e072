"""The micro-batcher's early close for a lone client, on and off.

    python -m bench.experiments.batcher_close [SET] [--points 50000] [--clients 16]

A group closes at once when no other thread searched recently (``QueryBatcher.expected_group``
is 1); "off" is the batcher before that rule, where every group waits ``max_batch`` searches or
the window. Both alternate (``--rounds`` rounds, medians) in three parts: ``simulated``,
``--clients`` threads of single searches through a bare batcher whose batch "runs" by sleeping
``--round-trip-ms``; then through a 2-shard cluster on a simulated Ray cluster (the first
``--points`` train vectors of SET): one client's single searches one after the other (p50), and
``--clients`` threads for ``--seconds`` each, with an embedded collection measured in the same
rounds for scale. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import numpy as np

from bench.measure import ray_sim
from bench.measure.cluster_scaling import METRICS, concurrent, load, loaded_cluster, sequential
from quiver.types import ScoredPoint

NAMESPACE = "quiver-batcher"
LOAD_BATCH = 5000


def set_rule(batcher: Any, on: bool) -> None:
    """Turn the early close on (the class's rule) or off (always wait for ``max_batch``)."""
    if on:
        batcher.__dict__.pop("expected_group", None)
    else:
        batcher.expected_group = lambda: batcher.max_batch  # type: ignore[method-assign]


def simulated(clients: int, seconds: float, round_trip_s: float, on: bool) -> dict[str, Any]:
    from quiver.cluster.batching import QueryBatcher

    sizes: list[int] = []

    def run(vectors: np.ndarray, options: dict) -> list:
        sizes.append(len(vectors))
        time.sleep(round_trip_s)
        return [[ScoredPoint(0, 1.0)] for _ in vectors]

    batcher = QueryBatcher(run)
    set_rule(batcher, on)
    stop = time.monotonic() + seconds
    done = [0] * clients

    def client(c: int) -> None:
        vector = np.zeros(8, dtype=np.float32)
        while time.monotonic() < stop:
            batcher.search(vector, {})
            done[c] += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"qps": sum(done) / seconds, "mean_batch": float(np.mean(sizes))}


def median_of(rows: list[dict[str, Any]], key: str) -> float:
    return round(float(np.median([r[key] for r in rows])), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-wordnet-181k-384-angular")
    p.add_argument("--points", type=int, default=50_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--round-trip-ms", type=float, default=5.0)
    args = p.parse_args()
    ray_sim.bind_loopback()  # before anything imports Ray (quiver.cluster does)
    out: dict[str, Any] = {"set": args.set, "points": args.points, "clients": args.clients}

    sim: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for side in ("off", "on"):
            sim[side].append(
                simulated(args.clients, args.seconds, args.round_trip_ms / 1e3, side == "on")
            )
    out["simulated"] = {
        side: {"qps": median_of(rows, "qps"), "mean_batch": median_of(rows, "mean_batch")}
        for side, rows in sim.items()
    }

    from bench.harness.sets import load_dataset

    ds = load_dataset(args.set)
    train = np.ascontiguousarray(ds.train[: args.points], dtype=np.float32)
    queries = np.ascontiguousarray(ds.test[:1000], dtype=np.float32)
    metric = METRICS[ds.distance]
    with loaded_cluster(train, metric, 2, NAMESPACE, "qbatch", 200 << 20) as (_, coll, temp):
        import quiver

        embedded = quiver.Database(temp / "embedded", num_threads=2).create_collection(
            "ab", train.shape[1], metric
        )
        load(embedded, train, LOAD_BATCH)
        real: dict[str, list[dict[str, Any]]] = {"off": [], "on": [], "embedded": []}
        batcher = coll.batcher
        lone: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.rounds):  # one client: single searches one after the other
            for side in ("off", "on"):
                set_rule(batcher, side == "on")
                timed = sequential(lambda i: coll.search(queries[i % len(queries)]), 300)
                lone[side].append(timed["p50_ms"])
        out["one_client_p50_ms"] = {side: round(float(np.median(v)), 3) for side, v in lone.items()}
        for _ in range(args.rounds):
            for side in ("off", "on", "embedded"):
                if side == "embedded":
                    real[side].append(
                        concurrent(embedded.search, queries, args.clients, args.seconds)
                    )
                    continue
                set_rule(batcher, side == "on")
                b0, s0 = batcher.batches, batcher.searches
                row = concurrent(lambda q: coll.search(q), queries, args.clients, args.seconds)
                row["mean_batch"] = (batcher.searches - s0) / max(1, batcher.batches - b0)
                real[side].append(row)
        out["cluster"] = {
            side: {"qps": median_of(rows, "qps"), "p50_ms": median_of(rows, "p50_ms"),
                   **({"mean_batch": median_of(rows, "mean_batch")} if side != "embedded" else {})}
            for side, rows in real.items()
        }  # fmt: skip
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
