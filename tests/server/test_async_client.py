"""quiver.AsyncClient: the same verbs and results as Client (the same exercise against the
embedded database), and the upload machinery both clients share: batches, a bounded number
in flight, retries with backoff on transient errors only, a progress bar."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from server_testing import API_KEY, DIM, make_settings, next_name, open_client, vectors
from test_client import _exercise

import quiver
from quiver.client import AsyncClient, AsyncRemoteCollection, Client, wire
from quiver.errors import CollectionNotFoundError, InvalidInputError


class Blocking:
    """Calls an async client's coroutines on the app's own event loop (the TestClient's
    portal), so that the synchronous exercise runs unchanged against AsyncClient."""

    def __init__(self, target: Any, portal: Any) -> None:
        self._target, self._portal = target, portal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            async def run() -> Any:
                return await attr(*args, **kwargs)

            out = self._portal.call(run)
            return Blocking(out, self._portal) if isinstance(out, AsyncRemoteCollection) else out

        return call


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("async"), api_key=API_KEY)
    yield from open_client(settings)


@pytest.fixture
def remote_async(app_client: TestClient) -> Iterator[Blocking]:
    transport = httpx.ASGITransport(app=app_client.app)
    http = httpx.AsyncClient(transport=transport, base_url="http://quiver.test")
    yield Blocking(AsyncClient(api_key=API_KEY, http=http), app_client.portal)


@pytest.fixture
def remote_sync(app_client: TestClient) -> Client:
    return Client(api_key=API_KEY, http=app_client)


def test_async_client_matches_embedded(remote_async: Blocking, tmp_path: Path) -> None:
    name = next_name()
    got = _exercise(remote_async, name)
    with quiver.Database(tmp_path / "embedded") as db:
        want = _exercise(db, name)
    assert got == want
    with pytest.raises(CollectionNotFoundError):
        remote_async.get_collection(name + "missing")
    assert remote_async.ready()


@pytest.mark.parametrize("fmt", ["base64", "json", "arrow"])
def test_upload_formats_store_the_same_points(remote_async: Blocking, fmt: str) -> None:
    coll = remote_async.create_collection(next_name(), DIM)
    x = vectors(30, seed=21)
    payloads = [{"n": i, "tag": "even" if i % 2 == 0 else "odd"} for i in range(30)]
    assert coll.upload(list(range(30)), x, payloads, batch_size=7, format=fmt) == 30
    assert coll.count() == 30
    assert coll.get(13).payload == {"n": 13, "tag": "odd"}
    assert coll.search(x[4], k=1)[0].id == 4


def _flaky_send(monkeypatch: pytest.MonkeyPatch, failures: list[Exception]) -> list[str]:
    """Client.send raising each of ``failures`` once for upserts, then the real answers."""
    calls: list[str] = []
    real = Client.send

    def send(self: Client, call: wire.Call) -> Any:
        if call.method == "PUT" and "/points" in call.path:
            calls.append(call.path)
            if failures:
                raise failures.pop(0)
        return real(self, call)

    monkeypatch.setattr(Client, "send", send)
    monkeypatch.setattr(wire, "backoff_seconds", lambda attempt: 0.0)
    return calls


def test_transient_errors_are_retried(remote_sync: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    coll = remote_sync.create_collection(next_name(), DIM)
    busy = wire.RemoteError(503, "unavailable", "busy")
    calls = _flaky_send(monkeypatch, [httpx.ConnectError("refused"), busy])
    assert coll.upsert(list(range(10)), vectors(10, seed=22), batch_size=10, parallel=1) == 10
    assert len(calls) == 3 and coll.count() == 10


def test_client_errors_are_not_retried(
    remote_sync: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll = remote_sync.create_collection(next_name(), DIM)
    calls = _flaky_send(monkeypatch, [])
    with pytest.raises(InvalidInputError):
        coll.upsert([1], np.ones((1, DIM + 1)))  # wrong dim: refused by the server once
    assert len(calls) == 1


def test_retries_give_up(remote_sync: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    coll = remote_sync.create_collection(next_name(), DIM)
    _flaky_send(monkeypatch, [httpx.ReadTimeout("slow")] * 3)
    with pytest.raises(httpx.ReadTimeout):
        coll.upsert([1], vectors(1), retries=2)
    assert coll.count() == 0


def test_parallel_batches_stay_bounded(
    remote_sync: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll = remote_sync.create_collection(next_name(), DIM)
    real = Client.send
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def send(self: Client, call: wire.Call) -> Any:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        try:
            time.sleep(0.02)
            return real(self, call)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(Client, "send", send)
    assert coll.upsert(list(range(60)), vectors(60, seed=23), batch_size=5, parallel=3) == 60
    assert 1 <= state["max"] <= 3
    assert coll.count() == 60


def test_repeated_ids_keep_the_last_version(remote_sync: Client) -> None:
    coll = remote_sync.create_collection(next_name(), DIM)
    first, last = vectors(10, seed=24), vectors(10, seed=25)
    ids = list(range(10)) * 2
    coll.upsert(ids, np.concatenate([first, last]), batch_size=3, parallel=4)
    assert coll.search(last[6], k=1)[0].id == 6
    got = np.asarray(coll.get(6, with_vector=True).vector)
    np.testing.assert_allclose(got, last[6] / np.linalg.norm(last[6]), rtol=1e-5, atol=1e-6)


def test_progress_bar(remote_sync: Client, capsys: pytest.CaptureFixture[str]) -> None:
    coll = remote_sync.create_collection(next_name(), DIM)
    coll.upload(list(range(20)), vectors(20, seed=26), batch_size=5, progress=True)
    assert "20/20" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("ids", "payloads", "chosen"),
    [
        ([1, 2], None, "arrow"),
        (["a", "b"], [{"n": 1, "t": "x", "f": 0.5, "b": True}, {"t": "y"}], "arrow"),
        ([1, 2], [{"n": 1}, {"n": 2.5}], "base64"),  # one column of one type: 1 -> 1.0
        ([1, 2], [{"n": True}, {"n": 1}], "base64"),  # a bool is not an int here
        ([1, 2], [{"n": 1}, None], "base64"),  # a null payload
        ([1, 2], [{"n": None}, {"n": 1}], "base64"),  # a null leaves the key out
        ([1, 2], [{"tags": ["a"]}, {"tags": []}], "base64"),  # not a flat scalar
        ([1, 2], [{"d": {"x": 1}}, {"d": {"y": 2}}], "base64"),
        ([1, 2], [{"n": 2**63}, {"n": 1}], "base64"),  # beyond int64
        ([1, 2], [{"f": float("nan")}, {"f": 1.0}], "base64"),
        ([1, 2], [{"id": 1}, {"id": 2}], "base64"),  # the stream's own column names
        ([1, 2], [{}, {}], "base64"),  # no payload column at all
        ([1, "b"], None, "base64"),  # mixed id kinds
    ],
)
def test_auto_sends_arrow_only_when_the_points_come_back_unchanged(
    ids: list[Any], payloads: Any, chosen: str
) -> None:
    plan = wire.plan_upsert(ids, np.zeros((2, 3), np.float32), payloads, 10, "auto")
    assert plan.format == chosen


def test_auto_upload_stores_the_points_exactly(remote_sync: Client) -> None:
    coll = remote_sync.create_collection(next_name(), DIM, id_type="string")
    x = vectors(20, seed=23)
    payloads = [{"n": i, "t": f"p{i}", "f": i / 4, "ok": i % 3 == 0} for i in range(20)]
    payloads[5] = {"t": "only"}
    ids = [f"id{i}" for i in range(20)]
    assert coll.upsert(ids, x, payloads, batch_size=6) == 20
    got = coll.retrieve(ids)
    assert [p.payload for p in got] == payloads
