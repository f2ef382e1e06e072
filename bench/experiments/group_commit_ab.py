"""Group commit on and off: the embedded ``http_load`` mix, same process, alternating rounds.

    python -m bench.experiments.group_commit_ab [--rounds 3] [--requests 30000]

Loads the bundled 20k slice once, then per round and variant runs the ``bench.measure.
http_load`` mix embedded (16 threads, 10 % upserts of 10 points, fsync per write) on a fresh
copy of the loaded database, ``--requests`` requests. "off" caps a group at 0 points, so every
upsert commits alone (its own log record, fsync and insertion pass: the behaviour before group
commit); "on" is the default. Prints one JSON line per run and the medians; the variants
alternate within each round so that a change in the machine's load hits both.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from statistics import median

import quiver
from bench.demo.tour import COLLECTION, load_wordnet
from bench.harness.bundled import load_wordnet_slice
from bench.measure.http_load import Mix, load_average, run_embedded
from quiver.db import group_commit

VARIANTS = {"off": 0, "on": group_commit.MAX_GROUP_POINTS}


def run_variant(loaded: Path, work: Path, max_points: int, requests: int) -> dict:
    """One embedded run of the mix on a copy of ``loaded`` with groups capped at
    ``max_points`` (the cap is read when a collection opens)."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(loaded, work)
    saved = group_commit.MAX_GROUP_POINTS
    group_commit.MAX_GROUP_POINTS = max_points
    try:
        mix = Mix(load_wordnet_slice().test, 0.1, seed=0)
        cpu = time.process_time()
        tally = run_embedded(work, mix, 16, 600.0, requests)
        cpu = time.process_time() - cpu
    finally:
        group_commit.MAX_GROUP_POINTS = saved
    out = tally.summary()
    return {
        "rps": out["rps"],
        "upsert_p50_ms": out["upsert"]["p50_ms"],
        "query_p50_ms": out["query"]["p50_ms"],
        "cpu_us_per_request": round(cpu / out["requests"] * 1e6, 1),
        "errors": out["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30_000)
    args = parser.parse_args()
    quiver.warmup()
    rows: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="quiver-gc-ab-") as tmp:
        loaded = Path(tmp) / "loaded"
        with quiver.Database(loaded) as db:
            load_wordnet(db, COLLECTION, batch_size=2000)
        for r in range(args.rounds):
            order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                row = run_variant(loaded, Path(tmp) / "work", VARIANTS[name], args.requests)
                row |= {"variant": name, "round": r, "load_average": load_average()}
                rows[name].append(row)
                print(json.dumps(row), flush=True)
    summary = {
        name: {
            key: median(row[key] for row in runs)
            for key in ("rps", "upsert_p50_ms", "cpu_us_per_request")
        }
        for name, runs in rows.items()
    }
    print(json.dumps({"medians": summary}))


if __name__ == "__main__":
    main()
