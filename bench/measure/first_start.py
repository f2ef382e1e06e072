"""First start: seconds from launching ``quiver serve`` to ``/readyz`` 200, cold and warm.

::

    python -m bench.measure.first_start            # -> bench/results/first-start.json

The cold run points ``NUMBA_CACHE_DIR`` at an empty directory (every kernel the start-up needs
compiles, as on a fresh clone); the warm runs reuse it. The database holds one collection of
2,000 x 384 points with payloads, made beforehand. After ready, the first query and the first
upsert are timed too (whatever was left to compile on first use shows there). The load
average is recorded: compile times scale with the CPU left over.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import quiver
from bench.measure.http_latency import load_average
from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "first-start.json"
DIM = 384


def _make_db(db_dir: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, DIM), dtype=np.float32)
    with quiver.Database(db_dir) as db:
        coll = db.create_collection("docs", DIM, "cosine")
        coll.upsert(list(range(2000)), x, [{"n": i, "pos": "noun"} for i in range(2000)])
    return x


def _warmup_seconds(log: Path) -> float | None:
    """``warmup_s`` of the server's "ready" log record."""
    for line in log.read_text(errors="replace").splitlines():
        if '"ready"' in line and "warmup_s" in line:
            found = re.search(r'"warmup_s": ?([0-9.]+)', line)
            return float(found.group(1)) if found else None
    return None


def _one_start(db_dir: Path, x: np.ndarray, cache: str, log: Path) -> dict[str, Any]:
    from quiver.client import Client
    from quiver.server.process import start_server

    t0 = time.perf_counter()
    server = start_server(db_dir, log, args=["--no-access-log"], env={"NUMBA_CACHE_DIR": cache})
    ready = time.perf_counter() - t0
    try:
        with Client(server.url) as client:
            coll = client.get_collection("docs")
            t = time.perf_counter()
            coll.search(x[0], k=10, ef=64)
            first_query = time.perf_counter() - t
            t = time.perf_counter()
            coll.upsert([10_000], x[1:2], [{"n": -1}])
            first_upsert = time.perf_counter() - t
    finally:
        server.stop()
    return {
        "readyz_s": round(ready, 2),
        "server_warmup_s": _warmup_seconds(log),
        "first_query_s": round(first_query, 3),
        "first_upsert_s": round(first_upsert, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = []
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="quiver-first-start-") as tmp:
        db_dir = Path(tmp) / "db"
        x = _make_db(db_dir)
        cache = str(Path(tmp) / "numba-cache")
        os.makedirs(cache)
        for i, kind in enumerate(["cold"] + ["warm"] * args.warm_runs):
            run = {"cache": kind, **_one_start(db_dir, x, cache, Path(tmp) / f"server{i}.log")}
            print(json.dumps(run), flush=True)
            runs.append(run)
    result = {
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cores": os.cpu_count(),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
