"""A collection: the user's points (ids, vectors, JSON payloads) over one :class:`Index`.

Writes go to the write-ahead log first, then to memory; a checkpoint publishes everything up
to a log position atomically (the index's manifest names the points file and the position)
and trims the log. Opening loads the last checkpoint and replays the log after it.

Rows: every point version is one row of the index; an upsert of an existing id appends a new
row and tombstones the old one, a delete tombstones. Row-aligned lists hold each row's id and
payload. :meth:`Collection.consolidate` drops tombstoned rows and renumbers the rest.

Concurrency: one writer at a time (a lock), any number of readers without a lock. Readers
capture a :class:`~quiver.db.view.CollectionView` (an index snapshot plus the row-aligned
data) and read only rows it covers; the writer appends beyond them and publishes a new view
when done. docs/DURABILITY.md states the guarantees.

Searches are planned by :mod:`quiver.db.planner` and executed by :mod:`quiver.db.query`;
the files are :mod:`quiver.db.files`.

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
    published_files,
    read_config,
    read_points,
    write_config,
    write_points,
    write_snapshot,
)
from quiver.db.filters import parse_filter
from quiver.db.id_order import IdOrder
from quiver.db.ids import check_id, check_ids
from quiver.db.payloads import FieldColumn, check_payloads, decode_payload, field_value
from quiver.db.planner import FilterPlanner
from quiver.db.query import QueryExecutor, make_point
from quiver.db.request import SearchRequest, payload_selection
from quiver.db.view import CollectionView
from quiver.db.wal import (
    OP_DELETE,
    OP_UPSERT,
    WriteAheadLog,
    check_fsync_policy,
    first_lsn,
    start_log,
)
from quiver.engine import store
from quiver.errors import CorruptIndexError, InvalidInputError, PointNotFoundError, ReadOnlyError
from quiver.index import Index
from quiver.params import SearchParams
from quiver.types import Point, ScoredPoint
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
        self._closed = False
        self._consolidator: threading.Thread | None = None
        self._searches = 0  # searches in flight: writes then link on one thread
        self._searches_lock = threading.Lock()
        p = config.params
        published = (self._dir / store.MANIFEST).is_file()
        if not published:
            self._check_never_checkpointed()
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
        state = self._index.state()
        live = np.flatnonzero(state.live[: state.count])
        row_of = {ids[r]: int(r) for r in live}
        self._view = CollectionView(state, ids, payloads, {}, row_of)
        self._id_order = IdOrder(config.id_type)
        self._planner = FilterPlanner(self._index, self._column, self._row_of_filter_id)
        self._executor = QueryExecutor(self._index, self._planner, config.metric)
        self._wal = WriteAheadLog(
            self._dir / WAL_DIR, config.dim, check_fsync_policy(fsync), read_only=self._read_only
        )
        replayed = 0
        for record in self._wal.replay(self._applied_lsn):
            self._apply(record.op, record.header, record.vectors)
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

    def _check_never_checkpointed(self) -> None:
        """Whether a directory without a manifest is a collection that never completed a
        checkpoint (its log still starts at record 1, holding every write, and only leftovers
        of an unfinished first checkpoint may lie around) rather than one whose manifest was
        lost: then its data files are all that is left, and nothing may treat it as new."""
        logs = sorted((self._dir / WAL_DIR).glob("wal-*.log"))
        if logs and first_lsn(logs[0]) == 1:
            return
        data = [p.name for p in self._dir.iterdir() if store.is_index_file(p.name)]
        if data or logs:
            raise CorruptIndexError(
                f"collection {self.config.name!r}: {store.MANIFEST} is missing but data files "
                f"remain ({', '.join(sorted(data + [p.name for p in logs])[:5])}...): the "
                "collection is damaged; nothing was changed (restore it from a snapshot)"
            )

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

    @staticmethod
    def prepare_restored(directory: Path) -> None:
        """Give an unpacked snapshot the log a checkpoint leaves behind (an empty file that
        starts after the checkpoint's position), so that a later lost log is detectable."""
        applied = int(store.read_manifest(directory).get("metadata", {}).get("applied_lsn", 0))
        start_log(directory / WAL_DIR, applied + 1)

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
        return len(self._view.row_of)

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
        searches. Thread safety: serialised with other writes; searches go on.
        """
        x = as_matrix(vectors, self.config.dim)
        ids = check_ids(self.config.id_type, ids, x.shape[0])
        texts = check_payloads(payloads, x.shape[0])
        with self._write_lock:
            self._check_writable()
            self._wal.append(OP_UPSERT, {"ids": ids, "payloads": texts}, x)
            self._apply_upsert(ids, x, texts)
            self._after_write()
        return len(ids)

    def delete(self, ids: Any) -> int:
        """Delete points by id; return how many existed. Unknown ids are ignored.
        Thread safety: serialised with other writes; searches go on."""
        ids = check_ids(self.config.id_type, ids)
        with self._write_lock:
            self._check_writable()
            present = [i for i in ids if i in self._view.row_of]
            if present:
                self._wal.append(OP_DELETE, {"ids": present})
                self._apply_delete(present)
                self._after_write()
            return len(present)

    def delete_by_filter(self, filter: Any) -> int:  # noqa: A002 - the API's word
        """Delete every point matching ``filter``; return how many.
        Thread safety: serialised with other writes; searches go on."""
        flt = parse_filter(filter)
        with self._write_lock:
            self._check_writable()
            view = self._view
            rows = np.flatnonzero(self._planner.mask(view, flt))
            return self.delete([view.ids[r] for r in rows]) if rows.size else 0

    def _apply(self, op: int, header: dict[str, Any], vectors: np.ndarray | None) -> None:
        if op == OP_UPSERT:
            self._apply_upsert(header["ids"], np.array(vectors), header["payloads"])
        elif op == OP_DELETE:
            self._apply_delete([i for i in header["ids"] if i in self._view.row_of])
        else:
            raise CorruptIndexError(f"{self._dir}: unknown logged operation {op}")

    def _apply_upsert(self, ids: list[Any], x: np.ndarray, texts: list[str | None]) -> None:
        view = self._view
        start = view.state.count
        old_rows = [view.row_of[i] for i in ids if i in view.row_of]
        if view.columns:
            parsed = [decode_payload(t) for t in texts]
            for key, column in view.columns.items():
                column.append([field_value(p, key) for p in parsed])
        view.ids.extend(ids)
        view.payloads.extend(texts)
        # with searches running, link on one thread so that reads keep the other cores
        self._index.add(x, num_threads=1 if self._searches else None)
        self._publish()
        for r, i in enumerate(ids):  # after the publish: a reader finding the row can see it
            view.row_of[i] = start + r
        if old_rows:
            self._index.delete_rows(np.array(old_rows, dtype=np.int64))
            self._publish()

    def _apply_delete(self, ids: list[Any]) -> None:
        view = self._view
        rows = [view.row_of.pop(i) for i in ids]
        self._index.delete_rows(np.array(rows, dtype=np.int64))
        self._publish()

    def _publish(self) -> None:
        self._view = self._view._replace(state=self._index.state())

    def _after_write(self) -> None:
        if self._wal.bytes >= self._checkpoint_bytes:
            self._checkpoint_reporting_failure()
        state = self._view.state
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
                view = self._view
                keep = result.kept_rows
                ids = [view.ids[r] for r in keep]
                payloads = [view.payloads[r] for r in keep]
                columns = {k: c.take(keep) for k, c in view.columns.items()}
                row_of = {pid: r for r, pid in enumerate(ids)}
                self._view = CollectionView(self._index.state(), ids, payloads, columns, row_of)
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
            view = self._view
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
            self._publish()

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
    def _locate(self, pid: Any) -> tuple[CollectionView, int | None]:
        view = self._view
        row = view.row_of.get(pid)
        if row is not None and row >= view.state.count:
            view = self._view  # the writer published this row just before recording it
            row = view.row_of.get(pid)
        return view, row

    def _row_of_filter_id(self, view: CollectionView, pid: Any) -> int | None:
        return view.row_of.get(self._check_id(pid, "has_id"))

    def _column(self, view: CollectionView, key: str) -> FieldColumn:
        column = view.columns.get(key)
        if column is not None:
            return column
        with self._write_lock:  # built once, with no write in between
            column = view.columns.get(key)
            if column is None:
                column = FieldColumn()
                column.append([field_value(decode_payload(t), key) for t in view.payloads])
                view.columns[key] = column
                logger.info("%s: built payload column %r", self.name, key)
        return column

    def create_payload_index(self, key: str) -> None:
        """Build the column for payload field ``key`` now (otherwise the first filter on it
        builds it). Columns are kept up to date by every write."""
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"payload key must be a non-empty string, got {key!r}")
        self._column(self._view, key)

    def get(self, id: Any, *, with_payload: Any = True, with_vector: bool = False) -> Point:  # noqa: A002
        """The point with this id; :class:`PointNotFoundError` if there is none.
        ``with_payload``: True, False or a list of payload keys. Thread-safe (no lock)."""
        pid = self._check_id(id)
        view, row = self._locate(pid)
        if row is None:
            raise PointNotFoundError(f"no point with id {pid!r} in collection {self.name!r}")
        return make_point(self._index, view, row, payload_selection(with_payload), with_vector)

    def retrieve(
        self, ids: Any, *, with_payload: Any = True, with_vector: bool = False
    ) -> list[Point]:
        """The points with these ids, in the order asked; missing ids are skipped.
        Thread-safe (no lock)."""
        selection = payload_selection(with_payload)
        out = []
        for pid in check_ids(self.config.id_type, ids):
            view, row = self._locate(pid)
            if row is not None:
                out.append(make_point(self._index, view, row, selection, with_vector))
        return out

    def count(self, filter: Any = None) -> int:  # noqa: A002
        """Number of live points, or of those matching ``filter``. Thread-safe (no lock)."""
        flt = parse_filter(filter)
        view = self._view
        if flt is None:
            return len(view.row_of)
        return int(self._planner.mask(view, flt).sum())

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
        selection = payload_selection(with_payload)
        start = None if offset is None else self._check_id(offset, "offset")
        view = self._view
        mask = self._planner.mask(view, flt)
        rows = self._id_order.page(view.ids, view.state.count, mask, start, limit + 1)
        points = [
            make_point(self._index, view, int(r), selection, with_vector) for r in rows[:limit]
        ]
        next_offset = view.ids[int(rows[limit])] if rows.shape[0] > limit else None
        return points, next_offset

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

    def explain(self, filter: Any = None, *, k: int = 10, ef: int | None = None) -> dict[str, Any]:  # noqa: A002
        """How a search with this filter would run, without running it: ``strategy``
        ("graph", "filtered-graph" or "scan"), ``matches`` (rows it may return), ``ef`` and
        ``rerank`` (see :mod:`quiver.db.planner`). Thread-safe (no lock)."""
        k, ef, _ = SearchParams(k, ef).resolve(self._index.ef_for_recall)
        view = self._view
        plan = self._planner.plan(view, parse_filter(filter), k, ef)
        return self._planner.describe(view, plan)

    def query(self, request: SearchRequest) -> list[list[ScoredPoint]]:
        """Run a :class:`~quiver.db.request.SearchRequest`: one hit list per query.
        Thread-safe (no lock)."""
        view, excluded = self._view, None
        if request.ids is not None:
            pids = [self._check_id(i, "query_id") for i in request.ids]
            rows = []
            for pid in pids:
                view, row = self._locate(pid)
                if row is None:
                    raise PointNotFoundError(
                        f"no point with id {pid!r} in collection {self.name!r}"
                    )
                rows.append(row)
            queries, excluded = self._index.vectors_of_rows(view.state, rows), pids
        else:
            queries = request.vectors
            if queries.shape[1] != self.config.dim:
                raise InvalidInputError(
                    f"vectors dimension mismatch: expected {self.config.dim}, "
                    f"got {queries.shape[1]}"
                )
            queries = queries.copy()  # normalised in place by the executor
        _, ef, _ = request.params.resolve(self._index.ef_for_recall)
        with self._searches_lock:
            self._searches += 1
        try:
            return self._executor.run(
                view, queries, request, ef, excluded, current=view is self._view
            )
        finally:
            with self._searches_lock:
                self._searches -= 1

    # ------------------------------------------------------------------ info
    def _status(self) -> str:
        if self._closed:
            return "closed"
        return "degraded" if self.log_damage else "green"

    def info(self) -> dict[str, Any]:
        """Counts, memory, parameters and state of the collection."""
        stats = self._index.stats()
        view = self._view
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
