"""quiver.Client's transports (its own keep-alive pool, and an injected httpx.Client) map a
request that gets no answer, a timeout and a server error to the same exceptions; the pool
replaces connections the server closed while idle."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from quiver.client import Client, ConnectionFailedError, RemoteError, RequestTimeoutError
from quiver.errors import CollectionNotFoundError
from quiver.server.process import free_port

TRANSPORTS: dict[str, Callable[[str, float], Client]] = {
    "keepalive": lambda url, timeout: Client(url, timeout=timeout),
    "httpx": lambda url, timeout: Client(http=httpx.Client(base_url=url, timeout=timeout)),
}


class _Handler(BaseHTTPRequestHandler):
    """Answers by path: /missing a domain error, /boom a 500 without a JSON body, /ok a result
    (then closes the connection without saying so, as a server's keep-alive timeout does)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/missing":
            self._send(404, b'{"error": "collection_not_found", "message": "no c"}')
        elif self.path == "/boom":
            self._send(500, b"Internal Server Error")
        else:
            self._send(200, b'{"result": {"collections": []}, "time": 0.0}')
            self.close_connection = True

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_refused(transport: str) -> None:
    client = TRANSPORTS[transport](f"http://127.0.0.1:{free_port()}", 5.0)
    with pytest.raises(ConnectionFailedError) as info:
        client.list_collections()
    assert isinstance(info.value, ConnectionError)
    assert not isinstance(info.value, RequestTimeoutError)
    assert not client.ready()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_timeout(transport: str, silent_url: str) -> None:
    client = TRANSPORTS[transport](silent_url, 0.3)
    with pytest.raises(RequestTimeoutError) as info:
        client.list_collections()
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, ConnectionFailedError)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_errors(transport: str, fake_url: str) -> None:
    client = TRANSPORTS[transport](fake_url, 5.0)
    with pytest.raises(CollectionNotFoundError, match="no c"):
        client.request("GET", "/missing")
    with pytest.raises(RemoteError, match="HTTP 500 http_error: Internal Server Error") as info:
        client.request("GET", "/boom")
    assert info.value.status == 500


def test_a_connection_closed_while_idle_is_replaced(fake_url: str) -> None:
    client = Client(fake_url, timeout=5.0)
    pool = client._transport
    for _ in range(3):
        assert client.list_collections() == []
        (idle,) = pool._idle  # type: ignore[attr-defined]
        # the server closed it after answering: wait until the client's side sees the EOF
        assert select.select([idle.sock], [], [], 5.0)[0]
    client.close()
    assert pool._idle == []  # type: ignore[attr-defined]


def test_a_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="ftp://host"):
        Client("ftp://host")


def test_a_request_racing_the_servers_close_is_sent_again(fake_url: str, monkeypatch) -> None:
    """The server closes an idle connection just after the pool checked it: the request fails
    before any answer and goes out once more on a new connection."""
    from quiver.client import transport

    monkeypatch.setattr(transport, "_readable", lambda sock: False)  # the check misses the EOF
    client = Client(fake_url, timeout=5.0)
    pool = client._transport
    for _ in range(3):
        assert client.list_collections() == []
        (idle,) = pool._idle  # type: ignore[attr-defined]
        assert select.select([idle.sock], [], [], 5.0)[0]  # closed by the server meanwhile
    client.close()


def test_the_async_client_maps_no_answer_the_same_way(silent_url: str) -> None:
    import asyncio

    from quiver.client import AsyncClient

    async def ask(url: str, timeout: float) -> None:
        async with AsyncClient(url, timeout=timeout) as client:
            await client.list_collections()

    with pytest.raises(ConnectionFailedError) as refused:
        asyncio.run(ask(f"http://127.0.0.1:{free_port()}", 5.0))
    assert not isinstance(refused.value, RequestTimeoutError)
    with pytest.raises(RequestTimeoutError):
        asyncio.run(ask(silent_url, 0.3))
