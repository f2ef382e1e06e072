"""Will quiver work on this data? A sampled diagnostic that predicts recall@10 before indexing.

The 2-bit codes keep each coordinate's sign and whether it is larger than the vector's mean
magnitude (:mod:`quiver.engine.bq`). That works on contrastive text embeddings and fails on data
whose
signs carry nothing (non-negative descriptors such as SIFT) or whose neighbours are not
findable by greedy graph search at all (isotropic random data). :func:`diagnose` measures both
effects on a sample and combines them into a predicted recall@10 of the graph index.

Prediction = *code recall* x *navigation efficiency*:

1. **Code recall** ``C(n, ef)``: for sampled data rows used as queries (their own row left
   out), the exact top-10 among **all** ``n`` rows, and the fraction of those whose rank by
   the asymmetric code distance (the one the search navigates with) is below ``ef``. That is
   the recall of "top-ef by code, then exact rerank", the best a search with list size ``ef``
   can do. The code ranks are counted on a random sample of ``s`` rows: a neighbour is inside
   the top ``ef`` of ``n`` when fewer than ``ef * s / n`` sampled rows beat it. This is the
   correction for sampling: in a *sample* of ``m`` rows the true neighbours are rarer and far
   easier to rank (they stand for ranks ``~ n / m`` times deeper in the full set), so the
   neighbours must come from the full set and only the ranks may be sampled.
2. **Navigation efficiency** ``rho(n, ef)``: graph recall divided by code recall, measured on
   nested samples of ``m = M/8 .. M`` rows (a real :class:`quiver.Index` built on them, the same
   queries held out) at ``ef`` 16-128, and extrapolated to ``n`` with the fit
   ``logit rho = a + b ln ef + c ln m`` (``c <= 0``). Structured data keeps ``rho`` near 1 at
   every size; on isotropic random data ``rho`` falls with every doubling of ``m``, which is why
   a brute-force overlap test (the paper's compatibility test, which scored random data at 54 %)
   is fooled while this one is not.

Statistics that explain the regime are reported alongside: mean sign-plane entropy (0 for
non-negative data), the mean's offset from the origin relative to the spread, and the
effective dimensionality (participation ratio of the covariance spectrum). Predicted vs
measured recall on every benchmark set: ``python -m bench.measure.diagnose_report``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from quiver.engine import bq
from quiver.errors import InvalidInputError
from quiver.metrics import METRIC_NAMES, parse_metric
from quiver.quality.evidence import (
    EXACT_BUDGET,
    MIN_NAV_ROWS,
    PLAIN,
    Coding,
    code_recall,
    exact_neighbors,
    fit_navigation,
    navigation_at,
    navigation_points,
    sample_rows,
    shape_statistics,
)
from quiver.validation import positive_int

logger = logging.getLogger(__name__)

#: List sizes at which recall is predicted.
EF_GRID = (16, 32, 64, 128, 256)
#: Predicted recall@10 at ef=64 at or above which the data is ``suitable``.
SUITABLE_RECALL = 0.85
#: ... and below which it is ``unsuitable`` (in between: ``marginal``).
UNSUITABLE_RECALL = 0.6
#: Mean sign-plane entropy (bits) below which the sign bits are called uninformative.
LOW_SIGN_ENTROPY = 0.5
#: Code transforms :func:`diagnose` compares (``Index(centering=...)``): plain codes, codes of
#: ``x - mean``, codes of ``(x - mean) @ R`` with ``R = bq.random_rotation(dim, seed)``.
CODINGS = ("none", "mean", "mean-rotate")
#: Code-recall gain at ef=64 a coding must bring over the simpler ones before
#: ``centering="auto"`` picks it (well above the estimate's noise on MiniLM, where neither
#: centering nor rotation changes anything).
AUTO_CENTERING_GAIN = 0.02
#: Mean offset (x the spread) above which the data is called offset from the origin.
HIGH_OFFSET = 0.5
#: Code recall at ef=64 below which the codes themselves are a named cause.
LOW_CODE_RECALL = 0.8
#: Effective dimensionality, as a fraction of ``dim``, above which data is called isotropic.
ISOTROPIC_FRACTION = 0.5
#: Navigation efficiency at ef=64 below which the graph itself is a named cause.
LOW_NAVIGATION = 0.85
#: The outlook predicts recall at ``max(OUTLOOK_FACTOR * n, OUTLOOK_MIN_ROWS)`` rows.
OUTLOOK_FACTOR = 10
OUTLOOK_MIN_ROWS = 1_000_000
#: Fewest rows :func:`diagnose` accepts.
MIN_ROWS = 50
#: Code ranks are counted on ``n / _RANK_SAMPLE_DIVISOR`` rows (at least ``_MIN_RANK_SAMPLE``,
#: at most ``_MAX_RANK_SAMPLE``), so that at ef=64 the threshold ``ef * s / n`` is 8 sampled
#: rows (3.2 at 1M rows; the step estimate stayed within 1 point of the full count at 3.2 on
#: GloVe): fine enough, yet far cheaper than all rows.
_RANK_SAMPLE_DIVISOR = 8
_MIN_RANK_SAMPLE = 20_000
_MAX_RANK_SAMPLE = 50_000
#: The exact pass costs ``queries x n`` distances; past this many, fewer queries (down to
#: ``_MIN_QUERIES``) are used so that it stays bounded on large data.
_MIN_QUERIES = 100
_STATS_ROWS = 10_000


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` found; ``to_dict()`` for JSON, ``summary()`` for people.

    Recall dicts map a list size ``ef`` to recall@10 in [0, 1].

    Attributes
    ----------
    n, dim, metric : the data diagnosed.
    centering : the coding used, one of :data:`CODINGS`.
    queries, rank_sample, navigation_sample : sample sizes used.
    sign_entropy : mean over dimensions of the binary entropy (bits) of ``P(x_i > 0)``;
        1 = balanced signs, 0 = every sign equal (non-negative data).
    low_entropy_fraction : fraction of dimensions whose sign entropy is below 0.5 bits.
    mean_offset : ``||mean|| / sqrt(E ||x - mean||^2)``: how far the data sits from the origin
        relative to its spread (cosine: of the unit-normalised vectors).
    effective_dim : participation ratio ``(sum l)^2 / sum l^2`` of the covariance spectrum.
    paper_overlap : the paper's compatibility test: overlap of the top-10 by code and by
        float distance within the navigation sample (above ~0.5 "suits BQ"; easily fooled).
    code_recall : ``C(n, ef)``, recall of "top-ef by code distance then exact rerank".
    navigation : ``rho(n, ef)``, graph recall / code recall extrapolated to ``n``
        (empty when the navigation part was skipped).
    predicted_recall : ``code_recall * navigation`` (``code_recall`` alone, an upper bound,
        when navigation was skipped).
    coding_recall : code recall of every coding of :data:`CODINGS` (the one used included).
    outlook_n, outlook_recall : predicted recall@10 at ef=64 were the collection to grow to
        ``outlook_n`` rows (code recall as now; navigation extrapolated); None without
        navigation.
    center : the mean that centering subtracts (of the prepared vectors), as a list.
    verdict : ``"suitable"``, ``"marginal"`` or ``"unsuitable"``.
    causes, remedies : human-readable reasons and fixes (empty when suitable).
    seconds : wall time of the diagnostic.
    """

    n: int
    dim: int
    metric: str
    centering: str
    queries: int
    rank_sample: int
    navigation_sample: int
    sign_entropy: float
    low_entropy_fraction: float
    mean_offset: float
    effective_dim: float
    paper_overlap: float | None
    code_recall: dict[int, float]
    navigation: dict[int, float]
    predicted_recall: dict[int, float]
    coding_recall: dict[str, dict[int, float]]
    outlook_n: int
    outlook_recall: float | None
    verdict: str
    causes: tuple[str, ...]
    remedies: tuple[str, ...]
    seconds: float
    center: list[float] = field(repr=False, default_factory=list)

    @property
    def predicted_recall_at_64(self) -> float:
        """Predicted recall@10 at the default ``ef=64``."""
        return self.predicted_recall[64]

    @property
    def recommended_ef(self) -> int | None:
        """Smallest ``ef`` of :data:`EF_GRID` predicted to reach 0.9 recall@10, else None."""
        for ef in EF_GRID:
            if self.predicted_recall[ef] >= 0.9:
                return ef
        return None

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per cause and remedy; empty when the verdict is ``suitable``."""
        if self.verdict == "suitable":
            return ()
        head = (
            f"quiver predicts recall@10 {self.predicted_recall_at_64:.2f} at ef=64 on this "
            f"data ({self.verdict})"
        )
        return (
            head,
            *(f"cause: {c}" for c in self.causes),
            *(f"remedy: {r}" for r in self.remedies),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (recall keys as strings; the center vector left out)."""
        out = asdict(self)
        out.pop("center")
        for key in ("code_recall", "navigation", "predicted_recall"):
            out[key] = {str(ef): round(v, 4) for ef, v in out[key].items()}
        out["coding_recall"] = {
            mode: {str(ef): round(v, 4) for ef, v in values.items()}
            for mode, values in self.coding_recall.items()
        }
        out["causes"] = list(self.causes)
        out["remedies"] = list(self.remedies)
        out["recommended_ef"] = self.recommended_ef
        return out

    def summary(self) -> str:
        """A few lines for a terminal or a log."""

        def row(values: dict[int, float]) -> str:
            return "  ".join(f"ef={ef}: {values[ef]:.3f}" for ef in EF_GRID if ef in values)

        def line(label: str, values: dict[int, float]) -> str:
            return f"  {label:<26s}{row(values)}"

        lines = [
            f"quiver diagnosis of {self.n:,} x {self.dim} ({self.metric}, centering "
            f"{self.centering}): {self.verdict.upper()}",
            line("predicted recall@10", self.predicted_recall),
            line("code recall", self.code_recall),
        ]
        if self.navigation:
            lines.append(line("navigation", self.navigation))
        for mode, values in self.coding_recall.items():
            if mode != self.centering:
                lines.append(line(f"code recall ({mode})", values))
        if self.outlook_recall is not None:
            lines.append(
                f"  {'outlook':<26s}ef=64: {self.outlook_recall:.3f} at {self.outlook_n:,} vectors"
            )
        overlap = "n/a" if self.paper_overlap is None else f"{self.paper_overlap:.2f}"
        lines.append(
            f"  sign entropy {self.sign_entropy:.3f} bits (low in "
            f"{self.low_entropy_fraction:.0%} of dims), mean offset {self.mean_offset:.2f}, "
            f"effective dim {self.effective_dim:.1f} of {self.dim}, paper overlap {overlap}"
        )
        lines += [f"  cause: {c}" for c in self.causes]
        lines += [f"  remedy: {r}" for r in self.remedies]
        lines.append(
            f"  ({self.queries} queries, rank sample {self.rank_sample:,}, navigation sample "
            f"{self.navigation_sample:,}, {self.seconds:.1f} s)"
        )
        return "\n".join(lines)


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class _Evidence:
    """What the verdict is decided from (see :class:`Diagnosis` for each field)."""

    predicted: dict[int, float]
    code: dict[int, float]
    navigation: dict[int, float]
    codings: dict[str, dict[int, float]]
    coding: str
    outlook_n: int
    outlook_recall: float | None
    sign_entropy: float
    mean_offset: float
    effective_dim: float
    dim: int

    @property
    def isotropic(self) -> bool:
        return self.effective_dim > ISOTROPIC_FRACTION * self.dim


