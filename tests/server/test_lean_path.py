"""The lean path answers exactly as FastAPI's routes do.

Two servers on identically seeded data, one with the lean path (the default) and one without
(``lean_queries=False``), get the same requests: successes and every kind of error, on
quiver's query and upsert routes and the Qdrant-compatible query and search routes. Status,
body (but the timing) and the metrics' route templates must be the same, the successes must
have been answered by the lean path (FastAPI's route functions not called), and an upsert
that fails must leave the collection as it was.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from server_testing import API_KEY, DIM, make_settings, open_client, seed_collection

from quiver import Collection
from quiver.server.qdrant import routes as qdrant_routes
from quiver.server.routes import points as points_routes
from quiver.server.routes import query as query_routes

Q = "/qdrant"
NATIVE = "native"
QCOLL = "qcoll"
HEADERS = {"api-key": API_KEY}


def _seed(client: TestClient) -> np.ndarray:
    x = seed_collection(client, NATIVE)
    body = {"vectors": {"size": DIM, "distance": "Cosine"}}
    assert client.put(f"{Q}/collections/{QCOLL}", json=body).status_code == 200
    points = [
        {"id": i, "vector": x[i].tolist(), "payload": {"n": i, "g": "ab"[i % 2]}}
        for i in range(len(x))
    ]
    r = client.put(f"{Q}/collections/{QCOLL}/points", json={"points": points})
    assert r.status_code == 200, r.text
    return x


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, TestClient]]:
    """(lean, plain): the same settings and data, with and without the lean path."""
    lean_settings = make_settings(tmp_path_factory.mktemp("lean"), api_key=API_KEY)
    plain_settings = make_settings(
        tmp_path_factory.mktemp("plain"), api_key=API_KEY, lean_queries=False
    )
    lean_gen = open_client(lean_settings, headers=HEADERS)
    plain_gen = open_client(plain_settings, headers=HEADERS)
    lean, plain = next(lean_gen), next(plain_gen)
    _seed(lean)
    _seed(plain)
    yield lean, plain
    for gen in (lean_gen, plain_gen):
        next(gen, None)


@pytest.fixture
def fastapi_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each call of the FastAPI query routes' workers (the lean path calls neither)."""
    calls: list[str] = []
    rendered, run_queries = query_routes.rendered, qdrant_routes._run_queries
    upsert_body = points_routes.upsert_body

    async def counted_rendered(*args: Any) -> Any:
        calls.append("quiver")
        return await rendered(*args)

    async def counted_run_queries(*args: Any) -> Any:
        calls.append("qdrant")
        return await run_queries(*args)

    def counted_upsert_body(*args: Any) -> Any:
        calls.append("upsert")
        return upsert_body(*args)

    monkeypatch.setattr(query_routes, "rendered", counted_rendered)
    monkeypatch.setattr(qdrant_routes, "_run_queries", counted_run_queries)
    monkeypatch.setattr(points_routes, "upsert_body", counted_upsert_body)
    return calls


def _vec(i: int) -> list[float]:
    rng = np.random.default_rng(i)
    return rng.standard_normal(DIM).astype(np.float32).tolist()


def _b64(v: list[float]) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()


QUERY = f"/collections/{NATIVE}/points/query"
GROUP_A = {"must": [{"key": "group", "match": {"value": "a"}}]}
G_A = {"must": [{"key": "g", "match": {"value": "a"}}]}
B64_OUT = {"with_vector": True, "vector_encoding": "base64"}
QQUERY = f"{Q}/collections/{QCOLL}/points/query"
QSEARCH = f"{Q}/collections/{QCOLL}/points/search"

#: (path, JSON body) answered 200 by both.
SUCCESSES: list[tuple[str, Any]] = [
    (QUERY, {"vector": _vec(1), "k": 5}),
    (QUERY, {"vector": _vec(2), "k": 7, "ef": 20, "with_payload": True}),
    (QUERY, {"vector": _vec(3), "k": 4, "filter": GROUP_A}),
    (QUERY, {"vector": _vec(4), "k": 3, "offset": 2, **B64_OUT}),
    (QUERY, {"vector": _b64(_vec(5)), "k": 6, "with_payload": ["n"]}),
    (QUERY, {"query_id": 7, "k": 4}),
    (QUERY, {"vector": _vec(6), "k": 10, "score_threshold": 0.2, "with_vector": True}),
    (QUERY, {"vector": _vec(7), "k": 100, "ef": 300}),
    (QQUERY, {"query": _vec(8), "limit": 3}),
    (QQUERY, {"query": _vec(9), "limit": 5, "with_payload": True, "filter": G_A}),
    (QQUERY, {"query": {"nearest": _vec(10)}, "limit": 4, "offset": 1}),
    (QQUERY, {"query": 12, "limit": 3, "with_vector": True}),
    (QSEARCH, {"vector": _vec(11), "limit": 4}),
    (QSEARCH, {"vector": _vec(12), "limit": 6, "params": {"hnsw_ef": 16}, "with_payload": ["n"]}),
]

