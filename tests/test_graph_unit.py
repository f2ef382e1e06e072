"""Unit tests of the graph's small pure pieces: RobustPrune, delete repair, compaction, medoid.

Hand-made sets use D = 64, so a code row is two uint64 words ``[pos, strong]`` and bit ``j``
is dimension ``j`` (layout in :mod:`quiver.engine.bq`). With only weak bits every coordinate is
``+-1`` and the code distance is ``3 D + 2 * hamming(pos_a, pos_b)`` = ``192 + 2 h``; with
only strong bits it is ``8 h`` (zero for equal codes).
"""

from __future__ import annotations

import numpy as np
import pytest

from quiver.engine import bq, graph
from quiver.engine.candidates import new_scratch

DIM = 64
ALL_STRONG = (1 << 64) - 1


def code_row(bits: set[int] | range, strong: int = 0) -> list[int]:
    """One D = 64 code row whose sign plane has ``bits`` set (+1 there, -1 elsewhere)."""
    return [sum(1 << j for j in bits), strong]


def make_codes(rows: list[list[int]]) -> np.ndarray:
    return np.array(rows, dtype=np.uint64)


def distances(codes: np.ndarray, target: int, rows: list[int], dim: int = DIM) -> np.ndarray:
    return bq.reference_distance(codes[[target]], codes[rows], dim)[0].astype(np.int64)


def prune(
    codes: np.ndarray,
    target: int,
    pool: list[int],
    alpha: float,
    max_degree: int,
    dim: int = DIM,
) -> list[int]:
    """Run the kernel on ``pool`` (in the given order) and return the kept rows."""
    out = np.full(max_degree, -1, dtype=np.int32)
    kept = graph.robust_prune(
        codes,
        dim,
        np.array(pool, dtype=np.int32),
        distances(codes, target, pool, dim) if pool else np.empty(0, dtype=np.int64),
        alpha,
        out,
    )
    assert (out[kept:] == -1).all(), "slots past the kept count must not be written"
    return out[:kept].tolist()


def sorted_pool(codes: np.ndarray, target: int, rows: list[int], dim: int = DIM) -> list[int]:
    """``rows`` in the callers' total order: by (distance to ``target``, row)."""
    d = distances(codes, target, rows, dim)
    return [r for _, r in sorted(zip(d.tolist(), rows, strict=True))]


# Rows of the hand-made weak set (distances to T in the comments):
T, A, C, B, E, T_DUP, C_DUP = range(7)
WEAK = make_codes(
    [
        code_row(set()),  # T: the target
        code_row(range(0, 4)),  # A: 200, the nearest
        code_row(range(0, 8)),  # C: 208; d(A, C) = 200 < 208: reached through A
        code_row(range(32, 40)),  # B: 208; d(A, B) = 216 > 208: a different direction
        code_row({0, 1, 4, 5}),  # E: 200; d(A, E) = 200 == d(T, E): a tie, not occluded
        code_row(set()),  # T_DUP: 192, an exact duplicate of T
        code_row(range(0, 8)),  # C_DUP: 208, an exact duplicate of C
    ]
)


def test_hand_made_distances_are_as_designed() -> None:
    d = bq.reference_distance(WEAK, WEAK, DIM)
    assert d[T].tolist() == [192, 200, 208, 208, 200, 192, 208]
    assert d[A, C] == 200 and d[A, B] == 216 and d[A, E] == 200
    assert d[C, C_DUP] == 192 and d[C, B] == 224


def test_nearest_candidate_is_kept_and_occluded_one_dropped() -> None:
    assert prune(WEAK, T, [A, C, B], alpha=1.0, max_degree=4) == [A, B]


def test_larger_alpha_keeps_the_longer_edge() -> None:
    # 1.1 * d(A, C) = 220 is not below d(T, C) = 208: C is kept as a long edge
    assert prune(WEAK, T, [A, C, B], alpha=1.1, max_degree=4) == [A, C, B]


def test_alpha_above_one_keeps_more_edges_on_random_pools() -> None:
    # greedy pruning is not monotone row by row (an extra kept edge can occlude a later one),
    # but over many targets a looser alpha keeps clearly more edges
    rng = np.random.default_rng(11)
    codes = bq.encode(rng.standard_normal((80, DIM)).astype(np.float32))
    kept = {1.0: 0, 1.2: 0}
    for target in range(20):
        pool = sorted_pool(codes, target, [r for r in range(80) if r != target])
        for alpha in kept:
            kept[alpha] += len(prune(codes, target, pool, alpha=alpha, max_degree=79))
    assert kept[1.2] > 1.5 * kept[1.0]


