"""The pure Qdrant <-> quiver translations: ids, filters, scores, payload selection, MMR."""

from __future__ import annotations

import numpy as np
import pytest

from quiver import ScoredPoint
from quiver.errors import InvalidInputError
from quiver.server.qdrant import translate as tr

U = "a8098c1a-f86e-11da-bd1a-00112444be1e"


def test_ids_round_trip_in_the_form_given() -> None:
    assert tr.point_id_in(42, "string") == "42"
    assert tr.point_id_in(U.upper(), "string") == U
    assert tr.point_id_in(U.replace("-", ""), "string") == U  # simple form, canonicalised
    assert tr.point_id_out(tr.point_id_in(42, "string")) == 42
    assert tr.point_id_out(tr.point_id_in(U, "string")) == U
    assert tr.point_id_in(42, "uint64") == 42 and tr.point_id_out(42) == 42


@pytest.mark.parametrize(
    ("value", "id_type", "message"),
    [
        ("not-a-uuid", "string", "neither an unsigned integer nor a UUID"),
        (-1, "string", "unsigned 64-bit"),
        (2**64, "uint64", "unsigned 64-bit"),
        (True, "string", "unsigned integers or UUID"),
        (U, "uint64", "integer ids"),
    ],
)
def test_bad_ids_are_refused(value: object, id_type: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        tr.point_id_in(value, id_type)


def test_filter_translation() -> None:
    qdrant = {
        "must": [
            {"key": "city", "match": {"value": "Oslo"}},
            {"key": "n", "range": {"gte": 1, "lt": None}},
            {"is_empty": {"key": "tags"}},
            {"has_id": [7, U]},
        ],
        "must_not": {"key": "kind", "match": {"any": ["a", "b"]}},
        "should": [{"must": [{"key": "x", "is_empty": False}]}],
    }
    assert tr.filter_in(qdrant, "string") == {
        "must": [
            {"key": "city", "match": {"value": "Oslo"}},
            {"key": "n", "range": {"gte": 1}},
            {"key": "tags", "is_empty": True},
            {"has_id": ["7", U]},
        ],
        "must_not": [{"key": "kind", "match": {"any": ["a", "b"]}}],
        "should": [{"must": [{"must_not": [{"key": "x", "is_empty": True}]}]}],
    }
    assert tr.filter_in(None, "string") is None


@pytest.mark.parametrize(
    ("condition", "feature"),
    [
        ({"key": "loc", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 1}}, "geo"),
        ({"key": "t", "match": {"text": "hello"}}, "full-text"),
        ({"key": "t", "values_count": {"gt": 1}}, "values_count"),
        ({"is_null": {"key": "t"}}, "is_null"),
        ({"nested": {"key": "a", "filter": {}}}, "nested"),
        ({"has_vector": "image"}, "named vectors"),
        ({"key": "d", "range": {"gt": "2024-01-01T00:00:00Z"}}, "datetime"),
    ],
)
def test_unsupported_conditions_name_the_feature(condition: dict, feature: str) -> None:
    with pytest.raises(InvalidInputError, match=feature):
        tr.filter_in({"must": [condition]}, "string")


def test_min_should_is_refused() -> None:
    flt = {"min_should": {"conditions": [{"has_id": [1]}], "min_count": 1}}
    with pytest.raises(InvalidInputError, match="min_should"):
        tr.filter_in(flt, "string")


def test_euclid_scores_and_thresholds() -> None:
    assert tr.score_out(25.0, "l2") == 5.0
    assert tr.score_out(0.75, "cosine") == 0.75
    assert tr.threshold_in(5.0, "l2") == 25.0
    assert tr.threshold_in(-2.0, "l2") < 0  # no distance passes a negative threshold
    assert tr.threshold_in(0.5, "ip") == 0.5


def test_payload_selection() -> None:
    payload = {"a": 1, "b": {"c": 2, "d": 3}, "e": 4}
    select = tr.payload_selector_in
    assert tr.project_payload(payload, select(["a", "b.c", "zz"], False)) == {"a": 1, "b": {"c": 2}}
    exclude = select({"exclude": ["b.d", "e"]}, False)
    assert tr.project_payload(payload, exclude) == {"a": 1, "b": {"c": 2}}
    assert payload["b"] == {"c": 2, "d": 3}  # the stored payload is untouched
    assert tr.project_payload(payload, select(None, False)) is None
    assert tr.project_payload(payload, select(None, True)) == payload
    assert tr.project_payload(None, select(None, True)) == {}  # no payload: an empty object


