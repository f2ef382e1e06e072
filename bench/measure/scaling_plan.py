"""The 100M x 768 plan on paper (docs/SCALING.md), computed from committed measurements.

    python -m bench.measure.scaling_plan              # prints the plan as markdown
    python -m bench.measure.scaling_plan --shards 16 --nodes 16

Inputs, each read from a committed result file (the file and its command are printed beside
every figure):

* hot bytes per vector (codes + adjacency + degrees + labels + live flags) and the build time
  of one index: the harness runs of quiver on the 562k and 181k MiniLM sets
  (``bench/results/<set>/quiver-t1.json``, ``-t2.json``);
* recall and code distances per query at ef 32/64/128 on 1.12M points
  (``bench/results/million.jsonl``) and QPS with the float file cached vs evicted
  (``bench/results/rerank-cache-minilm-text-562k.jsonl``);
* the cluster's fan-out and hop costs from ``bench/results/cluster-scaling.json`` when it
  exists.

What is computed rather than measured (printed as such): the code bytes at 768 dimensions
(``quiver.engine.bq.code_bytes``: 2 bits per dimension, the rest of the hot set does not depend
on the dimension), the build throughput at the shard size (the measured per-core throughput,
its measured decline with n carried on as a power law, and 768-d code distances assumed to cost
``--dim-cost`` times the 384-d ones), rerank reads per query (``ef`` rows per shard; a float row
of ``4 * dim`` bytes spans 1 or 2 pages) and the IOPS they make when floats are not cached.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from bench.paths import RESULTS_DIR

PAGE = 4096


def harness_row(dataset: str, threads: int) -> dict[str, Any]:
    """The first row of quiver's harness result for ``dataset`` at ``threads`` threads."""
    path = RESULTS_DIR / dataset / f"quiver-t{threads}.json"
    row = json.loads(path.read_text())["rows"][0]
    return {**row, "file": str(path.relative_to(RESULTS_DIR.parent.parent))}


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pages_per_row(dim: int) -> float:
    """Mean 4 KiB pages one float32 row of ``dim`` values touches, rows packed back to back."""
    size = 4 * dim
    starts = [(i * size) % PAGE for i in range(PAGE // math.gcd(size, PAGE))]
    return sum((s + size - 1) // PAGE + 1 for s in starts) / len(starts)


def plan(args: argparse.Namespace) -> str:
    from quiver.cluster.merge import DEFAULT_EF_EXPONENT, shard_ef
    from quiver.engine.bq import code_bytes

    big = harness_row("minilm-text-562k-384-angular", 1)
    big2 = harness_row("minilm-text-562k-384-angular", 2)
    small = harness_row("minilm-wordnet-181k-384-angular", 1)
    hot_384 = big["hot_bytes"] / big["n_train"]
    hot = hot_384 - code_bytes(big["dim"]) + code_bytes(args.dim)
    float_row = 4 * args.dim
    per_shard = args.vectors / args.shards
    # build: per-core throughput at 562k (1 thread), its decline from 181k to 562k as a power law
    rate_big = big["n_train"] / big["build_s"]
    rate_small = small["n_train"] / small["build_s"]
    decline = math.log(rate_big / rate_small) / math.log(big["n_train"] / small["n_train"])
    speedup_2 = big["build_s"] / big2["build_s"]
    efficiency = speedup_2 / 2
    rate_shard_core = rate_big * (per_shard / big["n_train"]) ** decline / args.dim_cost
    rate_node = rate_shard_core * args.cores * efficiency
    build_s = per_shard / rate_node
    replicas_per_node = args.shards * args.replicas / args.nodes
    hot_node = replicas_per_node * per_shard * hot
    floats_node = replicas_per_node * per_shard * float_row
    ef_shard = shard_ef(args.ef, 10, args.shards)
    rows_query = args.shards * ef_shard
    pages = pages_per_row(args.dim)
    iops = rows_query * pages * args.qps
    # the last run's search rows, one per ef (the file holds every run)
    searches = [r for r in jsonl(RESULTS_DIR / "million.jsonl") if r.get("step") == "search"]
    million = list({r["ef"]: r for r in searches if "command" in r}.values())
    cache = jsonl(RESULTS_DIR / "rerank-cache-minilm-text-562k.jsonl")
    gb = 1e9
    lines = [
        f"Plan: {args.vectors / 1e6:.0f}M x {args.dim} vectors, {args.shards} shards x "
        f"{args.replicas} replicas on {args.nodes} nodes of {args.cores} cores "
        f"(`{args.command}`).",
        "",
        "| figure | value | source |",
        "|---|---|---|",
        f"| hot bytes per vector, 384-d (measured) | {hot_384:.1f} | `{big['file']}` "
        f"(hot_bytes / n_train; `{big['command']}`) |",
        f"| of which codes, 384-d / {args.dim}-d | {code_bytes(big['dim'])} / "
        f"{code_bytes(args.dim)} | `quiver.engine.bq.code_bytes` (2 bits per dimension) |",
        f"| hot bytes per vector, {args.dim}-d (computed) | {hot:.1f} | the above, codes "
        f"replaced (adjacency of max_degree 64 x 4 B, degrees, labels, flags unchanged) |",
        f"| float bytes per vector, {args.dim}-d | {float_row} | float32 |",
        f"| hot set, all {args.vectors / 1e6:.0f}M (one copy) | "
        f"{args.vectors * hot / gb:.1f} GB | computed |",
        f"| floats, all (one copy, on SSD) | {args.vectors * float_row / gb:.1f} GB | computed |",
        f"| points per shard | {per_shard / 1e6:.1f}M | {args.vectors:,.0f} / {args.shards} |",
        f"| shard replicas per node | {replicas_per_node:g} | shards x replicas / nodes |",
        f"| hot set per node (RAM, must stay resident) | {hot_node / gb:.1f} GB | computed |",
        f"| floats per node (SSD; RAM left over caches them) | {floats_node / gb:.1f} GB | "
        f"computed |",
        f"| build throughput, 1 core, 384-d, 562k (measured) | {rate_big:,.0f} vectors/s | "
        f"`{big['file']}` (n_train / build_s) |",
        f"| build throughput, 1 core, 384-d, 181k (measured) | {rate_small:,.0f} vectors/s | "
        f"`{small['file']}` (`{small['command']}`) |",
        f"| throughput decline with n (power law through the two) | n^{decline:.3f} | "
        f"computed (an extrapolation far past 562k) |",
        f"| 2-thread build speedup at 562k (measured) | {speedup_2:.2f}x | `{big2['file']}` |",
        f"| build throughput per node at {per_shard / 1e6:.1f}M, {args.dim}-d (extrapolated) | "
        f"{rate_node:,.0f} vectors/s | x {args.cores} cores x {efficiency:.2f} efficiency, "
        f"/ {args.dim_cost:g} for {args.dim}-d code distances (assumed) |",
        f"| build time of the cluster (shards in parallel; replicas by snapshot copy) | "
        f"{build_s / 60:.0f} min | extrapolated |",
        f"| per-shard ef at request ef {args.ef} | {ef_shard} | "
        f"`quiver.cluster.merge.shard_ef` (ef / S ** {DEFAULT_EF_EXPONENT:g}) |",
        f"| rerank rows per query, all shards | {rows_query} (one index: {args.ef}) | "
        f"shards x per-shard ef (rerank = ef) |",
        f"| 4 KiB pages per float row, {args.dim}-d | {pages:.2f} | rows packed back to back |",
        f"| random reads at {args.qps:,} QPS, floats not cached | {iops:,.0f} IOPS in all, "
        f"{iops / args.nodes:,.0f} per node | rows x pages x QPS |",
    ]
    for r in million:
        lines.append(
            f"| {r.get('set', 'the 1.12M set')}, ef {r['ef']} (measured) | "
            f"recall@10 {r['recall_at_10']}, "
            f"{r['code_distances_per_query']:,} code distances per query | "
            f"`bench/results/million.jsonl` (`{r['command']}`) |"
        )
    for r in cache:
        lines.append(
            f"| 562k x 384, ef {r['ef']}: QPS floats cached / evicted (measured, 2 threads) | "
            f"{r['qps_warm']:,} / {r['qps_cold']:,} | "
            f"`bench/results/rerank-cache-minilm-text-562k.jsonl` (`{r['command']}`) |"
        )
    scaling = RESULTS_DIR / "cluster-scaling.json"
    if scaling.is_file():
        result = json.loads(scaling.read_text())
        for s in result["systems"]:
            hop = s.get("bare_actor_call", {}).get("p50_ms")
            lines.append(
                f"| {s['system']}, {result['data']['dataset']}: one query p50 / bare actor "
                f"call p50 (measured) | {s['single_query']['p50_ms']} ms / {hop} ms | "
                f"`bench/results/cluster-scaling.json` (`{result['command']}`) |"
            )
    else:
        lines.append(
            "| fan-out and hop costs (cluster-scaling) | pending | "
            "`bench/results/cluster-scaling.json` not committed yet |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vectors", type=float, default=100e6)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--cores", type=int, default=16, help="per node")
    ap.add_argument("--ef", type=int, default=64, help="the request's ef")
    ap.add_argument("--qps", type=int, default=1000, help="cluster-wide queries per second")
    ap.add_argument(
        "--dim-cost", type=float, default=2.0,
        help="build cost of a 768-d code distance vs a 384-d one (assumed: codes twice as long)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    import sys

    given = argv if argv is not None else sys.argv[1:]
    args.command = " ".join(["python -m bench.measure.scaling_plan", *given])
    print(plan(args), end="")


if __name__ == "__main__":
    main()
