"""Bulk ingestion rate: the bundled 20k x 384 slice with payloads, embedded and over HTTP.

::

    python -m bench.measure.ingest                      # -> bench/results/ingest.json
    python -m bench.measure.ingest --formats json arrow

Each run creates a fresh collection and upserts the 20,000 train vectors of the bundled
MiniLM-WordNet slice with their payloads (ids 0..19999) in batches of ``--batch`` points,
fsync per batch (the default ``fsync="batch"``):

* ``embedded``: ``Collection.upsert`` on a local database, one batch after the other;
* one run per ``--formats`` entry through ``quiver.Client`` against ``quiver serve``
  (127.0.0.1, default settings, no access log): ``json`` (vectors as JSON numbers),
  ``base64`` (one base64 block of float32 per batch) and ``arrow`` (an Arrow IPC stream per
  batch), each with the client's default parallelism.

Reports points/s for each; the client's encoding and the server's parsing are included, so are
the write-ahead log and the graph insertion. The load average is recorded beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import quiver
from bench.demo.tour import wordnet_payloads
from bench.harness.bundled import load_wordnet_slice
from bench.measure.http_latency import load_average
from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "ingest.json"
FORMATS = ("json", "base64", "arrow")


def _upsert_all(coll: Any, vectors: Any, payloads: list[Any], batch: int, **kw: Any) -> float:
    """Seconds to upsert every vector, ``batch`` points per call (the client batches itself)."""
    n = len(vectors)
    ids = list(range(n))
    t0 = time.perf_counter()
    if kw:  # the client: one call, it splits and sends the batches
        coll.upsert(ids, vectors, payloads, batch_size=batch, **kw)
    elif hasattr(coll, "_client"):  # a client without formats (before binary vectors)
        coll.upsert(ids, vectors, payloads, batch_size=batch)
    else:
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            coll.upsert(ids[start:stop], vectors[start:stop], payloads[start:stop])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000, help="points per batch/request")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=[*FORMATS, "plain"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from quiver.client import Client
    from quiver.server.process import running_server

    data = load_wordnet_slice()
    vectors, payloads = data.train, wordnet_payloads(data)
    n, dim = vectors.shape
    rates: dict[str, Any] = {}
    load_before = load_average()
    quiver.warmup()
    with tempfile.TemporaryDirectory(prefix="quiver-ingest-") as tmp:
        with quiver.Database(Path(tmp) / "embedded") as db:
            coll = db.create_collection("embedded", dim, "cosine")
            seconds = _upsert_all(coll, vectors, payloads, args.batch)
            rates["embedded"] = {"points_per_s": round(n / seconds), "seconds": round(seconds, 2)}
            print("embedded", rates["embedded"], flush=True)
        db_dir = Path(tmp) / "served"
        log = Path(tmp) / "server.log"
        no_log = ["--no-access-log"]
        with running_server(db_dir, log, args=no_log) as srv, Client(srv.url) as client:
            for fmt in args.formats:
                remote = client.create_collection(f"ingest_{fmt}", dim, "cosine")
                kw = {"format": fmt} if args.formats != ["plain"] else {}
                seconds = _upsert_all(remote, vectors, payloads, args.batch, **kw)
                count = remote.count()
                rates[fmt] = {
                    "points_per_s": round(n / seconds),
                    "seconds": round(seconds, 2),
                    "count_after": count,
                }
                print(fmt, rates[fmt], flush=True)
    result = {
        "data": f"minilm-wordnet-21k train ({n} x {dim}, cosine) + payloads",
        "batch": args.batch,
        "fsync": "batch",
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cores": os.cpu_count(),
        "rates": rates,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
