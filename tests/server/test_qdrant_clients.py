"""The official qdrant-client and LangChain's QdrantVectorStore, unchanged, against a real
``quiver serve`` process (the Qdrant-compatible API under /qdrant)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from importlib import metadata

import numpy as np
import pytest
from server_testing import DIM, payload, vectors

from quiver.server.process import ServerProcess, running_server

qdrant_client = pytest.importorskip("qdrant_client")
from qdrant_client import QdrantClient, models  # noqa: E402
from qdrant_client.common.version_check import get_server_version, is_compatible  # noqa: E402
from qdrant_client.http.exceptions import UnexpectedResponse  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("qdrant")
    with running_server(root / "db", root / "server.log", args=["--no-access-log"]) as srv:
        yield srv


@pytest.fixture
def client(server: ServerProcess) -> Iterator[QdrantClient]:
    qc = QdrantClient(url=server.url, prefix="qdrant", timeout=30)
    yield qc
    qc.close()


def _cosine_top(x: np.ndarray, q: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[int]:
    """Exact cosine top-k rows of ``x`` for ``q`` (restricted to ``rows``)."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ (q / np.linalg.norm(q))
    if rows is not None:
        mask = np.full(len(x), -np.inf)
        mask[rows] = 0.0
        sims = sims + mask
    return [int(i) for i in np.argsort(-sims)[:k]]


def test_qdrant_client_walkthrough(server: ServerProcess, client: QdrantClient) -> None:
    # the client's version check (GET <url>/qdrant) finds a compatible version
    version = get_server_version(server.url + "/qdrant", {}, None, 10)
    assert is_compatible(metadata.version("qdrant-client"), version), version
    name = "walk"
    x = vectors(120, seed=5)
    assert not client.collection_exists(name)
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        hnsw_config=models.HnswConfigDiff(m=16, ef_construct=100),
    )
    assert client.collection_exists(name)
    assert name in [c.name for c in client.get_collections().collections]

    # upsert: a list of points with integer ids, then a columnar Batch with UUIDs
    client.upsert(
        name,
        points=[
            models.PointStruct(id=i, vector=x[i].tolist(), payload=payload(i)) for i in range(100)
        ],
        wait=True,
    )
    uuids = [str(uuid.UUID(int=1000 + i)) for i in range(20)]
    result = client.upsert(
        name,
        points=models.Batch(
            ids=[u.upper() for u in uuids],  # normalised to lowercase
            vectors=x[100:120].tolist(),
            payloads=[payload(i) for i in range(100, 120)],
        ),
    )
    assert result.status == models.UpdateStatus.COMPLETED

    info = client.get_collection(name)
    assert info.points_count == 120
    assert info.config.params.vectors.size == DIM
    assert info.config.params.vectors.distance == models.Distance.COSINE
    assert info.config.hnsw_config.m == 16 and info.config.hnsw_config.ef_construct == 100

    # query by vector: the exact top-5 (120 points, ef 64 >= n), ids in the form given
    hits = client.query_points(name, query=x[7].tolist(), limit=5).points
    assert [h.id for h in hits] == _cosine_top(x, x[7], 5)
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    hits = client.query_points(name, query=x[110].tolist(), limit=1, with_payload=True).points
    assert hits[0].id == uuids[10] and hits[0].payload == payload(110)

    # by id (itself excluded), with a filter, hnsw_ef, offset and a payload key list
    by_id = client.query_points(name, query=7, limit=4).points
    assert [h.id for h in by_id] == _cosine_top(x, x[7], 5)[1:]
    group_a = models.Filter(
        must=[models.FieldCondition(key="group", match=models.MatchValue(value="a"))]
    )
    filtered = client.query_points(
        name,
        query=x[7].tolist(),
        query_filter=group_a,
        search_params=models.SearchParams(hnsw_ef=128),
        limit=6,
        with_payload=["group"],
    ).points
    rows_a = np.array([i for i in range(100) if i % 3 == 0])
    assert [h.id for h in filtered] == _cosine_top(x[:100], x[7], 6, rows_a)
    assert all(h.payload == {"group": "a"} for h in filtered)
    page2 = client.query_points(name, query=x[7].tolist(), limit=3, offset=3).points
    assert [h.id for h in page2] == _cosine_top(x, x[7], 6)[3:]
    threshold = client.query_points(name, query=x[7].tolist(), limit=50, score_threshold=0.9)
    assert threshold.points and all(h.score >= 0.9 for h in threshold.points)

    batch = client.query_batch_points(
        name,
        requests=[
            models.QueryRequest(query=x[1].tolist(), limit=3),
            models.QueryRequest(query=x[2].tolist(), limit=2, filter=group_a),
        ],
    )
    assert [h.id for h in batch[0].points] == _cosine_top(x, x[1], 3)
    assert [h.id for h in batch[1].points] == _cosine_top(x[:100], x[2], 2, rows_a)

    got = client.retrieve(name, [3, uuids[0], 999], with_vectors=True)
    assert [p.id for p in got] == [3, uuids[0]]
    unit = x[3] / np.linalg.norm(x[3])  # cosine vectors are stored normalised, as in Qdrant
    assert np.allclose(got[0].vector, unit, atol=1e-5) and got[0].payload == payload(3)

    seen: list[int | str] = []
    offset = None
    while True:
        page, offset = client.scroll(name, scroll_filter=group_a, limit=15, offset=offset)
        seen += [p.id for p in page]
        if offset is None:
            break
    assert len(seen) == len(set(seen)) == 40
    assert set(seen) == {i for i in range(100) if i % 3 == 0} | {
        uuids[i - 100] for i in range(100, 120) if i % 3 == 0
    }
    assert client.count(name, count_filter=group_a, exact=False).count == len(seen)

    client.create_payload_index(name, "n", field_schema=models.PayloadSchemaType.INTEGER)
    schema = client.get_collection(name).payload_schema
    assert schema["n"].data_type == models.PayloadSchemaType.INTEGER and schema["n"].points == 120
    in_range = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(lt=10))])
    assert client.count(name, count_filter=in_range).count == 10
    has_id = models.Filter(must=[models.HasIdCondition(has_id=[1, uuids[1]])])
    assert client.count(name, count_filter=has_id).count == 2

    has_tag = models.Filter(
        must=[models.FieldCondition(key="tag", match=models.MatchValue(value="x"))]
    )
    client.delete(name, points_selector=models.PointIdsList(points=[0, 1, uuids[0]]))
    client.delete(name, points_selector=models.FilterSelector(filter=in_range))
    assert client.count(name).count == 120 - 10 - 1
    assert client.retrieve(name, [0, 5, uuids[0]]) == []

    # payload updates: merge, overwrite, delete keys, clear; by ids and by filter
    client.set_payload(name, payload={"tag": "x"}, points=[12, uuids[2]])
    got = {p.id: p.payload for p in client.retrieve(name, [12, uuids[2]])}
    assert got[12] == {**payload(12), "tag": "x"} and got[uuids[2]]["tag"] == "x"
    client.overwrite_payload(name, payload={"only": 1}, points=[12])
    assert client.retrieve(name, [12])[0].payload == {"only": 1}
    client.delete_payload(name, keys=["tag"], points=models.FilterSelector(filter=has_tag))
    assert client.count(name, count_filter=has_tag).count == 0
    client.clear_payload(name, points_selector=models.PointIdsList(points=[13]))
    assert client.retrieve(name, [13])[0].payload == {}
    hit = client.query_points(name, query=x[12].tolist(), limit=1).points[0]
    assert hit.id == 12  # a rewritten point stays searchable
    assert client.count(name).count == 120 - 10 - 1

    assert client.delete_collection(name)
    assert not client.collection_exists(name)


