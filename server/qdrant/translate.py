"""Pure translation between Qdrant's request/response shapes and quiver's embedded API.

Nothing here does I/O: ids, vectors, filters, queries, scores and collection descriptions
are converted both ways, and anything quiver cannot do raises :class:`InvalidInputError`
(a 400) naming the feature, so a client never gets a silently different answer.

Conventions:

* Ids. Qdrant ids are unsigned integers or UUIDs, both allowed in one collection. The
  collections this API creates have quiver ``id_type="string"``: an integer is stored as its
  decimal text, a UUID as its canonical lowercase hyphenated text. Decimal digits never form
  a canonical UUID (which has hyphens), so the stored text tells which form was given and
  each id is returned in that form. quiver collections with ``uint64`` ids work too (integer
  ids only).
* Scores. quiver's cosine similarity and dot product are Qdrant's; for ``l2`` quiver reports
  the squared Euclidean distance, Qdrant (``Euclid``) the distance: results are ``sqrt``-ed
  and a ``score_threshold`` is squared before it reaches quiver.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quiver import ScoredPoint
from quiver.errors import InvalidInputError

from ..schemas import U64_MAX
from .schemas import CreateCollection, SearchParams

DISTANCE_TO_METRIC = {"Cosine": "cosine", "Dot": "ip", "Euclid": "l2"}
METRIC_TO_DISTANCE = {metric: distance for distance, metric in DISTANCE_TO_METRIC.items()}
#: Qdrant's default page size (query limit, scroll limit).
DEFAULT_LIMIT = 10
#: Payload index types quiver can index (any JSON scalar is indexed the same way).
INDEXABLE_TYPES = ("keyword", "integer", "float", "bool", "uuid", "datetime")
_NOT_INDEXABLE = {"text": "full-text indexes", "geo": "geo indexes"}
_FILTER_CLAUSES = ("must", "should", "must_not")
_RANGE_OPS = ("gt", "gte", "lt", "lte")
#: Query kinds of Qdrant's universal query API that quiver has no equivalent for.
_UNSUPPORTED_QUERIES = {
    "recommend": "recommendation queries",
    "discover": "discovery queries",
    "context": "context queries",
    "order_by": "order_by queries",
    "fusion": "hybrid/fusion queries",
    "rrf": "hybrid/fusion (rrf) queries",
    "formula": "formula (score boosting) queries",
    "sample": "random sampling queries",
    "relevance_feedback": "relevance feedback queries",
}


def unsupported(feature: str) -> InvalidInputError:
    """The 400 for a Qdrant feature quiver does not have."""
    return InvalidInputError(f"{feature} not supported by quiver's Qdrant-compatible API")


# --- ids ----------------------------------------------------------------------------------


def point_id_in(value: Any, id_type: str) -> int | str:
    """A Qdrant point id -> the id stored in a quiver collection of ``id_type``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= U64_MAX:
            raise InvalidInputError(f"point ids are unsigned 64-bit integers, got {value}")
        return value if id_type == "uint64" else str(value)
    if isinstance(value, str):
        try:
            canonical = str(uuid.UUID(value))
        except ValueError:
            raise InvalidInputError(
                f"point id {value[:80]!r} is neither an unsigned integer nor a UUID"
            ) from None
        if id_type == "uint64":
            raise InvalidInputError(
                f"this collection has integer ids (a quiver uint64 collection), got UUID {value!r}"
            )
        return canonical
    raise InvalidInputError(
        f"point ids are unsigned integers or UUID strings, got {type(value).__name__} {value!r}"
    )


def point_ids_in(values: Sequence[Any], id_type: str) -> list[int | str]:
    """:func:`point_id_in` of each id."""
    return [point_id_in(v, id_type) for v in values]


def point_id_out(stored: int | str) -> int | str:
    """A stored id -> the Qdrant id in the form it was given (decimal text -> integer)."""
    if isinstance(stored, str) and stored.isascii() and stored.isdigit():
        return int(stored)
    return stored


