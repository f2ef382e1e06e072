"""Bounded HTTP load test: concurrent clients on loopback, mixed queries and upserts.

::

    python -m bench.measure.http_load       # 16 clients, 45,000 requests per phase
    python -m bench.measure.http_load --clients 32 --requests 20000

1. loads the bundled MiniLM-WordNet slice (20,000 x 384, payloads) into a temporary database;
2. runs the same request mix embedded, on that database, from ``--clients`` threads for
   ``--embedded-seconds``: the baseline;
3. starts ``quiver serve`` on a copy of the database as loaded in step 1 (so that both phases
   start from the same 20,000 points; 127.0.0.1, a free port, default settings) and runs the mix
   over HTTP from ``--clients`` concurrent asyncio clients for ``--seconds``;
4. checks that every acknowledged upsert is there, stops the server, and writes the numbers.

The mix: ``--write-fraction`` of the requests upsert 10 new points; the rest are top-10 queries
(ef 64) with a held-out query vector, a fifth of them filtered on the part of speech. Every
request must succeed: any error is counted and fails the run (exit 1). The HTTP clients are
asyncio tasks on minimal keep-alive HTTP/1.1 connections with pre-encoded bodies, so that the
load generator takes as little as possible of the CPU it shares with the server. Server and
clients share the machine's cores, so the HTTP numbers include the load generator's own cost.

Each phase sends ``--requests`` requests (the same work: every upsert grows the collection, and
a bigger graph makes later requests dearer, so phases of equal duration would not compare the
same work), and stops by itself after ``--seconds`` (``--embedded-seconds``) if that comes
first; ``equal_work`` in the result says whether both phases completed their requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import quiver
from bench.demo.tour import COLLECTION, load_wordnet
from bench.harness.bundled import load_wordnet_slice
from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "http-load.json"
K, EF = 10, 64
UPSERT_POINTS = 10
FILTER = {"must": [{"key": "pos", "match": {"value": "noun"}}]}
FIRST_NEW_ID = 10_000_000


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads) from /proc/<pid>/stat;
    ``None`` where there is no /proc. Ticks of 1/CLK_TCK s (10 ms): meant for runs of many
    requests."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; utime, stime: 14, 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_us_per_request(seconds: float | None, requests: int) -> float | None:
    """CPU microseconds per request (``None`` if unknown or no requests)."""
    return None if seconds is None or not requests else round(seconds / requests * 1e6, 1)


@dataclass
class Tally:
    """Latencies per request kind, errors, and acknowledged upsert ids."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {"query": [], "upsert": []})
    errors: list[str] = field(default_factory=list)
    acked_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        total = sum(len(v) for v in self.latencies.values())
        out: dict[str, Any] = {
            "requests": total,
            "errors": len(self.errors),
            "error_samples": self.errors[:5],
            "seconds": round(self.seconds, 2),
            "rps": round(total / self.seconds, 1),
        }
        for kind, values in self.latencies.items():
            if values:
                p50, p99 = np.percentile(values, [50, 99]) * 1000
                out[kind] = {
                    "count": len(values),
                    "per_s": round(len(values) / self.seconds, 1),
                    "p50_ms": round(float(p50), 3),
                    "p99_ms": round(float(p99), 3),
                }
        return out


