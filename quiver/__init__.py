"""quiver: vector search whose hot path runs on training-free 2-bit codes."""

from typing import Any

from quiver.db.collection import Collection
from quiver.db.database import Database
from quiver.db.request import SearchRequest
from quiver.engine.flat import FlatIndex, exact_search
from quiver.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    CorruptIndexError,
    DatabaseLockedError,
    DuplicateIdError,
    FormatVersionError,
    InvalidFilterError,
    InvalidInputError,
    PointNotFoundError,
    QuiverError,
    ReplicaUnavailableError,
    ShardUnavailableError,
    StaleEpochError,
)
from quiver.index import Index, warmup
from quiver.params import BuildParams, SearchParams
from quiver.quality.calibration import Calibration
from quiver.quality.diagnose import Diagnosis, diagnose
from quiver.recall import recall_at_k
from quiver.types import CompactHits, Point, ScoredPoint, SearchResult

__all__ = [
    "CompactHits",
    "BuildParams",
    "Calibration",
    "AsyncClient",
    "Client",
    "Cluster",
    "Collection",
    "CollectionExistsError",
    "CollectionNotFoundError",
    "CorruptIndexError",
    "Database",
    "DatabaseLockedError",
    "Diagnosis",
    "DuplicateIdError",
    "FlatIndex",
    "FormatVersionError",
    "Index",
    "InvalidFilterError",
    "InvalidInputError",
    "Point",
    "PointNotFoundError",
    "QuiverError",
    "ReplicaUnavailableError",
    "ScoredPoint",
    "SearchParams",
    "SearchRequest",
    "SearchResult",
    "ShardUnavailableError",
    "StaleEpochError",
    "diagnose",
    "exact_search",
    "recall_at_k",
    "warmup",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``quiver.Client`` and ``quiver.AsyncClient`` (httpx) and ``quiver.Cluster`` (Ray) are
    imported on first use, so that ``import quiver`` needs neither."""
    if name in ("Client", "AsyncClient"):
        from quiver import client

        return getattr(client, name)
    if name == "Cluster":
        from quiver import cluster

        return cluster.Cluster
    raise AttributeError(f"module 'quiver' has no attribute {name!r}")
