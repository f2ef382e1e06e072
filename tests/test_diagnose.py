"""quiver.diagnose: statistics on constructed data, verdicts on known regimes, contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lowrank import low_rank_data

from quiver.engine import bq
from quiver.errors import InvalidInputError
from quiver.quality.diagnose import EF_GRID, Diagnosis, diagnose
from quiver.quality.evidence import code_distances

#: Small samples keep every diagnosis here around a second.
FAST = {"sample": 2000, "queries": 100}


def _reference_code_distances(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Plain-numpy asymmetric distance: dequantised 4-bit query against code weights."""
    dim = queries.shape[1]
    planes, params = bq.encode_queries(queries)
    u = np.zeros(queries.shape)
    for j in range(bq.QUERY_BITS):
        plane = bq.query_bit_plane(planes, j).astype("<u8")
        u += np.unpackbits(plane.view(np.uint8), axis=1, bitorder="little")[:, :dim] << j
    values = params[:, :1] + params[:, 1:2] * u
    v = bq.code_values(bq.encode(vectors), dim).astype(np.float64)
    weights = np.sign(v) * (1 + (bq.STRONG_WEIGHT - 1) * (np.abs(v) - 1))
    return -(values @ weights.T)


@pytest.mark.parametrize("dim", [3, 97, 384])
def test_code_distances_match_numpy_reference(dim: int) -> None:
    rng = np.random.default_rng(dim)
    q = rng.standard_normal((7, dim)).astype(np.float32)
    x = rng.standard_normal((50, dim)).astype(np.float32)
    got = code_distances(q, x)
    np.testing.assert_allclose(got, _reference_code_distances(q, x), rtol=1e-6, atol=1e-4)


def test_statistics_on_non_negative_data() -> None:
    x = np.abs(low_rank_data(3000, 64, seed=1)) + 0.01
    d = diagnose(x, "l2", navigation=False, **FAST)
    assert d.sign_entropy == 0.0
    assert d.low_entropy_fraction == 1.0
    assert d.mean_offset > 1.0  # far from the origin relative to the spread


def test_statistics_on_isotropic_and_low_rank_data() -> None:
    rng = np.random.default_rng(2)
    iso = diagnose(rng.standard_normal((4000, 64)), "l2", navigation=False, **FAST)
    assert iso.sign_entropy == pytest.approx(1.0, abs=0.01)
    assert iso.mean_offset < 0.05
    assert iso.effective_dim == pytest.approx(64, rel=0.1)
    shifted = rng.standard_normal((4000, 64)) + 3.0  # mean norm 24, spread 8
    assert diagnose(shifted, "l2", navigation=False, **FAST).mean_offset == pytest.approx(
        3.0, rel=0.05
    )
    low = diagnose(low_rank_data(4000, 64, rank=4, seed=3), "l2", navigation=False, **FAST)
    assert low.effective_dim <= 4.5


def test_non_negative_data_is_unsuitable_and_centering_is_the_remedy() -> None:
    x = np.abs(low_rank_data(5000, 64, rank=16, seed=4))
    d = diagnose(x, "l2", **FAST)
    assert d.verdict == "unsuitable"
    assert d.predicted_recall[64] < 0.6
    assert d.coding_recall["mean"][64] > d.code_recall[64] + 0.2
    assert any("off the origin" in c for c in d.causes)
    assert any("center" in r for r in d.remedies)
    assert d.warnings and "unsuitable" in d.warnings[0]


def test_isotropic_random_data_is_unsuitable_although_codes_rank_it_well() -> None:
    x = np.random.default_rng(5).standard_normal((10_000, 256)).astype(np.float32)
    d = diagnose(x, "cosine", **FAST)
    assert d.code_recall[64] > 0.8  # a brute-force code scan looks fine (the paper's trap)
    assert d.outlook_recall is not None and d.outlook_recall < 0.6
    assert d.verdict == "unsuitable"
    assert any("isotropic" in c for c in d.causes)


def test_minilm_slice_is_suitable(wordnet) -> None:
    d = diagnose(wordnet.train, "cosine", **FAST)
    assert d.verdict == "suitable"
    assert d.predicted_recall[64] > 0.95
    assert d.warnings == ()
    assert d.recommended_ef is not None and d.recommended_ef <= 64


