"""The real server process: start, load through the client, restart, crash with SIGKILL."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from server_testing import API_KEY, DIM, payload, vectors

from quiver.client import Client
from quiver.server.process import start_server

pytestmark = pytest.mark.slow


def test_serve_load_query_restart(tmp_path: Path) -> None:
    db, log = tmp_path / "db", tmp_path / "server.log"
    env = {"QUIVER_API_KEY": API_KEY}  # configuration from the environment
    x = vectors(300, seed=11)
    server = start_server(db, log, env=env)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/collections").status_code == 401
        with Client(server.url, api_key=API_KEY) as client:
            coll = client.create_collection("docs", DIM, "cosine")
            ids = list(range(1000, 1300))
            assert coll.upsert(ids, x, [payload(i) for i in range(300)], batch_size=128) == 300
            before = coll.search(x[10], k=5, with_payload=True)
            assert before[0].id == 1010 and before[0].payload == payload(10)
            assert coll.count({"must": [{"key": "group", "match": {"value": "a"}}]}) == 100
    finally:
        # SIGTERM: graceful; uvicorn re-raises the signal once shut down, hence -15
        assert server.stop() in (0, -15)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    messages = [entry["msg"] for entry in lines]
    assert "ready" in messages and "database closed" in messages  # structured JSON logs
    assert any(e.get("status") == 401 for e in lines)  # access log lines carry fields

    server = start_server(db, log, env=env)
    try:
        with Client(server.url, api_key=API_KEY) as client:
            coll = client.get_collection("docs")
            assert coll.count() == 300
            after = coll.search(x[10], k=5, with_payload=True)
            assert [h.id for h in after] == [h.id for h in before]
            assert coll.get(1299).payload == payload(299)
    finally:
        server.stop()


def test_sigkill_during_writes_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    db, log = tmp_path / "db", tmp_path / "server.log"
    server = start_server(db, log, args=["--no-access-log"])
    acknowledged: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    rng = np.random.default_rng(3)

    def write_loop() -> None:
        with Client(server.url, timeout=10) as client:
            coll = client.create_collection("crash", DIM)
            batch = 0
            while not stop.is_set() and batch < 100_000:
                ids = list(range(batch * 4, batch * 4 + 4))
                vecs = rng.standard_normal((4, DIM)).astype(np.float32)
                try:
                    coll.upsert(ids, vecs, [{"batch": batch}] * 4)
                except (httpx.TransportError, OSError) as exc:  # the server died mid-request
                    errors.append(exc)
                    return
                acknowledged.extend(ids)
                batch += 1

    writer = threading.Thread(target=write_loop)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 200 and time.monotonic() < deadline and writer.is_alive():
            time.sleep(0.01)
        server.kill()  # SIGKILL: no shutdown, no checkpoint
    finally:
        stop.set()
        writer.join(timeout=30)
    assert len(acknowledged) >= 200, server.log_tail()
    assert server.proc.returncode == -9

    server = start_server(db, log, args=["--no-access-log"])
    try:
        with Client(server.url) as client:
            coll = client.get_collection("crash")
            found = coll.retrieve(acknowledged)
            assert [p.id for p in found] == acknowledged
            assert all(p.payload == {"batch": p.id // 4} for p in found)
            assert coll.count() >= len(acknowledged)  # the in-flight batch may have landed
    finally:
        server.stop()