# --- vectors ------------------------------------------------------------------------------


def _unnamed(value: Any, where: str) -> Any:
    """The unnamed vector out of ``{"": v}``; named and sparse vectors are refused."""
    if not isinstance(value, dict):
        return value
    if set(value) == {""}:
        return value[""]
    if {"indices", "values"} <= set(value):
        raise unsupported(f"{where}: sparse vectors are")
    raise unsupported(f"{where}: named vectors ({sorted(value)[:5]}) are")


def vector_in(value: Any, where: str = "vector") -> list[float]:
    """One dense vector as clients send it: ``[...]`` or ``{"": [...]}``."""
    value = _unnamed(value, where)
    if isinstance(value, list) and value and isinstance(value[0], list):
        raise unsupported(f"{where}: multivectors are")
    if not isinstance(value, list) or not value:
        raise InvalidInputError(f"{where} must be a non-empty list of numbers, got {value!r:.80}")
    return value


def batch_vectors_in(value: Any, n: int) -> list[list[float]]:
    """The vectors of a columnar ``Batch``: ``[[...], ...]`` or ``{"": [[...], ...]}``."""
    value = _unnamed(value, "batch.vectors")
    if not isinstance(value, list) or len(value) != n:
        raise InvalidInputError(
            f"batch.vectors must be a list of {n} vectors (one per id), got {value!r:.80}"
        )
    return [vector_in(v, f"batch.vectors[{i}]") for i, v in enumerate(value)]


def last_wins(
    ids: list[int | str], vectors: list[list[float]], payloads: list[Any]
) -> tuple[list[int | str], list[list[float]], list[Any]]:
    """Keep the last of repeated ids in one upsert (Qdrant's rule; quiver refuses repeats)."""
    last = {pid: i for i, pid in enumerate(ids)}
    if len(last) == len(ids):
        return ids, vectors, payloads
    keep = sorted(last.values())
    return [ids[i] for i in keep], [vectors[i] for i in keep], [payloads[i] for i in keep]


# --- collections --------------------------------------------------------------------------


@dataclass(frozen=True)
class NewCollection:
    """What ``Database.create_collection`` gets, and the options that changed nothing."""

    dim: int
    metric: str
    build: dict[str, int]
    ignored: list[str]


def _vector_params(vectors: Any) -> dict[str, Any]:
    if vectors is None:
        raise unsupported("a collection without a dense vector ('vectors') is")
    if not isinstance(vectors, dict):
        raise InvalidInputError(f"vectors must be an object {{size, distance}}, got {vectors!r}")
    if "size" not in vectors:
        if set(vectors) == {""}:
            return _vector_params(vectors[""])
        raise unsupported(f"named vectors ({sorted(vectors)[:5]}) are")
    return vectors


