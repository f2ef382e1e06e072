"""Reliability and security of the server boundary: payload depth, snapshot uploads (format,
size, contents), the API key on the docs, temp files of snapshots, key validation, filter list
bounds, no server paths in responses, and an event loop that stays free under heavy queries."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from server_testing import (
    API_KEY,
    DIM,
    assert_error,
    make_settings,
    next_name,
    open_client,
    seed_collection,
    vectors,
    wait_ready,
)

import quiver
from quiver.db.payloads import encode_payload
from quiver.server import Settings, create_app

started = contextmanager(open_client)  # a ready app on settings, stopped on exit
MAX_PAYLOAD_DEPTH = 32  # quiver.db.payloads.MAX_PAYLOAD_DEPTH


def nested(levels: int) -> dict[str, Any]:
    """A payload ``levels`` objects deep: ``{"x": {"x": ... {}}}``."""
    payload: dict[str, Any] = {}
    for _ in range(levels - 1):
        payload = {"x": payload}
    return payload


def snapshot_members(client: TestClient, name: str) -> dict[str, bytes]:
    """The files inside a fresh snapshot of ``name``, by name."""
    snap = client.post(f"/collections/{name}/snapshots").json()["result"]["name"]
    raw = client.get(f"/collections/{name}/snapshots/{snap}").content
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def tar_of(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar holding ``files``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def upload(client: TestClient, name: str, data: bytes) -> Any:
    return client.post(f"/collections/{name}/snapshots/upload", content=data)


def server_paths(settings: Settings) -> list[str]:
    """The absolute directories a response must never reveal."""
    return [str(settings.db_dir.resolve()), str(settings.resolved_snapshot_dir().resolve())]


# --- #7 payload depth -------------------------------------------------------------------


def test_deeply_nested_payload_is_refused_at_the_boundary(client: TestClient, name: str) -> None:
    client.put(f"/collections/{name}", json={"dim": DIM})
    point = {"id": 1, "vector": [1.0] * DIM, "payload": nested(300)}
    r = client.put(f"/collections/{name}/points", json={"points": [point]})
    body = assert_error(r, 400, "invalid_input")
    assert str(MAX_PAYLOAD_DEPTH) in body["message"]
    assert client.post(f"/collections/{name}/points/count", json={}).json()["result"]["count"] == 0
    point["payload"] = nested(MAX_PAYLOAD_DEPTH)  # at the limit: stored and read back
    assert client.put(f"/collections/{name}/points", json={"points": [point]}).status_code == 200
    assert client.get(f"/collections/{name}/points/1").json()["result"]["payload"] == nested(
        MAX_PAYLOAD_DEPTH
    )


def test_embedded_payload_depth_and_size_are_bounded() -> None:
    import quiver.db.payloads
    from quiver.errors import InvalidInputError

    assert quiver.db.payloads.MAX_PAYLOAD_DEPTH == MAX_PAYLOAD_DEPTH
    with pytest.raises(InvalidInputError, match=f"at most {MAX_PAYLOAD_DEPTH}"):
        encode_payload(nested(MAX_PAYLOAD_DEPTH + 1))
    with pytest.raises(InvalidInputError, match="at most"):
        encode_payload({"list": [[[[[[]]]]]] * 2 + [nested(MAX_PAYLOAD_DEPTH)]})
    with pytest.raises(InvalidInputError, match="bytes"):
        encode_payload({"text": "x" * (2 << 20)})
    assert encode_payload(nested(MAX_PAYLOAD_DEPTH)) is not None


def test_a_too_deep_stored_payload_does_not_break_reads(client: TestClient, name: str) -> None:
    """Payloads stored before the bound existed are read back without a 500."""
    client.put(f"/collections/{name}", json={"dim": DIM})
    coll = client.app.state.quiver.db.get_collection(name)  # type: ignore[attr-defined]
    import quiver.db.payloads as payloads

    limit = payloads.MAX_PAYLOAD_DEPTH
    try:
        payloads.MAX_PAYLOAD_DEPTH = 10_000  # as an older version stored it
        coll.upsert([1, 2], np.eye(2, DIM, dtype=np.float32), [nested(300), {"ok": 1}])
    finally:
        payloads.MAX_PAYLOAD_DEPTH = limit
    base = f"/collections/{name}/points"
    responses = [
        client.get(f"{base}/1"),
        client.post(base, json={"ids": [1, 2]}),
        client.post(f"{base}/scroll", json={}),
        client.post(f"{base}/query", json={"vector": [1.0] * DIM, "with_payload": True}),
        client.post(f"{base}/query/batch", json={"vectors": [[1.0] * DIM], "with_payload": True}),
    ]
    for r in responses:
        assert r.status_code == 200, r.text
        assert "deeper than" in r.text
    assert {"ok": 1} in [p["payload"] for p in responses[1].json()["result"]]


# --- #10 batch x k and the event loop ---------------------------------------------------


def test_batch_times_k_is_bounded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_batch_results=1_000)
    with started(settings) as client:
        name = next_name()
        seed_collection(client, name)
        body = {"vectors": [[1.0] * DIM] * 11, "k": 100}
        msg = assert_error(client.post(f"/collections/{name}/points/query/batch", json=body), 422)
        assert "QUIVER_MAX_BATCH_RESULTS" in msg["message"] and "1100" in msg["message"]
        body["vectors"] = body["vectors"][:10]
        assert client.post(f"/collections/{name}/points/query/batch", json=body).status_code == 200


def test_health_and_readiness_answer_while_a_heavy_batch_runs(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        max_batch=5_000,
        max_k=100,
        max_batch_results=500_000,
        max_body_bytes=2**24,
        max_concurrency=1,  # the heavy query holds the only worker-pool slot
    )
    with started(settings) as client:
        name = next_name()
        client.put(f"/collections/{name}", json={"dim": DIM})
        rng = np.random.default_rng(5)
        x = rng.standard_normal((2_000, DIM)).astype(np.float32)
        coll = client.app.state.quiver.db.get_collection(name)  # type: ignore[attr-defined]
        coll.upsert(list(range(2_000)), x, [{"n": i, "tags": ["a", "b"]} for i in range(2_000)])
        body = {"vectors": x[:2_000].tolist(), "k": 100, "ef": 100, "with_payload": True}
        heavy: dict[str, float] = {}

        def run_heavy() -> None:
            t0 = time.perf_counter()
            r = client.post(f"/collections/{name}/points/query/batch", json=body)
            heavy["seconds"] = time.perf_counter() - t0
            heavy["status"] = r.status_code

        thread = threading.Thread(target=run_heavy)
        thread.start()
        waits = []
        while thread.is_alive():
            for probe in ("/healthz", "/readyz"):
                t0 = time.perf_counter()
                assert client.get(probe).status_code == 200
                waits.append(time.perf_counter() - t0)
            time.sleep(0.01)
        thread.join()
        assert heavy["status"] == 200
        # The heavy request takes seconds; /healthz must never wait for most of it.
        assert heavy["seconds"] > 1.0, heavy
        assert max(waits) < max(0.5, heavy["seconds"] / 4), (max(waits), heavy)


# --- #8 and #12 snapshot uploads --------------------------------------------------------


def test_gzip_snapshot_upload_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with started(settings) as client:
        name = next_name()
        seed_collection(client, name)
        members = snapshot_members(client, name)
        big = members | {"padding.bin": b"\0" * (1 << 20)}  # 1 MiB of zeros: ~1 KiB gzipped
        data = gzip.compress(tar_of(big))
        assert len(data) < 64 * 1024
        body = assert_error(upload(client, "gz", data), 400, "invalid_input")
        assert "gzip" in body["message"] or "uncompressed" in body["message"]
        assert_error(client.get("/collections/gz"), 404)
        assert not list((settings.db_dir / "collections").glob("*gz*"))
        assert not list((settings.resolved_snapshot_dir() / "gz").glob("*"))


def test_restore_keeps_only_the_snapshot_files(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    members = snapshot_members(client, name)
    extra = members | {"extra.bin": b"x" * 100, "notes/readme.txt": b"hi"}
    r = upload(client, name + "x", tar_of(extra))
    assert r.status_code == 200, r.text
    db = client.app.state.quiver.db  # type: ignore[attr-defined]
    folder = db.get_collection(name + "x")._dir
    names = {p.name for p in folder.iterdir()}
    assert "extra.bin" not in names and "notes" not in names
    assert set(members) <= names


def test_restore_refuses_a_sparse_member_larger_than_the_file(
    client: TestClient, name: str
) -> None:
    """A sparse member expands to far more bytes than the upload holds: refused."""
    seed_collection(client, name)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in snapshot_members(client, name).items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        sparse = tarfile.TarInfo("extra.bin")
        sparse.size = 10
        sparse.pax_headers = {
            "GNU.sparse.size": str(1 << 30),  # 1 GiB once expanded
            "GNU.sparse.map": "0,10",
            "GNU.sparse.name": "extra.bin",
        }
        tar.addfile(sparse, io.BytesIO(b"x" * 10))
    body = assert_error(upload(client, name + "sparse", raw.getvalue()), 400, "invalid_input")
    assert "more bytes" in body["message"]
    assert_error(client.get(f"/collections/{name}sparse"), 404)


@pytest.mark.parametrize(
    "damage",
    ["no collection.json", "no manifest.json", "manifest version 99", "manifest not json"],
)
def test_invalid_snapshot_contents_are_400_with_the_reason(
    client: TestClient, name: str, damage: str
) -> None:
    seed_collection(client, name)
    members = snapshot_members(client, name)
    manifest = json.loads(members["manifest.json"])
    if damage == "no collection.json":
        del members["collection.json"]
    elif damage == "no manifest.json":
        del members["manifest.json"]
    elif damage == "manifest version 99":
        members["manifest.json"] = json.dumps(manifest | {"format_version": 99}).encode()
    else:
        members["manifest.json"] = b"{not json"
    body = assert_error(upload(client, name + "r", tar_of(members)), 400, "invalid_input")
    reason = {"no collection.json": "collection.json", "no manifest.json": "manifest.json"}
    assert reason.get(damage, "manifest") in body["message"]
    if damage == "manifest version 99":
        assert "99" in body["message"]
    settings = client.app.state.quiver.settings  # type: ignore[attr-defined]
    for path in server_paths(settings):
        assert path not in body["message"]


# --- paths in responses -----------------------------------------------------------------


def test_no_server_paths_in_responses(client: TestClient, name: str) -> None:
    settings = client.app.state.quiver.settings  # type: ignore[attr-defined]
    texts = [client.put(f"/collections/{name}", json={"dim": DIM}).text]
    texts.append(client.get(f"/collections/{name}").text)
    texts.append(upload(client, name + "u", b"not a tar at all" * 64).text)
    for text in texts:
        assert '"path"' not in text, text
        for path in server_paths(settings):
            assert path not in text, text


# --- #15 docs behind the key ------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from open_client(make_settings(tmp_path_factory.mktemp("keyed"), api_key=API_KEY))


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_need_the_key_when_one_is_set(keyed: TestClient, path: str) -> None:
    assert_error(keyed.get(path), 401, "unauthorized")
    assert keyed.get(path, headers={"api-key": API_KEY}).status_code == 200


def test_docs_can_be_made_public(tmp_path: Path) -> None:
    with started(make_settings(tmp_path, api_key=API_KEY, public_docs=True)) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200
        assert_error(client.get("/collections"), 401)


# --- #16 partial snapshot files ---------------------------------------------------------


def test_partial_snapshot_files_are_removed_on_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    folder = settings.resolved_snapshot_dir() / "docs"
    folder.mkdir(parents=True)
    partial = folder / "docs-20260101T000000000000Z.snapshot.tmp"
    partial.write_bytes(b"half a tar")
    keep = folder / "docs-20260101T000000000000Z.snapshot"
    keep.write_bytes(b"a finished snapshot")
    with started(settings):
        assert not partial.exists()
        assert keep.exists()


def test_a_failed_snapshot_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        name = next_name()
        seed_collection(client, name)
        real_add = tarfile.TarFile.add

        def add_then_fail(self: tarfile.TarFile, *args: Any, **kwargs: Any) -> None:
            real_add(self, *args, **kwargs)
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(tarfile.TarFile, "add", add_then_fail)
        r = client.post(f"/collections/{name}/snapshots")
        assert r.status_code >= 500
        monkeypatch.undo()
        folder = settings.resolved_snapshot_dir() / name
        assert list(folder.glob("*")) == []
        assert client.get(f"/collections/{name}/snapshots").json()["result"] == []


# --- #17 API key characters -------------------------------------------------------------


@pytest.mark.parametrize("key", ["clé-secrète", "tab\tkey", "space key", "zero\u200bwidth"])
def test_api_key_must_be_visible_ascii(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValidationError, match="visible ASCII") as err:
        Settings(db_dir=tmp_path, api_key=key)
    assert key not in str(err.value)  # the secret is not echoed


def test_a_visible_ascii_key_is_accepted(tmp_path: Path) -> None:
    key = "Abc-123_~!#$%&'*+.^`|"
    settings = Settings(db_dir=tmp_path, api_key=key)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == key


# --- filter list bounds -----------------------------------------------------------------


def test_has_id_lists_are_bounded_by_max_batch(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    flt = {"must": [{"has_id": list(range(300))}, {"should": [{"has_id": list(range(300))}]}]}
    body = assert_error(client.post(f"/collections/{name}/points/count", json={"filter": flt}), 413)
    assert "QUIVER_MAX_BATCH" in body["message"]


def test_embedded_filter_lists_are_bounded() -> None:
    from quiver.db.filters import MAX_FILTER_VALUES, parse_filter
    from quiver.errors import InvalidFilterError

    with pytest.raises(InvalidFilterError, match=str(MAX_FILTER_VALUES)):
        parse_filter({"must": [{"has_id": list(range(MAX_FILTER_VALUES + 1))}]})
    too_many = list(range(MAX_FILTER_VALUES + 1))
    with pytest.raises(InvalidFilterError, match=str(MAX_FILTER_VALUES)):
        parse_filter({"must": [{"key": "a", "match": {"any": too_many}}]})
    assert parse_filter({"must": [{"has_id": list(range(10))}]}) is not None


def test_a_damaged_collection_does_not_stop_the_server(tmp_path: Path) -> None:
    """The server starts with the healthy collections, shows the damaged one as failed in
    /readyz and /collections/{name}, keeps serving the others, and lets it be dropped."""
    settings = make_settings(tmp_path)
    x = vectors()
    for name in ("good", "bad"):
        with quiver.Database(settings.db_dir) as db:
            db.create_collection(name, DIM).upsert(list(range(len(x))), x)
    (codes,) = (settings.db_dir / "collections" / "bad").glob("codes-g*.npy")
    data = bytearray(codes.read_bytes())
    data[len(data) // 2] ^= 0x55
    codes.write_bytes(bytes(data))
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and set(ready["failed_collections"]) == {"bad"}
        bad = client.get("/collections/bad").json()["result"]
        assert bad["status"] == "failed" and "checksum" in bad["error"]
        assert str(settings.db_dir) not in bad["error"]  # no server paths
        assert client.get("/collections/good").json()["result"]["status"] == "green"
        r = client.post("/collections/good/points/query", json={"vector": x[3].tolist(), "k": 1})
        assert r.json()["result"]["points"][0]["id"] == 3
        assert client.post("/collections/bad/points/count", json={}).status_code == 500
        assert client.delete("/collections/bad").status_code == 200
        names = [c["name"] for c in client.get("/collections").json()["result"]["collections"]]
        assert names == ["good"]
