"""Target-recall search: ef chosen from a stored calibration."""

from __future__ import annotations

import numpy as np
import pytest

from quiver import Index, InvalidInputError, recall_at_k
from quiver.quality.calibration import Calibration


@pytest.fixture(scope="module")
def slice_index(wordnet) -> Index:
    index = Index(384, "cosine", num_threads=2)
    index.add(wordnet.train)
    return index


@pytest.mark.parametrize("target", [0.9, 0.95, 0.99])
def test_target_recall_is_reached_on_held_out_queries(slice_index, wordnet, target) -> None:
    result = slice_index.search(wordnet.test, k=10, target_recall=target)
    got = recall_at_k(result.distances, wordnet.distances, 10)
    ef = slice_index.ef_for_recall(target)
    print(f"target {target}: ef={ef}, held-out recall@10 {got:.4f}")
    assert got >= target - 0.02
    # the chosen ef is the smallest calibrated one: one step smaller falls short
    cal = Calibration.from_dict(slice_index.stats()["calibration"])
    assert cal.efs[0] == ef or cal.recalls[cal.efs.index(ef) - 1] < target


def test_calibration_is_saved_and_reused(tmp_path, slice_index) -> None:
    slice_index.ef_for_recall(0.9)  # calibrates on first use only
    cal = Calibration.from_dict(slice_index.stats()["calibration"])
    assert cal.count == len(slice_index) and cal.k == 10
    assert list(cal.recalls) == sorted(cal.recalls)
    slice_index.save(tmp_path / "ix")
    opened = Index.open(tmp_path / "ix")
    assert opened.stats()["calibration"] == cal.to_dict()
    assert opened.ef_for_recall(0.95) == cal.ef_for(0.95)


def test_calibration_refreshes_after_the_index_doubles(wordnet) -> None:
    index = Index(384, "cosine", num_threads=2, diagnostics=False)
    index.add(wordnet.train[:2000])
    first = index.calibrate(queries=50)
    index.ef_for_recall(0.9)
    assert index.stats()["calibration"]["count"] == 2000  # fresh: not recalibrated
    index.add(wordnet.train[2000:4500])
    index.ef_for_recall(0.9)  # served by the stale calibration, replaced in the background
    index.wait_for_calibration()
    assert index.stats()["calibration"]["count"] == 4500
    assert first.stale(4500, 2500)


def test_calibration_stale_rule() -> None:
    cal = Calibration(10, (10, 20), (0.9, 0.99), 1000, 100, 0.1)
    assert not cal.stale(1500, 500)
    assert cal.stale(2001, 1001)
    assert cal.stale(499, 501)
    assert cal.stale(1000, 1200)  # replaced more than the calibrated size
    assert cal.ef_for(0.95) == 20 and cal.ef_for(0.999) == 20 and cal.ef_for(0.5) == 10
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_target_recall_arguments(slice_index, wordnet) -> None:
    with pytest.raises(InvalidInputError, match="not both"):
        slice_index.search(wordnet.test[:2], ef=32, target_recall=0.9)
    for bad in (0.0, 1.5, "high"):
        with pytest.raises(InvalidInputError, match="target_recall"):
            slice_index.search(wordnet.test[:2], target_recall=bad)
    ids = slice_index.search(wordnet.test[:2], k=5, target_recall=0.9).ids
    assert ids.shape == (2, 5) and (ids >= 0).all()
    assert np.unique(ids[0]).shape == (5,)
