"""Request bodies of the Qdrant-compatible API, in Qdrant's field names.

Every field Qdrant defines for a request is declared here, so that an unknown field is a
clear error rather than silently ignored. Fields whose value has many shapes (filters,
queries, vectors, ``with_payload``) are kept as plain JSON and checked in
:mod:`quiver.server.qdrant.translate`, which names any feature quiver lacks.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from ..schemas import HARD_MAX_BATCH

#: A Qdrant point id as sent: an unsigned integer or a UUID string (checked in translate).
ExtendedPointId = StrictInt | StrictStr


class _Body(BaseModel):
    """Base of request bodies: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


class SearchParams(_Body):
    """``params`` of a query: ``hnsw_ef`` is quiver's ef; the rest change nothing here."""

    hnsw_ef: int | None = Field(None, ge=1)
    exact: bool | None = None
    quantization: dict[str, Any] | None = None
    indexed_only: bool | None = None
    acorn: dict[str, Any] | None = None
    idf: Any = None


class CreateCollection(_Body):
    """Body of ``PUT /collections/{name}``."""

    vectors: Any = None
    shard_number: int | None = None
    sharding_method: str | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_payload: bool | None = None
    payload: Any = None
    id_tracker: Any = None
    hnsw_config: dict[str, Any] | None = None
    wal_config: dict[str, Any] | None = None
    optimizers_config: dict[str, Any] | None = None
    quantization_config: Any = None
    sparse_vectors: dict[str, Any] | None = None
    strict_mode_config: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    init_from: Any = None


class UpdateCollection(_Body):
    """Body of ``PATCH /collections/{name}``."""

    vectors: Any = None
    optimizers_config: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    hnsw_config: dict[str, Any] | None = None
    quantization_config: Any = None
    sparse_vectors: Any = None
    strict_mode_config: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class PointStruct(_Body):
    id: ExtendedPointId
    vector: Any
    payload: dict[str, Any] | None = None


class Batch(_Body):
    """The columnar form of an upsert."""

    ids: list[ExtendedPointId] = Field(max_length=HARD_MAX_BATCH)
    vectors: Any
    payloads: list[dict[str, Any] | None] | None = None


class UpsertPoints(_Body):
    """Body of ``PUT /collections/{name}/points``: ``points`` (a list) or ``batch``."""

    points: list[PointStruct] | None = Field(None, max_length=HARD_MAX_BATCH)
    batch: Batch | None = None
    shard_key: Any = None
    update_filter: dict[str, Any] | None = None
    update_mode: str | None = None


class DeletePoints(_Body):
    """Body of ``POST .../points/delete``: ``points`` (ids) or ``filter``."""

    points: list[ExtendedPointId] | None = Field(None, max_length=HARD_MAX_BATCH)
    filter: dict[str, Any] | None = None
    shard_key: Any = None


class SetPayload(_Body):
    """Body of ``POST`` (merge) / ``PUT`` (overwrite) ``.../points/payload``."""

    payload: dict[str, Any]
    points: list[ExtendedPointId] | None = Field(None, max_length=HARD_MAX_BATCH)
    filter: dict[str, Any] | None = None
    key: str | None = None  # a nested key to set under: not supported (400)
    shard_key: Any = None


class DeletePayload(_Body):
    """Body of ``POST .../points/payload/delete``."""

    keys: list[str] = Field(min_length=1, max_length=1024)
    points: list[ExtendedPointId] | None = Field(None, max_length=HARD_MAX_BATCH)
    filter: dict[str, Any] | None = None
    shard_key: Any = None


class RetrievePoints(_Body):
    """Body of ``POST .../points``."""

    ids: list[ExtendedPointId] = Field(max_length=HARD_MAX_BATCH)
    with_payload: Any = None
    with_vector: Any = None
    shard_key: Any = None


class ScrollPoints(_Body):
    offset: ExtendedPointId | None = None
    limit: int | None = Field(None, ge=1)
    filter: dict[str, Any] | None = None
    with_payload: Any = None
    with_vector: Any = None
    order_by: Any = None
    shard_key: Any = None


class CountPoints(_Body):
    filter: dict[str, Any] | None = None
    exact: bool | None = None  # quiver's counts are always exact
    shard_key: Any = None


class QueryPoints(_Body):
    """Body of ``POST .../points/query`` (the universal query API)."""

    query: Any = None
    prefetch: Any = None
    using: str | None = None
    filter: dict[str, Any] | None = None
    params: SearchParams | None = None
    score_threshold: float | None = None
    limit: int | None = Field(None, ge=1)
    offset: int | None = Field(None, ge=0)
    with_vector: Any = None
    with_payload: Any = None
    lookup_from: Any = None
    shard_key: Any = None


class QueryBatch(_Body):
    searches: list[QueryPoints] = Field(max_length=HARD_MAX_BATCH)


class SearchPoints(_Body):
    """Body of the older ``POST .../points/search``."""

    vector: Any
    filter: dict[str, Any] | None = None
    params: SearchParams | None = None
    limit: int = Field(ge=1)
    offset: int | None = Field(None, ge=0)
    with_payload: Any = None
    with_vector: Any = None
    score_threshold: float | None = None
    shard_key: Any = None


class SearchBatch(_Body):
    searches: list[SearchPoints] = Field(max_length=HARD_MAX_BATCH)


class CreateFieldIndex(_Body):
    """Body of ``PUT /collections/{name}/index``."""

    field_name: str = Field(min_length=1, max_length=256)
    field_schema: Any = None
