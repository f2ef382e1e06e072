"""Beam search over the 2-bit codes, then exact float32 rerank: one query and batches.

Shared by graph construction (which records the expanded nodes as prune candidates) and by
queries (which rerank the best candidates with exact float distances).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from quiver.candidates import insert_candidate, next_epoch
from quiver.kernels import encode_query, navigation_distance, prefetch, prefetch_row
from quiver.rerank import rerank_top_k


@njit(cache=True, nogil=True)
def beam_search(
    codes: np.ndarray,
    adjacency: np.ndarray,
    degrees: np.ndarray,
    dim: int,
    query: np.ndarray,
    entry: int,
    stamps: np.ndarray,
    epoch: int,
    ids: np.ndarray,
    dists: np.ndarray,
    done: np.ndarray,
    expanded: np.ndarray,
) -> tuple[int, int, int]:
    """Greedy best-first search in code space from ``entry`` with list size ``len(ids)``.

    ``codes`` (n, 2W) uint64; ``adjacency`` (n, R) int32 padded with -1 past ``degrees[row]``;
    ``query`` one code row (symmetric distance, int64 ``dists``) or a ``(planes, params)``
    tuple from ``encode_query`` (asymmetric distance, float64 ``dists``); ``stamps`` the
    visited stamps (n,) uint8 of this thread, current when equal to ``epoch``;
    ``ids``/``dists``/``done`` the candidate list (capacity = ef);
    ``expanded`` receives the expanded rows in order (pass an empty array to skip).

    Returns ``(count, n_expanded, n_distances)``: candidates in the list, nodes expanded (all of
    them, even past the capacity of ``expanded``) and code distances computed.
    """
    words = codes.shape[1] // 2
    stamps[entry] = epoch
    count = 1
    ids[0] = entry
    dists[0] = navigation_distance(query, codes[entry], words, dim)
    done[0] = False
    n_dist = 1
    n_expanded = 0
    cur = 0
    fresh = np.empty(adjacency.shape[1], dtype=np.int32)
    while cur < count:
        node = ids[cur]
        done[cur] = True
        if n_expanded < expanded.shape[0]:
            expanded[n_expanded] = node
        n_expanded += 1
        # pass 1: unvisited neighbours, their code rows prefetched so the loads overlap
        n_fresh = 0
        for j in range(degrees[node]):
            nb = adjacency[node, j]
            if stamps[nb] != epoch:
                stamps[nb] = epoch
                fresh[n_fresh] = nb
                n_fresh += 1
                prefetch_row(codes, nb)
        # pass 2: distances and insertion
        best_new = count
        for j in range(n_fresh):
            nb = fresh[j]
            d = navigation_distance(query, codes[nb], words, dim)
            pos = insert_candidate(ids, dists, done, count, nb, d)
            if pos >= 0:
                if count < ids.shape[0]:
                    count += 1
                if pos < best_new:
                    best_new = pos
        n_dist += n_fresh
        if best_new < cur:
            cur = best_new
        while cur < count and done[cur]:
            cur += 1
        if cur < count:
            prefetch(adjacency, ids[cur], 0)
    return count, n_expanded, n_dist


@njit(cache=True, nogil=True)
def _search_range(start, stop, slot, graph, floats, queries, ef, rerank, scratch, out) -> None:
    """Search queries ``start..stop`` with the scratch of ``slot`` (one thread's share).

    Argument groups (tuples, see :func:`search_batch`) keep the kernels' signatures short.
    """
    codes, adjacency, degrees, dim, entry = graph
    metric, segments, segment_starts, labels = floats
    stamps, epochs = scratch
    out_ids, out_dists, out_ndist = out
    ids = np.empty(ef, dtype=np.int32)
    dists = np.empty(ef, dtype=np.float64)
    done = np.empty(ef, dtype=np.bool_)
    no_record = np.empty(0, dtype=np.int32)
    planes = np.empty(2 * codes.shape[1], dtype=np.uint64)  # QUERY_BITS (4) planes of W words
    params = np.empty(3, dtype=np.float64)
    for qi in range(start, stop):
        encode_query(queries[qi], planes, params)
        epoch = next_epoch(stamps, epochs, slot)
        count, _, n_dist = beam_search(
            codes, adjacency, degrees, dim, (planes, params), entry, stamps[slot], epoch,
            ids, dists, done, no_record,
        )  # fmt: skip
        out_ndist[qi] = n_dist
        rerank_top_k(
            queries[qi], ids[: min(count, rerank)], metric, segments, segment_starts, labels,
            out_ids[qi], out_dists[qi],
        )  # fmt: skip


# The two entry points take flat arguments on purpose: Numba's dispatcher types a tuple of
# arrays (and a typed List inside one) slowly, 24 us per call against 1.3 us for the same
# arrays passed flat (measured), which would double the cost of a single small query. Inside
# jitted code the arguments travel as tuples, which costs nothing.


@njit(cache=True, nogil=True, parallel=True)
def search_batch(
    codes, adjacency, degrees, dim, entry, metric, segments, segment_starts, labels,
    queries, ef, rerank, stamps, epochs, out_ids, out_dists, out_ndist,
) -> None:  # fmt: skip
    """Search many queries in parallel: one contiguous range of queries per scratch slot.

    Graph: ``codes`` (n, 2W) uint64, ``adjacency`` (n, R) int32, ``degrees`` (n,) int32, ``dim``,
    ``entry`` row. Floats: ``metric`` code, ``segments`` typed List of (rows, D) float32,
    ``segment_starts`` int64, ``labels`` int64 (negative = deleted). ``queries`` float32
    (q, D), prepared (unit-normalised for cosine). Scratch: ``stamps`` (slots, n) uint8 and
    ``epochs`` (slots,) uint8, one slot per range. Outputs: ``out_ids`` int64 (q, k),
    ``out_dists`` float32 (q, k), -1 / inf padded, ``out_ndist`` code distances per query.
    """
    graph = (codes, adjacency, degrees, dim, entry)
    floats = (metric, segments, segment_starts, labels)
    out = (out_ids, out_dists, out_ndist)
    nq = queries.shape[0]
    slots = min(stamps.shape[0], nq)
    for slot in prange(slots):
        start = slot * nq // slots
        stop = (slot + 1) * nq // slots
        _search_range(start, stop, slot, graph, floats, queries, ef, rerank, (stamps, epochs), out)


@njit(cache=True, nogil=True)
def search_serial(
    codes, adjacency, degrees, dim, entry, metric, segments, segment_starts, labels,
    queries, ef, rerank, stamps, epochs, out_ids, out_dists, out_ndist,
) -> None:  # fmt: skip
    """Same contract as :func:`search_batch` on the calling thread (small batches)."""
    graph = (codes, adjacency, degrees, dim, entry)
    floats = (metric, segments, segment_starts, labels)
    out = (out_ids, out_dists, out_ndist)
    _search_range(0, queries.shape[0], 0, graph, floats, queries, ef, rerank, (stamps, epochs), out)
