"""Would a query-dependent entry point pay? Start each search from the best of P pivots.

Opens the saved profile index of a set (``python -m bench.experiments.profile_split`` builds
it), picks P random rows as pivots, and for every query starts the beam search from the pivot
with the best 1-bit sign estimate (``quiver.engine.search.sign_estimate``, 4 popcounts per word,
pivots' codes contiguous) instead of the medoid. Compares code distances per query, recall@10
and batch QPS with the plain search, interleaved, 2 threads, 1,000 queries, medians of 5 rounds.

    python -m bench.experiments.entry_pivots minilm-text-562k-384-angular [--pivots 1024]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit, prange

import quiver
from bench.harness.datasets import data_dir, get_dataset
from quiver.engine.candidates import new_scratch, next_epoch
from quiver.engine.kernels import encode_query
from quiver.engine.rerank import rerank_top_k
from quiver.engine.search import beam_search, query_signs, sign_estimate
from quiver.metrics import parse_metric


@njit(cache=True, parallel=True)
def _search(graph, floats, queries, ef, pivots, pivot_codes, scratch, out_ids, out_ndist):
    """Beam search + rerank of every query; from the best pivot when ``pivots`` is non-empty."""
    codes, adjacency, degrees, dim, entry, limit = graph
    metric, segments, starts, labels = floats
    stamps, epochs = scratch
    nq = queries.shape[0]
    slots = stamps.shape[0]
    words = codes.shape[1] // 2
    for slot in prange(slots):
        ids = np.empty(ef, np.int32)
        dists = np.empty(ef)
        done = np.empty(ef, np.bool_)
        planes = np.empty(4 * words, np.uint64)
        params = np.empty(3)
        signs = np.empty(words, np.uint64)
        none32 = np.empty(0, np.int32)
        none8 = np.empty(0, np.uint8)
        none64 = np.empty(0)
        out_d = np.empty(out_ids.shape[1], np.float32)
        for qi in range(slot * nq // slots, (slot + 1) * nq // slots):
            encode_query(queries[qi], planes, params)
            start = entry
            if pivots.shape[0]:
                query_signs(queries[qi], signs)
                best = 1 << 40
                for p in range(pivots.shape[0]):
                    e = sign_estimate(signs, pivot_codes[p], words)
                    if e < best:
                        best = e
                        start = pivots[p]
            epoch = next_epoch(stamps, epochs, slot)
            count, _, n_dist, _ = beam_search(
                codes, adjacency, degrees, dim, limit, (planes, params), start, stamps[slot],
                epoch, ids, dists, done, none32, none8, none32, none64,
            )  # fmt: skip
            out_ndist[qi] = n_dist
            rerank_top_k(
                queries[qi], ids[:count], metric, segments, starts, labels, out_ids[qi], out_d
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("set")
    ap.add_argument("--pivots", type=int, default=1024)
    ap.add_argument("--efs", type=int, nargs="+", default=[20, 40, 64])
    args = ap.parse_args()
    data = get_dataset(args.set)
    index = quiver.Index.open(data_dir() / "profile-index" / args.set, num_threads=2)
    s = index.state()
    graph = (s.codes, s.adjacency, s.degrees, index.dim, s.entry, s.count)
    floats = (int(parse_metric(index.metric)), s.segments, s.segment_starts, s.labels)
    queries = index.prepare_queries(data.test[:1000].copy())
    truth = data.neighbors[:1000, :10]
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(s.count, args.pivots, replace=False)).astype(np.int32)
    variants = {
        "medoid": (np.empty(0, np.int32), np.empty((0, s.codes.shape[1]), np.uint64)),
        f"{args.pivots} pivots": (chosen, np.ascontiguousarray(s.codes[chosen])),
    }
    scratch = new_scratch(2, s.codes.shape[0])
    out = np.empty((len(queries), 10), np.int64)
    ndist = np.zeros(len(queries), np.int64)
    rows: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for pivots, codes in variants.values():  # compile and warm
        _search(graph, floats, queries, args.efs[0], pivots, codes, scratch, out, ndist)
    for _ in range(5):
        for ef in args.efs:
            for label, (pivots, codes) in variants.items():
                t0 = time.perf_counter()
                _search(graph, floats, queries, ef, pivots, codes, scratch, out, ndist)
                qps = len(queries) / (time.perf_counter() - t0)
                hits = [len(set(a) & set(b)) for a, b in zip(out, truth, strict=True)]
                rows.setdefault((label, ef), []).append((np.mean(hits) / 10, ndist.mean(), qps))
    for ef in args.efs:
        for label in variants:
            r = rows[(label, ef)]
            print(
                f"{label:12s} ef={ef:3d} recall@10 {r[0][0]:.4f} distances {r[0][1]:6.0f} "
                f"QPS {np.median([x[2] for x in r]):,.0f}"
            )


if __name__ == "__main__":
    main()