def test_equal_distance_is_not_occlusion() -> None:
    # alpha * d(A, E) == d(T, E): the inequality is strict, E stays
    assert prune(WEAK, T, [A, E], alpha=1.0, max_degree=4) == [A, E]


def test_duplicate_of_the_target_does_not_occlude_the_pool() -> None:
    # d(T_DUP, c) == d(T, c) for every c: with a non-strict test it would occlude everything
    assert prune(WEAK, T, [T_DUP, A, C, B], alpha=1.0, max_degree=4) == [T_DUP, A, B]


def test_duplicate_candidate_is_dropped() -> None:
    pool = sorted_pool(WEAK, T, [C, B, C_DUP])
    assert pool == [C, B, C_DUP]
    assert prune(WEAK, T, pool, alpha=1.0, max_degree=4) == [C, B]


def test_zero_distances_with_all_strong_codes() -> None:
    t, t_dup, x, x_dup = range(4)
    codes = make_codes(
        [
            code_row(set(), ALL_STRONG),
            code_row(set(), ALL_STRONG),
            code_row(range(4), ALL_STRONG),
            code_row(range(4), ALL_STRONG),
        ]
    )
    assert distances(codes, t, [t_dup, x, x_dup]).tolist() == [0, 32, 32]
    # the duplicate at distance 0 occludes nothing; x's exact twin (0 from x) is occluded
    # whatever alpha is
    assert prune(codes, t, [t_dup, x, x_dup], alpha=1.0, max_degree=4) == [t_dup, x]
    assert prune(codes, t, [t_dup, x, x_dup], alpha=3.0, max_degree=4) == [t_dup, x]


# eight points in disjoint directions: d(T, p) = 208 each, d(p, q) = 224, none occludes another
SPREAD = make_codes([code_row(set())] + [code_row(range(8 * k, 8 * k + 8)) for k in range(8)])


@pytest.mark.parametrize("max_degree", [0, 1, 3, 8])
def test_max_degree_bounds_the_kept_list(max_degree: int) -> None:
    pool = list(range(1, 9))
    assert prune(SPREAD, 0, pool, alpha=1.0, max_degree=max_degree) == pool[:max_degree]


def test_empty_pool_keeps_nothing() -> None:
    assert prune(WEAK, T, [], alpha=1.2, max_degree=4) == []


@pytest.mark.parametrize("alpha", [1.0, 1.2, 2.0])
@pytest.mark.parametrize("max_degree", [1, 4, 16])
def test_prune_follows_its_contract_on_random_pools(alpha: float, max_degree: int) -> None:
    """The kept list is the greedy one the docstring describes: a subsequence of the pool
    starting with its first element, no kept row occluded by an earlier kept one, every
    skipped row (before the degree bound is reached) occluded by an earlier kept one."""
    dim = 100  # two words per plane, with tail bits
    rng = np.random.default_rng(int(alpha * 10) + max_degree)
    codes = bq.encode(rng.standard_normal((60, dim)).astype(np.float32))
    pair = bq.reference_distance(codes, codes, dim)
    for target in range(0, 60, 6):
        rows = rng.choice([r for r in range(60) if r != target], size=40, replace=False)
        pool = sorted_pool(codes, target, rows.tolist(), dim)
        kept = prune(codes, target, pool, alpha, max_degree, dim)
        to_target = pair[target]
        assert kept[0] == pool[0]
        assert len(kept) <= max_degree
        positions = [pool.index(k) for k in kept]
        assert positions == sorted(positions)
        last = positions[-1] if len(kept) == max_degree else len(pool) - 1
        for i, c in enumerate(pool[: last + 1]):
            earlier = [k for k in kept if pool.index(k) < i]
            occluded = any(alpha * pair[k, c] < to_target[c] for k in earlier)
            assert occluded == (c not in kept), (target, c)


def test_code_medoid_of_a_star_is_its_centre() -> None:
    # row 3 is the centre; each other row differs from it in its own 4 bits
    rows = [code_row(range(4 * k, 4 * k + 4)) for k in range(6)]
    rows.insert(3, code_row(set()))
    codes = make_codes(rows)
    assert graph.code_medoid(codes, DIM) == 3
    assert graph.code_medoid(codes, DIM, chunk=2) == 3


@pytest.mark.parametrize("chunk", [1, 7, 8192])
def test_code_medoid_matches_brute_force(chunk: int) -> None:
    dim = 100
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, dim)).astype(np.float32) + rng.standard_normal(dim) * 0.5
    codes = bq.encode(x.astype(np.float32))
    totals = bq.reference_distance(codes, codes, dim).sum(axis=1)
    assert graph.code_medoid(codes, dim, chunk=chunk) == int(np.argmin(totals))


