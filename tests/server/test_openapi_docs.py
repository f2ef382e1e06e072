"""The OpenAPI documents and the documentation pages: operation ids that read as names, a tag
on every operation, and /docs and /redoc that load no asset from outside the server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_testing import API_KEY, assert_error, make_settings, open_client

started = contextmanager(open_client)  # a ready app on settings, stopped on exit
#: The root of each OpenAPI document the server publishes: quiver's and the Qdrant subset's.
DOCUMENT_ROOTS = ["", "/qdrant"]
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
#: src/href attributes of an HTML page.
LINKED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
#: JavaScript string literals naming a URL the page loads (Swagger's and ReDoc's spec url).
SPEC_URL = re.compile(r"""(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""")


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


@pytest.mark.parametrize("root", DOCUMENT_ROOTS)
def test_operation_ids_are_unique_snake_case_names(client: TestClient, root: str) -> None:
    spec = client.get(f"{root}/openapi.json").json()
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) >= 3
    for method, path, operation in operations(spec):
        op_id = operation["operationId"]
        assert SNAKE_CASE.fullmatch(op_id), (method, path, op_id)
        assert "__" not in op_id and not op_id.endswith(f"_{method}"), (method, path, op_id)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_operation_ids_name_the_verbs(client: TestClient) -> None:
    ids = {
        (method, path): op["operationId"]
        for method, path, op in operations(client.get("/openapi.json").json())
    }
    assert ids["put", "/collections/{name}/points"] == "upsert_points"
    assert ids["post", "/collections/{name}/points/query"] == "query_points"
    assert ids["post", "/collections/{name}/points/query/batch"] == "query_batch_points"
    qdrant = {
        (method, path): op["operationId"]
        for method, path, op in operations(client.get("/qdrant/openapi.json").json())
    }
    assert qdrant["put", "/collections/{name}/points"] == "upsert_points"
    assert qdrant["get", "/collections/{name}"] == "get_collection"


@pytest.mark.parametrize("root", DOCUMENT_ROOTS)
def test_every_operation_has_a_tag(client: TestClient, root: str) -> None:
    spec = client.get(f"{root}/openapi.json").json()
    for method, path, operation in operations(spec):
        assert operation.get("tags"), (method, path)


def page_links(html: str) -> list[str]:
    return LINKED.findall(html) + SPEC_URL.findall(html)


@pytest.mark.parametrize("root", DOCUMENT_ROOTS)
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_load_nothing_from_outside(client: TestClient, root: str, page: str) -> None:
    response = client.get(root + page)
    assert response.status_code == 200
    html = response.text
    assert not re.search(r"""["'(]\s*(https?:)?//""", html), html
    links = page_links(html)
    assert any(link.endswith(".js") for link in links), links
    assert f"{root}/openapi.json" in links, links
    for link in links:
        assert link.startswith(f"{root}/"), link
        served = client.get(link)
        assert served.status_code == 200, link
        assert len(served.content) > 1000 or link.endswith(".json"), link


def test_doc_assets_are_an_allow_list(client: TestClient) -> None:
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    for name in ("nope.js", "..%2Fcore.py", "__init__.py"):
        assert client.get(f"/docs/assets/{name}").status_code == 404, name


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from open_client(make_settings(tmp_path_factory.mktemp("keyed"), api_key=API_KEY))


@pytest.mark.parametrize("root", DOCUMENT_ROOTS)
@pytest.mark.parametrize("page", ["/docs", "/redoc", "/openapi.json", "/docs/assets/favicon.png"])
def test_every_doc_route_needs_the_key(keyed: TestClient, root: str, page: str) -> None:
    assert keyed.get(root + page).status_code == 401
    assert keyed.get(root + page, headers={"api-key": API_KEY}).status_code == 200


def test_public_docs_make_the_qdrant_docs_public_too(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_key=API_KEY, public_docs=True)
    with started(settings) as client:
        assert client.get("/qdrant/openapi.json").status_code == 200
        assert client.get("/qdrant/docs").status_code == 200
        assert_error(client.get("/collections"), 401)
