"""The embedded quick-start: index the bundled MiniLM-WordNet slice, query it, measure it.

Run with ``python -m bench.demo.embedded`` (``make demo`` runs the HTTP tour,
:mod:`bench.demo.tour`). Builds an index of 20k real text embeddings, prints a few held-out
glosses with their nearest neighbours, then recall@10 against exact search, build time and
queries per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import quiver
from bench.harness.bundled import load_wordnet_slice


def _shorten(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ef", type=int, default=64, help="query list size (default 64)")
    parser.add_argument("--examples", type=int, default=4, help="queries to print (default 4)")
    args = parser.parse_args()

    data = load_wordnet_slice()
    print(
        f"bundled data: {data.train.shape[0]} WordNet glosses embedded with MiniLM "
        f"({data.train.shape[1]}-d), {data.test.shape[0]} held-out queries"
    )

    t0 = time.perf_counter()
    index = quiver.Index(data.train.shape[1], "cosine")
    index.add(data.train)
    build_s = time.perf_counter() - t0
    index.search(data.test[:2], k=10, ef=args.ef)  # first call loads the JIT cache

    rng = np.random.default_rng(0)
    for qi in rng.choice(data.test.shape[0], args.examples, replace=False):
        ids, dists = index.search(data.test[qi], k=3, ef=args.ef)
        print(f"\nquery: {_shorten(data.test_texts[qi])}")
        for rank, (i, d) in enumerate(zip(ids[0], dists[0], strict=True), 1):
            print(f"  {rank}. [{1 - d:.3f}] {_shorten(data.train_texts[i])}")

    t0 = time.perf_counter()
    _, dists = index.search(data.test, k=10, ef=args.ef)
    search_s = time.perf_counter() - t0
    recall = quiver.recall_at_k(dists, data.distances, 10)
    stats = index.stats()
    print(f"\nrecall@10 vs exact search at ef={args.ef}: {recall:.3f}")
    print(f"build: {build_s:.1f} s for {len(index)} vectors (includes JIT compile on first run)")
    print(f"search: {data.test.shape[0] / search_s:,.0f} queries/s (batch of {data.test.shape[0]})")
    print(
        f"hot memory (codes + graph + ids): {stats['hot_bytes'] / 1e6:.1f} MB; "
        f"float vectors: {stats['cold_bytes'] / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