def _causes(e: _Evidence) -> list[str]:
    causes = []
    if e.sign_entropy < LOW_SIGN_ENTROPY or e.mean_offset > HIGH_OFFSET:
        causes.append(
            f"the data sits off the origin (mean offset {e.mean_offset:.2f} x the spread, sign "
            f"entropy {e.sign_entropy:.2f} bits of 1): the sign bits mostly encode the mean, "
            "not where a vector is relative to the others"
        )
    if e.code[64] < SUITABLE_RECALL:
        how = "poorly" if e.code[64] < LOW_CODE_RECALL else "only moderately well"
        causes.append(
            f"the 2-bit codes rank neighbours {how}: even a full scan by code distance finds "
            f"{e.code[64]:.2f} of the true top-10 among its best 64"
        )
    if e.navigation and e.navigation[64] < LOW_NAVIGATION:
        causes.append(
            f"the graph navigates poorly: it finds {e.navigation[64]:.2f} of what a full code "
            "scan would"
        )
    if e.outlook_recall is not None and e.outlook_recall < UNSUITABLE_RECALL:
        causes.append(
            f"recall falls as the collection grows: predicted {e.outlook_recall:.2f} at ef=64 "
            f"at {e.outlook_n:,} vectors"
        )
    navigation_hard = (e.navigation and e.navigation[64] < LOW_NAVIGATION) or (
        e.outlook_recall is not None and e.outlook_recall < UNSUITABLE_RECALL
    )
    if e.isotropic and navigation_hard:
        causes.append(
            f"the data is nearly isotropic (effective dimensionality {e.effective_dim:.0f} of "
            f"{e.dim}): nearest neighbours are barely closer than random points, which is hard "
            "for any graph index"
        )
    return causes


