"""Single-client HTTP query latency next to the embedded single-query latency, same data.

::

    python -m bench.measure.http_latency            # -> bench/results/http-latency.json
    python -m bench.measure.http_latency --queries 5000

1. loads the bundled MiniLM-WordNet slice (20,000 x 384, payloads) into a temporary database;
2. embedded: ``--queries`` top-k searches, one query per call, on that database;
3. starts ``quiver serve`` on it (127.0.0.1, default settings but no access log) and sends the
   same queries one at a time, one request each, from one client: once through
   ``quiver.Client.search`` (its encoding and decoding included) and once as pre-encoded
   bodies on a minimal keep-alive connection (the server's share alone).

Reports p50/p99 in ms of each and the ratios to embedded; the machine's load average is
recorded because every figure here is sensitive to other work on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import quiver
from bench.demo.tour import COLLECTION, load_wordnet
from bench.harness.bundled import load_wordnet_slice
from bench.measure.http_load import _Connection, load_average
from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "http-latency.json"
WARMUP = 200


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p99/mean in ms."""
    p50, p99 = np.percentile(seconds, [50, 99]) * 1000
    return {
        "p50_ms": round(float(p50), 3),
        "p99_ms": round(float(p99), 3),
        "mean_ms": round(float(np.mean(seconds)) * 1000, 3),
        "count": len(seconds),
    }


def timed(fn: Any, items: list[Any]) -> list[float]:
    """Seconds of ``fn(item)`` for each item, after a short warm-up."""
    for item in items[:WARMUP]:
        fn(item)
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


async def _raw_latencies(url: str, bodies: list[bytes]) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    conn = _Connection(host, int(port))
    path = f"/collections/{COLLECTION}/points/query"
    out = []
    try:
        for i, body in enumerate([*bodies[:WARMUP], *bodies]):
            t = time.perf_counter()
            status, text = await conn.request("POST", path, body)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {text[:200]!r}")
            if i >= WARMUP:
                out.append(time.perf_counter() - t)
    finally:
        await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000, help="timed queries per mode")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from quiver.client import Client
    from quiver.server.process import running_server

    data = load_wordnet_slice()
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(data.test), args.queries)
    queries = [data.test[r] for r in rows]
    k, ef = args.k, args.ef
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="quiver-http-latency-") as tmp:
        db_dir = Path(tmp) / "db"
        quiver.warmup()
        with quiver.Database(db_dir) as db:
            load_wordnet(db, COLLECTION, batch_size=2000)
            coll = db.get_collection(COLLECTION)
            embedded = timed(lambda q: coll.search(q, k=k, ef=ef), queries)
        bodies = [json.dumps({"vector": q.tolist(), "k": k, "ef": ef}).encode() for q in queries]
        with running_server(db_dir, Path(tmp) / "server.log", args=["--no-access-log"]) as srv:
            with Client(srv.url) as client:
                remote = client.get_collection(COLLECTION)
                via_client = timed(lambda q: remote.search(q, k=k, ef=ef), queries)
            raw = asyncio.run(_raw_latencies(srv.url, bodies))
    e, c, r = percentiles(embedded), percentiles(via_client), percentiles(raw)
    result = {
        "data": "minilm-wordnet-21k (20,000 x 384, cosine) + payloads",
        "k": k,
        "ef": ef,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cores": os.cpu_count(),
        "embedded": e,
        "http_client": c,
        "http_raw": r,
        "ratios": {
            "client_p50_over_embedded": round(c["p50_ms"] / e["p50_ms"], 2),
            "raw_p50_over_embedded": round(r["p50_ms"] / e["p50_ms"], 2),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
