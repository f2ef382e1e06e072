"""The engine's index: 2-bit codes + Vamana graph in RAM, float32 vectors on disk.

:class:`VamanaIndex` owns the hot arrays, the float segments and the graph, publishes
consistent snapshots (:class:`~quiver.engine.state.IndexState`) and executes a
:class:`~quiver.engine.state.SearchPlan` on one. It knows nothing of data quality or of the
database: the public :class:`quiver.Index` adds the first-batch diagnosis and
``target_recall`` on top of it, and the database layer plans filtered searches for it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numba
import numpy as np

from quiver.engine import bq, readahead
from quiver.engine.arrays import HotArrays
from quiver.engine.build import NumbaThreads, drop_deleted, link_rows
from quiver.engine.kernels import normalize_rows
from quiver.engine.persistence import next_generation, open_index, save_index
from quiver.engine.scratch import ScratchPool
from quiver.engine.search import (
    BATCH_BLOCK,
    MODE_FILTERED,
    MODE_GRAPH,
    MODE_SCAN,
    SearchArgs,
    rerank_batch,
    search_batch,
    search_serial,
)
from quiver.engine.segments import FloatSegments, gather_rows
from quiver.engine.state import Consolidation, IndexState, SearchPlan, Selection
from quiver.errors import InvalidInputError
from quiver.metrics import METRIC_NAMES, Metric, parse_metric
from quiver.params import BuildParams, SearchParams
from quiver.types import SearchResult
from quiver.validation import as_ids, as_matrix, positive_int

logger = logging.getLogger(__name__)

#: Codings the engine applies itself; ``"auto"`` is resolved above it (quiver.Index).
ENGINE_CENTERINGS = ("none", "mean", "mean-rotate")
#: How the rerank reads the float rows of the index's files: ``"mapped"`` lets it fault them in
#: one by one (right when they are cached), ``"advised"`` reads each group's rows ahead with
#: readahead advice (the RAM-budget mode, :mod:`quiver.engine.readahead`), ``"auto"`` picks
#: ``"advised"`` when the files exceed half the memory the process may still use.
FLOAT_ACCESS = ("auto", "mapped", "advised")
#: Float-file pages requested ahead at a time in the advised mode: a group of queries whose
#: rerank rows need about this many pages is advised while the previous group is reranked.
#: Enough reads in flight to keep a device's queue full (4 KB reads: ~50k IOPS at 32 in flight
#: here), few enough that a tight memory budget does not evict the pages read ahead before
#: the rerank touches them (2 x 8 MB; 64 queries x 64 rows evicted them under a 69 MB budget:
#: bench/results/PERF.md).
READAHEAD_PAGES = 2048
#: A batch gets one thread per this many queries (at most ``num_threads``): waking a thread
#: team costs more than a few queries' search, and on a busy machine far more (4 queries:
#: 0.17 ms on one thread, 12 ms on two at load 13; bench/results/PERF.md). Calibration
#: searches groups of ~5 queries, the server's micro-batches 2-16.
MIN_QUERIES_PER_THREAD = 8


def _no_results(
    ids: np.ndarray, dists: np.ndarray, ndist: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The output arrays of a search that finds nothing: -1 ids, inf distances, 0 work."""
    ids.fill(-1)
    dists.fill(np.inf)
    ndist.fill(0)
    return ids, dists, ndist


def _check_float_access(mode: str) -> None:
    if mode not in FLOAT_ACCESS:
        raise InvalidInputError(f"float_access must be one of {FLOAT_ACCESS}, got {mode!r}")


class Coding(NamedTuple):
    """The transform applied before encoding: ``centering`` mode, the ``center`` (float32
    (D,) or None) subtracted and the ``rotation`` (float32 (D, D) or None) applied after it."""

    centering: str
    center: np.ndarray | None
    rotation: np.ndarray | None


