"""The embedded database: a data directory of named collections, locked by one process.

Layout::

    <path>/.lock                       locked (quiver.db.dirlock) by the process that opened it
    <path>/collections/<name>/         one collection (quiver.db.collection, quiver.db.files)

``Database(path)`` takes the lock (a second writer gets :class:`DatabaseLockedError` at once),
finishes or rolls back a snapshot swap a crash interrupted, removes leftovers of unfinished
creates, drops and restores, opens every collection (loading its hot arrays, replaying its
log) and is ready. ``close()`` checkpoints every collection and releases the lock.

``Database(path, read_only=True)`` takes no lock (a writer may hold it), changes nothing on
disk (no checkpoint, no log append, no cleanup, no directory created) and refuses writes with
:class:`~quiver.errors.ReadOnlyError`. It sees the data as of its open.

Crash safety of the directory operations: a collection is created under a hidden temporary
name (config, first empty checkpoint, log) and renamed into place; a drop renames it to a
hidden trash name first; ``restore_snapshot(replace=True)`` writes a journal
(``.swap-<name>.json``) before swapping the two directories, which the next open uses to finish
the swap (the new collection is complete) or roll it back (the old one is still in place).
"""

from __future__ import annotations

import json
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
from quiver.db.files import (
    CONFIG_FILE,
    CollectionConfig,
    check_name,
    prepare_restored,
    read_config,
    write_config,
)
from quiver.db.snapshot_archive import extract_snapshot
from quiver.db.wal import check_fsync_policy
from quiver.engine import store
from quiver.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    CorruptIndexError,
    DatabaseLockedError,
    FormatVersionError,
    InvalidInputError,
    ReadOnlyError,
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
    read_only : open without the lock and without changing anything on disk; writes raise
        :class:`~quiver.errors.ReadOnlyError`.
    isolate_damaged : a collection that cannot be opened (a damaged or crafted file) does not
        stop the others: it is listed, :meth:`failed_collections` says why, ``get_collection``
        raises :class:`~quiver.errors.CorruptIndexError` for it, and dropping it or restoring a
        snapshot over it (``replace=True``) are the ways out. Off by default: the whole open
        then raises, as an embedded program usually wants; the server turns it on.
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
        read_only: bool = False,
        isolate_damaged: bool = False,
    ) -> None:
        self._path = Path(path)
        self._read_only = bool(read_only)
        self._options: dict[str, Any] = {
            "fsync": check_fsync_policy(fsync),
            "num_threads": num_threads,
            "checkpoint_bytes": checkpoint_bytes,
            "consolidate_fraction": consolidate_fraction,
            "verify_segments": verify_segments,
            "read_only": self._read_only,
        }
        self._lock_fd: int | None = None
        if self._read_only:
            if not (self._path / COLLECTIONS_DIR).is_dir():
                raise CollectionNotFoundError(f"{self._path}: no quiver data directory to read")
        else:
            (self._path / COLLECTIONS_DIR).mkdir(parents=True, exist_ok=True)
            self._lock_fd = self._take_lock()
        self._lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._failed: dict[str, str] = {}  # name -> why it could not be opened
        self._closed = False
        try:
            if not self._read_only:
                self._recover_directory()
            for directory in sorted((self._path / COLLECTIONS_DIR).iterdir()):
                if directory.name.startswith("."):
                    continue
                if (directory / CONFIG_FILE).is_file():
                    self._open_existing(directory, isolate_damaged)
                else:
                    logger.error(
                        "%s: a collection directory without %s (not opened; remove it or "
                        "restore a snapshot under that name with replace=True)",
                        directory.name, CONFIG_FILE,
                    )  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _open_existing(self, directory: Path, isolate_damaged: bool) -> None:
        try:
            self._collections[directory.name] = Collection.open(directory, **self._options)
        except (CorruptIndexError, FormatVersionError) as exc:
            if not isolate_damaged:
                raise
            self._failed[directory.name] = str(exc)
            logger.error("collection %r not opened (damaged): %s", directory.name, exc)

    def failed_collections(self) -> dict[str, str]:
        """Collections that could not be opened (``isolate_damaged=True``): name -> why."""
        return dict(self._failed)

    def _take_lock(self) -> int:
        fd = os.open(self._path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            dirlock.try_lock(fd)
        except BlockingIOError as exc:
            os.close(fd)
            raise DatabaseLockedError(
                f"{self._path} is locked by another process (or another Database object in "
                "this one); one writer per data directory (read_only=True needs no lock)"
            ) from exc
        return fd

    def _recover_directory(self) -> None:
        """Finish or roll back interrupted swaps, then delete hidden leftovers (staging,
        trash, half-created collections) and collection directories a crash left empty."""
        root = self._path / COLLECTIONS_DIR
        for journal in sorted(root.glob(".swap-*.json")):
            self._recover_swap(journal)
        for entry in sorted(root.iterdir()):
            if entry.name.startswith("."):
                logger.warning("removing leftover %s (an unfinished operation)", entry.name)
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            elif entry.is_dir() and not (entry / CONFIG_FILE).exists():
                leftovers = [p.name for p in entry.iterdir()]
                if set(leftovers) <= {CONFIG_FILE + ".tmp"}:  # created by an older quiver
                    logger.warning("removing half-created collection directory %s", entry.name)
                    shutil.rmtree(entry, ignore_errors=True)
        store.fsync_dir(root)

    def _recover_swap(self, journal: Path) -> None:
        """Complete the snapshot swap ``journal`` describes: forward when the new collection
        is unpacked and the old one already moved aside, else back."""
        root = self._path / COLLECTIONS_DIR
        try:
            swap = json.loads(journal.read_text(encoding="utf-8"))
            target, staging = root / check_name(swap["name"]), root / swap["staging"]
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise CorruptIndexError(f"{journal}: unreadable swap journal: {exc}") from exc
        if staging.is_dir() and not target.exists():
            os.replace(staging, target)
        outcome = "rolled back" if staging.is_dir() else "finished"
        logger.warning("%s the interrupted restore of collection %r", outcome, swap["name"])
        store.fsync_dir(root)
        journal.unlink()

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

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnlyError(f"database {self._path} is open read-only: writes are refused")

    def _hidden(self, kind: str, name: str) -> Path:
        """A fresh hidden path in the collections folder (removed on the next open)."""
        return self._path / COLLECTIONS_DIR / f".{kind}-{name}-{uuid.uuid4().hex[:8]}"

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
            self._check_writable()
            if name in self._collections or self._dir(name).exists():
                raise CollectionExistsError(f"collection {name!r} already exists")
            staging = self._hidden("create", name)
            try:
                Collection.create(staging, config, **self._options).close()
                os.replace(staging, self._dir(name))  # the name appears whole, or not at all
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            store.fsync_dir(self._path / COLLECTIONS_DIR)
            collection = Collection.open(self._dir(name), **self._options)
            self._collections[name] = collection
            logger.info("created collection %r (dim %d, %s)", name, dim, config.metric)
            return collection

    def get_collection(self, name: str) -> Collection:
        """The open collection ``name``; :class:`CollectionNotFoundError` if none."""
        self._check_open()
        try:
            return self._collections[name]
        except KeyError:
            if name in self._failed:
                raise CorruptIndexError(
                    f"collection {name!r} could not be opened: {self._failed[name]} (drop it, "
                    "or restore a snapshot over it with replace=True)"
                ) from None
            raise CollectionNotFoundError(f"no collection named {name!r}") from None

    def list_collections(self) -> list[str]:
        """Names of the collections, damaged ones (:meth:`failed_collections`) included."""
        return sorted([*self._collections, *self._failed])

    def drop_collection(self, name: str) -> None:
        """Delete a collection and its files."""
        with self._lock:
            self._check_writable()
            if self._failed.pop(name, None) is None:
                collection = self.get_collection(name)
                collection.close()
                del self._collections[name]
            trash = self._hidden("trash", name)
            os.replace(self._dir(name), trash)  # disappears atomically
            store.fsync_dir(self._path / COLLECTIONS_DIR)
            shutil.rmtree(trash, ignore_errors=True)
            logger.info("dropped collection %r", name)

    def restore_snapshot(self, file: str | Path, name: str, *, replace: bool = False) -> Collection:
        """Create collection ``name`` from a file written by :meth:`Collection.snapshot`.

        ``replace=True`` swaps an existing collection of that name for the snapshot (a roll
        back) once the snapshot is unpacked and checked; the swap is journaled, so a crash
        during it leaves either the old or the new collection (see the module doc). Otherwise
        an existing name raises :class:`CollectionExistsError`.
        """
        check_name(name)
        with self._lock:
            self._check_writable()
            exists = name in self._collections or self._dir(name).exists()
            if exists and not replace:
                raise CollectionExistsError(f"collection {name!r} already exists")
            staging = self._unpack_snapshot(Path(file), name)
            if self._dir(name).exists():
                self._swap_in(staging, name)
            else:
                os.replace(staging, self._dir(name))
                store.fsync_dir(self._path / COLLECTIONS_DIR)
            collection = Collection.open(self._dir(name), **self._options)
            self._collections[name] = collection
            self._failed.pop(name, None)
            logger.info("restored collection %r from %s", name, file)
            return collection

    def _swap_in(self, staging: Path, name: str) -> None:
        """Replace collection ``name`` by the checked collection in ``staging``, journaled."""
        root = self._path / COLLECTIONS_DIR
        journal = root / f".swap-{name}.json"
        trash = self._hidden("trash", name)
        tmp = journal.with_name(journal.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"name": name, "staging": staging.name}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, journal)
        store.fsync_dir(root)
        old = self._collections.pop(name, None)
        if old is not None:
            old.close()
        try:
            os.replace(self._dir(name), trash)
            os.replace(staging, self._dir(name))
            store.fsync_dir(root)
        except BaseException:
            if trash.exists() and not self._dir(name).exists():
                os.replace(trash, self._dir(name))  # roll back: the old one stays
            if old is not None:
                self._collections[name] = Collection.open(self._dir(name), **self._options)
            shutil.rmtree(staging, ignore_errors=True)
            journal.unlink(missing_ok=True)
            raise
        journal.unlink()
        store.fsync_dir(root)
        shutil.rmtree(trash, ignore_errors=True)

    def _unpack_snapshot(self, file: Path, name: str) -> Path:
        """Unpack and check a snapshot into a staging folder; return it."""
        staging = self._hidden("restore", name)
        staging.mkdir()
        try:
            extract_snapshot(file, staging, CONFIG_FILE)  # only what a snapshot holds
            try:
                config = read_config(staging)
                store.read_manifest(staging)  # present and of a known format
            except FileNotFoundError as exc:
                missing = [n for n in (CONFIG_FILE, store.MANIFEST) if not (staging / n).is_file()]
                raise CorruptIndexError(
                    f"{file.name}: not a quiver snapshot: {', '.join(missing) or 'a file'} is "
                    "missing"
                ) from exc
            write_config(staging, config.renamed(name))
            prepare_restored(staging)
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
                if self._lock_fd is not None:
                    dirlock.unlock(self._lock_fd)
                    os.close(self._lock_fd)
