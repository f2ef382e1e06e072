"""Client-side CPU per query request, per HTTP transport, against a running ``quiver serve``.

::

    python -m bench.measure.client_cpu                  # -> bench/results/client-cpu.json
    python -m bench.measure.client_cpu --queries 3000 --rounds 5

Loads the bundled 20k MiniLM-WordNet slice, starts ``quiver serve`` on it (no access log) and
sends top-k queries (k=10, ef=64, one per request, keep-alive) through each transport in
turn, for ``--rounds`` rounds so that a change in the machine's load hits every transport
alike. The figure is this process's CPU time (``time.process_time``: user + system, all
threads) divided by requests: what the client costs, robust on a loaded machine where wall
time is not. Raw transports send a pre-encoded body and parse the answer with orjson; the
``quiver.Client`` rows include the client's own encoding and decoding (``coll.search``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import quiver
from bench.demo.tour import COLLECTION, load_wordnet
from bench.harness.bundled import load_wordnet_slice
from bench.measure.http_load import load_average
from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "client-cpu.json"
WARMUP = 100
Send = Callable[[int], Any]


def raw_httpx(url: str, path: str, bodies: list[bytes]) -> tuple[Send, Callable[[], None]]:
    import httpx

    http = httpx.Client(base_url=url)
    headers = {"content-type": "application/json"}

    def send(i: int) -> Any:
        return orjson.loads(http.post(path, content=bodies[i], headers=headers).content)

    return send, http.close


def raw_urllib3(url: str, path: str, bodies: list[bytes]) -> tuple[Send, Callable[[], None]]:
    import urllib3

    pool = urllib3.connection_from_url(url, maxsize=1, retries=False)
    headers = {"content-type": "application/json"}

    def send(i: int) -> Any:
        return orjson.loads(pool.urlopen("POST", path, body=bodies[i], headers=headers).data)

    return send, pool.close


def raw_http_client(url: str, path: str, bodies: list[bytes]) -> tuple[Send, Callable[[], None]]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    headers = {"content-type": "application/json"}

    def send(i: int) -> Any:
        try:
            conn.request("POST", path, body=bodies[i], headers=headers)
            reply = conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected):  # the server closed it idle
            conn.close()
            conn.request("POST", path, body=bodies[i], headers=headers)
            reply = conn.getresponse()
        return orjson.loads(reply.read())

    return send, conn.close


def via_client(client: Any, queries: list[np.ndarray], k: int, ef: int) -> Send:
    coll = client.get_collection(COLLECTION)
    return lambda i: coll.search(queries[i], k=k, ef=ef)


def cpu_per_request(send: Send, start: int, n: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``n`` sends."""
    c, w = time.process_time(), time.perf_counter()
    for i in range(start, start + n):
        send(i)
    return time.process_time() - c, time.perf_counter() - w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000, help="requests per transport")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from quiver.client import Client, wire
    from quiver.server.process import running_server

    data = load_wordnet_slice()
    rng = np.random.default_rng(0)
    queries = [data.test[r] for r in rng.integers(0, len(data.test), args.queries + WARMUP)]
    bodies = [orjson.dumps({"vector": wire.b64(q), "k": args.k, "ef": args.ef}) for q in queries]
    path = f"/collections/{COLLECTION}/points/query"
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="quiver-client-cpu-") as tmp:
        db_dir = Path(tmp) / "db"
        with quiver.Database(db_dir) as db:
            load_wordnet(db, COLLECTION, batch_size=2000)
        log = Path(tmp) / "server.log"
        with running_server(db_dir, log, args=["--no-access-log"]) as srv:
            import httpx

            clients = {
                "quiver.Client (default transport)": Client(srv.url),
                "quiver.Client (http=httpx.Client)": Client(http=httpx.Client(base_url=srv.url)),
            }
            modes: dict[str, tuple[Send, Callable[[], None]]] = {
                "raw httpx.Client": raw_httpx(srv.url, path, bodies),
                "raw urllib3 pool": raw_urllib3(srv.url, path, bodies),
                "raw http.client keep-alive": raw_http_client(srv.url, path, bodies),
                **{
                    name: (via_client(c, queries, args.k, args.ef), c.close)
                    for name, c in clients.items()
                },
            }
            totals = {name: [0.0, 0.0] for name in modes}
            for send, _ in modes.values():
                cpu_per_request(send, 0, WARMUP)
            per_round = args.queries // args.rounds
            for r in range(args.rounds):
                for name, (send, _) in modes.items():
                    cpu, wall = cpu_per_request(send, WARMUP + r * per_round, per_round)
                    totals[name][0] += cpu
                    totals[name][1] += wall
            for _, close in modes.values():
                close()
    n = per_round * args.rounds
    result = {
        "data": "minilm-wordnet-21k (20,000 x 384, cosine) + payloads",
        "k": args.k,
        "ef": args.ef,
        "requests_per_transport": n,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cores": os.cpu_count(),
        "client_cpu_us_per_request": {
            name: round(cpu / n * 1e6, 1) for name, (cpu, _) in totals.items()
        },
        "wall_us_per_request": {
            name: round(wall / n * 1e6, 1) for name, (_, wall) in totals.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
