"""Embedded quiver vs a quiver cluster of 1, 2 and 4 shards on one machine: recall@10 vs QPS
(batch and concurrent single queries), the Ray hop, the ef rule at scale, restart and failover.

    python -m bench.measure.cluster_scaling            # the 562k MiniLM set, 1, 2 and 4 shards
    python -m bench.measure.cluster_scaling --dataset minilm-wordnet-181k-384-angular \\
        --limit 20000 --seconds 3 --out /tmp/cs.json  # a smoke run

One run, one result: ``--out`` (default bench/results/cluster-scaling.json, with the exact
command, the machine's load averages and every figure) and a markdown summary beside it
(same name, ``.md``), also printed. Progress lines carry the time.

Systems, one after the other, on the same data (the first ``--limit`` train vectors of
``--dataset``, all when 0; when limited the ground truth is recomputed exactly with
``bench.harness.datasets.ground_truth``, the project's brute-force oracle):

* ``embedded``: a :class:`quiver.Database` with ``num_threads=--threads``, one collection.
* ``S shards`` for each S of ``--shards``: a simulated Ray cluster of S nodes on 127.0.0.1
  (:mod:`bench.measure.ray_sim`), one data node per Ray node, replicas 1, each node's database
  with ``max(1, --threads // S)`` threads, so that the cluster's search threads add up to
  ``--threads`` (at 4 shards on 2 threads: one each, 4 on 2 cores; the driver's router and
  Ray's own processes run on the same cores).

The thread pools are pinned like the harness (``OMP_NUM_THREADS``, ``NUMBA_NUM_THREADS``, ...
set to ``--threads`` before numba loads; the Ray processes inherit them). Each system is loaded
through the public API (``upsert`` in batches of ``--batch``; the load time is recorded), then:

* per ``--efs`` value (the request's ef; a cluster gives each shard
  ``quiver.cluster.merge.shard_ef``): recall@10 (ids against the exact top 10) and batch QPS
  (``search_batch`` of every query: one untimed pass, then the median of ``--repeats``);
* at the default ef: ``--clients`` threads of single searches for ``--seconds`` (QPS,
  p50/p99; the cluster micro-batches them), and ``--single`` sequential single searches on one
  thread (p50/p99: one query through the cluster vs embedded); on a cluster also a bare
  actor call (``ping`` of a node, p50/p99);
* restart (clusters; ``--restarts`` times): a node actor is killed (Ray restarts it) and two
  threads ask from the kill on: seconds until a search succeeds, until a write (re-upsert of
  points with their own vectors) is acknowledged; then every replica must serve again before
  the next kill. Embedded: seconds to reopen the database and answer a search.
* failover (on the ``--failover-shards`` cluster, after its measurements, on a new collection
  of the first ``--failover-points`` vectors with 2 replicas per shard): the node of a shard's
  primary is killed, ``--restarts`` times: seconds until a write to every shard is
  acknowledged again, and the searches that failed meanwhile (reads go to the other replica).

Derived: the ef rule at scale (per S, the smallest swept ef whose cluster recall reaches the
embedded recall at ef 64, its per-shard ef, and what the rule gives) and the acceptance ratios
of issue 16 (2 shards vs embedded at the default ef: recall, batch QPS, concurrent QPS).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness.runner import thread_env
from bench.measure import ray_sim

DEFAULT_DATASET = "minilm-text-562k-384-angular"
NAMESPACE = "quiver-scaling"
K = 10
#: The request ef whose embedded recall the clusters must reach (issue 16).
REFERENCE_EF = 64
METRICS = {"angular": "cosine", "euclidean": "l2"}
_START = time.monotonic()


def progress(message: str) -> None:
    """One progress line with the wall-clock time and the seconds since the start."""
    now = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
    print(f"[{now} +{time.monotonic() - _START:7.1f}s] {message}", flush=True)


def percentiles_ms(seconds: list[float]) -> dict[str, float | None]:
    """p50 and p99 of ``seconds``, in milliseconds (None when empty)."""
    if not seconds:
        return {"p50_ms": None, "p99_ms": None}
    a = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
    }


def recall_of(hits: list[list[Any]], truth: np.ndarray) -> float:
    """Mean recall@K of hit lists (ids = train rows) against the exact top-K ids."""
    found = sum(
        len({h.id for h in row[:K]} & set(truth[i, :K].tolist())) for i, row in enumerate(hits)
    )
    return found / (K * len(hits))


# --------------------------------------------------------------------------- data
def load_data(args: argparse.Namespace) -> dict[str, Any]:
    """The train vectors (first ``--limit``), the first ``--queries`` queries and their exact
    top-K ids (recomputed when limited)."""
    from bench.harness.datasets import ground_truth
    from bench.harness.sets import load_dataset

    ds = load_dataset(args.dataset)
    metric = METRICS[ds.distance]
    train = ds.train if not args.limit else ds.train[: args.limit]
    train = np.ascontiguousarray(train, dtype=np.float32)
    test = np.ascontiguousarray(ds.test[: args.queries], dtype=np.float32)
    if args.limit and args.limit < len(ds.train):
        progress(f"exact ground truth of {len(test)} queries over {len(train):,} vectors")
        truth, _ = ground_truth(train, test, K, metric)
        source = "recomputed: bench.harness.datasets.ground_truth (quiver.exact_search)"
    else:
        truth = np.asarray(ds.neighbors[: args.queries, :K])
        source = "the data set's neighbors"
    return {
        "train": train,
        "test": test,
        "truth": truth,
        "metric": metric,
        "full_train": int(len(ds.train)),
        "truth_source": source,
    }


# --------------------------------------------------------------------------- phases
@contextmanager
def loaded_cluster(
    train: np.ndarray,
    metric: str,
    shards: int,
    namespace: str,
    prefix: str,
    object_store_bytes: int = 256 << 20,
    name: str = "ab",
    batch: int = 5000,
) -> Iterator[tuple[Any, Any, Path]]:
    """A simulated Ray cluster of ``shards`` one-CPU nodes (``ray_sim.ray_session``, removed
    on exit) and a :class:`quiver.Cluster` on it (one search thread per node) holding
    ``train`` (ids = rows, upserted ``batch`` at a time) in collection ``name`` of ``shards``
    shards: yields
    ``(cluster, collection, temp)``, ``temp`` the session's directory (``prefix`` under /tmp)
    for the caller's other files."""
    temp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    with ray_sim.ray_session(shards, temp, namespace, object_store_bytes):
        import quiver

        cluster = quiver.Cluster(data_dir=temp / "data", namespace=namespace, num_threads=1)
        coll = cluster.create_collection(name, train.shape[1], metric, shards=shards)
        load(coll, train, batch)
        yield cluster, coll, temp


