"""The asyncio client: :class:`AsyncClient`, the verbs of :class:`quiver.Client` as
coroutines, on httpx's ``AsyncClient``::

    async with quiver.AsyncClient("http://127.0.0.1:8333") as db:
        coll = await db.get_collection("docs")
        hits = await coll.search(vector, k=5)
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx

from . import wire
from .sync import _progress_bar
from .transport import httpx_errors
from .wire import DEFAULT_BATCH, DEFAULT_PARALLEL, DEFAULT_RETRIES, DEFAULT_URL, Call, PointId


class AsyncClient:
    """An asyncio connection to a quiver server, with the :class:`quiver.Database` verbs as
    coroutines. ``http``: an ``httpx.AsyncClient`` to send with instead of a new one. A request
    that gets no answer raises :class:`~quiver.client.ConnectionFailedError`
    (:class:`~quiver.client.RequestTimeoutError` on a timeout), as with :class:`quiver.Client`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        headers = {"api-key": api_key} if api_key else {}
        if http is not None:
            http.headers.update(headers)
            self._http = http
        else:
            self._http = httpx.AsyncClient(
                base_url=url.rstrip("/"), headers=headers, timeout=timeout
            )
        self.url = str(self._http.base_url).rstrip("/")

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; return the response's ``result`` or raise the matching error."""
        with httpx_errors(self.url):
            response = await self._http.request(method, path, **kwargs)
        return wire.result_of(response)

    async def send(self, call: Call) -> Any:
        """Send one :class:`~quiver.client.wire.Call`; its ``result``."""
        return await self.request(call.method, call.path, **call.kwargs)

    async def drive(self, verb: wire.Verb) -> Any:
        """Run a verb: send each call it yields, give it the result, return what it returns."""
        try:
            call = next(verb)
            while True:
                call = verb.send(await self.send(call))
        except StopIteration as stop:
            return stop.value

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"quiver.AsyncClient({self.url!r})"

    async def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (collections open, kernels compiled)."""
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def wait_ready(self, timeout: float = 120.0, interval: float = 0.1) -> None:
        """Wait until the server is ready; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not await self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url} not ready after {timeout:.0f} s")
            await asyncio.sleep(interval)

    async def create_collection(
        self,
        name: str,
        dim: int,
        metric: str = "cosine",
        *,
        id_type: str = "uint64",
        max_degree: int = 64,
        build_list_size: int = 128,
        alpha: float = 1.0,
    ) -> AsyncRemoteCollection:
        """Create a collection (``CollectionExistsError`` if the name is taken)."""
        body = wire.create_collection_body(dim, metric, id_type, max_degree, build_list_size, alpha)
        info = await self.send(wire.json_call("PUT", f"/collections/{name}", body))
        return AsyncRemoteCollection(self, info)

    async def get_collection(self, name: str) -> AsyncRemoteCollection:
        """An existing collection (``CollectionNotFoundError`` otherwise)."""
        return AsyncRemoteCollection(self, await self.request("GET", f"/collections/{name}"))

    async def list_collections(self) -> list[str]:
        """Names of all collections."""
        result = await self.request("GET", "/collections")
        return [c["name"] for c in result["collections"]]

    async def drop_collection(self, name: str) -> None:
        """Delete a collection (``CollectionNotFoundError`` if it doesn't exist)."""
        await self.request("DELETE", f"/collections/{name}")

    async def restore_snapshot(self, file: str | Path, name: str) -> AsyncRemoteCollection:
        """Upload a local snapshot file and restore it as the new collection ``name``."""
        info = await self.request(
            "POST",
            f"/collections/{name}/snapshots/upload",
            content=_file_chunks(Path(file)),
            headers={"content-type": "application/octet-stream"},
        )
        return AsyncRemoteCollection(self, info)


async def _file_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(size):
            yield chunk


def _awaitable(verb: Callable[..., wire.Verb]) -> Callable[..., Any]:
    """A shared verb as a coroutine method."""

    @functools.wraps(verb)
    async def method(self: AsyncRemoteCollection, *args: Any, **kwargs: Any) -> Any:
        return await self._client.drive(verb(self, *args, **kwargs))

    return method


class AsyncRemoteCollection(wire.CollectionVerbs):
    """A collection on a server, with the :class:`quiver.Collection` verbs as coroutines."""

    def __init__(self, client: AsyncClient, info: dict[str, Any]) -> None:
        super().__init__(info)
        self._client = client

    info = _awaitable(wire.CollectionVerbs._info)
    delete = _awaitable(wire.CollectionVerbs._delete)
    delete_by_filter = _awaitable(wire.CollectionVerbs._delete_by_filter)
    get = _awaitable(wire.CollectionVerbs._get)
    retrieve = _awaitable(wire.CollectionVerbs._retrieve)
    count = _awaitable(wire.CollectionVerbs._count)
    scroll = _awaitable(wire.CollectionVerbs._scroll)
    search = _awaitable(wire.CollectionVerbs._search)
    search_batch = _awaitable(wire.CollectionVerbs._search_batch)
    query = _awaitable(wire.CollectionVerbs._query)

    async def upsert(
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
        """As :meth:`quiver.client.RemoteCollection.upsert`: batches, at most ``parallel`` in
        flight, retried with backoff on transient errors."""
        plan = wire.plan_upsert(ids, vectors, payloads, batch_size, format)
        bar = _progress_bar(len(plan.ids), self.name) if progress else None
        slots = asyncio.Semaphore(max(1, parallel) if plan.unique else 1)

        async def send(start: int, stop: int) -> int:
            async with slots:
                n = await self._send_batch(plan.call(self._path, start, stop), retries)
            if bar is not None:
                bar.update(n)
            return n

        tasks: list[asyncio.Task[int]] = []
        try:
            for start, stop in plan.batches():  # each encodes its batch once it holds a slot
                tasks.append(asyncio.ensure_future(send(start, stop)))
            return sum(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            if bar is not None:
                bar.close()

    upload = upsert

    async def _send_batch(self, call: Call, retries: int) -> int:
        for attempt in range(retries + 1):
            try:
                upserted: int = (await self._client.send(call))["upserted"]
                return upserted
            except Exception as exc:
                if attempt == retries or not wire.is_transient(exc):
                    raise
                await asyncio.sleep(wire.backoff_seconds(attempt))
        raise AssertionError("unreachable")

    async def snapshot(self, path: str | Path) -> Path:
        """Create a snapshot on the server and download it to ``path`` (a file, or a directory
        to put it in); returns the local file."""
        meta = await self._client.request("POST", self._path + "/snapshots")
        name = wire.snapshot_file_name(meta.get("name"))
        target = Path(path)
        if target.is_dir():
            target = target / name
        with httpx_errors(self._client.url):
            async with self._client._http.stream("GET", f"{self._path}/snapshots/{name}") as r:
                if r.status_code >= 400:
                    await r.aread()
                    wire.raise_for(r)
                async with await anyio.open_file(target, "wb") as f:
                    async for chunk in r.aiter_bytes(1 << 20):
                        await f.write(chunk)
        return target
