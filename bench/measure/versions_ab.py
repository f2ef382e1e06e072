"""Two checkouts of quiver measured in one run, alternating: did a change keep performance?

    python -m bench.measure.versions_ab --before ../quiver-old --after . --rounds 2

Each checkout needs its own virtual environment in ``<checkout>/.venv`` (``make test`` makes
one). Per round and checkout, in alternation (before, after, before, after...) so that both
see the same machine load:

* the harness on the bundled slice, quiver only: ``python -m bench run
  minilm-wordnet-21k-384-angular --threads 2 --algorithms quiver`` (each checkout's own
  harness and library), batch QPS at recall@10 0.95 and 0.90 read off its Pareto frontier;
* filtered search on the bundled slice: this checkout's ``bench.measure.filtered_search``
  (copied, so both libraries run the same script) with each library, batch QPS per filter;
* cold start: import + 2k adds + first query in a fresh process with an empty Numba cache,
  and with the cache warm.

Writes one JSON with every raw figure, the medians per checkout and the after/before ratios.
Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness.report import frontier_of, load_rows, qps_at_recall
from bench.paths import BENCH_DIR

SET = "minilm-wordnet-21k-384-angular"
TARGETS = (0.90, 0.95)
COLD_CHILD = """
import time
t0 = time.perf_counter()
import numpy as np
import quiver
rng = np.random.default_rng(0)
index = quiver.Index(384, "cosine")
index.add(rng.standard_normal((2000, 384), dtype=np.float32))
index.search(rng.standard_normal((1, 384), dtype=np.float32), k=10, ef=64)
print(time.perf_counter() - t0)
"""


def python_of(checkout: Path) -> str:
    return str(checkout / ".venv" / "bin" / "python")


def harness_qps(checkout: Path, out: Path) -> dict[str, float | None]:
    """Batch QPS at each target recall from one harness run of quiver on the slice."""
    subprocess.run(
        [python_of(checkout), "-m", "bench", "run", SET, "--threads", "2", "--algorithms",
         "quiver", "--out-dir", str(out), "--force", "--single-queries", "50"],
        cwd=checkout, check=True, capture_output=True, text=True,
    )  # fmt: skip
    frontier = frontier_of(load_rows(out / SET), "batch")
    return {f"qps@{t}": qps_at_recall(frontier, t) for t in TARGETS}


def filtered_qps(checkout: Path, scripts: Path, out: Path) -> dict[str, float]:
    """Batch QPS per filter (and unfiltered) with this checkout's library."""
    subprocess.run(
        [python_of(checkout), "-m", "bench.measure.filtered_search", "--set", SET,
         "--repeats", "3", "--out", str(out)],
        cwd=scripts, check=True, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(scripts)),
    )  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    return {r["filter"]: r["qps"] for r in rows} | {
        "unfiltered (median)": statistics.median(r["unfiltered_qps"] for r in rows)
    }


def start_seconds(checkout: Path, cache: Path) -> float:
    """Wall seconds of the cold-start child with ``cache`` as the Numba cache."""
    t0 = time.perf_counter()
    subprocess.run(
        [python_of(checkout), "-c", COLD_CHILD], cwd=tempfile.gettempdir(), check=True,
        capture_output=True, env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)),
    )  # fmt: skip
    return time.perf_counter() - t0


def measure(checkout: Path, scripts: Path, work: Path) -> dict[str, Any]:
    cache = work / "numba-cache"
    shutil.rmtree(cache, ignore_errors=True)
    row: dict[str, Any] = {"cold_start_s": start_seconds(checkout, cache)}
    row["warm_start_s"] = start_seconds(checkout, cache)
    row |= harness_qps(checkout, work / "harness")
    row["filtered_qps"] = filtered_qps(checkout, scripts, work / "filtered.json")
    return row


def medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in rows[0]:
        if key == "filtered_qps":
            out[key] = {f: statistics.median(r[key][f] for r in rows) for f in rows[0][key]}
        else:
            values = [r[key] for r in rows if r[key] is not None]
            out[key] = statistics.median(values) if values else None
    return out


def ratios(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a in (None, 0) or b is None else round(b / a, 3)

    out: dict[str, Any] = {k: ratio(before[k], after[k]) for k in before if k != "filtered_qps"}
    out["filtered_qps"] = {
        f: ratio(before["filtered_qps"][f], after["filtered_qps"].get(f))
        for f in before["filtered_qps"]
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout (with .venv)")
    parser.add_argument("--after", type=Path, required=True, help="checkout (with .venv)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/versions-ab.json"))
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        scripts = Path(tmp) / "scripts"  # this checkout's bench/, run against both libraries
        shutil.copytree(BENCH_DIR, scripts / "bench", ignore=shutil.ignore_patterns("results"))
        for r in range(args.rounds):
            for label, checkout in checkouts.items():
                work = Path(tmp) / f"{label}-{r}"
                work.mkdir()
                runs[label].append(measure(checkout, scripts, work))
                print(label, r, json.dumps(runs[label][-1]), flush=True)
    summary = {label: medians(rows) for label, rows in runs.items()}
    result = {
        "command": "python -m bench.measure.versions_ab " + " ".join(sys.argv[1:]),
        "commits": {
            label: subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=c, capture_output=True, text=True
            ).stdout.strip()
            for label, c in checkouts.items()
        },
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
        "runs": runs,
        "median": summary,
        "after_over_before": ratios(summary["before"], summary["after"]),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["after_over_before"], indent=2))


if __name__ == "__main__":
    main()
