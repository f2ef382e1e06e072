"""CPU time of building an index by batched inserts, for before/after kernel changes.

    cd /tmp && PYTHONPATH=<checkout> python <checkout>/bench/experiments/insert_cpu_ab.py \\
        [SET] [--batch 1000] [--limit 20000] [--rounds 3]

Inserts the first ``--limit`` train vectors of ``SET`` (default: the bundled 20k slice) into an
empty ``quiver.Index`` in batches of ``--batch`` (as a bulk load through the database or the
server does), on one thread, ``--rounds`` times, and prints one JSON line: the best round's
process CPU seconds and points per CPU second, and a hash of the graph's adjacency (two
checkouts whose kernels should build the same graph must print the same hash). Alternate the
checkouts on a shared machine, as ``search_cpu_ab.py`` says; run from outside both checkouts
with ``PYTHONPATH=<checkout>`` so that each run imports its own ``quiver``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

import quiver

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's bench/ only

from bench.harness.sets import load_dataset  # noqa: E402


def build(train: np.ndarray, batch: int) -> tuple[float, quiver.Index]:
    index = quiver.Index(train.shape[1], "cosine", num_threads=1)
    start = time.process_time()
    for i in range(0, len(train), batch):
        index.add(train[i : i + batch])
    return time.process_time() - start, index


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-wordnet-21k-384-angular")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--limit", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    train = np.ascontiguousarray(load_dataset(args.set).train[: args.limit], dtype=np.float32)
    build(train[:2000], args.batch)  # compiled / loaded kernels before timing
    best, index = min((build(train, args.batch) for _ in range(args.rounds)), key=lambda r: r[0])
    hot = index.hot  # the graph itself, for the identity hash
    graph = hashlib.sha256(hot.adjacency[: hot.count].tobytes()).hexdigest()[:12]
    print(json.dumps({
        "quiver": str(Path(quiver.__file__).parents[1]), "points": len(train),
        "batch": args.batch, "cpu_s": round(best, 3),
        "points_per_cpu_s": round(len(train) / best), "adjacency_sha256": graph,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
