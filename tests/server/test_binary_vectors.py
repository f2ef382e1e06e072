"""Binary vectors over HTTP: base64 float32 per point, as a columnar block, in queries and
reads, and the Arrow IPC bulk upsert; bad binary input is refused and changes nothing."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from server_testing import DIM, make_settings, next_name, open_client, vectors

from quiver.server import fastbody
from quiver.server.schemas import QueryRequest, UpsertPoints


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from open_client(make_settings(tmp_path_factory.mktemp("binary")))


def b64(x: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(x, dtype="<f4").tobytes()).decode()


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def points_table(ids: list[int], x: np.ndarray, **columns: Any) -> pa.Table:
    values = pa.array(x.astype(np.float32).reshape(-1))
    vector = pa.FixedSizeListArray.from_arrays(values, x.shape[1])
    return pa.table({"id": pa.array(ids, pa.uint64()), "vector": vector, **columns})


def new_collection(client: TestClient) -> str:
    name = next_name()
    assert client.put(f"/collections/{name}", json={"dim": DIM}).status_code == 200
    return name


def stored(client: TestClient, name: str, ids: list[int]) -> dict[Any, Any]:
    body = {"ids": ids, "with_vector": True, "vector_encoding": "base64"}
    r = client.post(f"/collections/{name}/points", json=body)
    assert r.status_code == 200, r.text
    return {
        p["id"]: (np.frombuffer(base64.b64decode(p["vector"]), "<f4"), p["payload"])
        for p in r.json()["result"]
    }


def unit(x: np.ndarray) -> np.ndarray:
    """What a cosine collection stores: the vector scaled to length 1."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def count(client: TestClient, name: str) -> int:
    return int(client.post(f"/collections/{name}/points/count", json={}).json()["result"]["count"])


def test_base64_per_point_and_columnar_store_the_same_floats(client: TestClient) -> None:
    name = new_collection(client)
    x = vectors(6, seed=11)
    per_point = [{"id": i, "vector": b64(x[i]), "payload": {"n": i}} for i in range(3)]
    r = client.put(f"/collections/{name}/points", json={"points": per_point})
    assert r.status_code == 200, r.text
    columns = {"ids": [3, 4, 5], "vectors": b64(x[3:]), "payloads": [{"n": 3}, None, {"n": 5}]}
    r = client.put(f"/collections/{name}/points", json=columns)
    assert r.json()["result"]["upserted"] == 3
    got = stored(client, name, list(range(6)))
    for i in range(6):
        np.testing.assert_allclose(got[i][0], unit(x[i]), rtol=1e-6, atol=1e-7)
    assert [got[i][1] for i in range(6)] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}, None, {"n": 5}]


