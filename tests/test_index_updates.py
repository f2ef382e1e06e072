"""Index-level deletes, consolidation, filtered and scan search modes."""

from __future__ import annotations

import numpy as np
import pytest
from lowrank import low_rank_data

import quiver
from quiver import exact_search, recall_at_k
from quiver.engine.state import SearchPlan

#: Recall@10 at ef=64 after deleting a third of a low-rank set, before and after consolidation,
#: may trail a fresh build of the remaining points by at most this much.
RECALL_SLACK = 0.02


@pytest.fixture()
def data():
    return low_rank_data(3000, 40, seed=11), low_rank_data(100, 40, seed=12)


def test_deleted_points_are_never_returned(data, tmp_path) -> None:
    x, q = data
    index = quiver.Index(40, "cosine")
    index.add(x)
    gone = np.arange(0, 3000, 3)
    assert index.delete(gone) == 1000
    assert index.delete(gone[:10]) == 0  # already deleted
    assert index.delete([10**9]) == 0  # unknown
    assert len(index) == 2000 and index.stats()["deleted"] == 1000
    live = np.setdiff1d(np.arange(3000), gone)
    _, gt = exact_search(x[live], q, 10, "cosine")
    fresh = quiver.Index(40, "cosine")
    fresh.add(x[live])
    reference = recall_at_k(fresh.search(q, 10, 64).distances, gt, 10)
    ids, d = index.search(q, 10, 64)
    assert not np.isin(ids, gone).any()
    assert recall_at_k(d, gt, 10) >= reference - RECALL_SLACK
    index.save(tmp_path / "i")
    reopened = quiver.Index.open(tmp_path / "i")
    assert len(reopened) == 2000
    np.testing.assert_array_equal(reopened.search(q, 10, 64).ids, ids)
    result = index.consolidate()
    assert result.removed == 1000 and result.repaired > 0
    np.testing.assert_array_equal(result.kept_rows, live)
    assert index.stats()["deleted"] == 0 and len(index) == 2000
    ids2, d2 = index.search(q, 10, 64)
    assert not np.isin(ids2, gone).any()
    assert recall_at_k(d2, gt, 10) >= reference - RECALL_SLACK
    # after consolidation the graph keeps accepting inserts and the ids stay the caller's
    index.add(x[gone[:5]] + 0.01, ids=gone[:5])
    assert index.search(x[gone[:5]], 1, 32).ids[:, 0].tolist() == gone[:5].tolist()


def test_deleting_the_entry_point(data) -> None:
    x, q = data
    index = quiver.Index(40)
    index.add(x[:500])
    entry = index.stats()["entry_point"]
    index.delete([entry])
    index.consolidate()
    assert index.stats()["entry_point"] != entry
    assert (index.search(q, 5, 32).ids >= 0).all()


def test_filtered_and_scan_modes_return_only_admitted_rows(data) -> None:
    x, q = data
    index = quiver.Index(40, "cosine")
    index.add(x)
    state = index.state()
    rng = np.random.default_rng(0)
    prepared = index.prepare_queries(q.copy())
    for share in (0.5, 0.05, 0.002):
        admit = (rng.random(state.count) < share).astype(np.uint8)
        rows = np.flatnonzero(admit)
        _, gt = exact_search(x[rows], q, 10, "cosine")
        for scan in (False, True):
            plan = SearchPlan(10, 64, 64, index.select(state, admit, scan), return_rows=True)
            ids, d, _ = index.execute(state, prepared, plan)
            got = ids[ids >= 0]
            assert admit[got].all()
            assert recall_at_k(d, gt, 10) >= 0.85, (share, scan)
