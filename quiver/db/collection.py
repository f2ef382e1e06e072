"""A collection: the user's points (ids, vectors, JSON payloads) over one :class:`Index`.

Writes go to the write-ahead log first, then to memory; a checkpoint publishes everything up
to a log position atomically (the index's manifest names the points file and the position)
and trims the log. Opening loads the last checkpoint and replays the log after it.

The points themselves (row-aligned ids and payloads over the index, the published view, reads
and searches) are :class:`~quiver.db.points.PointStore`; this class owns durability and the
lifecycle: the write lock, the log, checkpoints, consolidation, snapshots. Concurrency: one
writer at a time (the lock), any number of readers without a lock (docs/DURABILITY.md states
the guarantees). Searches are planned by :mod:`quiver.db.planner` and executed by
:mod:`quiver.db.query`; the files are :mod:`quiver.db.files`.

Failures: a write is acknowledged once it is in the log; a checkpoint that the write then
triggers and that fails (a full disk) is logged and counted in :meth:`Collection.info`
(``checkpoint_failures``, ``last_checkpoint_error``), never raised as a failed write (the log
still holds the write, and the next checkpoint retries). A log found shorter than the last
checkpoint promises (files deleted or truncated) is logged as an error and shown in ``info()``
(``status`` "degraded", ``log_damage``); the collection opens with what is left and
checkpoints at once so that the log is consistent again.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from quiver.db.files import (
    POINTS_SUFFIX,
    WAL_DIR,
    CollectionConfig,
    check_never_checkpointed,
    published_files,
    read_config,
    read_points,
    write_config,
    write_points,
    write_snapshot,
)
from quiver.db.filters import parse_filter
from quiver.db.group_commit import GroupCommit
from quiver.db.ids import check_id, check_ids
from quiver.db.payloads import check_payloads, keys_removed, payload_change
from quiver.db.points import PointStore
from quiver.db.request import SearchRequest, payload_selection
from quiver.db.wal import (
    OP_DELETE,
    OP_UPSERT,
    WriteAheadLog,
    check_fsync_policy,
)
from quiver.engine import store
from quiver.errors import CorruptIndexError, InvalidInputError, ReadOnlyError
from quiver.index import Index
from quiver.types import CompactHits, Point, ScoredPoint
from quiver.validation import as_matrix, positive_int

logger = logging.getLogger(__name__)

#: Checkpoint once the log holds this many bytes: bounds replay time and log size.
DEFAULT_CHECKPOINT_BYTES = 64 << 20
#: Consolidate in the background once this fraction of rows are tombstones.
DEFAULT_CONSOLIDATE_FRACTION = 0.25


class Collection:
    """Points with ids and payloads, searched through a 2-bit-code graph index.

    Obtain one from :class:`quiver.Database` (``create_collection`` / ``get_collection``).
    Thread safety: reads and searches run concurrently with each other and with one writer;
    writes (upsert, delete, consolidate, checkpoint, snapshot) are serialised by a lock.
    """

    def __init__(
        self,
        directory: Path,
        config: CollectionConfig,
        *,
        fsync: str = "batch",
        num_threads: int | None = None,
        checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES,
        consolidate_fraction: float = DEFAULT_CONSOLIDATE_FRACTION,
        verify_segments: bool = True,
        read_only: bool = False,
    ) -> None:
        self._dir = Path(directory)
        self.config = config
        self._read_only = bool(read_only)
        self._checkpoint_failures = 0
        self._rebase_pending = False  # a damaged log waits for a checkpoint before writes
        self._last_checkpoint_error: str | None = None
        self._checkpoint_bytes = positive_int(checkpoint_bytes, "checkpoint_bytes")
        if not 0.0 < consolidate_fraction <= 1.0:
            raise InvalidInputError(
                f"consolidate_fraction must be in (0, 1], got {consolidate_fraction}"
            )
        self._consolidate_fraction = consolidate_fraction
        self._write_lock = threading.RLock()
        self._upserts = GroupCommit(self._write_lock, self._commit_upsert)
        self._closed = False
        self._consolidator: threading.Thread | None = None
        p = config.params
        published = (self._dir / store.MANIFEST).is_file()
        if not published:
            check_never_checkpointed(self._dir, config.name)
        if published:
            self._index = Index.open(
                self._dir, num_threads=num_threads, verify_segments=verify_segments
            )
            if self._index.dim != config.dim or self._index.metric != config.metric:
                raise CorruptIndexError(f"{self._dir}: index disagrees with its config file")
            state = self._index.state()
            ids, payloads = read_points(self._dir, config.id_type, state.live[: state.count])
            self._applied_lsn = int(self._index.metadata.get("applied_lsn", 0))
        else:
            self._index = Index(
                config.dim,
                config.metric,
                max_degree=p.max_degree,
                build_list_size=p.build_list_size,
                alpha=p.alpha,
                seed=p.seed,
                num_threads=num_threads,
            )
            ids, payloads = [], []
            self._applied_lsn = 0
        self._points = PointStore(
            config.name, self._index, config.id_type, ids, payloads, self._write_lock
        )
        self._wal = WriteAheadLog(
            self._dir / WAL_DIR, config.dim, check_fsync_policy(fsync), read_only=self._read_only
        )
        replayed = 0
        for record in self._wal.replay(self._applied_lsn):
            self._points.apply(record.op, record.header, record.vectors)
            replayed += 1
        self.log_damage = self._wal.damage
        self._rebase_pending = bool(self.log_damage) and not self._read_only
        if self.log_damage:
            logger.error("%s: %s", config.name, self.log_damage)
            if self._rebase_pending:
                self._checkpoint_reporting_failure(
                    force=True
                )  # the log restarts after what is left
        elif replayed:
            logger.info("%s: replayed %d logged writes", config.name, replayed)
            if not self._read_only:
                self._checkpoint_reporting_failure()

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, directory: Path, config: CollectionConfig, **options: Any) -> Collection:
        """Create the collection's directory, config file, first (empty) checkpoint and log,
        and open it. Not atomic by itself: :class:`quiver.Database` builds it under a
        temporary name and renames it into place."""
        directory = Path(directory)
        directory.mkdir(parents=True)
        write_config(directory, config)
        collection = cls(directory, config, **options)
        collection.checkpoint(force=True)
        return collection

    @classmethod
    def open(cls, directory: Path, **options: Any) -> Collection:
        return cls(Path(directory), read_config(Path(directory)), **options)

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def metric(self) -> str:
        return self.config.metric

    @property
    def id_type(self) -> str:
        return self.config.id_type

    def __len__(self) -> int:
        return len(self._points)

    def __repr__(self) -> str:
        c = self.config
        return f"Collection({c.name!r}, dim={c.dim}, metric={c.metric!r}, count={len(self)})"

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError(f"collection {self.name!r} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnlyError(f"collection {self.name!r} is open read-only: writes are refused")
        if self._rebase_pending:  # a damaged log: no write before a checkpoint re-bases it
            self.checkpoint(force=True)

    def _check_id(self, value: Any, where: str = "id") -> int | str:
        return check_id(self.config.id_type, value, where)

    # ------------------------------------------------------------------ writes
    def upsert(self, ids: Any, vectors: Any, payloads: Any = None) -> int:
        """Insert points, or replace those whose id exists; return how many were written.

        The batch is validated whole (ids of the collection's type and distinct, vectors
        finite with the right dimension, payloads JSON objects or None) and nothing is
        written if any of it is wrong. When this returns the batch is in the write-ahead log
        (fsynced unless the database was opened with ``fsync="off"``) and visible to
        searches. Thread safety: serialised with other writes; searches go on. Concurrent
        upserts from several threads are committed together (:mod:`quiver.db.group_commit`:
        one log record, fsync and insertion pass for the group), each returning when its own
        batch is in.
        """
        x = as_matrix(vectors, self.config.dim)
        ids = check_ids(self.config.id_type, ids, x.shape[0])
        texts = check_payloads(payloads, x.shape[0])
        self._check_open()
        self._upserts.submit(ids, x, texts)
        return len(ids)

    def _commit_upsert(self, ids: list[Any], x: np.ndarray, texts: list[str | None]) -> None:
        """Commit one group of upserts (the write lock held)."""
        self._check_writable()
        self._log_upsert(ids, x, texts)

    def _log_upsert(self, ids: list[Any], x: np.ndarray, texts: list[str | None]) -> None:
        """Log, apply and follow up one checked upsert (the write lock held)."""
        self._wal.append(OP_UPSERT, {"ids": ids, "payloads": texts}, x)
        self._points.apply_upsert(ids, x, texts)
        self._after_write()

    def delete(self, ids: Any) -> int:
        """Delete points by id; return how many existed. Unknown ids are ignored.
        Thread safety: serialised with other writes; searches go on."""
        ids = check_ids(self.config.id_type, ids)
        with self._write_lock:
            self._check_writable()
            present = [i for i in ids if i in self._points.view.row_of]
            if present:
                self._wal.append(OP_DELETE, {"ids": present})
                self._points.apply_delete(present)
                self._after_write()
            return len(present)

    def delete_by_filter(self, filter: Any) -> int:  # noqa: A002 - the API's word
        """Delete every point matching ``filter``; return how many.
        Thread safety: serialised with other writes; searches go on."""
        flt = parse_filter(filter)
        with self._write_lock:
            self._check_writable()
            ids = self._points.matching_ids(flt)
            return self.delete(ids) if ids else 0

    def set_payload(
        self,
        payload: Any,
        *,
        ids: Any = None,
        filter: Any = None,
        overwrite: bool = False,  # noqa: A002
    ) -> int:
        """Merge ``payload``'s keys into the payloads of the points with ``ids`` or matching
        ``filter`` (exactly one of them); ``overwrite=True`` replaces their payloads. Returns
        how many points changed. A changed point is rewritten (a logged upsert of its stored
        vector), so it is durable and searchable when this returns. Serialised with writes."""
        return self._rewrite_payloads(ids, filter, payload_change(payload, overwrite))

    def delete_payload(self, keys: Any = None, *, ids: Any = None, filter: Any = None) -> int:  # noqa: A002
        """Remove payload ``keys`` (all of the payload when None) from the points with ``ids``
        or matching ``filter``; as :meth:`set_payload` otherwise."""
        return self._rewrite_payloads(ids, filter, keys_removed(keys))

    def _rewrite_payloads(self, ids: Any, filter: Any, change: Any) -> int:  # noqa: A002
        if (ids is None) == (filter is None):
            raise InvalidInputError("give exactly one of ids and filter")
        pids = None if ids is None else check_ids(self.config.id_type, ids)
        flt = None if filter is None else parse_filter(filter)
        with self._write_lock:
            self._check_writable()
            pids = self._points.matching_ids(flt) if pids is None else pids
            changed, x, texts = self._points.rewritten(pids, change)
            if changed:
                self._log_upsert(changed, x, texts)
            return len(changed)

    def _after_write(self) -> None:
        if self._wal.bytes >= self._checkpoint_bytes:
            self._checkpoint_reporting_failure()
        state = self._points.view.state
        if state.n_deleted > self._consolidate_fraction * max(state.count, 1) and (
            self._consolidator is None or not self._consolidator.is_alive()
        ):
            self._consolidator = threading.Thread(
                target=self._consolidate_in_background, name=f"consolidate-{self.name}"
            )
            self._consolidator.start()

    def _consolidate_in_background(self) -> None:
        try:
            self.consolidate()
        except Exception:  # a background thread has no caller to raise to
            logger.exception("%s: background consolidation failed", self.name)

    # ------------------------------------------------------------------ maintenance
    def consolidate(self) -> dict[str, Any]:
        """Reconnect the graph around deleted points, drop them, renumber, and checkpoint.

        Runs with the write lock held (writes wait) while searches go on. Also started in the
        background when tombstones exceed ``consolidate_fraction`` of the rows.
        """
        with self._write_lock:
            self._check_writable()
            result = self._index.consolidate()
            if result.removed:
                self._points.renumber(result)
                self.checkpoint(force=True)  # writes the compacted vectors, frees their RAM
            return {
                "removed": result.removed,
                "repaired": result.repaired,
                "seconds": round(result.seconds, 3),
            }

    def checkpoint(self, *, force: bool = False) -> None:
        """Publish everything written so far (points, index) and trim the log.

        Done automatically when the log exceeds ``checkpoint_bytes``, after replay on open,
        after consolidation and on close. Without ``force`` it does nothing when no write
        happened since the last one. A failure is counted in :meth:`info` and raised; the log
        still holds every write, so nothing acknowledged is lost.
        """
        with self._write_lock:
            if self._read_only:
                raise ReadOnlyError(f"collection {self.name!r} is open read-only")
            try:
                self._checkpoint(force)
            except Exception as exc:
                self._checkpoint_failures += 1
                self._last_checkpoint_error = f"{type(exc).__name__}: {exc}"
                raise

    def _checkpoint_reporting_failure(self, force: bool = False) -> None:
        """A checkpoint whose failure is logged and counted, not raised: the caller's write is
        already durable in the log."""
        try:
            self.checkpoint(force=force)
        except Exception:
            logger.exception("%s: checkpoint failed (the log keeps every write)", self.name)

    def _checkpoint(self, force: bool) -> None:
        with self._write_lock:
            lsn = self._wal.next_lsn - 1
            published = (self._dir / store.MANIFEST).is_file()
            if lsn == self._applied_lsn and published and not force:
                return
            view = self._points.view
            n = view.state.count
            gen = self._index.next_generation(self._dir)
            name = f"points-g{gen}{POINTS_SUFFIX}"
            write_points(
                self._dir / name, self.config.id_type, view.ids[:n], view.payloads[:n],
                view.state.live[:n],
            )  # fmt: skip
            self._index.save(
                self._dir, attached_files={"points": name}, metadata={"applied_lsn": lsn}
            )
            self._applied_lsn = lsn
            self._wal.rotate(lsn)
            self._rebase_pending = False
            self._points.publish()

    def snapshot(self, path: str | Path) -> Path:
        """Write a consistent copy of the collection to one file (an uncompressed tar).

        The collection is checkpointed, its files are hard-linked into a staging folder under
        the lock (instant: published files are immutable), and the tar is written from there
        while writes continue. The snapshot holds exactly the writes acknowledged before the
        call. Restore with :meth:`quiver.Database.restore_snapshot`.
        """
        staging = self._dir.parent / f".snapshot-{self.name}-{uuid.uuid4().hex[:8]}"
        with self._write_lock:
            self._check_writable()
            self.checkpoint()
            names = published_files(self._dir)
            staging.mkdir()
            for n in names:
                os.link(self._dir / n, staging / n)
        try:
            return write_snapshot(staging, names, Path(path))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def close(self) -> None:
        """Checkpoint, flush the log and stop accepting writes (idempotent)."""
        consolidator = self._consolidator
        if consolidator is not None:
            consolidator.join()
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            try:
                if not self._read_only:
                    self._checkpoint_reporting_failure()
            finally:
                self._wal.close()

    # ------------------------------------------------------------------ reads
    def create_payload_index(self, key: str) -> None:
        """Build the column for payload field ``key`` now (otherwise the first filter on it
        builds it). Columns are kept up to date by every write. Takes the write lock."""
        self._points.build_column(key)

    def get(self, id: Any, *, with_payload: Any = True, with_vector: bool = False) -> Point:  # noqa: A002
        """The point with this id; :class:`PointNotFoundError` if there is none.
        ``with_payload``: True, False or a list of payload keys. Thread-safe (no lock)."""
        selection = payload_selection(with_payload)
        return self._points.get(self._check_id(id), selection, with_vector)

    def retrieve(
        self, ids: Any, *, with_payload: Any = True, with_vector: bool = False
    ) -> list[Point]:
        """The points with these ids, in the order asked; missing ids are skipped.
        Thread-safe (no lock)."""
        pids = check_ids(self.config.id_type, ids)
        return self._points.retrieve(pids, payload_selection(with_payload), with_vector)

    def count(self, filter: Any = None) -> int:  # noqa: A002
        """Number of live points, or of those matching ``filter``. Thread-safe (no lock)."""
        return self._points.count(parse_filter(filter))

    def scroll(
        self,
        *,
        limit: int = 100,
        offset: Any = None,
        filter: Any = None,  # noqa: A002
        with_payload: Any = True,
        with_vector: bool = False,
    ) -> tuple[list[Point], Any]:
        """One page of points in id order (numeric for uint64 ids, by code point for string
        ids), starting at id ``offset`` (inclusive).

        Returns ``(points, next_offset)``; ``next_offset`` is None after the last page. The
        offset is a position in id order, not a point: the next page continues after it
        whether or not that point still exists, so writes during a scroll never make a page
        skip or repeat a point that was there all along (a point inserted or deleted ahead of
        the scroll is seen or not, as of the page that reaches it). Thread-safe (no lock).
        """
        limit = positive_int(limit, "limit")
        flt = parse_filter(filter)
        start = None if offset is None else self._check_id(offset, "offset")
        return self._points.scroll(limit, start, flt, payload_selection(with_payload), with_vector)

    # ------------------------------------------------------------------ search
    def search(
        self, vector: Any = None, *, query_id: Any = None, **options: Any
    ) -> list[ScoredPoint]:
        """The ``k`` nearest points to ``vector`` or to the stored point ``query_id``.

        ``options`` are the fields of :class:`~quiver.db.request.SearchRequest`: ``k``
        (default 10), ``ef`` (default max(64, k)) or ``target_recall``, ``rerank``,
        ``filter``, ``score_threshold``, ``offset``, ``with_payload`` (bool or a list of
        payload keys) and ``with_vector``. With ``query_id`` the point itself is left out.
        Thread-safe (no lock; runs alongside writes on a consistent snapshot).
        """
        if (vector is None) == (query_id is None):
            raise InvalidInputError("give exactly one of vector and query_id")
        if query_id is not None:
            return self.query(SearchRequest(ids=[query_id], **options))[0]
        request = SearchRequest(vectors=vector, **options)
        if request.vectors.shape[0] != 1:
            raise InvalidInputError(
                f"vector must be one vector, got {request.vectors.shape[0]} rows"
            )
        return self.query(request)[0]

    def search_batch(self, vectors: Any, **options: Any) -> list[list[ScoredPoint]]:
        """:meth:`search` for many query vectors at once (searched in parallel).
        Thread-safe (no lock)."""
        return self.query(SearchRequest(vectors=vectors, **options))

    def query(self, request: SearchRequest) -> list[list[ScoredPoint]]:
        """Run a :class:`~quiver.db.request.SearchRequest`: one hit list per query.
        Thread-safe (no lock)."""
        return self._points.query(request)

    def query_compact(self, request: SearchRequest) -> CompactHits:
        """:meth:`query` with the hits as arrays (:class:`~quiver.types.CompactHits`: ids,
        scores and a count per query), without one object per hit: for collections of
        integer ids and requests without payloads or vectors (``InvalidInputError``
        otherwise). Thread-safe (no lock)."""
        return self._points.query_compact(request)

    def ef_for_recall(self, target_recall: float, k: int = 10) -> int:
        """The ``ef`` a search for ``k`` results with ``target_recall`` uses: the smallest
        that reached that recall@k in the collection's calibration (made on first use, see
        :meth:`quiver.Index.ef_for_recall`). Thread-safe (no lock)."""
        return self._points.ef_for_recall(target_recall, positive_int(k, "k"))

    def explain(
        self,
        filter: Any = None,  # noqa: A002
        *,
        k: int = 10,
        ef: int | None = None,
        rerank: int | None = None,
    ) -> dict[str, Any]:
        """How a search with this filter would run, without running it: ``strategy``
        ("graph", "filtered-graph" or "scan"), ``matches`` (rows it may return), ``ef`` and
        ``rerank`` (see :mod:`quiver.db.planner`). Thread-safe (no lock)."""
        return self._points.explain(parse_filter(filter), k, ef, rerank)

    # ------------------------------------------------------------------ info
    def _status(self) -> str:
        if self._closed:
            return "closed"
        return "degraded" if self.log_damage else "green"

    def info(self) -> dict[str, Any]:
        """Counts, memory, parameters and state of the collection."""
        stats = self._index.stats()
        view = self._points.view
        return {
            "name": self.name,
            "count": len(view.row_of),
            "dim": self.dim,
            "metric": self.metric,
            "id_type": self.id_type,
            "params": self.config.params.to_dict(),
            "hot_bytes": stats["hot_bytes"],
            "cold_bytes": stats["cold_bytes"],
            "deleted": stats["deleted"],
            "wal_bytes": self._wal.bytes,
            "applied_lsn": self._applied_lsn,
            "status": self._status(),
            "read_only": self._read_only,
            "checkpoint_failures": self._checkpoint_failures,
            "last_checkpoint_error": self._last_checkpoint_error,
            "log_damage": self.log_damage,
            "payload_indexes": sorted(view.columns),
            "diagnosis": stats.get("diagnosis"),
            "path": str(self._dir),
        }