@pytest.mark.parametrize("chunk", [1, 3, 8192])
def test_code_medoid_ties_go_to_the_first_row(chunk: int) -> None:
    codes = make_codes([code_row(range(5))] * 7)
    assert graph.code_medoid(codes, DIM, chunk=chunk) == 0


# --------------------------------------------------------------------------- delete repair


def repair(
    codes: np.ndarray,
    adjacency: np.ndarray,
    degrees: np.ndarray,
    live: np.ndarray,
    count: int,
    alpha: float = 1.0,
    slots: int = 1,
    dim: int = DIM,
    first_epoch: int = 0,
) -> int:
    stamps, epochs = new_scratch(slots, adjacency.shape[0])
    epochs[:] = first_epoch
    return graph.repair_deleted(codes, dim, adjacency, degrees, live, count, alpha, stamps, epochs)


def make_graph(rows: list[list[int]], max_degree: int, spare: int = 0):
    """Adjacency (n + spare, R) int32 padded with -1, and degrees (n + spare,) int32."""
    adjacency = np.full((len(rows) + spare, max_degree), -1, dtype=np.int32)
    degrees = np.zeros(len(rows) + spare, dtype=np.int32)
    for p, row in enumerate(rows):
        adjacency[p, : len(row)] = row
        degrees[p] = len(row)
    return adjacency, degrees


def row_of(adjacency: np.ndarray, degrees: np.ndarray, p: int) -> list[int]:
    return adjacency[p, : degrees[p]].tolist()


# Hand-made graph (R = 3); rows 2 and 5 are deleted. Codes: row 6 is the target of the one
# repair that overflows, and its pool 7 (200), 0 (208), 3 (208), 4 (208) prunes 0 through 7.
REPAIR_CODES = make_codes(
    [
        code_row(range(0, 8)),  # 0
        code_row(range(16, 20)),  # 1
        code_row(range(20, 24)),  # 2 (deleted)
        code_row(range(32, 40)),  # 3
        code_row(range(40, 48)),  # 4
        code_row(range(24, 28)),  # 5 (deleted)
        code_row(set()),  # 6
        code_row(range(0, 4)),  # 7
        code_row(set()),  # spare capacity row
        code_row(set()),  # spare capacity row
    ]
)
REPAIR_ROWS = [[1, 2], [0, 3], [0, 3, 5], [5, 4], [3], [6, 7, 2], [5, 2, 4], [1, 5, 0]]
DELETED = (2, 5)


def hand_made_repair():
    adjacency, degrees = make_graph(REPAIR_ROWS, max_degree=3, spare=2)
    live = np.zeros(adjacency.shape[0], dtype=np.uint8)
    live[: len(REPAIR_ROWS)] = 1
    live[list(DELETED)] = 0
    before = adjacency.copy(), degrees.copy()
    repaired = repair(REPAIR_CODES, adjacency, degrees, live, len(REPAIR_ROWS))
    return adjacency, degrees, live, before, repaired


def test_repair_reconnects_through_the_deleted_neighbours() -> None:
    adjacency, degrees, live, _, repaired = hand_made_repair()
    assert repaired == 4  # rows 0, 3, 6, 7 linked to a deleted row
    assert row_of(adjacency, degrees, 0) == [1, 3]  # 2's live neighbour 3 (0 itself skipped)
    assert sorted(row_of(adjacency, degrees, 3)) == [4, 6, 7]  # 5's live neighbours 6, 7
    assert sorted(row_of(adjacency, degrees, 7)) == [0, 1, 6]
    # row 6's pool 7, 0, 3, 4 overflows R = 3: pruned in distance order, 0 occluded by 7
    assert row_of(adjacency, degrees, 6) == [7, 3, 4]


def test_repair_leaves_no_edge_to_a_deleted_row_and_respects_the_degree() -> None:
    adjacency, degrees, live, _, _ = hand_made_repair()
    for p in np.flatnonzero(live):
        row = row_of(adjacency, degrees, p)
        assert all(live[c] for c in row), (p, row)
        assert p not in row and len(set(row)) == len(row)
        assert degrees[p] <= adjacency.shape[1]
        assert (adjacency[p, degrees[p] :] == -1).all()


def test_repair_leaves_untouched_and_deleted_rows_as_they_were() -> None:
    adjacency, degrees, _, (adj_before, deg_before), _ = hand_made_repair()
    for p in (1, 4, *DELETED, 8, 9):
        assert adjacency[p].tolist() == adj_before[p].tolist(), p
        assert degrees[p] == deg_before[p], p


