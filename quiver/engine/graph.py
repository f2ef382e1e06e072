"""Vamana graph construction in code space (DiskANN's RobustPrune, batched and parallel).

Points are inserted in rounds. In each round a batch of points is searched and pruned in
parallel against the graph as it stood at the start of the round (each point writes only its
own adjacency row, and no other node links to it yet); then the reverse edges are grouped by
target and merged in parallel (each target row is owned by one iteration), re-pruning a target
whose list overflows. Nothing depends on the thread count, so a seed fixes the graph.
Only codes are read: the float vectors are never touched by the build.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from quiver.engine import bq
from quiver.engine.balance import NO_BLOCK, next_block
from quiver.engine.candidates import next_epoch
from quiver.engine.kernels import code_distance
from quiver.engine.search import beam_search

#: Points per unit of work a thread of a parallel link round claims (see ``link_batch``).
LINK_BLOCK = 4


@njit(cache=True, nogil=True)
def robust_prune(
    codes: np.ndarray,
    dim: int,
    pool: np.ndarray,
    pool_dists: np.ndarray,
    alpha: float,
    out: np.ndarray,
) -> int:
    """DiskANN RobustPrune over a pool sorted by distance to the target.

    Keeps a candidate ``c`` unless an already kept ``k`` satisfies
    ``alpha * d(k, c) < d(target, c)`` (``c`` is then reached through ``k``). Stops at
    ``len(out)`` kept. The pool must not contain the target. The inequality is strict on
    purpose: with alpha = 1, a kept exact duplicate ``k`` of the target has
    ``d(k, c) == d(target, c)`` for every ``c`` and would otherwise occlude the whole pool.
    The pool order is fixed by the caller's total sort, so ties are deterministic.
    Returns the number of rows written to ``out``.
    """
    words = codes.shape[1] // 2
    max_degree = out.shape[0]
    kept = 0
    for i in range(pool.shape[0]):
        if kept == max_degree:
            break
        c = pool[i]
        occluded = False
        for j in range(kept):
            if alpha * code_distance(codes[out[j]], codes[c], words, dim) < pool_dists[i]:
                occluded = True
                break
        if not occluded:
            out[kept] = c
            kept += 1
    return kept


@njit(cache=True, nogil=True)
def _sorted_pool(
    codes: np.ndarray, dim: int, target: int, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distances from ``target`` to ``rows`` and both arrays sorted by (distance, row)."""
    words = codes.shape[1] // 2
    d = np.empty(rows.shape[0], dtype=np.int64)
    for i in range(rows.shape[0]):
        d[i] = code_distance(codes[target], codes[rows[i]], words, dim)
    # a composite key makes the order total, hence deterministic
    order = np.argsort(d * (np.int64(1) << 32) + rows.astype(np.int64))
    return rows[order], d[order]


@njit(cache=True, nogil=True)
def _link_point(
    p: int,
    codes: np.ndarray,
    dim: int,
    adjacency: np.ndarray,
    degrees: np.ndarray,
    entry: int,
    alpha: float,
    stamps: np.ndarray,
    epochs: np.ndarray,
    slot: int,
    ids: np.ndarray,
    dists: np.ndarray,
    done: np.ndarray,
    expanded: np.ndarray,
    pool: np.ndarray,
) -> int:
    """Search for ``p`` from ``entry``, prune the visited nodes into ``adjacency[p]``."""
    epoch = next_epoch(stamps, epochs, slot)
    count, n_exp, _, _ = beam_search(
        codes,
        adjacency,
        degrees,
        dim,
        adjacency.shape[0],
        codes[p],
        entry,
        stamps[slot],
        epoch,
        ids,
        dists,
        done,
        expanded,
        np.empty(0, dtype=np.uint8),
        ids[:0],
        dists[:0],
    )
    # pool = expanded nodes + final list, deduplicated with a fresh epoch
    epoch = next_epoch(stamps, epochs, slot)
    row_stamps = stamps[slot]
    size = 0
    for i in range(min(n_exp, expanded.shape[0])):
        r = expanded[i]
        if r != p and row_stamps[r] != epoch:
            row_stamps[r] = epoch
            pool[size] = r
            size += 1
    for i in range(count):
        r = ids[i]
        if r != p and row_stamps[r] != epoch:
            row_stamps[r] = epoch
            pool[size] = r
            size += 1
    rows, pool_dists = _sorted_pool(codes, dim, np.int64(p), pool[:size])
    return robust_prune(codes, dim, rows, pool_dists, alpha, adjacency[p])