def test_with_vector_names() -> None:
    assert tr.with_vector_in([""]) is True and tr.with_vector_in(None) is False
    with pytest.raises(InvalidInputError, match="named vectors"):
        tr.with_vector_in(["image"])


@pytest.mark.parametrize(
    ("query", "feature"),
    [
        ({"fusion": "rrf"}, "fusion"),
        ({"recommend": {"positive": [1]}}, "recommendation"),
        ({"indices": [1], "values": [0.5]}, "sparse"),
        ({"text": "hi", "model": "m"}, "inference"),
        ([[0.1, 0.2], [0.3, 0.4]], "multivectors"),
        (None, "scroll"),
    ],
)
def test_unsupported_queries_name_the_feature(query: object, feature: str) -> None:
    with pytest.raises(InvalidInputError, match=feature):
        tr.query_in(query, "string")


def test_query_forms() -> None:
    assert tr.query_in([0.5, 0.5], "string") == tr.Nearest([0.5, 0.5], None)
    assert tr.query_in(3, "string") == tr.Nearest(None, "3")
    mmr = tr.query_in({"nearest": U, "mmr": {"diversity": 0.3, "candidates_limit": 20}}, "string")
    assert mmr == tr.Nearest(None, U, 0.3, 20)


def test_vectors_of_upserts() -> None:
    assert tr.vector_in({"": [1.0, 2.0]}) == [1.0, 2.0]
    assert tr.batch_vectors_in({"": [[1.0], [2.0]]}, 2) == [[1.0], [2.0]]
    with pytest.raises(InvalidInputError, match="named vectors"):
        tr.vector_in({"image": [1.0]})
    with pytest.raises(InvalidInputError, match="one per id"):
        tr.batch_vectors_in([[1.0]], 2)
    ids, vectors, payloads = tr.last_wins(
        ["1", "2", "1"], [[1.0], [2.0], [3.0]], [None, {}, {"x": 1}]
    )
    assert (ids, vectors, payloads) == (["2", "1"], [[2.0], [3.0]], [{}, {"x": 1}])


def test_mmr_prefers_diverse_hits() -> None:
    q = np.array([1.0, 0.0])
    near = [
        ScoredPoint(i, 0.0, None, v) for i, v in enumerate([[1.0, 0.01], [1.0, 0.02], [0.6, 0.8]])
    ]
    assert [h.id for h in tr.mmr_select(q, near, "cosine", 2, diversity=0.0)] == [0, 1]
    assert [h.id for h in tr.mmr_select(q, near, "cosine", 2, diversity=0.7)] == [0, 2]


def test_create_maps_hnsw_and_refuses_what_quiver_lacks() -> None:
    from quiver.server.qdrant.schemas import CreateCollection

    new = tr.create_in(
        CreateCollection(
            vectors={"size": 8, "distance": "Euclid", "on_disk": True},
            hnsw_config={"m": 16, "ef_construct": 100, "full_scan_threshold": 5},
            optimizers_config={"indexing_threshold": 0},
        )
    )
    assert (new.dim, new.metric) == (8, "l2")
    assert new.build == {"max_degree": 32, "build_list_size": 100}
    assert set(new.ignored) == {
        "hnsw_config.full_scan_threshold",
        "optimizers_config",
        "vectors.on_disk",
    }
    assert (
        tr.create_in(CreateCollection(vectors={"": {"size": 4, "distance": "Dot"}})).metric == "ip"
    )
    for body, feature in [
        ({"vectors": {"a": {"size": 4, "distance": "Dot"}}}, "named vectors"),
        ({"vectors": {"size": 4, "distance": "Dot"}, "sparse_vectors": {"s": {}}}, "sparse"),
        (
            {"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"scalar": {}}},
            "quantization",
        ),
        ({"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 2}, "sharding"),
        ({"vectors": {"size": 4, "distance": "Manhattan"}}, "Manhattan"),
        ({}, "dense vector"),
    ]:
        with pytest.raises(InvalidInputError, match=feature):
            tr.create_in(CreateCollection(**body))