def test_repair_without_deletions_changes_nothing() -> None:
    adjacency, degrees = make_graph(REPAIR_ROWS, max_degree=3)
    before = adjacency.copy()
    live = np.ones(len(REPAIR_ROWS), dtype=np.uint8)
    assert repair(REPAIR_CODES, adjacency, degrees, live, len(REPAIR_ROWS)) == 0
    assert (adjacency == before).all()


def test_compaction_renumbers_the_repaired_graph() -> None:
    adjacency, degrees, live, _, _ = hand_made_repair()
    keep = np.flatnonzero(live[: len(REPAIR_ROWS)]).astype(np.int64)
    assert keep.tolist() == [0, 1, 3, 4, 6, 7]
    new_row = np.full(adjacency.shape[0], -1, dtype=np.int32)
    new_row[keep] = np.arange(keep.shape[0], dtype=np.int32)
    out, out_deg = graph.compact_adjacency(adjacency, degrees, keep, new_row)
    assert out.shape == (6, 3) and out.dtype == np.int32
    for i, old in enumerate(keep):
        expected = [int(new_row[c]) for c in row_of(adjacency, degrees, old)]
        assert row_of(out, out_deg, i) == expected  # no edge was dropped: all were live
        assert (out[i, out_deg[i] :] == -1).all()
    assert row_of(out, out_deg, 4) == [5, 2, 3]  # old row 6: [7, 3, 4]


def test_compaction_drops_edges_to_dropped_rows() -> None:
    adjacency, degrees = make_graph([[1, 2, 3], [2], [0, 1, 3], [2, 0]], max_degree=3)
    keep = np.array([0, 1, 3], dtype=np.int64)
    new_row = np.array([0, 1, -1, 2], dtype=np.int32)
    out, out_deg = graph.compact_adjacency(adjacency, degrees, keep, new_row)
    assert out.tolist() == [[1, 2, -1], [-1, -1, -1], [0, -1, -1]]
    assert out_deg.tolist() == [2, 0, 1]


def test_compaction_of_nothing() -> None:
    adjacency, degrees = make_graph([[1], [0]], max_degree=2)
    out, out_deg = graph.compact_adjacency(
        adjacency, degrees, np.empty(0, dtype=np.int64), np.full(2, -1, dtype=np.int32)
    )
    assert out.shape == (0, 2) and out_deg.shape == (0,)


def reference_repair(codes, rows, live, max_degree, alpha, dim):
    """Plain-Python delete consolidation as ``_repair_row`` documents it: row -> (new
    neighbours, whether they were pruned) for every live row that links to a deleted one."""
    out = {}
    for p, row in enumerate(rows):
        if not live[p] or all(live[c] for c in row):
            continue
        pool: list[int] = []
        for nb in row:
            extra = [nb] if live[nb] else [c for c in rows[nb] if live[c]]
            pool += [c for c in extra if c != p and c not in pool]
        if len(pool) <= max_degree:
            out[p] = (pool, False)  # fits: kept unpruned (in no promised order)
        else:
            ordered = sorted_pool(codes, p, pool, dim)
            out[p] = (prune(codes, p, ordered, alpha, max_degree, dim), True)
    return out


@pytest.mark.parametrize("slots", [1, 3])
def test_repair_matches_a_reference_on_a_random_graph(slots: int) -> None:
    rng = np.random.default_rng(21)
    n, max_degree, dim = 300, 6, 100
    codes = bq.encode(rng.standard_normal((n, dim)).astype(np.float32))
    rows = []
    for p in range(n):
        degree = int(rng.integers(1, max_degree + 1))
        rows.append(rng.choice(np.delete(np.arange(n), p), size=degree, replace=False).tolist())
    live = (rng.random(n) > 0.3).astype(np.uint8)
    adjacency, degrees = make_graph(rows, max_degree)
    before = adjacency.copy()
    expected = reference_repair(codes, rows, live, max_degree, 1.2, dim)
    # more than 255 rows per slot would be needed to wrap the epoch: start near the wrap
    repaired = repair(
        codes, adjacency, degrees, live, n, alpha=1.2, slots=slots, dim=dim, first_epoch=250
    )
    assert repaired == len(expected) > 100
    assert sum(pruned for _, pruned in expected.values()) > 20
    for p in range(n):
        row = row_of(adjacency, degrees, p)
        if p in expected:
            want, pruned = expected[p]
            assert (row if pruned else sorted(row)) == (want if pruned else sorted(want)), p
        else:
            assert adjacency[p].tolist() == before[p].tolist(), p
        if live[p]:
            assert all(live[c] for c in row) and p not in row and len(row) <= max_degree