class Mix:
    """The request stream, deterministic per client, over pools of pre-encoded vectors.

    Query vectors are the held-out queries; upserted vectors are a pool of noisy copies of
    them. Their JSON text is encoded once up front, so that the load generator spends its
    CPU time (shared with the server on this machine) on requests, not on ``json.dumps``.
    """

    def __init__(self, queries: np.ndarray, write_fraction: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.queries = queries
        noise = 0.01 * rng.standard_normal((2 * len(queries), queries.shape[1]))
        self.pool = (np.concatenate([queries, queries]) + noise).astype(np.float32)
        self.query_json = [json.dumps(q.tolist()) for q in queries]
        self.pool_json = [json.dumps(v.tolist()) for v in self.pool]
        self.write_fraction = write_fraction
        self.seed = seed
        self._next_id = FIRST_NEW_ID
        self._lock = threading.Lock()

    def new_ids(self) -> list[int]:
        with self._lock:
            start = self._next_id
            self._next_id += UPSERT_POINTS
        return list(range(start, start + UPSERT_POINTS))

    def requests(self, client: int) -> Any:
        """Endless ``("query", (row, filtered))`` or ``("upsert", (ids, pool rows))``."""
        rng = np.random.default_rng((self.seed, client))
        while True:
            if rng.random() < self.write_fraction:
                rows = rng.integers(0, len(self.pool), UPSERT_POINTS)
                yield "upsert", (self.new_ids(), rows)
            else:
                yield "query", (int(rng.integers(0, len(self.queries))), rng.random() < 0.2)

    def query_body(self, row: int, filtered: bool) -> bytes:
        text = f'{{"vector": {self.query_json[row]}, "k": {K}, "ef": {EF}'
        text += f', "filter": {json.dumps(FILTER)}}}' if filtered else "}"
        return text.encode()

    def upsert_body(self, ids: list[int], rows: np.ndarray) -> bytes:
        points = ", ".join(
            f'{{"id": {i}, "vector": {self.pool_json[r]}, "payload": {{"src": "load"}}}}'
            for i, r in zip(ids, rows, strict=True)
        )
        return f'{{"points": [{points}]}}'.encode()


def run_embedded(db_dir: Path, mix: Mix, clients: int, seconds: float, cap: int) -> Tally:
    """The mix against the embedded collection from ``clients`` threads."""
    tally = Tally()
    with quiver.Database(db_dir) as db:
        coll = db.get_collection(COLLECTION)
        deadline = time.perf_counter() + seconds
        budget = iter(range(cap))
        lock = threading.Lock()

        def worker(client: int) -> None:
            for kind, args in mix.requests(client):
                with lock:
                    if time.perf_counter() > deadline or next(budget, None) is None:
                        return
                t = time.perf_counter()
                try:
                    if kind == "query":
                        vector, flt = mix.queries[args[0]], FILTER if args[1] else None
                        coll.search(vector, k=K, ef=EF, filter=flt)
                    else:
                        vectors = mix.pool[args[1]]
                        coll.upsert(args[0], vectors, [{"src": "load"}] * UPSERT_POINTS)
                except Exception as exc:  # counted: the run fails if there is any
                    tally.errors.append(f"{kind}: {exc!r}")
                    continue
                tally.latencies[kind].append(time.perf_counter() - t)
                if kind == "upsert":
                    tally.acked_ids.extend(args[0])

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        tally.seconds = time.perf_counter() - t0
    return tally


class _Connection:
    """A minimal keep-alive HTTP/1.1 client connection (request bytes out, status and body
    in): a few microseconds per request, where httpx costs milliseconds of the CPU that the
    server needs on the same machine."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.stream
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if not status_line:
            raise ConnectionError("server closed the connection")
        return int(status_line.split()[1]), await reader.readexactly(length)

    async def close(self) -> None:
        if self.stream is not None:
            writer = self.stream[1]
            self.stream = None
            writer.close()
            await writer.wait_closed()


async def _http_load(url: str, mix: Mix, clients: int, seconds: float, cap: int) -> Tally:
    tally = Tally()
    budget = iter(range(cap))
    deadline = time.perf_counter() + seconds
    host, port = url.removeprefix("http://").split(":")
    base = f"/collections/{COLLECTION}/points"

    async def worker(client: int) -> None:
        conn = _Connection(host, int(port))
        try:
            for kind, args in mix.requests(client):
                if time.perf_counter() > deadline or next(budget, None) is None:
                    return
                if kind == "query":
                    method, path, body = "POST", base + "/query", mix.query_body(*args)
                else:
                    method, path, body = "PUT", base, mix.upsert_body(*args)
                t = time.perf_counter()
                try:
                    status, text = await asyncio.wait_for(conn.request(method, path, body), 30)
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    tally.errors.append(f"{kind}: {exc!r}")
                    await conn.close()
                    conn = _Connection(host, int(port))
                    continue
                elapsed = time.perf_counter() - t
                if status != 200:
                    tally.errors.append(f"{kind}: HTTP {status} {text[:200]!r}")
                    continue
                tally.latencies[kind].append(elapsed)
                if kind == "upsert":
                    tally.acked_ids.extend(args[0])
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(clients)))
    tally.seconds = time.perf_counter() - t0
    return tally


def main() -> int:
    """Run the load test; exit 1 on any error or lost write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (8-32)")
    parser.add_argument("--requests", type=int, default=45_000, help="requests per phase")
    parser.add_argument("--seconds", type=float, default=120.0, help="HTTP phase time limit")
    parser.add_argument(
        "--embedded-seconds", type=float, default=120.0, help="embedded phase time limit"
    )
    parser.add_argument("--write-fraction", type=float, default=0.1)
    parser.add_argument("--access-log", action="store_true", help="server logs every request")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from quiver.client import Client
    from quiver.server.process import running_server

    data = load_wordnet_slice()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="quiver-http-load-") as tmp:
        db_dir = Path(tmp) / "db"
        quiver.warmup()
        with quiver.Database(db_dir) as db:
            load_wordnet(db, COLLECTION, batch_size=2000)
        # each phase starts from the same loaded collection: the HTTP phase does not inherit
        # the points the embedded phase inserted (a bigger graph makes every request dearer)
        http_dir = Path(tmp) / "db-http"
        shutil.copytree(db_dir, http_dir)
        mix = Mix(data.test, args.write_fraction, seed=0)

        print(f"embedded: {args.clients} threads, {args.embedded_seconds:.0f} s ...", flush=True)
        cpu = time.process_time()
        embedded = run_embedded(db_dir, mix, args.clients, args.embedded_seconds, args.requests)
        embedded_cpu = time.process_time() - cpu
        print(json.dumps(embedded.summary()), flush=True)
        with quiver.Database(db_dir) as db:
            coll = db.get_collection(COLLECTION)
            acked = embedded.acked_ids
            embedded_found = len(coll.retrieve(acked, with_payload=False)) if acked else 0
            embedded_count = coll.count()

        server_args = [] if args.access_log else ["--no-access-log"]
        with running_server(http_dir, Path(tmp) / "server.log", args=server_args) as server:
            print(
                f"HTTP: {args.clients} clients, {args.seconds:.0f} s on {server.url} ...",
                flush=True,
            )
            server_cpu, cpu = process_cpu_seconds(server.proc.pid), time.process_time()
            http = asyncio.run(
                _http_load(server.url, mix, args.clients, args.seconds, args.requests)
            )
            load_generator_cpu = time.process_time() - cpu
            server_after = process_cpu_seconds(server.proc.pid)
            if server_cpu is not None and server_after is not None:
                server_cpu = server_after - server_cpu
            print(json.dumps(http.summary()), flush=True)
            with Client(server.url) as client:
                coll = client.get_collection(COLLECTION)
                acked = embedded.acked_ids + http.acked_ids
                found = embedded_found + sum(
                    len(coll.retrieve(http.acked_ids[i : i + 1000], with_payload=False))
                    for i in range(0, len(http.acked_ids), 1000)
                )
                count = coll.count()

    lost = len(acked) - found
    e, h = embedded.summary(), http.summary()
    result = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "data": "minilm-wordnet-21k (20,000 x 384, cosine) + payloads",
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "mix": {
            "clients": args.clients,
            "write_fraction": args.write_fraction,
            "k": K,
            "ef": EF,
            "upsert_points": UPSERT_POINTS,
            "filtered_query_fraction": 0.2,
            "server_access_log": args.access_log,
        },
        "embedded": e,
        "http": h,
        "overhead": {
            "rps_ratio_embedded_over_http": round(e["rps"] / h["rps"], 2),
            "query_p50_ratio": round(h["query"]["p50_ms"] / e["query"]["p50_ms"], 2),
        },
        # CPU time per request of the mix (robust on a loaded machine, where rates are not):
        # the server process (all threads, from /proc), the embedded run (this process) and
        # the HTTP load generator (this process).
        "cpu_us_per_request": {
            "server": cpu_us_per_request(server_cpu, h["requests"]),
            "embedded": cpu_us_per_request(embedded_cpu, e["requests"]),
            "load_generator": cpu_us_per_request(load_generator_cpu, h["requests"]),
        },
        "equal_work": e["requests"] == h["requests"] == args.requests,
        "acknowledged_upserts": len(acked),
        "lost_upserts": lost,
        "final_count": {"embedded": embedded_count, "http": count},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(result["overhead"]),
        json.dumps(result["cpu_us_per_request"]),
        f"lost={lost}",
        f"-> {args.out}",
    )
    return 1 if e["errors"] or h["errors"] or lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
