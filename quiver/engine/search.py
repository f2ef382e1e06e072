"""Beam search over the 2-bit codes, then exact float32 rerank: one query and batches.

Shared by graph construction (which records the expanded nodes as prune candidates) and by
queries (which rerank the best candidates with exact float distances).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

from quiver.engine.balance import NO_BLOCK, next_block
from quiver.engine.candidates import insert_candidate, merge_candidates, next_epoch
from quiver.engine.kernels import (
    encode_query,
    navigation_distance,
    popcount,
    prefetch_row,
)
from quiver.engine.rerank import rerank_top_k


@njit(cache=True, nogil=True)
def beam_search(
    codes: np.ndarray,
    adjacency: np.ndarray,
    degrees: np.ndarray,
    dim: int,
    limit: int,
    query,
    entry: int,
    stamps: np.ndarray,
    epoch: int,
    ids: np.ndarray,
    dists: np.ndarray,
    done: np.ndarray,
    expanded: np.ndarray,
    admit: np.ndarray,
    res_ids: np.ndarray,
    res_dists: np.ndarray,
) -> tuple[int, int, int, int]:
    """Greedy best-first search in code space from ``entry`` with list size ``len(ids)``.

    ``codes`` (n, 2W) uint64; ``adjacency`` (n, R) int32 padded with -1 past ``degrees[row]``;
    ``limit`` the number of rows a search may visit: neighbours outside ``[0, limit)`` are
    skipped, which makes a search safe against a concurrent writer appending rows or
    re-pruning a row (it may read a torn row, never an out-of-range one);
    ``query`` one code row (symmetric distance, int64 ``dists``) or a ``(planes, params)``
    tuple from ``encode_query`` (asymmetric distance, float64 ``dists``); ``stamps`` the
    visited stamps (n,) uint8 of this thread, current when equal to ``epoch``;
    ``ids``/``dists``/``done`` the navigation list (capacity = ef);
    ``expanded`` receives the expanded rows in order (pass an empty array to skip).

    ``admit`` (uint8, one per row) restricts what is returned without restricting where the
    search goes: every scored row with ``admit[row] != 0`` is also kept in the separate sorted
    result list ``res_ids``/``res_dists``. With an empty ``admit`` the navigation list is the
    result and ``res_*`` are untouched. This is how deleted points (tombstones) and filters
    are handled: they still route the search, they are never returned.

    Returns ``(count, n_expanded, n_distances, n_admitted)``: candidates in the navigation
    list, nodes expanded (all of them, even past the capacity of ``expanded``), code distances
    computed and admitted rows scored (the result list holds ``min(n_admitted,
    len(res_ids))`` of them; ``count`` when ``admit`` is empty).
    """
    words = codes.shape[1] // 2
    filtered = admit.shape[0] > 0
    res_done = np.empty(res_ids.shape[0] if filtered else 0, dtype=np.bool_)
    n_res = 0
    stamps[entry] = epoch
    count = 1
    ids[0] = entry
    dists[0] = navigation_distance(query, codes[entry], words, dim)
    done[0] = False
    n_admitted = 0
    if filtered and admit[entry]:
        n_res = _keep_result(res_ids, res_dists, res_done, n_res, entry, dists[0])
        n_admitted += 1
    n_dist = 1
    n_expanded = 0
    cur = 0
    fresh = np.empty(adjacency.shape[1], dtype=np.int32)
    new_ids = np.empty(adjacency.shape[1], dtype=np.int32)
    new_dists = np.empty(adjacency.shape[1], dtype=dists.dtype)
    bound = np.uint32(limit)
    while cur < count:
        node = ids[cur]
        done[cur] = True
        if n_expanded < expanded.shape[0]:
            expanded[n_expanded] = node
        n_expanded += 1
        # pass 1: unvisited neighbours (without a branch on the visited test, which the CPU
        # cannot predict), their code rows prefetched so the loads overlap
        n_fresh = 0
        for j in range(degrees[node]):
            nb = adjacency[node, j]
            if np.uint32(nb) >= bound:  # -1 padding or a row not yet published
                continue
            fresh[n_fresh] = nb
            n_fresh += stamps[nb] != epoch
            stamps[nb] = epoch
        for j in range(n_fresh):
            prefetch_row(codes, fresh[j])
        # pass 2: distances; those that can enter the list are merged into it at once
        n_new = 0
        full = count == ids.shape[0]
        for j in range(n_fresh):
            nb = fresh[j]
            d = navigation_distance(query, codes[nb], words, dim)
            if filtered and admit[nb]:
                n_res = _keep_result(res_ids, res_dists, res_done, n_res, nb, d)
                n_admitted += 1
            if not full or d < dists[count - 1]:
                new_ids[n_new] = nb
                new_dists[n_new] = d
                n_new += 1
        n_dist += n_fresh
        best_new = count
        if n_new > 0:
            count, best_new = merge_candidates(ids, dists, done, count, new_ids, new_dists, n_new)
        if best_new < cur:
            cur = best_new
        while cur < count and done[cur]:
            cur += 1
        if cur < count:  # the next node's whole neighbour list (R int32: several lines)
            prefetch_row(adjacency, ids[cur])
    return count, n_expanded, n_dist, (n_admitted if filtered else count)


@njit(cache=True, nogil=True, inline="always")
def _keep_result(res_ids, res_dists, res_done, n_res, row, d) -> int:
    """Insert ``(d, row)`` into the result list; return its new length."""
    if insert_candidate(res_ids, res_dists, res_done, n_res, row, d) >= 0 and n_res < len(res_ids):
        return n_res + 1
    return n_res


#: The scan ranks the admitted rows by a cheap estimate first (the query's signs against the
#: codes, 4 popcounts per word) and scores this many candidates per result slot with the full
#: query distance (10 popcounts per word). On MiniLM-WordNet-181k a shortlist of 4x the
#: result list (288) gives recall@10 0.997-1.000 after the rerank, against 0.999-1.000 with
#: every row scored fully (bench/results/PERF.md).
SCAN_SHORTLIST = 4


@njit(cache=True, nogil=True)
def query_signs(x: np.ndarray, signs: np.ndarray) -> None:
    """Bit ``i`` of ``signs`` (W,) uint64 set where ``x[i] > 0`` (the codes' word layout)."""
    signs[:] = 0
    for i in range(x.shape[0]):
        if x[i] > 0:
            signs[i >> 6] |= np.uint64(1) << np.uint64(i & 63)


@njit(cache=True, nogil=True, inline="always")
def sign_estimate(signs: np.ndarray, b: np.ndarray, words: int) -> int:
    """``-sum_i sgn(x_i) v_i`` up to a per-query constant: the query distance with a 1-bit query.

    With ``a`` the query's positive mask, ``sgn(x) = 2 a - 1`` and ``v = -1 + 4 p - 2 t``
    (see :func:`quiver.engine.kernels.query_code_distance`), the row-dependent part of
    ``sum sgn(x) v`` is ``4 (2 PC(a & p) - PC(p)) - 2 (2 PC(a & t) - PC(t))``. Zero tail bits of
    the code add nothing.
    """
    acc = 0
    for w in range(words):
        pos = b[w]
        flip = pos ^ b[words + w]
        a = signs[w]
        acc += 4 * (2 * popcount(a & pos) - popcount(pos))
        acc -= 2 * (2 * popcount(a & flip) - popcount(flip))
    return -acc


@njit(cache=True, nogil=True, inline="always")
def _estimate_index(signs: np.ndarray, b: np.ndarray, words: int, dim: int) -> int:
    """:func:`sign_estimate` shifted by ``6 D`` into ``[0, 12 D]`` (its magnitude is at most
    ``4 D + 2 D``), a histogram index for :func:`select_shortlist`."""
    return sign_estimate(signs, b, words) + 6 * dim


#: A batch scan scores the matching rows for this many queries per pass over their codes, so
#: the codes stream from memory once per group instead of once per query.
SCAN_GROUP = 8
#: Queries per unit of work a thread of a parallel batch claims (a multiple of SCAN_GROUP).
BATCH_BLOCK = 8
#: Rows per block of a group pass: the block's codes (48 KB at 384-d) stay in L1/L2 while
#: every query of the group scores them.
SCAN_BLOCK = 512


@njit(cache=True, nogil=True)
def estimate_group(row_codes, signs, m, dim, est) -> None:
    """``est[j, i] = _estimate_index(signs[j], row_codes[i])`` for the first ``m`` queries ``j``
    of a group and every row ``i``, block by block. Whole arrays and a count, not slices: a
    slice types as a non-contiguous array in Numba and halves the speed of the popcount loop."""
    words = row_codes.shape[1] // 2
    n = row_codes.shape[0]
    for b0 in range(0, n, SCAN_BLOCK):
        b1 = min(n, b0 + SCAN_BLOCK)
        for j in range(m):
            for i in range(b0, b1):
                est[j, i] = _estimate_index(signs[j], row_codes[i], words, dim)


@njit(cache=True, nogil=True)
def select_shortlist(est, n_short, dim) -> np.ndarray:
    """Positions in ``est`` of the ``n_short`` smallest estimates (ties in position order), in
    linear time: a histogram of the small integer estimates gives the cut (a sorted insertion
    list would cost a shift per improvement, more than the estimates themselves)."""
    n = est.shape[0]
    if n <= n_short:
        return np.arange(n)
    top = 12 * dim  # estimates lie in [0, 12 D] (see _estimate_index)
    hist = np.zeros(top + 1, dtype=np.int32)
    for i in range(n):
        hist[est[i]] += 1
    cut = 0
    total = hist[0]
    while total < n_short and cut < top:
        cut += 1
        total += hist[cut]
    ties = n_short - (total - hist[cut])  # rows at the cut kept, in row order
    short = np.empty(n_short, dtype=np.int64)
    m = 0
    for i in range(n):
        e = est[i]
        if e < cut or (e == cut and ties > 0):
            if e == cut:
                ties -= 1
            short[m] = i
            m += 1
            if m == n_short:
                break
    return short[:m]


@njit(cache=True, nogil=True)
def rank_shortlist(row_codes, rows, dim, query, short, admit, ids, dists) -> int:
    """Top-``len(ids)`` by the full query distance of the admitted rows ``rows[short]``, whose
    codes are ``row_codes[short]`` (the scanned codes, still in cache: a gather from the whole
    code array would miss it for every row)."""
    words = row_codes.shape[1] // 2
    done = np.empty(ids.shape[0], dtype=np.bool_)
    count = 0
    for i in range(short.shape[0]):
        if i + 4 < short.shape[0]:
            prefetch_row(row_codes, short[i + 4])
        p = short[i]
        row = rows[p]
        if admit[row]:
            d = navigation_distance(query, row_codes[p], words, dim)
            count = _keep_result(ids, dists, done, count, row, d)
    return count


@njit(cache=True, nogil=True)
def scan_rows(codes, dim, query, signs, rows, admit, ids, dists) -> int:
    """Code-space top-``len(ids)`` over ``rows`` (ascending row numbers), skipping rows with
    ``admit[row] == 0`` (a row deleted since ``rows`` was computed). Returns the count.

    The low-selectivity path of filtered search: when few rows match a filter, scoring all of
    them costs less than a graph search and cannot get lost in a region without matches. Two
    passes: :func:`sign_estimate` (``signs`` from :func:`query_signs`) scores every row,
    :func:`select_shortlist` keeps the ``SCAN_SHORTLIST * len(ids)`` best, and the full query
    distance ranks them (``admit`` is checked there: a row deleted since ``rows`` was listed
    may take a shortlist slot, never a result). One query, codes gathered row by row; a batch
    of queries uses :func:`estimate_group` on the gathered codes instead.
    """
    words = codes.shape[1] // 2
    n = rows.shape[0]
    est = np.empty(n, dtype=np.int32)
    if n > SCAN_SHORTLIST * ids.shape[0]:
        for i in range(n):
            if i + 8 < n:
                prefetch_row(codes, rows[i + 8])
            est[i] = _estimate_index(signs, codes[rows[i]], words, dim)
    short = rows[select_shortlist(est, SCAN_SHORTLIST * ids.shape[0], dim)]
    short_codes = np.empty((short.shape[0], codes.shape[1]), dtype=np.uint64)
    for i in range(short.shape[0]):
        short_codes[i] = codes[short[i]]
    order = np.arange(short.shape[0])
    return rank_shortlist(short_codes, short, dim, query, order, admit, ids, dists)


# search modes, chosen per call by the caller from the filter's selectivity
MODE_GRAPH = 0  # beam search, the navigation list is the result (no deletes, no filter)
MODE_FILTERED = 1  # beam search, admitted rows collected apart; scan if fewer than k found
MODE_SCAN = 2  # exact code-space scan of the admitted rows, then rerank
#: A filtered graph search falls back to scanning the admitted rows when the share of admitted
#: rows among those it scored is below this fraction of their share overall.
LOCAL_SELECTIVITY = 0.5
#: ... unless the scan would cost more than this many times the graph search's distances (a
#: filter matching most points: its graph search is reliable anyway).
SCAN_FALLBACK_COST = 32
#: A filtered search samples this many admitted rows, evenly spaced, as candidate start points.
FILTER_SEEDS = 64


@njit(cache=True, nogil=True)
def nearest_sample(codes, dim, query, rows, entry, samples) -> tuple[int, int]:
    """Of ``entry`` and ``samples`` rows spread evenly over ``rows``, the one nearest the query
    in code space; also returns the number of distances computed."""
    words = codes.shape[1] // 2
    best = entry
    best_d = navigation_distance(query, codes[entry], words, dim)
    m = min(samples, rows.shape[0])
    for i in range(m):
        row = rows[i * rows.shape[0] // m]
        d = navigation_distance(query, codes[row], words, dim)
        if d < best_d:
            best, best_d = row, d
    return best, m + 1


@njit(cache=True, nogil=True, inline="always")
def _nav_query(queries: np.ndarray, nav_queries: np.ndarray, i: int) -> np.ndarray:
    """Query ``i`` as the codes see it: data-adaptive codes navigate with the transformed
    query (``nav_queries``, empty for plain codes); the rerank always uses ``queries``."""
    return nav_queries[i] if nav_queries.shape[0] else queries[i]


@njit(cache=True, nogil=True)
def _search_range(start, stop, slot, graph, floats, queries, ef, rerank, scratch, out, selection):
    """Search queries ``start..stop`` with the scratch of ``slot`` (one thread's share).

    Argument groups (tuples, see :func:`search_batch`) keep the kernels' signatures short.
    """
    codes, adjacency, degrees, dim, entry, limit = graph
    metric, segments, segment_starts, labels = floats
    stamps, epochs = scratch
    out_ids, out_dists, out_ndist = out
    mode, admit, rows, row_codes, nav_queries, out_rows = selection
    k = out_ids.shape[1]
    candidates_only = out_rows.shape[0] > 0
    ids = np.empty(ef, dtype=np.int32)
    dists = np.empty(ef, dtype=np.float64)
    done = np.empty(ef, dtype=np.bool_)
    res_ids = np.empty(rerank, dtype=np.int32)
    res_dists = np.empty(rerank, dtype=np.float64)
    no_record = np.empty(0, dtype=np.int32)
    no_admit = np.empty(0, dtype=np.uint8)
    planes = np.empty(2 * codes.shape[1], dtype=np.uint64)  # QUERY_BITS (4) planes of W words
    params = np.empty(3, dtype=np.float64)
    signs = np.empty(codes.shape[1] // 2, dtype=np.uint64)
    # a batch scan estimates SCAN_GROUP queries per pass over the gathered codes
    n_short = SCAN_SHORTLIST * rerank
    grouped = mode == MODE_SCAN and row_codes.shape[0] == rows.shape[0] and rows.shape[0] > n_short
    group_signs = np.empty((SCAN_GROUP, signs.shape[0]), dtype=np.uint64)
    group_est = np.empty((SCAN_GROUP if grouped else 0, rows.shape[0]), dtype=np.int32)
    for qi in range(start, stop):
        encode_query(_nav_query(queries, nav_queries, qi), planes, params)
        query = (planes, params)
        if mode == MODE_FILTERED or (mode == MODE_SCAN and not grouped):
            query_signs(_nav_query(queries, nav_queries, qi), signs)
        if grouped:
            g = (qi - start) % SCAN_GROUP
            if g == 0:
                m = min(SCAN_GROUP, stop - qi)
                for j in range(m):
                    query_signs(_nav_query(queries, nav_queries, qi + j), group_signs[j])
                estimate_group(row_codes, group_signs, m, dim, group_est)
            short = select_shortlist(group_est[g], n_short, dim)
            n_res = rank_shortlist(row_codes, rows, dim, query, short, admit, res_ids, res_dists)
            found = res_ids
            out_ndist[qi] = rows.shape[0]
        elif mode == MODE_SCAN:
            n_res = scan_rows(codes, dim, query, signs, rows, admit, res_ids, res_dists)
            found = res_ids
            out_ndist[qi] = rows.shape[0]
        else:
            out_ndist[qi] = 0
            start_row = entry
            if mode == MODE_FILTERED and rows.shape[0] > 0:
                # start from the admitted sample nearest the query when it beats the global
                # entry: the matches of a filter correlated with the vectors may lie in
                # regions a search from the medoid would reach late
                start_row, n_seed = nearest_sample(codes, dim, query, rows, entry, FILTER_SEEDS)
                out_ndist[qi] += n_seed
            epoch = next_epoch(stamps, epochs, slot)
            count, _, n_dist, n_admitted = beam_search(
                codes, adjacency, degrees, dim, limit, query, start_row, stamps[slot], epoch,
                ids, dists, done, no_record,
                admit if mode == MODE_FILTERED else no_admit, res_ids, res_dists,
            )  # fmt: skip
            out_ndist[qi] += n_dist
            n_res = min(n_admitted, rerank)
            found = res_ids if mode == MODE_FILTERED else ids
            if (
                mode == MODE_FILTERED
                and rows.shape[0] > n_res
                and (
                    n_res < k
                    or (
                        n_admitted * limit < LOCAL_SELECTIVITY * rows.shape[0] * n_dist
                        and rows.shape[0] <= SCAN_FALLBACK_COST * n_dist
                    )
                )
            ):
                # Matches are much rarer around this query than overall (a filter correlated
                # with the vectors), so the graph walk saw too few of them to trust its
                # ranking: score every admitted row instead (exact in code space).
                n_res = scan_rows(codes, dim, query, signs, rows, admit, res_ids, res_dists)
                out_ndist[qi] += rows.shape[0]
        n_found = min(n_res, rerank)
        if candidates_only:  # the caller reads the float rows ahead, then calls rerank_batch
            out_rows[qi, :n_found] = found[:n_found]
            out_rows[qi, n_found:] = -1
        else:
            rerank_top_k(
                queries[qi], found[:n_found], metric, segments, segment_starts, labels,
                out_ids[qi], out_dists[qi],
            )  # fmt: skip


class SearchArgs(NamedTuple):
    """The arguments of :func:`search_batch` / :func:`search_serial`, in signature order.

    Built in one place (``VamanaIndex.execute``) and passed flat with ``kernel(*args)``: the
    field order IS the kernel signature, so a new argument is one field here and one parameter
    in each kernel.
    """

    codes: np.ndarray
    adjacency: np.ndarray
    degrees: np.ndarray
    dim: int
    entry: int
    limit: int
    metric: int
    segments: Any
    segment_starts: np.ndarray
    labels: np.ndarray
    queries: np.ndarray
    ef: int
    rerank: int
    stamps: np.ndarray
    epochs: np.ndarray
    out_ids: np.ndarray
    out_dists: np.ndarray
    out_ndist: np.ndarray
    mode: int
    admit: np.ndarray
    rows: np.ndarray
    row_codes: np.ndarray
    nav_queries: np.ndarray
    out_rows: np.ndarray


# The two entry points take flat arguments on purpose: Numba's dispatcher types a tuple of
# arrays (and a typed List inside one) slowly, 24 us per call against 1.3 us for the same
# arrays passed flat (measured), which would double the cost of a single small query. Inside
# jitted code the arguments travel as tuples, which costs nothing.


@njit(cache=True, nogil=True, parallel=True)
def search_batch(
    codes, adjacency, degrees, dim, entry, limit, metric, segments, segment_starts, labels,
    queries, ef, rerank, stamps, epochs, out_ids, out_dists, out_ndist, mode, admit, rows,
    row_codes, nav_queries, out_rows, claimed,
) -> None:  # fmt: skip
    """Search many queries in parallel, one thread per scratch slot, balanced as they run.

    The queries go in blocks of :data:`BATCH_BLOCK` (``claimed``: uint8, one per block,
    zeros), which the threads share out as they run (:mod:`quiver.engine.balance`): a thread
    slowed down by another process on its core leaves its blocks to the others instead of
    holding up the whole batch. Two threads may search one block at once; both write the
    same results.

    Graph: ``codes`` (n, 2W) uint64, ``adjacency`` (n, R) int32, ``degrees`` (n,) int32, ``dim``,
    ``entry`` row, ``limit`` rows visible to this search. Floats: ``metric`` code,
    ``segments`` typed List of (rows, D) float32, ``segment_starts`` int64, ``labels`` int64
    (negative = skipped). ``queries`` float32 (q, D), prepared (unit-normalised for cosine).
    Scratch: ``stamps`` (slots, n) uint8 and ``epochs`` (slots,) uint8, one slot per range.
    Outputs: ``out_ids`` int64 (q, k), ``out_dists`` float32 (q, k), -1 / inf padded,
    ``out_ndist`` code distances per query. Selection: ``mode`` (``MODE_*``), ``admit`` uint8
    per row (rows that may be returned; used by the filtered and scan modes), ``rows`` int32
    ascending, the admitted rows (scanned by ``MODE_SCAN`` and by the filtered fallback);
    ``row_codes`` ``codes[rows]`` gathered once for the batch (scan mode; see
    :func:`estimate_group`), or empty.
    ``nav_queries`` float32 (q, D): the queries as the codes see them (centred and rotated,
    see ``bq.transform``), used for navigation only; empty (0, D) when the codes are plain.
    ``out_rows`` int32 (q, rerank): when not empty, each query's rerank candidates (rows, -1
    padded) are written there and the rerank is left to :func:`rerank_batch`, so that the
    caller can read their float rows from disk together first (``quiver.engine.readahead``);
    ``out_ids``/``out_dists`` are then untouched.
    """
    graph = (codes, adjacency, degrees, dim, entry, limit)
    floats = (metric, segments, segment_starts, labels)
    out = (out_ids, out_dists, out_ndist)
    selection = (mode, admit, rows, row_codes, nav_queries, out_rows)
    nq = queries.shape[0]
    slots = min(stamps.shape[0], claimed.shape[0])
    for slot in prange(slots):
        # int64 positions everywhere (prange may type ``slot`` unsigned): one compiled
        # _search_range serves every entry point, which shortens the first compile by seconds
        own = np.int64(slot)
        turn, b = 0, NO_BLOCK
        while True:
            block, turn, b = next_block(claimed, own, slots, turn, b)
            if block == NO_BLOCK:
                break
            _search_range(
                block * BATCH_BLOCK, min(nq, (block + 1) * BATCH_BLOCK), own, graph, floats,
                queries, ef, rerank, (stamps, epochs), out, selection,
            )  # fmt: skip


@njit(cache=True, nogil=True)
def search_serial(
    codes, adjacency, degrees, dim, entry, limit, metric, segments, segment_starts, labels,
    queries, ef, rerank, stamps, epochs, out_ids, out_dists, out_ndist, mode, admit, rows,
    row_codes, nav_queries, out_rows,
) -> None:  # fmt: skip
    """Same contract as :func:`search_batch` on the calling thread (small batches)."""
    graph = (codes, adjacency, degrees, dim, entry, limit)
    floats = (metric, segments, segment_starts, labels)
    out = (out_ids, out_dists, out_ndist)
    selection = (mode, admit, rows, row_codes, nav_queries, out_rows)
    _search_range(
        np.int64(0),
        np.int64(queries.shape[0]),
        np.int64(0),
        graph,
        floats,
        queries,
        ef,
        rerank,
        (stamps, epochs),
        out,
        selection,
    )


@njit(cache=True, nogil=True, parallel=True)
def rerank_batch(
    queries, rows, metric, segments, segment_starts, labels, out_ids, out_dists
) -> None:  # fmt: skip
    """Exact rerank of candidate ``rows`` (q, m) int32 (-1 padded, as :func:`search_batch`
    writes them with ``out_rows``) into ``out_ids``/``out_dists`` (q, k), queries in parallel."""
    for qi in prange(queries.shape[0]):
        n = 0
        while n < rows.shape[1] and rows[qi, n] >= 0:
            n += 1
        rerank_top_k(
            queries[qi], rows[qi, :n], metric, segments, segment_starts, labels, out_ids[qi],
            out_dists[qi],
        )  # fmt: skip
