"""Request and response bodies of the REST API: bounded pydantic models.

The bounds here are hard caps that keep a single request sane whatever the configuration;
the configurable limits (``Settings.max_batch``, ``max_k``, ``max_ef``, ``max_dim``) are checked
on top of them in :mod:`quiver.server.deps`. Vectors are ``list[float]`` or a base64 string of
little-endian float32 (:mod:`quiver.server.vectors`); their dimension and finiteness are checked
against the collection, which knows its dimension.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    model_validator,
)

from quiver.db.request import SearchRequest

U64_MAX = 2**64 - 1
HARD_MAX_DIM = 65_536
HARD_MAX_BATCH = 1_000_000
HARD_MAX_K = 100_000
MAX_ID_CHARS = 512
MAX_KEY_CHARS = 256
MAX_CONDITIONS = 256

T = TypeVar("T")

PointId = (
    Annotated[StrictInt, Field(ge=0, le=U64_MAX)]
    | Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
)
"""A point id: a uint64 integer or a non-empty string, per the collection's ``id_type``."""

Base64Vectors = Annotated[
    StrictStr,
    Field(
        min_length=4,
        description="base64 of little-endian float32: one vector, or n vectors back to back",
    ),
]
Vector = Annotated[list[float], Field(min_length=1, max_length=HARD_MAX_DIM)] | Base64Vectors
VectorEncoding = Literal["float", "base64"]
Payload = dict[str, Any]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
CollectionNamePattern = r"^[A-Za-z0-9_-]{1,64}$"
SnapshotNamePattern = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,190}\.snapshot$"


class _Model(BaseModel):
    """Base of request bodies: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- envelope and errors ------------------------------------------------------------------


class Response(BaseModel, Generic[T]):
    """Every successful response: ``result`` plus the server-side ``time`` in seconds."""

    result: T
    time: float = Field(description="seconds spent in the handler")


class ErrorBody(BaseModel):
    """Every error response: a stable machine-readable ``error`` code and a human message."""

    error: str = Field(examples=["collection_not_found"])
    message: str = Field(examples=["collection 'docs' does not exist"])
    detail: list[dict[str, Any]] | None = Field(
        None, description="per-field problems, for schema validation errors (422)"
    )


# --- filters (Qdrant-shaped) --------------------------------------------------------------


class MatchValue(_Model):
    """Exact match of a keyword, integer or boolean payload value."""

    value: StrictStr | StrictInt | StrictBool


class MatchAny(_Model):
    """Match any of the listed values."""

    any: list[StrictStr | StrictInt] = Field(min_length=1, max_length=1024)


class RangeCondition(_Model):
    """Numeric range; at least one bound."""

    gt: FiniteFloat | None = None
    gte: FiniteFloat | None = None
    lt: FiniteFloat | None = None
    lte: FiniteFloat | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> RangeCondition:
        if self.gt is None and self.gte is None and self.lt is None and self.lte is None:
            raise ValueError("range needs at least one of gt, gte, lt, lte")
        return self


class FieldCondition(_Model):
    """A condition on the payload field ``key`` (dots descend into objects: ``"a.b"``)."""

    key: str = Field(min_length=1, max_length=MAX_KEY_CHARS)
    match: MatchValue | MatchAny | None = None
    range: RangeCondition | None = None

    @model_validator(mode="after")
    def _one_test(self) -> FieldCondition:
        if (self.match is None) == (self.range is None):
            raise ValueError("a field condition needs exactly one of 'match' or 'range'")
        return self


class HasIdCondition(_Model):
    """Points whose id is in the list."""

    has_id: list[PointId] = Field(min_length=1, max_length=HARD_MAX_BATCH)


def _condition_kind(value: Any) -> str | None:
    """Which condition a JSON object is, by its keys: ``key`` -> field, ``has_id``, else a
    nested filter (so errors name the one intended model, not every union member). ``None``
    (not an object) makes pydantic report a validation error."""
    if isinstance(value, dict):
        keys: Any = value.keys()
    elif isinstance(value, BaseModel):
        keys = type(value).model_fields
    else:
        return None
    if "key" in keys:
        return "field"
    return "has_id" if "has_id" in keys else "filter"


Condition = Annotated[
    Annotated[FieldCondition, Tag("field")]
    | Annotated[HasIdCondition, Tag("has_id")]
    | Annotated["Filter", Tag("filter")],
    Discriminator(_condition_kind),
]


class Filter(_Model):
    """``must`` (all), ``should`` (at least one), ``must_not`` (none); conditions nest."""

    must: list[Condition] | None = Field(None, max_length=MAX_CONDITIONS)
    should: list[Condition] | None = Field(None, max_length=MAX_CONDITIONS)
    must_not: list[Condition] | None = Field(None, max_length=MAX_CONDITIONS)

    def to_dict(self) -> dict[str, Any]:
        """The plain dict the embedded API takes."""
        return self.model_dump(exclude_none=True)


def filter_dict(f: Filter | None) -> dict[str, Any] | None:
    """``Filter`` -> the embedded API's dict (``None`` stays ``None``)."""
    return None if f is None else f.to_dict()