class VamanaIndex:
    """A 2-bit-code Vamana graph with exact float32 rerank (see :class:`quiver.Index` for the
    parameters; ``centering`` here is one of :data:`ENGINE_CENTERINGS`).

    Thread safety: any number of searches may run while one writer adds, deletes,
    consolidates or saves (writers are serialised by a lock; searches take no lock and read
    a consistent snapshot).
    """

    def __init__(
        self,
        dim: int,
        metric: str = "cosine",
        *,
        max_degree: int = BuildParams.max_degree,
        build_list_size: int = BuildParams.build_list_size,
        alpha: float = BuildParams.alpha,
        seed: int = 0,
        num_threads: int | None = None,
        centering: str = "none",
    ) -> None:
        self._dim = positive_int(dim, "dim")
        self._check_centering(centering)
        self._centering = centering
        self._center: np.ndarray | None = None  # float32 (D,) once centering is in use
        self._rotation: np.ndarray | None = None  # float32 (D, D) for "mean-rotate"
        self._no_nav = np.zeros((0, self._dim), dtype=np.float32)
        self._no_codes = np.zeros((0, 2 * bq.words_per_plane(self._dim)), dtype=np.uint64)
        self._no_rows = np.zeros((0, 0), dtype=np.int32)
        self._changes = 0  # adds + deletes since the last calibration (see quiver.Index)
        self._metric = parse_metric(metric)
        self._params = BuildParams(int(max_degree), int(build_list_size), float(alpha), int(seed))
        self._num_threads = self._check_threads(num_threads)
        self.hot = HotArrays(self._dim, self._params.max_degree)
        self.segments = FloatSegments(self._dim)
        self._scratch = ScratchPool()
        self._write_lock = threading.RLock()
        self._build_seconds = 0.0
        self._path: Path | None = None
        self._generation = 0
        self._row_numbers = np.zeros(0, dtype=np.int64)
        self._float_access = "auto"
        self.metadata: dict[str, Any] = {}  # caller's metadata from the last save / open
        self._checksums: dict[str, int] = {}  # CRC-32 of the saved files, by name
        self._state = self._make_state()

    def _check_centering(self, centering: str) -> None:
        if centering not in ENGINE_CENTERINGS:
            raise InvalidInputError(
                f"centering must be one of {', '.join(ENGINE_CENTERINGS)}, got {centering!r}"
            )

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def metric(self) -> str:
        """Metric name: ``"cosine"``, ``"ip"`` or ``"l2"``."""
        return METRIC_NAMES[self._metric]

    @property
    def params(self) -> BuildParams:
        """Build parameters."""
        return self._params

    @property
    def coding(self) -> Coding:
        """The coding transform in use (centre and rotation are None until fixed)."""
        return Coding(self._centering, self._center, self._rotation)

    @property
    def generation(self) -> int:
        """Generation of the last save or open (0 if never saved)."""
        return self._generation

    def __len__(self) -> int:
        """Number of live (not deleted) points."""
        return self.hot.count - self.hot.n_deleted

    def __repr__(self) -> str:
        p = self._params
        return (
            f"{type(self).__name__}(dim={self._dim}, metric={self.metric!r}, count={len(self)}, "
            f"max_degree={p.max_degree}, build_list_size={p.build_list_size}, alpha={p.alpha})"
        )

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_threads(num_threads: int | None) -> int | None:
        if num_threads is None:
            return None
        n = positive_int(num_threads, "num_threads")
        limit = numba.config.NUMBA_NUM_THREADS
        if n > limit:
            raise InvalidInputError(f"num_threads must be <= {limit} (NUMBA_NUM_THREADS), got {n}")
        return n

    def _threads(self, num_threads: int | None) -> int:
        n = self._check_threads(num_threads)
        if n is None:
            n = self._num_threads
        return n if n is not None else numba.config.NUMBA_NUM_THREADS

    @property
    def float_access(self) -> str:
        """The float-read mode asked for (one of :data:`FLOAT_ACCESS`); :attr:`reads_ahead`
        says whether rerank rows are being read ahead now."""
        return self._float_access

    @property
    def reads_ahead(self) -> bool:
        """Whether searches read their rerank rows ahead (the advised mode is in effect)."""
        return self.segments.advised

    def set_float_access(self, mode: str) -> None:
        """Choose how the rerank reads float rows from the index's files (:data:`FLOAT_ACCESS`).

        Only file segments (an index opened or saved) are concerned; results never change.
        """
        _check_float_access(mode)
        with self._write_lock:
            self._float_access = mode
            self.apply_float_access()

    def apply_float_access(self) -> None:
        """Resolve the float-read mode against the current files (after an open or a save)."""
        on_disk = self.segments.file_bytes
        if self._float_access == "auto":
            advised = on_disk > 0 and readahead.floats_exceed_memory(on_disk)
        else:
            advised = self._float_access == "advised" and on_disk > 0
        self.segments.set_advised(advised)
        self._publish()

    def prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        """Validated float32 rows made ready for the kernels: unit-normalised in place for
        cosine (``queries`` must be the caller's own copy, as ``as_matrix`` returns)."""
        if self._metric == Metric.COSINE:
            normalize_rows(queries)
        return queries

    def navigation_queries(self, queries: np.ndarray) -> np.ndarray:
        """Prepared queries in the coded space (centred / rotated), or an empty array when
        the coding is plain (the kernels then navigate with the queries themselves)."""
        if self._center is None:
            return self._no_nav
        return bq.transform(queries, self._center, self._rotation)

    def _make_state(self) -> IndexState:
        h = self.hot
        if self._row_numbers.shape[0] != h.capacity:
            self._row_numbers = np.arange(h.capacity, dtype=np.int64)
        return IndexState(
            h.codes,
            h.adjacency,
            h.degrees,
            h.labels,
            h.live,
            h.count,
            h.n_deleted,
            h.entry,
            self.segments.typed,
            self.segments.starts,
            self._row_numbers,
            self.segments.advised_views(),
        )

    def _publish(self) -> None:
        """Make the writer's current arrays and counts visible to new searches."""
        self._state = self._make_state()

    def state(self) -> IndexState:
        """The current consistent snapshot (what a search started now would read)."""
        return self._state

    # ------------------------------------------------------------------ add
    def add(self, vectors: Any, ids: Any = None, *, num_threads: int | None = None) -> np.ndarray:
        """Insert vectors (one 1-D vector or a 2-D batch) into the graph; return their ids.

        ``ids=None`` assigns consecutive ids after the largest so far. Ids are non-negative
        int64 and must be new: an id that exists (deleted ids count until
        :meth:`consolidate` reclaims them), or repeats within the batch, raises
        :class:`DuplicateIdError` and nothing is stored. ``num_threads`` overrides the
        index's thread count for this call.
        """
        threads = self._threads(num_threads)
        x = as_matrix(vectors, self._dim)
        n_new = x.shape[0]
        h = self.hot
        with self._write_lock:
            if ids is None:
                labels = np.arange(h.next_id, h.next_id + n_new, dtype=np.int64)
            else:
                labels = as_ids(ids, n_new, existing=h.labels[: h.count])
            x = self.prepare_queries(x)
            start = h.count
            first = self._first_batch(x) if start == 0 and self._center is None else None
            if h.reserve(start + n_new):
                self._scratch.resize(h.capacity)
            bq.encode(
                x, out=h.codes[start : start + n_new], center=self._center,
                rotation=self._rotation,
            )  # fmt: skip
            h.labels[start : start + n_new] = labels
            h.live[start : start + n_new] = 1
            self.segments.append(x)
            t0 = time.perf_counter()
            link_rows(h, self._dim, self._params, start, n_new, threads)
            self._build_seconds += time.perf_counter() - t0
            h.count = start + n_new
            h.next_id = max(h.next_id, int(labels.max()) + 1)
            self._changes += n_new
            self._publish()
            if first is not None:
                self._after_first_batch(x, first)
            return labels

    def _first_batch(self, x: np.ndarray) -> Any:
        """Fix the coding transform from the first batch (prepared rows). Returns what
        :meth:`_after_first_batch` receives once the batch is linked (None: nothing to do).
        Subclasses override both to choose the coding and check the data."""
        self._fix_coding(x)
        return None

    def _after_first_batch(self, x: np.ndarray, first: Any) -> None:
        """Called with the first batch and :meth:`_first_batch`'s result after linking."""

    def _fix_coding(self, x: np.ndarray) -> None:
        """Compute the centre (and rotation) of the chosen centering from the first batch."""
        if self._centering in ("mean", "mean-rotate"):
            self._center = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        if self._centering == "mean-rotate":
            self._rotation = bq.random_rotation(self._dim, self._params.seed)

    # ------------------------------------------------------------------ delete
    def delete(self, ids: Any) -> int:
        """Delete points by id; return how many were live and are now deleted.

        A deleted point is a tombstone: searches stop returning it at once, but it keeps
        routing searches through the graph until :meth:`consolidate` reconnects its
        neighbours and reclaims its space. Unknown or already deleted ids are ignored.
        """
        labels = np.atleast_1d(np.asarray(ids))
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise InvalidInputError(f"ids must be integers, got dtype {labels.dtype}")
        with self._write_lock:
            h = self.hot
            rows = np.flatnonzero(np.isin(h.labels[: h.count], labels.reshape(-1)))
            return self.delete_rows(rows)

    def delete_rows(self, rows: np.ndarray) -> int:
        """Tombstone rows (internal row numbers, as returned by :meth:`state`); return how
        many were live. For the database layer, which addresses points by row."""
        with self._write_lock:
            h = self.hot
            rows = np.unique(np.asarray(rows, dtype=np.int64))
            rows = rows[(rows >= 0) & (rows < h.count)]
            newly = rows[h.live[rows] == 1]
            h.live[newly] = 0
            h.n_deleted += int(newly.shape[0])
            self._changes += int(newly.shape[0])
            self._publish()
            return int(newly.shape[0])

    def consolidate(self) -> Consolidation:
        """Reconnect the graph around deleted points and reclaim their space.

        Every live point that links to a deleted one gets the deleted point's live
        neighbours as candidates and is re-pruned (FreshDiskANN), in parallel; then the
        deleted rows are dropped and the rest renumbered, keeping their order. Searches keep
        running on the previous snapshot meanwhile. The float vectors of the kept rows are
        gathered into memory until the next save writes them as one segment.
        """
        with self._write_lock:
            t0 = time.perf_counter()
            h = self.hot
            n = h.count
            if h.n_deleted == 0:
                return Consolidation(0, 0, 0.0, np.arange(n, dtype=np.int64))
            # the floats of the kept rows, gathered before the rows are renumbered
            floats_state = self._make_state()
            keep, repaired = drop_deleted(h, self._dim, self._params.alpha, self._threads(None))
            floats = self.vectors_of_rows(floats_state, keep)
            removed = n - keep.shape[0]
            self.segments.replace_with(floats)
            self._scratch.resize(h.capacity)
            self._publish()
            seconds = time.perf_counter() - t0
            logger.info(
                "consolidated %d deleted points (%d rows repaired) in %.2f s",
                removed, repaired, seconds,
            )  # fmt: skip
            return Consolidation(removed, int(repaired), seconds, keep)

    def vectors_of_rows(self, state: IndexState, rows: Any) -> np.ndarray:
        """Stored float vectors (unit-normalised for cosine) of ``rows`` of ``state``, in the
        order given, as a new (len(rows), D) array."""
        return gather_rows(state.segments, state.segment_starts, rows, self._dim)

    # ------------------------------------------------------------------ search
    def select(
        self, state: IndexState, admit: np.ndarray | None = None, scan: bool = False
    ) -> Selection:
        """The live rows of ``state`` with a non-zero ``admit`` (uint8 per row; all live rows
        when None) as a :class:`Selection` for a :class:`SearchPlan`. With ``scan`` their codes
        are gathered too, so that a scan streams them from one contiguous array."""
        n = state.count
        mask = np.zeros(state.codes.shape[0], dtype=np.uint8)  # private: safe to count
        mask[:n] = state.live[:n] if admit is None else admit[:n] & state.live[:n]
        rows = np.flatnonzero(mask[:n]).astype(np.int32)
        return Selection(mask, rows, state.codes[rows] if scan else self._no_codes, scan)

    def with_scan(self, state: IndexState, selection: Selection) -> Selection:
        """``selection`` turned into a scan: its rows' codes gathered from ``state``."""
        return selection._replace(row_codes=state.codes[selection.rows], scan=True)

    def execute(
        self,
        state: IndexState,
        queries: np.ndarray,
        plan: SearchPlan,
        num_threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run ``plan`` for prepared queries (:meth:`prepare_queries`) on a captured state.

        The one search entry of the engine: the public search and the database layer both
        come here. Returns ``(ids, distances, code_distances_per_query)``; ids are labels, or
        rows with ``plan.return_rows``; (q, k) padded with -1 / inf.
        """
        nq, k = queries.shape[0], plan.k
        # the kernels write every row (ids -1 / inf padded, a count per query): no fill here
        out_ids = np.empty((nq, k), dtype=np.int64)
        out_dists = np.empty((nq, k), dtype=np.float32)
        out_ndist = np.empty(nq, dtype=np.int64)
        if state.count == 0 or nq == 0:
            return _no_results(out_ids, out_dists, out_ndist)
        selection = plan.selection
        if selection is None:
            # deleted rows are skipped through the shared live flags, read as they change
            mode = MODE_GRAPH if state.n_deleted == 0 else MODE_FILTERED
            admit, rows, row_codes = state.live, np.zeros(0, dtype=np.int32), self._no_codes
        else:
            mode = MODE_SCAN if selection.scan else MODE_FILTERED
            admit, rows, row_codes = selection.admit, selection.rows, selection.row_codes
            if rows.shape[0] == 0:
                return _no_results(out_ids, out_dists, out_ndist)
        threads = min(self._threads(num_threads), max(1, nq // MIN_QUERIES_PER_THREAD))
        labels = state.rows if plan.return_rows else state.labels
        # RAM-budget mode: the kernels stop at the candidates, whose rows are read ahead
        candidates = (
            np.empty((nq, plan.rerank), dtype=np.int32) if state.advised_views else self._no_rows
        )
        with self._scratch.borrow(threads, state.codes.shape[0]) as (stamps, epochs):
            args = SearchArgs(
                state.codes, state.adjacency, state.degrees, self._dim, state.entry,
                state.count, int(self._metric), state.segments, state.segment_starts, labels,
                queries, plan.ef, plan.rerank, stamps[:threads], epochs[:threads], out_ids,
                out_dists, out_ndist, mode, admit, rows, row_codes,
                self.navigation_queries(queries), candidates,
            )  # fmt: skip
            if threads == 1:  # no thread pool: skip Numba's thread-count bookkeeping
                search_serial(*args)
            else:
                claimed = np.zeros(-(-nq // BATCH_BLOCK), dtype=np.uint8)
                with NumbaThreads(threads):
                    search_batch(*args, claimed)
        if candidates.shape[0]:
            with NumbaThreads(threads):
                self._rerank_read_ahead(state, queries, candidates, labels, out_ids, out_dists)
        return out_ids, out_dists, out_ndist

    def _rerank_read_ahead(self, state, queries, candidates, labels, out_ids, out_dists) -> None:
        """Rerank in groups of queries needing about :data:`READAHEAD_PAGES` pages, the next
        group's float rows advised (their reads started) before the current group is
        reranked."""
        views = [v for v, _ in state.advised_views]
        starts = [s for _, s in state.advised_views]
        nq = queries.shape[0]
        row_pages = max(1.0, queries.shape[1] * 4 / readahead.PAGE) + 0.5  # rows straddle pages
        group = max(1, int(READAHEAD_PAGES / (candidates.shape[1] * row_pages)))
        readahead.will_need(views, starts, candidates[:group])
        for lo in range(0, nq, group):
            hi = min(nq, lo + group)
            if hi < nq:
                readahead.will_need(views, starts, candidates[hi : hi + group])
            rerank_batch(
                queries[lo:hi], candidates[lo:hi], int(self._metric), state.segments,
                state.segment_starts, labels, out_ids[lo:hi], out_dists[lo:hi],
            )  # fmt: skip

    def search(
        self,
        queries: Any,
        k: int = 10,
        ef: int | None = None,
        rerank: int | None = None,
        *,
        num_threads: int | None = None,
    ) -> SearchResult:
        """The ``k`` nearest stored vectors of each query (see :meth:`quiver.Index.search`)."""
        ids, dists, _ = self._search(queries, SearchParams(k, ef, rerank), num_threads)
        return SearchResult(ids, dists)

    def _search(
        self, queries: Any, params: SearchParams, num_threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = self.prepare_queries(as_matrix(queries, self._dim, "queries"))
        k, ef, rerank = params.resolve(self.ef_for_recall)
        return self.execute(self._state, q, SearchPlan(k, ef, rerank), num_threads)

    def ef_for_recall(self, target_recall: float, k: int = 10) -> int:
        """The engine has no calibration: ``target_recall`` needs :class:`quiver.Index`."""
        raise InvalidInputError("target_recall needs a calibrated quiver.Index")

    def search_stats(
        self, queries: Any, k: int = 10, ef: int | None = None, rerank: int | None = None
    ) -> dict[str, float]:
        """Work done by :meth:`search`: code distances per query (mean, max) and per point."""
        _, _, ndist = self._search(queries, SearchParams(k, ef, rerank))
        return {
            "mean_distances": float(ndist.mean()),
            "max_distances": float(ndist.max()),
            "fraction_of_points": float(ndist.mean() / max(self.hot.count, 1)),
        }

    # ------------------------------------------------------------------ stats
    def stats(self) -> dict[str, Any]:
        """Counts, memory and parameters.

        ``count`` counts live points, ``deleted`` tombstones not yet consolidated.
        ``hot_bytes`` is what search keeps in RAM as allocated (codes + adjacency with spare
        slots + degrees + id map + live flags); ``cold_bytes`` the float32 vectors
        (memory-mapped files plus vectors added since the last save).
        """
        h = self.hot
        degrees = h.degrees[: h.count]
        return {
            "count": len(self),
            "deleted": h.n_deleted,
            "dim": self._dim,
            "metric": self.metric,
            "hot_bytes": h.nbytes,
            "cold_bytes": int(self.segments.nbytes),
            "code_bytes_per_vector": bq.code_bytes(self._dim),
            "build_seconds": round(self._build_seconds, 3),
            "mean_degree": float(degrees.mean()) if h.count else 0.0,
            "entry_point": int(h.labels[h.entry]) if h.count else None,
            "segments": len(self.segments.views),
            "path": str(self._path) if self._path else None,
            "centering": self._centering,
            **self._params.to_dict(),
        }

    # ------------------------------------------------------------------ persistence
    def manifest_extras(self) -> dict[str, Any]:
        """Entries a subclass adds to the saved manifest (read back by :meth:`load_extras`)."""
        return {}

    def load_extras(self, manifest: dict[str, Any]) -> None:
        """Restore what :meth:`manifest_extras` saved."""

    def next_generation(self, path: str | Path) -> int:
        """The generation number the next :meth:`save` into ``path`` will write."""
        return next_generation(self, Path(path))

    def save(
        self,
        path: str | Path,
        *,
        attached_files: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Write the index to directory ``path`` crash-safely; return the generation written
        (see :func:`quiver.engine.persistence.save_index`)."""
        return save_index(self, Path(path), attached_files=attached_files, metadata=metadata)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        num_threads: int | None = None,
        verify_segments: bool = False,
        float_access: str = "auto",
    ) -> VamanaIndex:
        """Open a saved index (see :func:`quiver.engine.persistence.open_index`);
        ``float_access`` is one of :data:`FLOAT_ACCESS` (see :meth:`set_float_access`)."""
        _check_float_access(float_access)
        index = open_index(cls, Path(path), num_threads=num_threads, verify=verify_segments)
        index.set_float_access(float_access)
        return index
