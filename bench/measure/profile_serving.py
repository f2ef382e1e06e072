"""Where a served query's time goes: py-spy on the server under a single-client loop.

::

    python -m bench.measure.profile_serving        # -> bench/results/profile-serving.json
    python -m bench.measure.profile_serving --clients 16

Needs ``py-spy`` on PATH (``pip install py-spy``; a tool, not a dependency of quiver). Loads
the bundled 20k slice, starts ``quiver serve`` (no access log), attaches ``py-spy record`` to
it and sends ``--queries`` top-10 queries (ef 64) from ``--clients`` concurrent keep-alive
connections with pre-encoded bodies (``--body json`` numbers, or ``base64`` float32). Each
busy server sample (waiting threads are left out) is put in one bucket by its innermost
recognised frame: search (quiver's db and
engine, the Numba kernels), response building (rendering, orjson), parsing and validation
(request bodies, pydantic, FastAPI's dependencies), middleware (metrics, access log, limits,
timeouts), thread hand-off (anyio's worker threads), HTTP and framework (uvicorn, httptools,
asyncio, starlette and FastAPI routing). The client's own encode and decode are timed apart
with the client's code (``quiver.client.wire``), in microseconds per query.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson

import quiver
from bench.demo.tour import COLLECTION, load_wordnet
from bench.harness.bundled import load_wordnet_slice
from bench.measure.http_latency import load_average
from bench.measure.http_load import _Connection
from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "profile-serving.json"

#: (bucket, path fragments of a frame); the innermost frame matching any fragment decides.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("search", ("quiver/db/", "quiver/engine/", "quiver/index.py", "quiver/quality/")),
    ("response building", ("server/rendering.py", "routes/query.py", "routes/common.py")),
    ("lean path and batching", ("server/lean.py", "server/batcher.py")),
    (
        "parsing and validation",
        ("server/fastbody.py", "pydantic", "fastapi/dependencies", "server/schemas.py", "json/"),
    ),
    (
        "middleware",
        ("server/middleware.py", "server/timeouts.py", "prometheus_client", "logging/"),
    ),
    ("thread hand-off", ("anyio/to_thread", "anyio/_backends", "concurrent/futures", "threading")),
    ("HTTP and framework", ("uvicorn", "httptools", "asyncio", "uvloop", "starlette", "fastapi")),
)


#: Innermost frames of a thread that waits (py-spy cannot tell that uvloop's C loop, or a
#: worker thread on its condition variable, is idle): counted apart, not in the split.
IDLE_LEAVES = (
    "Runner.run (asyncio/runners.py",
    "Condition.wait (threading.py",
    "select (selectors",
)


def bucket_of(stack: str) -> str:
    """The bucket of one collapsed stack (frames root first, ``;``-separated)."""
    frames = stack.split(";")
    if frames and frames[-1].startswith(IDLE_LEAVES):
        return "idle"
    for frame in reversed(frames):
        for name, fragments in BUCKETS:
            if any(f in frame for f in fragments):
                return name
    return "other"


def us_per_query(raw: str, queries: int, rate: int = 250) -> dict[str, float]:
    """Sampled busy server time per bucket, in microseconds per query (all threads)."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            counts[bucket_of(stack)] += int(n)
    counts.pop("idle", None)
    out = {k: round(v / rate / queries * 1e6, 1) for k, v in counts.most_common()}
    out["total"] = round(sum(counts.values()) / rate / queries * 1e6, 1)
    return out


def split(raw: str) -> dict[str, float]:
    """Percent of samples per bucket of py-spy's raw (collapsed) output."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            counts[bucket_of(stack)] += int(n)
    idle = counts.pop("idle", 0)
    total = sum(counts.values()) or 1
    out = {k: round(100 * v / total, 1) for k, v in counts.most_common()}
    out["idle_samples_left_out_percent"] = round(100 * idle / ((total + idle) or 1), 1)
    return out


def client_costs(queries: np.ndarray, reply: bytes) -> dict[str, float]:
    """Microseconds per query of the client's encoding and decoding (its own code; empty for
    a checkout whose client predates ``quiver.client.wire``)."""
    try:
        from quiver.client import wire
    except ImportError:
        return {}

    verbs = wire.CollectionVerbs(
        {"name": COLLECTION, "dim": 384, "metric": "cosine", "id_type": "uint64"}
    )
    t = time.perf_counter()
    for q in queries:
        next(verbs._search(q, k=10, ef=64))
    encode = (time.perf_counter() - t) / len(queries)
    t = time.perf_counter()
    for _ in queries:
        wire.scored(orjson.loads(reply)["result"])
    decode = (time.perf_counter() - t) / len(queries)
    return {"encode_us": round(encode * 1e6, 1), "decode_us": round(decode * 1e6, 1)}


async def _load(url: str, bodies: list[bytes], clients: int) -> float:
    host, port = url.removeprefix("http://").split(":")
    path = f"/collections/{COLLECTION}/points/query"
    per_client = [bodies[c::clients] for c in range(clients)]

    async def run(mine: list[bytes]) -> None:
        conn = _Connection(host, int(port))
        try:
            for body in mine:
                status, text = await conn.request("POST", path, body)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {text[:200]!r}")
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(run(m) for m in per_client))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--body", choices=["json", "base64"], default="json")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw stacks here")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server environment, e.g. QUIVER_LEAN_QUERIES=false for FastAPI's routes only",
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise SystemExit("py-spy is not on PATH: pip install py-spy")

    from quiver.server.process import running_server

    data = load_wordnet_slice()
    rng = np.random.default_rng(0)
    queries = data.test[rng.integers(0, len(data.test), args.queries)]
    if args.body == "json":
        bodies = [orjson.dumps({"vector": q.tolist(), "k": 10, "ef": 64}) for q in queries]
    else:
        vectors = [base64.b64encode(q.astype("<f4").tobytes()).decode() for q in queries]
        bodies = [orjson.dumps({"vector": v, "k": 10, "ef": 64}) for v in vectors]
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="quiver-profile-") as tmp:
        db_dir = Path(tmp) / "db"
        quiver.warmup()
        with quiver.Database(db_dir) as db:
            load_wordnet(db, COLLECTION, batch_size=2000)
        raw_path = Path(tmp) / "server.raw"
        env = dict(item.split("=", 1) for item in args.env)
        log = Path(tmp) / "server.log"
        with running_server(db_dir, log, args=["--no-access-log"], env=env) as srv:
            asyncio.run(_load(srv.url, bodies[:200], 1))  # connections, caches
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(srv.proc.pid), "-r", "250", "-f", "raw",
                 "-o", str(raw_path), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.0)  # attached
            seconds = asyncio.run(_load(srv.url, bodies, args.clients))
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
            import httpx

            reply = httpx.post(
                f"{srv.url}/collections/{COLLECTION}/points/query",
                content=bodies[0],
                headers={"content-type": "application/json"},
            ).content
        raw = raw_path.read_text() if raw_path.exists() else ""
        if args.raw is not None:
            args.raw.write_text(raw)
        server_split = split(raw)
    result = {
        "data": "minilm-wordnet-21k (20,000 x 384, cosine) + payloads; k=10, ef=64",
        "clients": args.clients,
        "server_env": args.env,
        "body": args.body,
        "queries": args.queries,
        "queries_per_s": round(args.queries / seconds, 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cores": os.cpu_count(),
        "server_split_percent": server_split,
        "server_us_per_query": us_per_query(raw, args.queries),
        "client_per_query": client_costs(queries[:500], reply),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