def test_prediction_without_navigation_is_the_code_recall(wordnet) -> None:
    d = diagnose(wordnet.train[:5000], "cosine", navigation=False, **FAST)
    assert d.navigation == {}
    assert d.predicted_recall == d.code_recall
    assert d.paper_overlap is None and d.outlook_recall is None


def test_recall_is_monotone_in_ef_and_seeded() -> None:
    x = low_rank_data(1500, 16, seed=6)
    a = diagnose(x, "l2", seed=1, **FAST)
    b = diagnose(x, "l2", seed=1, **FAST)
    assert a.predicted_recall == b.predicted_recall
    values = [a.predicted_recall[ef] for ef in EF_GRID]
    assert values == sorted(values)
    assert all(0.0 <= v <= 1.0 for v in values)


def test_mean_centering_option_reports_centered_codes() -> None:
    x = np.abs(low_rank_data(3000, 64, seed=7))
    d = diagnose(x, "l2", centering="mean", navigation=False, **FAST)
    assert d.centering == "mean"
    assert set(d.coding_recall) == {"none", "mean", "mean-rotate"}
    assert d.code_recall == d.coding_recall["mean"]
    assert d.sign_entropy > 0.5  # signs of x - mean are informative
    assert len(d.center) == 64


def test_to_dict_is_json_and_summary_names_the_verdict() -> None:
    d = diagnose(low_rank_data(2000, 16, seed=8), "cosine", **FAST)
    assert isinstance(d, Diagnosis)
    row = json.loads(json.dumps(d.to_dict()))
    assert row["verdict"] == d.verdict
    assert set(row["predicted_recall"]) == {str(ef) for ef in EF_GRID}
    assert "center" not in row
    assert d.verdict.upper() in d.summary()


def test_accepts_float64_and_memmap(tmp_path) -> None:
    x = low_rank_data(1000, 24, seed=9).astype(np.float64)
    path = tmp_path / "x.npy"
    np.save(path, x)
    a = diagnose(x, "l2", navigation=False, **FAST)
    b = diagnose(np.load(path, mmap_mode="r"), "l2", navigation=False, **FAST)
    assert a.code_recall == b.code_recall


@pytest.mark.parametrize(
    ("vectors", "kwargs", "message"),
    [
        (np.zeros(100), {}, "2-D"),
        (np.zeros((10, 4)), {}, "at least 50 vectors, got 10"),
        (np.ones((100, 4)), {"centering": "median"}, "centering must be one of"),
        (np.ones((100, 4)), {"metric": "hamming"}, "unknown metric"),
        (np.ones((100, 4)), {"sample": 10}, "sample must be >= 250, got 10"),
    ],
)
def test_invalid_input(vectors: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        diagnose(vectors, **kwargs)


def test_non_finite_rows_are_rejected() -> None:
    x = np.random.default_rng(10).standard_normal((200, 8))
    x[150, 3] = np.nan
    with pytest.raises(InvalidInputError, match="finite"):
        diagnose(x, "l2", navigation=False, **FAST)


def test_auto_centering_picks_a_centred_coding_only_where_it_helps(wordnet) -> None:
    skewed = diagnose(np.abs(low_rank_data(3000, 64, seed=15)), "l2", centering="auto", **FAST)
    assert skewed.centering in ("mean", "mean-rotate")
    assert skewed.code_recall == skewed.coding_recall[skewed.centering]
    text = diagnose(wordnet.train[:5000], "cosine", centering="auto", navigation=False, **FAST)
    assert text.centering == "none"


@pytest.mark.parametrize("kind", ["non-negative", "shifted", "plain"])
def test_remedy_names_the_coding_auto_would_pick(kind: str) -> None:
    """Whenever a plain-code diagnosis is not ``suitable`` and ``centering="auto"`` would pick
    another coding, that coding is a remedy (one gain threshold for both; GloVe fell between
    two thresholds before)."""
    base = low_rank_data(4000, 48, rank=12, seed=7)
    x = {"non-negative": np.abs(base), "shifted": base + 1.2 * base.std(), "plain": base}[kind]
    plain = diagnose(x, "l2", centering="none", **FAST)
    auto = diagnose(x, "l2", centering="auto", **FAST)
    if kind == "non-negative":
        assert plain.verdict != "suitable" and auto.centering != "none"
    if plain.verdict != "suitable" and auto.centering != "none":
        assert any(f"centering={auto.centering!r}" in r for r in plain.remedies), plain.remedies
    else:
        assert not any("centering=" in r for r in plain.remedies), plain.remedies
