"""The candidate list kernels: one merge of a batch gives the list of one-by-one insertion."""

from __future__ import annotations

import numpy as np
import pytest

from quiver.engine.candidates import insert_candidate, merge_candidates


def _one_by_one(ids, dists, done, count, new_ids, new_dists):
    best = count
    for r, d in zip(new_ids, new_dists, strict=True):
        pos = insert_candidate(ids, dists, done, count, r, d)
        if pos >= 0:
            count = min(count + 1, len(ids))
            best = min(best, pos)
    return count, best


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
@pytest.mark.parametrize("capacity", [1, 5, 24, 128])
def test_merge_equals_one_by_one_insertion(dtype, capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    for trial in range(300):
        count = int(rng.integers(1, capacity + 1))
        dists = np.sort(rng.integers(0, 40, capacity)).astype(dtype)  # many ties
        ids = rng.permutation(1000)[:capacity].astype(np.int32)
        done = rng.random(capacity) < 0.5
        n_new = int(rng.integers(0, 65))
        new_dists = rng.integers(0, 45, n_new).astype(dtype)
        new_ids = (1000 + np.arange(n_new)).astype(np.int32)
        want = (ids.copy(), dists.copy(), done.copy())
        want_count, want_best = _one_by_one(*want, count, new_ids, new_dists)
        got = (ids.copy(), dists.copy(), done.copy())
        got_count, got_best = merge_candidates(*got, count, new_ids.copy(), new_dists.copy(), n_new)
        assert got_count == want_count, trial
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a[:got_count], b[:want_count]), trial
        if want_best < want_count:  # a new entry stayed: the first one's position
            assert got_best == want_best, trial
        else:
            assert got_best >= got_count, trial