def test_unsupported_features_are_400_naming_them(client: QdrantClient) -> None:
    with pytest.raises(UnexpectedResponse) as named:
        client.create_collection(
            "named",
            vectors_config={
                "text": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
                "image": models.VectorParams(size=DIM, distance=models.Distance.DOT),
            },
        )
    assert named.value.status_code == 400
    assert "named vectors" in named.value.structured()["status"]["error"]
    assert not client.collection_exists("named")

    client.create_collection(
        "plain", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.EUCLID)
    )
    geo = models.Filter(
        must=[
            models.FieldCondition(
                key="loc",
                geo_radius=models.GeoRadius(center=models.GeoPoint(lon=0.0, lat=0.0), radius=10.0),
            )
        ]
    )
    with pytest.raises(UnexpectedResponse) as err:
        client.count("plain", count_filter=geo)
    assert err.value.status_code == 400 and "geo" in err.value.structured()["status"]["error"]
    with pytest.raises(UnexpectedResponse) as err:
        client.query_points(
            "plain",
            prefetch=[models.Prefetch(query=[0.0] * DIM, limit=5)],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
        )
    assert err.value.status_code == 400
    client.delete_collection("plain")


def test_euclid_scores_are_distances_not_squared(client: QdrantClient) -> None:
    name = "euclid"
    client.create_collection(
        name, vectors_config=models.VectorParams(size=2, distance=models.Distance.EUCLID)
    )
    client.upsert(
        name,
        points=[
            models.PointStruct(id=i, vector=v)
            for i, v in enumerate([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
        ],
    )
    hits = client.query_points(name, query=[0.0, 0.0], limit=3).points
    assert [(h.id, round(h.score, 4)) for h in hits] == [(0, 0.0), (1, 5.0), (2, 10.0)]
    near = client.query_points(name, query=[0.0, 0.0], limit=3, score_threshold=6.0).points
    assert [h.id for h in near] == [0, 1]
    client.delete_collection(name)


def test_langchain_vector_store(server: ServerProcess) -> None:
    langchain_qdrant = pytest.importorskip("langchain_qdrant")
    from langchain_core.embeddings import Embeddings

    class HashEmbedding(Embeddings):
        """Deterministic fake embedding: a seeded vector per text."""

        def _one(self, text: str) -> list[float]:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            return np.random.default_rng(seed).standard_normal(16).tolist()

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [self._one(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return self._one(text)

    emb = HashEmbedding()
    texts = [f"document number {i}" for i in range(30)]
    metadatas = [{"parity": "even" if i % 2 == 0 else "odd", "i": i} for i in range(30)]
    store = langchain_qdrant.QdrantVectorStore.from_texts(
        texts,
        emb,
        metadatas=metadatas,
        url=server.url,
        prefix="qdrant",
        collection_name="lc",
    )
    top = store.similarity_search(texts[4], k=3)
    assert top[0].page_content == texts[4] and top[0].metadata["i"] == 4
    odd = models.Filter(
        must=[models.FieldCondition(key="metadata.parity", match=models.MatchValue(value="odd"))]
    )
    filtered = store.similarity_search(texts[4], k=5, filter=odd)
    assert len(filtered) == 5 and all(d.metadata["parity"] == "odd" for d in filtered)

    new_ids = store.add_texts(["an added text"], metadatas=[{"parity": "odd", "i": 99}])
    assert store.similarity_search("an added text", k=1)[0].metadata["i"] == 99
    got = store.get_by_ids(new_ids)
    assert [d.page_content for d in got] == ["an added text"]
    assert store.delete(new_ids)
    assert store.get_by_ids(new_ids) == []

    mmr = store.max_marginal_relevance_search(texts[4], k=4, fetch_k=12)
    assert len(mmr) == 4 and mmr[0].page_content == texts[4]
    assert len({d.page_content for d in mmr}) == 4

    again = langchain_qdrant.QdrantVectorStore.from_existing_collection(
        embedding=emb, collection_name="lc", url=server.url, prefix="qdrant"
    )
    assert again.similarity_search(texts[9], k=1)[0].page_content == texts[9]


def _recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def test_recall_matches_the_native_api_on_the_bundled_slice(
    server: ServerProcess, client: QdrantClient
) -> None:
    from bench.harness.bundled import load_wordnet_slice
    from quiver.client import Client

    n, n_queries, k, ef, batch = 1500, 200, 10, 24, 500
    wn = load_wordnet_slice()
    x, queries = wn.train[:n], wn.test[:n_queries]
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.argsort(-(queries @ xn.T), axis=1)[:, :k]

    with Client(server.url, timeout=60) as native:
        coll = native.create_collection("wn_native", x.shape[1], "cosine")  # quiver defaults
        for start in range(0, n, batch):
            coll.upsert(list(range(start, start + batch)), x[start : start + batch])
        native_hits = coll.search_batch(queries, k=k, ef=ef)
    native_ids = [[h.id for h in hits] for hits in native_hits]

    # the same collection queried through the Qdrant-compatible API: the same answers
    requests = [
        models.QueryRequest(query=q.tolist(), limit=k, params=models.SearchParams(hnsw_ef=ef))
        for q in queries
    ]
    same = client.query_batch_points("wn_native", requests=requests)
    assert [[h.id for h in r.points] for r in same] == native_ids

    # a collection built through qdrant-client with quiver's default build (m=32 -> degree 64)
    client.create_collection(
        "wn_qdrant",
        vectors_config=models.VectorParams(size=x.shape[1], distance=models.Distance.COSINE),
        hnsw_config=models.HnswConfigDiff(m=32, ef_construct=128),
    )
    for start in range(0, n, batch):
        ids = list(range(start, start + batch))
        client.upsert("wn_qdrant", points=models.Batch(ids=ids, vectors=x[ids].tolist()))
    built = client.query_batch_points("wn_qdrant", requests=requests)
    qdrant_ids = [[h.id for h in r.points] for r in built]

    native_recall, qdrant_recall = _recall(native_ids, truth), _recall(qdrant_ids, truth)
    print(f"recall@{k} ef={ef}: native {native_recall:.4f}, Qdrant API {qdrant_recall:.4f}")
    assert native_recall > 0.8, native_recall
    assert qdrant_recall == pytest.approx(native_recall, abs=0.005), (qdrant_recall, native_recall)
