"""A collection: the user's points (ids, vectors, JSON payloads) over one :class:`Index`.

Writes go to the write-ahead log first, then to memory; a checkpoint publishes everything up
to a log position atomically (the index's manifest names the points file and the position)
and trims the log. Opening loads the last checkpoint and replays the log after it.

Rows: every point version is one row of the index; an upsert of an existing id appends a new
row and tombstones the old one, a delete tombstones. Row-aligned lists hold each row's id and
payload. :meth:`Collection.consolidate` drops tombstoned rows and renumbers the rest.

Concurrency: one writer at a time (a lock), any number of readers without a lock. Readers
capture a :class:`_View` (an index snapshot plus the row-aligned data) and read only rows it
covers; the writer appends beyond them and publishes a new view when done. See the README's
"Durability and concurrency" section for the guarantees.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tarfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from quiver import store
from quiver.errors import (
    CorruptIndexError,
    InvalidInputError,
    PointNotFoundError,
)
from quiver.filters import Filter, evaluate, parse_filter
from quiver.index import Index, IndexState, Selection
from quiver.metrics import METRIC_NAMES, parse_metric
from quiver.params import DEFAULT_EF, BuildParams
from quiver.payloads import FieldColumn, decode_payload, encode_payload, field_value
from quiver.types import Point, ScoredPoint
from quiver.validation import as_matrix, positive_int
from quiver.wal import OP_DELETE, OP_UPSERT, WriteAheadLog, check_fsync_policy

logger = logging.getLogger(__name__)

CONFIG_FILE = "collection.json"
WAL_DIR = "wal"
ID_TYPES = ("uint64", "string")
MAX_STRING_ID = 512
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Checkpoint once the log holds this many bytes: bounds replay time and log size.
DEFAULT_CHECKPOINT_BYTES = 64 << 20
#: Consolidate in the background once this fraction of rows are tombstones.
DEFAULT_CONSOLIDATE_FRACTION = 0.25
#: Filtered search scores the matching rows' codes directly (``search.scan_rows``: a 1-bit
#: estimate over every match, the full query distance on a shortlist) when there are at most
#: this many matches per unit of ef. The scan's cost grows with the matches, a graph search's
#: with ef; the break-even is measured in bench/results/PERF.md (filtered search, session 3).
SCAN_ROWS_PER_EF = 512
#: Filter selections (matching rows, and their codes for a scan) kept, each for one snapshot.
SELECTION_CACHE_SIZE = 8
#: Filters whose match masks (one byte per row) are kept and extended across writes.
MATCH_CACHE_SIZE = 32
#: Above the scan limit the graph search's list grows as ef * sqrt(FILTER_EF_SELECTIVITY / s)
#: (at most 4 ef), so that the matches met on the way still fill the result list.
FILTER_EF_SELECTIVITY = 0.25
#: Extra results asked of the index beyond k (see Collection._search).
RESULT_MARGIN = 8


class _RecentFilters:
    """The most recently used entries of a per-filter cache, shared by threads.

    Keys hold parsed filters; a filter that cannot be hashed (an unhashable ``has_id``
    element, rejected later by the evaluation) is simply never cached.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        try:
            with self._lock:
                value = self._items.get(key)
                if value is not None:
                    self._items.move_to_end(key)
                return value
        except TypeError:
            return None

    def put(self, key: Any, value: Any) -> None:
        try:
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        except TypeError:
            pass


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(f"collection name must match [A-Za-z0-9_-]{{1,64}}, got {name!r}")
    return name


