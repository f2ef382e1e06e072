"""Schema-driven fuzzing of the HTTP API: schemathesis against a running server's OpenAPI.

::

    python -m bench.measure.fuzz_api        # 5 min, all phases -> bench/results/fuzz-api.json
    python -m bench.measure.fuzz_api --max-examples 300 --seed 1

Starts ``quiver serve`` on 127.0.0.1 (a free port, a temporary data directory, an API key),
creates small collections with payloads (``fuzz``: uint64 ids, 4-d cosine; ``fuzz-s``: string
ids, 3-d l2) so that generated requests also reach real data, then runs ``schemathesis run``
with every test phase (examples, coverage, fuzzing, stateful) and the ``not_a_server_error``
check. The verdict does not rest on schemathesis' own summary alone: the server's Prometheus
counters give the number of requests it answered and how many were 5xx. Exit 1 if any was.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.paths import RESULTS_DIR

RESULTS = RESULTS_DIR / "fuzz-api.json"
# Path parameters `name` come from the seeded collections 70 % of the time (the rest are
# generated), so that generated bodies reach real data instead of a 404.
CONFIG = """
[dictionaries.collections]
values = ["fuzz", "fuzz-s"]

[parameters]
"path.name" = { dictionary = "collections", probability = 0.7 }
"""
API_KEY = "fuzz-key"


def _seed_data(url: str) -> None:
    """Two small collections with payloads, for generated requests to hit."""
    from quiver.client import Client

    rng = np.random.default_rng(0)
    with Client(url, api_key=API_KEY) as client:
        a = client.create_collection("fuzz", 4, "cosine")
        payloads = [{"n": i, "tag": ["x", "y"][i % 2], "nested": {"v": i / 10}} for i in range(50)]
        a.upsert(list(range(50)), rng.standard_normal((50, 4)), payloads)
        b = client.create_collection("fuzz-s", 3, "l2", id_type="string")
        b.upsert([f"p{i}" for i in range(20)], rng.standard_normal((20, 3)))
        a.snapshot(Path(tempfile.gettempdir()))  # one snapshot on the server to list/download


def _server_counts(url: str) -> dict[str, int]:
    """Requests the server answered, by status class, from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", headers={"api-key": API_KEY}, timeout=30).text
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "quiver_http_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = sample.labels["status"][0] + "xx"
                counts[key] = counts.get(key, 0) + int(sample.value)
    return counts


def _cases_from_report(path: Path) -> dict[str, Any]:
    """Test cases (generated requests) counted from schemathesis' ndjson event stream."""
    cases = 0
    operations: set[str] = set()
    server_errors: list[str] = []
    if not path.is_file():
        return {"cases": None}
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for kind, body in event.items():
            if kind != "ScenarioFinished" or not isinstance(body, dict):
                continue
            recorder = body.get("recorder", {})
            cases += len(recorder.get("cases", {}))
            label = recorder.get("label")
            if label:
                operations.add(label)
            for interaction in recorder.get("interactions", {}).values():
                response = (interaction or {}).get("response") or {}
                if int(response.get("status_code", 0)) >= 500:
                    server_errors.append(f"{label}: {response.get('status_code')}")
    return {"cases": cases, "operations": len(operations), "server_errors": server_errors[:20]}


def main() -> int:
    """Run the fuzzer against a fresh server; exit 1 on any 5xx."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=30, help="cases per operation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-time",
        type=int,
        default=300,
        help="seconds: fuzzing and stateful testing repeat until the budget is spent",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from quiver.server.process import running_server

    with tempfile.TemporaryDirectory(prefix="quiver-fuzz-") as tmp:
        env = {"QUIVER_API_KEY": API_KEY}
        server_args = ["--no-access-log", "--snapshot-dir", str(Path(tmp) / "snapshots")]
        with running_server(
            Path(tmp) / "db", Path(tmp) / "server.log", args=server_args, env=env
        ) as server:
            _seed_data(server.url)
            before = _server_counts(server.url)
            report = Path(tmp) / "events.ndjson"
            config = Path(tmp) / "schemathesis.toml"
            config.write_text(CONFIG)
            cmd = [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(config),
                "run",
                server.url + "/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                str(args.max_examples),
                "--seed",
                str(args.seed),
                "--max-time",
                str(args.max_time),
                "--header",
                f"api-key: {API_KEY}",
                "--request-timeout",
                "60",
                "--generation-database",
                "none",
                "--workers",
                "2",
                "--suppress-health-check",
                "all",
                "--report",
                "ndjson",
                "--report-ndjson-path",
                str(report),
                "--no-color",
            ]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
            seconds = time.perf_counter() - t0
            after = _server_counts(server.url)
            log_tail = server.log_tail(3000)
            stats = _cases_from_report(report)
    summary = re.search(r"(\d+) generated, (\d+) passed", proc.stdout)
    answered = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    requests = sum(answered.values())
    result = {
        "schemathesis_exit": proc.returncode,
        "seconds": round(seconds, 1),
        "max_examples_per_operation": args.max_examples,
        "seed": args.seed,
        "generated_cases": int(summary[1]) if summary else stats.get("cases"),
        "passed_cases": int(summary[2]) if summary else None,
        "operations": stats.get("operations"),
        "server_requests_answered": requests,
        "server_responses_by_class": dict(sorted(answered.items())),
        "server_5xx": answered.get("5xx", 0),
        "schemathesis_5xx_samples": stats.get("server_errors"),
        "schemathesis_summary": proc.stdout.strip().splitlines()[-12:],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".log").write_text(proc.stdout + proc.stderr)
    print(proc.stdout[-4000:])
    print(json.dumps({k: v for k, v in result.items() if k != "schemathesis_summary"}, indent=2))
    if result["server_5xx"]:
        print("server log tail:\n" + log_tail, file=sys.stderr)
    return 1 if result["server_5xx"] or proc.returncode not in (0, 1) else 0


if __name__ == "__main__":
    raise SystemExit(main())
