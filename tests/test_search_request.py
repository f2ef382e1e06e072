"""The one search request: validation in one place, offset and payload key selection."""

from __future__ import annotations

import numpy as np
import pytest

import quiver
from quiver import InvalidInputError, SearchParams, SearchRequest

DIM = 24


@pytest.fixture
def coll(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, DIM)).astype(np.float32)
    db = quiver.Database(tmp_path / "db")
    c = db.create_collection("docs", DIM, "cosine")
    payloads = [{"group": "ab"[i % 2], "n": i, "title": f"t{i}"} for i in range(300)]
    c.upsert(list(range(300)), x, payloads)
    yield c, x
    db.close()


def test_offset_pages_through_the_ranking(coll) -> None:
    c, x = coll
    full = [h.id for h in c.search(x[3], k=30, ef=64)]
    pages = [[h.id for h in c.search(x[3], k=10, ef=64, offset=o)] for o in (0, 10, 20)]
    assert sum(pages, []) == full
    by_id = [h.id for h in c.search(query_id=3, k=12, ef=64)]
    assert [h.id for h in c.search(query_id=3, k=4, ef=64, offset=8)] == by_id[8:]
    flt = {"must": [{"key": "group", "match": {"value": "a"}}]}
    filtered = [h.id for h in c.search(x[3], k=9, filter=flt)]
    assert [h.id for h in c.search(x[3], k=3, offset=6, filter=flt)] == filtered[6:]
    far = c.search(x[3], k=10, offset=295)
    assert len(far) <= 5


def test_offset_counts_after_the_score_threshold(coll) -> None:
    c, x = coll
    kept = c.search(x[3], k=50, score_threshold=0.2)
    page = c.search(x[3], k=50, offset=2, score_threshold=0.2)
    assert [h.id for h in page] == [h.id for h in kept[2:]]


def test_payload_keys_select_fields(coll) -> None:
    c, x = coll
    hits = c.search(x[0], k=5, with_payload=["title", "missing"])
    assert all(set(h.payload) == {"title"} and h.payload["title"] == f"t{h.id}" for h in hits)
    assert all(h.payload is None for h in c.search(x[0], k=5))
    assert set(c.search(x[0], k=1, with_payload=True)[0].payload) == {"group", "n", "title"}
    assert c.get(7, with_payload=["n"]).payload == {"n": 7}
    assert [p.payload for p in c.retrieve([1, 2], with_payload=["group"])] == [
        {"group": "b"},
        {"group": "a"},
    ]
    page, _ = c.scroll(limit=2, with_payload=["n", "n"])
    assert all(set(p.payload) == {"n"} for p in page)


