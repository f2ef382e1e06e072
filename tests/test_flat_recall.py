"""The exact oracle and the one recall function."""

from __future__ import annotations

import numpy as np
import pytest

from quiver import exact_search, recall_at_k


def _numpy_distances(x: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        return 1.0 - qn @ xn.T
    if metric == "ip":
        return -(q @ x.T)
    return ((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_search_matches_numpy(metric: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, 33))
    q = rng.standard_normal((9, 33))
    ids, dists = exact_search(x, q, 12, metric)
    ref = _numpy_distances(x, q, metric)
    np.testing.assert_array_equal(ids, np.argsort(ref, axis=1, kind="stable")[:, :12])
    np.testing.assert_allclose(dists, np.sort(ref, axis=1)[:, :12], rtol=1e-5, atol=1e-5)
    assert ids.dtype == np.int64 and dists.dtype == np.float32


def test_exact_search_pads_when_fewer_than_k() -> None:
    ids, dists = exact_search(np.eye(3, dtype=np.float32), np.ones((2, 3)), 5, "l2")
    assert (ids[:, 3:] == -1).all() and np.isinf(dists[:, 3:]).all()
    assert sorted(ids[0, :3].tolist()) == [0, 1, 2]


def test_recall_counts_ties_within_epsilon() -> None:
    true = np.array([[0.1, 0.2, 0.3]])
    # the third result is a different point at the same distance as the true 3rd: it counts
    assert recall_at_k(np.array([[0.1, 0.2, 0.3 + 5e-4]]), true, 3) == 1.0
    assert recall_at_k(np.array([[0.1, 0.2, 0.31]]), true, 3) == pytest.approx(2 / 3)
    assert recall_at_k(np.array([[0.1, np.inf, np.inf]]), true, 3) == pytest.approx(1 / 3)


def test_recall_when_fewer_than_k_exist() -> None:
    true = np.array([[0.1, 0.2, np.inf, np.inf]])
    assert recall_at_k(np.array([[0.1, 0.2, np.inf, np.inf]]), true, 4) == 1.0
    assert recall_at_k(np.array([[0.1, np.inf, np.inf, np.inf]]), true, 4) == 0.5


def test_flat_index_is_an_exact_oracle_with_caller_ids() -> None:
    from quiver import DuplicateIdError, FlatIndex

    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 17)).astype(np.float32)
    flat = FlatIndex(17, "l2")
    assert (flat.search(x[:2], k=3).ids == -1).all()
    flat.add(x[:200], ids=np.arange(200) + 1000)
    auto = flat.add(x[200:])
    assert auto[0] == 1200 and len(flat) == 300
    ids, dists = flat.search(x[[5, 250]], k=4)
    assert ids[:, 0].tolist() == [1005, 1250] and np.allclose(dists[:, 0], 0.0)
    with pytest.raises(DuplicateIdError):
        flat.add(x[:1], ids=[1005])
