"""The measurements behind a diagnosis: exact neighbours of sampled queries, code distances
and code recall, shape statistics of the data, and the navigation of sample graphs.

Pure functions over arrays (the Numba kernel included); :mod:`quiver.quality.diagnose` turns
what they measure into a verdict.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from quiver.engine import bq
from quiver.engine.bq import QUERY_BITS
from quiver.engine.kernels import encode_query, normalize_rows, query_code_distance
from quiver.engine.vamana import VamanaIndex
from quiver.errors import InvalidInputError
from quiver.metrics import METRIC_NAMES, Metric
from quiver.validation import as_matrix

#: Result size whose recall is predicted (recall@10).
K = 10
#: List sizes searched on the navigation samples (the fit covers the rest).
NAV_EF_GRID = (16, 32, 64, 128)
#: Smallest navigation sample worth building a graph on.
MIN_NAV_ROWS = 250
#: The exact pass costs ``queries x n`` distances; past this many, fewer queries are used so
#: that it stays bounded on large data.
EXACT_BUDGET = 100_000_000
_BLOCK_ROWS = 65_536


# --------------------------------------------------------------------------- data access


def prepare_rows(out: np.ndarray, metric: Metric) -> np.ndarray:
    """Unit-normalise float32 rows in place for cosine (as the index stores them)."""
    if metric == Metric.COSINE:
        normalize_rows(out)
    return out


def sample_rows(vectors: Any, rows: np.ndarray, dim: int, metric: Metric, name: str) -> np.ndarray:
    """Sorted ``rows`` of ``vectors`` (any array-like, memmaps too), validated and prepared."""
    return prepare_rows(as_matrix(np.asarray(vectors[rows]), dim, name), metric)


def _block_scores(block: np.ndarray, queries: np.ndarray, metric: Metric) -> np.ndarray:
    """Smaller = closer scores (rows = queries, cols = block rows) that rank like the metric."""
    dots = queries @ block.T
    if metric == Metric.COSINE:
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        norms[norms == 0] = 1.0
        dots /= -norms
        return dots
    if metric == Metric.IP:
        return -dots
    dots *= -2.0
    dots += np.einsum("ij,ij->i", block, block)
    return dots


def exact_neighbors(
    vectors: Any, queries: np.ndarray, query_rows: np.ndarray, metric: Metric, k: int = K
) -> np.ndarray:
    """Exact top-``k`` rows (q, k) of all of ``vectors`` for each query, its own row excluded.

    One blocked pass over the data (memmaps and float64 arrays are read block by block).
    """
    n = vectors.shape[0]
    nq = queries.shape[0]
    best_s = np.full((nq, 0), np.inf, dtype=np.float32)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    for b0 in range(0, n, _BLOCK_ROWS):
        block = np.asarray(vectors[b0 : b0 + _BLOCK_ROWS], dtype=np.float32)
        if not np.isfinite(block).all():
            raise InvalidInputError(f"vectors must be finite: rows {b0}.. hold NaN or inf")
        scores = _block_scores(block, queries, metric)
        own = (query_rows >= b0) & (query_rows < b0 + block.shape[0])
        scores[np.flatnonzero(own), query_rows[own] - b0] = np.inf
        take = min(k, scores.shape[1])
        part = np.argpartition(scores, take - 1, axis=1)[:, :take]
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, part + b0], axis=1)
        keep = min(k, cand_s.shape[1])
        sel = np.argpartition(cand_s, keep - 1, axis=1)[:, :keep]
        best_s = np.take_along_axis(cand_s, sel, axis=1)
        best_i = np.take_along_axis(cand_i, sel, axis=1)
    return best_i


def _sample_neighbors(base: np.ndarray, queries: np.ndarray, metric: Metric) -> np.ndarray:
    """Exact top-:data:`K` rows of the (prepared, in-memory) ``base`` for each query."""
    scores = _block_scores(base, queries, metric)
    take = min(K, base.shape[0])
    return np.argpartition(scores, take - 1, axis=1)[:, :take]


# --------------------------------------------------------------------------- code distances


@njit(cache=True, nogil=True, parallel=True)
def _query_code_distances(queries: np.ndarray, codes: np.ndarray, out: np.ndarray) -> None:
    """``out[i, j]`` = the search's asymmetric distance of float query ``i`` to code row ``j``.

    ``queries`` (q, D) float32 prepared as the search prepares them; ``codes`` (m, 2W) uint64;
    ``out`` (q, m) float64. Each query is quantised by ``kernels.encode_query`` and compared
    with ``kernels.query_code_distance``: the very distance beam search navigates by.
    """
    words = codes.shape[1] // 2
    for i in prange(queries.shape[0]):
        planes = np.empty(QUERY_BITS * words, dtype=np.uint64)
        params = np.empty(3, dtype=np.float64)
        encode_query(queries[i], planes, params)
        for j in range(codes.shape[0]):
            out[i, j] = query_code_distance(planes, params, codes[j], words)


Coding = tuple[np.ndarray | None, np.ndarray | None]  # (center, rotation) of bq.transform
PLAIN: Coding = (None, None)


def code_distances(queries: np.ndarray, vectors: np.ndarray, coding: Coding = PLAIN) -> np.ndarray:
    """Asymmetric code distances (q, m) float64 of ``queries`` to the codes of ``vectors``.

    Both are prepared float32 rows; ``coding`` = ``(center, rotation)``: codes and queries are
    of ``bq.transform(x, center, rotation)``, as the index makes them.
    """
    codes = bq.encode(vectors, center=coding[0], rotation=coding[1])
    out = np.empty((queries.shape[0], codes.shape[0]), dtype=np.float64)
    _query_code_distances(bq.transform(queries, *coding), codes, out)
    return out


def rank_counts(code_d: np.ndarray, neighbor_d: np.ndarray, limit: int) -> np.ndarray:
    """How many entries of each row of ``code_d`` beat each ``neighbor_d`` (ties count half).

    Counts above ``limit`` are reported as ``limit + 1`` (only small counts matter).
    """
    keep = min(limit + 1, code_d.shape[1])
    smallest = np.sort(np.partition(code_d, keep - 1, axis=1)[:, :keep], axis=1)
    counts = np.empty(neighbor_d.shape, dtype=np.float64)
    for i in range(code_d.shape[0]):
        lo = np.searchsorted(smallest[i], neighbor_d[i], side="left")
        hi = np.searchsorted(smallest[i], neighbor_d[i], side="right")
        counts[i] = np.where(hi >= keep, limit + 1, 0.5 * (lo + hi))
    return counts


def code_recall(
    queries: np.ndarray,
    neighbors: np.ndarray,
    lookup: np.ndarray,
    ranked: np.ndarray,
    coding: Coding,
    thresholds: dict[int, float],
) -> dict[int, float]:
    """Recall of top-ef by code: neighbours beaten by fewer than ``thresholds[ef]`` sampled rows.

    ``neighbors`` holds the distinct true neighbours, ``lookup`` (q, k) each query's rows in
    it; ``ranked`` is the rank sample (which holds no query row).
    """
    neighbor_d = np.take_along_axis(code_distances(queries, neighbors, coding), lookup, axis=1)
    code_d = code_distances(queries, ranked, coding)
    counts = rank_counts(code_d, neighbor_d, math.ceil(max(thresholds.values())))
    return {ef: float((counts < t).mean()) for ef, t in thresholds.items()}


# --------------------------------------------------------------------------- statistics


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of Bernoulli(p), exactly 0 at p = 0 and p = 1."""
    inner = (p > 0) & (p < 1)
    q = np.where(inner, p, 0.5)
    return np.where(inner, -(q * np.log2(q) + (1 - q) * np.log2(1 - q)), 0.0)


