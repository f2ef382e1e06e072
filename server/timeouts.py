"""Connection timeouts: a client that stalls while sending its request is cut off.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but bounds neither a
request whose headers never finish (or a connection that sends nothing) nor a body that
trickles in. :func:`http_protocol` gives uvicorn a protocol class that closes a connection
whose request headers are not complete ``header_timeout_s`` after it opened or after the
previous response, or whose headers grow past ``MAX_HEADER_BYTES``;
:class:`BodyTimeoutMiddleware` answers 408 when a body has not fully arrived in
``body_timeout_s`` plus one second per ``body_min_rate`` bytes received (so a large upload at a
reasonable speed passes, and a slow trickle does not).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError
from .settings import Settings

#: Most bytes of request line and headers a connection may send before they are complete.
MAX_HEADER_BYTES = 64 * 1024


class _HeaderDeadline:
    """Mixin for uvicorn's HTTP protocols: a deadline and a size bound on request headers."""

    header_timeout_s = 10.0
    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    timeout_keep_alive_task: asyncio.TimerHandle | None

    def _arm_header_deadline(self) -> None:
        """Start the deadline. One timer per connection, re-armed lazily: a request costs two
        attribute writes, not a timer created and cancelled on the event loop."""
        self._header_bytes = 0
        self._header_deadline: float | None = self.loop.time() + self.header_timeout_s
        if getattr(self, "_header_timer", None) is None:
            self._header_timer: asyncio.TimerHandle | None = self.loop.call_at(
                self._header_deadline, self._header_deadline_passed
            )

    def _disarm_header_deadline(self) -> None:
        self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        """The timer fired: close the connection if its deadline is armed and past, else wait
        for the current deadline (re-armed since the timer was set) or the next arming."""
        self._header_timer = None
        deadline = self._header_deadline
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._header_timer = self.loop.call_at(deadline, self._header_deadline_passed)
        elif not self.transport.is_closing():
            self.transport.close()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        waiting = getattr(self, "_header_deadline", None) is not None
        super().data_received(data)  # type: ignore[misc]
        if not waiting:
            return
        if not self._waiting_for_headers():  # the headers are complete (body bytes may follow
            self._disarm_header_deadline()  # in the same chunk: they are not header bytes)
            return
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._disarm_header_deadline()
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if self.timeout_keep_alive_task is not None:  # idle until the next request starts
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)  # type: ignore[misc]


def http_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools, else h11) with the header deadline."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - httptools is a dependency
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]
    attrs = {"header_timeout_s": header_timeout_s}
    return type("HeaderDeadlineProtocol", (_HeaderDeadline, Base), attrs)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The ``uvicorn.Config`` options that enforce the settings' connection timeouts."""
    return {
        "http": http_protocol(settings.header_timeout_s),
        "timeout_keep_alive": min(5.0, settings.header_timeout_s),
    }


class BodyTimeoutMiddleware:
    """408 when a request body does not arrive in time (see the module docstring)."""

    def __init__(self, app: ASGIApp, timeout_s: float, min_rate: int) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        received = 0
        complete = False

        async def timed_receive() -> Message:
            nonlocal received, complete
            if complete:  # after the body: waiting for a disconnect is not bounded
                return await receive()
            deadline = start + self.timeout_s + received / self.min_rate
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise ApiError(
                    408,
                    "request_timeout",
                    f"the request body did not arrive in time ({received} bytes after "
                    f"{time.monotonic() - start:.1f} s; QUIVER_BODY_TIMEOUT_S="
                    f"{self.timeout_s:g}, QUIVER_BODY_MIN_RATE={self.min_rate})",
                    headers={"connection": "close"},
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        await self.app(scope, timed_receive, send)
