"""Does a locality row order speed up search? The same graph renumbered in BFS order.

Opens the saved profile index of a set (``python -m bench.experiments.profile_split`` builds
and saves it under the data directory), renumbers its rows (codes, adjacency, labels and float
vectors) in BFS order from the entry point, and times identical searches on both numberings:
2 threads, 1,000 queries, medians of 3. The results are the same ids; only memory order differs.

    python -m bench.experiments.reorder_locality minilm-text-562k-384-angular
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit
from numba.typed import List

import quiver
from bench.harness.datasets import data_dir, get_dataset
from quiver.engine.state import IndexState, SearchPlan


@njit(cache=True)
def bfs_order(adjacency: np.ndarray, degrees: np.ndarray, entry: int, n: int) -> np.ndarray:
    """Rows in BFS order from ``entry`` (then from each unreached row): new row i = old row
    ``order[i]``."""
    order = np.empty(n, np.int64)
    seen = np.zeros(n, np.bool_)
    head = 0
    tail = 0
    for start in range(-1, n):
        s = entry if start < 0 else start
        if seen[s]:
            continue
        seen[s] = True
        order[tail] = s
        tail += 1
        while head < tail:
            u = order[head]
            head += 1
            for j in range(degrees[u]):
                v = adjacency[u, j]
                if 0 <= v < n and not seen[v]:
                    seen[v] = True
                    order[tail] = v
                    tail += 1
    return order


def in_memory(state: IndexState, floats: np.ndarray, order: np.ndarray | None):
    """``state`` with its floats in one in-memory segment, renumbered by ``order`` if given."""
    n = state.count
    segments = List()
    if order is None:
        segments.append(np.ascontiguousarray(floats))
        return state._replace(segments=segments, segment_starts=np.array([0, n], np.int64))
    new_of_old = np.empty(n, np.int64)
    new_of_old[order] = np.arange(n)
    adjacency = state.adjacency[order]
    adjacency = np.where(adjacency >= 0, new_of_old[np.maximum(adjacency, 0)], -1)
    segments.append(np.ascontiguousarray(floats[order]))
    return state._replace(
        codes=np.ascontiguousarray(state.codes[order]),
        adjacency=np.ascontiguousarray(adjacency.astype(np.int32)),
        degrees=np.ascontiguousarray(state.degrees[order]),
        labels=np.ascontiguousarray(state.labels[order]),
        live=np.ascontiguousarray(state.live[order]),
        entry=int(new_of_old[state.entry]),
        segments=segments,
        segment_starts=np.array([0, n], np.int64),
        rows=np.arange(n, dtype=np.int64),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("set")
    ap.add_argument("--efs", type=int, nargs="+", default=[20, 40, 64])
    args = ap.parse_args()
    data = get_dataset(args.set)
    index = quiver.Index.open(data_dir() / "profile-index" / args.set, num_threads=2)
    state = index.state()
    n = state.count
    queries = index.prepare_queries(data.test[:1000].copy())
    truth = data.neighbors[:1000, :10]
    floats = np.concatenate([np.asarray(s) for s in state.segments])[:n]
    order = bfs_order(state.adjacency, state.degrees, state.entry, n)
    numberings = {
        "original": in_memory(state, floats, None),
        "bfs": in_memory(state, floats, order),
    }
    qps: dict[tuple[str, int], list[float]] = {}
    recall: dict[tuple[str, int], float] = {}
    for _ in range(3):
        for label, s in numberings.items():
            for ef in args.efs:
                t0 = time.perf_counter()
                ids, _, _ = index.execute(s, queries, SearchPlan(10, ef, ef))
                qps.setdefault((label, ef), []).append(len(queries) / (time.perf_counter() - t0))
                hits = [len(set(a) & set(b)) for a, b in zip(ids, truth, strict=True)]
                recall[(label, ef)] = float(np.mean(hits)) / 10
    for ef in args.efs:
        for label in numberings:
            print(
                f"{label:8s} ef={ef:3d} recall@10 {recall[(label, ef)]:.4f} "
                f"QPS {np.median(qps[(label, ef)]):,.0f}"
            )


if __name__ == "__main__":
    main()
