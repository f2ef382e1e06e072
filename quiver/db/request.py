"""One search request, validated once, that every interface builds.

The embedded :class:`~quiver.db.collection.Collection`, the Python client, the HTTP server's
models and the CLI all turn their arguments into a :class:`SearchRequest`; the collection's
executor (:mod:`quiver.db.query`) runs it. A new search option is one field here, its use in
the executor, and tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from quiver.db.filters import Filter, parse_filter
from quiver.errors import InvalidInputError
from quiver.params import SearchParams
from quiver.validation import as_matrix, positive_int

#: Most stored ids one request may use as queries, and most payload keys it may select.
MAX_QUERY_IDS = 10_000
MAX_PAYLOAD_KEYS = 256


def payload_selection(value: Any) -> bool | tuple[str, ...]:
    """``with_payload`` as True / False or a tuple of distinct non-empty keys."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidInputError(
            f"with_payload must be true, false or a list of payload keys, got {value!r}"
        )
    if len(value) > MAX_PAYLOAD_KEYS:
        raise InvalidInputError(
            f"with_payload selects at most {MAX_PAYLOAD_KEYS} keys, got {len(value)}"
        )
    for key in value:
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"with_payload keys must be non-empty strings, got {key!r}")
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True)
class SearchRequest:
    """The k nearest points to query vectors or to stored points, with options.

    Queries: ``vectors`` (one vector or a (q, D) batch; finite numbers) or ``ids`` (stored
    point ids used as queries; each is left out of its own results), exactly one of them.
    ``k``, ``ef``, ``rerank``, ``target_recall``: see :class:`quiver.params.SearchParams`
    (``ef`` defaults to ``max(64, k)``). ``filter``: a payload filter (:mod:`quiver.db.filters`).
    ``score_threshold``: drop hits worse than it (``score >= t`` for cosine and ip, ``<= t``
    for l2). ``offset``: skip the first ``offset`` results (pagination, as Qdrant's query).
    ``with_payload``: True, False or a list of payload keys (only those fields are returned).
    ``with_vector``: return the stored vectors.
    """

    vectors: Any = None
    ids: Any = None
    k: int = 10
    ef: int | None = None
    rerank: int | None = None
    target_recall: float | None = None
    filter: Any = None
    score_threshold: float | None = None
    offset: int = 0
    with_payload: Any = False
    with_vector: bool = False
    params: SearchParams = field(init=False, repr=False, compare=False)
    parsed_filter: Filter | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: fields are normalised once, here
        if (self.vectors is None) == (self.ids is None):
            raise InvalidInputError("give exactly one of vectors and ids as the query")
        if self.vectors is not None:
            set_(self, "vectors", as_matrix(self.vectors, None, "vectors"))
        else:
            ids = self.ids
            if isinstance(ids, str | bytes | int) or not isinstance(ids, Sequence | np.ndarray):
                ids = [ids]
            if not 0 < len(ids) <= MAX_QUERY_IDS:
                raise InvalidInputError(
                    f"ids must hold 1 to {MAX_QUERY_IDS} query ids, got {len(ids)}"
                )
            set_(self, "ids", tuple(ids))
        set_(self, "params", SearchParams(self.k, self.ef, self.rerank, self.target_recall))
        set_(self, "parsed_filter", None if self.filter is None else parse_filter(self.filter))
        t = self.score_threshold
        if t is not None and (
            isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)
        ):
            raise InvalidInputError(f"score_threshold must be a finite number, got {t!r}")
        if self.offset != 0 or type(self.offset) is not int:  # the default needs no check
            set_(self, "offset", positive_int(self.offset, "offset", minimum=0))
        if self.with_payload is not False and self.with_payload is not True:
            set_(self, "with_payload", payload_selection(self.with_payload))
        if self.with_vector is not False and self.with_vector is not True:
            raise InvalidInputError(f"with_vector must be true or false, got {self.with_vector!r}")

    @property
    def n_queries(self) -> int:
        return self.vectors.shape[0] if self.vectors is not None else len(self.ids)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The options besides the query (what an interface passes through)."""
        return _OPTION_NAMES

    def options(self) -> dict[str, Any]:
        """The options that differ from their defaults, JSON-ready (for the HTTP client)."""
        out = {}
        for name, default in _OPTION_DEFAULTS:
            value = getattr(self, name)
            if value != default:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


#: (name, default) of each option, in field order: looked up once, not per request (the
#: server builds and groups requests on its event loop).
_OPTION_DEFAULTS: tuple[tuple[str, Any], ...] = tuple(
    (f.name, f.default)
    for f in fields(SearchRequest)
    if f.init and f.name not in ("vectors", "ids")
)
_OPTION_NAMES = tuple(name for name, _ in _OPTION_DEFAULTS)