@njit(cache=True, nogil=True, parallel=True)
def link_batch(
    batch: np.ndarray,
    codes: np.ndarray,
    dim: int,
    adjacency: np.ndarray,
    degrees: np.ndarray,
    entry: int,
    build_list_size: int,
    alpha: float,
    stamps: np.ndarray,
    epochs: np.ndarray,
    new_degrees: np.ndarray,
) -> None:
    """Search + prune every row of ``batch`` in parallel against the frozen graph.

    Writes each point's out-edges to its own ``adjacency`` row and their count to
    ``new_degrees``; ``degrees`` is left for the caller to update after the round. The points
    go in blocks of :data:`LINK_BLOCK` that the threads share out as they run
    (:mod:`quiver.engine.balance`); two threads linking one point at once write the same row,
    since both search the frozen graph.
    """
    n = batch.shape[0]
    claimed = np.zeros((n + LINK_BLOCK - 1) // LINK_BLOCK, dtype=np.uint8)
    slots = min(stamps.shape[0], claimed.shape[0])
    for slot in prange(slots):
        own = np.int64(slot)  # one compiled _link_point: prange may type slot unsigned
        ids = np.empty(build_list_size, dtype=np.int32)
        dists = np.empty(build_list_size, dtype=np.int64)
        done = np.empty(build_list_size, dtype=np.bool_)
        expanded = np.empty(4 * build_list_size, dtype=np.int32)
        pool = np.empty(5 * build_list_size, dtype=np.int32)
        turn, b = 0, NO_BLOCK
        while True:
            block, turn, b = next_block(claimed, own, slots, turn, b)
            if block == NO_BLOCK:
                break
            for i in range(block * LINK_BLOCK, min(n, (block + 1) * LINK_BLOCK)):
                new_degrees[i] = _link_point(
                    batch[i], codes, dim, adjacency, degrees, entry, alpha, stamps, epochs, own,
                    ids, dists, done, expanded, pool,
                )  # fmt: skip


@njit(cache=True, nogil=True)
def _merge_into(
    q: int,
    sources: np.ndarray,
    codes: np.ndarray,
    dim: int,
    adjacency: np.ndarray,
    degrees: np.ndarray,
    alpha: float,
) -> None:
    """Add edges ``q -> sources`` to row ``q``; re-prune the row if it would overflow."""
    max_degree = adjacency.shape[1]
    deg = degrees[q]
    fresh = np.empty(sources.shape[0], dtype=np.int32)
    n_fresh = 0
    for s in sources:
        present = False
        for j in range(deg):
            if adjacency[q, j] == s:
                present = True
                break
        if not present and s != q:
            fresh[n_fresh] = s
            n_fresh += 1
    if deg + n_fresh <= max_degree:
        adjacency[q, deg : deg + n_fresh] = fresh[:n_fresh]
        degrees[q] = deg + n_fresh
        return
    pool = np.concatenate((adjacency[q, :deg].copy(), fresh[:n_fresh]))
    rows, pool_dists = _sorted_pool(codes, dim, np.int64(q), pool)
    kept = robust_prune(codes, dim, rows, pool_dists, alpha, adjacency[q])
    adjacency[q, kept:] = -1
    degrees[q] = kept


@njit(cache=True, nogil=True, parallel=True)
def merge_reverse_edges(
    batch: np.ndarray,
    codes: np.ndarray,
    dim: int,
    adjacency: np.ndarray,
    degrees: np.ndarray,
    alpha: float,
) -> None:
    """Add the reverse of every out-edge of ``batch``, grouped by target, targets in parallel."""
    total = 0
    for p in batch:
        total += degrees[p]
    targets = np.empty(total, dtype=np.int64)
    sources = np.empty(total, dtype=np.int32)
    t = 0
    for p in batch:
        for j in range(degrees[p]):
            targets[t] = adjacency[p, j]
            sources[t] = p
            t += 1
    order = np.argsort(targets * (np.int64(1) << 32) + sources.astype(np.int64))
    targets = targets[order]
    sources = sources[order]
    starts = np.empty(total + 1, dtype=np.int64)
    groups = 0
    for i in range(total):
        if i == 0 or targets[i] != targets[i - 1]:
            starts[groups] = i
            groups += 1
    starts[groups] = total
    for g in prange(groups):
        lo = starts[g]
        hi = starts[g + 1]
        _merge_into(targets[lo], sources[lo:hi], codes, dim, adjacency, degrees, alpha)


def code_medoid(codes: np.ndarray, dim: int, chunk: int = 8192) -> int:
    """Row minimising the summed code distance to all rows: ``argmax_i v_i . sum_j v_j``.

    Exact, because the code distance is ``4 D - v_a . v_b`` (linear in each side).
    """
    n = codes.shape[0]
    total = np.zeros(dim, dtype=np.int64)
    for s in range(0, n, chunk):
        total += bq.code_values(codes[s : s + chunk], dim).sum(axis=0, dtype=np.int64)
    best_row, best_score = 0, None
    for s in range(0, n, chunk):
        scores = bq.code_values(codes[s : s + chunk], dim).astype(np.int64) @ total
        i = int(np.argmax(scores))
        if best_score is None or scores[i] > best_score:
            best_row, best_score = s + i, scores[i]
    return best_row


@njit(cache=True, nogil=True)
def _repair_row(
    p: int,
    codes: np.ndarray,
    dim: int,
    adjacency: np.ndarray,
    degrees: np.ndarray,
    live: np.ndarray,
    alpha: float,
    stamps: np.ndarray,
    epoch: int,
    pool: np.ndarray,
    out: np.ndarray,
) -> None:
    """Replace ``p``'s edges to deleted rows by edges towards their live neighbours.

    FreshDiskANN's delete consolidation: the candidates are ``p``'s live neighbours plus the
    live neighbours of each deleted neighbour, RobustPrune-d back to the degree bound. Only
    row ``p`` is written, and only rows of deleted points are read besides it, so rows can be
    repaired in parallel without changing the result.
    """
    size = 0
    stamps[p] = epoch
    for j in range(degrees[p]):
        nb = adjacency[p, j]
        if live[nb]:
            if stamps[nb] != epoch:
                stamps[nb] = epoch
                pool[size] = nb
                size += 1
            continue
        for i in range(degrees[nb]):
            c = adjacency[nb, i]
            if live[c] and stamps[c] != epoch:
                stamps[c] = epoch
                pool[size] = c
                size += 1
    max_degree = adjacency.shape[1]
    if size <= max_degree:
        kept = size
        out[:size] = pool[:size]
    else:
        rows, pool_dists = _sorted_pool(codes, dim, np.int64(p), pool[:size])
        kept = robust_prune(codes, dim, rows, pool_dists, alpha, out)
    adjacency[p, :kept] = out[:kept]
    adjacency[p, kept:] = -1
    degrees[p] = kept


@njit(cache=True, nogil=True, parallel=True)
def repair_deleted(
    codes: np.ndarray,
    dim: int,
    adjacency: np.ndarray,
    degrees: np.ndarray,
    live: np.ndarray,
    count: int,
    alpha: float,
    stamps: np.ndarray,
    epochs: np.ndarray,
) -> int:
    """Reconnect every live row that links to a deleted row (rows ``0..count``); return how
    many rows were repaired. Deleted rows are left as they are (the caller drops them)."""
    affected = np.zeros(count, dtype=np.bool_)
    for p in range(count):
        if live[p]:
            for j in range(degrees[p]):
                if not live[adjacency[p, j]]:
                    affected[p] = True
                    break
    todo = np.flatnonzero(affected)
    n = todo.shape[0]
    max_degree = adjacency.shape[1]
    slots = min(stamps.shape[0], max(n, 1))
    for slot in prange(slots):
        pool = np.empty(max_degree * (max_degree + 1), dtype=np.int32)
        out = np.empty(max_degree, dtype=np.int32)
        for i in range(slot * n // slots, (slot + 1) * n // slots):
            epoch = next_epoch(stamps, epochs, slot)
            _repair_row(
                todo[i], codes, dim, adjacency, degrees, live, alpha, stamps[slot], epoch,
                pool, out,
            )  # fmt: skip
    return n


@njit(cache=True, nogil=True)
def compact_adjacency(
    adjacency: np.ndarray, degrees: np.ndarray, keep: np.ndarray, new_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Adjacency of rows ``keep`` renumbered through ``new_row`` (old row -> new, -1 when
    dropped); edges to dropped rows are removed."""
    n = keep.shape[0]
    out = np.full((n, adjacency.shape[1]), -1, dtype=np.int32)
    out_deg = np.zeros(n, dtype=np.int32)
    for i in range(n):
        old = keep[i]
        d = 0
        for j in range(degrees[old]):
            m = new_row[adjacency[old, j]]
            if m >= 0:
                out[i, d] = m
                d += 1
        out_deg[i] = d
    return out, out_deg
