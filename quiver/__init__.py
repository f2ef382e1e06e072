"""quiver: vector search whose hot path runs on training-free 2-bit codes."""

from quiver.errors import (
    CorruptIndexError,
    DuplicateIdError,
    FormatVersionError,
    InvalidInputError,
    QuiverError,
)
from quiver.flat import FlatIndex, exact_search
from quiver.index import Index, warmup
from quiver.recall import recall_at_k
from quiver.types import SearchResult

__all__ = [
    "CorruptIndexError",
    "DuplicateIdError",
    "FlatIndex",
    "FormatVersionError",
    "Index",
    "InvalidInputError",
    "QuiverError",
    "SearchResult",
    "exact_search",
    "recall_at_k",
    "warmup",
]
__version__ = "0.1.0"
