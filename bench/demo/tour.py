"""The end-to-end tour (``make demo``): quiver as a server, driven through the Python client.

1. starts ``quiver serve`` on 127.0.0.1 on a free port, with a temporary data directory;
2. loads the bundled MiniLM-WordNet slice (20,000 glosses, 384-d) through ``quiver.Client`` as
   the collection ``wordnet``, with each gloss's text, part of speech and lexicographer file as
   its payload;
3. sends the 1,000 held-out queries over HTTP, one request each, and prints the nearest glosses
   of a few of them, recall@10 against exact search (``quiver.exact_search``) and the
   latency percentiles;
4. stops the server (SIGTERM: a graceful shutdown that closes the database) and exits 0.

``python -m bench.demo.tour --keep`` leaves the data directory in place and prints where it is.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

import quiver
from bench.harness.bundled import WordnetSlice, load_wordnet_slice
from quiver import exact_search
from quiver.client import Client

COLLECTION = "wordnet"
PAYLOAD_COLUMNS = ("text", "pos", "lexfile", "kind")


def wordnet_payloads(data: WordnetSlice) -> list[dict[str, Any]]:
    """One payload per train row (in row order): gloss text, pos, lexfile, kind."""
    part = data.metadata.filter(pc.equal(data.metadata.column("split"), "train"))
    return part.sort_by("row").select(list(PAYLOAD_COLUMNS)).to_pylist()


def load_wordnet(
    target: Any, name: str = COLLECTION, *, progress: bool = False, batch_size: int = 1000
) -> WordnetSlice:
    """Create ``name`` in ``target`` (a ``quiver.Database`` or ``quiver.Client``) and upsert the
    bundled slice's 20,000 train vectors with ids 0..19999 and payloads."""
    data = load_wordnet_slice()
    payloads = wordnet_payloads(data)
    coll = target.create_collection(name, data.train.shape[1], "cosine")
    n = data.train.shape[0]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="pt", desc=f"load {name}", file=sys.stderr)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        coll.upsert(list(range(start, stop)), data.train[start:stop], payloads[start:stop])
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()
    return data


def _shorten(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def run_tour(data_dir: Path, *, k: int = 10, ef: int = 64, examples: int = 4) -> dict[str, float]:
    """The tour against a fresh server on ``data_dir``; returns the measured numbers."""
    from quiver.server.process import running_server

    log_path = data_dir / "server.log"
    t0 = time.perf_counter()
    with running_server(data_dir / "db", log_path, args=["--no-access-log"]) as server:
        print(
            f"server: {server.url} ready after {time.perf_counter() - t0:.1f} s (log: {log_path})"
        )
        with Client(server.url) as client:
            t0 = time.perf_counter()
            data = load_wordnet(client, COLLECTION)
            load_s = time.perf_counter() - t0
            n, dim = data.train.shape
            print(
                f"loaded {n:,} WordNet glosses (MiniLM, {dim}-d) with payloads through the "
                f"client in {load_s:.1f} s ({n / load_s:,.0f} points/s)"
            )
            coll = client.get_collection(COLLECTION)

            rng = np.random.default_rng(0)
            for qi in rng.choice(data.test.shape[0], examples, replace=False):
                hits = coll.search(data.test[qi], k=3, ef=ef, with_payload=True)
                print(f"\nquery: {_shorten(data.test_texts[qi])}")
                for rank, h in enumerate(hits, 1):
                    p = h.payload or {}
                    print(
                        f"  {rank}. [{h.score:.3f}] {_shorten(p.get('text', ''))} "
                        f"({p.get('pos')}, {p.get('lexfile')})"
                    )

            nq = data.test.shape[0]
            scores = np.full((nq, k), -np.inf, dtype=np.float64)
            latencies = np.empty(nq)
            t_all = time.perf_counter()
            for qi in range(nq):
                t = time.perf_counter()
                hits = coll.search(data.test[qi], k=k, ef=ef)
                latencies[qi] = time.perf_counter() - t
                scores[qi, : len(hits)] = [h.score for h in hits]
            wall = time.perf_counter() - t_all
            t = time.perf_counter()
            coll.search_batch(data.test, k=k, ef=ef)
            batch_s = time.perf_counter() - t

    _, true_dist = exact_search(data.train, data.test, k, "cosine")
    recall = quiver.recall_at_k(1.0 - scores, true_dist, k)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    print(f"\n{nq:,} held-out queries over HTTP, one request each (k={k}, ef={ef}, 1 client):")
    print(f"  recall@{k} vs exact search: {recall:.3f}")
    print(f"  latency p50 {p50:.2f} ms, p99 {p99:.2f} ms; {nq / wall:,.0f} queries/s")
    print(f"  the same {nq:,} queries as one /points/query/batch request: {batch_s * 1000:.0f} ms")
    print("server stopped.")
    return {"recall": recall, "p50_ms": p50, "p99_ms": p99, "qps": nq / wall, "load_s": load_s}


def main() -> None:
    """Run the tour in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ef", type=int, default=64, help="beam width (default 64)")
    parser.add_argument("--examples", type=int, default=4, help="queries to print (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="quiver-tour-"))
    try:
        run_tour(data_dir, ef=args.ef, examples=args.examples)
    finally:
        if args.keep:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
