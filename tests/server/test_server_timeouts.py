"""A real server process cuts connections that stall while sending headers or a body."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from quiver.server.process import ServerProcess, running_server

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0
ARGS = ["--no-access-log"]
ENV = {"QUIVER_HEADER_TIMEOUT_S": str(TIMEOUT_S), "QUIVER_BODY_TIMEOUT_S": str(TIMEOUT_S)}


def connect(url: str) -> socket.socket:
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
    return sock


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    t0 = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the server kept a stalled connection open for {limit_s} s")
    return data, time.monotonic() - t0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("timeouts")
    with running_server(root / "db", root / "server.log", args=ARGS, env=ENV) as running:
        yield running


def assert_still_serving(server: ServerProcess) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = read_until_closed(sock, 10)
        assert data.startswith(b"HTTP/1.1 200"), data[:200]


@pytest.mark.parametrize(
    "sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"], ids=["silent", "half-headers"]
)
def test_stalled_headers_are_cut(server: ServerProcess, sent: bytes) -> None:
    with connect(server.url) as sock:
        sock.sendall(sent)
        _, seconds = read_until_closed(sock, 10 * TIMEOUT_S)
        assert seconds < 5 * TIMEOUT_S
    assert_still_serving(server)


def test_stalled_headers_after_a_keep_alive_response_are_cut(server: ServerProcess) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request never finishes
        _, seconds = read_until_closed(sock, 10 * TIMEOUT_S)
        assert seconds < 5 * TIMEOUT_S


def test_a_trickling_body_gets_408(server: ServerProcess) -> None:
    with connect(server.url) as sock:
        sock.sendall(
            b"PUT /collections/slow HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        t0 = time.monotonic()
        sock.settimeout(0.2)
        data = b""
        while time.monotonic() - t0 < 10 * TIMEOUT_S:
            try:
                sock.sendall(b" ")  # 5 bytes a second
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 408"), data[:200]
        assert b"QUIVER_BODY_TIMEOUT_S" in data
        assert time.monotonic() - t0 < 5 * TIMEOUT_S
    assert_still_serving(server)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (headers and a Content-Length body), however the server's writes
    are split into segments."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_large_body_on_a_kept_alive_connection_is_not_taken_for_headers(
    server: ServerProcess,
) -> None:
    """Headers and a body over the header-size bound arriving in one chunk after a previous
    response (a client reusing its connection for a big upsert) must be served, not cut."""
    body = b'{"points": [' + b"0," * 60_000 + b"0]}"  # ~120 KB: a 422, not a dropped connection
    request = (
        b"PUT /collections/none/points HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with connect(server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(request)
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 4")
