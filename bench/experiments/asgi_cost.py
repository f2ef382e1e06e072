"""Event-loop CPU per request of the server's ASGI app, without sockets or uvicorn.

    python -m bench.experiments.asgi_cost [--requests 2000]

Loads the bundled 20k slice into a temporary database, builds the app (``create_app``, no
access log), runs its lifespan, and calls it in-process, one request at a time, with the
``bench.measure.http_load`` mix's pre-encoded bodies: top-10 queries (ef 64) and upserts of
10 points (parse and write in one worker-thread call), both on the lean path. For each kind it
prints the wall time per request and the CPU time of the event loop's thread per request
(``time.thread_time``), beside the embedded ``search`` of the same queries. The loop thread
serves every request of a running server, so its CPU per request bounds the throughput that
one server process can reach; uvicorn's own per-request work (HTTP parsing, the transport) comes
on top and is not measured here.
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
from bench.measure.http_load import Mix


async def call(app: Any, method: str, path: str, body: bytes) -> None:
    """One request through the ASGI app; raises unless it answers 200."""
    headers = [(b"host", b"bench"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "state": {},
    }
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the request runs
        raise AssertionError("unreachable")

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    if messages[0]["status"] != 200:
        raise RuntimeError(f"{method} {path}: HTTP {messages[0]['status']}: {messages[1:]}")


async def timed(app: Any, method: str, path: str, bodies: list[bytes]) -> dict[str, float]:
    """Wall and loop-thread CPU microseconds per request (after a tenth as warm-up)."""
    warm = max(1, len(bodies) // 10)
    for body in bodies[:warm]:
        await call(app, method, path, body)
    wall, cpu = time.perf_counter(), time.thread_time()
    for body in bodies[warm:]:
        await call(app, method, path, body)
    n = len(bodies) - warm
    return {
        "wall_us": round((time.perf_counter() - wall) / n * 1e6, 1),
        "loop_cpu_us": round((time.thread_time() - cpu) / n * 1e6, 1),
    }


async def measure(app: Any, mix: Mix, requests: int) -> dict[str, Any]:
    async with app.router.lifespan_context(app):
        state = app.state.quiver
        while not state.ready:
            await asyncio.sleep(0.05)
        coll = state.db.get_collection(COLLECTION)
        t = time.perf_counter()
        for i in range(requests):
            coll.search(mix.queries[i % len(mix.queries)], k=10, ef=64)
        embedded_us = (time.perf_counter() - t) / requests * 1e6
        queries = [mix.query_body(i % len(mix.queries), False) for i in range(requests)]
        upserts = [
            mix.upsert_body(mix.new_ids(), (np.arange(10) + i) % len(mix.pool))
            for i in range(max(50, requests // 5))
        ]
        base = f"/collections/{COLLECTION}/points"
        return {
            "embedded_search_us": round(embedded_us, 1),
            "query": await timed(app, "POST", base + "/query", queries),
            "upsert_10_points": await timed(app, "PUT", base, upserts),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    data = load_wordnet_slice()
    quiver.warmup()
    with tempfile.TemporaryDirectory(prefix="quiver-asgi-cost-") as tmp:
        db_dir = Path(tmp) / "db"
        with quiver.Database(db_dir) as db:
            load_wordnet(db, COLLECTION, batch_size=2000)
        os.environ["QUIVER_DB_DIR"] = str(db_dir)
        os.environ["QUIVER_ACCESS_LOG"] = "false"
        from quiver.server.app import create_app
        from quiver.server.settings import Settings

        app = create_app(Settings())
        result = asyncio.run(measure(app, Mix(data.test, 0.1, seed=0), args.requests))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
