"""Python client of the quiver HTTP server, with the embedded API's verbs.

Switching between embedded and remote is one line::

    db = quiver.Database("my-db")                  # embedded
    db = quiver.Client("http://127.0.0.1:8333")    # remote: same calls from here on
    coll = db.get_collection("docs")
    coll.upsert([1, 2], vectors, payloads=[{"lang": "en"}, {"lang": "de"}])
    english = {"must": [{"key": "lang", "match": {"value": "en"}}]}
    hits = coll.search(vectors[0], k=5, filter=english)

Results are the same :class:`~quiver.types.Point` / :class:`~quiver.types.ScoredPoint` objects,
and server errors come back as the same exception classes (``CollectionNotFoundError``,
``InvalidInputError``...). Needs ``httpx`` (``pip install "quiver-ann[client]"``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from quiver.db.request import SearchRequest
from quiver.errors import ERROR_CODES, InvalidInputError, PointNotFoundError, QuiverError
from quiver.types import Point, ScoredPoint
from quiver.validation import as_matrix, id_column

PointId = int | str

DEFAULT_URL = "http://127.0.0.1:8333"
DEFAULT_BATCH = 1_000  # points per upsert request: well under the server's default limits


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


_ERROR_CLASSES: dict[str, type[Exception]] = {
    **{code: cls for cls, code in ERROR_CODES},
    "validation_error": InvalidInputError,  # the server's schema errors (422)
    "limit_exceeded": InvalidInputError,
}


def _raise_for(response: httpx.Response) -> None:
    """Raise the exception matching an error response."""
    try:
        body = response.json()
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


def _id(value: Any) -> PointId:
    """numpy integers -> int (JSON), strings as they are."""
    return value if isinstance(value, str) else int(value)


def _id_list(ids: Any) -> list[PointId]:
    """Ids as JSON values, from a sequence or a column (pyarrow, pandas, polars)."""
    column = id_column(ids)
    return [_id(i) for i in (ids if column is None else column.to_pylist())]


class Client:
    """A connection to a quiver server, with the :class:`quiver.Database` verbs.

    Parameters
    ----------
    url : the server's base URL.
    api_key : sent as the ``api-key`` header when the server requires one.
    timeout : seconds per request (uploads and snapshots included).
    http : an ``httpx.Client`` to send the requests with instead of a new one (tests pass
        FastAPI's ``TestClient``); ``url`` and ``timeout`` are then ignored.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        headers = {"api-key": api_key} if api_key else {}
        if http is not None:
            http.headers.update(headers)
            self._http = http
        else:
            self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.url = str(self._http.base_url).rstrip("/")

    # -- plumbing --------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; return the response's ``result`` or raise the matching error."""
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            _raise_for(response)
        return response.json()["result"]

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"quiver.Client({self.url!r})"

    # -- operations ------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (collections open, kernels compiled)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.1) -> None:
        """Block until the server is ready; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url} not ready after {timeout:.0f} s")
            time.sleep(interval)

    # -- collections -----------------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        dim: int,
        metric: str = "cosine",
        *,
        id_type: str = "uint64",
        max_degree: int = 64,
        build_list_size: int = 128,
        alpha: float = 1.0,
    ) -> RemoteCollection:
        """Create a collection (``CollectionExistsError`` if the name is taken)."""
        body = {
            "dim": dim,
            "metric": metric,
            "id_type": id_type,
            "max_degree": max_degree,
            "build_list_size": build_list_size,
            "alpha": alpha,
        }
        info = self.request("PUT", f"/collections/{name}", json=body)
        return RemoteCollection(self, info)

    def get_collection(self, name: str) -> RemoteCollection:
        """An existing collection (``CollectionNotFoundError`` otherwise)."""
        return RemoteCollection(self, self.request("GET", f"/collections/{name}"))

    def list_collections(self) -> list[str]:
        """Names of all collections."""
        result = self.request("GET", "/collections")
        return [c["name"] for c in result["collections"]]

    def drop_collection(self, name: str) -> None:
        """Delete a collection (``CollectionNotFoundError`` if it doesn't exist)."""
        self.request("DELETE", f"/collections/{name}")

    def restore_snapshot(self, file: str | Path, name: str) -> RemoteCollection:
        """Upload a local snapshot file and restore it as the new collection ``name``."""
        with open(file, "rb") as f:
            info = self.request(
                "POST",
                f"/collections/{name}/snapshots/upload",
                content=_chunks(f),
                headers={"content-type": "application/octet-stream"},
            )
        return RemoteCollection(self, info)


def _chunks(f: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


class RemoteCollection:
    """A collection on a server, with the :class:`quiver.Collection` verbs."""

    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        self._client = client
        self.name: str = info["name"]
        self.dim: int = info["dim"]
        self.metric: str = info["metric"]
        self.id_type: str = info["id_type"]
        self._path = f"/collections/{self.name}"

    def __repr__(self) -> str:
        return f"RemoteCollection({self.name!r}, dim={self.dim}, metric={self.metric!r})"

    def _call(self, method: str, path: str = "", **kwargs: Any) -> Any:
        return self._client.request(method, self._path + path, **kwargs)

    def info(self) -> dict[str, Any]:
        """Count, dim, metric, parameters, hot/cold bytes, status..."""
        result: dict[str, Any] = self._call("GET")
        return result

    def upsert(
        self,
        ids: Sequence[PointId],
        vectors: Any,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
    ) -> int:
        """Insert or replace points; returns how many. Sent in requests of ``batch_size``
        points, each durable when acknowledged (a failure leaves earlier batches written)."""
        ids = _id_list(ids)
        rows = as_matrix(vectors, None).tolist()
        if len(rows) != len(ids):
            raise InvalidInputError(f"expected {len(rows)} ids (one per vector), got {len(ids)}")
        if payloads is not None and len(payloads) != len(ids):
            raise InvalidInputError(f"expected {len(ids)} payloads, got {len(payloads)}")
        done = 0
        for start in range(0, len(rows), batch_size):
            stop = start + batch_size
            points = [
                {"id": i, "vector": v} | ({} if p is None else {"payload": p})
                for i, v, p in zip(
                    ids[start:stop],
                    rows[start:stop],
                    payloads[start:stop] if payloads is not None else [None] * (stop - start),
                    strict=False,
                )
            ]
            done += self._call("PUT", "/points", json={"points": points})["upserted"]
        return done

    def delete(self, ids: Sequence[PointId]) -> int:
        """Delete points by id; returns how many existed."""
        body = {"points": _id_list(ids)}
        result: int = self._call("POST", "/points/delete", json=body)["deleted"]
        return result

    def delete_by_filter(self, filter: dict[str, Any]) -> int:
        """Delete the points matching ``filter``; returns how many."""
        result: int = self._call("POST", "/points/delete", json={"filter": filter})["deleted"]
        return result

    def get(self, id: PointId, *, with_payload: bool = True, with_vector: bool = False) -> Point:
        """One point (``PointNotFoundError`` if missing)."""
        # POST /points rather than GET /points/{id}: string ids may hold any character.
        found = self.retrieve([id], with_payload=with_payload, with_vector=with_vector)
        if not found:
            raise PointNotFoundError(f"no point with id {id!r} in collection {self.name!r}")
        return found[0]

    def retrieve(
        self, ids: Sequence[PointId], *, with_payload: bool = True, with_vector: bool = False
    ) -> list[Point]:
        """The existing points among ``ids``, in request order."""
        body = {
            "ids": _id_list(ids),
            "with_payload": with_payload,
            "with_vector": with_vector,
        }
        return [_point(r) for r in self._call("POST", "/points", json=body)]

    def count(self, filter: dict[str, Any] | None = None) -> int:
        """Number of points (matching ``filter``)."""
        result: int = self._call("POST", "/points/count", json={"filter": filter})["count"]
        return result

    def scroll(
        self,
        *,
        limit: int = 100,
        offset: PointId | None = None,
        filter: dict[str, Any] | None = None,
        with_payload: bool = True,
        with_vector: bool = False,
    ) -> tuple[list[Point], PointId | None]:
        """A page of points in id order and the offset of the next page (``None`` at the end)."""
        body = {
            "limit": limit,
            "offset": None if offset is None else _id(offset),
            "filter": filter,
            "with_payload": with_payload,
            "with_vector": with_vector,
        }
        result = self._call("POST", "/points/scroll", json=body)
        return [_point(r) for r in result["points"]], result["next_page_offset"]

    def search(
        self, vector: Any = None, *, query_id: PointId | None = None, **options: Any
    ) -> list[ScoredPoint]:
        """The ``k`` nearest points to ``vector`` or to the stored point ``query_id``;
        ``options`` are the fields of :class:`quiver.SearchRequest` (validated here, before
        anything is sent)."""
        if (vector is None) == (query_id is None):
            raise InvalidInputError("give exactly one of vector and query_id")
        if query_id is not None:
            return self.query(SearchRequest(ids=[query_id], **options))[0]
        request = SearchRequest(vectors=vector, **options)
        if request.n_queries != 1:
            raise InvalidInputError(f"vector must be one vector, got {request.n_queries} rows")
        return self.query(request)[0]

    def search_batch(self, vectors: Any, **options: Any) -> list[list[ScoredPoint]]:
        """One hit list per query vector (searched in parallel on the server)."""
        return self.query(SearchRequest(vectors=vectors, **options))

    def query(self, request: SearchRequest) -> list[list[ScoredPoint]]:
        """Run a :class:`quiver.SearchRequest` on the server: one hit list per query."""
        body = request.options()
        if request.ids is not None:  # one request per stored query point
            return [
                _scored(self._call("POST", "/points/query", json={**body, "query_id": _id(i)}))
                for i in request.ids
            ]
        if request.n_queries == 1:
            body["vector"] = request.vectors[0].tolist()
            return [_scored(self._call("POST", "/points/query", json=body))]
        body["vectors"] = request.vectors.tolist()
        return [_scored(r) for r in self._call("POST", "/points/query/batch", json=body)]

    def snapshot(self, path: str | Path) -> Path:
        """Create a snapshot on the server and download it to ``path`` (a file, or a directory
        to put it in); returns the local file."""
        meta = self._call("POST", "/snapshots")
        name = snapshot_file_name(meta.get("name"))
        target = Path(path)
        if target.is_dir():
            target = target / name
        with self._client._http.stream("GET", f"{self._path}/snapshots/{name}") as r:
            if r.status_code >= 400:
                r.read()
                _raise_for(r)
            with open(target, "wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    f.write(chunk)
        return target


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


def _point(r: dict[str, Any]) -> Point:
    return Point(id=r["id"], payload=r.get("payload"), vector=r.get("vector"))


def _scored(result: dict[str, Any]) -> list[ScoredPoint]:
    return [
        ScoredPoint(id=h["id"], score=h["score"], payload=h.get("payload"), vector=h.get("vector"))
        for h in result["points"]
    ]
