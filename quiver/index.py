"""The public embedded index: 2-bit codes + Vamana graph in RAM, float32 vectors on disk."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numba
import numpy as np
from numba.typed import List as TypedList

from quiver import bq, graph, store
from quiver.calibration import Calibration, calibrate
from quiver.candidates import new_scratch
from quiver.diagnose import ISOTROPIC_FRACTION, Diagnosis, diagnose
from quiver.errors import CorruptIndexError, InvalidInputError
from quiver.kernels import normalize_rows
from quiver.metrics import METRIC_NAMES, Metric, parse_metric
from quiver.params import DEFAULT_EF, BuildParams
from quiver.search import MODE_FILTERED, MODE_GRAPH, MODE_SCAN, search_batch, search_serial
from quiver.types import SearchResult
from quiver.validation import as_ids, as_matrix, positive_int

logger = logging.getLogger(__name__)

_MIN_BATCH = 256  # smallest round size once the graph is big enough: keeps threads busy
CENTERING_MODES = ("auto", "none", "mean", "mean-rotate")
#: "auto" centering and the data check need a first batch at least this large.
AUTO_MIN_ROWS = 1000
#: Code recall at ef=64 from which the build-time check skips measuring navigation (unless
#: the data is near-isotropic): near-perfect codes on structured data navigate well.
NEAR_PERFECT_CODES = 0.95
_BATCH_FRACTION = 0.02  # largest round = 2% of the points (ParlayANN-style prefix doubling)


class IndexState(NamedTuple):
    """What a search reads, captured at once: a consistent snapshot of the index.

    The writer appends rows and re-prunes adjacency rows in place (readers bound their
    traversal by ``count``, so they never follow an edge to a row published later) and
    replaces the arrays wholesale when it grows or compacts them, then publishes a new state.
    A search holding an older state keeps reading that state's arrays, which stay valid.
    ``live`` is shared, so a delete is seen by searches at once.
    """

    codes: np.ndarray
    adjacency: np.ndarray
    degrees: np.ndarray
    labels: np.ndarray
    live: np.ndarray
    count: int
    n_deleted: int
    entry: int
    segments: Any  # numba typed List of read-only float32 views, or None when empty
    segment_starts: np.ndarray
    rows: np.ndarray  # arange(capacity) int64: "labels" that make a search return rows


class Selection(NamedTuple):
    """The rows a filtered search may return, computed once per state and filter and reusable
    by every search of that state (see :meth:`Index.select`)."""

    admit: np.ndarray  # uint8 per row of the state's arrays: 1 = may be returned
    rows: np.ndarray  # int32, ascending: the admitted rows
    row_codes: np.ndarray  # codes[rows] gathered for a scan, else empty
    scan: bool  # score the admitted rows' codes instead of walking the graph


class Consolidation(NamedTuple):
    """What :meth:`Index.consolidate` did; ``kept_rows[i]`` is the old row of new row ``i``."""

    removed: int
    repaired: int
    seconds: float
    kept_rows: np.ndarray


class Index:
    """A 2-bit-code Vamana index with exact float32 rerank.

    Parameters
    ----------
    dim : vector dimension.
    metric : ``"cosine"`` (distance ``1 - cos``; vectors are stored unit-normalised),
        ``"ip"`` (``-dot``) or ``"l2"`` (squared Euclidean).
    max_degree : graph out-degree R (memory: 4 bytes per slot per point).
    build_list_size : candidates searched per inserted point (L); higher = better graph, slower.
    alpha : RobustPrune slack (>= 1); higher keeps more long edges.
    seed : fixes the insertion order and hence the graph.
    num_threads : threads for ``add`` and ``search`` (default: Numba's, i.e. all cores).
    centering : ``"auto"`` (default), ``"none"``, ``"mean"`` or ``"mean-rotate"``. With
        ``"mean"`` the codes are those of ``x - center`` and queries navigate as
        ``q - center``, ``center`` being the mean of the first batch added; ``"mean-rotate"``
        also rotates by a seeded random orthogonal matrix (``bq.random_rotation``) after
        centering. The float rerank stays exact on the original vectors. This gives offset,
        non-negative or skewed data (e.g. SIFT) informative code bits. ``"auto"`` decides on
        the first batch of at least ``AUTO_MIN_ROWS`` rows with
        :func:`quiver.diagnose` (``centering="auto"``: the simplest coding within 0.02 of the
        best code recall; smaller first batches: no centering).
    diagnostics : check the first batch (of at least ``AUTO_MIN_ROWS`` rows) with
        :func:`quiver.diagnose`, log a warning naming cause and remedy when the predicted
        recall@10 at ef=64 is low, and report the verdict in :meth:`stats`.

    Thread safety: any number of ``search`` calls may run while one writer calls ``add``,
    ``delete``, ``consolidate`` or ``save`` (writers are serialised by a lock; searches take
    no lock and read a consistent snapshot, see :class:`IndexState`).
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
        centering: str = "auto",
        diagnostics: bool = True,
    ) -> None:
        self._dim = positive_int(dim, "dim")
        if centering not in CENTERING_MODES:
            raise InvalidInputError(
                f"centering must be one of {', '.join(CENTERING_MODES)}, got {centering!r}"
            )
        self._centering = centering
        self._center: np.ndarray | None = None  # float32 (D,) once centering is in use
        self._rotation: np.ndarray | None = None  # float32 (D, D) for "mean-rotate"
        self._no_nav = np.zeros((0, self._dim), dtype=np.float32)
        self._no_codes = np.zeros((0, 2 * bq.words_per_plane(self._dim)), dtype=np.uint64)
        self._diagnostics = bool(diagnostics)
        self._diagnosis: dict[str, Any] | None = None
        self._calibration: Calibration | None = None
        self._changes = 0  # adds + deletes since the calibration
        self._metric = parse_metric(metric)
        self._params = BuildParams(int(max_degree), int(build_list_size), float(alpha), int(seed))
        self._num_threads = self._check_threads(num_threads)
        words = bq.words_per_plane(self._dim)
        self._count = 0
        self._codes = np.zeros((0, 2 * words), dtype=np.uint64)
        self._adjacency = np.full((0, self._params.max_degree), -1, dtype=np.int32)
        self._degrees = np.zeros(0, dtype=np.int32)
        self._labels = np.full(0, -1, dtype=np.int64)
        self._live = np.zeros(0, dtype=np.uint8)
        self._n_deleted = 0
        self._entry = -1
        self._next_id = 0
        self._segments: list[np.ndarray] = []  # read-only float views, file-backed first
        self._segment_files: list[Path | None] = []  # None = in memory (the tail)
        self._tail = np.zeros((0, self._dim), dtype=np.float32)
        self._tail_count = 0
        self._typed_segments: Any = None
        self._segment_starts = np.zeros(1, dtype=np.int64)
        self._scratch: list[tuple[np.ndarray, np.ndarray]] = []
        self._scratch_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._build_seconds = 0.0
        self._path: Path | None = None
        self._generation = 0
        self._row_numbers = np.zeros(0, dtype=np.int64)
        self.metadata: dict[str, Any] = {}  # caller's metadata from the last save / open
        self._checksums: dict[str, int] = {}  # CRC-32 of the saved files, by name
        self._state = self._make_state()

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

    def __len__(self) -> int:
        """Number of live (not deleted) points."""
        return self._count - self._n_deleted

    def __repr__(self) -> str:
        p = self._params
        return (
            f"Index(dim={self._dim}, metric={self.metric!r}, count={len(self)}, "
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

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """Normalise rows in place for cosine (``x`` is already our own copy)."""
        if self._metric == Metric.COSINE:
            normalize_rows(x)
        return x

    def _capacity(self) -> int:
        return self._codes.shape[0]

    def _reserve(self, needed: int) -> None:
        """Grow the hot arrays (amortised x1.5) so that ``needed`` rows fit."""
        cap = self._capacity()
        if needed <= cap:
            return
        new_cap = max(needed, int(cap * 1.5) + 16)

        def grow(a: np.ndarray, fill: int) -> np.ndarray:
            out = np.full((new_cap,) + a.shape[1:], fill, dtype=a.dtype)
            out[: self._count] = a[: self._count]
            return out

        self._codes = grow(self._codes, 0)
        self._adjacency = grow(self._adjacency, -1)
        self._degrees = grow(self._degrees, 0)
        self._labels = grow(self._labels, -1)
        self._live = grow(self._live, 0)
        with self._scratch_lock:
            self._scratch = []  # sized to the old capacity

    def _append_floats(self, x: np.ndarray) -> None:
        """Append rows to the in-memory tail segment (grown amortised).

        ``x`` must be a private array (``as_matrix`` copies): the first batch is adopted as the
        tail without another copy.
        """
        need = self._tail_count + x.shape[0]
        if self._tail_count == 0:
            self._tail = x
            self._tail_count = need
            self._refresh_segments()
            return
        if need > self._tail.shape[0]:
            tail = np.empty((max(need, int(self._tail.shape[0] * 1.5) + 16), self._dim), np.float32)
            tail[: self._tail_count] = self._tail[: self._tail_count]
            self._tail = tail
        self._tail[self._tail_count : need] = x
        self._tail_count = need
        self._refresh_segments()

    def _refresh_segments(self) -> None:
        """Rebuild the typed segment list handed to the kernels (file segments + tail)."""
        views = [
            s for s, f in zip(self._segments, self._segment_files, strict=True) if f is not None
        ]
        files = [f for f in self._segment_files if f is not None]
        if self._tail_count:
            tail = self._tail[: self._tail_count]
            tail.flags.writeable = False
            views.append(tail)
            files.append(None)
        self._segments, self._segment_files = views, files
        starts = np.zeros(len(views) + 1, dtype=np.int64)
        starts[1:] = np.cumsum([v.shape[0] for v in views])
        self._segment_starts = starts
        typed = TypedList()
        for v in views:
            typed.append(v)
        self._typed_segments = typed if views else None

    def _make_state(self) -> IndexState:
        cap = self._capacity()
        if self._row_numbers.shape[0] != cap:
            self._row_numbers = np.arange(cap, dtype=np.int64)
        return IndexState(
            self._codes,
            self._adjacency,
            self._degrees,
            self._labels,
            self._live,
            self._count,
            self._n_deleted,
            self._entry,
            self._typed_segments,
            self._segment_starts,
            self._row_numbers,
        )

    def _publish(self) -> None:
        """Make the writer's current arrays and counts visible to new searches."""
        self._state = self._make_state()

    def state(self) -> IndexState:
        """The current consistent snapshot (what a search started now would read)."""
        return self._state

    def _acquire_scratch(self, slots: int, cap: int) -> tuple[np.ndarray, np.ndarray]:
        with self._scratch_lock:
            for i, (stamps, _) in enumerate(self._scratch):
                if stamps.shape[0] >= slots and stamps.shape[1] == cap:
                    return self._scratch.pop(i)
        return new_scratch(slots, cap)

    def _release_scratch(self, scratch: tuple[np.ndarray, np.ndarray]) -> None:
        if scratch[0].shape[1] == self._state.codes.shape[0]:
            with self._scratch_lock:
                self._scratch.append(scratch)

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
        with self._write_lock:
            if ids is None:
                labels = np.arange(self._next_id, self._next_id + n_new, dtype=np.int64)
            else:
                labels = as_ids(ids, n_new, existing=self._labels[: self._count])
            x = self._prepare(x)
            start = self._count
            quick = self._first_batch(x) if start == 0 and self._center is None else None
            self._reserve(start + n_new)
            bq.encode(
                x, out=self._codes[start : start + n_new], center=self._center,
                rotation=self._rotation,
            )  # fmt: skip
            self._labels[start : start + n_new] = labels
            self._live[start : start + n_new] = 1
            self._append_floats(x)
            t0 = time.perf_counter()
            self._insert_rows(start, n_new, threads)
            self._build_seconds += time.perf_counter() - t0
            self._count = start + n_new
            self._next_id = max(self._next_id, int(labels.max()) + 1)
            self._changes += n_new
            self._publish()
            if quick is not None:
                self._check_data(x, quick)
            return labels

    def _first_batch(self, x: np.ndarray) -> Diagnosis | None:
        """Fix the coding transform from the first batch (prepared rows); return the quick
        (code-only) diagnosis of the batch when the data check is on and the batch is large
        enough."""
        quick = None
        if x.shape[0] >= AUTO_MIN_ROWS and (self._diagnostics or self._centering == "auto"):
            quick = diagnose(
                x, self.metric, centering=self._centering, navigation=False, queries=100,
                rotation_seed=self._params.seed,
            )  # fmt: skip
        if self._centering == "auto":
            self._centering = "none" if quick is None else quick.centering
            logger.info("centering: %s (auto, first batch of %d)", self._centering, x.shape[0])
        if self._centering in ("mean", "mean-rotate"):
            self._center = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        if self._centering == "mean-rotate":
            self._rotation = bq.random_rotation(self._dim, self._params.seed)
        return quick if self._diagnostics else None

    def _check_data(self, x: np.ndarray, quick: Diagnosis) -> None:
        """Complete the first batch's diagnosis; warn (logging) when recall is predicted low."""
        d = quick
        if quick.code_recall[64] < NEAR_PERFECT_CODES or quick.effective_dim > (
            ISOTROPIC_FRACTION * self._dim
        ):
            # codes are not near-perfect or the data is near-isotropic: measure navigation
            d = diagnose(
                x, self.metric, centering=self._centering, rotation_seed=self._params.seed,
                index_options=self._nav_options(),
            )  # fmt: skip
        self._note_diagnosis(d)
        for line in d.warnings:
            logger.warning("%s", line)

    def _nav_options(self) -> dict[str, Any]:
        p = self._params
        return {
            "max_degree": p.max_degree,
            "build_list_size": p.build_list_size,
            "alpha": p.alpha,
            "num_threads": self._num_threads,
        }

    def _note_diagnosis(self, d: Diagnosis) -> None:
        self._diagnosis = {
            "verdict": d.verdict,
            "predicted_recall_ef64": round(d.predicted_recall[64], 4),
            "predicted_recall_ef128": round(d.predicted_recall[128], 4),
            "navigation_measured": bool(d.navigation),
            "centering": d.centering,
            "rows": d.n,
            "causes": list(d.causes),
            "remedies": list(d.remedies),
        }

    def diagnose(self, **options: Any) -> Diagnosis:
        """Run :func:`quiver.diagnose` on the stored vectors (with this index's centering and
        build parameters); the verdict then shows in :meth:`stats` and the saved manifest.

        ``options`` go to :func:`quiver.diagnose` (``sample``, ``queries``, ``seed``...).
        """
        state = self._state
        if state.count < 1:
            raise InvalidInputError("diagnose needs a non-empty index")
        segments = list(state.segments)
        vectors = segments[0] if len(segments) == 1 else np.concatenate(segments)
        options.setdefault("index_options", self._nav_options())
        options.setdefault("rotation_seed", self._params.seed)
        d = diagnose(vectors[: state.count], self.metric, centering=self._centering, **options)
        self._note_diagnosis(d)
        return d

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
            rows = np.flatnonzero(np.isin(self._labels[: self._count], labels.reshape(-1)))
            return self.delete_rows(rows)

    def delete_rows(self, rows: np.ndarray) -> int:
        """Tombstone rows (internal row numbers, as returned by :meth:`state`); return how
        many were live. For the database layer, which addresses points by row."""
        with self._write_lock:
            rows = np.unique(np.asarray(rows, dtype=np.int64))
            rows = rows[(rows >= 0) & (rows < self._count)]
            newly = rows[self._live[rows] == 1]
            self._live[newly] = 0
            self._n_deleted += int(newly.shape[0])
            self._changes += int(newly.shape[0])
            self._publish()
            return int(newly.shape[0])

    def _insert_rows(self, start: int, n_new: int, threads: int) -> None:
        """Link rows ``start .. start + n_new`` into the graph in rounds (see quiver.graph)."""
        rng = np.random.default_rng([self._params.seed, start])
        order = (start + rng.permutation(n_new)).astype(np.int32)
        inserted = start
        if start == 0:
            self._entry = start + graph.code_medoid(self._codes[start : start + n_new], self._dim)
            order = np.concatenate(([self._entry], order[order != self._entry])).astype(np.int32)
            inserted = 1  # the entry point starts the graph alone
        stamps, epochs = new_scratch(threads, self._capacity())
        new_degrees = np.zeros(n_new, dtype=np.int32)
        max_batch = max(_MIN_BATCH, int(_BATCH_FRACTION * (start + n_new)))
        done = inserted - start
        with _NumbaThreads(threads):
            while done < n_new:
                size = min(n_new - done, max(1, min(inserted, max_batch)))
                batch = order[done : done + size]
                graph.link_batch(
                    batch,
                    self._codes,
                    self._dim,
                    self._adjacency,
                    self._degrees,
                    self._entry,
                    self._params.build_list_size,
                    self._params.alpha,
                    stamps,
                    epochs,
                    new_degrees[:size],
                )
                self._degrees[batch] = new_degrees[:size]
                graph.merge_reverse_edges(
                    batch,
                    self._codes,
                    self._dim,
                    self._adjacency,
                    self._degrees,
                    self._params.alpha,
                )
                done += size
                inserted += size
                logger.debug("linked %d / %d points", done, n_new)

    def consolidate(self) -> Consolidation:
        """Reconnect the graph around deleted points and reclaim their space.

        Every live point that links to a deleted one gets the deleted point's live
        neighbours as candidates and is re-pruned (FreshDiskANN), in parallel; then the
        deleted rows are dropped and the rest renumbered, keeping their order. Searches keep
        running on the previous snapshot meanwhile. The float vectors of the kept rows are
        gathered into memory until the next :meth:`save` writes them as one segment.
        """
        with self._write_lock:
            t0 = time.perf_counter()
            n = self._count
            if self._n_deleted == 0:
                return Consolidation(0, 0, 0.0, np.arange(n, dtype=np.int64))
            threads = self._threads(None)
            stamps, epochs = new_scratch(threads, self._capacity())
            with _NumbaThreads(threads):
                repaired = graph.repair_deleted(
                    self._codes,
                    self._dim,
                    self._adjacency,
                    self._degrees,
                    self._live,
                    n,
                    self._params.alpha,
                    stamps,
                    epochs,
                )
            keep = np.flatnonzero(self._live[:n]).astype(np.int64)
            new_row = np.full(self._capacity(), -1, dtype=np.int32)
            new_row[keep] = np.arange(keep.shape[0], dtype=np.int32)
            adjacency, degrees = graph.compact_adjacency(
                self._adjacency, self._degrees, keep, new_row
            )
            codes = self._codes[keep]
            floats = self.vectors_of_rows(self._make_state(), keep)
            if self._live[self._entry]:
                entry = int(new_row[self._entry])
            else:
                entry = graph.code_medoid(codes, self._dim) if keep.shape[0] else -1
            self._codes, self._adjacency, self._degrees = codes, adjacency, degrees
            self._labels = self._labels[keep]
            self._live = np.ones(keep.shape[0], dtype=np.uint8)
            self._entry = entry
            removed = n - keep.shape[0]
            self._count = int(keep.shape[0])
            self._n_deleted = 0
            self._segments, self._segment_files = [], []
            self._tail = floats
            self._tail_count = floats.shape[0]
            self._refresh_segments()
            with self._scratch_lock:
                self._scratch = []
            self._publish()
            seconds = time.perf_counter() - t0
            logger.info(
                "consolidated %d deleted points (%d rows repaired) in %.2f s",
                removed,
                repaired,
                seconds,
            )
            return Consolidation(removed, int(repaired), seconds, keep)

    def vectors_of_rows(self, state: IndexState, rows: Any) -> np.ndarray:
        """Stored float vectors (unit-normalised for cosine) of ``rows`` of ``state``, in the
        order given, as a new (len(rows), D) array."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((rows.shape[0], self._dim), dtype=np.float32)
        starts = state.segment_starts
        for i, segment in enumerate([] if state.segments is None else state.segments):
            lo, hi = np.searchsorted(ordered, [starts[i], starts[i + 1]])
            out[order[lo:hi]] = segment[ordered[lo:hi] - starts[i]]
        return out

    # ------------------------------------------------------------------ search
    def _check_search_args(self, k: Any, ef: Any, rerank: Any) -> tuple[int, int, int]:
        k = positive_int(k, "k")
        ef = positive_int(ef, "ef")
        if ef < k:
            raise InvalidInputError(f"ef must be >= k: got ef={ef}, k={k}")
        rerank = ef if rerank is None else positive_int(rerank, "rerank")
        if not k <= rerank <= ef:
            raise InvalidInputError(f"rerank must be in [k, ef] = [{k}, {ef}], got {rerank}")
        return k, ef, rerank

    def _search(
        self, queries: Any, k: Any, ef: Any, rerank: Any, num_threads: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = as_matrix(queries, self._dim, "queries")
        k, ef, rerank = self._check_search_args(k, ef, rerank)
        state = self._state
        return self.search_state(state, self._prepare(q), k, ef, rerank, num_threads)

    def select(
        self, state: IndexState, admit: np.ndarray | None = None, scan: bool = False
    ) -> Selection:
        """The live rows of ``state`` with a non-zero ``admit`` (uint8 per row; all live rows
        when None) as a :class:`Selection` for :meth:`search_state`. With ``scan`` their codes
        are gathered too, so that a scan streams them from one contiguous array."""
        n = state.count
        mask = np.zeros(state.codes.shape[0], dtype=np.uint8)  # private: safe to count
        mask[:n] = state.live[:n] if admit is None else admit[:n] & state.live[:n]
        rows = np.flatnonzero(mask[:n]).astype(np.int32)
        return Selection(mask, rows, state.codes[rows] if scan else self._no_codes, scan)

    def search_state(
        self,
        state: IndexState,
        queries: np.ndarray,
        k: int,
        ef: int,
        rerank: int,
        num_threads: int | None = None,
        admit: np.ndarray | None = None,
        scan: bool = False,
        return_rows: bool = False,
        selection: Selection | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Search a captured :class:`IndexState` with already validated, prepared queries.

        The database layer's entry point. ``admit`` (uint8 per row of ``state``, optional)
        restricts the results to rows with a non-zero entry (a filter; deleted rows are
        excluded whatever it says); ``scan=True`` scores every admitted row in code space
        instead of walking the graph (for filters that match few rows). ``selection`` (from
        :meth:`select` on the same state) replaces ``admit`` and ``scan``, so that repeated
        searches with one filter skip recomputing it. ``return_rows`` returns row numbers
        instead of labels. Returns ``(ids, distances, code_distances_per_query)``.
        """
        nq = queries.shape[0]
        out_ids = np.full((nq, k), -1, dtype=np.int64)
        out_dists = np.full((nq, k), np.inf, dtype=np.float32)
        out_ndist = np.zeros(nq, dtype=np.int64)
        if state.count == 0 or nq == 0:
            return out_ids, out_dists, out_ndist
        if selection is None and (admit is not None or scan):
            selection = self.select(state, admit, scan)
        if selection is None:
            # deleted rows are skipped through the shared live flags, read as they change
            mode = MODE_GRAPH if state.n_deleted == 0 else MODE_FILTERED
            admit, rows, row_codes = state.live, np.zeros(0, dtype=np.int32), self._no_codes
        else:
            mode = MODE_SCAN if selection.scan else MODE_FILTERED
            admit, rows, row_codes = selection.admit, selection.rows, selection.row_codes
            if rows.shape[0] == 0:
                return out_ids, out_dists, out_ndist
        threads = min(self._threads(num_threads), nq)
        scratch = self._acquire_scratch(threads, state.codes.shape[0])
        args = (
            state.codes,
            state.adjacency,
            state.degrees,
            self._dim,
            state.entry,
            state.count,
            int(self._metric),
            state.segments,
            state.segment_starts,
            state.rows if return_rows else state.labels,
            queries,
            ef,
            rerank,
            scratch[0][:threads],
            scratch[1][:threads],
            out_ids,
            out_dists,
            out_ndist,
            mode,
            admit,
            rows,
            row_codes,
            self._no_nav
            if self._center is None
            else bq.transform(queries, self._center, self._rotation),
        )
        try:
            if threads == 1:  # no thread pool: skip Numba's thread-count bookkeeping
                search_serial(*args)
            else:
                with _NumbaThreads(threads):
                    search_batch(*args)
        finally:
            self._release_scratch(scratch)
        return out_ids, out_dists, out_ndist

    def search(
        self,
        queries: Any,
        k: int = 10,
        ef: int | None = None,
        rerank: int | None = None,
        *,
        num_threads: int | None = None,
        target_recall: float | None = None,
    ) -> SearchResult:
        """Return the ``k`` nearest stored vectors of each query.

        Beam search over the 2-bit codes with list size ``ef`` (default 64), then the best
        ``rerank`` candidates (default: all ``ef``) are re-scored with exact float32
        distances. Always 2-D: ``ids`` int64 (q, k) padded with -1 and ``distances`` float32
        (q, k) padded with inf when fewer than ``k`` points exist. Distances are exact,
        smaller = closer: cosine ``1 - cos``, ip ``-dot``, l2 squared.

        ``target_recall`` (in (0, 1], instead of ``ef``): use the smallest ``ef`` that reached
        this recall@k in the index's calibration (:meth:`calibrate`; run on first use and
        again when the index has changed by more than 2x since).
        """
        if target_recall is not None:
            if ef is not None:
                raise InvalidInputError(
                    f"give ef or target_recall, not both: got ef={ef}, "
                    f"target_recall={target_recall}"
                )
            ef = self.ef_for_recall(target_recall, positive_int(k, "k"))
            if rerank is not None and rerank > ef:
                rerank = ef
        ids, dists, _ = self._search(
            queries, k, DEFAULT_EF if ef is None else ef, rerank, num_threads
        )
        return SearchResult(ids, dists)

    def ef_for_recall(self, target_recall: float, k: int = 10) -> int:
        """The ``ef`` a search with ``target_recall`` uses (calibrating first if needed)."""
        if isinstance(target_recall, bool) or not isinstance(target_recall, float | int):
            raise InvalidInputError(f"target_recall must be a number, got {target_recall!r}")
        if not 0.0 < float(target_recall) <= 1.0:
            raise InvalidInputError(f"target_recall must be in (0, 1], got {target_recall}")
        cal = self._calibration
        if cal is None or cal.k != k or cal.stale(len(self), self._changes):
            cal = self.calibrate(k=k)
        if cal.recalls[-1] < target_recall:
            logger.warning(
                "target_recall %.3f is above what the calibration reached (%.3f at ef=%d): "
                "searching with ef=%d",
                target_recall, cal.recalls[-1], cal.efs[-1], cal.efs[-1],
            )  # fmt: skip
        return max(cal.ef_for(float(target_recall)), k)

    def calibrate(self, k: int = 10, *, queries: int | None = None, seed: int = 0) -> Calibration:
        """Measure recall@``k`` over a grid of ``ef`` on sampled stored points (leave-one-out
        queries against exact search; see :mod:`quiver.calibration`) and keep it for
        ``target_recall`` searches; it is saved with the index."""
        k = positive_int(k, "k")
        if len(self) <= k:
            raise InvalidInputError(f"calibrate needs more than k={k} points, got {len(self)}")
        options = {} if queries is None else {"queries": positive_int(queries, "queries")}
        cal = calibrate(self, k=k, seed=seed, **options)
        self._calibration = cal
        self._changes = 0
        logger.info("calibrated recall@%d on %d points in %.2f s", k, cal.count, cal.seconds)
        return cal

    def search_stats(
        self, queries: Any, k: int = 10, ef: int = DEFAULT_EF, rerank: int | None = None
    ) -> dict[str, float]:
        """Work done by :meth:`search`: code distances per query (mean, max) and per point."""
        _, _, ndist = self._search(queries, k, ef, rerank, None)
        return {
            "mean_distances": float(ndist.mean()),
            "max_distances": float(ndist.max()),
            "fraction_of_points": float(ndist.mean() / max(self._count, 1)),
        }

    # ------------------------------------------------------------------ stats
    def stats(self) -> dict[str, Any]:
        """Counts, memory and parameters.

        ``count`` counts live points, ``deleted`` tombstones not yet consolidated.
        ``hot_bytes`` is what search keeps in RAM as allocated (codes + adjacency with spare
        slots + degrees + id map + live flags); ``cold_bytes`` the float32 vectors
        (memory-mapped files plus vectors added since the last save).
        """
        hot = (
            self._codes.nbytes
            + self._adjacency.nbytes
            + self._degrees.nbytes
            + self._labels.nbytes
            + self._live.nbytes
        )
        cold = sum(s.nbytes for s in self._segments)
        degrees = self._degrees[: self._count]
        return {
            "count": len(self),
            "deleted": self._n_deleted,
            "dim": self._dim,
            "metric": self.metric,
            "hot_bytes": int(hot),
            "cold_bytes": int(cold),
            "code_bytes_per_vector": bq.code_bytes(self._dim),
            "build_seconds": round(self._build_seconds, 3),
            "mean_degree": float(degrees.mean()) if self._count else 0.0,
            "entry_point": int(self._labels[self._entry]) if self._count else None,
            "segments": len(self._segments),
            "path": str(self._path) if self._path else None,
            "centering": self._centering,
            "diagnosis": self._diagnosis,
            "calibration": None if self._calibration is None else self._calibration.to_dict(),
            **self._params.to_dict(),
        }

    # ------------------------------------------------------------------ persistence
    def next_generation(self, path: str | Path) -> int:
        """The generation number the next :meth:`save` into ``path`` will write."""
        try:
            previous = store.read_manifest(Path(path))["generation"]
        except (FileNotFoundError, ValueError, KeyError):
            previous = 0
        return max(previous, self._generation) + 1

    def save(
        self,
        path: str | Path,
        *,
        attached_files: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Write the index to directory ``path`` (created if needed), crash-safely; return the
        generation written.

        Float vectors added since the last save go to a new Arrow segment; existing segments
        are kept (or copied when saving elsewhere). The manifest is published last, so a crash
        leaves the previous save readable. ``attached_files`` (key -> file name, already
        written and fsynced in ``path`` by the caller, named ``<key>-g<generation>.<ext>``) and
        ``metadata`` (JSON) are published in the same manifest, so that a caller's own files
        switch atomically with the index (the database layer's points and log position).
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        with self._write_lock:
            gen = self.next_generation(directory)
            segments, new_files = [], []
            checksums: dict[str, int] = {}
            for i, (view, src) in enumerate(zip(self._segments, self._segment_files, strict=True)):
                if src is not None and src.parent.resolve() == directory.resolve():
                    name = src.name
                    crc = self._checksums.get(name)
                else:
                    name = f"vectors-g{gen}-{i}.arrow"
                    if src is None:
                        crc = store.write_segment(directory / name, view)
                    else:
                        shutil.copyfile(src, directory / name)
                        crc = self._checksums.get(src.name)
                    new_files.append((i, directory / name))
                checksums[name] = store.file_checksum(directory / name) if crc is None else crc
                segments.append({"file": name, "rows": int(view.shape[0])})
            n = self._count
            files = {}
            for key, arr in (
                ("codes", self._codes[:n]),
                ("adjacency", self._adjacency[:n]),
                ("degrees", self._degrees[:n]),
                ("labels", self._labels[:n]),
                ("live", self._live[:n]),
                *([] if self._center is None else [("center", self._center)]),
                *([] if self._rotation is None else [("rotation", self._rotation)]),
            ):
                files[key] = f"{key}-g{gen}.npy"
                checksums[files[key]] = store.save_array(directory / files[key], arr)
            for name in (attached_files or {}).values():
                checksums[name] = store.file_checksum(directory / name)
            manifest = {
                "format_version": store.FORMAT_VERSION,
                "generation": gen,
                "dim": self._dim,
                "metric": self.metric,
                "count": n,
                "entry_point": int(self._entry),
                "next_id": int(self._next_id),
                "build_seconds": self._build_seconds,
                "params": self._params.to_dict(),
                "vectors_normalized": self._metric == Metric.COSINE,
                "segments": segments,
                "files": {**files, **(attached_files or {})},
                "checksums": checksums,
                "metadata": metadata or {},
                "centering": self._centering,
                "diagnosis": self._diagnosis,
                "calibration": None if self._calibration is None else self._calibration.to_dict(),
            }
            store.write_manifest(directory, manifest)
            store.remove_unreferenced(directory, manifest)
            self._generation = gen
            self._path = directory
            self._checksums = checksums
            # swap written in-memory vectors for their memory-mapped files
            for i, file in new_files:
                self._segments[i] = store.open_segment(file, self._dim)
                self._segment_files[i] = file
            if self._tail_count and self._segment_files[-1] is not None:
                self._tail = np.zeros((0, self._dim), dtype=np.float32)
                self._tail_count = 0
            self._refresh_segments()
            self._publish()
            return gen

    @classmethod
    def open(
        cls, path: str | Path, *, num_threads: int | None = None, verify_segments: bool = False
    ) -> Index:
        """Open a saved index: hot arrays are loaded, float vectors are memory-mapped.

        The hot arrays are checked against the manifest's CRC-32 checksums as they load.
        ``verify_segments=True`` also checks the float files (it reads them once, which brings
        them into the page cache); by default they are only mapped.
        """
        directory = Path(path)
        manifest = store.read_manifest(directory)
        files = manifest["files"]
        checksums = manifest.get("checksums", {})
        arrays = {"codes", "adjacency", "degrees", "labels", "live", "center", "rotation"}
        for key, name in files.items():
            if key not in arrays:  # a caller's attached file (checked here, read by its owner)
                store.verify_checksum(directory / name, checksums.get(name))
        if verify_segments:
            for seg in manifest["segments"]:
                store.verify_checksum(directory / seg["file"], checksums.get(seg["file"]))

        def load(key: str) -> np.ndarray:  # read once, checksum checked
            return store.load_array(directory / files[key], checksums.get(files[key]))

        params = manifest["params"]
        index = cls(
            manifest["dim"],
            manifest["metric"],
            max_degree=params["max_degree"],
            build_list_size=params["build_list_size"],
            alpha=params["alpha"],
            seed=params["seed"],
            num_threads=num_threads,
            centering=manifest.get("centering", "none"),
        )
        if "center" in files:
            index._center = load("center")
        if "rotation" in files:
            index._rotation = load("rotation")
        index._diagnosis = manifest.get("diagnosis")
        if manifest.get("calibration"):
            index._calibration = Calibration.from_dict(manifest["calibration"])
        index._codes = load("codes")
        index._adjacency = load("adjacency")
        index._degrees = load("degrees")
        index._labels = load("labels")
        index._count = int(manifest["count"])
        index._live = load("live") if "live" in files else np.ones(index._count, dtype=np.uint8)
        index._n_deleted = int(index._count - np.count_nonzero(index._live))
        index.metadata = dict(manifest.get("metadata", {}))
        for seg in manifest["segments"]:
            file = directory / seg["file"]
            if not file.is_file():
                raise CorruptIndexError(f"{directory}: segment {seg['file']} is missing")
            index._segments.append(store.open_segment(file, index._dim))
            index._segment_files.append(file)
        total = sum(s.shape[0] for s in index._segments)
        if total != index._count or index._codes.shape[0] != index._count:
            raise CorruptIndexError(
                f"{directory}: manifest count {index._count} disagrees with {total} vectors and "
                f"{index._codes.shape[0]} codes"
            )
        index._entry = int(manifest["entry_point"])
        index._next_id = int(manifest["next_id"])
        index._build_seconds = float(manifest["build_seconds"])
        index._generation = int(manifest["generation"])
        index._path = directory
        index._checksums = {k: int(v) for k, v in checksums.items()}
        index._refresh_segments()
        index._publish()
        return index


def warmup() -> float:
    """Compile (or load from the on-disk cache) every kernel that ``add``, ``search``, ``save``
    and ``open`` use, by running them on a tiny index; return the seconds it took.

    Call it at start-up (the server does, before reporting ready) and before timing anything.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    index = Index(16, "cosine", num_threads=1)
    index.add(rng.standard_normal((64, 16), dtype=np.float32))
    queries = rng.standard_normal((2, 16), dtype=np.float32)
    index.search(queries[:1], k=2, ef=8)
    if numba.config.NUMBA_NUM_THREADS > 1:
        Index(16, num_threads=2).add(rng.standard_normal((64, 16), dtype=np.float32))
        index.search(queries, k=2, ef=8, num_threads=2)
    return time.perf_counter() - t0


class _NumbaThreads:
    """Context manager: run Numba parallel kernels with ``n`` threads on this thread."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._old = 0

    def __enter__(self) -> None:
        self._old = numba.get_num_threads()
        numba.set_num_threads(self._n)

    def __exit__(self, *exc: object) -> None:
        numba.set_num_threads(self._old)