#: (path, body bytes or JSON, headers) answered with an error.
ERRORS: list[tuple[str, Any, dict[str, str]]] = [
    (QUERY, {"vector": [1.0] * (DIM + 1)}, {}),  # dimension
    (QUERY, {"vector": _b64([1.0, 2.0])}, {}),  # base64 of the wrong length
    (QUERY, {"vector": _vec(1), "k": 101}, {}),  # over max_k
    (QUERY, {"vector": _vec(1), "ef": 401}, {}),  # over max_ef
    (QUERY, {"vector": _vec(1), "query_id": 3}, {}),  # both
    (QUERY, {"query_id": 99999}, {}),  # no such point
    (QUERY, {"vectr": _vec(1)}, {}),  # schema
    (QUERY, b'{"vector": [1.0,', {}),  # not JSON
    (QUERY, {"vector": _vec(1), "filter": {"must": [{"key": "", "match": {"value": 1}}]}}, {}),
    (QUERY, json.dumps({"vector": _vec(1)}), {"content-type": "text/plain"}),
    (QUERY, {"vector": _vec(1)}, {"api-key": "wrong-key"}),
    (QUERY, {"vector": [0.5] * 40_000}, {}),  # over max_body_bytes
    ("/collections/missing/points/query", {"vector": _vec(1)}, {}),
    ("/collections/bad.name/points/query", {"vector": _vec(1)}, {}),
    (QQUERY, {"query": [1.0] * (DIM + 1), "limit": 3}, {}),
    (QQUERY, {"query": _vec(1), "limit": 500}, {}),
    (QQUERY, {"query": "no-such-id", "limit": 3}, {}),
    (QQUERY, {"query": _vec(1), "limitt": 3}, {}),
    (QSEARCH, {"vector": _vec(1)}, {}),  # limit is required
    (QSEARCH, {"vector": _vec(1), "limit": 3}, {"api-key": "wrong-key"}),
    (f"{Q}/collections/missing/points/search", {"vector": _vec(1), "limit": 3}, {}),
]


def _post(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    if isinstance(body, bytes | str):
        merged = {"content-type": "application/json"} | headers
        return client.post(path, content=body, headers=merged)
    return client.post(path, json=body, headers=headers)


def _comparable(response: Any) -> tuple[int, Any, dict[str, str]]:
    body = response.json()
    if isinstance(body, dict):
        body.pop("time", None)
    headers = {
        k: v for k, v in response.headers.items() if k in ("content-type", "www-authenticate")
    }
    return response.status_code, body, headers


@pytest.mark.parametrize("case", range(len(SUCCESSES)))
def test_successes_are_the_same_and_served_lean(
    servers: tuple[TestClient, TestClient], fastapi_calls: list[str], case: int
) -> None:
    lean, plain = servers
    path, body = SUCCESSES[case]
    got = _post(lean, path, body, {})
    assert fastapi_calls == [], "the lean path should have answered"
    expected = _post(plain, path, body, {})
    assert expected.status_code == 200, expected.text
    assert _comparable(got) == _comparable(expected)
    assert fastapi_calls == ["qdrant" if path.startswith(Q) else "quiver"]


@pytest.mark.parametrize("case", range(len(ERRORS)))
def test_errors_are_the_same(servers: tuple[TestClient, TestClient], case: int) -> None:
    lean, plain = servers
    path, body, headers = ERRORS[case]
    got, expected = _post(lean, path, body, headers), _post(plain, path, body, headers)
    assert expected.status_code >= 400, expected.text
    assert _comparable(got) == _comparable(expected)


def _request_counts(client: TestClient) -> list[str]:
    text = client.get("/metrics").text
    return sorted(
        line
        for line in text.splitlines()
        if line.startswith("quiver_http_requests_total{")
        and "/metrics" not in line
        and "/readyz" not in line  # start-up polling: as many as start-up took
    )


def test_metrics_route_templates_are_the_same(servers: tuple[TestClient, TestClient]) -> None:
    lean, plain = servers
    for client in servers:
        for path, body in SUCCESSES[:2] + SUCCESSES[-2:]:
            assert _post(client, path, body, {}).status_code == 200
        assert _post(client, QUERY, {"vector": [1.0]}, {}).status_code == 400
    # a request is counted after its response is sent: let the last ones land
    for _ in range(40):
        lean_counts, plain_counts = _request_counts(lean), _request_counts(plain)
        if lean_counts == plain_counts:
            break
        time.sleep(0.05)
    assert lean_counts == plain_counts
    assert any('route="/qdrant/collections/{name}/points/search"' in c for c in lean_counts)
    assert any('route="/collections/{name}/points/query",status="200"' in c for c in lean_counts)
    batches = re.search(r"^quiver_query_batch_size_count (\S+)", lean.get("/metrics").text, re.M)
    assert batches is not None and float(batches.group(1)) > 0


def test_access_log_line_for_a_lean_query(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, access_log=True)
    gen = open_client(settings)
    client = next(gen)
    try:
        seed_collection(client, "logged")
        with caplog.at_level(logging.INFO, logger="quiver.server.access"):
            r = client.post("/collections/logged/points/query", json={"vector": _vec(1), "k": 2})
        assert r.status_code == 200
        lines = [rec for rec in caplog.records if rec.name == "quiver.server.access"]
        assert len(lines) == 1
        assert lines[0].route == "/collections/{name}/points/query"  # type: ignore[attr-defined]
        assert lines[0].status == 200  # type: ignore[attr-defined]
    finally:
        next(gen, None)


def test_concurrent_queries_match_the_plain_server(
    servers: tuple[TestClient, TestClient],
) -> None:
    """16 threads at once (grouped by the micro-batcher): each answer as one by one."""
    lean, plain = servers
    bodies = [
        {"vector": _vec(100 + i), "k": 3 + i % 4, "with_payload": i % 2 == 0} for i in range(48)
    ]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda b: _post(lean, QUERY, b, {}), bodies))
    for body, response in zip(bodies, got, strict=True):
        assert _comparable(response) == _comparable(_post(plain, QUERY, body, {}))


