"""The Qdrant-compatible API in process: envelope and error shapes, the API key, the prefix
setting, the older search endpoints, and quiver's own API left as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_testing import API_KEY, DIM, make_settings, open_client, seed_collection

Q = "/qdrant"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("qapi"), api_key=API_KEY)
    yield from open_client(settings, headers={"api-key": API_KEY})


def _error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status", "time"}, body
    message: str = body["status"]["error"]
    assert message
    return message


def test_envelope_and_quiver_api_unchanged(api: TestClient) -> None:
    r = api.put(f"{Q}/collections/env", json={"vectors": {"size": DIM, "distance": "Cosine"}})
    assert r.status_code == 200 and r.json()["result"] is True and r.json()["status"] == "ok"
    assert isinstance(r.json()["time"], float)
    native = api.get("/collections/env")  # quiver's own API, its own shape
    assert native.status_code == 200 and native.json()["result"]["id_type"] == "string"
    assert "status" not in native.json()
    root = api.get(Q).json()
    assert root["version"].startswith("1.") and "quiver_version" in root
    metrics = api.get("/metrics").text  # counted apart from quiver's own routes
    assert 'route="/qdrant/collections/{name}"' in metrics
    slash = api.get(f"{Q}/").json()
    assert slash["version"] == root["version"] and slash["title"] == root["title"]


def test_errors_have_qdrant_shape_and_codes(api: TestClient) -> None:
    assert "missing" in _error(api.get(f"{Q}/collections/missing"), 404)
    body = {"vectors": {"size": DIM, "distance": "Cosine"}}
    api.put(f"{Q}/collections/twice", json=body)
    assert "exists" in _error(api.put(f"{Q}/collections/twice", json=body), 409)
    assert "Format error" in _error(api.put(f"{Q}/collections/bad", json={"vectorz": 1}), 400)
    upsert = {"points": [{"id": 1, "vector": [0.0] * (DIM + 1)}]}
    assert "dimension" in _error(api.put(f"{Q}/collections/twice/points", json=upsert), 400)
    unauthorised = TestClient(api.app).get(f"{Q}/collections")
    assert "API key" in _error(unauthorised, 401)
    missing_point = api.get(f"{Q}/collections/twice/points/5")
    assert "5" in _error(missing_point, 404)
    assert api.delete(f"{Q}/collections/never").json()["result"] is False


def test_a_uint64_collection_and_the_older_search_api(api: TestClient) -> None:
    x = seed_collection(api, "native")  # quiver's API: uint64 ids 0..119, payloads
    search = {"vector": x[4].tolist(), "limit": 3, "with_payload": True}
    hits = api.post(f"{Q}/collections/native/points/search", json=search).json()["result"]
    assert hits[0]["id"] == 4 and hits[0]["payload"]["n"] == 4
    batch = {"searches": [search, {**search, "vector": x[9].tolist(), "offset": 1}]}
    results = api.post(f"{Q}/collections/native/points/search/batch", json=batch).json()["result"]
    assert results[0][0]["id"] == 4
    assert results[1][0]["id"] != 9  # offset 1 skipped the query point itself
    page = api.post(f"{Q}/collections/native/points/scroll", json={"limit": 5, "offset": 10})
    assert [p["id"] for p in page.json()["result"]["points"]] == list(range(10, 15))
    uuid_upsert = {
        "points": [{"id": "a8098c1a-f86e-11da-bd1a-00112444be1e", "vector": x[0].tolist()}]
    }
    assert "integer ids" in _error(api.put(f"{Q}/collections/native/points", json=uuid_upsert), 400)
    point = api.get(f"{Q}/collections/native/points/7").json()["result"]
    assert point["id"] == 7 and len(point["vector"]) == DIM


def test_create_reports_ignored_options_and_patch_is_a_no_op(api: TestClient) -> None:
    body = {
        "vectors": {"size": DIM, "distance": "Dot"},
        "optimizers_config": {"indexing_threshold": 0},
        "on_disk_payload": True,
    }
    r = api.put(f"{Q}/collections/opts", json=body)
    assert r.headers["x-quiver-ignored"] == "on_disk_payload, optimizers_config"
    patch = {"optimizers_config": {"indexing_threshold": 10}}
    assert api.patch(f"{Q}/collections/opts", json=patch).json()["result"] is True
    quant = {"quantization_config": {"scalar": {"type": "int8"}}}
    assert "quantization" in _error(api.patch(f"{Q}/collections/opts", json=quant), 400)


def test_prefix_is_configurable_and_can_be_turned_off(tmp_path: Path) -> None:
    for prefix, where in (("/compat/qd", "/compat/qd/collections"), ("", None)):
        settings = make_settings(tmp_path / (prefix.strip("/").replace("/", "-") or "off"))
        settings = settings.model_copy(update={"qdrant_prefix": prefix})
        for client in open_client(settings):
            if where is not None:
                assert client.get(where).json()["result"] == {"collections": []}
            assert client.get("/qdrant/collections").status_code == 404
