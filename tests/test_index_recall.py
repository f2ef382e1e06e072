"""Recall against the exact oracle on real embeddings, incremental adds and determinism."""

from __future__ import annotations

import numpy as np
import pytest
from lowrank import low_rank_data

import quiver
from quiver import exact_search, recall_at_k

#: Acceptance thresholds on the bundled MiniLM-WordNet slice (20k base, 1k held-out queries).
RECALL_AT_EF64 = 0.90
RECALL_AT_EF128 = 0.95
#: Incremental build (half, then the other half) may lose at most this much recall@10 at ef=64.
INCREMENTAL_RECALL_SLACK = 0.02
#: Synthetic low-rank data (in-distribution queries), every metric, at ef=128.
RECALL_LOW_RANK_EF128 = 0.90


@pytest.fixture(scope="module")
def wordnet_index(wordnet):
    index = quiver.Index(wordnet.train.shape[1], "cosine")
    index.add(wordnet.train)
    return index


def test_recall_on_bundled_minilm_slice(wordnet, wordnet_index) -> None:
    _, d64 = wordnet_index.search(wordnet.test, k=10, ef=64)
    _, d128 = wordnet_index.search(wordnet.test, k=10, ef=128)
    r64 = recall_at_k(d64, wordnet.distances, 10)
    r128 = recall_at_k(d128, wordnet.distances, 10)
    print(f"recall@10 ef=64: {r64:.4f}  ef=128: {r128:.4f}")
    assert r64 >= RECALL_AT_EF64
    assert r128 >= RECALL_AT_EF128


def test_search_is_a_graph_search_not_a_scan(wordnet, wordnet_index) -> None:
    stats = wordnet_index.search_stats(wordnet.test, k=10, ef=64)
    assert stats["fraction_of_points"] < 0.25, stats


def test_returned_distances_are_exact_float_distances(wordnet, wordnet_index) -> None:
    ids, dists = wordnet_index.search(wordnet.test[:20], k=10, ef=64)
    x = wordnet.train / np.linalg.norm(wordnet.train, axis=1, keepdims=True)
    q = wordnet.test[:20] / np.linalg.norm(wordnet.test[:20], axis=1, keepdims=True)
    want = 1.0 - np.einsum("qd,qkd->qk", q, x[ids])
    np.testing.assert_allclose(dists, want, atol=1e-5)
    assert (np.diff(dists, axis=1) >= 0).all()


def test_incremental_add_matches_one_shot_build(wordnet, wordnet_index) -> None:
    half = wordnet.train.shape[0] // 2
    index = quiver.Index(wordnet.train.shape[1], "cosine")
    index.add(wordnet.train[:half])
    index.add(wordnet.train[half:])
    assert len(index) == wordnet.train.shape[0]
    _, one_shot = wordnet_index.search(wordnet.test, k=10, ef=64)
    _, two_step = index.search(wordnet.test, k=10, ef=64)
    r_one = recall_at_k(one_shot, wordnet.distances, 10)
    r_two = recall_at_k(two_step, wordnet.distances, 10)
    print(f"one-shot {r_one:.4f}  half+half {r_two:.4f}")
    assert r_two >= r_one - INCREMENTAL_RECALL_SLACK


def test_same_seed_gives_the_same_graph_for_any_thread_count() -> None:
    x = low_rank_data(3000, 40, seed=5)
    graphs = []
    for threads in (1, 2, 2):
        index = quiver.Index(40, "l2", seed=7, num_threads=threads)
        index.add(x)
        graphs.append(index.hot.adjacency[: len(index)].copy())
    np.testing.assert_array_equal(graphs[0], graphs[1])
    np.testing.assert_array_equal(graphs[1], graphs[2])
    other = quiver.Index(40, "l2", seed=8)
    other.add(x)
    assert not np.array_equal(other.hot.adjacency[: len(other)], graphs[0])


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_every_metric_against_the_oracle(metric: str) -> None:
    data = low_rank_data(4100, 97, rank=16, seed=97)  # D not a multiple of 64
    x, q = data[:4000], data[4000:]
    index = quiver.Index(97, metric)
    index.add(x)
    ids, dists = index.search(q, k=10, ef=128)
    _, true_dists = exact_search(x, q, 10, metric)
    recall = recall_at_k(dists, true_dists, 10)
    print(f"{metric}: recall@10 at ef=128 {recall:.3f}")
    assert recall >= RECALL_LOW_RANK_EF128
    assert ids.dtype == np.int64 and dists.dtype == np.float32


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_results_are_exact_distances_of_distinct_ids_even_in_3d(metric: str) -> None:
    """3-d codes carry ~6 bits and navigate poorly (outside the boundary), but what is returned
    must still be right: distinct ids, their exact distances, ascending."""
    x = low_rank_data(1000, 3, rank=3, seed=3)
    index = quiver.Index(3, metric)
    index.add(x)
    q = x[:50] + 0.01
    ids, dists = index.search(q, k=10, ef=64)
    assert all(len(set(row)) == 10 for row in ids.tolist())
    xs = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    qs = q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "cosine" else q
    if metric == "l2":
        want = ((xs[ids] - qs[:, None, :]) ** 2).sum(axis=2)
    else:
        dots = np.einsum("qd,qkd->qk", qs, xs[ids])
        want = 1.0 - dots if metric == "cosine" else -dots
    np.testing.assert_allclose(dists, want, rtol=1e-5, atol=1e-5)
    assert (np.diff(dists, axis=1) >= 0).all()


def test_exact_duplicates_keep_the_graph_connected(wordnet) -> None:
    """Three copies of every vector: RobustPrune must not let a duplicate occlude everything
    else (with alpha = 1 and a non-strict rule a node with a twin kept only the twin)."""
    x = np.concatenate([wordnet.train[:4000]] * 3)
    index = quiver.Index(384, "cosine")
    index.add(x)
    _, dists = index.search(wordnet.test[:300], k=10, ef=64)
    _, true_dists = exact_search(x, wordnet.test[:300], 10, "cosine")
    recall = recall_at_k(dists, true_dists, 10)
    print(f"duplicates x3: recall@10 {recall:.4f}, mean degree {index.stats()['mean_degree']:.1f}")
    assert recall >= RECALL_AT_EF64
    assert index.stats()["mean_degree"] > 10
