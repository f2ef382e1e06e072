"""Raw kernel speed: code distances vs float32 dot products, random gathers over 1M rows.

    python -m bench.experiments.kernel_speed [--rows 1000000] [--dims 384 768] [--gathers 2000000]

Single thread. Each measure gathers rows in a random order (as a graph search does), so it is
bound by memory latency more than arithmetic. Prints one JSON line per (dim, kernel).
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
from numba import njit

from quiver.engine import bq
from quiver.engine.kernels import code_distance, dot_f32


@njit(cache=True, nogil=True)
def _gather_code_distances(query: np.ndarray, codes: np.ndarray, rows: np.ndarray, dim: int) -> int:
    words = codes.shape[1] // 2
    acc = 0
    for r in rows:
        acc += code_distance(query, codes[r], words, dim)
    return acc


@njit(cache=True, nogil=True)
def _gather_dots(query: np.ndarray, vectors: np.ndarray, rows: np.ndarray) -> float:
    acc = 0.0
    for r in rows:
        acc += dot_f32(query, vectors[r])
    return acc


def _rate(fn, *args, repeats: int = 3) -> float:
    fn(*args)  # compile / load cache
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--gathers", type=int, default=2_000_000)
    args = parser.parse_args()
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, args.rows, args.gathers).astype(np.int32)
    for dim in args.dims:
        vectors = rng.standard_normal((args.rows, dim), dtype=np.float32)
        codes = bq.encode(vectors)
        query_code = codes[0].copy()
        query = vectors[0].copy()
        for name, seconds in (
            ("code_distance", _rate(_gather_code_distances, query_code, codes, rows, dim)),
            ("float32_dot", _rate(_gather_dots, query, vectors, rows)),
        ):
            print(
                json.dumps(
                    {
                        "kernel": name,
                        "dim": dim,
                        "rows": args.rows,
                        "gathers": args.gathers,
                        "per_second_per_core": round(args.gathers / seconds),
                        "ns_per_distance": round(1e9 * seconds / args.gathers, 2),
                    }
                ),
                flush=True,
            )
        del vectors, codes


if __name__ == "__main__":
    main()
