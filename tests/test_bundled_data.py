"""The committed MiniLM-on-WordNet slice is well formed and its ground truth is exact."""

from __future__ import annotations

import numpy as np
import pytest

from bench.harness.bundled import load_wordnet_slice

N_TRAIN, N_TEST, DIM, K = 20_000, 1000, 384, 100


@pytest.fixture(scope="module")
def wn():
    return load_wordnet_slice()


def test_shapes_and_dtypes(wn):
    assert wn.train.shape == (N_TRAIN, DIM) and wn.train.dtype == np.float32
    assert wn.test.shape == (N_TEST, DIM) and wn.test.dtype == np.float32
    assert wn.neighbors.shape == (N_TEST, K) and wn.neighbors.dtype == np.int64
    assert wn.distances.shape == (N_TEST, K) and wn.distances.dtype == np.float32


def test_values_finite_and_unit_norm(wn):
    for x in (wn.train, wn.test, wn.distances):
        assert np.isfinite(x).all()
    for x in (wn.train, wn.test):
        assert np.abs(np.linalg.norm(x, axis=1) - 1.0).max() < 1e-2


def test_texts_match_vectors(wn):
    assert len(wn.train_texts) == N_TRAIN
    assert len(wn.test_texts) == N_TEST
    assert wn.metadata.num_rows == N_TRAIN + N_TEST
    assert {"split", "row", "text", "kind", "pos", "lexfile", "synset_offset"} <= set(
        wn.metadata.column_names
    )
    assert all(isinstance(t, str) and t for t in wn.train_texts[:100] + wn.test_texts)
    # held-out queries never appear among the train texts
    assert not set(wn.test_texts) & set(wn.train_texts)


def test_neighbors_valid_and_ascending(wn):
    assert wn.neighbors.min() >= 0 and wn.neighbors.max() < N_TRAIN
    assert (np.diff(wn.distances, axis=1) >= 0).all()
    for row in wn.neighbors[:50]:
        assert len(np.unique(row)) == K


def test_ground_truth_matches_numpy(wn):
    rng = np.random.default_rng(123)
    queries = rng.choice(N_TEST, size=20, replace=False)
    base = wn.train.astype(np.float64)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q = wn.test[queries].astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d = 1.0 - q @ base.T
    for j, qi in enumerate(queries):
        stored_ids, stored_d = wn.neighbors[qi], wn.distances[qi]
        np.testing.assert_allclose(stored_d, d[j, stored_ids], atol=1e-5)
        true_kth = np.sort(d[j])[K - 1]
        np.testing.assert_allclose(stored_d[-1], true_kth, atol=1e-5)
        # every stored neighbour is within the true top-k (ties may swap ids at the boundary)
        assert (d[j, stored_ids] <= true_kth + 1e-5).all()
        # and the ids agree outright wherever distances are not tied
        order = np.argsort(d[j], kind="stable")[:K]
        distinct = np.abs(np.sort(d[j])[:K] - true_kth) > 1e-5
        assert set(order[distinct]) <= set(stored_ids)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_hdf5_round_trip(tmp_path, metric):
    pytest.importorskip("h5py")
    from bench.harness.datasets import read_hdf5, write_hdf5

    rng = np.random.default_rng(0)
    train = rng.standard_normal((50, 8)).astype(np.float32)
    test = rng.standard_normal((5, 8)).astype(np.float32)
    neighbors = rng.integers(0, 50, size=(5, 10)).astype(np.int64)
    distances = np.sort(rng.random((5, 10)).astype(np.float32), axis=1)
    path = tmp_path / "tiny.hdf5"
    write_hdf5(path, train, test, neighbors, distances, metric)
    ds = read_hdf5(path)
    np.testing.assert_array_equal(ds.train, train)
    np.testing.assert_array_equal(ds.test, test)
    np.testing.assert_array_equal(ds.neighbors, neighbors)
    assert ds.neighbors.dtype == np.int64 and ds.train.dtype == np.float32
    assert ds.dimension == 8
    if metric == "cosine":
        assert ds.distance == "angular"
        np.testing.assert_allclose(ds.distances, distances)
    else:
        assert ds.distance == "euclidean"  # stored as plain L2, given as squared L2
        np.testing.assert_allclose(ds.distances, np.sqrt(distances), rtol=1e-6)


def test_hdf5_attrs(tmp_path):
    h5py = pytest.importorskip("h5py")
    from bench.harness.datasets import write_hdf5

    x = np.eye(4, dtype=np.float32)
    write_hdf5(
        tmp_path / "a.hdf5",
        x,
        x[:2],
        np.zeros((2, 1), np.int64),
        np.zeros((2, 1), np.float32),
        "cosine",
    )
    with h5py.File(tmp_path / "a.hdf5", "r") as f:
        assert f.attrs["type"] == "dense"
        assert f.attrs["point_type"] == "float"
        assert f.attrs["dimension"] == 4
        assert f["neighbors"].dtype == np.int64
        assert f["train"].dtype == np.float32
