"""Numba cold start: import + first query in a fresh process, with a cold and a warm JIT cache.

    python -m bench.measure.cold_start [--repeats 3]

The cold run points NUMBA_CACHE_DIR at an empty directory (everything compiles); the warm runs
reuse it (everything loads from the on-disk cache). Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_CHILD = """
import time
t0 = time.perf_counter()
import numpy as np
import quiver
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
index = quiver.Index(384, "cosine")
index.add(rng.standard_normal((2000, 384), dtype=np.float32))
t_add = time.perf_counter() - t0
index.search(rng.standard_normal((1, 384), dtype=np.float32), k=10, ef=64)
t_first_query = time.perf_counter() - t0
print(t_import, t_add, t_first_query)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm-cache runs (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for run in ["cold"] + ["warm"] * args.repeats:
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
            ).stdout.split()
            wall = time.perf_counter() - t0
            t_import, t_add, t_first = map(float, out)
            print(
                json.dumps(
                    {
                        "cache": run,
                        "import_s": round(t_import, 2),
                        "import_add_2k_s": round(t_add, 2),
                        "import_add_first_query_s": round(t_first, 2),
                        "process_wall_s": round(wall, 2),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
