"""Node-actor kills under load on a quiver cluster: acknowledged writes lost, reads failed, and
read latency while a replica fails over.

Starts a simulated Ray cluster on this machine (``--nodes`` nodes, one CPU each, Ray's files in
a temporary directory), creates a collection of ``--shards`` shards x ``--replicas`` replicas,
then:

1. **writes**: one thread upserts batches of ``--batch`` points with a payload naming the batch
   while ``--write-kills`` node actors are killed (a random node every ``--kill-every`` s; Ray
   restarts it). At the end every acknowledged id must be there with its own payload.
2. **reads**: ``--readers`` threads run single searches while ``--read-kills`` node actors are
   killed. Every failed search counts; latencies are reported overall and within 3 s after a
   kill (failover).

    python -m bench.measure.cluster_faults                 # the issue's 20 + 10 kills
    python -m bench.measure.cluster_faults --write-kills 2 --read-kills 1 --out ""   # smoke

Writes a JSON summary to ``--out`` (default bench/results/cluster-faults.json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.measure.ray_sim import kill_random_node, start_ray, wait_in_sync

NAMESPACE = "quiver-faults"


def write_phase(cluster, coll, args, rng: random.Random) -> dict:
    vectors = np.random.default_rng(0)
    acked: dict[int, int] = {}
    failures: list[str] = []
    stop = threading.Event()

    def write() -> None:
        start = 0
        while not stop.is_set():
            ids = list(range(start, start + args.batch))
            x = vectors.standard_normal((args.batch, args.dim)).astype(np.float32)
            try:
                coll.upsert(ids, x, [{"batch": start}] * args.batch)
                acked.update(dict.fromkeys(ids, start))
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append(repr(exc))
            start += args.batch

    writer = threading.Thread(target=write)
    writer.start()
    kills = []
    try:
        for _ in range(args.write_kills):
            time.sleep(args.kill_every)
            kills.append(kill_random_node(cluster, rng, NAMESPACE))
        time.sleep(args.kill_every)
    finally:
        stop.set()
        writer.join()
    sync_s = wait_in_sync(cluster, coll.name)
    found = {p.id: p.payload["batch"] for p in coll.retrieve(list(acked))}
    lost = sum(1 for i, b in acked.items() if found.get(i) != b)
    return {
        "kills": len(kills),
        "acknowledged_points": len(acked),
        "failed_writes": len(failures),
        "lost_acknowledged_points": lost,
        "resync_s": round(sync_s, 2),
        "failure_examples": failures[:3],
    }


def read_phase(cluster, coll, args, rng: random.Random) -> dict:
    queries = np.random.default_rng(1).standard_normal((256, args.dim)).astype(np.float32)
    latencies: list[tuple[float, float]] = []  # (start, seconds)
    failures: list[str] = []
    kill_times: list[float] = []
    failed_at: list[float] = []
    stop = threading.Event()

    def read(seed: int) -> None:
        i = seed
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                coll.search(queries[i % len(queries)], k=10)
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append(repr(exc))
                failed_at.append(t0)
            latencies.append((t0, time.monotonic() - t0))
            i += args.readers

    readers = [threading.Thread(target=read, args=(r,)) for r in range(args.readers)]
    for t in readers:
        t.start()
    try:
        for _ in range(args.read_kills):
            time.sleep(args.kill_every)
            kill_times.append(time.monotonic())
            kill_random_node(cluster, rng, NAMESPACE)
            wait_in_sync(cluster, coll.name)
        time.sleep(args.kill_every)
    finally:
        stop.set()
        for t in readers:
            t.join()
    all_s = np.array([s for _, s in latencies])
    near = np.array([s for t, s in latencies if any(0 <= t - k <= 3.0 for k in kill_times)])

    def pct(a: np.ndarray, p: float) -> float | None:
        return round(float(np.percentile(a, p)) * 1000, 2) if len(a) else None

    return {
        "kills": len(kill_times),
        "searches": len(latencies),
        "failed_searches": len(failures),
        "p50_ms": pct(all_s, 50),
        "p99_ms": pct(all_s, 99),
        "failover_searches": len(near),
        "failover_p99_ms": pct(near, 99),
        "failure_examples": failures[:3],
        "failures_s_after_last_kill": sorted(
            round(t - max((k for k in kill_times if k <= t), default=t), 2) for t in failed_at
        )[:: max(1, len(failed_at) // 20)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--write-kills", type=int, default=20)
    ap.add_argument("--read-kills", type=int, default=10)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/cluster-faults.json")
    ap.add_argument("--keep-logs", default="", help="copy Ray's logs to this folder at the end")
    args = ap.parse_args()

    import quiver
    import quiver.cluster

    load_start = os.getloadavg()
    started = time.time()
    temp = Path(tempfile.mkdtemp(prefix="qf-"))
    ray_cluster = start_ray(args.nodes, temp)
    rng = random.Random(args.seed)
    try:
        cluster = quiver.Cluster(data_dir=temp / "data", namespace=NAMESPACE, num_threads=1)
        coll = cluster.create_collection(
            "faults", args.dim, shards=args.shards, replicas=args.replicas
        )
        result = {
            "command": " ".join(["python -m bench.measure.cluster_faults", *sys.argv[1:]]),
            "args": vars(args),
            "machine": {
                "cpus": os.cpu_count(),
                "shared": "other jobs may run at the same time: the load averages say how busy",
                "loadavg_1_5_15_start": [round(v, 2) for v in load_start],
            },
        }
        result["writes"] = write_phase(cluster, coll, args, rng)
        print(json.dumps(result["writes"]), flush=True)
        result["reads"] = read_phase(cluster, coll, args, rng)
        print(json.dumps(result["reads"]), flush=True)
    finally:
        import ray

        quiver.cluster.shutdown(NAMESPACE)
        ray.shutdown()
        ray_cluster.shutdown()
        if args.keep_logs:
            logs = temp / "ray" / "session_latest" / "logs"
            shutil.copytree(logs, args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(temp, ignore_errors=True)
    result["machine"]["loadavg_1_5_15_end"] = [round(v, 2) for v in os.getloadavg()]
    result["wall_s"] = round(time.time() - started, 1)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
