"""Start-up: /readyz is 200 once a query can run, and says so while the remaining kernels
still compile in the background; a failing background warm-up is reported, not hidden."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_testing import make_settings, wait_ready

import quiver
from quiver.server.app import create_app
from quiver.server.routes.ops import WARMING_MESSAGE


def _wait_for(client: TestClient, predicate, timeout: float = 30.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        body = client.get("/readyz").json()
        if predicate(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_ready_while_the_rest_compiles_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_warmup = quiver.warmup

    def slow_warmup() -> float:
        release.wait(30)
        return real_warmup()

    monkeypatch.setattr(quiver, "warmup", slow_warmup)
    with TestClient(create_app(make_settings(tmp_path))) as client:
        wait_ready(client)
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json()["message"] == WARMING_MESSAGE
        release.set()
        body = _wait_for(client, lambda b: b.get("message") is None)
        assert body["status"] == "ready" and body.get("message") is None


def test_a_failing_background_warmup_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_warmup() -> float:
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(quiver, "warmup", broken_warmup)
    with TestClient(create_app(make_settings(tmp_path))) as client:
        body = _wait_for(client, lambda b: b["status"] == "failed")
        assert body["status"] == "failed" and "no compiler today" in body["message"]
        assert client.get("/readyz").status_code == 503