# --- collections --------------------------------------------------------------------------


class CreateCollection(_Model):
    """Body of ``PUT /collections/{name}``."""

    dim: int = Field(ge=1, le=HARD_MAX_DIM, description="vector dimension")
    metric: Literal["cosine", "ip", "l2"] = "cosine"
    id_type: Literal["uint64", "string"] = "uint64"
    max_degree: int = Field(64, ge=2, le=1024, description="graph out-degree (R)")
    build_list_size: int = Field(128, ge=1, le=10_000, description="build beam width (L)")
    alpha: float = Field(1.0, ge=0.5, le=4.0, description="RobustPrune slack")


class CollectionInfo(BaseModel):
    """What ``Collection.info()`` reports (more keys may follow)."""

    model_config = ConfigDict(extra="allow")

    name: str
    status: str = Field(description="green, degraded (log damage), closed, or failed")
    count: int = 0
    dim: int | None = None
    metric: str | None = None
    id_type: str | None = None
    params: dict[str, Any] = {}
    hot_bytes: int = 0
    cold_bytes: int = 0
    deleted: int = 0
    wal_bytes: int = 0
    payload_indexes: list[Any] = []
    error: str | None = Field(
        None, description="why a failed collection could not be opened (drop or restore it)"
    )


class CollectionDescription(BaseModel):
    """One entry of the collection list."""

    name: str


class CollectionList(BaseModel):
    """Body of ``GET /collections``."""

    collections: list[CollectionDescription]


# --- points -------------------------------------------------------------------------------


class PointStruct(_Model):
    """One point to upsert."""

    id: PointId
    vector: Vector
    payload: Payload | None = None


class UpsertPoints(_Model):
    """Body of ``PUT /collections/{name}/points``: ids must be unique within the batch.

    Either ``points`` (one object per point) or the columnar form: ``ids``, ``vectors`` (one
    base64 block of the n vectors as little-endian float32) and optional ``payloads``."""

    points: list[PointStruct] | None = Field(None, min_length=1, max_length=HARD_MAX_BATCH)
    ids: list[PointId] | None = Field(None, min_length=1, max_length=HARD_MAX_BATCH)
    vectors: Base64Vectors | None = None
    payloads: list[Payload | None] | None = Field(None, max_length=HARD_MAX_BATCH)

    @model_validator(mode="after")
    def _one_form(self) -> UpsertPoints:
        columnar = self.ids is not None or self.vectors is not None or self.payloads is not None
        if (self.points is None) == (not columnar):
            raise ValueError("give either 'points' or the columns 'ids' and 'vectors'")
        if columnar:
            if self.ids is None or self.vectors is None:
                raise ValueError("the columnar form needs both 'ids' and 'vectors'")
            if self.payloads is not None and len(self.payloads) != len(self.ids):
                raise ValueError(
                    f"{len(self.ids)} ids but {len(self.payloads)} payloads: give one per id"
                )
        return self

    @property
    def count(self) -> int:
        """Points in the batch."""
        return len(self.points) if self.points is not None else len(self.ids or ())


class UpsertResult(BaseModel):
    """How many points were written (durable when the response is sent)."""

    upserted: int


class DeletePoints(_Model):
    """Body of ``POST /collections/{name}/points/delete``: exactly one of ``points`` or
    ``filter``."""

    points: list[PointId] | None = Field(None, min_length=1, max_length=HARD_MAX_BATCH)
    filter: Filter | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DeletePoints:
        if (self.points is None) == (self.filter is None):
            raise ValueError("give exactly one of 'points' (ids) or 'filter'")
        return self


class DeleteResult(BaseModel):
    """How many of the points existed and were deleted."""

    deleted: int


_VECTOR_ENCODING = Field(
    "float", description="returned vectors as JSON numbers, or base64 of little-endian float32"
)


class GetPoints(_Model):
    """Body of ``POST /collections/{name}/points``: missing ids are skipped."""

    ids: list[PointId] = Field(min_length=1, max_length=HARD_MAX_BATCH)
    with_payload: bool = True
    with_vector: bool = False
    vector_encoding: VectorEncoding = _VECTOR_ENCODING


class Record(BaseModel):
    """A stored point (``vector`` a base64 string when asked for with ``vector_encoding``)."""

    id: PointId
    payload: Payload | None = None
    vector: list[float] | str | None = None


class CountRequest(_Model):
    """Body of ``POST /collections/{name}/points/count``."""

    filter: Filter | None = None