def load(coll: Any, train: np.ndarray, batch: int) -> float:
    """Seconds to upsert every train vector (ids = rows) in batches of ``batch``."""
    n = len(train)
    t0 = time.perf_counter()
    next_report = 0.1
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        coll.upsert(list(range(start, stop)), train[start:stop])
        if stop / n >= next_report:
            rate = stop / (time.perf_counter() - t0)
            progress(f"  loaded {stop:,}/{n:,} ({rate:,.0f} points/s)")
            next_report += 0.1
    return time.perf_counter() - t0


def ef_sweep(coll: Any, data: dict[str, Any], efs: list[int], repeats: int) -> list[dict]:
    """Per ef: recall@K of one untimed batch pass, then the median batch QPS of ``repeats``."""
    rows = []
    for ef in efs:
        hits = coll.search_batch(data["test"], k=K, ef=ef)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            coll.search_batch(data["test"], k=K, ef=ef)
            times.append(time.perf_counter() - t0)
        qps = len(data["test"]) / float(np.median(times))
        rows.append(
            {
                "ef": ef,
                "recall": round(recall_of(hits, data["truth"]), 5),
                "batch_qps": round(qps, 1),
            }
        )
        progress(f"  ef={ef}: recall@{K} {rows[-1]['recall']:.4f}, batch {qps:,.0f} QPS")
    return rows


