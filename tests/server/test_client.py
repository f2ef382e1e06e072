"""quiver.Client: the embedded API's verbs over HTTP, the same results and the same errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from server_testing import (
    API_KEY,
    DIM,
    make_settings,
    next_name,
    open_client,
    payload,
    vectors,
)
from threaded_server import serve_in_thread

import quiver
from quiver.client import Client, PayloadTooLargeError, UnauthorizedError
from quiver.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    InvalidInputError,
    PointNotFoundError,
)
from quiver.server import create_app
from quiver.types import Point, ScoredPoint


@pytest.fixture(scope="module", params=["http", "testclient"])
def remote(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    """A Client talking to an app that requires an API key: over real HTTP (uvicorn on
    127.0.0.1, the client's own keep-alive transport) and through FastAPI's TestClient."""
    settings = make_settings(tmp_path_factory.mktemp("client"), api_key=API_KEY)
    if request.param == "http":
        for url in serve_in_thread(create_app(settings)):
            with Client(url, api_key=API_KEY, timeout=30) as client:
                client.wait_ready(timeout=120)
                yield client
    else:
        for http in open_client(settings):
            yield Client(api_key=API_KEY, http=http)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Any]:
    with quiver.Database(tmp_path / "embedded") as db:
        yield db


def _exercise(db: Any, name: str) -> dict[str, Any]:
    """The same calls on a Database or a Client; returns what they gave."""
    x = vectors(60, seed=3)
    coll = db.create_collection(name, DIM, "cosine")
    out: dict[str, Any] = {
        "upserted": coll.upsert(list(range(60)), x, [payload(i) for i in range(60)])
    }
    out["count"] = coll.count()
    out["count_b"] = coll.count({"must": [{"key": "group", "match": {"value": "b"}}]})
    out["get"] = coll.get(5)
    out["retrieve"] = [p.id for p in coll.retrieve([3, 999, 1])]
    page, nxt = coll.scroll(limit=10)
    out["scroll"] = ([p.id for p in page], nxt)
    hits = coll.search(x[7], k=5, with_payload=True)
    out["search"] = [(h.id, round(h.score, 4)) for h in hits]
    out["search_types"] = {type(h) for h in hits}
    out["by_id"] = [h.id for h in coll.search(query_id=7, k=5)]
    out["batch"] = [[h.id for h in r] for r in coll.search_batch(x[:3], k=4)]
    page = coll.search(x[7], k=3, offset=2, with_payload=["group"])
    out["offset_keys"] = [(h.id, h.payload) for h in page]
    request = quiver.SearchRequest(vectors=x[:2], k=2, offset=1, with_payload=["n"])
    out["request"] = [[(h.id, h.payload) for h in r] for r in coll.query(request)]
    out["deleted"] = coll.delete([1, 2, 12345])
    out["deleted_f"] = coll.delete_by_filter({"must": [{"key": "n", "range": {"gte": 50}}]})
    out["count_after"] = coll.count()
    out["info"] = {k: coll.info()[k] for k in ("name", "dim", "metric", "id_type", "count")}
    out["names"] = sorted(db.list_collections())
    return out


def test_remote_matches_embedded(remote: Client, embedded: Any) -> None:
    name = next_name()
    got, want = _exercise(remote, name), _exercise(embedded, name)
    assert got == want
    assert isinstance(got["get"], Point) and got["search_types"] == {ScoredPoint}


def test_errors_are_the_embedded_classes(remote: Client) -> None:
    name = next_name()
    coll = remote.create_collection(name, DIM)
    with pytest.raises(CollectionExistsError):
        remote.create_collection(name, DIM)
    with pytest.raises(CollectionNotFoundError):
        remote.get_collection(name + "missing")
    with pytest.raises(PointNotFoundError):
        coll.get(42)
    with pytest.raises(InvalidInputError, match=str(DIM)):
        coll.upsert([1], np.ones((1, DIM + 1)))
    with pytest.raises(InvalidInputError):
        coll.search(np.ones(DIM), k=10_000)
    with pytest.raises(PayloadTooLargeError):
        coll.upsert(list(range(600)), np.ones((600, DIM)), batch_size=600)  # max_batch is 500
    assert coll.upsert(list(range(600)), np.ones((600, DIM)), batch_size=250) == 600
    remote.drop_collection(name)
    with pytest.raises(CollectionNotFoundError):
        remote.drop_collection(name)


def test_columns_as_input(remote: Client) -> None:
    """Vectors and ids as pyarrow / pandas / polars columns, as the embedded API takes them."""
    x = vectors(30, seed=5)
    coll = remote.create_collection(next_name(), DIM, "l2")
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM)
    assert coll.upsert(pl.Series(range(30), dtype=pl.UInt64), column) == 30
    assert [p.id for p in coll.retrieve(pa.array([4, 2]))] == [4, 2]
    assert coll.search(pd.Series(x[7]), k=1)[0].id == 7
    hits = coll.search_batch(pa.chunked_array([column[:2], column[2:3]]), k=1)
    assert [h[0].id for h in hits] == [0, 1, 2]
    assert coll.delete(pd.Series([0, 1, 99])) == 2 and coll.count() == 28
    with pytest.raises(InvalidInputError, match="row 1"):
        coll.upsert([40, 41], pd.Series([x[0].tolist(), None]))


def test_wrong_key(remote: Client) -> None:
    with pytest.raises(UnauthorizedError):
        remote.request("GET", "/collections", headers={"api-key": "wrong"})
    assert isinstance(remote.list_collections(), list)  # the client's own key is unchanged
    if remote.url.startswith("http://127.0.0.1"):
        for key in ("wrong", None):
            with Client(remote.url, api_key=key) as other, pytest.raises(UnauthorizedError):
                other.list_collections()


def test_snapshot_download_and_upload(remote: Client, tmp_path: Path) -> None:
    name = next_name()
    coll = remote.create_collection(name, DIM, id_type="string")
    coll.upsert(["a", "b/c", "d e"], vectors(3), [{"k": 1}, None, {"k": 3}])
    assert coll.get("b/c").payload is None  # any character in string ids
    path = coll.snapshot(tmp_path)
    assert path.parent == tmp_path and path.stat().st_size > 0
    copy = remote.restore_snapshot(path, name + "copy")
    assert copy.count() == 3 and copy.get("d e").payload == {"k": 3}
    assert copy.id_type == "string"


def test_wait_ready_and_repr(remote: Client) -> None:
    remote.wait_ready(timeout=5)
    assert remote.ready()
    assert "Client(" in repr(remote)
    assert not Client("http://127.0.0.1:9", timeout=0.5).ready()  # nothing listens there
