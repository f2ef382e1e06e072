"""Exact float32 rerank of code-space candidates, reading rows from the float segments.

The float vectors live in one or more segments (memory-mapped Arrow files plus, between saves,
an in-memory tail), passed as a ``numba.typed.List`` of read-only (rows, D) float32 arrays with
``segment_starts`` (n_segments + 1,) int64 giving each segment's first global row.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from quiver.engine.kernels import float_distance, prefetch_row

#: Float rows fetched ahead of the one being scored: one row (1.5 KB at 384-d) ahead left the
#: loads partly serial; two cut the time per row from ~430 to ~370 ns on 20k x 384 random rows
#: (bench/results/PERF.md), more did not help.
RERANK_PREFETCH = 2


@njit(cache=True, nogil=True, inline="always")
def segment_of(row: int, segment_starts: np.ndarray) -> int:
    """Index of the segment holding global ``row`` (binary search over the starts)."""
    lo = 0
    hi = segment_starts.shape[0] - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if segment_starts[mid] <= row:
            lo = mid
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def rerank_top_k(
    query: np.ndarray,
    rows: np.ndarray,
    metric: int,
    segments,
    segment_starts: np.ndarray,
    labels: np.ndarray,
    out_ids: np.ndarray,
    out_dists: np.ndarray,
) -> None:
    """Write the ``k = len(out_ids)`` nearest of ``rows`` by exact float distance.

    ``out_ids`` receives ``labels[row]`` (int64, -1 padding), ``out_dists`` float32 (inf
    padding), ascending; ties keep candidate order. Rows with a negative label are skipped
    (reserved for deleted points).
    """
    k = out_ids.shape[0]
    for i in range(k):
        out_ids[i] = -1
        out_dists[i] = np.inf
    filled = 0
    if rows.shape[0] == 0 or len(segments) == 0:
        return
    # a typed List's item costs ~20 ns to fetch: keep the segment last used for the scored row
    # and for the prefetched one (most rows share the first segment)
    scored_seg = 0
    scored = segments[0]
    ahead_seg = 0
    ahead_rows = segments[0]
    for i in range(min(RERANK_PREFETCH, rows.shape[0])):
        seg = segment_of(rows[i], segment_starts)
        if seg != ahead_seg:
            ahead_seg = seg
            ahead_rows = segments[seg]
        prefetch_row(ahead_rows, rows[i] - segment_starts[seg])
    for i in range(rows.shape[0]):
        row = rows[i]
        ahead = i + RERANK_PREFETCH
        if ahead < rows.shape[0]:  # fetch a later float row while this one is scored
            seg = segment_of(rows[ahead], segment_starts)
            if seg != ahead_seg:
                ahead_seg = seg
                ahead_rows = segments[seg]
            prefetch_row(ahead_rows, rows[ahead] - segment_starts[seg])
        label = labels[row]
        if label < 0:
            continue
        seg = segment_of(row, segment_starts)
        if seg != scored_seg:
            scored_seg = seg
            scored = segments[seg]
        d = float_distance(metric, query, scored[row - segment_starts[seg]])
        if filled == k and d >= out_dists[k - 1]:
            continue
        pos = filled if filled < k else k - 1
        while pos > 0 and out_dists[pos - 1] > d:
            out_dists[pos] = out_dists[pos - 1]
            out_ids[pos] = out_ids[pos - 1]
            pos -= 1
        out_dists[pos] = d
        out_ids[pos] = label
        if filled < k:
            filled += 1