def sequential(call: Callable[[int], Any], count: int, warmup: int = 20) -> dict[str, Any]:
    """p50/p99 of ``count`` calls ``call(i)`` one after the other (after ``warmup``)."""
    for i in range(warmup):
        call(i)
    seconds = []
    for i in range(count):
        t0 = time.perf_counter()
        call(i)
        seconds.append(time.perf_counter() - t0)
    return {"calls": count, **percentiles_ms(seconds)}


def concurrent(
    search: Callable[[np.ndarray], Any], queries: np.ndarray, clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` threads of single searches for ``seconds`` (after a short warm-up):
    completed searches per second, latency p50/p99, failures."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []

    def client(c: int, until: float, record: bool) -> None:
        i = c
        while time.monotonic() < until:
            t0 = time.perf_counter()
            try:
                search(queries[i % len(queries)])
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append(repr(exc))
            if record:
                latencies[c].append(time.perf_counter() - t0)
            i += clients

    def run(duration: float, record: bool) -> float:
        until = time.monotonic() + duration
        threads = [threading.Thread(target=client, args=(c, until, record)) for c in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    run(min(2.0, seconds / 5), record=False)
    elapsed = run(seconds, record=True)
    done = [s for per in latencies for s in per]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "searches": len(done),
        "qps": round(len(done) / elapsed, 1),
        "failures": len(failures),
        "failure_examples": failures[:3],
        **percentiles_ms(done),
    }


def seconds_until(attempt: Callable[[], Any], t0: float, timeout_s: float) -> dict[str, Any]:
    """Seconds from ``t0`` until ``attempt()`` first returns without raising (None after
    ``timeout_s``), and how many attempts failed before."""
    failed = 0
    while time.monotonic() - t0 < timeout_s:
        try:
            attempt()
            return {"s": round(time.monotonic() - t0, 3), "failed_attempts": failed}
        except Exception:  # noqa: BLE001 - the node is still down: try again
            failed += 1
            time.sleep(0.05)
    return {"s": None, "failed_attempts": failed}


def after_kill(
    kill: Callable[[], None], probes: dict[str, Callable[[], Any]], timeout_s: float
) -> dict[str, Any]:
    """Kill, then run every probe in its own thread from the kill on: seconds until each
    first succeeds (:func:`seconds_until`)."""
    results: dict[str, Any] = {}
    t0 = time.monotonic()
    kill()

    def probe(name: str) -> None:
        results[name] = seconds_until(probes[name], t0, timeout_s)

    threads = [threading.Thread(target=probe, args=(name,)) for name in probes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class Reader:
    """A thread of single searches, one after the other, until stopped: each search's start
    (monotonic), latency and whether it failed; :meth:`window` summarises a time range."""

    def __init__(self, search: Callable[[], Any]) -> None:
        self._search = search
        self._stop = threading.Event()
        self.records: list[tuple[float, float, bool]] = []
        self.failures: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self._search()
                ok = True
            except Exception as exc:  # noqa: BLE001 - counted
                ok = False
                self.failures.append((t0, repr(exc)[:300]))
            self.records.append((t0, time.monotonic() - t0, ok))

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, start: float, stop: float) -> dict[str, Any]:
        rows = [r for r in self.records if start <= r[0] < stop]
        return {
            "searches": len(rows),
            "failed": sum(1 for r in rows if not r[2]),
            "failure_examples": [e for t, e in self.failures if start <= t < stop][:3],
            **percentiles_ms([r[1] for r in rows]),
        }


def medians(reps: list[dict[str, Any]]) -> dict[str, float | None]:
    """Median seconds over repetitions of each probe and of ``in_sync_again_s`` (None when a
    repetition timed out)."""
    out: dict[str, float | None] = {}
    for name, value in (reps[0] if reps else {}).items():
        if isinstance(value, dict) and "s" in value:
            values = [r[name]["s"] for r in reps]
        elif name == "in_sync_again_s":
            values = [r[name] for r in reps]
        else:
            continue
        median = None if None in values else round(float(np.median(values)), 3)
        out[f"{name.removesuffix('_s')}_median_s"] = median
    return out


def restarts(
    cluster: Any, coll: Any, data: dict[str, Any], args: argparse.Namespace, rng: random.Random
) -> dict[str, Any]:
    """Kill a random node actor ``--restarts`` times (every replica serving again before the
    next): seconds until a search succeeds and a write is acknowledged."""
    ids = list(range(min(16 * coll.shards, len(data["train"]))))
    probes = {
        "search": lambda: coll.search(data["test"][0], k=K),
        "write": lambda: coll.upsert(ids, data["train"][ids]),
    }
    reps = []
    for r in range(args.restarts):
        victim = rng.choice(cluster.nodes)
        rep = after_kill(
            lambda v=victim: ray_sim.kill_node(v, NAMESPACE), probes, args.recovery_timeout
        )
        rep["in_sync_again_s"] = round(
            ray_sim.wait_in_sync(cluster, coll.name, args.recovery_timeout), 2
        )
        rep["node"] = victim
        reps.append(rep)
        progress(
            f"  restart {r + 1}: search back {rep['search']['s']} s, write back "
            f"{rep['write']['s']} s, all replicas serving +{rep['in_sync_again_s']} s"
        )
    return {"repetitions": reps, **medians(reps)}


def failover(cluster: Any, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A new collection of ``--failover-shards`` shards x 2 replicas; kill the node of shard
    0's primary ``--restarts`` times while a thread searches: seconds until a write to every
    shard is acknowledged again; the searches from the kill until every replica serves again
    (failed, p50/p99)."""
    name = "failover"
    train = data["train"][: args.failover_points]
    coll = cluster.create_collection(
        name, train.shape[1], data["metric"], shards=args.failover_shards, replicas=2
    )
    load(coll, train, args.batch)
    ray_sim.wait_in_sync(cluster, name, args.recovery_timeout)
    ids = list(range(min(16 * coll.shards, len(train))))
    probes = {"write": lambda: coll.upsert(ids, train[ids])}
    reps = []
    with Reader(lambda: coll.search(data["test"][0], k=K)) as reader:
        for r in range(args.restarts):
            primary = cluster.cluster_info()["collections"][name]["shards"][0]["primary"]
            t0 = time.monotonic()
            rep = after_kill(
                lambda p=primary: ray_sim.kill_node(p, NAMESPACE), probes, args.recovery_timeout
            )
            rep["in_sync_again_s"] = round(
                ray_sim.wait_in_sync(cluster, name, args.recovery_timeout), 2
            )
            rep["searches_until_in_sync"] = reader.window(t0, time.monotonic())
            rep["killed_primary_node"] = primary
            reps.append(rep)
            w = rep["searches_until_in_sync"]
            progress(
                f"  failover {r + 1}: write back {rep['write']['s']} s; searches meanwhile "
                f"{w['searches']} ({w['failed']} failed, p99 {w['p99_ms']} ms); all replicas "
                f"serving after {rep['in_sync_again_s']} s more"
            )
    cluster.drop_collection(name)
    return {
        "points": len(train),
        "shards": args.failover_shards,
        "replicas": 2,
        "repetitions": reps,
        **medians(reps),
        "searches_failed": sum(r["searches_until_in_sync"]["failed"] for r in reps),
    }


def measure(coll: Any, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Load, the ef sweep, one query at a time and ``--clients`` concurrent clients."""
    out: dict[str, Any] = {"load_s": round(load(coll, data["train"], args.batch), 2)}
    out["load_points_per_s"] = round(len(data["train"]) / out["load_s"], 1)
    progress(f"  loaded in {out['load_s']} s; count {coll.count():,}")
    out["ef_sweep"] = ef_sweep(coll, data, args.efs, args.repeats)
    queries = data["test"]
    out["single_query"] = sequential(
        lambda i: coll.search(queries[i % len(queries)], k=K), args.single
    )
    progress(
        f"  one query at a time: p50 {out['single_query']['p50_ms']} ms, "
        f"p99 {out['single_query']['p99_ms']} ms"
    )
    out["concurrent"] = concurrent(
        lambda q: coll.search(q, k=K), queries, args.clients, args.seconds
    )
    progress(
        f"  {args.clients} clients: {out['concurrent']['qps']:,.0f} QPS, "
        f"p50 {out['concurrent']['p50_ms']} ms, p99 {out['concurrent']['p99_ms']} ms, "
        f"{out['concurrent']['failures']} failures"
    )
    return out


# --------------------------------------------------------------------------- systems
def run_embedded(data: dict[str, Any], args: argparse.Namespace, temp: Path) -> dict[str, Any]:
    import quiver

    progress(f"embedded: quiver.Database, {args.threads} threads")
    path = temp / "embedded"
    db = quiver.Database(path, num_threads=args.threads)
    try:
        coll = db.create_collection("bench", data["train"].shape[1], data["metric"])
        out = {
            "system": "embedded",
            "shards": 0,
            "threads": args.threads,
            **measure(coll, data, args),
        }
    finally:
        db.close()
    t0 = time.monotonic()
    db = quiver.Database(path, num_threads=args.threads)
    db.get_collection("bench").search(data["test"][0], k=K)
    out["reopen_and_search_s"] = round(time.monotonic() - t0, 3)
    db.close()
    progress(f"  reopened and searched in {out['reopen_and_search_s']} s")
    shutil.rmtree(path, ignore_errors=True)
    return out


def node_ping(cluster: Any) -> Callable[[int], Any]:
    """One bare call to a data node actor (round-robin over the nodes)."""
    import ray

    from quiver.cluster.calls import node_actor_name

    handles = [ray.get_actor(node_actor_name(n), namespace=NAMESPACE) for n in cluster.nodes]
    return lambda i: ray.get(handles[i % len(handles)].ping.remote())


def run_cluster(
    shards: int, data: dict[str, Any], args: argparse.Namespace, temp: Path, rng: random.Random
) -> dict[str, Any]:

    import quiver
    import quiver.cluster

    threads = max(1, args.threads // shards)
    progress(f"{shards} shard(s): {shards} simulated Ray node(s), {threads} thread(s) each")
    ray_temp = temp / f"r{shards}"
    with ray_sim.ray_session(shards, ray_temp, NAMESPACE, args.object_store_mb << 20):
        cluster = quiver.Cluster(
            data_dir=ray_temp / "data", namespace=NAMESPACE, num_threads=threads
        )
        coll = cluster.create_collection(
            "bench", data["train"].shape[1], data["metric"], shards=shards, replicas=1
        )
        out = {
            "system": f"{shards} shard{'s' if shards > 1 else ''}",
            "shards": shards,
            "threads_per_node": threads,
            **measure(coll, data, args),
        }
        out["bare_actor_call"] = sequential(node_ping(cluster), args.single)
        progress(f"  bare actor call: p50 {out['bare_actor_call']['p50_ms']} ms")
        if args.restarts:
            out["restart"] = restarts(cluster, coll, data, args, rng)
        if shards == args.failover_shards and args.restarts:
            cluster.drop_collection("bench")
            out["failover"] = failover(cluster, data, args)
    return out


# --------------------------------------------------------------------------- derived
def sweep_row(system: dict[str, Any], ef: int) -> dict[str, Any] | None:
    return next((r for r in system["ef_sweep"] if r["ef"] == ef), None)


def ef_rule(systems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cluster: the smallest swept request ef whose recall reaches the embedded recall at
    ef 64, and the per-shard ef it means, next to what the rule gives at the default ef."""
    from quiver.cluster.merge import shard_ef

    embedded = next(s for s in systems if s["shards"] == 0)
    reference = sweep_row(embedded, REFERENCE_EF)
    rows = []
    for s in systems:
        if not s["shards"] or reference is None:
            continue
        enough = [r for r in s["ef_sweep"] if r["recall"] >= reference["recall"]]
        best = min(enough, key=lambda r: r["ef"]) if enough else None
        matched = shard_ef(best["ef"], K, s["shards"]) if best else None
        rows.append(
            {
                "shards": s["shards"],
                "embedded_recall_at_ef64": reference["recall"],
                "smallest_swept_ef": best["ef"] if best else None,
                "its_recall": best["recall"] if best else None,
                "its_shard_ef": matched,
                "rule_shard_ef_at_default": shard_ef(None, K, s["shards"]),
                "exponent_that_matches": (
                    round(math.log(REFERENCE_EF / matched) / math.log(s["shards"]), 3)
                    if matched and s["shards"] > 1
                    else None
                ),
            }
        )
    return rows


def acceptance(systems: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Issue 16 on 2 shards vs embedded at the default ef (64): recall >= embedded recall at
    ef 64; batch QPS >= 0.7x; 16-client QPS >= 0.5x."""
    embedded = next((s for s in systems if s["shards"] == 0), None)
    two = next((s for s in systems if s["shards"] == 2), None)
    if embedded is None or two is None:
        return None
    e, c = sweep_row(embedded, REFERENCE_EF), sweep_row(two, REFERENCE_EF)
    if e is None or c is None:
        return None
    batch = c["batch_qps"] / e["batch_qps"]
    single = two["concurrent"]["qps"] / embedded["concurrent"]["qps"]
    return {
        "recall_2_shards_default_ef": c["recall"],
        "recall_embedded_ef64": e["recall"],
        "recall_met": c["recall"] >= e["recall"],
        "batch_qps_ratio": round(batch, 3),
        "batch_met": batch >= 0.7,
        "concurrent_qps_ratio": round(single, 3),
        "concurrent_met": single >= 0.5,
        "clients": two["concurrent"]["clients"],
    }


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def summary(result: dict[str, Any]) -> str:
    """The markdown summary of a result."""
    lines = [
        f"# Cluster scaling: {result['data']['dataset']}",
        "",
        f"`{result['command']}`",
        "",
        f"{result['data']['train']:,} vectors x {result['data']['dim']}, "
        f"{result['data']['queries']} queries, k={K}; {result['machine']['cpus']} CPUs, "
        f"load average {result['machine']['loadavg_1_5_15_start']} at start, "
        f"{result['machine'].get('loadavg_1_5_15_end')} at end; wall {result.get('wall_s')} s.",
        "",
        "| system | load s | ef | shard ef | recall@10 | batch QPS |",
        "|---|---|---|---|---|---|",
    ]
    from quiver.cluster.merge import shard_ef

    for s in result["systems"]:
        for r in s["ef_sweep"]:
            per = shard_ef(r["ef"], K, s["shards"]) if s["shards"] else r["ef"]
            lines.append(
                f"| {s['system']} | {s['load_s']} | {r['ef']} | {per} | {r['recall']:.4f} | "
                f"{r['batch_qps']:,.0f} |"
            )
    lines += [
        "",
        "Default ef: one query at a time, concurrent clients, the bare Ray call:",
        "",
        "| system | single p50 ms | single p99 ms | clients | QPS | p50 ms | p99 ms | failures "
        "| actor call p50 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["systems"]:
        c, q = s["concurrent"], s["single_query"]
        ping = s.get("bare_actor_call", {}).get("p50_ms", "")
        lines.append(
            f"| {s['system']} | {q['p50_ms']} | {q['p99_ms']} | {c['clients']} | "
            f"{c['qps']:,.0f} | {c['p50_ms']} | {c['p99_ms']} | {c['failures']} | {ping} |"
        )
    lines += [
        "",
        "Restart (replicas 1; medians, seconds from the kill) and failover (2 replicas):",
        "",
    ]
    for s in result["systems"]:
        if "reopen_and_search_s" in s:
            lines.append(f"* embedded: reopen and first search {s['reopen_and_search_s']} s")
        if "restart" in s:
            r = s["restart"]
            lines.append(
                f"* {s['system']}: search back {r.get('search_median_s')} s, write "
                f"acknowledged {r.get('write_median_s')} s ({len(r['repetitions'])} kills)"
            )
        if "failover" in s:
            f = s["failover"]
            lines.append(
                f"* {s['system']} x 2 replicas ({f['points']:,} points): primary's node "
                f"killed, write acknowledged {f.get('write_median_s')} s, "
                f"{f['searches_failed']} failed searches "
                f"({len(f['repetitions'])} kills)"
            )
    lines += [
        "",
        "ef rule at scale (smallest swept ef reaching the embedded recall at ef 64):",
        "",
        "| shards | embedded recall@ef64 | smallest ef | its recall | its shard ef | rule's shard "
        "ef at default | exponent that matches |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["ef_rule"]:
        lines.append(
            f"| {r['shards']} | {r['embedded_recall_at_ef64']} | {r['smallest_swept_ef']} | "
            f"{r['its_recall']} | {r['its_shard_ef']} | {r['rule_shard_ef_at_default']} | "
            f"{r['exponent_that_matches']} |"
        )
    a = result.get("acceptance")
    if a:
        lines += [
            "",
            "Acceptance (issue 16, 2 shards vs embedded at the default ef):",
            "",
            f"* recall@10 {a['recall_2_shards_default_ef']} vs {a['recall_embedded_ef64']} "
            f"embedded at ef 64: {verdict(a['recall_met'])}",
            f"* batch QPS ratio {a['batch_qps_ratio']} (>= 0.7: {verdict(a['batch_met'])})",
            f"* {a['clients']}-client QPS ratio {a['concurrent_qps_ratio']} (>= 0.5: "
            f"{verdict(a['concurrent_met'])})",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",") if v.strip()]

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default=DEFAULT_DATASET)
    ap.add_argument("--limit", type=int, default=0, help="first N train vectors (0: all)")
    ap.add_argument("--shards", type=ints, default=[1, 2, 4], help="e.g. 1,2,4")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--efs", type=ints, default=[16, 24, 32, 48, 64, 96, 128])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0, help="per concurrent phase")
    ap.add_argument("--repeats", type=int, default=3, help="timed batch passes per ef")
    ap.add_argument("--single", type=int, default=300, help="sequential single searches")
    ap.add_argument("--batch", type=int, default=5000, help="points per upsert")
    ap.add_argument("--restarts", type=int, default=3, help="kills per restart/failover phase")
    ap.add_argument("--failover-shards", type=int, default=2)
    ap.add_argument("--failover-points", type=int, default=20000)
    ap.add_argument("--recovery-timeout", type=float, default=300.0)
    ap.add_argument("--object-store-mb", type=int, default=256, help="per simulated node")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/cluster-scaling.json")
    args = ap.parse_args(argv)
    if REFERENCE_EF not in args.efs:
        ap.error(f"--efs must include {REFERENCE_EF} (the default ef and the reference)")
    if args.failover_shards and args.failover_shards not in args.shards:
        ap.error(f"--failover-shards {args.failover_shards} is not among --shards {args.shards}")
    return args


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.update(thread_env(args.threads))  # before numba loads (quiver imports it)
    ray_sim.bind_loopback()
    import ray

    import quiver

    started = time.time()
    result: dict[str, Any] = {
        "command": " ".join(
            [
                "python -m bench.measure.cluster_scaling",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "args": vars(args),
        "commit": git_commit(),
        "versions": {"quiver": quiver.__version__, "ray": ray.__version__, "numpy": np.__version__},
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1_5_15_start": [round(v, 2) for v in os.getloadavg()],
            "shared": "other jobs may run at the same time: the load averages say how busy",
        },
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    progress(f"loading {args.dataset}")
    data = load_data(args)
    result["data"] = {
        "dataset": args.dataset,
        "train": len(data["train"]),
        "of": data["full_train"],
        "dim": int(data["train"].shape[1]),
        "queries": len(data["test"]),
        "metric": data["metric"],
        "ground_truth": data["truth_source"],
    }
    temp = Path(tempfile.mkdtemp(prefix="qs-"))
    rng = random.Random(args.seed)
    systems = []
    try:
        systems.append(run_embedded(data, args, temp))
        for shards in args.shards:
            systems.append(run_cluster(shards, data, args, temp, rng))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    result["systems"] = systems
    result["ef_rule"] = ef_rule(systems)
    result["acceptance"] = acceptance(systems)
    result["machine"]["loadavg_1_5_15_end"] = [round(v, 2) for v in os.getloadavg()]
    result["wall_s"] = round(time.time() - started, 1)
    text = summary(result)
    print(text, flush=True)
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps(result, indent=1) + "\n")
        out.with_suffix(".md").write_text(text)
        progress(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