def test_queries_racing_a_drop_are_all_answered(servers: tuple[TestClient, TestClient]) -> None:
    """A collection dropped while lean queries are in flight: each gets hits or a 404."""
    lean, _ = servers
    seed_collection(lean, "dropped")
    url = "/collections/dropped/points/query"

    def query(i: int) -> int:
        if i == 20:
            assert lean.delete("/collections/dropped").status_code == 200
            return 200
        return int(_post(lean, url, {"vector": _vec(i), "k": 3}, {}).status_code)

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(query, range(64), timeout=60))
    assert set(statuses) <= {200, 404}
    after = _post(lean, url, {"vector": _vec(0), "k": 3}, {})
    assert after.status_code == 404 and after.json()["error"] == "collection_not_found"


UPSERTED = "upserted"
UPSERT = f"/collections/{UPSERTED}/points"


@pytest.fixture(scope="module")
def upsert_servers(
    servers: tuple[TestClient, TestClient],
) -> tuple[TestClient, TestClient]:
    """The two servers, each with an empty collection ``UPSERTED``."""
    for client in servers:
        r = client.put(f"/collections/{UPSERTED}", json={"dim": DIM, "metric": "cosine"})
        assert r.status_code == 200, r.text
    return servers


def _put(client: TestClient, body: Any, headers: dict[str, str], path: str = UPSERT) -> Any:
    if isinstance(body, bytes | str):
        merged = {"content-type": "application/json"} | headers
        return client.put(path, content=body, headers=merged)
    return client.put(path, json=body, headers=headers)


def _block(first: int, n: int) -> str:
    return base64.b64encode(b"".join(_b64_bytes(first + i) for i in range(n))).decode()


def _b64_bytes(i: int) -> bytes:
    return np.asarray(_vec(1000 + i), dtype="<f4").tobytes()


def _stored(client: TestClient) -> Any:
    """Every point of ``UPSERTED`` with its payload and vector."""
    body = {"limit": 100, "with_payload": True, "with_vector": True}
    r = client.post(f"{UPSERT}/scroll", json=body)
    assert r.status_code == 200, r.text
    return r.json()["result"]


def _deep(levels: int) -> dict[str, Any]:
    payload: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        payload = {"a": payload}
    return payload


#: JSON bodies of PUT /points answered 200 by both (applied in this order).
UPSERT_SUCCESSES: list[Any] = [
    {"points": [{"id": 1, "vector": _vec(1001)}]},
    {"points": [{"id": i, "vector": _vec(1000 + i), "payload": {"n": i}} for i in range(2, 12)]},
    {"points": [{"id": 1, "vector": _vec(1050), "payload": {"tag": "replaced"}}]},  # replace
    {"ids": [20, 21, 22], "vectors": _block(20, 3)},
    {"ids": [23, 24], "vectors": _block(23, 2), "payloads": [{"k": "v"}, None]},
    {"points": [{"id": 30, "vector": [0.0] * DIM}]},  # a zero vector
]

