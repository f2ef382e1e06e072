"""The embedded database: a data directory of named collections, locked by one process.

Layout::

    <path>/.lock                       locked (quiver.db.dirlock) by the process that opened it
    <path>/collections/<name>/         one collection (quiver.db.collection, quiver.db.files)

``Database(path)`` takes the lock (a second writer gets :class:`DatabaseLockedError` at once),
opens every collection (loading its hot arrays, replaying its log) and is ready. ``close()``
checkpoints every collection and releases the lock.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from quiver.db import dirlock
from quiver.db.collection import (
    DEFAULT_CHECKPOINT_BYTES,
    DEFAULT_CONSOLIDATE_FRACTION,
    Collection,
)
from quiver.db.files import CONFIG_FILE, CollectionConfig, check_name, read_config, write_config
from quiver.db.snapshot_archive import extract_snapshot
from quiver.db.wal import check_fsync_policy
from quiver.engine import store
from quiver.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    DatabaseLockedError,
    InvalidInputError,
)
from quiver.params import BuildParams

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
COLLECTIONS_DIR = "collections"


class Database:
    """Named collections in one data directory.

    Parameters
    ----------
    path : data directory (created if missing).
    fsync : ``"batch"`` (default): every write call fsyncs the log before returning, so an
        acknowledged write survives power loss; ``"off"``: the log is written but not
        fsynced (survives a process crash, not an OS crash).
    num_threads : threads for builds and batch searches (default: all cores).
    checkpoint_bytes : log size that triggers a checkpoint.
    consolidate_fraction : share of tombstoned rows that triggers background consolidation.
    verify_segments : check the float vector files against their checksums on open (reads
        them once); the log, points and hot arrays are always checked.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fsync: str = "batch",
        num_threads: int | None = None,
        checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES,
        consolidate_fraction: float = DEFAULT_CONSOLIDATE_FRACTION,
        verify_segments: bool = True,
    ) -> None:
        self._path = Path(path)
        self._options: dict[str, Any] = {
            "fsync": check_fsync_policy(fsync),
            "num_threads": num_threads,
            "checkpoint_bytes": checkpoint_bytes,
            "consolidate_fraction": consolidate_fraction,
            "verify_segments": verify_segments,
        }
        (self._path / COLLECTIONS_DIR).mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self._path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            dirlock.try_lock(self._lock_fd)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise DatabaseLockedError(
                f"{self._path} is locked by another process (or another Database object in "
                "this one); one writer per data directory"
            ) from exc
        self._lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._closed = False
        try:
            for directory in sorted((self._path / COLLECTIONS_DIR).iterdir()):
                if directory.name.startswith("."):
                    shutil.rmtree(directory, ignore_errors=True)  # leftover staging/trash
                elif (directory / CONFIG_FILE).is_file():
                    self._collections[directory.name] = Collection.open(directory, **self._options)
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> Path:
        return self._path

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({str(self._path)!r}, collections={self.list_collections()})"

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError(f"database {self._path} is closed")

    def _dir(self, name: str) -> Path:
        return self._path / COLLECTIONS_DIR / name

    def create_collection(
        self,
        name: str,
        dim: int,
        metric: str = "cosine",
        *,
        id_type: str = "uint64",
        max_degree: int = BuildParams.max_degree,
        build_list_size: int = BuildParams.build_list_size,
        alpha: float = BuildParams.alpha,
        seed: int = 0,
    ) -> Collection:
        """Create an empty collection; :class:`CollectionExistsError` if the name is taken."""
        params = BuildParams(max_degree, build_list_size, alpha, seed)
        config = CollectionConfig(check_name(name), dim, metric, id_type, params)
        with self._lock:
            self._check_open()
            if name in self._collections or self._dir(name).exists():
                raise CollectionExistsError(f"collection {name!r} already exists")
            collection = Collection.create(self._dir(name), config, **self._options)
            self._collections[name] = collection
            logger.info("created collection %r (dim %d, %s)", name, dim, config.metric)
            return collection

    def get_collection(self, name: str) -> Collection:
        """The open collection ``name``; :class:`CollectionNotFoundError` if none."""
        self._check_open()
        try:
            return self._collections[name]
        except KeyError:
            raise CollectionNotFoundError(f"no collection named {name!r}") from None

    def list_collections(self) -> list[str]:
        return sorted(self._collections)

    def drop_collection(self, name: str) -> None:
        """Delete a collection and its files."""
        with self._lock:
            collection = self.get_collection(name)
            collection.close()
            del self._collections[name]
            trash = self._path / COLLECTIONS_DIR / f".trash-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(self._dir(name), trash)  # disappears atomically
            store.fsync_dir(self._path / COLLECTIONS_DIR)
            shutil.rmtree(trash, ignore_errors=True)
            logger.info("dropped collection %r", name)

    def restore_snapshot(self, file: str | Path, name: str, *, replace: bool = False) -> Collection:
        """Create collection ``name`` from a file written by :meth:`Collection.snapshot`.

        ``replace=True`` swaps an existing collection of that name for the snapshot (a roll
        back) once the snapshot is unpacked and checked; a crash during the final swap of the
        two directories can leave the name without a collection (restore again). Otherwise an
        existing name raises :class:`CollectionExistsError`.
        """
        check_name(name)
        with self._lock:
            self._check_open()
            exists = name in self._collections or self._dir(name).exists()
            if exists and not replace:
                raise CollectionExistsError(f"collection {name!r} already exists")
            staging = self._unpack_snapshot(Path(file), name)
            if name in self._collections:
                self._collections.pop(name).close()
            trash = None
            if self._dir(name).exists():
                trash = self._path / COLLECTIONS_DIR / f".trash-{name}-{uuid.uuid4().hex[:8]}"
                os.replace(self._dir(name), trash)
            os.replace(staging, self._dir(name))
            store.fsync_dir(self._path / COLLECTIONS_DIR)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
            collection = Collection.open(self._dir(name), **self._options)
            self._collections[name] = collection
            logger.info("restored collection %r from %s", name, file)
            return collection

    def _unpack_snapshot(self, file: Path, name: str) -> Path:
        """Unpack and check a snapshot into a staging folder; return it."""
        staging = self._path / COLLECTIONS_DIR / f".restore-{name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            extract_snapshot(file, staging, CONFIG_FILE)  # only what a snapshot holds
            config = read_config(staging)
            store.read_manifest(staging)  # present and of a known format
            write_config(staging, config.renamed(name))
            Collection.open(staging, **self._options).close()  # checksums, points, index
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def close(self) -> None:
        """Checkpoint and close every collection, then release the directory lock."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                for collection in self._collections.values():
                    collection.close()
            finally:
                dirlock.unlock(self._lock_fd)
                os.close(self._lock_fd)
