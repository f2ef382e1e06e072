"""The public Index API: ids, padding, edge cases and input validation."""

from __future__ import annotations

import numpy as np
import pytest
from lowrank import low_rank_data

import quiver
from quiver import DuplicateIdError, InvalidInputError


@pytest.fixture
def small() -> quiver.Index:
    index = quiver.Index(24, "l2")
    index.add(low_rank_data(500, 24, rank=8))
    return index


def test_search_on_empty_index_returns_padding() -> None:
    ids, dists = quiver.Index(8).search(np.ones(8), k=3)
    assert ids.shape == (1, 3) and (ids == -1).all() and np.isinf(dists).all()
    assert ids.dtype == np.int64 and dists.dtype == np.float32


def test_fewer_points_than_k_pads() -> None:
    index = quiver.Index(5, "l2")
    index.add(np.eye(5, dtype=np.float32)[:3], ids=[10, 20, 30])
    ids, dists = index.search(np.zeros((2, 5)), k=6, ef=8)
    assert ids.shape == (2, 6)
    assert sorted(ids[0, :3].tolist()) == [10, 20, 30] and (ids[:, 3:] == -1).all()
    np.testing.assert_allclose(dists[0, :3], 1.0)
    assert np.isinf(dists[:, 3:]).all()


def test_caller_ids_are_returned_and_auto_ids_continue() -> None:
    x = low_rank_data(300, 16, rank=8)
    index = quiver.Index(16, "l2")
    given = np.arange(300) * 7 + 1000
    assert (index.add(x, ids=given) == given).all()
    more = index.add(x[:5] + 0.5)
    assert more.tolist() == [given.max() + 1 + i for i in range(5)]
    ids, dists = index.search(x[42], k=1, ef=32)
    assert ids[0, 0] == given[42] and dists[0, 0] == pytest.approx(0.0, abs=1e-4)


def test_one_vector_query_is_promoted_to_a_batch(small: quiver.Index) -> None:
    ids, dists = small.search(np.zeros(24), k=4)
    assert ids.shape == (1, 4) and dists.shape == (1, 4)


def test_duplicates_and_zero_vectors_are_stored_and_found() -> None:
    x = np.zeros((50, 10), dtype=np.float32)
    x[25:] = 1.0
    index = quiver.Index(10, "cosine")
    index.add(x)
    ids, dists = index.search(np.ones(10), k=25, ef=50)
    assert set(ids[0].tolist()) == set(range(25, 50))
    np.testing.assert_allclose(dists, 0.0, atol=1e-6)
    _, zero_dists = index.search(np.zeros(10), k=5, ef=50)
    np.testing.assert_allclose(zero_dists, 1.0, atol=1e-6)  # cos with a zero vector is 0


def test_readonly_and_non_contiguous_inputs_are_accepted_and_untouched() -> None:
    base = low_rank_data(400, 32, rank=8)
    strided = np.asfortranarray(base)[:, ::1][::2]  # Fortran order, every other row
    strided.flags.writeable = False
    before = strided.copy()
    index = quiver.Index(32, "cosine")
    index.add(strided)
    ids, _ = index.search(base[::-2][:5].T.copy().T, k=3)  # a non-owning reversed view
    np.testing.assert_array_equal(strided, before)
    assert ids.shape == (5, 3)
    float64_ids, _ = index.search(base[:3].astype(np.float64), k=3)
    assert float64_ids[0, 0] == 0


def test_repr_len_and_stats(small: quiver.Index) -> None:
    assert len(small) == 500
    assert "count=500" in repr(small) and "metric='l2'" in repr(small)
    stats = small.stats()
    assert stats["count"] == 500 and stats["dim"] == 24 and stats["max_degree"] == 64
    assert stats["hot_bytes"] >= 500 * (16 + 64 * 4 + 8)
    assert stats["cold_bytes"] == 500 * 24 * 4
    assert stats["build_seconds"] > 0


BAD_VECTORS = [
    (np.ones((4, 23)), "expected 24, got 23"),
    (np.full((2, 24), np.nan), "finite"),
    (np.full((2, 24), np.inf), "finite"),
    (np.ones((0, 24)), "empty batch"),
    (np.ones((2, 3, 24)), "got 3-D"),
    (np.ones(()), "got 0-D"),
    (np.array([["a"] * 24]), "numeric"),
]


@pytest.mark.parametrize(("vectors", "message"), BAD_VECTORS)
def test_bad_vectors_raise_and_store_nothing(small: quiver.Index, vectors, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        small.add(vectors)
    assert len(small) == 500
    with pytest.raises(InvalidInputError, match=message):
        small.search(vectors)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be >= 1, got 0"),
        ({"k": -3}, "k must be >= 1, got -3"),
        ({"k": 10, "ef": 5}, "ef must be >= k: got ef=5, k=10"),
        ({"k": 5, "ef": 20, "rerank": 3}, r"rerank must be in \[k, ef\] = \[5, 20\], got 3"),
        ({"k": 5, "ef": 20, "rerank": 21}, "got 21"),
        ({"k": 2.5}, "k must be an integer"),
        ({"num_threads": 0}, "num_threads must be >= 1, got 0"),
    ],
)
def test_bad_search_arguments(small: quiver.Index, kwargs, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        small.search(np.zeros(24), **kwargs)


def test_bad_ids_raise_and_store_nothing(small: quiver.Index) -> None:
    x = low_rank_data(3, 24, rank=8, seed=9)
    with pytest.raises(InvalidInputError, match="expected 3 .*got 2"):
        small.add(x, ids=[1000, 1001])
    with pytest.raises(DuplicateIdError, match="distinct within a batch"):
        small.add(x, ids=[1000, 1001, 1000])
    with pytest.raises(DuplicateIdError, match="already exist"):
        small.add(x, ids=[1000, 1001, 5])
    with pytest.raises(InvalidInputError, match=">= 0"):
        small.add(x, ids=[1000, 1001, -2])
    with pytest.raises(InvalidInputError, match="integers"):
        small.add(x, ids=[1.5, 2.0, 3.0])
    assert len(small) == 500
    assert small.add(x, ids=[1000, 1001, 1002]).tolist() == [1000, 1001, 1002]


def test_constructor_validation() -> None:
    with pytest.raises(InvalidInputError, match="unknown metric 'hamming'"):
        quiver.Index(8, "hamming")
    with pytest.raises(InvalidInputError, match="dim must be >= 1, got 0"):
        quiver.Index(0)
    with pytest.raises(InvalidInputError, match="alpha must be in"):
        quiver.Index(8, alpha=0.5)
    with pytest.raises(InvalidInputError, match="max_degree"):
        quiver.Index(8, max_degree=1)


def test_concurrent_searches_from_threads_match_serial_results() -> None:
    from concurrent.futures import ThreadPoolExecutor

    x = low_rank_data(3000, 48, rank=12, seed=11)
    index = quiver.Index(48, "cosine")
    index.add(x)
    batches = [x[i : i + 40] + 0.01 for i in range(0, 800, 40)]
    expected = [index.search(b, k=5, ef=32).ids for b in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda b: index.search(b, k=5, ef=32).ids, batches * 3))
    for i, ids in enumerate(got):
        np.testing.assert_array_equal(ids, expected[i % len(batches)])
