"""API key, body-size limits, readiness gating and the app factory's isolation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_testing import API_KEY, DIM, assert_error, make_settings, open_client

from quiver.server import Settings, create_app


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A server that requires ``API_KEY``; the client sends no key by default."""
    settings = make_settings(tmp_path_factory.mktemp("keyed"), api_key=API_KEY)
    yield from open_client(settings)


GOOD = {"api-key": API_KEY}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/collections"),
        ("PUT", "/collections/x"),
        ("GET", "/collections/x"),
        ("DELETE", "/collections/x"),
        ("PUT", "/collections/x/points"),
        ("POST", "/collections/x/points"),
        ("GET", "/collections/x/points/1"),
        ("POST", "/collections/x/points/delete"),
        ("POST", "/collections/x/points/count"),
        ("POST", "/collections/x/points/scroll"),
        ("POST", "/collections/x/points/query"),
        ("POST", "/collections/x/points/query/batch"),
        ("POST", "/collections/x/snapshots"),
        ("GET", "/collections/x/snapshots"),
        ("GET", "/collections/x/snapshots/s.snapshot"),
        ("DELETE", "/collections/x/snapshots/s.snapshot"),
        ("PUT", "/collections/x/snapshots/recover"),
        ("POST", "/collections/x/snapshots/upload"),
        ("GET", "/metrics"),
    ],
)
def test_every_endpoint_but_health_needs_the_key(keyed: TestClient, method: str, path: str) -> None:
    for headers in ({}, {"api-key": "wrong"}, {"api-key": API_KEY + "x"}, {"api-key": ""}):
        r = keyed.request(method, path, headers=headers, json={})
        body = assert_error(r, 401, "unauthorized")
        assert "api-key" in body["message"]
        assert r.headers["www-authenticate"] == "api-key"


def test_health_needs_no_key_and_the_right_key_works(keyed: TestClient) -> None:
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/readyz").status_code == 200
    assert keyed.get("/collections", headers=GOOD).status_code == 200
    assert keyed.get("/metrics", headers=GOOD).status_code == 200
    r = keyed.put("/collections/k", json={"dim": DIM}, headers=GOOD)
    assert r.status_code == 200, r.text


def test_openapi_declares_the_key(keyed: TestClient) -> None:
    assert keyed.get("/openapi.json").status_code == 401
    spec = keyed.get("/openapi.json", headers=GOOD).json()
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "api-key"


def test_oversize_body_is_413(keyed: TestClient) -> None:
    big = b'{"points": [' + b" " * (300 * 1024) + b"]}"  # limit is 256 KiB in these tests
    r = keyed.put(
        "/collections/k/points", content=big, headers=GOOD | {"content-type": "application/json"}
    )
    body = assert_error(r, 413, "payload_too_large")
    assert "QUIVER_MAX_BODY_BYTES" in body["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"points": ['
        for _ in range(40):
            yield b" " * 8192
        yield b"]}"

    r = keyed.put(
        "/collections/k/points",
        content=chunks(),
        headers=GOOD | {"content-type": "application/json"},
    )
    assert_error(r, 413, "payload_too_large")
    assert keyed.get("/healthz").status_code == 200


def test_not_ready_before_start_up(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    client = TestClient(app)  # no `with`: the lifespan (open, warm-up) never ran
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "starting"
    body = assert_error(client.get("/collections"), 503, "not_ready")
    assert "starting" in body["message"]


def test_second_server_on_the_same_directory_fails_to_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as first:
        assert first.get("/healthz").status_code == 200
        with pytest.raises(Exception, match="lock|Locked"), TestClient(create_app(settings)):
            pass


def test_apps_are_independent(tmp_path: Path) -> None:
    a = create_app(make_settings(tmp_path / "a", api_key="ka"))
    b = create_app(make_settings(tmp_path / "b"))
    assert a.state.quiver.metrics.registry is not b.state.quiver.metrics.registry
    assert a.state.quiver.settings.api_key is not None and b.state.quiver.settings.api_key is None


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QUIVER_DB_DIR", str(tmp_path / "env-db"))
    monkeypatch.setenv("QUIVER_API_KEY", "from-env")
    monkeypatch.setenv("QUIVER_MAX_K", "7")
    s = Settings()
    assert s.db_dir == tmp_path / "env-db" and s.max_k == 7
    assert s.api_key is not None and s.api_key.get_secret_value() == "from-env"
    assert s.host == "127.0.0.1"
    assert s.resolved_snapshot_dir() == tmp_path / "env-db-snapshots"
    assert "from-env" not in repr(s)  # the key is a secret
