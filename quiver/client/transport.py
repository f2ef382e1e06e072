"""How the blocking client sends its HTTP requests: one small interface, two implementations.

:class:`KeepAliveTransport` (the default of ``quiver.Client(url)``) sends on a thread-safe pool
of ``http.client`` keep-alive connections: a query costs the client about a fifth of httpx's
CPU and half of urllib3's (``python -m bench.measure.client_cpu``). :class:`HttpxTransport`
wraps an ``httpx.Client`` given as ``Client(http=...)`` (tests pass FastAPI's ``TestClient``).
Both answer with an object that has ``status_code``, ``content`` and ``text`` (what
:func:`wire.result_of` reads), and both turn a request that got no HTTP answer into
:class:`wire.ConnectionFailedError` (:class:`wire.RequestTimeoutError` when it timed out), so
the error mapping is the same.
"""

from __future__ import annotations

import functools
import http.client
import select
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from quiver.errors import InvalidInputError

from .wire import ConnectionFailedError, RequestTimeoutError, Response

Body = bytes | Iterable[bytes] | None
#: Connections the pool keeps open: enough for ``upsert(parallel=...)``'s usual widths (more
#: threads still get a connection each, closed after use).
POOL_SIZE = 16
CHUNK = 1 << 20


class Transport(Protocol):
    """Sends requests to one server (paths are relative to its base URL)."""

    url: str

    def request(
        self, method: str, path: str, content: Body = None, headers: dict[str, str] | None = None
    ) -> Response:
        """Send one request; the whole answer."""
        ...

    def download(self, path: str, target: Path) -> Response | None:
        """GET ``path`` into the file ``target`` in chunks; ``None`` on success, else the
        error answer (then no file is written)."""
        ...

    def close(self) -> None:
        """Close the connections."""
        ...


@dataclass(frozen=True)
class Reply:
    """A complete answer."""

    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class KeepAliveTransport:
    """Requests on a pool of keep-alive ``http.client`` connections (the standard library's
    lean HTTP/1.1 client). Thread safe (``upsert`` sends from a thread pool): a request takes an
    idle connection (or opens one), and puts it back once its answer is read in full. An idle
    connection the server has closed meanwhile (its keep-alive timeout) is noticed before reuse
    and replaced. No retries or redirects here: ``upsert`` retries what is safe to retry."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(
                f"url must be http://host[:port][/prefix] or https://..., got {url!r}"
            )
        self.url = url.rstrip("/")
        self._connection = functools.partial(
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection,
            parts.hostname,
            parts.port,
            timeout=timeout,
        )
        self._prefix = parts.path
        self._headers = dict(headers)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self, method: str, path: str, content: Body = None, headers: dict[str, str] | None = None
    ) -> Response:
        conn, r = self._exchange(method, path, content, headers)
        body = self._read(conn, r)
        self._release(conn, r)
        return Reply(r.status, body)

    def download(self, path: str, target: Path) -> Response | None:
        conn, r = self._exchange("GET", path, None, None)
        if r.status >= 400:
            body = self._read(conn, r)
            self._release(conn, r)
            return Reply(r.status, body)
        try:
            with open(target, "wb") as out:
                while chunk := self._read(conn, r, CHUNK):
                    out.write(chunk)
        except BaseException:
            conn.close()
            raise
        self._release(conn, r)
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _exchange(
        self, method: str, path: str, content: Body, headers: dict[str, str] | None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request on a connection; the connection and the answer (body unread).

        A reused connection that the server closed between the idle check and the request
        (its keep-alive timeout racing us) fails before any answer: the request is sent once
        more on a new connection. The server never saw it, and a body that is an iterator is
        not sent twice (it may be consumed)."""
        conn, reused = self._take()
        full_headers = self._headers if not headers else {**self._headers, **headers}
        while True:
            try:
                conn.request(method, self._prefix + path, body=content, headers=full_headers)
                return conn, conn.getresponse()
            except _CLOSED_BY_PEER as exc:
                conn.close()
                if not reused or not isinstance(content, bytes | None):
                    raise _no_answer(self.url, exc) from exc
                conn, reused = self._connection(), False
            except BaseException as exc:
                conn.close()
                raise _no_answer(self.url, exc) from exc

    def _read(
        self, conn: http.client.HTTPConnection, r: http.client.HTTPResponse, size: int | None = None
    ) -> bytes:
        """``size`` bytes of the answer's body (all of it if ``None``: not -1, which would read
        until the server closes the connection)."""
        try:
            return r.read(size)
        except BaseException as exc:
            conn.close()
            raise _no_answer(self.url, exc) from exc

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection the server has not closed, or a new one; whether it is reused."""
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn = self._idle.pop()
            if conn.sock is not None and not _readable(conn.sock):
                return conn, True
            conn.close()  # closed by the server (or sent something unasked): not reusable
        return self._connection(), False

    def _release(self, conn: http.client.HTTPConnection, r: http.client.HTTPResponse) -> None:
        """Keep a connection whose answer was read in full for the next request."""
        if not r.will_close:
            with self._lock:
                if not self._closed and len(self._idle) < POOL_SIZE:
                    self._idle.append(conn)
                    return
        conn.close()


#: failures of a request on a connection the server had already closed
_CLOSED_BY_PEER = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def _readable(sock: socket.socket) -> bool:
    """Whether an idle socket has something to read (the server's EOF, usually)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def _no_answer(url: str, exc: BaseException) -> BaseException:
    """The client's error for a request that got no (complete) HTTP answer; other exceptions
    (an upload's file failing, an interrupt) as they are."""
    if isinstance(exc, TimeoutError):
        return RequestTimeoutError(f"{url}: timed out ({exc})")
    if isinstance(exc, OSError | http.client.HTTPException):
        return ConnectionFailedError(f"{url}: {type(exc).__name__}: {exc}")
    return exc


class HttpxTransport:
    """Requests on a given ``httpx.Client`` (FastAPI's ``TestClient`` is one)."""

    def __init__(self, http: Any, headers: dict[str, str]) -> None:
        http.headers.update(headers)
        self.http = http
        self.url = str(http.base_url).rstrip("/")

    def request(
        self, method: str, path: str, content: Body = None, headers: dict[str, str] | None = None
    ) -> Response:
        with httpx_errors(self.url):
            response: Response = self.http.request(method, path, content=content, headers=headers)
            return response

    def download(self, path: str, target: Path) -> Response | None:
        with httpx_errors(self.url), self.http.stream("GET", path) as r:
            if r.status_code >= 400:
                r.read()
                response: Response = r
                return response
            with open(target, "wb") as out:
                for chunk in r.iter_bytes(CHUNK):
                    out.write(chunk)
            return None

    def close(self) -> None:
        self.http.close()


def httpx_error(url: str, exc: Exception) -> ConnectionFailedError:
    """The client's error for an httpx transport failure."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(f"{url}: timed out ({exc})")
    return ConnectionFailedError(f"{url}: {type(exc).__name__}: {exc}")


@contextmanager
def httpx_errors(url: str) -> Iterator[None]:
    """Raise an httpx transport failure inside as the client's error (both clients use it)."""
    import httpx

    try:
        yield
    except httpx.TransportError as exc:
        raise httpx_error(url, exc) from exc
