"""The server's CPU time per request, two checkouts side by side under the same load.

::

    git worktree add /tmp/quiver-before main
    python -m bench.measure.server_cpu_ab --before /tmp/quiver-before --after .
    python -m bench.measure.server_cpu_ab --before . --after . \
        --after-env QUIVER_QUERY_BATCHING=false

Loads the bundled 20k slice once and starts two ``quiver serve`` processes, each on its own
copy of it and each running the server and library code of its checkout (this interpreter and
its installed packages). Then, for ``--rounds`` rounds, alternating which goes first, it sends
each server the ``bench.measure.http_load`` mix (``--clients`` keep-alive clients, a tenth of
the requests upserts) for ``--seconds``, one server at a time, and adds up each server
process's CPU time (user + system, all threads, from ``/proc``). CPU time per request barely
depends on the rest of the machine, where throughput and latency do: both servers see the same
load drift, so the ratio is meaningful on a busy machine (the absolute figures less so).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import quiver
from bench.demo.tour import COLLECTION, load_wordnet
from bench.harness.bundled import load_wordnet_slice
from bench.measure.http_load import Mix, _http_load, load_average, process_cpu_seconds
from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "server-cpu-ab.json"

#: Starts ``quiver serve`` from a checkout: its ``quiver`` package first on the path and its
#: top-level ``server/`` folder as ``quiver.server`` (what the installed package maps it to).
BOOT = """
import importlib.util, runpy, sys
root = sys.argv.pop(1)
sys.path.insert(0, root)
import quiver
spec = importlib.util.spec_from_file_location(
    "quiver.server", root + "/server/__init__.py", submodule_search_locations=[root + "/server"]
)
module = importlib.util.module_from_spec(spec)
sys.modules["quiver.server"] = module
spec.loader.exec_module(module)
assert quiver.__file__.startswith(root), quiver.__file__
runpy.run_module("quiver.server.cli", run_name="__main__", alter_sys=True)
"""


def start(checkout: Path, db_dir: Path, log: Path, env: dict[str, str]) -> tuple[Any, str]:
    """``quiver serve`` of ``checkout`` on ``db_dir``; (process, URL) once ready."""
    import httpx

    from quiver.server.process import free_port

    port = free_port()
    cmd = [sys.executable, "-c", BOOT, str(checkout.resolve()), "serve", "--db-dir", str(db_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ | env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{checkout}: server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"{checkout}: server not ready:\n{log.read_text()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a quiver checkout")
    parser.add_argument("--after", type=Path, required=True, help="a quiver checkout")
    parser.add_argument("--before-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--after-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0, help="load per server per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--write-fraction", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    data = load_wordnet_slice()
    mix = Mix(data.test, args.write_fraction, seed=0)
    sides = {
        "before": (args.before, dict(e.split("=", 1) for e in args.before_env)),
        "after": (args.after, dict(e.split("=", 1) for e in args.after_env)),
    }
    totals = {name: {"cpu_s": 0.0, "requests": 0, "errors": 0} for name in sides}
    per_round: list[dict[str, float]] = []
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="quiver-server-cpu-ab-") as tmp:
        seed = Path(tmp) / "seed"
        quiver.warmup()
        with quiver.Database(seed) as db:
            load_wordnet(db, COLLECTION, batch_size=2000)
        servers = {}
        try:
            for name, (checkout, env) in sides.items():
                shutil.copytree(seed, Path(tmp) / name)
                servers[name] = start(checkout, Path(tmp) / name, Path(tmp) / f"{name}.log", env)
            for _, url in servers.values():  # connections, caches
                asyncio.run(_http_load(url, mix, args.clients, 2.0, 2_000_000))
            for r in range(args.rounds):
                per_round.append({})
                for name in list(servers) if r % 2 == 0 else list(servers)[::-1]:
                    proc, url = servers[name]
                    cpu0 = process_cpu_seconds(proc.pid)
                    tally = asyncio.run(_http_load(url, mix, args.clients, args.seconds, 2_000_000))
                    cpu1 = process_cpu_seconds(proc.pid)
                    if cpu0 is None or cpu1 is None:
                        raise SystemExit("needs /proc (Linux) for the servers' CPU time")
                    summary = tally.summary()
                    totals[name]["cpu_s"] += cpu1 - cpu0
                    totals[name]["requests"] += summary["requests"]
                    totals[name]["errors"] += summary["errors"]
                    per_round[-1][name] = round((cpu1 - cpu0) / max(summary["requests"], 1) * 1e6)
                    print(f"round {r} {name}: {summary['requests']} requests", flush=True)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=60)
    per_request = {
        name: round(t["cpu_s"] / max(t["requests"], 1) * 1e6, 1) for name, t in totals.items()
    }
    result = {
        "data": "minilm-wordnet-21k (20,000 x 384, cosine) + payloads; the http_load mix",
        "before": {"checkout": str(args.before), "env": args.before_env},
        "after": {"checkout": str(args.after), "env": args.after_env},
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "clients": args.clients,
        "write_fraction": args.write_fraction,
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "totals": totals,
        "server_cpu_us_per_request": per_request,
        "after_over_before": round(per_request["after"] / per_request["before"], 3),
        # the spread: each round's CPU microseconds per request, and the median of the rounds'
        # after/before ratios (CPU per request still moves with the machine's contention)
        "rounds_us_per_request": per_round,
        "median_round_ratio": round(
            statistics.median(r["after"] / r["before"] for r in per_round if r["before"]), 3
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
