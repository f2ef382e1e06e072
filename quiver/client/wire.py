"""What the sync and async clients share: request bodies, encodings, error mapping, result
parsing and the verbs themselves, written once as generators that yield :class:`Call` s.

A verb here does no I/O: it yields each HTTP call it needs and receives the call's ``result``
back (``gen.send``); :class:`quiver.Client` drives it with blocking requests and
:class:`quiver.AsyncClient` with awaited ones, so both have the same verbs, checks and errors.
Vectors travel as base64 of little-endian float32 (the server's fastest JSON form); bodies are
encoded with orjson.
"""

from __future__ import annotations

import base64
import math
import random
import re
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np
import orjson

from quiver.db.request import SearchRequest
from quiver.errors import ERROR_CODES, InvalidInputError, PointNotFoundError, QuiverError
from quiver.types import Point, ScoredPoint
from quiver.validation import as_matrix, id_column

PointId = int | str

DEFAULT_URL = "http://127.0.0.1:8333"
DEFAULT_BATCH = 1_000  # points per upsert request: well under the server's default limits
DEFAULT_PARALLEL = 4  # upsert requests in flight at once
DEFAULT_RETRIES = 5  # attempts after the first, on transient errors
UPSERT_FORMATS = ("auto", "base64", "json", "arrow")
ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
#: HTTP statuses worth retrying: the server is starting, overloaded or behind a proxy hiccup.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


class RemoteError(QuiverError):
    """An HTTP error from the server that no domain error class describes."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"HTTP {status} {error}: {message}")
        self.status = status
        self.error = error


class UnauthorizedError(RemoteError, PermissionError):
    """The server wants an API key (``api_key=``) and got none or a wrong one."""


class NotReadyError(RemoteError):
    """The server is still starting (opening collections, compiling kernels)."""


class PayloadTooLargeError(RemoteError, InvalidInputError):
    """The request exceeded a size limit of the server (body bytes or batch size)."""


class ConnectionFailedError(QuiverError, ConnectionError):
    """A request got no HTTP answer: the connection was refused or dropped, or the answer was
    malformed. Transient: ``upsert`` sends the batch again."""


class RequestTimeoutError(ConnectionFailedError, TimeoutError):
    """A request got no answer within the client's ``timeout``."""


_ERROR_CLASSES: dict[str, type[Exception]] = {
    **{code: cls for cls, code in ERROR_CODES},
    "validation_error": InvalidInputError,  # the server's schema errors (422)
    "limit_exceeded": InvalidInputError,
}


class Response(Protocol):
    """What the clients read from an answer (an ``httpx.Response`` is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...


def raise_for(response: Response) -> None:
    """Raise the exception matching an error response."""
    try:
        body = orjson.loads(response.content)
        error, message = str(body["error"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        error, message = "http_error", response.text[:500]
    status = response.status_code
    if status == 401:
        raise UnauthorizedError(status, error, message)
    if status == 413:
        raise PayloadTooLargeError(status, error, message)
    if status == 503 and error == "not_ready":
        raise NotReadyError(status, error, message)
    cls = _ERROR_CLASSES.get(error)
    if cls is not None:
        raise cls(message)
    raise RemoteError(status, error, message)


def result_of(response: Response) -> Any:
    """The ``result`` of a response, or the matching exception."""
    if response.status_code >= 400:
        raise_for(response)
    return orjson.loads(response.content)["result"]


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed when sent again (upserts are idempotent)."""
    if isinstance(exc, ConnectionFailedError | httpx.TransportError):
        return True
    return isinstance(exc, RemoteError) and exc.status in TRANSIENT_STATUSES


def backoff_seconds(attempt: int, base: float = 0.1, cap: float = 5.0) -> float:
    """Exponential backoff with full jitter before retry number ``attempt`` (0-based)."""
    return random.uniform(0, min(cap, base * 2**attempt))


@dataclass
class Call:
    """One HTTP call a verb needs: method, path (under the base URL), and ``content`` /
    ``headers`` when it has a body."""

    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def json_call(method: str, path: str, body: Any = None) -> Call:
    """A call with an orjson-encoded JSON body (numpy arrays written as numbers)."""
    if body is None:
        return Call(method, path)
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Call(method, path, {"content": content, "headers": {"content-type": "application/json"}})


