"""Every REST endpoint through FastAPI's TestClient, with its errors."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from server_testing import DIM, N_POINTS, assert_error, payload, seed_collection, vectors

# --- operations ---------------------------------------------------------------------------


def test_health_ready_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {
        "status": "ok",
        "collections": None,
        "message": None,
        "failed_collections": None,
    }
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/collections",
        "/collections/{name}",
        "/collections/{name}/points",
        "/collections/{name}/points/{id}",
        "/collections/{name}/points/delete",
        "/collections/{name}/points/count",
        "/collections/{name}/points/scroll",
        "/collections/{name}/points/query",
        "/collections/{name}/points/query/batch",
        "/collections/{name}/snapshots",
        "/collections/{name}/snapshots/{snapshot}",
        "/collections/{name}/snapshots/recover",
        "/collections/{name}/snapshots/upload",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.delete("/collections"), 405, "method_not_allowed")


def test_metrics_count_requests_by_route_template(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    client.get(f"/collections/{name}")
    text = client.get("/metrics").text
    assert 'route="/collections/{name}"' in text
    assert "quiver_http_request_duration_seconds_bucket" in text
    assert f'quiver_collection_points{{collection="{name}"}} {float(N_POINTS)}' in text
    assert "quiver_ready 1.0" in text


# --- collections --------------------------------------------------------------------------


def test_collection_lifecycle(client: TestClient, name: str) -> None:
    r = client.put(f"/collections/{name}", json={"dim": 16, "metric": "l2", "max_degree": 32})
    assert r.status_code == 200, r.text
    info = r.json()["result"]
    assert (info["name"], info["dim"], info["metric"], info["count"]) == (name, 16, "l2", 0)
    assert info["params"]["max_degree"] == 32
    assert isinstance(r.json()["time"], float)
    assert name in [c["name"] for c in client.get("/collections").json()["result"]["collections"]]
    got = client.get(f"/collections/{name}").json()["result"]
    assert {"hot_bytes", "cold_bytes", "status", "id_type", "deleted"} <= set(got)
    assert_error(client.put(f"/collections/{name}", json={"dim": 16}), 409, "collection_exists")
    assert client.delete(f"/collections/{name}").json()["result"] is True
    assert_error(client.get(f"/collections/{name}"), 404, "collection_not_found")
    assert_error(client.delete(f"/collections/{name}"), 404, "collection_not_found")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"dim": 0}, 422),
        ({"dim": 8, "metric": "hamming"}, 422),
        ({"dim": 8, "id_type": "uuid"}, 422),
        ({"dim": 8, "unknown": 1}, 422),
        ({}, 422),
        ({"dim": 5000}, 422),  # over the server's max_dim (1024 in these tests)
    ],
)
def test_create_collection_rejects_bad_bodies(
    client: TestClient, name: str, body: dict[str, object], status: int
) -> None:
    assert_error(client.put(f"/collections/{name}", json=body), status)
    assert_error(client.get(f"/collections/{name}"), 404)


def test_dim_over_the_limit_names_the_setting(client: TestClient, name: str) -> None:
    body = assert_error(client.put(f"/collections/{name}", json={"dim": 5000}), 422)
    assert body["error"] == "limit_exceeded" and "QUIVER_MAX_DIM" in body["message"]


def test_collection_names_are_validated(client: TestClient) -> None:
    assert_error(client.put("/collections/bad.name", json={"dim": 4}), 422, "validation_error")
    assert_error(client.get("/collections/" + "x" * 65), 422)


def test_unknown_collection_is_404_on_every_point_route(client: TestClient) -> None:
    base = "/collections/missing/points"
    assert_error(client.put(base, json={"points": [{"id": 1, "vector": [1.0]}]}), 404)
    assert_error(client.post(base, json={"ids": [1]}), 404, "collection_not_found")
    assert_error(client.get(f"{base}/1"), 404, "collection_not_found")
    assert_error(client.post(f"{base}/count", json={}), 404)
    assert_error(client.post(f"{base}/scroll", json={}), 404)
    assert_error(client.post(f"{base}/delete", json={"points": [1]}), 404)
    assert_error(client.post(f"{base}/query", json={"vector": [1.0]}), 404)
    assert_error(client.post(f"{base}/query/batch", json={"vectors": [[1.0]]}), 404)
    assert_error(client.post("/collections/missing/snapshots"), 404)


# --- points -------------------------------------------------------------------------------


def test_upsert_get_retrieve(client: TestClient, name: str) -> None:
    x = seed_collection(client, name)
    r = client.get(f"/collections/{name}/points/7", params={"with_vector": True})
    point = r.json()["result"]
    assert point["id"] == 7 and point["payload"] == payload(7)
    expected = x[7] / np.linalg.norm(x[7])  # cosine collections store unit vectors
    np.testing.assert_allclose(point["vector"], expected, rtol=1e-5, atol=1e-6)
    r = client.get(f"/collections/{name}/points/7", params={"with_payload": False})
    assert r.json()["result"]["payload"] is None and r.json()["result"]["vector"] is None
    r = client.post(f"/collections/{name}/points", json={"ids": [9, 10_000, 3]})
    assert [p["id"] for p in r.json()["result"]] == [9, 3]  # order kept, missing skipped
    # upsert replaces
    new = {"id": 3, "vector": [1.0] * DIM, "payload": {"replaced": True}}
    assert client.put(f"/collections/{name}/points", json={"points": [new]}).status_code == 200
    assert client.get(f"/collections/{name}/points/3").json()["result"]["payload"] == {
        "replaced": True
    }
    assert client.post(f"/collections/{name}/points/count", json={}).json()["result"] == {
        "count": N_POINTS
    }


def test_point_errors(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    base = f"/collections/{name}/points"
    assert_error(client.get(f"{base}/999999"), 404, "point_not_found")
    assert_error(client.get(f"{base}/abc"), 400, "invalid_input")
    assert_error(client.get(f"{base}/{2**64}"), 400, "invalid_input")
    body = assert_error(
        client.put(base, json={"points": [{"id": 1000, "vector": [1.0, 2.0]}]}), 400
    )
    assert str(DIM) in body["message"] and "2" in body["message"]  # expected vs actual dim
    ragged = [{"id": 1000, "vector": [1.0] * DIM}, {"id": 1001, "vector": [1.0] * 3}]
    assert_error(client.put(base, json={"points": ragged}), 400, "invalid_input")
    dup = [{"id": 5, "vector": [1.0] * DIM}, {"id": 5, "vector": [2.0] * DIM}]
    assert_error(client.put(base, json={"points": dup}), 400, "invalid_input")
    assert_error(client.put(base, json={"points": [{"id": "s", "vector": [1.0] * DIM}]}), 400)
    assert_error(client.put(base, json={"points": [{"id": -1, "vector": [1.0] * DIM}]}), 422)
    assert_error(client.put(base, json={"points": []}), 422)
    # nothing of the rejected batches was written
    assert client.post(f"{base}/count", json={}).json()["result"]["count"] == N_POINTS


def test_nan_and_inf_vectors_are_rejected(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    for bad in ("NaN", "Infinity", "-Infinity"):
        vec = ", ".join(["0.5"] * (DIM - 1) + [bad])
        content = f'{{"points": [{{"id": 500, "vector": [{vec}]}}]}}'
        r = client.put(
            f"/collections/{name}/points",
            content=content,
            headers={"content-type": "application/json"},
        )
        body = assert_error(r, 400, "invalid_input")
        assert "nan" in body["message"].lower() or "finite" in body["message"].lower()
        q = client.post(
            f"/collections/{name}/points/query",
            content=f'{{"vector": [{vec}]}}',
            headers={"content-type": "application/json"},
        )
        assert q.status_code in (400, 422), q.text
    assert_error(client.get(f"/collections/{name}/points/500"), 404)


def test_lone_surrogates_are_a_client_error(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    vec = ", ".join(["0.5"] * DIM)
    for point in (
        f'{{"id": 700, "vector": [{vec}], "payload": {{"\\ud800": 1}}}}',
        f'{{"id": 700, "vector": [{vec}], "payload": {{"k": "\\udc00"}}}}',
    ):
        r = client.put(
            f"/collections/{name}/points",
            content='{"points": [' + point + "]}",
            headers={"content-type": "application/json"},
        )
        assert_error(r, 400, "invalid_input")
    assert_error(client.get(f"/collections/{name}/points/700"), 404)


def test_batch_over_the_limit_is_413(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    points = [{"id": i, "vector": [0.5] * DIM} for i in range(501)]  # max_batch is 500
    body = assert_error(client.put(f"/collections/{name}/points", json={"points": points}), 413)
    assert "QUIVER_MAX_BATCH" in body["message"]
    ids = list(range(501))
    assert_error(client.post(f"/collections/{name}/points", json={"ids": ids}), 413)
    assert_error(client.post(f"/collections/{name}/points/delete", json={"points": ids}), 413)


def test_string_ids(client: TestClient, name: str) -> None:
    r = client.put(f"/collections/{name}", json={"dim": 3, "id_type": "string"})
    assert r.status_code == 200
    points = [{"id": f"doc-{i}", "vector": [1.0, i, 0.5], "payload": {"i": i}} for i in range(5)]
    assert client.put(f"/collections/{name}/points", json={"points": points}).status_code == 200
    assert client.get(f"/collections/{name}/points/doc-3").json()["result"]["payload"] == {"i": 3}
    assert_error(client.get(f"/collections/{name}/points/doc-9"), 404, "point_not_found")
    bad = {"points": [{"id": 7, "vector": [1.0, 1.0, 1.0]}]}
    assert_error(client.put(f"/collections/{name}/points", json=bad), 400, "invalid_input")
    r = client.post(f"/collections/{name}/points/query", json={"query_id": "doc-2", "k": 2})
    assert [h["id"] for h in r.json()["result"]["points"]] != [] and all(
        h["id"] != "doc-2" for h in r.json()["result"]["points"]
    )


def test_count_scroll_delete(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    base = f"/collections/{name}/points"
    group_a = {"must": [{"key": "group", "match": {"value": "a"}}]}
    n_a = len([i for i in range(N_POINTS) if i % 3 == 0])
    assert client.post(f"{base}/count", json={"filter": group_a}).json()["result"]["count"] == n_a
    nested = {
        "must": [{"key": "meta.even", "match": {"value": True}}, {"key": "n", "range": {"lt": 10}}]
    }
    assert client.post(f"{base}/count", json={"filter": nested}).json()["result"]["count"] == 5

    seen, offset = [], None
    while True:
        r = client.post(f"{base}/scroll", json={"limit": 50, "offset": offset}).json()["result"]
        seen += [p["id"] for p in r["points"]]
        offset = r["next_page_offset"]
        if offset is None:
            break
    assert sorted(seen) == list(range(N_POINTS)) and len(seen) == N_POINTS

    r = client.post(f"{base}/delete", json={"points": [0, 1, 2, 99999]})
    assert r.json()["result"] == {"deleted": 3}
    r = client.post(f"{base}/delete", json={"filter": group_a})
    assert r.json()["result"]["deleted"] == n_a - 1  # id 0 was already gone
    assert client.post(f"{base}/count", json={}).json()["result"]["count"] == N_POINTS - n_a - 2
    assert_error(client.post(f"{base}/delete", json={}), 422)
    assert_error(client.post(f"{base}/delete", json={"points": [1], "filter": group_a}), 422)
    assert_error(client.post(f"{base}/scroll", json={"limit": 1000}), 422)  # over max_k


# --- query --------------------------------------------------------------------------------


def test_query_by_vector_and_by_id(client: TestClient, name: str) -> None:
    x = seed_collection(client, name)
    url = f"/collections/{name}/points/query"
    r = client.post(url, json={"vector": x[5].tolist(), "k": 5, "with_payload": True})
    hits = r.json()["result"]["points"]
    assert hits[0]["id"] == 5 and hits[0]["payload"] == payload(5)
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    r = client.post(url, json={"query_id": 5, "k": 5, "with_vector": True})
    hits = r.json()["result"]["points"]
    assert len(hits) == 5 and 5 not in [h["id"] for h in hits]
    assert len(hits[0]["vector"]) == DIM and hits[0]["payload"] is None
    assert_error(client.post(url, json={"query_id": 424242}), 404, "point_not_found")


def test_query_allow_partial_reports_full_coverage_on_a_database(
    client: TestClient, name: str
) -> None:
    x = seed_collection(client, name)
    url = f"/collections/{name}/points/query"
    r = client.post(url, json={"vector": x[5].tolist(), "k": 3, "allow_partial": True})
    assert r.json()["result"]["coverage"] == 1.0 and r.json()["result"]["points"][0]["id"] == 5
    assert "coverage" not in client.post(url, json={"vector": x[5].tolist()}).json()["result"]
    batch = {"vectors": x[4:6].tolist(), "k": 2, "allow_partial": True}
    assert [q["coverage"] for q in client.post(f"{url}/batch", json=batch).json()["result"]] == [
        1.0,
        1.0,
    ]
    assert client.post(url, json={"vector": x[5].tolist(), "allow_partial": "x"}).status_code == 422


def test_query_filter_and_threshold(client: TestClient, name: str) -> None:
    x = seed_collection(client, name)
    url = f"/collections/{name}/points/query"
    filt = {"must": [{"key": "group", "match": {"any": ["b", "c"]}}], "must_not": [{"has_id": [4]}]}
    r = client.post(url, json={"vector": x[4].tolist(), "k": 10, "filter": filt})
    ids = [h["id"] for h in r.json()["result"]["points"]]
    assert len(ids) == 10 and all(i % 3 != 0 and i != 4 for i in ids)
    r = client.post(url, json={"vector": x[4].tolist(), "k": 50, "score_threshold": 0.9})
    assert all(h["score"] >= 0.9 for h in r.json()["result"]["points"])


def test_query_offset_and_payload_keys(client: TestClient, name: str) -> None:
    x = seed_collection(client, name)
    url = f"/collections/{name}/points/query"
    full = client.post(url, json={"vector": x[4].tolist(), "k": 8}).json()["result"]["points"]
    body = {"vector": x[4].tolist(), "k": 5, "offset": 3, "with_payload": ["group"]}
    page = client.post(url, json=body).json()["result"]["points"]
    assert [h["id"] for h in page] == [h["id"] for h in full[3:8]]
    assert all(set(h["payload"]) == {"group"} for h in page)
    batch = client.post(
        f"{url}/batch", json={"vectors": x[4:6].tolist(), "k": 2, "offset": 1}
    ).json()["result"]
    assert [h["id"] for h in batch[0]["points"]] == [h["id"] for h in full[1:3]]
    assert client.post(url, json={**body, "offset": -1}).status_code == 422
    assert client.post(url, json={**body, "with_payload": [""]}).status_code == 422


def test_query_with_target_recall(client: TestClient, name: str) -> None:
    x = seed_collection(client, name)
    url = f"/collections/{name}/points/query"
    r = client.post(url, json={"vector": x[7].tolist(), "k": 5, "target_recall": 0.95})
    hits = r.json()["result"]["points"]
    assert r.status_code == 200 and hits[0]["id"] == 7 and len(hits) == 5
    r = client.post(url, json={"vector": x[7].tolist(), "ef": 32, "target_recall": 0.9})
    assert r.status_code == 400 and "not both" in r.text
    r = client.post(url, json={"vector": x[7].tolist(), "target_recall": 1.5})
    assert r.status_code == 422


def test_query_batch_matches_single_queries(client: TestClient, name: str) -> None:
    x = seed_collection(client, name)
    r = client.post(
        f"/collections/{name}/points/query/batch", json={"vectors": x[:4].tolist(), "k": 3}
    )
    batch = r.json()["result"]
    assert len(batch) == 4
    for i in range(4):
        single = client.post(
            f"/collections/{name}/points/query", json={"vector": x[i].tolist(), "k": 3}
        ).json()["result"]["points"]
        assert [h["id"] for h in batch[i]["points"]] == [h["id"] for h in single]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"vector": [0.1] * DIM, "k": 101}, 422, "limit_exceeded"),  # max_k is 100
        ({"vector": [0.1] * DIM, "k": 10, "ef": 401}, 422, "limit_exceeded"),
        ({"vector": [0.1] * DIM, "k": 0}, 422, "validation_error"),
        ({"vector": [0.1] * DIM, "k": 20, "ef": 10}, 400, "invalid_input"),  # ef < k
        ({"vector": [0.1] * 3}, 400, "invalid_input"),  # wrong dim
        ({"vector": [0.1] * DIM, "query_id": 1}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"vector": []}, 422, "validation_error"),
        ({"vector": [0.1] * DIM, "filter": {"must": [{"key": "n"}]}}, 422, None),
        ({"vector": [0.1] * DIM, "filter": {"must": [{"key": "n", "range": {}}]}}, 422, None),
        ({"vector": [0.1] * DIM, "filter": {"should": "x"}}, 422, None),
        ({"vector": [0.1] * DIM, "filter": {"must": [{"nope": 1}]}}, 422, None),
        ({"vector": [0.1] * DIM, "score_threshold": "high"}, 422, None),
    ],
)
def test_query_errors(
    client: TestClient, name: str, body: dict[str, object], status: int, error: str | None
) -> None:
    seed_collection(client, name)
    r = client.post(f"/collections/{name}/points/query", json=body)
    message = assert_error(r, status, error)["message"]
    if error == "limit_exceeded":
        assert "QUIVER_MAX_" in message


def test_deeply_nested_filter_is_a_client_error(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    depth = 3000
    text = '{"vector": [' + ", ".join(["0.1"] * DIM) + '], "filter": '
    text += '{"must": [' * depth + '{"key": "n", "match": {"value": 1}}' + "]}" * depth + "}"
    r = client.post(
        f"/collections/{name}/points/query",
        content=text,
        headers={"content-type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text[:300]


def test_other_metrics_score_as_documented(client: TestClient, name: str) -> None:
    x = seed_collection(client, name, metric="l2")
    hits = client.post(
        f"/collections/{name}/points/query", json={"vector": x[1].tolist(), "k": 3}
    ).json()["result"]["points"]
    assert hits[0]["id"] == 1 and hits[0]["score"] == pytest.approx(0.0, abs=1e-3)
    assert hits[1]["score"] >= hits[0]["score"]  # squared distance: ascending
    expected = float(((x[hits[1]["id"]] - x[1]) ** 2).sum())
    assert hits[1]["score"] == pytest.approx(expected, rel=1e-3)


# --- snapshots ----------------------------------------------------------------------------


def test_snapshot_create_list_download_recover_upload(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    base = f"/collections/{name}/snapshots"
    snap = client.post(base).json()["result"]
    assert snap["collection"] == name and snap["size"] > 0
    listed = client.get(base).json()["result"]
    assert [s["name"] for s in listed] == [snap["name"]]
    blob = client.get(f"{base}/{snap['name']}")
    assert blob.status_code == 200 and len(blob.content) == snap["size"]

    restored = f"{name}r"
    r = client.put(
        f"/collections/{restored}/snapshots/recover",
        json={"snapshot": snap["name"], "from_collection": name},
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"]["count"] == N_POINTS
    assert client.get(f"/collections/{restored}/points/4").json()["result"]["payload"] == payload(4)
    # recovering onto an existing collection is a conflict
    assert_error(client.put(f"{base}/recover", json={"snapshot": snap["name"]}), 409)

    uploaded = f"{name}u"
    r = client.post(
        f"/collections/{uploaded}/snapshots/upload",
        content=blob.content,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    assert (
        client.post(f"/collections/{uploaded}/points/count", json={}).json()["result"]["count"]
        == N_POINTS
    )
    # snapshots outlive their collection
    client.delete(f"/collections/{name}")
    assert [s["name"] for s in client.get(base).json()["result"]] == [snap["name"]]
    assert client.delete(f"{base}/{snap['name']}").json()["result"] is True
    assert client.get(base).json()["result"] == []


def test_snapshot_errors(client: TestClient, name: str) -> None:
    seed_collection(client, name)
    base = f"/collections/{name}/snapshots"
    assert_error(client.get(f"{base}/nope.snapshot"), 404, "snapshot_not_found")
    assert_error(client.delete(f"{base}/nope.snapshot"), 404, "snapshot_not_found")
    assert_error(client.get(f"{base}/..%2F..%2Fetc"), 404)
    assert_error(client.put(f"{base}/recover", json={"snapshot": "../x"}), 422)
    assert_error(client.get(f"{base}/x.snapshot.tmp"), 422)  # only finished snapshot files
    r = client.post(f"/collections/{name}x/snapshots/upload", content=b"not a tar file" * 10)
    assert_error(r, 400, "invalid_input")
    assert_error(client.get(f"/collections/{name}x"), 404)  # nothing was created
    assert client.get(f"/collections/{name}x/snapshots").json()["result"] == []


def test_vectors_round_trip_at_full_precision(client: TestClient, name: str) -> None:
    r = client.put(f"/collections/{name}", json={"dim": DIM, "metric": "l2"})
    assert r.status_code == 200
    x = vectors(3, seed=5)
    points = [{"id": i, "vector": x[i].tolist()} for i in range(3)]
    client.put(f"/collections/{name}/points", json={"points": points})
    got = client.post(f"/collections/{name}/points", json={"ids": [0, 1, 2], "with_vector": True})
    np.testing.assert_array_equal(
        np.array([p["vector"] for p in got.json()["result"]], dtype=np.float32), x
    )


@pytest.mark.parametrize(
    "filt",
    [
        {"must_not": [None, None]},
        {"must": [1]},
        {"should": ["x"]},
        {"must": [[]]},
        {"must": [{"key": "n", "match": None}]},
        {"must": [{"has_id": [None]}]},
    ],
)
def test_malformed_conditions_are_422(
    client: TestClient, name: str, filt: dict[str, object]
) -> None:
    seed_collection(client, name)
    for path in ("count", "scroll", "delete"):
        r = client.post(f"/collections/{name}/points/{path}", json={"filter": filt})
        assert_error(r, 422, "validation_error")
    r = client.post(
        f"/collections/{name}/points/query", json={"vector": [0.1] * DIM, "filter": filt}
    )
    assert_error(r, 422, "validation_error")
