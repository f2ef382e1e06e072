"""The code-space scan of filtered search: sign-estimate shortlist, then the full distance."""

from __future__ import annotations

import numpy as np
import pytest

from quiver.engine import bq
from quiver.engine.kernels import encode_query, query_code_distance
from quiver.engine.search import (
    SCAN_SHORTLIST,
    estimate_group,
    query_signs,
    rank_shortlist,
    scan_rows,
    select_shortlist,
)
from quiver.engine.state import SearchPlan


def _reference(codes, dim, q, rows, admit, k):
    """Plain-numpy scan: the ``SCAN_SHORTLIST * k`` best rows by the 1-bit estimate (ties in
    row order), ranked by the full query distance; rows not admitted are dropped last."""
    words = codes.shape[1] // 2
    pos = codes[:, :words]
    flip = pos ^ codes[:, words:]
    a = bq.encode(q[None, :])[0, :words]  # the sign plane of the query's own code
    pc = np.bitwise_count
    est = -(
        4 * (2 * pc(pos & a).sum(1).astype(np.int64) - pc(pos).sum(1))
        - 2 * (2 * pc(flip & a).sum(1).astype(np.int64) - pc(flip).sum(1))
    )
    n_short = SCAN_SHORTLIST * k
    short = rows[np.argsort(est[rows], kind="stable")[:n_short]] if len(rows) > n_short else rows
    planes = np.empty(2 * codes.shape[1], dtype=np.uint64)
    params = np.empty(3)
    encode_query(q, planes, params)
    d = np.array([query_code_distance(planes, params, codes[r], words) for r in short])
    keep = admit[short] != 0
    short, d = short[keep], d[keep]
    order = np.argsort(d, kind="stable")[:k]
    return short[order], d[order]


def _scan(codes, dim, q, rows, admit, k, compact):
    planes = np.empty(2 * codes.shape[1], dtype=np.uint64)
    params = np.empty(3)
    encode_query(q, planes, params)
    signs = np.empty(codes.shape[1] // 2, dtype=np.uint64)
    query_signs(q, signs)
    ids = np.empty(k, dtype=np.int32)
    dists = np.empty(k)
    if compact:  # the batch path: estimates of a group of queries over the gathered codes
        est = np.empty((2, len(rows)), dtype=np.int32)
        estimate_group(codes[rows], np.stack([signs, signs]), 2, dim, est)
        assert (est[0] == est[1]).all()
        short = select_shortlist(est[1], SCAN_SHORTLIST * k, dim)
        n = rank_shortlist(codes[rows], rows, dim, (planes, params), short, admit, ids, dists)
    else:
        n = scan_rows(codes, dim, (planes, params), signs, rows, admit, ids, dists)
    return ids[:n], dists[:n]


@pytest.mark.parametrize("dim", [40, 97, 384])
@pytest.mark.parametrize("compact", [False, True])
def test_scan_matches_the_numpy_reference(dim: int, compact: bool) -> None:
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((3000, dim)).astype(np.float32)
    x[1000:1400] = x[0]  # 400 duplicates: equal estimates, ties broken in row order
    codes = bq.encode(x)
    rows = np.flatnonzero(rng.random(3000) < 0.4).astype(np.int32)
    admit = np.zeros(3000, dtype=np.uint8)
    admit[rows] = 1
    admit[rows[::7]] = 0  # deleted since the rows were listed: never returned
    for q in (rng.standard_normal(dim).astype(np.float32), x[0].copy()):
        for k in (1, 10, 64):
            got_ids, got_d = _scan(codes, dim, q, rows, admit, k, compact)
            want_ids, want_d = _reference(codes, dim, q, rows, admit, k)
            np.testing.assert_allclose(got_d, want_d, rtol=1e-9, atol=1e-9)
            assert admit[got_ids].all()
            assert len(got_ids) == len(want_ids)


def test_scan_with_fewer_rows_than_the_shortlist_is_exact() -> None:
    rng = np.random.default_rng(3)
    dim = 64
    x = rng.standard_normal((500, dim)).astype(np.float32)
    codes = bq.encode(x)
    rows = np.arange(0, 500, 25, dtype=np.int32)  # 20 rows, fewer than SCAN_SHORTLIST * 10
    admit = np.zeros(500, dtype=np.uint8)
    admit[rows] = 1
    q = rng.standard_normal(dim).astype(np.float32)
    ids, d = _scan(codes, dim, q, rows, admit, 10, compact=True)
    planes = np.empty(2 * codes.shape[1], dtype=np.uint64)
    params = np.empty(3)
    encode_query(q, planes, params)
    every = np.array([query_code_distance(planes, params, codes[r], dim // 64) for r in rows])
    np.testing.assert_allclose(d, np.sort(every)[:10])
    assert set(ids.tolist()) <= set(rows.tolist())


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_scan_equals_one_query_at_a_time(threads: int) -> None:
    import quiver

    rng = np.random.default_rng(8)
    x = rng.standard_normal((4000, 72)).astype(np.float32)
    q = rng.standard_normal((21, 72)).astype(np.float32)  # groups of 8 with a remainder
    index = quiver.Index(72, "cosine", num_threads=threads)
    index.add(x)
    state = index.state()
    admit = (rng.random(state.count) < 0.3).astype(np.uint8)
    prepared = index.prepare_queries(q)
    plan = SearchPlan(10, 32, 32, index.select(state, admit, scan=True))
    batch_ids, batch_d, _ = index.execute(state, prepared, plan)
    for i in range(len(q)):
        one = prepared[i : i + 1]
        ids, d, _ = index.execute(state, one, plan)
        np.testing.assert_array_equal(ids[0], batch_ids[i])
        np.testing.assert_array_equal(d[0], batch_d[i])
    assert admit[batch_ids[batch_ids >= 0]].all()
