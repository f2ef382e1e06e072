"""Python clients of the quiver HTTP server: :class:`Client` (blocking) and
:class:`AsyncClient` (asyncio), with the embedded API's verbs."""

from .aio import AsyncClient, AsyncRemoteCollection
from .sync import Client, RemoteCollection
from .wire import (
    DEFAULT_BATCH,
    DEFAULT_URL,
    ConnectionFailedError,
    NotReadyError,
    PayloadTooLargeError,
    PointId,
    RemoteError,
    RequestTimeoutError,
    UnauthorizedError,
    snapshot_file_name,
)

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_URL",
    "AsyncClient",
    "AsyncRemoteCollection",
    "Client",
    "ConnectionFailedError",
    "NotReadyError",
    "PayloadTooLargeError",
    "PointId",
    "RemoteCollection",
    "RemoteError",
    "RequestTimeoutError",
    "UnauthorizedError",
    "snapshot_file_name",
]
