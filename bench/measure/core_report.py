"""Core-engine measurements on MiniLM-WordNet: build time/memory scaling, recall, work per
query, QPS, and RSS when a saved index is opened (floats memory-mapped, not loaded).

    python -m bench.measure.core_report [--sets 50k 100k 181k] [--threads 2]

Each measurement runs in a fresh subprocess so that peak RSS is per build. Needs the cached
data sets (``python -m bench.harness.datasets build minilm-wordnet-181k-384-angular``, data extra).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_BUILD = """
import json, resource, sys, time
import numba, numpy as np
import quiver
from bench.harness.datasets import get_dataset
from bench.harness.memory import rss_breakdown
name, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
numba.set_num_threads(threads)
quiver.warmup()  # import + JIT cache load outside the timings
data = get_dataset(name)
rss_data = rss_breakdown()["total"]
t0 = time.perf_counter()
index = quiver.Index(data.train.shape[1], "cosine", num_threads=threads)
index.add(data.train)
build_s = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
row = {"set": name, "n": len(index), "threads": threads, "build_s": round(build_s, 1),
       "peak_rss_mb": round(peak / 1e6), "rss_before_build_mb": round(rss_data / 1e6),
       "hot_mb": round(index.stats()["hot_bytes"] / 1e6, 1),
       "mean_degree": round(index.stats()["mean_degree"], 1)}
for ef in (32, 64, 128, 256):
    index.search(data.test[:50], k=10, ef=ef)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        _, d = index.search(data.test, k=10, ef=ef)
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))
    row[f"recall_ef{ef}"] = round(quiver.recall_at_k(d, data.distances, 10), 4)
    row[f"qps_ef{ef}"] = round(len(data.test) / dt)
    row[f"dist_evals_ef{ef}"] = round(index.search_stats(data.test, k=10, ef=ef)["mean_distances"])
row["dist_evals_ef64_fraction_of_n"] = round(row["dist_evals_ef64"] / len(index), 4)
index.save(path)
print(json.dumps(row))
"""

_OPEN = """
import json, sys
import quiver
from bench.harness.datasets import get_dataset
from bench.harness.memory import mapped_file_rss, rss_breakdown
path, name = sys.argv[1], sys.argv[2]
queries = get_dataset(name).test
quiver.warmup()
mb = lambda b: round(b / 1e6, 1)
before = rss_breakdown()
index = quiver.Index.open(path)
after = rss_breakdown()
row = {"anon_rss_growth_on_open_mb": mb(after["anon"] - before["anon"]),
       "float_file_resident_after_open_mb": mb(mapped_file_rss("/vectors-")),
       "hot_mb": mb(index.stats()["hot_bytes"]), "float_file_mb": mb(index.stats()["cold_bytes"])}
index.search(queries, k=10, ef=64)
row["anon_rss_growth_after_1k_queries_mb"] = mb(rss_breakdown()["anon"] - before["anon"])
row["float_file_resident_after_1k_queries_mb"] = mb(mapped_file_rss("/vectors-"))
print(json.dumps(row))
"""


def _child(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["50k", "100k", "181k"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/core-minilm-wordnet.jsonl"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sets:
            name = f"minilm-wordnet-{size}-384-angular"
            path = str(Path(tmp) / size)
            row = _child(_BUILD, name, path, str(args.threads))
            row.update(_child(_OPEN, path, name))
            row["command"] = "python -m bench.measure.core_report " + " ".join(sys.argv[1:])
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