def shape_statistics(x: np.ndarray, coding: Coding) -> tuple[float, float, float, float]:
    """(sign entropy of the coded rows, low-entropy fraction, mean offset, participation
    ratio) of rows ``x``."""
    shifted = bq.transform(x, *coding)
    entropy = _binary_entropy((shifted > 0).mean(axis=0))
    mean = x.mean(axis=0, dtype=np.float64)
    centered = x - mean.astype(np.float32)
    spread = math.sqrt(float(np.einsum("ij,ij->", centered, centered)) / centered.shape[0])
    offset = float(np.linalg.norm(mean)) / spread if spread > 0 else 0.0
    # participation ratio (sum l)^2 / sum l^2 = tr(C)^2 / ||C||_F^2, no eigendecomposition;
    # ||C||_F^2 of a sample covariance is biased up by ~tr(C)^2 / m: corrected (Gaussian case)
    m = centered.shape[0]
    cov = (centered.T @ centered).astype(np.float64) / max(m - 1, 1)
    trace = float(np.trace(cov))
    frob = max(float((cov * cov).sum()) - trace**2 / m, trace**2 / cov.shape[0]) / (1 + 1 / m)
    ratio = trace**2 / frob if trace > 0 else 0.0
    return float(entropy.mean()), float((entropy < 0.5).mean()), offset, ratio