def create_in(body: CreateCollection) -> NewCollection:
    """A Qdrant create-collection body -> quiver's parameters.

    ``hnsw_config.m`` maps to ``max_degree = 2 m`` (HNSW's bottom layer, the graph a search
    walks, has 2 m links per node) and ``ef_construct`` to ``build_list_size``.
    """
    params = _vector_params(body.vectors)
    unknown = set(params) - {
        "size",
        "distance",
        "hnsw_config",
        "quantization_config",
        "on_disk",
        "datatype",
        "multivector_config",
        "memory",
    }
    if unknown:
        raise InvalidInputError(f"vectors: unknown field(s) {sorted(unknown)}")
    size, distance = params.get("size"), params.get("distance")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidInputError(f"vectors.size must be a positive integer, got {size!r}")
    if distance not in DISTANCE_TO_METRIC:
        if distance == "Manhattan":
            raise unsupported("the Manhattan distance is")
        raise InvalidInputError(
            f"vectors.distance must be one of {list(DISTANCE_TO_METRIC)}, got {distance!r}"
        )
    if params.get("quantization_config") is not None or body.quantization_config is not None:
        raise unsupported("quantization settings are")
    if params.get("multivector_config") is not None:
        raise unsupported("multivectors are")
    if params.get("datatype") not in (None, "float32"):
        raise unsupported(f"vector datatype {params['datatype']!r} is (float32 only)")
    if body.sparse_vectors:
        raise unsupported("sparse vectors are")
    if (body.shard_number or 1) > 1 or body.sharding_method == "custom":
        raise unsupported("sharding is")
    if (body.replication_factor or 1) > 1:
        raise unsupported("replication is")
    if body.init_from is not None:
        raise unsupported("init_from is")
    hnsw = {**(body.hnsw_config or {}), **(params.get("hnsw_config") or {})}
    build = {}
    if hnsw.get("m") is not None:
        build["max_degree"] = 2 * int(hnsw["m"])
    if hnsw.get("ef_construct") is not None:
        build["build_list_size"] = int(hnsw["ef_construct"])
    ignored = [f"hnsw_config.{k}" for k in sorted(hnsw) if k not in ("m", "ef_construct")]
    ignored += [
        k
        for k in (
            "on_disk_payload",
            "wal_config",
            "optimizers_config",
            "strict_mode_config",
            "metadata",
            "payload",
            "id_tracker",
            "write_consistency_factor",
        )
        if getattr(body, k) is not None
    ]
    ignored += [f"vectors.{k}" for k in ("on_disk", "memory") if params.get(k) is not None]
    return NewCollection(size, DISTANCE_TO_METRIC[distance], build, ignored)


def update_in(body: Any) -> None:
    """Refuse a ``PATCH`` that would change what quiver has fixed at creation (quantization,
    sparse vectors, named vectors); the rest (optimizer, HNSW tuning, params) is a no-op."""
    if body.quantization_config is not None:
        raise unsupported("quantization settings are")
    if body.sparse_vectors:
        raise unsupported("sparse vectors are")
    if body.vectors:
        raise unsupported("changing vector parameters is")


