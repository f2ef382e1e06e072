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
``InvalidInputError``...); a request that gets no answer raises
:class:`~quiver.client.ConnectionFailedError` (:class:`~quiver.client.RequestTimeoutError` on a
timeout). Requests go over a pool of keep-alive ``http.client`` connections
(``quiver/client/transport.py``). Needs the ``client`` extra (``pip install
"quiver-ann[client]"``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from . import wire
from .transport import HttpxTransport, KeepAliveTransport, Transport
from .wire import (
    DEFAULT_BATCH,
    DEFAULT_PARALLEL,
    DEFAULT_RETRIES,
    DEFAULT_URL,
    Call,
    PointId,
    snapshot_file_name,
)


class Client:
    """A connection to a quiver server, with the :class:`quiver.Database` verbs.

    Parameters
    ----------
    url : the server's base URL.
    api_key : sent as the ``api-key`` header when the server requires one.
    timeout : seconds to connect, and to wait for each read of an answer.
    http : an ``httpx.Client`` to send the requests with instead of the client's own
        connection pool (tests pass FastAPI's ``TestClient``); ``url`` and ``timeout`` are then
        ignored.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        http: Any = None,
    ) -> None:
        headers = {"api-key": api_key} if api_key else {}
        self._transport: Transport = (
            KeepAliveTransport(url, headers, timeout)
            if http is None
            else HttpxTransport(http, headers)
        )
        self.url = self._transport.url

    # -- plumbing --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        content: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send a request; return the response's ``result`` or raise the matching error."""
        return wire.result_of(self._transport.request(method, path, content, headers))

    def send(self, call: Call) -> Any:
        """Send one :class:`~quiver.client.wire.Call`; its ``result``."""
        return self.request(call.method, call.path, **call.kwargs)

    def drive(self, verb: wire.Verb) -> Any:
        """Run a verb: send each call it yields, give it the result, return what it returns."""
        try:
            call = next(verb)
            while True:
                call = verb.send(self.send(call))
        except StopIteration as stop:
            return stop.value

    def close(self) -> None:
        """Close the connection pool."""
        self._transport.close()

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
            return self._transport.request("GET", "/readyz").status_code == 200
        except wire.ConnectionFailedError:
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
        body = wire.create_collection_body(dim, metric, id_type, max_degree, build_list_size, alpha)
        return RemoteCollection(
            self, self.send(wire.json_call("PUT", f"/collections/{name}", body))
        )

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


def _blocking(verb: Callable[..., wire.Verb]) -> Callable[..., Any]:
    """A shared verb as a blocking method."""

    @functools.wraps(verb)
    def method(self: RemoteCollection, *args: Any, **kwargs: Any) -> Any:
        return self._client.drive(verb(self, *args, **kwargs))

    return method


class RemoteCollection(wire.CollectionVerbs):
    """A collection on a server, with the :class:`quiver.Collection` verbs."""

    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        super().__init__(info)
        self._client = client

    info = _blocking(wire.CollectionVerbs._info)
    delete = _blocking(wire.CollectionVerbs._delete)
    delete_by_filter = _blocking(wire.CollectionVerbs._delete_by_filter)
    get = _blocking(wire.CollectionVerbs._get)
    retrieve = _blocking(wire.CollectionVerbs._retrieve)
    count = _blocking(wire.CollectionVerbs._count)
    scroll = _blocking(wire.CollectionVerbs._scroll)
    search = _blocking(wire.CollectionVerbs._search)
    search_batch = _blocking(wire.CollectionVerbs._search_batch)
    query = _blocking(wire.CollectionVerbs._query)

    def upsert(
        self,
        ids: Sequence[PointId],
        vectors: Any,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
        parallel: int = DEFAULT_PARALLEL,
        retries: int = DEFAULT_RETRIES,
        format: str = "auto",  # noqa: A002 - the option's word
        progress: bool = False,
    ) -> int:
        """Insert or replace points; returns how many. Sent in requests of ``batch_size``
        points, at most ``parallel`` in flight (one at a time if an id repeats, so that the
        last one wins as embedded), each durable when acknowledged (a failure leaves other
        batches written). A batch failing on a transient error (connection, 429/502/503/504)
        is sent again up to ``retries`` times with exponential backoff: upserts are
        idempotent. ``format``: ``"auto"`` (the default: ``"arrow"`` when the points
        come back unchanged through it, see :func:`~quiver.client.wire.arrow_is_exact`, else
        ``"base64"``), ``"arrow"`` (an Arrow IPC stream, the fastest), ``"base64"`` (float32
        vectors in a JSON body: any JSON payload) or ``"json"`` (numbers). ``progress``: a
        tqdm bar."""
        plan = wire.plan_upsert(ids, vectors, payloads, batch_size, format)
        bar = _progress_bar(len(plan.ids), self.name) if progress else None
        send = functools.partial(self._send_batch, plan, retries=retries)
        width = max(1, parallel) if plan.unique else 1
        done = 0
        try:
            with ThreadPoolExecutor(width, thread_name_prefix="quiver-upload") as pool:
                pending: set[Future[int]] = set()
                batches = plan.batches()
                try:
                    for start, stop in batches:
                        pending.add(pool.submit(send, start, stop))
                        if len(pending) >= width:
                            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                            done += _tally(finished, bar)
                    finished, pending = wait(pending)
                    done += _tally(finished, bar)
                finally:
                    for future in pending:
                        future.cancel()
        finally:
            if bar is not None:
                bar.close()
        return done

    upload = upsert

    def _send_batch(self, plan: wire.UpsertPlan, start: int, stop: int, *, retries: int) -> int:
        call = plan.call(self._path, start, stop)
        for attempt in range(retries + 1):
            try:
                upserted: int = self._client.send(call)["upserted"]
                return upserted
            except Exception as exc:
                if attempt == retries or not wire.is_transient(exc):
                    raise
                time.sleep(wire.backoff_seconds(attempt))
        raise AssertionError("unreachable")

    def snapshot(self, path: str | Path) -> Path:
        """Create a snapshot on the server and download it to ``path`` (a file, or a directory
        to put it in); returns the local file."""
        meta = self._client.request("POST", self._path + "/snapshots")
        name = snapshot_file_name(meta.get("name"))
        target = Path(path)
        if target.is_dir():
            target = target / name
        error = self._client._transport.download(f"{self._path}/snapshots/{name}", target)
        if error is not None:
            wire.raise_for(error)
        return target


def _tally(finished: set[Future[int]], bar: Any) -> int:
    """Points acknowledged by finished batches (raises the first batch's error)."""
    n = 0
    for future in finished:
        k = future.result()
        n += k
        if bar is not None:
            bar.update(k)
    return n


def _progress_bar(total: int, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="pt", desc=f"upsert {name}")