def test_arrow_stream_upsert(client: TestClient) -> None:
    name = new_collection(client)
    x = vectors(5, seed=12)
    table = points_table(list(range(5)), x, lang=pa.array(["en", "de", None, "en", "fr"]))
    r = client.put(
        f"/collections/{name}/points/arrow",
        content=arrow_bytes(table),
        headers={"content-type": "application/vnd.apache.arrow.stream"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"]["upserted"] == 5
    got = stored(client, name, list(range(5)))
    np.testing.assert_allclose(got[3][0], unit(x[3]), rtol=1e-6, atol=1e-7)
    assert got[1][1] == {"lang": "de"}
    assert got[2][1] is None  # every payload column null: no payload


def test_query_with_base64_vector_and_batch_block(client: TestClient) -> None:
    name = new_collection(client)
    x = vectors(40, seed=13)
    client.put(f"/collections/{name}/points", json={"ids": list(range(40)), "vectors": b64(x)})
    base = f"/collections/{name}/points/query"
    as_numbers = client.post(base, json={"vector": x[7].tolist(), "k": 5}).json()["result"]
    as_b64 = client.post(base, json={"vector": b64(x[7]), "k": 5}).json()["result"]
    assert [h["id"] for h in as_b64["points"]] == [h["id"] for h in as_numbers["points"]]
    assert as_b64["points"][0]["id"] == 7
    body = {"vectors": b64(x[:3]), "k": 2, "with_vector": True, "vector_encoding": "base64"}
    batch = client.post(base + "/batch", json=body).json()["result"]
    assert [r["points"][0]["id"] for r in batch] == [0, 1, 2]
    returned = np.frombuffer(base64.b64decode(batch[1]["points"][0]["vector"]), "<f4")
    np.testing.assert_allclose(returned, unit(x[1]), rtol=1e-6, atol=1e-7)


def _bad_inputs(x: np.ndarray) -> list[tuple[str, dict[str, Any]]]:
    nan = x[:2].copy()
    nan[1, 3] = np.nan
    return [
        ("wrong length", {"ids": [1, 2], "vectors": b64(x[:2])[:-8]}),
        ("not base64", {"ids": [1], "vectors": "@@@@" * 8}),
        ("NaN", {"ids": [1, 2], "vectors": b64(nan)}),
        ("wrong dim", {"ids": [1, 2], "vectors": b64(np.zeros((2, DIM + 1), np.float32))}),
        ("count mismatch", {"ids": [1, 2, 3], "vectors": b64(x[:2])}),
        ("per point NaN", {"points": [{"id": 1, "vector": b64(nan[1])}]}),
        ("per point dim", {"points": [{"id": 1, "vector": b64(np.ones(DIM - 1))}]}),
    ]


@pytest.mark.parametrize("case", range(7))
def test_bad_base64_is_refused_and_changes_nothing(client: TestClient, case: int) -> None:
    name = new_collection(client)
    x = vectors(4, seed=14)
    what, body = _bad_inputs(x)[case]
    r = client.put(f"/collections/{name}/points", json=body)
    assert r.status_code in (400, 422), (what, r.text)
    assert r.json()["message"], what
    assert count(client, name) == 0, what


def test_bad_arrow_streams_are_refused_and_change_nothing(client: TestClient) -> None:
    name = new_collection(client)
    x = vectors(3, seed=15)
    good = arrow_bytes(points_table([1, 2, 3], x))
    nan = x.copy()
    nan[0, 0] = np.nan
    wrong_dim = np.zeros((3, DIM + 2), np.float32)
    cases = {
        "garbage": b"not an arrow stream at all",
        "truncated": good[: len(good) // 2],
        "NaN": arrow_bytes(points_table([1, 2, 3], nan)),
        "wrong dim": arrow_bytes(points_table([1, 2, 3], wrong_dim)),
        "no vector column": arrow_bytes(pa.table({"id": pa.array([1, 2], pa.uint64())})),
        "float64 vectors": arrow_bytes(
            pa.table(
                {
                    "id": pa.array([1], pa.uint64()),
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(x[0].astype("f8")), DIM),
                }
            )
        ),
    }
    for what, body in cases.items():
        r = client.put(
            f"/collections/{name}/points/arrow",
            content=body,
            headers={"content-type": "application/vnd.apache.arrow.stream"},
        )
        assert r.status_code == 400, (what, r.text)
        assert any(w in r.text for w in ("Arrow", "dim", "finite", "column")), (what, r.text)
        assert count(client, name) == 0, what


def test_json_bodies_are_parsed_by_pydantic_from_bytes(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path is taken: the body model's model_validate_json reads the raw bytes."""
    seen: list[str] = []
    original = fastbody.parse_body

    def spy(model: Any, body: bytes) -> Any:
        parsed = original(model, body)
        seen.append(type(parsed).__name__)
        return parsed

    monkeypatch.setattr(fastbody, "parse_body", spy)
    name = new_collection(client)
    x = vectors(2, seed=16)
    client.put(f"/collections/{name}/points", json={"ids": [1, 2], "vectors": b64(x)})
    client.post(f"/collections/{name}/points/query", json={"vector": b64(x[0]), "k": 1})
    assert seen == [UpsertPoints.__name__, QueryRequest.__name__]
