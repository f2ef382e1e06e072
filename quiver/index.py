"""The public embedded index: the engine's Vamana index plus data quality.

:class:`Index` is :class:`~quiver.engine.vamana.VamanaIndex` with what needs the data-quality
layer on top: ``centering="auto"`` (the coding chosen from the first batch), the first
batch's applicability diagnosis, and ``target_recall`` searches through a calibration. The
engine stays ignorant of both (the dependency points one way: quality uses the engine).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numba
import numpy as np

from quiver.engine.vamana import ENGINE_CENTERINGS, MIN_QUERIES_PER_THREAD, VamanaIndex
from quiver.errors import InvalidInputError
from quiver.params import BuildParams, SearchParams
from quiver.quality.calibration import Calibration, calibrate
from quiver.quality.diagnose import ISOTROPIC_FRACTION, Diagnosis, diagnose
from quiver.types import SearchResult
from quiver.validation import positive_int

logger = logging.getLogger(__name__)

CENTERING_MODES = ("auto", *ENGINE_CENTERINGS)
#: "auto" centering and the data check need a first batch at least this large.
AUTO_MIN_ROWS = 1000
#: Calibrations kept (one per k asked for; the least recently made is dropped).
MAX_CALIBRATIONS = 8
#: Code recall at ef=64 from which the build-time check skips measuring navigation (unless
#: the data is near-isotropic): near-perfect codes on structured data navigate well.
NEAR_PERFECT_CODES = 0.95


class Index(VamanaIndex):
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
        :func:`quiver.diagnose` (the simplest coding within 0.02 of the best code recall;
        smaller first batches: no centering).
    diagnostics : check the first batch (of at least ``AUTO_MIN_ROWS`` rows) with
        :func:`quiver.diagnose`, log a warning naming cause and remedy when the predicted
        recall@10 at ef=64 is low, and report the verdict in :meth:`stats`.

    Thread safety: any number of ``search`` calls may run while one writer calls ``add``,
    ``delete``, ``consolidate`` or ``save`` (writers are serialised by a lock; searches take
    no lock and read a consistent snapshot, see :class:`~quiver.engine.state.IndexState`).
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
        super().__init__(
            dim, metric, max_degree=max_degree, build_list_size=build_list_size, alpha=alpha,
            seed=seed, num_threads=num_threads, centering=centering,
        )  # fmt: skip
        self._diagnostics = bool(diagnostics)
        self._diagnosis: dict[str, Any] | None = None
        # target-recall calibrations, one per k (at most MAX_CALIBRATIONS, oldest dropped),
        # with the change counter at the time each was made; one calibration runs at a time
        self._calibrations: dict[int, tuple[Calibration, int]] = {}
        self._calibrating = threading.Lock()
        self._recalibration: threading.Thread | None = None

    def _check_centering(self, centering: str) -> None:
        if centering not in CENTERING_MODES:
            raise InvalidInputError(
                f"centering must be one of {', '.join(CENTERING_MODES)}, got {centering!r}"
            )

    # ------------------------------------------------------------------ first batch
    def _first_batch(self, x: np.ndarray) -> Diagnosis | None:
        """Choose the coding from the first batch (prepared rows) and fix it; return the
        quick (code-only) diagnosis when the data check is on and the batch is large enough."""
        quick = None
        if x.shape[0] >= AUTO_MIN_ROWS and (self._diagnostics or self._centering == "auto"):
            quick = diagnose(
                x, self.metric, centering=self._centering, navigation=False, queries=100,
                rotation_seed=self._params.seed,
            )  # fmt: skip
        if self._centering == "auto":
            self._centering = "none" if quick is None else quick.centering
            logger.info("centering: %s (auto, first batch of %d)", self._centering, x.shape[0])
        self._fix_coding(x)
        return quick if self._diagnostics else None

    def _after_first_batch(self, x: np.ndarray, quick: Diagnosis) -> None:
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

    # ------------------------------------------------------------------ search
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

        Beam search over the 2-bit codes with list size ``ef`` (default ``max(64, k)``), then
        the best ``rerank`` candidates (default: all ``ef``) are re-scored with exact float32
        distances. Always 2-D: ``ids`` int64 (q, k) padded with -1 and ``distances`` float32
        (q, k) padded with inf when fewer than ``k`` points exist. Distances are exact,
        smaller = closer: cosine ``1 - cos``, ip ``-dot``, l2 squared.

        ``target_recall`` (in (0, 1], instead of ``ef``): use the smallest ``ef`` that reached
        this recall@k in the index's calibration (:meth:`calibrate`; run on first use and
        again when the index has changed by more than 2x since).
        """
        ids, dists, _ = self._search(
            queries, SearchParams(k, ef, rerank, target_recall), num_threads
        )
        return SearchResult(ids, dists)

    # ------------------------------------------------------------------ target recall
    def ef_for_recall(self, target_recall: float, k: int = 10) -> int:
        """The ``ef`` a search with ``target_recall`` uses.

        Calibrations are kept per ``k``. The first search for a ``k`` calibrates (once:
        concurrent ones wait for it, as one calibration runs at a time per index); a stale
        calibration keeps serving while a background thread replaces it.
        """
        target = SearchParams(k, target_recall=target_recall).target_recall
        cal = self._calibration_for(k)
        if cal.recalls[-1] < target:
            logger.warning(
                "target_recall %.3f is above what the calibration reached (%.3f at ef=%d): "
                "searching with ef=%d",
                target, cal.recalls[-1], cal.efs[-1], cal.efs[-1],
            )  # fmt: skip
        return max(cal.ef_for(target), k)

    def _calibration_for(self, k: int) -> Calibration:
        known = self._calibrations.get(k)
        if known is None:
            with self._calibrating:  # one at a time; a waiter then finds the new one
                known = self._calibrations.get(k)
                if known is None:
                    return self._calibrate_locked(k)
        cal, changes_at = known
        if cal.stale(len(self), self._changes - changes_at):
            self._recalibrate_in_background(k)
        return cal

    def _recalibrate_in_background(self, k: int) -> None:
        thread = self._recalibration
        if (thread is not None and thread.is_alive()) or self._calibrating.locked():
            return  # one at a time: a later search retries

        def run() -> None:
            if not self._calibrating.acquire(blocking=False):
                return
            try:
                self._calibrate_locked(k)
            except Exception:  # a background thread has no caller to raise to
                logger.exception("background recalibration for k=%d failed", k)
            finally:
                self._calibrating.release()

        self._recalibration = threading.Thread(target=run, name="recalibrate", daemon=True)
        self._recalibration.start()

    def wait_for_calibration(self, timeout: float | None = None) -> None:
        """Wait until a background recalibration (if one runs) is done."""
        thread = self._recalibration
        if thread is not None:
            thread.join(timeout)

    def calibrate(self, k: int = 10, *, queries: int | None = None, seed: int = 0) -> Calibration:
        """Measure recall@``k`` over a grid of ``ef`` on sampled stored points (leave-one-out
        queries against exact search; see :mod:`quiver.quality.calibration`) and keep it for
        ``target_recall`` searches with this ``k``; it is saved with the index. Waits for a
        calibration in progress (one runs at a time)."""
        k = positive_int(k, "k")
        with self._calibrating:
            return self._calibrate_locked(k, queries=queries, seed=seed)

    def _calibrate_locked(
        self, k: int, *, queries: int | None = None, seed: int = 0
    ) -> Calibration:
        if len(self) <= k:
            raise InvalidInputError(f"calibrate needs more than k={k} points, got {len(self)}")
        options = {} if queries is None else {"queries": positive_int(queries, "queries")}
        changes_at = self._changes
        cal = calibrate(self, k=k, seed=seed, **options)
        self._keep_calibration(cal, changes_at)
        logger.info("calibrated recall@%d on %d points in %.2f s", k, cal.count, cal.seconds)
        return cal

    def _keep_calibration(self, cal: Calibration, changes_at: int) -> None:
        calibrations = dict(self._calibrations)  # replaced whole: readers never see a change
        calibrations.pop(cal.k, None)
        calibrations[cal.k] = (cal, changes_at)
        while len(calibrations) > MAX_CALIBRATIONS:
            calibrations.pop(next(iter(calibrations)))
        self._calibrations = calibrations

    @property
    def _calibration(self) -> Calibration | None:
        """The most recently made calibration (what stats and older manifests show)."""
        if not self._calibrations:
            return None
        return next(reversed(self._calibrations.values()))[0]

    # ------------------------------------------------------------------ stats, persistence
    def stats(self) -> dict[str, Any]:
        """Counts, memory and parameters (see :meth:`VamanaIndex.stats`), plus the data
        check's ``diagnosis`` and the ``calibration``."""
        return {
            **super().stats(),
            "diagnosis": self._diagnosis,
            "calibration": None if self._calibration is None else self._calibration.to_dict(),
            "calibrated_k": sorted(self._calibrations),
        }

    def manifest_extras(self) -> dict[str, Any]:
        return {
            "diagnosis": self._diagnosis,
            "calibration": None if self._calibration is None else self._calibration.to_dict(),
            "calibrations": [cal.to_dict() for cal, _ in self._calibrations.values()],
        }

    def load_extras(self, manifest: dict[str, Any]) -> None:
        self._diagnosis = manifest.get("diagnosis")
        saved = manifest.get("calibrations") or (
            [manifest["calibration"]] if manifest.get("calibration") else []
        )
        for entry in saved:
            self._keep_calibration(Calibration.from_dict(entry), self._changes)


def warmup() -> float:
    """Compile (or load from the on-disk cache) every kernel that ``add``, ``search``, ``save``
    and ``open`` use, by running them on a tiny index; return the seconds it took.

    Call it at start-up (the server does, before reporting ready) and before timing anything.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    index = Index(16, "cosine", num_threads=1)
    index.add(rng.standard_normal((64, 16), dtype=np.float32))
    queries = rng.standard_normal((2 * MIN_QUERIES_PER_THREAD, 16), dtype=np.float32)
    index.search(queries[:1], k=2, ef=8)
    if numba.config.NUMBA_NUM_THREADS > 1:  # a batch large enough for two threads
        Index(16, num_threads=2).add(rng.standard_normal((64, 16), dtype=np.float32))
        index.search(queries, k=2, ef=8, num_threads=2)
    return time.perf_counter() - t0
