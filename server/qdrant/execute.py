"""The blocking work behind each Qdrant-compatible endpoint, on one quiver ``Collection``.

Each function takes a collection and a parsed request body and returns Qdrant's result
shape; the route handlers run them in the server's worker pool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quiver import Collection, ScoredPoint

from ..routes.common import stack_vectors
from . import translate as tr
from .schemas import (
    CountPoints,
    DeletePayload,
    DeletePoints,
    QueryPoints,
    RetrievePoints,
    ScrollPoints,
    SearchPoints,
    SetPayload,
    UpsertPoints,
)


def upsert(coll: Collection, body: UpsertPoints) -> int:
    """Write a points list or a columnar batch; return how many points."""
    if body.update_filter is not None:
        raise tr.unsupported("conditional upserts (update_filter) are")
    if body.shard_key is not None:
        raise tr.unsupported("shard keys are")
    if (body.points is None) == (body.batch is None):
        raise tr.InvalidInputError("give exactly one of 'points' and 'batch'")
    if body.points is not None:
        raw_ids = [p.id for p in body.points]
        rows = [tr.vector_in(p.vector, f"points[{i}].vector") for i, p in enumerate(body.points)]
        payloads: list[Any] = [p.payload for p in body.points]
    else:
        batch = body.batch
        assert batch is not None
        raw_ids = batch.ids
        rows = tr.batch_vectors_in(batch.vectors, len(raw_ids))
        payloads = batch.payloads if batch.payloads is not None else [None] * len(raw_ids)
        if len(payloads) != len(raw_ids):
            raise tr.InvalidInputError(
                f"batch.payloads must have one entry per id: {len(raw_ids)}, got {len(payloads)}"
            )
    if not raw_ids:
        return 0
    ids, rows, payloads = tr.last_wins(tr.point_ids_in(raw_ids, coll.id_type), rows, payloads)
    vectors = stack_vectors(rows, coll.dim)
    return coll.upsert(ids, vectors, payloads if any(p is not None for p in payloads) else None)


def _selected(coll: Collection, body: Any) -> dict[str, Any]:
    """``ids=`` or ``filter=`` of a points selector (exactly one), in quiver's terms."""
    if getattr(body, "shard_key", None) is not None:
        raise tr.unsupported("shard keys are")
    if (body.points is None) == (body.filter is None):
        raise tr.InvalidInputError("give exactly one of 'points' (ids) and 'filter'")
    if body.points is not None:
        return {"ids": tr.point_ids_in(body.points, coll.id_type)}
    return {"filter": tr.filter_in(body.filter, coll.id_type)}


def delete(coll: Collection, body: DeletePoints) -> int:
    """Delete by ids or by filter; return how many points were deleted."""
    selected = _selected(coll, body)
    if "ids" in selected:
        return coll.delete(selected["ids"])
    return coll.delete_by_filter(selected["filter"])


def set_payload(coll: Collection, body: SetPayload, overwrite: bool) -> int:
    """Merge (or with ``overwrite`` replace) the payloads of the selected points."""
    if body.key is not None:
        raise tr.unsupported("setting a payload under a nested 'key' is")
    return coll.set_payload(body.payload, overwrite=overwrite, **_selected(coll, body))


def delete_payload(coll: Collection, body: DeletePayload) -> int:
    """Remove payload keys from the selected points."""
    return coll.delete_payload(body.keys, **_selected(coll, body))


def clear_payload(coll: Collection, body: DeletePoints) -> int:
    """Remove the whole payload of the selected points."""
    return coll.delete_payload(None, **_selected(coll, body))


def retrieve(coll: Collection, body: RetrievePoints) -> list[dict[str, Any]]:
    """The points with these ids (missing ones skipped), as Qdrant records."""
    selector = tr.payload_selector_in(body.with_payload, default=True)
    with_vector = tr.with_vector_in(body.with_vector)
    points = coll.retrieve(
        tr.point_ids_in(body.ids, coll.id_type),
        with_payload=selector.fetch,
        with_vector=with_vector,
    )
    return [tr.record_out(p, selector, with_vector) for p in points]


def get_point(coll: Collection, raw_id: str) -> dict[str, Any]:
    """One point by the id in the URL (404 if missing)."""
    value: int | str = int(raw_id) if raw_id.isascii() and raw_id.isdigit() else raw_id
    point = coll.get(tr.point_id_in(value, coll.id_type), with_payload=True, with_vector=True)
    return tr.record_out(point, tr.PayloadSelector(True), True)


