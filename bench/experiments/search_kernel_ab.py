"""The batch search kernel alone, timed on the bundled slice, for before/after comparisons.

    python bench/experiments/search_kernel_ab.py          # one JSON line: QPS at ef 24 and 48

Builds the default index, prepares the 1,000 test queries once, and times only the engine's
search call on one captured state (best of 15, 2 threads): ``VamanaIndex.execute`` with a
``SearchPlan``, or ``Index.search_state`` in checkouts from before the layering refactor (this
study reads that internal on purpose). Run it with each checkout's interpreter from outside both
checkouts, alternately, as ``bench.measure.search_timing`` says.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import quiver

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's bench/ only

from bench.harness.bundled import load_wordnet_slice  # noqa: E402


def main() -> None:
    data = load_wordnet_slice()
    index = quiver.Index(data.train.shape[1], num_threads=2)
    index.add(data.train)
    state = index.state()
    if hasattr(index, "execute"):
        from quiver.engine.state import SearchPlan

        prepared = index.prepare_queries(data.test.copy())

        def run(ef: int) -> object:
            return index.execute(state, prepared, SearchPlan(10, ef, ef), 2)
    else:  # the engine entry before the refactor
        prepared = index._prepare(data.test.copy())

        def run(ef: int) -> object:
            return index.search_state(state, prepared, 10, ef, ef, 2)

    row = {}
    for ef in (24, 48):
        run(ef)
        best = float("inf")
        for _ in range(15):
            t0 = time.perf_counter()
            run(ef)
            best = min(best, time.perf_counter() - t0)
        row[f"ef{ef}_qps"] = round(len(prepared) / best)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