def collection_info_out(
    info: dict[str, Any], payload_schema: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """quiver's ``Collection.info()`` -> Qdrant's CollectionInfo."""
    params = info["params"]
    return {
        "status": "green" if info["status"] == "green" else "grey",
        "optimizer_status": "ok",
        "indexed_vectors_count": info["count"],
        "points_count": info["count"],
        "segments_count": 1,
        "config": {
            "params": {
                "vectors": {"size": info["dim"], "distance": METRIC_TO_DISTANCE[info["metric"]]},
                "shard_number": 1,
                "replication_factor": 1,
                "write_consistency_factor": 1,
                "on_disk_payload": True,
            },
            "hnsw_config": {
                "m": max(1, int(params["max_degree"]) // 2),
                "ef_construct": int(params["build_list_size"]),
                "full_scan_threshold": 10_000,
            },
            "optimizer_config": {
                "deleted_threshold": 0.25,
                "vacuum_min_vector_number": 0,
                "default_segment_number": 1,
                "flush_interval_sec": 0,
            },
            "wal_config": {"wal_capacity_mb": 64, "wal_segments_ahead": 0},
            "quantization_config": None,
        },
        "payload_schema": payload_schema,
    }


def index_type_in(field_schema: Any) -> str:
    """The payload index type asked for (``"keyword"`` or ``{"type": "keyword", ...}``)."""
    kind = field_schema.get("type") if isinstance(field_schema, dict) else field_schema
    kind = kind or "keyword"
    if kind in _NOT_INDEXABLE:
        raise unsupported(f"{_NOT_INDEXABLE[kind]} are")
    if kind not in INDEXABLE_TYPES:
        raise InvalidInputError(
            f"field_schema must be one of {list(INDEXABLE_TYPES)}, got {kind!r}"
        )
    return str(kind)


# --- filters ------------------------------------------------------------------------------


def filter_in(obj: Any, id_type: str) -> dict[str, Any] | None:
    """A Qdrant filter -> quiver's filter dict (``None`` for no filter).

    quiver's grammar is Qdrant-shaped: the clauses and ``match``/``range``/``is_empty`` carry
    over; ``has_id`` ids are converted; ``{"is_empty": {"key": k}}`` becomes quiver's keyed
    form; conditions quiver lacks are refused by name.
    """
    if obj is None:
        return None
    return _filter(obj, id_type, "filter")


def _filter(obj: Any, id_type: str, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where} must be an object, got {type(obj).__name__}")
    if obj.get("min_should") is not None:
        raise unsupported(f"{where}.min_should is")
    unknown = set(obj) - {*_FILTER_CLAUSES, "min_should"}
    if unknown:
        raise InvalidInputError(f"{where}: unknown clause(s) {sorted(unknown)}")
    out: dict[str, Any] = {}
    for clause in _FILTER_CLAUSES:
        conds = obj.get(clause)
        if conds is None:
            continue
        conds = conds if isinstance(conds, list) else [conds]
        out[clause] = [
            _condition(c, id_type, f"{where}.{clause}[{i}]") for i, c in enumerate(conds)
        ]
    return out


def _condition(obj: Any, id_type: str, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where} must be an object, got {type(obj).__name__}")
    obj = {k: v for k, v in obj.items() if v is not None}
    if set(obj) & {*_FILTER_CLAUSES, "min_should"}:
        return _filter(obj, id_type, where)
    if "has_id" in obj:
        return {"has_id": point_ids_in(obj["has_id"], id_type)}
    for kind, feature in (
        ("is_null", "is_null conditions are"),
        ("nested", "nested object filters are"),
        ("has_vector", "has_vector conditions (named vectors) are"),
    ):
        if kind in obj and "key" not in obj:
            raise unsupported(f"{where}: {feature}")
    if "is_empty" in obj and "key" not in obj:
        field = obj["is_empty"]
        if not isinstance(field, dict) or not isinstance(field.get("key"), str):
            raise InvalidInputError(f"{where}.is_empty must be {{'key': ...}}, got {field!r}")
        return {"key": field["key"], "is_empty": True}
    if "key" not in obj:
        raise InvalidInputError(f"{where}: unknown condition with keys {sorted(obj)}")
    return _field_condition(obj, where)


def _field_condition(obj: dict[str, Any], where: str) -> dict[str, Any]:
    key = obj["key"]
    kinds = set(obj) - {"key"}
    for kind in ("geo_bounding_box", "geo_radius", "geo_polygon"):
        if kind in kinds:
            raise unsupported(f"{where}: geo conditions ({kind}) are")
    if "values_count" in kinds:
        raise unsupported(f"{where}: values_count conditions are")
    if "is_null" in kinds:
        raise unsupported(f"{where}: is_null conditions are")
    if len(kinds) != 1:
        raise InvalidInputError(
            f"{where}: a field condition needs exactly one of match, range, is_empty; "
            f"got {sorted(kinds)}"
        )
    if "is_empty" in kinds:
        empty = {"key": key, "is_empty": True}
        return empty if obj["is_empty"] else {"must_not": [empty]}
    if "range" in kinds:
        bounds = {op: v for op, v in obj["range"].items() if v is not None}
        if any(isinstance(v, str) for v in bounds.values()):
            raise unsupported(f"{where}: datetime ranges are")
        return {"key": key, "range": bounds}
    match = obj.get("match")
    if not isinstance(match, dict):
        raise InvalidInputError(f"{where}: unknown field condition {sorted(kinds)}")
    for kind in ("text", "phrase", "text_any"):
        if kind in match:
            raise unsupported(f"{where}: full-text match ({kind}) is")
    return {"key": key, "match": match}


# --- payload and vector selection ---------------------------------------------------------


@dataclass(frozen=True)
class PayloadSelector:
    """Which payload to return: none, all, only ``include`` keys or all but ``exclude``."""

    fetch: bool
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None


def payload_selector_in(value: Any, default: bool) -> PayloadSelector:
    """``with_payload``: a bool, a list of keys, ``{"include": [...]}`` or ``{"exclude": ...}``."""
    if value is None:
        return PayloadSelector(default)
    if isinstance(value, bool):
        return PayloadSelector(value)
    if isinstance(value, list) and all(isinstance(k, str) for k in value):
        return PayloadSelector(True, include=tuple(value))
    if isinstance(value, dict) and len(value) == 1:
        ((kind, keys),) = value.items()
        if kind in ("include", "exclude"):
            keys = [keys] if isinstance(keys, str) else keys
            if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
                return PayloadSelector(True, **{kind: tuple(keys)})
    raise InvalidInputError(
        f"with_payload must be a bool, a list of keys, {{'include': [...]}} or "
        f"{{'exclude': [...]}}; got {value!r:.80}"
    )


def with_vector_in(value: Any) -> bool:
    """``with_vector``: a bool, or the list of vector names (only the unnamed one, ``""``)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if any(value):
            raise unsupported(f"named vectors ({value[:5]}) are")
        return bool(value)
    raise InvalidInputError(f"with_vector must be a bool or a list of names, got {value!r:.80}")


def project_payload(payload: dict[str, Any] | None, selector: PayloadSelector) -> Any:
    """The part of ``payload`` that ``selector`` asks for (dotted keys reach into objects).

    The core already returned only the top-level fields an include list names; this reaches
    into objects for dotted paths and applies exclude lists.
    """
    if not selector.fetch:
        return None
    if payload is None:
        return {}  # Qdrant answers an empty object for a point without payload
    if selector.include is not None:
        out: dict[str, Any] = {}
        for path in selector.include:
            found, value = _lookup(payload, path.split("."))
            if found:
                _assign(out, path.split("."), value)
        return out
    if selector.exclude is not None:
        out = copy.deepcopy(payload)
        for path in selector.exclude:
            *parents, last = path.split(".")
            found, holder = _lookup(out, parents)
            if found and isinstance(holder, dict):
                holder.pop(last, None)
        return out
    return payload


def _lookup(obj: Any, parts: list[str]) -> tuple[bool, Any]:
    for part in parts:
        if not isinstance(obj, dict) or part not in obj:
            return False, None
        obj = obj[part]
    return True, obj


def _assign(out: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        out = out.setdefault(part, {})
    out[parts[-1]] = value


# --- queries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nearest:
    """A nearest-neighbour query: by vector or by a stored point, optionally re-ranked by
    maximal marginal relevance (``diversity`` in [0, 1], from ``candidates`` hits)."""

    vector: list[float] | None
    point_id: int | str | None
    diversity: float | None = None
    candidates: int | None = None


def query_in(query: Any, id_type: str) -> Nearest:
    """The ``query`` of Qdrant's universal query API -> a :class:`Nearest`."""
    if query is None:
        raise unsupported("a query without 'query' (listing points: use scroll) is")
    if isinstance(query, int | str) and not isinstance(query, bool):
        return Nearest(None, point_id_in(query, id_type))
    if isinstance(query, list):
        return Nearest(vector_in(query, "query"), None)
    if not isinstance(query, dict):
        raise InvalidInputError(f"query: unknown form {query!r:.80}")
    for kind, feature in _UNSUPPORTED_QUERIES.items():
        if kind in query:
            raise unsupported(f"{feature} are")
    if {"indices", "values"} <= set(query):
        raise unsupported("sparse vectors are")
    if {"text", "image", "object"} & set(query):
        raise unsupported("server-side inference (Document, Image, InferenceObject) is")
    if "nearest" not in query:
        raise InvalidInputError(f"query: unknown form with keys {sorted(query)}")
    inner = query_in(query["nearest"], id_type)
    mmr = query.get("mmr")
    if mmr is None:
        return inner
    diversity = mmr.get("diversity")
    diversity = 0.5 if diversity is None else float(diversity)
    if not 0.0 <= diversity <= 1.0:
        raise InvalidInputError(f"mmr.diversity must be in [0, 1], got {diversity}")
    candidates = mmr.get("candidates_limit")
    return Nearest(inner.vector, inner.point_id, diversity, candidates)


def check_query_options(body: Any) -> None:
    """Refuse the parts of a query request that quiver has no equivalent for."""
    if body.prefetch:
        raise unsupported("prefetch (multi-stage and hybrid queries) is")
    if body.using:
        raise unsupported(f"named vectors (using={body.using!r}) are")
    if body.lookup_from is not None:
        raise unsupported("lookup_from is")
    check_search_params(body.params)


def check_search_params(params: SearchParams | None) -> None:
    """``exact=true`` has no quiver equivalent that guarantees exact results: refuse it."""
    if params is not None and params.exact:
        raise unsupported("exact (brute-force) search is; raise params.hnsw_ef instead")


def threshold_in(threshold: float | None, metric: str) -> float | None:
    """A Qdrant ``score_threshold`` in quiver's scale (Euclid distance -> squared, keeping a
    negative threshold negative: no distance passes it)."""
    if threshold is None or metric != "l2":
        return threshold
    return math.copysign(threshold * threshold, threshold)


def score_out(score: float, metric: str) -> float:
    """A quiver score in Qdrant's scale."""
    return math.sqrt(max(score, 0.0)) if metric == "l2" else float(score)


def mmr_select(
    query: np.ndarray, hits: list[ScoredPoint], metric: str, k: int, diversity: float
) -> list[ScoredPoint]:
    """Greedy maximal marginal relevance over ``hits`` (which carry vectors): each step takes
    the hit maximising ``(1 - diversity) * sim(query, hit) - diversity * max sim(hit,
    chosen)``; similarity is the collection's (cosine, dot, negative Euclidean distance)."""
    if not hits:
        return []
    x = np.asarray([h.vector for h in hits], dtype=np.float64)
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
        q = q / max(float(np.linalg.norm(q)), 1e-30)
    if metric == "l2":
        relevance = -np.linalg.norm(x - q, axis=1)
        pair = -np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    else:
        relevance, pair = x @ q, x @ x.T
    chosen = [int(np.argmax(relevance))]
    closest = pair[chosen[0]].copy()
    while len(chosen) < min(k, len(hits)):
        value = (1.0 - diversity) * relevance - diversity * closest
        value[chosen] = -np.inf
        best = int(np.argmax(value))
        chosen.append(best)
        closest = np.maximum(closest, pair[best])
    return [hits[i] for i in chosen]


def scored_point_out(
    hit: ScoredPoint, metric: str, selector: PayloadSelector, with_vector: bool
) -> dict[str, Any]:
    """A quiver hit -> Qdrant's ScoredPoint."""
    return {
        "id": point_id_out(hit.id),
        "version": 0,
        "score": score_out(hit.score, metric),
        "payload": project_payload(hit.payload, selector),
        "vector": _vector_out(hit.vector) if with_vector else None,
    }


def record_out(point: Any, selector: PayloadSelector, with_vector: bool) -> dict[str, Any]:
    """A quiver point -> Qdrant's Record."""
    return {
        "id": point_id_out(point.id),
        "payload": project_payload(point.payload, selector),
        "vector": _vector_out(point.vector) if with_vector else None,
    }


def _vector_out(vector: Any) -> list[float] | None:
    if vector is None:
        return None
    return vector.tolist() if isinstance(vector, np.ndarray) else list(vector)