def scroll(coll: Collection, body: ScrollPoints) -> dict[str, Any]:
    """A page of points from ``offset`` (in storage order, not id order as in Qdrant) with
    the next page's first id."""
    if body.order_by is not None:
        raise tr.unsupported("scroll order_by is")
    limit = body.limit or tr.DEFAULT_LIMIT
    selector = tr.payload_selector_in(body.with_payload, default=True)
    with_vector = tr.with_vector_in(body.with_vector)
    points, next_offset = coll.scroll(
        limit=limit,
        offset=None if body.offset is None else tr.point_id_in(body.offset, coll.id_type),
        filter=tr.filter_in(body.filter, coll.id_type),
        with_payload=selector.fetch,
        with_vector=with_vector,
    )
    return {
        "points": [tr.record_out(p, selector, with_vector) for p in points],
        "next_page_offset": None if next_offset is None else tr.point_id_out(next_offset),
    }


def count(coll: Collection, body: CountPoints) -> dict[str, int]:
    """Points matching the filter (quiver's counts are exact whatever ``exact`` says)."""
    return {"count": coll.count(tr.filter_in(body.filter, coll.id_type))}


def query(coll: Collection, body: QueryPoints) -> dict[str, Any]:
    """``POST .../points/query``: nearest points to a vector or a stored point."""
    tr.check_query_options(body)
    nearest = tr.query_in(body.query, coll.id_type)
    return {"points": _nearest(coll, nearest, body)}


def search(coll: Collection, body: SearchPoints) -> list[dict[str, Any]]:
    """The older ``POST .../points/search``: nearest points to a vector."""
    tr.check_search_params(body.params)
    return _nearest(coll, tr.Nearest(tr.vector_in(body.vector), None), body)


def _nearest(
    coll: Collection, nearest: tr.Nearest, body: QueryPoints | SearchPoints
) -> list[dict[str, Any]]:
    """The hits of ``nearest`` under the options of ``body`` (both query forms share them)."""
    limit, offset = body.limit or tr.DEFAULT_LIMIT, body.offset or 0
    ef = body.params.hnsw_ef if body.params else None
    selector = tr.payload_selector_in(body.with_payload, default=False)
    want_vector = tr.with_vector_in(body.with_vector)
    options: dict[str, Any] = {
        "filter": tr.filter_in(body.filter, coll.id_type),
        "score_threshold": tr.threshold_in(body.score_threshold, coll.metric),
        # the core returns the top-level fields an include list reaches into; the dotted
        # paths (and exclude lists) are then applied by tr.project_payload
        "with_payload": (
            list(dict.fromkeys(p.split(".")[0] for p in selector.include))
            if selector.include
            else selector.fetch
        ),
        "with_vector": want_vector or nearest.diversity is not None,
    }
    if nearest.point_id is not None:
        options["query_id"] = nearest.point_id
        vector = None
    else:
        vector = np.asarray(nearest.vector, dtype=np.float32)

    def run(**window: Any) -> list[list[ScoredPoint]]:
        return [coll.search(vector, **window, **options)]

    if nearest.diversity is None:
        (hits,) = run(k=limit, offset=offset, ef=None if ef is None else max(ef, limit))
    else:
        hits = _mmr(coll, nearest, run, limit + offset, ef)[offset:]
    return [tr.scored_point_out(h, coll.metric, selector, want_vector) for h in hits]


def _mmr(coll: Collection, nearest: tr.Nearest, run: Any, k: int, ef: int | None) -> list[Any]:
    """MMR over ``candidates_limit`` nearest hits (default: ``k``)."""
    candidates = max(nearest.candidates or k, k)
    (pool,) = run(k=candidates, ef=None if ef is None else max(ef, candidates))
    if nearest.point_id is not None:
        query_vector = coll.get(nearest.point_id, with_payload=False, with_vector=True).vector
    else:
        query_vector = nearest.vector
    assert nearest.diversity is not None
    return tr.mmr_select(np.asarray(query_vector), pool, coll.metric, k, nearest.diversity)


def payload_schema(coll: Collection, types: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Qdrant's ``payload_schema``: every indexed key with its type (as asked for when it was
    indexed through this API, else ``keyword``) and how many points carry it."""
    keys = coll.info()["payload_indexes"]
    return {
        key: {
            "data_type": types.get(key, "keyword"),
            "points": coll.count({"must_not": [{"key": key, "is_empty": True}]}),
        }
        for key in keys
    }
