"""A server app run by uvicorn in a thread of the test process (the HTTP tests and the cluster
front end's tests share it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any


def serve_in_thread(app: Any) -> Iterator[str]:
    """The ASGI ``app`` served by uvicorn in a thread of this process on 127.0.0.1 (a
    free port), ready; yields its URL and stops it afterwards."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