def b64(vectors: np.ndarray) -> str:
    """Vectors as base64 of little-endian float32, back to back."""
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode()


def matrix(vectors: Any) -> np.ndarray:
    """1-D or 2-D vectors (numpy, lists, or pyarrow / pandas / polars columns) -> ``(n, d)``
    float32, checked as the embedded API checks them (the server checks the dimension)."""
    return as_matrix(vectors, None)


def point_id(value: Any) -> PointId:
    """numpy integers -> int (JSON), strings as they are."""
    return value if isinstance(value, str) else int(value)


def id_list(ids: Any) -> list[PointId]:
    """Ids as JSON values, from a sequence or a column (pyarrow, pandas, polars)."""
    column = id_column(ids)
    return [point_id(i) for i in (ids if column is None else column.to_pylist())]


# -- upserts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpsertPlan:
    """A checked upsert split into batches."""

    ids: list[PointId]
    vectors: np.ndarray
    payloads: Sequence[dict[str, Any] | None] | None
    batch_size: int
    format: str
    unique: bool

    def batches(self) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` of each batch."""
        n = len(self.ids)
        for start in range(0, n, self.batch_size):
            yield start, min(start + self.batch_size, n)

    def call(self, path: str, start: int, stop: int) -> Call:
        """The request of one batch in the plan's format."""
        ids, x = self.ids[start:stop], self.vectors[start:stop]
        payloads = None if self.payloads is None else list(self.payloads[start:stop])
        if self.format == "arrow":
            return Call(
                "PUT",
                path + "/points/arrow",
                {"content": arrow_stream(ids, x, payloads), "headers": _ARROW_HEADERS},
            )
        if self.format == "json":
            points = [
                {"id": i, "vector": v} | ({} if p is None else {"payload": p})
                for i, v, p in zip(ids, x, payloads or [None] * len(ids), strict=True)
            ]
            return json_call("PUT", path + "/points", {"points": points})
        body: dict[str, Any] = {"ids": ids, "vectors": b64(x)}
        if payloads is not None:
            body["payloads"] = payloads
        return json_call("PUT", path + "/points", body)


_ARROW_HEADERS = {"content-type": ARROW_MEDIA_TYPE}


def plan_upsert(
    ids: Sequence[PointId],
    vectors: Any,
    payloads: Sequence[dict[str, Any] | None] | None,
    batch_size: int,
    format: str,  # noqa: A002 - the option's word
) -> UpsertPlan:
    """Check an upsert's arguments (nothing is sent if they are wrong) and plan its batches."""
    x = matrix(vectors)
    ids = id_list(ids)
    if len(x) != len(ids):
        raise InvalidInputError(f"expected {len(x)} ids (one per vector), got {len(ids)}")
    if payloads is not None and len(payloads) != len(ids):
        raise InvalidInputError(f"expected {len(ids)} payloads, got {len(payloads)}")
    if format not in UPSERT_FORMATS:
        raise InvalidInputError(f"format must be one of {UPSERT_FORMATS}, got {format!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    clean = [point_id(i) for i in ids]
    if format == "auto":
        format = "arrow" if arrow_is_exact(clean, payloads) else "base64"  # noqa: A001
    return UpsertPlan(clean, x, payloads, batch_size, format, len(set(clean)) == len(clean))


_ARROW_SCALARS = (str, int, float, bool)
_INT64 = (-(2**63), 2**63 - 1)


def arrow_is_exact(ids: list[PointId], payloads: Sequence[Any] | None) -> bool:
    """Whether these points come back unchanged through the Arrow stream (the fastest upsert
    format): ids all integers or all strings, and payloads absent or flat dicts whose values are
    strings, 64-bit integers, finite floats or booleans, each key of one type across all points
    (Arrow makes a column of one type: ``1`` next to ``2.5`` would come back as ``1.0``), with
    no ``None`` value or payload (a null leaves the key out) and no key named ``id`` or
    ``vector``. Otherwise ``"auto"`` sends base64, which keeps any JSON payload exactly."""
    if not (all(type(i) is int for i in ids) or all(type(i) is str for i in ids)):
        return False
    if payloads is None:
        return True
    types: dict[str, type] = {}
    for p in payloads:
        if type(p) is not dict:
            return False
        for key, value in p.items():
            kind = type(value)
            if kind not in _ARROW_SCALARS or types.setdefault(key, kind) is not kind:
                return False
            if kind is int and not _INT64[0] <= value <= _INT64[1]:
                return False
            if kind is float and not math.isfinite(value):
                return False
    return bool(types) and not {"id", "vector"} & types.keys()


def arrow_stream(ids: list[PointId], x: np.ndarray, payloads: list[Any] | None) -> bytes:
    """An Arrow IPC stream of points: ``id``, ``vector`` (FixedSizeList<float32>) and one
    column per payload key (a point without the key gets a null)."""
    import pyarrow as pa

    values = pa.array(np.ascontiguousarray(x, dtype=np.float32).reshape(-1))
    columns: dict[str, Any] = {
        "id": pa.array(ids),
        "vector": pa.FixedSizeListArray.from_arrays(values, x.shape[1]),
    }
    if payloads is not None:
        keys = list(dict.fromkeys(k for p in payloads if p for k in p))
        reserved = {"id", "vector"} & set(keys)
        if reserved:
            raise InvalidInputError(
                f"payload keys {sorted(reserved)} clash with the Arrow format's columns: "
                "use format='base64'"
            )
        for key in keys:
            column = [None if p is None else p.get(key) for p in payloads]
            try:
                columns[key] = pa.array(column)
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"payload key {key!r} has no single Arrow type ({exc}): use format='base64'"
                ) from None
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# -- results -------------------------------------------------------------------------------


def vector_in(value: Any) -> list[float] | None:
    """A returned vector (numbers, or base64 float32) as a list of floats."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").tolist()
    return value


def point(r: dict[str, Any]) -> Point:
    return Point(id=r["id"], payload=r.get("payload"), vector=vector_in(r.get("vector")))


def scored(result: dict[str, Any]) -> list[ScoredPoint]:
    return [
        ScoredPoint(
            id=h["id"],
            score=h["score"],
            payload=h.get("payload"),
            vector=vector_in(h.get("vector")),
        )
        for h in result["points"]
    ]


#: A snapshot name as the server makes them: a plain file name, no dot first, no separators.
_SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,190}\.snapshot")


def snapshot_file_name(name: Any) -> str:
    """``name`` (chosen by the server) if it is a plain snapshot file name, else raise
    :class:`InvalidInputError`: a server, or anyone between, must not pick where the client
    writes (``../``, absolute paths, separators, hidden or empty names)."""
    if not isinstance(name, str) or not _SNAPSHOT_NAME.fullmatch(name):
        raise InvalidInputError(
            "the server returned the snapshot name "
            f"{name if not isinstance(name, str) else name[:100]!r}, which is not a plain file "
            "name (letters, digits, '_', '-', '.', ending in '.snapshot'): not downloaded"
        )
    return name


# -- the verbs -----------------------------------------------------------------------------

Verb = Generator[Call, Any, Any]


class CollectionVerbs:
    """A remote collection's fields and the verbs both clients share (as generators)."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.name: str = info["name"]
        self.dim: int = info["dim"]
        self.metric: str = info["metric"]
        self.id_type: str = info["id_type"]
        self._path = f"/collections/{self.name}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim}, metric={self.metric!r})"

    def _info(self) -> Verb:
        """Count, dim, metric, parameters, hot/cold bytes, status..."""
        return (yield Call("GET", self._path))

    def _delete(self, ids: Sequence[PointId]) -> Verb:
        """Delete points by id; returns how many existed."""
        body = {"points": id_list(ids)}
        return (yield json_call("POST", self._path + "/points/delete", body))["deleted"]

    def _delete_by_filter(self, filter: dict[str, Any]) -> Verb:  # noqa: A002
        """Delete the points matching ``filter``; returns how many."""
        body = {"filter": filter}
        return (yield json_call("POST", self._path + "/points/delete", body))["deleted"]

    def _get(self, id: PointId, *, with_payload: bool = True, with_vector: bool = False) -> Verb:  # noqa: A002
        """One point (``PointNotFoundError`` if missing)."""
        # POST /points rather than GET /points/{id}: string ids may hold any character.
        found = yield from self._retrieve([id], with_payload=with_payload, with_vector=with_vector)
        if not found:
            raise PointNotFoundError(f"no point with id {id!r} in collection {self.name!r}")
        return found[0]

    def _retrieve(
        self, ids: Sequence[PointId], *, with_payload: bool = True, with_vector: bool = False
    ) -> Verb:
        """The existing points among ``ids``, in request order."""
        body = {
            "ids": id_list(ids),
            "with_payload": with_payload,
            "with_vector": with_vector,
            "vector_encoding": "base64",
        }
        return [point(r) for r in (yield json_call("POST", self._path + "/points", body))]

    def _count(self, filter: dict[str, Any] | None = None) -> Verb:  # noqa: A002
        """Number of points (matching ``filter``)."""
        body = {"filter": filter}
        return (yield json_call("POST", self._path + "/points/count", body))["count"]

    def _scroll(
        self,
        *,
        limit: int = 100,
        offset: PointId | None = None,
        filter: dict[str, Any] | None = None,  # noqa: A002
        with_payload: bool = True,
        with_vector: bool = False,
    ) -> Verb:
        """A page of points in id order and the offset of the next page (``None`` at the end)."""
        body = {
            "limit": limit,
            "offset": None if offset is None else point_id(offset),
            "filter": filter,
            "with_payload": with_payload,
            "with_vector": with_vector,
            "vector_encoding": "base64",
        }
        result = yield json_call("POST", self._path + "/points/scroll", body)
        return [point(r) for r in result["points"]], result["next_page_offset"]

    def _search(
        self, vector: Any = None, *, query_id: PointId | None = None, **options: Any
    ) -> Verb:
        """The ``k`` nearest points to ``vector`` or to the stored point ``query_id``;
        ``options`` are the fields of :class:`quiver.SearchRequest` (validated here, before
        anything is sent)."""
        if (vector is None) == (query_id is None):
            raise InvalidInputError("give exactly one of vector and query_id")
        if query_id is not None:
            return (yield from self._query(SearchRequest(ids=[query_id], **options)))[0]
        request = SearchRequest(vectors=vector, **options)
        if request.n_queries != 1:
            raise InvalidInputError(f"vector must be one vector, got {request.n_queries} rows")
        return (yield from self._query(request))[0]

    def _search_batch(self, vectors: Any, **options: Any) -> Verb:
        """One hit list per query vector (searched in parallel on the server)."""
        return (yield from self._query(SearchRequest(vectors=vectors, **options)))

    def _query(self, request: SearchRequest) -> Verb:
        """Run a :class:`quiver.SearchRequest` on the server: one hit list per query."""
        body = request.options()
        if request.with_vector:
            body["vector_encoding"] = "base64"
        path = self._path + "/points/query"
        if request.ids is not None:  # one request per stored query point
            out = []
            for i in request.ids:
                out.append(
                    scored((yield json_call("POST", path, {**body, "query_id": point_id(i)})))
                )
            return out
        if request.n_queries == 1:
            body["vector"] = b64(request.vectors[0])
            return [scored((yield json_call("POST", path, body)))]
        body["vectors"] = b64(request.vectors)
        return [scored(r) for r in (yield json_call("POST", path + "/batch", body))]


def create_collection_body(
    dim: int, metric: str, id_type: str, max_degree: int, build_list_size: int, alpha: float
) -> dict[str, Any]:
    """Body of ``PUT /collections/{name}``."""
    return {
        "dim": dim,
        "metric": metric,
        "id_type": id_type,
        "max_degree": max_degree,
        "build_list_size": build_list_size,
        "alpha": alpha,
    }