#: (body bytes or JSON, headers, path) of PUT /points answered with an error.
UPSERT_ERRORS: list[tuple[Any, dict[str, str], str]] = [
    ({"points": [{"id": 40, "vector": [1.0] * (DIM + 1)}]}, {}, UPSERT),  # dimension
    ({"ids": [41, 42], "vectors": _block(41, 1)}, {}, UPSERT),  # 2 ids, 1 vector
    ({"ids": [43], "vectors": "not base64!"}, {}, UPSERT),
    ({"ids": [44], "vectors": base64.b64encode(b"\x00" * 5).decode()}, {}, UPSERT),
    (
        {"ids": [45], "vectors": base64.b64encode(np.full(DIM, np.nan, "<f4").tobytes()).decode()},
        {},
        UPSERT,
    ),
    ({"points": [{"id": 46, "vector": _vec(46)}, {"id": 46, "vector": _vec(47)}]}, {}, UPSERT),
    ({"points": [{"id": 47, "vector": _vec(47), "payload": _deep(40)}]}, {}, UPSERT),
    ({"points": [{"id": i, "vector": _vec(i)} for i in range(501)]}, {}, UPSERT),  # max_batch
    ({"points": []}, {}, UPSERT),
    ({"pointz": [{"id": 48, "vector": _vec(48)}]}, {}, UPSERT),  # schema
    (b'{"points": [{"id": 49, "vector": [1.0,', {}, UPSERT),  # not JSON
    (
        json.dumps({"points": [{"id": 50, "vector": _vec(50)}]}),
        {"content-type": "text/plain"},
        UPSERT,
    ),
    ({"points": [{"id": 51, "vector": _vec(51)}]}, {"api-key": "wrong-key"}, UPSERT),
    ({"points": [{"id": 52, "vector": [0.5] * 40_000}]}, {}, UPSERT),  # over max_body_bytes
    ({"points": [{"id": 53, "vector": _vec(53)}]}, {}, "/collections/missing/points"),
    ({"points": [{"id": 54, "vector": _vec(54)}]}, {}, "/collections/bad.name/points"),
]


def test_upserts_are_the_same_and_served_lean(
    upsert_servers: tuple[TestClient, TestClient], fastapi_calls: list[str]
) -> None:
    lean, plain = upsert_servers
    for body in UPSERT_SUCCESSES:
        got = _put(lean, body, {})
        assert fastapi_calls == [], "the lean path should have answered"
        expected = _put(plain, body, {})
        assert expected.status_code == 200, expected.text
        assert _comparable(got) == _comparable(expected)
        assert fastapi_calls == ["upsert"]
        fastapi_calls.clear()
    stored = _stored(lean)
    assert stored == _stored(plain)
    assert len(stored["points"]) == 1 + 10 + 5 + 1


@pytest.mark.parametrize("case", range(len(UPSERT_ERRORS)))
def test_upsert_errors_are_the_same_and_change_nothing(
    upsert_servers: tuple[TestClient, TestClient], case: int
) -> None:
    lean, plain = upsert_servers
    body, headers, path = UPSERT_ERRORS[case]
    before = _stored(lean)
    got, expected = _put(lean, body, headers, path), _put(plain, body, headers, path)
    assert expected.status_code >= 400, expected.text
    assert _comparable(got) == _comparable(expected)
    assert _stored(lean) == before


def test_an_upsert_whose_write_fails_is_answered_by_fastapi_and_writes_nothing(
    upsert_servers: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that raises (a full disk) on the lean path: FastAPI's route tries once more and
    renders the error it gets; nothing is stored."""
    lean, plain = upsert_servers
    attempts: list[int] = []

    def full_disk(self: Collection, ids: Any, *args: Any, **kwargs: Any) -> int:
        attempts.append(len(ids))
        raise OSError(28, "No space left on device")

    before = _stored(lean)
    monkeypatch.setattr(Collection, "upsert", full_disk)
    body = {"points": [{"id": 60, "vector": _vec(60)}]}
    got = _put(lean, body, {})
    lean_attempts = len(attempts)
    expected = _put(plain, body, {})
    assert expected.status_code == 507, expected.text
    assert expected.json()["error"] == "insufficient_storage"
    assert _comparable(got) == _comparable(expected)
    assert lean_attempts == 2 and len(attempts) == 3
    monkeypatch.undo()
    assert _stored(lean) == before


def test_concurrent_upserts_are_all_stored(
    upsert_servers: tuple[TestClient, TestClient],
) -> None:
    """16 threads upserting at once on the lean path (grouped by the group commit): each
    point is stored with its own vector and payload, as upserted one by one on FastAPI's."""
    lean, plain = upsert_servers
    bodies = [
        {"points": [{"id": 100 + i, "vector": _vec(i), "payload": {"i": i}}]} for i in range(32)
    ]
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda b: _put(lean, b, {}).status_code, bodies))
    assert statuses == [200] * len(bodies)
    for body in bodies:
        assert _put(plain, body, {}).status_code == 200
    assert _stored(lean) == _stored(plain)
