"""Helpers of the server tests: settings on temporary directories, seeded collections."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from quiver.server import Settings, create_app

DIM = 8
N_POINTS = 120
API_KEY = "test-key-1234"

_names = itertools.count()


def make_settings(root: Path, **overrides: Any) -> Settings:
    """Settings on a temporary directory, with small limits the tests can exceed."""
    values: dict[str, Any] = {
        "db_dir": root / "db",
        "snapshot_dir": root / "snapshots",
        "access_log": False,
        "max_body_bytes": 256 * 1024,
        "max_batch": 500,
        "max_k": 100,
        "max_ef": 400,
        "max_dim": 1024,
        "threads": 2,
    } | overrides
    return Settings(**values)


def wait_ready(client: TestClient, timeout: float = 120.0) -> None:
    """Poll /readyz until 200."""
    deadline = time.monotonic() + timeout
    while (r := client.get("/readyz")).status_code != 200:
        if r.json().get("status") == "failed":
            raise RuntimeError(f"server start-up failed: {r.json().get('message')}")
        if time.monotonic() > deadline:
            raise TimeoutError(r.text)
        time.sleep(0.05)


def next_name() -> str:
    """A collection name no other test uses."""
    return f"c{next(_names)}"


def open_client(settings: Settings, headers: dict[str, str] | None = None) -> Iterator[TestClient]:
    """A started app (lifespan run, ready) on ``settings``."""
    with TestClient(create_app(settings), headers=headers) as client:
        wait_ready(client)
        yield client


def vectors(n: int = N_POINTS, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Seeded low-rank float32 vectors (structured, as real embeddings are)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((4, dim))
    x = rng.standard_normal((n, 4)) @ basis + 0.05 * rng.standard_normal((n, dim))
    return x.astype(np.float32)


def payload(i: int) -> dict[str, Any]:
    """The payload of seeded point ``i``."""
    return {"n": i, "group": ["a", "b", "c"][i % 3], "meta": {"even": i % 2 == 0}}


def seed_collection(client: TestClient, name: str, *, metric: str = "cosine") -> np.ndarray:
    """Create ``name`` with ``N_POINTS`` seeded points (ids 0..N-1, payloads); return vectors."""
    r = client.put(f"/collections/{name}", json={"dim": DIM, "metric": metric})
    assert r.status_code == 200, r.text
    x = vectors()
    points = [{"id": i, "vector": x[i].tolist(), "payload": payload(i)} for i in range(len(x))]
    r = client.put(f"/collections/{name}/points", json={"points": points})
    assert r.status_code == 200, r.text
    return x


def assert_error(response: Any, status: int, error: str | None = None) -> dict[str, Any]:
    """The response is the error body ``{"error", "message"}`` with this status (and code)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "message"}, body
    assert body["message"], body
    if error is not None:
        assert body["error"] == error, body
    return body