def _verdict(e: _Evidence) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(verdict, causes, remedies) from the predicted recall at ef=64 and its outlook.

    Isotropic data whose recall collapses as it grows is ``unsuitable`` even while small.
    """
    p64 = e.predicted[64]
    verdict = "suitable"
    if p64 < UNSUITABLE_RECALL:
        verdict = "unsuitable"
    elif p64 < SUITABLE_RECALL:
        verdict = "marginal"
    if e.outlook_recall is not None and e.outlook_recall < UNSUITABLE_RECALL:
        verdict = (
            "unsuitable" if e.isotropic else ("marginal" if verdict == "suitable" else verdict)
        )
    if verdict == "suitable":
        return verdict, (), ()
    remedies = []
    best = _pick_coding(e.codings)  # what centering="auto" would choose
    # named whenever centering="auto" would pick it: the same gain threshold
    if best != e.coding and e.codings[best][64] >= e.code[64] + AUTO_CENTERING_GAIN:
        what = "subtract the mean" + (" and rotate" if best == "mean-rotate" else "")
        remedies.append(
            f"data-adaptive codes: Index(centering={best!r}) ({what} before encoding): code "
            f"recall at ef=64 {e.code[64]:.2f} -> {e.codings[best][64]:.2f}"
        )
    better = [ef for ef in EF_GRID if ef > 64 and e.predicted[ef] >= SUITABLE_RECALL]
    if better:
        remedies.append(
            f"search with a larger ef: predicted recall@10 {e.predicted[better[0]]:.2f} at "
            f"ef={better[0]}"
        )
    if not better or verdict == "unsuitable":
        remedies.append("use a float-vector graph index (e.g. HNSW) for this data")
    return verdict, tuple(_causes(e)), tuple(remedies)


# --------------------------------------------------------------------------- entry point


def _pick_coding(coding_recall: dict[str, dict[int, float]]) -> str:
    """The simplest coding within :data:`AUTO_CENTERING_GAIN` of the best code recall at 64."""
    best = max(values[64] for values in coding_recall.values())
    return next(m for m in CODINGS if coding_recall[m][64] >= best - AUTO_CENTERING_GAIN)


def diagnose(
    vectors: Any,
    metric: str = "cosine",
    *,
    sample: int = 10_000,
    queries: int = 200,
    centering: str = "none",
    navigation: bool = True,
    seed: int = 0,
    rotation_seed: int = 0,
    index_options: dict[str, Any] | None = None,
) -> Diagnosis:
    """Predict how well quiver will search ``vectors`` (recall@10 at ef 16-256), from samples.

    Parameters
    ----------
    vectors : (n, D) array-like (float32/float64 arrays and ``np.memmap`` work; not copied
        whole): the data to be indexed. The data rows themselves serve as queries.
    metric : ``"cosine"``, ``"ip"`` or ``"l2"``, as for :class:`quiver.Index`.
    sample : rows of the navigation sample (a graph is built on it; the largest cost).
    queries : data rows used as queries (their own row excluded from their neighbours); on
        large data fewer, down to 100, so that the exact pass stays bounded.
    centering : the coding to predict for, one of :data:`CODINGS`: ``"none"`` (codes of
        ``x``), ``"mean"`` (codes of ``x - mean``, the mean estimated on the sample) or
        ``"mean-rotate"`` (codes of ``(x - mean) @ bq.random_rotation(dim, rotation_seed)``),
        as ``Index(centering=...)``; or ``"auto"``: the simplest coding whose code recall at
        ef=64 is within :data:`AUTO_CENTERING_GAIN` of the best (what ``Index`` picks). The
        code recall of every coding is reported.
    navigation : build graphs on the samples (default). ``False`` skips that and predicts the
        code recall alone, an upper bound (fast: well under a second on 100k rows).
    seed : fixes every sample.
    rotation_seed : seed of the rotation (an index uses its own ``seed``).
    index_options : keyword arguments for the sample graphs' :class:`quiver.Index`
        (``max_degree``, ``build_list_size``, ``alpha``, ``num_threads``); default: Index's.

    Returns
    -------
    Diagnosis

    Raises
    ------
    InvalidInputError
        ``vectors`` is not a 2-D numeric array of at least :data:`MIN_ROWS` finite rows, or an
        argument is out of range.
    """
    t0 = time.perf_counter()
    kind = parse_metric(metric)
    sample = positive_int(sample, "sample", minimum=MIN_NAV_ROWS)
    n_queries = positive_int(queries, "queries")
    if centering not in (*CODINGS, "auto"):
        raise InvalidInputError(
            f"centering must be one of auto, {', '.join(CODINGS)}, got {centering!r}"
        )
    shape = getattr(vectors, "shape", None)
    if shape is None:
        vectors = np.asarray(vectors)
        shape = vectors.shape
    if len(shape) != 2:
        raise InvalidInputError(f"vectors must be a 2-D (n, dim) array, got shape {shape}")
    n, dim = int(shape[0]), int(shape[1])
    if n < MIN_ROWS:
        raise InvalidInputError(f"diagnose needs at least {MIN_ROWS} vectors, got {n}")

    rng = np.random.default_rng(seed)
    nq = min(n_queries, max(_MIN_QUERIES, EXACT_BUDGET // n), n // 5)
    rank_n = min(n - nq, max(_MIN_RANK_SAMPLE, min(_MAX_RANK_SAMPLE, n // _RANK_SAMPLE_DIVISOR)))
    nav_n = min(sample, n - nq)
    picked = rng.permutation(n)
    query_rows = np.sort(picked[:nq])
    rest = picked[nq:]
    rank_rows = np.sort(rest[:rank_n])
    nav_rows = rest[:nav_n]  # a random order: its prefixes are random samples
    q = sample_rows(vectors, query_rows, dim, kind, "vectors")
    ranked = sample_rows(vectors, rank_rows, dim, kind, "vectors")

    # a stride through the sorted random rows is itself a random subset
    stats_rows = ranked[:: max(1, math.ceil(rank_n / _STATS_ROWS))]
    mean = stats_rows.mean(axis=0, dtype=np.float64).astype(np.float32)
    codings: dict[str, Coding] = {
        "none": PLAIN,
        "mean": (mean, None),
        "mean-rotate": (mean, bq.random_rotation(dim, rotation_seed)),
    }
    t1 = time.perf_counter()

    truth = exact_neighbors(vectors, q, query_rows, kind)
    neighbors = sample_rows(vectors, np.sort(np.unique(truth)), dim, kind, "vectors")
    lookup = np.searchsorted(np.unique(truth), truth)
    t2 = time.perf_counter()

    # a neighbour of full-set rank r is beaten by ~ r * rank_n / (n - nq) sampled rows
    thresholds = {ef: ef * rank_n / (n - nq) for ef in EF_GRID}

    coding_recall = {
        mode: code_recall(q, neighbors, lookup, ranked, c, thresholds)
        for mode, c in codings.items()
    }
    if centering == "auto":
        centering = _pick_coding(coding_recall)
    code = coding_recall[centering]
    coding = codings[centering]
    sign_entropy, low_fraction, offset, eff_dim = shape_statistics(stats_rows, coding)
    t3 = time.perf_counter()

    nav: dict[int, float] = {}
    nav_fit = np.zeros(3)
    overlap: float | None = None
    if navigation and nav_n >= MIN_NAV_ROWS:
        base = sample_rows(vectors, nav_rows, dim, kind, "vectors")
        options = {"seed": rotation_seed, **(index_options or {})}
        options.pop("diagnostics", None)  # the sample graphs are plain engine indexes
        options.update(centering=centering)
        points, overlap = navigation_points(base, q, kind, coding, options)
        nav_fit = fit_navigation(points)
        nav = {ef: navigation_at(nav_fit, ef, n) for ef in EF_GRID}
    predicted = {ef: code[ef] * nav.get(ef, 1.0) for ef in EF_GRID}
    t4 = time.perf_counter()
    logger.debug(
        "diagnose %d x %d: stats %.2fs, exact %.2fs, codes %.2fs, navigation %.2fs",
        n, dim, t1 - t0, t2 - t1, t3 - t2, t4 - t3,
    )  # fmt: skip

    outlook_n = max(OUTLOOK_FACTOR * n, OUTLOOK_MIN_ROWS)
    outlook = None
    if nav:
        outlook = code[64] * navigation_at(nav_fit, 64, outlook_n)
    verdict, causes, remedies = _verdict(
        _Evidence(
            predicted,
            code,
            nav,
            coding_recall,
            centering,
            outlook_n,
            outlook,
            sign_entropy,
            offset,
            eff_dim,
            dim,
        )
    )
    return Diagnosis(
        n=n,
        dim=dim,
        metric=METRIC_NAMES[kind],
        centering=centering,
        queries=nq,
        rank_sample=rank_n,
        navigation_sample=nav_n if nav else 0,
        sign_entropy=sign_entropy,
        low_entropy_fraction=low_fraction,
        mean_offset=offset,
        effective_dim=eff_dim,
        paper_overlap=overlap,
        code_recall=code,
        navigation=nav,
        predicted_recall=predicted,
        coding_recall=coding_recall,
        outlook_n=outlook_n,
        outlook_recall=outlook,
        verdict=verdict,
        causes=causes,
        remedies=remedies,
        seconds=time.perf_counter() - t0,
        center=[float(v) for v in mean],
    )
