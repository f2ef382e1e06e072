"""The serving levers A/B in one run: the lean query path and the micro-batcher on and off.

::

    python -m bench.measure.serving_ab                 # -> bench/results/serving-ab.json
    python -m bench.measure.serving_ab --rounds 3 --seconds 10 --queries 1500

Loads the bundled 20k slice once, then for ``--rounds`` rounds starts ``quiver serve`` on it
in each variant in turn (alternating, so that the machine's load drifts across all of them):

- ``plain``: ``QUIVER_LEAN_QUERIES=false`` and libgomp's spinning workers
  (``GOMP_SPINCOUNT=300000``, its default): the server before these levers;
- ``lean_spinning``: the lean path and the micro-batcher, with spinning workers;
- ``lean_unbatched``: the lean path, ``QUIVER_QUERY_BATCHING=false``;
- ``lean``: the lean path with the micro-batcher and sleeping workers (the defaults).

Each variant answers one client sending ``--queries`` single queries (k=10, ef=64, a
pre-encoded JSON body, keep-alive; wall p50/p99) and then the ``bench.measure.http_load``
mix from ``--clients`` clients for ``--seconds``. Besides wall-clock figures it records the
server process's CPU time per request (user + system, from ``/proc``): that is far less
sensitive than latency to other work on a shared machine. The embedded throughput of the same
mix (``bench.measure.http_load.run_embedded``, unchanged) is measured in every round too, and
the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import quiver
from bench.demo.tour import COLLECTION, load_wordnet
from bench.harness.bundled import load_wordnet_slice
from bench.measure.http_latency import WARMUP, _raw_latencies, percentiles
from bench.measure.http_load import (
    Mix,
    _http_load,
    load_average,
    process_cpu_seconds,
    run_embedded,
)
from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "serving-ab.json"
#: libgomp's own default: its workers spin after each parallel region (the server's default
#: before it set OMP_WAIT_POLICY=PASSIVE).
SPINNING = {"GOMP_SPINCOUNT": "300000"}
VARIANTS: dict[str, dict[str, str]] = {
    "plain": {"QUIVER_LEAN_QUERIES": "false"} | SPINNING,
    "lean_spinning": SPINNING,
    "lean_unbatched": {"QUIVER_QUERY_BATCHING": "false"},
    "lean": {},
}
#: The variants run unless --variants says otherwise.
DEFAULT_VARIANTS = list(VARIANTS)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far (needs /proc)."""
    seconds = process_cpu_seconds(pid)
    if seconds is None:
        raise RuntimeError("the server's CPU time is read from /proc, which this OS lacks")
    return seconds


def _batch_sizes(url: str) -> dict[str, float]:
    """The micro-batcher's histogram: engine calls and the queries they answered."""
    import httpx

    out = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        for key in ("count", "sum"):
            if line.startswith(f"quiver_query_batch_size_{key} "):
                out[key] = float(line.split()[1])
    return out


def run_variant(
    db_dir: Path, log: Path, env: dict[str, str], bodies: list[bytes], mix: Mix, args: Any
) -> dict[str, Any]:
    """One variant's single-client and many-client figures."""
    from quiver.server.process import running_server

    with running_server(db_dir, log, args=["--no-access-log"], env=env) as srv:
        pid = srv.proc.pid
        cpu0 = cpu_seconds(pid)
        single = asyncio.run(_raw_latencies(srv.url, bodies))  # after WARMUP untimed ones
        single_cpu = (cpu_seconds(pid) - cpu0) * len(single) / (len(single) + WARMUP)
        before = _batch_sizes(srv.url)
        cpu0 = cpu_seconds(pid)
        tally = asyncio.run(_http_load(srv.url, mix, args.clients, args.seconds, 2_000_000))
        load_cpu = cpu_seconds(pid) - cpu0
        after = _batch_sizes(srv.url)
    summary = tally.summary()
    calls = after.get("count", 0) - before.get("count", 0)
    answered = after.get("sum", 0) - before.get("sum", 0)
    return {
        "single": percentiles(single)
        | {"server_cpu_us_per_query": round(single_cpu / len(single) * 1e6, 1)},
        "load": {
            "rps": summary["rps"],
            "errors": summary["errors"],
            "query_p50_ms": summary.get("query", {}).get("p50_ms"),
            "server_cpu_us_per_request": round(load_cpu / max(summary["requests"], 1) * 1e6, 1),
            "queries_per_engine_call": round(answered / calls, 2) if calls else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=1500, help="single-client queries")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="many-client load per run")
    parser.add_argument("--embedded-seconds", type=float, default=5.0)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    data = load_wordnet_slice()
    rng = np.random.default_rng(0)
    queries = data.test[rng.integers(0, len(data.test), args.queries)]
    bodies = [orjson.dumps({"vector": q.tolist(), "k": 10, "ef": 64}) for q in queries]
    mix = Mix(data.test, 0.1, seed=0)
    load_before = load_average()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="quiver-serving-ab-") as tmp:
        db_dir = Path(tmp) / "db"
        quiver.warmup()
        with quiver.Database(db_dir) as db:
            load_wordnet(db, COLLECTION, batch_size=2000)
        for r in range(args.rounds):
            row: dict[str, Any] = {"load_average": load_average()}
            embedded = run_embedded(db_dir, mix, args.clients, args.embedded_seconds, 2_000_000)
            row["embedded_rps"] = embedded.summary()["rps"]
            order = args.variants if r % 2 == 0 else args.variants[::-1]
            for name in order:
                row[name] = run_variant(
                    db_dir, Path(tmp) / "server.log", VARIANTS[name], bodies, mix, args
                )
                print(f"round {r} {name}: {json.dumps(row[name])}", flush=True)
            rounds.append(row)
    result = {
        "data": "minilm-wordnet-21k (20,000 x 384, cosine) + payloads; k=10, ef=64",
        "variants": {name: VARIANTS[name] for name in args.variants},
        "clients": args.clients,
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "rounds": rounds,
        "median": _medians(rounds, args.variants),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"], indent=2))


def _medians(rounds: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Per variant, the median over rounds of each figure, and each variant's many-client
    throughput over the embedded throughput of its round."""

    def med(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return round(float(np.median(kept)), 3) if kept else None

    out: dict[str, Any] = {"embedded_rps": med([r["embedded_rps"] for r in rounds])}
    for name in variants:
        out[name] = {
            "single_p50_ms": med([r[name]["single"]["p50_ms"] for r in rounds]),
            "single_p99_ms": med([r[name]["single"]["p99_ms"] for r in rounds]),
            "single_server_cpu_us": med(
                [r[name]["single"]["server_cpu_us_per_query"] for r in rounds]
            ),
            "load_rps": med([r[name]["load"]["rps"] for r in rounds]),
            "load_over_embedded": med([r[name]["load"]["rps"] / r["embedded_rps"] for r in rounds]),
            "load_server_cpu_us": med(
                [r[name]["load"]["server_cpu_us_per_request"] for r in rounds]
            ),
            "queries_per_engine_call": med(
                [r[name]["load"]["queries_per_engine_call"] for r in rounds]
            ),
            "errors": sum(r[name]["load"]["errors"] for r in rounds),
        }
    return out


if __name__ == "__main__":
    main()