class CountResult(BaseModel):
    """Number of (matching) points."""

    count: int


class ScrollRequest(_Model):
    """Body of ``POST /collections/{name}/points/scroll``: pages in id order."""

    limit: int = Field(100, ge=1, le=HARD_MAX_K)
    offset: PointId | None = Field(None, description="first id of the page (next_page_offset)")
    filter: Filter | None = None
    with_payload: bool = True
    with_vector: bool = False
    vector_encoding: VectorEncoding = _VECTOR_ENCODING


class ScrollResult(BaseModel):
    """One page; ``next_page_offset`` is ``null`` on the last page."""

    points: list[Record]
    next_page_offset: PointId | None


# --- query --------------------------------------------------------------------------------


#: The options of :class:`quiver.SearchRequest` a query model passes through as they are (the
#: filter goes as a dict; all are plain values after validation).
_REQUEST_OPTIONS = tuple(name for name in SearchRequest.option_names() if name != "filter")


class _QueryOptions(_Model):
    """The options of :class:`quiver.SearchRequest`, with the server's bounds."""

    k: int = Field(10, ge=1, le=HARD_MAX_K, description="neighbours to return")
    ef: int | None = Field(None, ge=1, le=HARD_MAX_K, description="beam width (>= k)")
    rerank: int | None = Field(
        None, ge=1, le=HARD_MAX_K, description="candidates re-scored exactly (k..ef; default ef)"
    )
    filter: Filter | None = None
    score_threshold: FiniteFloat | None = Field(
        None, description="keep score >= t (cosine, ip) or <= t (l2: squared distance)"
    )
    target_recall: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="instead of ef: the smallest ef whose calibrated recall@k reaches this",
    )
    offset: int = Field(0, ge=0, le=HARD_MAX_K, description="skip the first n results")
    with_payload: bool | list[Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS)]] = (
        Field(False, description="true, false or the payload keys to return")
    )
    with_vector: bool = False
    vector_encoding: VectorEncoding = _VECTOR_ENCODING
    allow_partial: bool = Field(
        False,
        description="(cluster) when a whole shard is down, answer with the other shards' hits "
        "and their 'coverage' (shards answered / shards) instead of 503",
    )

    def search_request(self, *, vectors: Any = None, ids: Any = None) -> SearchRequest:
        """The validated :class:`quiver.SearchRequest` of these options and queries."""
        options = {name: getattr(self, name) for name in _REQUEST_OPTIONS}
        return SearchRequest(vectors=vectors, ids=ids, filter=filter_dict(self.filter), **options)


class QueryRequest(_QueryOptions):
    """Body of ``POST /collections/{name}/points/query``: exactly one of ``vector`` or
    ``query_id`` (the nearest other points of a stored point)."""

    vector: Vector | None = None
    query_id: PointId | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> QueryRequest:
        if (self.vector is None) == (self.query_id is None):
            raise ValueError("give exactly one of 'vector' or 'query_id'")
        return self


class QueryBatchRequest(_QueryOptions):
    """Body of ``POST /collections/{name}/points/query/batch``: the options apply to every
    vector. ``vectors``: a list of vectors, or one base64 block of them all."""

    vectors: Annotated[list[Vector], Field(min_length=1, max_length=HARD_MAX_BATCH)] | (
        Base64Vectors
    )


class ScoredRecord(BaseModel):
    """A search hit: ``score`` is the cosine similarity, the dot product (ip) or the squared
    L2 distance (l2)."""

    id: PointId
    score: float
    payload: Payload | None = None
    vector: list[float] | str | None = None


class QueryResult(BaseModel):
    """Hits of one query, best first."""

    points: list[ScoredRecord]
    coverage: float | None = Field(
        None,
        description="(only with allow_partial) shards that answered / shards; 1.0 when all did",
    )


# --- snapshots ----------------------------------------------------------------------------


class SnapshotDescription(BaseModel):
    """A snapshot file on the server."""

    name: str
    collection: str
    size: int
    creation_time: datetime


class RecoverSnapshot(_Model):
    """Body of ``PUT /collections/{name}/snapshots/recover``: restore a snapshot stored on the
    server as the collection ``{name}`` (which must not exist)."""

    snapshot: str = Field(pattern=SnapshotNamePattern, description="snapshot file name")
    from_collection: str | None = Field(
        None,
        pattern=CollectionNamePattern,
        description="collection the snapshot was taken of (default: {name})",
    )


# --- operations ---------------------------------------------------------------------------


class Health(BaseModel):
    """``/healthz`` and ``/readyz`` bodies."""

    status: Literal["ok", "ready", "starting", "failed"]
    collections: int | None = None
    message: str | None = None
    failed_collections: dict[str, str] | None = Field(
        None, description="collections that could not be opened (damaged): name -> why"
    )