def test_query_runs_a_request_for_vectors_and_ids(coll) -> None:
    c, x = coll
    results = c.query(SearchRequest(vectors=x[:3], k=4, offset=1))
    assert [[h.id for h in r] for r in results] == [
        [h.id for h in c.search(x[i], k=5)][1:] for i in range(3)
    ]
    by_ids = c.query(SearchRequest(ids=[5, 6], k=3))
    assert all(i not in [h.id for h in r] for i, r in zip((5, 6), by_ids, strict=True))
    with pytest.raises(quiver.PointNotFoundError):
        c.query(SearchRequest(ids=[999], k=3))
    with pytest.raises(InvalidInputError, match="expected 24, got 3"):
        c.query(SearchRequest(vectors=[1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 0}, "k must be >= 1"),
        ({"k": 10, "ef": 5}, "ef must be >= k"),
        ({"ef": 64, "target_recall": 0.9}, "not both"),
        ({"target_recall": 1.5}, r"\(0, 1\]"),
        ({"k": 10, "ef": 20, "rerank": 30}, "rerank must be in"),
        ({"offset": -1}, "offset must be >= 0"),
        ({"offset": 1.5}, "offset must be an integer"),
        ({"with_payload": "title"}, "list of payload keys"),
        ({"with_payload": [""]}, "non-empty strings"),
        ({"with_vector": 1}, "with_vector"),
        ({"score_threshold": float("nan")}, "finite"),
        ({"filter": {"must": [{"key": "a"}]}}, "exactly one of"),
    ],
)
def test_invalid_requests_name_the_problem(options, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        SearchRequest(vectors=np.ones(DIM), **options)


def test_the_query_is_vectors_or_ids() -> None:
    with pytest.raises(InvalidInputError, match="exactly one"):
        SearchRequest(k=3)
    with pytest.raises(InvalidInputError, match="exactly one"):
        SearchRequest(vectors=np.ones(3), ids=[1])
    with pytest.raises(InvalidInputError, match="finite"):
        SearchRequest(vectors=[np.nan, 1.0])


def test_request_is_validated_once_and_immutable() -> None:
    arr = np.ones((2, DIM), dtype=np.float64)
    req = SearchRequest(vectors=arr, k=3, with_payload=("a", "b", "a"))
    assert req.vectors.dtype == np.float32 and req.vectors is not arr
    assert req.with_payload == ("a", "b") and req.params == SearchParams(3)
    assert req.options() == {"k": 3, "with_payload": ["a", "b"]}
    with pytest.raises(AttributeError):
        req.k = 5  # type: ignore[misc]
    assert set(SearchRequest.option_names()) >= {"k", "ef", "offset", "with_payload"}


def test_search_params_resolve_defaults_and_target_recall() -> None:
    assert SearchParams(10).resolve(lambda t, k: 0) == (10, 64, 64)
    assert SearchParams(100).resolve(lambda t, k: 0) == (100, 100, 100)
    assert SearchParams(5, 32, 16).resolve(lambda t, k: 0) == (5, 32, 16)
    assert SearchParams(5, rerank=40, target_recall=0.9).resolve(lambda t, k: 24) == (5, 24, 24)
    assert SearchParams(5, target_recall=0.9).resolve(lambda t, k: 2) == (5, 5, 5)


def test_explain_names_the_planned_strategy(coll, monkeypatch) -> None:
    c, _ = coll
    assert c.explain() == {"strategy": "graph", "matches": 300, "ef": 64, "rerank": 64}
    few = {"must": [{"key": "n", "range": {"lt": 5}}]}
    assert c.explain(few, k=3)["strategy"] == "scan" and c.explain(few)["matches"] == 5
    import quiver.db.planner as planner

    monkeypatch.setattr(planner, "SCAN_ROWS_PER_EF", 0)
    half = c.explain({"must": [{"key": "group", "match": {"value": "a"}}]}, ef=32)
    assert half["strategy"] == "filtered-graph" and half["matches"] == 150 and half["ef"] == 32
    tenth = c.explain({"must": [{"key": "n", "range": {"lt": 30}}]}, ef=32)
    assert tenth["matches"] == 30 and tenth["ef"] == 51  # 32 * sqrt(0.25 / 0.1), rounded up


def test_a_requests_rerank_depth_reaches_the_index(coll, monkeypatch) -> None:
    """The database reranks ``rerank`` candidates, not its whole ef (it once dropped the
    option): at least k + offset + the planner's spare results, at most ef."""
    from quiver.db.planner import RESULT_MARGIN
    from quiver.engine.vamana import VamanaIndex

    c, x = coll
    assert c.explain(k=10, ef=64, rerank=32)["rerank"] == 32
    assert c.explain(k=10, ef=64, rerank=10)["rerank"] == 10 + RESULT_MARGIN
    seen: list[tuple[int, int]] = []
    execute = VamanaIndex.execute

    def spy(self, state, queries, plan, *args, **kwargs):
        seen.append((plan.ef, plan.rerank))
        return execute(self, state, queries, plan, *args, **kwargs)

    monkeypatch.setattr(VamanaIndex, "execute", spy)
    c.search(x[0], k=10, ef=64, rerank=30)
    c.search_batch(x[:3], k=5, ef=40, rerank=20, offset=2)
    c.query_compact(SearchRequest(vectors=x[:2], k=10, ef=48, rerank=24, with_payload=False))
    c.search(x[0], k=10, ef=64)
    monkeypatch.setattr("quiver.db.planner.SCAN_ROWS_PER_EF", 0)
    c.search(x[0], k=10, ef=64, rerank=40, filter={"must": [{"key": "n", "range": {"lt": 30}}]})
    assert seen[:4] == [(64, 30), (40, 20), (48, 24), (64, 64)]
    assert seen[4][0] > 64 and seen[4][1] == 40  # a filter widens the beam, not the rerank
    hits = c.search(x[0], k=10, ef=64, rerank=18)
    assert len(hits) == 10 and hits[0].id == 0


def _as_lists(compact) -> list[list[tuple[int, float]]]:
    """Hit lists of :class:`quiver.CompactHits` as (id, score) pairs."""
    ends = np.cumsum(compact.counts)
    ids, scores = compact.ids.tolist(), compact.scores.tolist()
    return [list(zip(ids[e - c : e], scores[e - c : e], strict=True))
            for e, c in zip(ends, compact.counts, strict=True)]  # fmt: skip


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_query_compact_gives_the_hits_of_query(tmp_path, metric) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((200, DIM)).astype(np.float32)
    x[7] = 0.0  # a zero vector
    x[9] = x[8]  # a duplicate
    with quiver.Database(tmp_path / "db") as db:
        c = db.create_collection("docs", DIM, metric)
        c.upsert(list(range(200)), x, [{"g": i % 3} for i in range(200)])
        c.delete([3, 4, 5, 50])
        c.upsert([10, 11], x[[20, 21]])  # new versions: their old rows are dead
        queries = np.vstack([x[:6], rng.standard_normal((5, DIM)).astype(np.float32)])
        threshold = {"cosine": 0.1, "ip": 0.5, "l2": 30.0}[metric]
        cases = [
            {"vectors": queries},
            {"vectors": queries, "k": 250, "ef": 256},  # more than the collection holds
            {"vectors": queries, "k": 7, "offset": 4},
            {"vectors": queries, "k": 20, "score_threshold": threshold},
            {"vectors": queries, "k": 5, "offset": 2, "score_threshold": threshold},
            {"vectors": queries, "k": 6, "filter": {"must": [{"key": "g", "match": {"value": 1}}]}},
            {"ids": [0, 8, 9, 10, 199], "k": 8},
            {"ids": [1, 2], "k": 4, "offset": 3},
        ]
        for case in cases:
            request = SearchRequest(**case)
            want = [[(h.id, h.score) for h in hits] for hits in c.query(request)]
            got = c.query_compact(request)
            assert got.ids.dtype == np.uint64 and got.counts.dtype == np.int64
            assert _as_lists(got) == want, case


def test_query_compact_drops_an_older_version_like_query(coll) -> None:
    """A search can meet two live rows of one id (a reader between a writer's append and its
    delete of the old row): both paths keep only the higher one."""
    c, x = coll
    points = c._points  # noqa: SLF001 - the executor, fed crafted rows
    view, executor = points.view, points._executor  # noqa: SLF001
    request = SearchRequest(vectors=x[:2], k=4, offset=1)
    rows = np.array([[5, 6, 5, 7, 8, 6, 9, -1], [1, 1, 2, 3, -1, 4, 4, 4]], dtype=np.int64)
    view.ids[6] = view.ids[5]  # rows 5 and 6 hold one id, both live
    try:
        dists = np.sort(np.random.default_rng(2).random(rows.shape), axis=1).astype(np.float32)
        want = executor._hit_lists(view, rows, dists, request, None)  # noqa: SLF001
        got = executor._compact(view, rows, dists, request, None)  # noqa: SLF001
        assert _as_lists(got) == [[(h.id, h.score) for h in hits] for hits in want]
        assert [h.id for h in want[0]] == [7, 8, 9] and [h.id for h in want[1]] == [2, 3]
    finally:
        view.ids[6] = 6


def test_query_compact_needs_integer_ids_and_no_payloads(coll, tmp_path) -> None:
    c, x = coll
    with pytest.raises(InvalidInputError, match="with_payload=True"):
        c.query_compact(SearchRequest(vectors=x[:1], with_payload=True))
    with pytest.raises(InvalidInputError, match="with_vector=True"):
        c.query_compact(SearchRequest(vectors=x[:1], with_vector=True))
    with quiver.Database(tmp_path / "s") as db:
        s = db.create_collection("s", DIM, "cosine", id_type="string")
        s.upsert(["a", "b"], x[:2])
        with pytest.raises(InvalidInputError, match="id_type 'string'"):
            s.query_compact(SearchRequest(vectors=x[:1]))