# --------------------------------------------------------------------------- navigation


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def fit_navigation(points: list[tuple[int, int, float, float, int]]) -> np.ndarray:
    """Weighted least squares ``logit rho = a + b ln ef + c ln m``; returns ``(a, b, c)``.

    ``points``: (m, ef, code recall, graph recall, trials). ``c`` is clamped to <= 0 (a graph
    does not navigate better as it grows) and dropped when only one size was measured.
    """
    rows, ys, ws = [], [], []
    for m, ef, code, graph, trials in points:
        if code < 0.02:
            continue
        rho = float(np.clip(graph / code, 0.5 / trials, 1.0 - 0.5 / trials))
        rows.append([1.0, math.log(ef), math.log(m)])
        ys.append(_logit(np.array(rho)))
        ws.append(math.sqrt(trials * rho * (1.0 - rho)))
    if not rows:
        return np.array([0.0, 0.0, 0.0])
    a = np.array(rows) * np.array(ws)[:, None]
    y = np.array(ys) * np.array(ws)
    if len({r[2] for r in rows}) > 1:
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        if coef[2] <= 0:
            return coef
    coef = np.linalg.lstsq(a[:, :2], y, rcond=None)[0]
    return np.array([coef[0], coef[1], 0.0])


def navigation_at(fit: np.ndarray, ef: int, n: int) -> float:
    """``rho(n, ef)`` from the fit ``(a, b, c)`` of :func:`fit_navigation`, at most 1."""
    z = fit[0] + fit[1] * math.log(ef) + fit[2] * math.log(n)
    return min(1.0, 1.0 / (1.0 + math.exp(-z)))


def navigation_points(
    base: np.ndarray,
    queries: np.ndarray,
    metric: Metric,
    coding: Coding,
    index_options: dict[str, Any],
) -> tuple[list[tuple[int, int, float, float, int]], float]:
    """Build one index on nested prefixes of ``base`` and measure code and graph recall.

    Returns the fit points and the paper's overlap test (code top-10 vs float top-10) on the
    largest prefix.
    """
    total = base.shape[0]
    sizes = sorted({max(MIN_NAV_ROWS, total >> s) for s in (3, 2, 1, 0) if total >> s > 0})
    sizes = [m for m in sizes if m <= total] or [total]
    index = VamanaIndex(base.shape[1], METRIC_NAMES[metric], **index_options)
    all_code_d = code_distances(queries, base, coding)
    points: list[tuple[int, int, float, float, int]] = []
    overlap = 0.0
    done = 0
    trials = queries.shape[0] * K
    for m in sizes:
        index.add(base[done:m])
        done = m
        truth = _sample_neighbors(base[:m], queries, metric)
        code_d = all_code_d[:, :m]
        neighbor_d = np.take_along_axis(code_d, truth, axis=1)
        counts = rank_counts(code_d, neighbor_d, max(NAV_EF_GRID))
        overlap = float((counts < K).mean())
        for ef in NAV_EF_GRID:
            if ef > m:
                continue
            found = index.search(queries, k=min(K, ef), ef=ef).ids
            hits = (found[:, :, None] == truth[:, None, :]).any(axis=1).mean()
            points.append((m, ef, float((counts < ef).mean()), float(hits), trials))
    return points, overlap