@dataclass(frozen=True)
class CollectionConfig:
    """What a collection is created with; fixed for its lifetime."""

    name: str
    dim: int
    metric: str = "cosine"
    id_type: str = "uint64"
    params: BuildParams = BuildParams()

    def __post_init__(self) -> None:
        check_name(self.name)
        positive_int(self.dim, "dim")
        object.__setattr__(self, "metric", METRIC_NAMES[parse_metric(self.metric)])
        if self.id_type not in ID_TYPES:
            raise InvalidInputError(
                f"id_type must be one of {list(ID_TYPES)}, got {self.id_type!r}"
            )

    def renamed(self, name: str) -> CollectionConfig:
        return CollectionConfig(name, self.dim, self.metric, self.id_type, self.params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "metric": self.metric,
            "id_type": self.id_type,
            "params": self.params.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionConfig:
        return cls(d["name"], int(d["dim"]), d["metric"], d["id_type"], BuildParams(**d["params"]))


class _View(NamedTuple):
    """A consistent read snapshot: index state plus row-aligned data covering its rows."""

    state: IndexState
    ids: list[Any]  # row -> user id
    payloads: list[str | None]  # row -> payload JSON text
    columns: dict[str, FieldColumn]  # payload field -> column (shared, grown by the writer)
    row_of: dict[Any, int]  # live id -> row (shared, updated by the writer)


class Collection:
    """Points with ids and payloads, searched through a 2-bit-code graph index.

    Obtain one from :class:`quiver.Database` (``create_collection`` / ``get_collection``).
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
    ) -> None:
        self._dir = Path(directory)
        self.config = config
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
        # (filter, scan) -> (view, its Selection): _selection
        self._selections = _RecentFilters(SELECTION_CACHE_SIZE)
        # filter -> (row numbering it was computed under, match mask of rows 0..m): _matches
        self._matched = _RecentFilters(MATCH_CACHE_SIZE)
        p = config.params
        if (self._dir / store.MANIFEST).is_file():
            self._index = Index.open(
                self._dir, num_threads=num_threads, verify_segments=verify_segments
            )
            if self._index.dim != config.dim or self._index.metric != config.metric:
                raise CorruptIndexError(f"{self._dir}: index disagrees with {CONFIG_FILE}")
            ids, payloads = self._read_points()
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
        self._view = _View(state, ids, payloads, {}, row_of)
        self._wal = WriteAheadLog(self._dir / WAL_DIR, config.dim, check_fsync_policy(fsync))
        replayed = 0
        for record in self._wal.replay(self._applied_lsn):
            self._apply(record.op, record.header, record.vectors)
            replayed += 1
        if replayed:
            logger.info("%s: replayed %d logged writes", config.name, replayed)
            self.checkpoint()

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, directory: Path, config: CollectionConfig, **options: Any) -> Collection:
        """Create the collection's directory and config file (atomically) and open it."""
        directory = Path(directory)
        directory.mkdir(parents=True)
        write_config(directory, config)
        return cls(directory, config, **options)

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

    # ------------------------------------------------------------------ validation
    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError(f"collection {self.name!r} is closed")

    def _check_id(self, value: Any, where: str = "id") -> int | str:
        if self.config.id_type == "uint64":
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InvalidInputError(
                    f"{where} must be an unsigned integer (id_type uint64), got "
                    f"{type(value).__name__} {value!r}"
                )
            if not 0 <= int(value) < 1 << 64:
                raise InvalidInputError(f"{where} must be in [0, 2**64), got {value}")
            return int(value)
        if not isinstance(value, str):
            raise InvalidInputError(
                f"{where} must be a string (id_type string), got {type(value).__name__} {value!r}"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"{where} is not valid Unicode text: {exc}") from exc
        if not 0 < len(value) <= MAX_STRING_ID:
            raise InvalidInputError(
                f"{where} must have 1 to {MAX_STRING_ID} characters, got {len(value)}"
            )
        return value

    def _check_ids(self, ids: Any, n: int | None = None) -> list[Any]:
        if isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray):
            raise InvalidInputError(f"ids must be a list, got {type(ids).__name__}")
        out = [self._check_id(v, f"ids[{i}]") for i, v in enumerate(ids)]
        if n is not None and len(out) != n:
            raise InvalidInputError(
                f"ids length mismatch: expected {n} (one per vector), got {len(out)}"
            )
        if len(set(out)) != len(out):
            seen: set[Any] = set()
            dup = next(v for v in out if v in seen or seen.add(v))
            raise InvalidInputError(
                f"ids must be distinct within a batch (no last-wins): {dup!r} repeats"
            )
        return out

    @staticmethod
    def _check_payloads(payloads: Any, n: int) -> list[str | None]:
        if payloads is None:
            return [None] * n
        if isinstance(payloads, dict) or not isinstance(payloads, Sequence):
            raise InvalidInputError(
                f"payloads must be a list (one per point), got {type(payloads).__name__}"
            )
        if len(payloads) != n:
            raise InvalidInputError(
                f"payloads length mismatch: expected {n} (one per point), got {len(payloads)}"
            )
        return [encode_payload(p, f"payloads[{i}]") for i, p in enumerate(payloads)]

    # ------------------------------------------------------------------ writes
    def upsert(self, ids: Any, vectors: Any, payloads: Any = None) -> int:
        """Insert points, or replace those whose id exists; return how many were written.

        The batch is validated whole (ids of the collection's type and distinct, vectors
        finite with the right dimension, payloads JSON objects or None) and nothing is
        written if any of it is wrong. When this returns the batch is in the write-ahead log
        (fsynced unless the database was opened with ``fsync="off"``) and visible to
        searches.
        """
        x = as_matrix(vectors, self.config.dim)
        ids = self._check_ids(ids, x.shape[0])
        texts = self._check_payloads(payloads, x.shape[0])
        with self._write_lock:
            self._check_open()
            self._wal.append(OP_UPSERT, {"ids": ids, "payloads": texts}, x)
            self._apply_upsert(ids, x, texts)
            self._after_write()
        return len(ids)

    def delete(self, ids: Any) -> int:
        """Delete points by id; return how many existed. Unknown ids are ignored."""
        ids = self._check_ids(ids)
        with self._write_lock:
            self._check_open()
            present = [i for i in ids if i in self._view.row_of]
            if present:
                self._wal.append(OP_DELETE, {"ids": present})
                self._apply_delete(present)
                self._after_write()
            return len(present)

    def delete_by_filter(self, filter: Any) -> int:  # noqa: A002 - the API's word
        """Delete every point matching ``filter``; return how many."""
        flt = parse_filter(filter)
        with self._write_lock:
            self._check_open()
            view = self._view
            rows = np.flatnonzero(self._mask(view, flt))
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
        v = self._view
        self._view = _View(self._index.state(), v.ids, v.payloads, v.columns, v.row_of)

    def _after_write(self) -> None:
        if self._wal.bytes >= self._checkpoint_bytes:
            self.checkpoint()
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
            self._check_open()
            result = self._index.consolidate()
            if result.removed:
                view = self._view
                keep = result.kept_rows
                ids = [view.ids[r] for r in keep]
                payloads = [view.payloads[r] for r in keep]
                columns = {k: c.take(keep) for k, c in view.columns.items()}
                row_of = {pid: r for r, pid in enumerate(ids)}
                self._view = _View(self._index.state(), ids, payloads, columns, row_of)
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
        happened since the last one.
        """
        with self._write_lock:
            lsn = self._wal.next_lsn - 1
            published = (self._dir / store.MANIFEST).is_file()
            if lsn == self._applied_lsn and published and not force:
                return
            view = self._view
            gen = self._index.next_generation(self._dir)
            name = f"points-g{gen}.arrow"
            self._write_points(self._dir / name, view)
            self._index.save(
                self._dir, attached_files={"points": name}, metadata={"applied_lsn": lsn}
            )
            self._applied_lsn = lsn
            self._wal.rotate(lsn)
            self._publish()

    def _write_points(self, path: Path, view: _View) -> None:
        n = view.state.count
        id_type = pa.uint64() if self.config.id_type == "uint64" else pa.string()
        table = pa.table(
            {
                "id": pa.array(view.ids[:n], type=id_type),
                "payload": pa.array(view.payloads[:n], type=pa.string()),
                "live": pa.array(view.state.live[:n].astype(bool), type=pa.bool_()),
            }
        )
        with open(path, "wb") as fh:
            with pa.ipc.new_file(fh, table.schema) as writer:
                writer.write_table(table)
            fh.flush()
            os.fsync(fh.fileno())

    def _read_points(self) -> tuple[list[Any], list[str | None]]:
        manifest = store.read_manifest(self._dir)
        name = manifest["files"].get("points")
        if name is None:
            raise CorruptIndexError(f"{self._dir}: manifest names no points file")
        try:
            with pa.memory_map(str(self._dir / name), "r") as source:
                table = pa.ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise CorruptIndexError(f"{self._dir}: points file {name} unreadable: {exc}") from exc
        if table.num_rows != self._index.state().count:
            raise CorruptIndexError(
                f"{self._dir}: {name} has {table.num_rows} rows, the index "
                f"{self._index.state().count}"
            )
        return table.column("id").to_pylist(), table.column("payload").to_pylist()

    def snapshot(self, path: str | Path) -> Path:
        """Write a consistent copy of the collection to one file (an uncompressed tar).

        The collection is checkpointed, its files are hard-linked into a staging folder under
        the lock (instant: published files are immutable), and the tar is written from there
        while writes continue. The snapshot holds exactly the writes acknowledged before the
        call. Restore with :meth:`quiver.Database.restore_snapshot`.
        """
        target = Path(path)
        staging = self._dir.parent / f".snapshot-{self.name}-{uuid.uuid4().hex[:8]}"
        with self._write_lock:
            self._check_open()
            self.checkpoint()
            manifest = store.read_manifest(self._dir)
            names = [CONFIG_FILE, store.MANIFEST]
            names += [s["file"] for s in manifest["segments"]] + list(manifest["files"].values())
            staging.mkdir()
            for n in names:
                os.link(self._dir / n, staging / n)
        tmp = target.with_name(target.name + ".tmp")
        try:
            with tarfile.open(tmp, "w") as tar:
                for n in names:
                    tar.add(staging / n, arcname=n)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)  # no partial snapshot left behind (full disk...)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def close(self) -> None:
        """Checkpoint, flush the log and stop accepting writes (idempotent)."""
        consolidator = self._consolidator
        if consolidator is not None:
            consolidator.join()
        with self._write_lock:
            if self._closed:
                return
            self.checkpoint()
            self._wal.close()
            self._closed = True

    # ------------------------------------------------------------------ reads
    def _locate(self, pid: Any) -> tuple[_View, int | None]:
        view = self._view
        row = view.row_of.get(pid)
        if row is not None and row >= view.state.count:
            view = self._view  # the writer published this row just before recording it
            row = view.row_of.get(pid)
        return view, row

    def _column(self, view: _View, key: str) -> FieldColumn:
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

    def _mask(self, view: _View, flt: Filter | None) -> np.ndarray:
        """Live rows of ``view`` that match ``flt`` (bool, one per row)."""
        n = view.state.count
        live = view.state.live[:n].astype(bool)
        if flt is None:
            return live
        return live & self._matches(view, flt)

    def _matches(self, view: _View, flt: Filter) -> np.ndarray:
        """Rows of ``view`` (live or not) that match ``flt``, extended incrementally.

        A row's payload never changes once written (an upsert writes a new row and tombstones
        the old one) and liveness is applied apart, so the match mask of rows ``0..m`` stays
        true for every later view until a consolidation renumbers the rows (its new ``ids``
        list marks that): a filter reused under a stream of writes evaluates only the new rows.
        """
        n = view.state.count

        def rows_of_ids(ids: tuple[Any, ...]) -> np.ndarray:
            rows = [view.row_of.get(self._check_id(i, "has_id")) for i in ids]
            return np.array([r for r in rows if r is not None], dtype=np.int64)

        def column(key: str) -> FieldColumn:
            return self._column(view, key)

        known = self._matched.get(flt)
        if known is not None and known[0] is view.ids and known[1].shape[0] <= n:
            done = known[1].shape[0]
            mask = np.concatenate([known[1], evaluate(flt, n, column, rows_of_ids, done)])
        else:
            mask = evaluate(flt, n, column, rows_of_ids)
        self._matched.put(flt, (view.ids, mask))
        return mask

    def _selection(self, view: _View, flt: Filter, scan: bool) -> Selection:
        """The rows of ``view`` matching ``flt``, cached for the current view: a filter used
        again (one tenant, one language...) is evaluated over all points once per write, not
        once per query (at 180k points that evaluation costs 1-3 ms, a search 0.1-0.4 ms)."""
        known = self._selections.get((flt, scan))
        if known is not None and known[0] is view:
            return known[1]
        if scan:
            base = self._selection(view, flt, scan=False)
            value = base._replace(row_codes=view.state.codes[base.rows], scan=True)
        else:
            # select() applies the live flags itself
            value = self._index.select(view.state, self._matches(view, flt).view(np.uint8))
        if view is self._view:  # never cache a snapshot that is already stale
            self._selections.put((flt, scan), (view, value))
        return value

    def create_payload_index(self, key: str) -> None:
        """Build the column for payload field ``key`` now (otherwise the first filter on it
        builds it). Columns are kept up to date by every write."""
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"payload key must be a non-empty string, got {key!r}")
        self._column(self._view, key)

    def _point(self, view: _View, row: int, with_payload: bool, with_vector: bool) -> Point:
        return Point(
            view.ids[row],
            decode_payload(view.payloads[row]) if with_payload else None,
            self._index.vectors_of_rows(view.state, [row])[0].tolist() if with_vector else None,
        )

    def get(self, id: Any, *, with_payload: bool = True, with_vector: bool = False) -> Point:  # noqa: A002
        """The point with this id; :class:`PointNotFoundError` if there is none."""
        pid = self._check_id(id)
        view, row = self._locate(pid)
        if row is None:
            raise PointNotFoundError(f"no point with id {pid!r} in collection {self.name!r}")
        return self._point(view, row, with_payload, with_vector)

    def retrieve(
        self, ids: Any, *, with_payload: bool = True, with_vector: bool = False
    ) -> list[Point]:
        """The points with these ids, in the order asked; missing ids are skipped."""
        out = []
        for pid in self._check_ids(ids):
            view, row = self._locate(pid)
            if row is not None:
                out.append(self._point(view, row, with_payload, with_vector))
        return out

    def count(self, filter: Any = None) -> int:  # noqa: A002
        """Number of live points, or of those matching ``filter``."""
        flt = parse_filter(filter)
        view = self._view
        if flt is None:
            return len(view.row_of)
        return int(self._mask(view, flt).sum())

    def scroll(
        self,
        *,
        limit: int = 100,
        offset: Any = None,
        filter: Any = None,  # noqa: A002
        with_payload: bool = True,
        with_vector: bool = False,
    ) -> tuple[list[Point], Any]:
        """One page of points in storage order, starting at id ``offset`` (inclusive).

        Returns ``(points, next_offset)``; ``next_offset`` is None after the last page. Pages
        stay consistent while nothing is written; a point upserted during a scroll moves to
        the end (it may be seen twice or, if deleted, not at all).
        """
        limit = positive_int(limit, "limit")
        flt = parse_filter(filter)
        view = self._view
        start = 0
        if offset is not None:
            view, row = self._locate(self._check_id(offset, "offset"))
            if row is None:
                raise PointNotFoundError(f"scroll offset {offset!r} is not a live point id")
            start = row
        mask = self._mask(view, flt)
        rows = np.flatnonzero(mask[start:])[: limit + 1] + start
        points = [self._point(view, int(r), with_payload, with_vector) for r in rows[:limit]]
        next_offset = view.ids[int(rows[limit])] if rows.shape[0] > limit else None
        return points, next_offset

    # ------------------------------------------------------------------ search
    def _score(self, distance: float) -> float:
        if self.config.metric == "cosine":
            return 1.0 - distance
        if self.config.metric == "ip":
            return -distance
        return distance

    def _passes(self, score: float, threshold: float | None) -> bool:
        if threshold is None:
            return True
        return score <= threshold if self.config.metric == "l2" else score >= threshold

    def search(
        self,
        vector: Any = None,
        *,
        query_id: Any = None,
        k: int = 10,
        ef: int | None = None,
        filter: Any = None,  # noqa: A002
        score_threshold: float | None = None,
        with_payload: bool = False,
        with_vector: bool = False,
        target_recall: float | None = None,
    ) -> list[ScoredPoint]:
        """The ``k`` nearest points to ``vector`` or to the stored point ``query_id``.

        ``filter`` restricts the results (see :mod:`quiver.filters`); ``score_threshold``
        drops hits worse than it (``score >= t`` is kept for cosine and ip, ``<= t`` for l2).
        With ``query_id`` the point itself is left out. ``ef`` defaults to max(64, k);
        ``target_recall`` (instead of ``ef``) picks the smallest ef whose calibrated recall@k
        reaches it (see :meth:`quiver.Index.ef_for_recall`).
        """
        if (vector is None) == (query_id is None):
            raise InvalidInputError("give exactly one of vector and query_id")
        exclude = None
        if query_id is not None:
            pid = self._check_id(query_id, "query_id")
            view, row = self._locate(pid)
            if row is None:
                raise PointNotFoundError(f"no point with id {pid!r} in collection {self.name!r}")
            vector, exclude = self._index.vectors_of_rows(view.state, [row]), pid
        q = as_matrix(vector, self.config.dim, "vector")
        if q.shape[0] != 1:
            raise InvalidInputError(f"vector must be one vector, got {q.shape[0]} rows")
        ef = self._ef(k, ef, target_recall)
        return self._search(q, k, ef, filter, score_threshold, with_payload, with_vector, exclude)[
            0
        ]

    def search_batch(
        self,
        vectors: Any,
        *,
        k: int = 10,
        ef: int | None = None,
        filter: Any = None,  # noqa: A002
        score_threshold: float | None = None,
        with_payload: bool = False,
        with_vector: bool = False,
        target_recall: float | None = None,
    ) -> list[list[ScoredPoint]]:
        """:meth:`search` for many query vectors at once (searched in parallel)."""
        q = as_matrix(vectors, self.config.dim, "vectors")
        ef = self._ef(k, ef, target_recall)
        return self._search(q, k, ef, filter, score_threshold, with_payload, with_vector, None)

    def _ef(self, k: Any, ef: Any, target_recall: Any) -> Any:
        if target_recall is None:
            return ef
        if ef is not None:
            raise InvalidInputError(
                f"give ef or target_recall, not both: got ef={ef}, target_recall={target_recall}"
            )
        return max(self._index.ef_for_recall(target_recall, positive_int(k, "k")), k)

    def _search(
        self,
        q: np.ndarray,
        k: Any,
        ef: Any,
        filter: Any,  # noqa: A002
        threshold: Any,
        with_payload: bool,
        with_vector: bool,
        exclude: Any,
    ) -> list[list[ScoredPoint]]:
        k = positive_int(k, "k")
        ef = max(DEFAULT_EF, k) if ef is None else positive_int(ef, "ef")
        if ef < k:
            raise InvalidInputError(f"ef must be >= k: got ef={ef}, k={k}")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float)
        ):
            raise InvalidInputError(f"score_threshold must be a number, got {threshold!r}")
        flt = parse_filter(filter)
        with self._searches_lock:
            self._searches += 1
        try:
            return self._search_view(
                self._view, q, k, ef, flt, threshold, with_payload, with_vector, exclude
            )
        finally:
            with self._searches_lock:
                self._searches -= 1

    def _search_view(
        self,
        view: _View,
        q: np.ndarray,
        k: int,
        ef: int,
        flt: Filter | None,
        threshold: Any,
        with_payload: bool,
        with_vector: bool,
        exclude: Any,
    ) -> list[list[ScoredPoint]]:
        state = view.state
        # spare results replace hits dropped on the way out: the query point itself, a point
        # deleted or replaced by a concurrent write after the search read its snapshot
        kk = k + RESULT_MARGIN + (1 if exclude is not None else 0)
        ef_res = max(ef, kk)  # result list (and rerank) size
        ef_nav, selection = ef_res, None
        if flt is not None:
            selection = self._selection(view, flt, scan=False)
            n_match = selection.rows.shape[0]
            n_live = max(state.count - state.n_deleted, 1)
            if n_match <= SCAN_ROWS_PER_EF * ef:
                selection = self._selection(view, flt, scan=True)
            else:
                grow = math.sqrt(FILTER_EF_SELECTIVITY * n_live / max(n_match, 1))
                ef_nav = min(4 * ef_nav, math.ceil(ef_nav * max(1.0, grow)))
        rows, dists, _ = self._index.search_state(
            state,
            self._index._prepare(q),
            kk,
            ef_nav,
            ef_res,
            selection=selection,
            return_rows=True,
        )
        return [
            self._hits(view, rows[i], dists[i], k, threshold, with_payload, with_vector, exclude)
            for i in range(q.shape[0])
        ]

    def _hits(
        self, view, rows, dists, k, threshold, with_payload, with_vector, exclude
    ) -> list[ScoredPoint]:
        hits: list[ScoredPoint] = []
        seen: set[Any] = set()
        live = view.state.live
        ids = view.ids
        for row, dist in zip(rows.tolist(), dists.tolist(), strict=True):
            if row < 0 or len(hits) == k:
                break
            pid = ids[row]
            if not live[row] or pid == exclude or pid in seen:
                continue  # deleted meanwhile, the query point, or an older version
            score = self._score(dist)
            if threshold is not None and not self._passes(score, threshold):
                break  # hits are sorted: the rest are worse
            seen.add(pid)
            if with_payload or with_vector:
                point = self._point(view, row, with_payload, with_vector)
                hits.append(ScoredPoint(pid, score, point.payload, point.vector))
            else:  # the common case: one object per hit
                hits.append(ScoredPoint(pid, score))
        return hits

    # ------------------------------------------------------------------ info
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
            "status": "closed" if self._closed else "green",
            "payload_indexes": sorted(view.columns),
            "diagnosis": stats.get("diagnosis"),
            "path": str(self._dir),
        }


def write_config(directory: Path, config: CollectionConfig) -> None:
    """Write (or replace) a collection's config file atomically."""
    tmp = directory / (CONFIG_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(config.to_dict(), fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / CONFIG_FILE)
    store.fsync_dir(directory)


def read_config(directory: Path) -> CollectionConfig:
    path = Path(directory) / CONFIG_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            return CollectionConfig.from_dict(json.load(fh))
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptIndexError(f"{path}: unreadable collection config: {exc}") from exc
