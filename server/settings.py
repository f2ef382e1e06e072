"""Server configuration: pydantic-settings, read from ``QUIVER_*`` environment variables.

Every field can also be given to :func:`quiver.server.create_app` directly (tests do) or as a
``quiver serve`` flag (which overrides the environment).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["debug", "info", "warning", "error"]

#: The port ``quiver serve`` listens on by default (Qdrant's is 6333; quiver's is its own).
DEFAULT_PORT = 8333


class Settings(BaseSettings):
    """How one server process runs. Environment: ``QUIVER_<FIELD>`` (e.g. ``QUIVER_API_KEY``).

    The data directory's variable is ``QUIVER_DB_DIR``: ``QUIVER_DATA_DIR`` already names the
    benchmark data-set cache (``bench/harness/datasets.py``).
    """

    # hide_input_in_errors: a rejected API key is not echoed in the error (or the log).
    model_config = SettingsConfigDict(
        env_prefix="QUIVER_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    db_dir: Path = Field(Path("quiver-db"), description="database directory (one server owns it)")
    snapshot_dir: Path | None = Field(
        None, description="where snapshots are written; default: '<db_dir>-snapshots' beside it"
    )
    cluster: str | None = Field(
        None,
        description="serve a quiver cluster on Ray instead of a local database: the Ray "
        "address ('auto', 'ray://host:port', or 'local': the Ray this process joined or a new "
        "one); db_dir is then each node's data directory",
    )
    cluster_namespace: str = Field("quiver", description="the cluster's Ray namespace")
    cluster_shards: int = Field(
        1, ge=1, le=4096, description="shards of a collection created over HTTP"
    )
    cluster_replicas: int = Field(1, ge=1, le=64, description="replicas of each of those shards")
    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 exposes the server")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    api_key: SecretStr | None = Field(
        None, description="if set, every endpoint but /healthz and /readyz needs it"
    )
    threads: int | None = Field(
        None, ge=1, le=1024, description="Numba threads for batch work (default: all cores)"
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="index calls running at once in the worker pool (default: 2 x cores)",
    )
    max_writers: int = Field(
        4, ge=1, le=256, description="write calls (upsert, delete...) in flight at once"
    )
    fsync: Literal["batch", "off"] = Field(
        "batch", description="'batch': a write is fsynced before it is acknowledged"
    )
    log_level: LogLevel = "info"
    access_log: bool = Field(True, description="log one JSON line per request")
    max_body_bytes: int = Field(
        64 * 2**20, ge=1024, description="largest request body (413 above it)"
    )
    max_upload_bytes: int = Field(
        16 * 2**30, ge=1024, description="largest snapshot upload (413 above it)"
    )
    max_batch: int = Field(
        10_000, ge=1, le=1_000_000, description="most points / ids / queries in one request"
    )
    max_k: int = Field(1_000, ge=1, le=100_000, description="largest k (and scroll limit)")
    max_ef: int = Field(4_096, ge=1, le=100_000, description="largest ef")
    max_dim: int = Field(8_192, ge=1, le=65_536, description="largest collection dimension")
    max_batch_results: int = Field(
        100_000,
        ge=1,
        le=100_000_000,
        description="most hits one batch query may return (query vectors x k)",
    )
    public_docs: bool = Field(
        False, description="serve /docs, /redoc and /openapi.json without the API key"
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="seconds a connection may take to send a request's headers",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="seconds a request body may take (plus 1 s per body_min_rate bytes)",
    )
    body_min_rate: int = Field(
        2**20,
        ge=1,
        description="bytes per second a long body (an upload) must keep up past body_timeout_s",
    )
    lean_queries: bool = Field(
        True,
        description="serve the hot query and upsert routes on the lean path "
        "(docs/ARCHITECTURE.md); false: FastAPI's routes only",
    )
    query_batching: bool = Field(
        True,
        description="group concurrent single queries of a collection into one engine call",
    )
    qdrant_prefix: str = Field(
        "/qdrant",
        pattern=r"^(/[A-Za-z0-9_.-]+)*$",
        description="path prefix of the Qdrant-compatible API (docs/QDRANT.md); '' turns it off",
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value: object) -> object:
        """``QUIVER_API_KEY=""`` (e.g. compose's unset default) means no key, not an empty one."""
        return None if value == "" else value

    @field_validator("api_key")
    @classmethod
    def _key_is_visible_ascii(cls, value: SecretStr | None) -> SecretStr | None:
        """A key must fit in an HTTP header as is: printable ASCII, no spaces."""
        if value is None:
            return None
        for position, char in enumerate(value.get_secret_value()):
            if not "!" <= char <= "~":
                raise ValueError(
                    "the API key (QUIVER_API_KEY) must be visible ASCII characters (letters, "
                    "digits, punctuation; no spaces, control or non-ASCII characters), got "
                    f"U+{ord(char):04X} at position {position}"
                )
        return value

    def resolved_snapshot_dir(self) -> Path:
        """The snapshot directory, defaulting to a sibling of the database directory."""
        if self.snapshot_dir is not None:
            return self.snapshot_dir
        db_dir = self.db_dir.resolve()
        return db_dir.with_name(db_dir.name + "-snapshots")

    def concurrency(self) -> int:
        """Tokens of the worker pool's capacity limiter."""
        if self.max_concurrency is not None:
            return self.max_concurrency
        return 2 * len(os.sched_getaffinity(0))
