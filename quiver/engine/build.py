"""Graph maintenance on the hot arrays: linking new rows in rounds, and consolidation.

Both work in place on a :class:`~quiver.engine.arrays.HotArrays` owned by the index's writer
(the caller holds its write lock) and run the parallel kernels of :mod:`quiver.engine.graph`.
"""

from __future__ import annotations

import logging

import numba
import numpy as np

from quiver.engine import graph
from quiver.engine.arrays import HotArrays
from quiver.engine.candidates import new_scratch
from quiver.params import BuildParams

logger = logging.getLogger(__name__)

_MIN_BATCH = 256  # smallest round size once the graph is big enough: keeps threads busy
_BATCH_FRACTION = 0.02  # largest round = 2% of the points (ParlayANN-style prefix doubling)


class NumbaThreads:
    """Context manager: run Numba parallel kernels with ``n`` threads on this thread."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._old = 0

    def __enter__(self) -> None:
        self._old = numba.get_num_threads()
        numba.set_num_threads(self._n)

    def __exit__(self, *exc: object) -> None:
        numba.set_num_threads(self._old)


def link_rows(
    hot: HotArrays, dim: int, params: BuildParams, start: int, n_new: int, threads: int
) -> None:
    """Link rows ``start .. start + n_new`` (already encoded) into the graph.

    Rounds of parallel search + prune on the frozen graph, then a sequential merge of the
    reverse edges (Numba has no per-node locks). Rounds grow with the graph (prefix doubling,
    at most 2 % of the points). The first batch starts from its code medoid, alone.
    """
    rng = np.random.default_rng([params.seed, start])
    order = (start + rng.permutation(n_new)).astype(np.int32)
    inserted = start
    if start == 0:
        hot.entry = start + graph.code_medoid(hot.codes[start : start + n_new], dim)
        order = np.concatenate(([hot.entry], order[order != hot.entry])).astype(np.int32)
        inserted = 1  # the entry point starts the graph alone
    stamps, epochs = new_scratch(threads, hot.capacity)
    new_degrees = np.zeros(n_new, dtype=np.int32)
    max_batch = max(_MIN_BATCH, int(_BATCH_FRACTION * (start + n_new)))
    done = inserted - start
    with NumbaThreads(threads):
        while done < n_new:
            size = min(n_new - done, max(1, min(inserted, max_batch)))
            batch = order[done : done + size]
            graph.link_batch(
                batch, hot.codes, dim, hot.adjacency, hot.degrees, hot.entry,
                params.build_list_size, params.alpha, stamps, epochs, new_degrees[:size],
            )  # fmt: skip
            hot.degrees[batch] = new_degrees[:size]
            graph.merge_reverse_edges(
                batch, hot.codes, dim, hot.adjacency, hot.degrees, params.alpha
            )
            done += size
            inserted += size
            logger.debug("linked %d / %d points", done, n_new)


def drop_deleted(hot: HotArrays, dim: int, alpha: float, threads: int) -> tuple[np.ndarray, int]:
    """Reconnect the graph around deleted rows (FreshDiskANN repair, in parallel), then drop
    them and renumber the rest in order. Returns ``(kept_rows, rows_repaired)``; the caller
    gathers the kept rows' floats (``kept_rows`` are the old row numbers)."""
    n = hot.count
    stamps, epochs = new_scratch(threads, hot.capacity)
    with NumbaThreads(threads):
        repaired = graph.repair_deleted(
            hot.codes, dim, hot.adjacency, hot.degrees, hot.live, n, alpha, stamps, epochs
        )
    keep = np.flatnonzero(hot.live[:n]).astype(np.int64)
    new_row = np.full(hot.capacity, -1, dtype=np.int32)
    new_row[keep] = np.arange(keep.shape[0], dtype=np.int32)
    adjacency, degrees = graph.compact_adjacency(hot.adjacency, hot.degrees, keep, new_row)
    codes = hot.codes[keep]
    if hot.live[hot.entry]:
        entry = int(new_row[hot.entry])
    else:
        entry = graph.code_medoid(codes, dim) if keep.shape[0] else -1
    hot.codes, hot.adjacency, hot.degrees = codes, adjacency, degrees
    hot.labels = hot.labels[keep]
    hot.live = np.ones(keep.shape[0], dtype=np.uint8)
    hot.entry = entry
    hot.count = int(keep.shape[0])
    hot.n_deleted = 0
    return keep, int(repaired)
