"""CPU per query of grouped searches with libgomp's workers spinning or sleeping.

    python -m bench.experiments.omp_wait_policy      # -> bench/results/omp-wait-policy.json

The server groups concurrent queries into one ``Collection.query`` (``server/batcher.py``);
the engine runs a group of more than one query in a parallel (OpenMP) kernel. After each
parallel call, libgomp's workers spin for a while (``GOMP_SPINCOUNT``, 300,000 by default)
waiting for the next one; ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep. This loads the bundled
20k slice into a temporary collection and, in a child process per policy (libgomp reads the
variable when it loads), times 512 queries (k=10, ef=64) one by one and in groups of 2, 4, 8
and 16: process CPU time (all threads, the spinning included) and wall time per query.
Each round starts with a different policy, so that all see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "omp-wait-policy.json"
#: Environment of each child (both variables removed first): libgomp's default, its default
#: spin count set explicitly (how bench.measure.serving_ab asks for spinning), and sleeping.
POLICIES: dict[str, dict[str, str]] = {
    "unset (libgomp default)": {},
    "GOMP_SPINCOUNT=300000": {"GOMP_SPINCOUNT": "300000"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
}
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
GROUPS = (1, 2, 4, 8, 16)


def measure(db_dir: Path) -> dict[str, Any]:
    """In this process: CPU and wall microseconds per query for each group size."""
    import quiver
    from bench.demo.tour import COLLECTION
    from bench.harness.bundled import load_wordnet_slice

    queries = load_wordnet_slice().test[:512]
    out: dict[str, Any] = {}
    with quiver.Database(db_dir) as db:
        coll = db.get_collection(COLLECTION)
        for q in queries[:50]:
            coll.search(q, k=10, ef=64)
        coll.search_batch(queries[:8], k=10, ef=64)
        for g in GROUPS:
            wall, cpu = time.perf_counter(), time.process_time()
            if g == 1:
                for q in queries:
                    coll.search(q, k=10, ef=64)
            else:
                for i in range(0, len(queries), g):
                    coll.search_batch(queries[i : i + g], k=10, ef=64)
            n = len(queries)
            out[str(g)] = {
                "cpu_us_per_query": round((time.process_time() - cpu) / n * 1e6, 1),
                "wall_us_per_query": round((time.perf_counter() - wall) / n * 1e6, 1),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return

    import quiver
    from bench.demo.tour import COLLECTION, load_wordnet
    from bench.measure.http_load import load_average

    load_before = load_average()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="quiver-omp-") as tmp:
        db_dir = Path(tmp) / "db"
        with quiver.Database(db_dir) as db:
            load_wordnet(db, COLLECTION, batch_size=2000)
        for r in range(args.rounds):
            row = {}
            names = list(POLICIES)[r % len(POLICIES) :] + list(POLICIES)[: r % len(POLICIES)]
            for name in names:
                env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
                env |= POLICIES[name]
                cmd = [sys.executable, "-m", "bench.experiments.omp_wait_policy", "--child"]
                done = subprocess.run(
                    [*cmd, str(db_dir)], env=env, capture_output=True, text=True, check=True
                )
                row[name] = json.loads(done.stdout.strip().splitlines()[-1])
            rounds.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "data": "minilm-wordnet-21k (20,000 x 384, cosine); 512 queries, k=10, ef=64",
        "median_cpu_us_per_query": {
            name: {
                g: round(float(np.median([r[name][g]["cpu_us_per_query"] for r in rounds])), 1)
                for g in map(str, GROUPS)
            }
            for name in POLICIES
        },
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
