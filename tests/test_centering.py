"""Data-adaptive codes (Index centering) and the build-time data check."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from lowrank import low_rank_data

from quiver import Index, InvalidInputError, exact_search, recall_at_k
from quiver.engine import bq


def _non_negative(n: int, seed: int) -> np.ndarray:
    """Skewed non-negative structured data, SIFT-like: all signs equal before centering."""
    return np.abs(low_rank_data(n, 64, rank=16, seed=seed)).astype(np.float32)


def _recall(index: Index, base: np.ndarray, queries: np.ndarray, ef: int) -> float:
    _, truth = exact_search(base, queries, 10, index.metric)
    return recall_at_k(index.search(queries, k=10, ef=ef).distances, truth, 10)


@pytest.fixture(scope="module")
def non_negative() -> tuple[np.ndarray, np.ndarray]:
    x = _non_negative(4200, seed=11)
    return x[:4000], x[4000:]


def test_centering_raises_recall_on_non_negative_data(non_negative) -> None:
    base, queries = non_negative
    recalls, used = {}, {}
    for mode in ("none", "auto"):
        index = Index(64, "l2", centering=mode, diagnostics=False)
        index.add(base)
        recalls[mode] = _recall(index, base, queries, ef=32)
        used[mode] = index.stats()["centering"]
    print(recalls, used)
    assert used["none"] == "none"
    assert used["auto"] in ("mean", "mean-rotate")  # auto centres this data...
    assert recalls["auto"] > recalls["none"] + 0.2  # ...and it pays


def test_rerank_distances_stay_exact_on_the_original_vectors(non_negative) -> None:
    base, queries = non_negative
    index = Index(64, "l2", centering="mean-rotate", diagnostics=False)
    index.add(base)
    ids, dists = index.search(queries, k=5, ef=64)
    want = ((queries[:, None, :] - base[ids]) ** 2).sum(axis=2)
    np.testing.assert_allclose(dists, want, rtol=1e-4, atol=1e-3)


def test_centering_persists(tmp_path, non_negative) -> None:
    base, queries = non_negative
    index = Index(64, "l2", centering="mean-rotate", diagnostics=False)
    index.add(base[:2000])
    index.save(tmp_path / "ix")
    opened = Index.open(tmp_path / "ix")
    assert opened.stats()["centering"] == "mean-rotate"
    np.testing.assert_array_equal(opened.search(queries, k=10).ids, index.search(queries, k=10).ids)
    opened.add(base[2000:])  # later batches use the stored center and rotation
    assert _recall(opened, base, queries, ef=32) > 0.8


def test_auto_keeps_plain_codes_on_minilm(wordnet) -> None:
    index = Index(384, "cosine", num_threads=1)
    index.add(wordnet.train[:5000])
    stats = index.stats()
    assert stats["centering"] == "none"
    assert stats["diagnosis"]["verdict"] == "suitable"


def test_auto_with_a_small_first_batch_uses_plain_codes() -> None:
    index = Index(16, "l2")
    index.add(np.abs(low_rank_data(100, 16, seed=12)))
    assert index.stats()["centering"] == "none"
    assert index.stats()["diagnosis"] is None


def test_build_warns_and_stats_carry_the_verdict(caplog) -> None:
    x = np.random.default_rng(13).standard_normal((3000, 256)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="quiver.index"):
        index = Index(256, "cosine", centering="none")
        index.add(x)
    diagnosis = index.stats()["diagnosis"]
    assert diagnosis["verdict"] == "unsuitable"
    assert diagnosis["causes"] and diagnosis["remedies"]
    assert any("unsuitable" in r.getMessage() for r in caplog.records)
    assert any("remedy" in r.getMessage() for r in caplog.records)


def test_transform_and_rotation() -> None:
    r = bq.random_rotation(40, seed=3)
    np.testing.assert_allclose(r @ r.T, np.eye(40), atol=1e-5)
    np.testing.assert_array_equal(r, bq.random_rotation(40, seed=3))
    x = np.random.default_rng(14).standard_normal((5, 40)).astype(np.float32)
    c = x.mean(axis=0)
    np.testing.assert_allclose(bq.transform(x, c, r), (x - c) @ r, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bq.encode(x, center=c, rotation=r), bq.encode((x - c) @ r))


def test_invalid_centering() -> None:
    with pytest.raises(InvalidInputError, match="centering must be one of"):
        Index(8, centering="median")
