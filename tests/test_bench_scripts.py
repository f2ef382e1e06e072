"""Smoke tests of the profiling and 1M-scale bench scripts on small seeded data."""

from __future__ import annotations

import numpy as np
import pytest

import quiver


def low_rank_data(n: int, dim: int, seed: int) -> np.ndarray:
    """Seeded rank-8 data plus small noise (structured enough for the 2-bit codes)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((8, dim))
    x = rng.standard_normal((n, 8)) @ basis + 0.1 * rng.standard_normal((n, dim))
    return x.astype(np.float32)


def test_sigma_gives_the_target_cosine():
    from bench.measure.million import sigma_for_cosine

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for target in (0.75, 0.92):
        noisy = x + sigma_for_cosine(target, 384) * rng.standard_normal(x.shape)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        assert np.mean(np.sum(x * noisy, axis=1)) == pytest.approx(target, abs=0.01)


def test_blocked_ground_truth_matches_one_exact_search(tmp_path, monkeypatch):
    import bench.measure.million as million

    monkeypatch.setattr(million, "BASE_BLOCK", 300)
    monkeypatch.setattr(million, "K_TRUTH", 10)
    data = low_rank_data(1020, 16, seed=1)
    train = data[:1000] / np.linalg.norm(data[:1000], axis=1, keepdims=True)
    queries = data[1000:]
    million._ground_truth(tmp_path, train, queries)
    assert len(list((tmp_path / "truth-blocks").glob("*.npz"))) == 4
    want_ids, want_dists = quiver.exact_search(train, queries, 10, "cosine")
    np.testing.assert_array_equal(np.load(tmp_path / "neighbors.npy"), want_ids)
    np.testing.assert_allclose(np.load(tmp_path / "distances.npy"), want_dists, atol=1e-6)
    # resumed from the cached blocks: same answer
    (tmp_path / "neighbors.npy").unlink()
    million._ground_truth(tmp_path, train, queries)
    np.testing.assert_array_equal(np.load(tmp_path / "neighbors.npy"), want_ids)


@pytest.mark.slow
@pytest.mark.parametrize("centering", ["none", "mean-rotate"])
def test_profile_passes_reproduce_the_search(centering):
    from bench.experiments.profile_split import Profile

    data = low_rank_data(3050, 48, seed=3)
    queries = data[3000:] / np.linalg.norm(data[3000:], axis=1, keepdims=True)
    index = quiver.Index(48, "cosine", num_threads=1, centering=centering)
    index.add(data[:3000])
    # the constructor raises unless the rows read from the visited stamps are as many as
    # beam_search's distance count
    profile = Profile(index, queries, ef=24)
    np.testing.assert_array_equal(profile.lengths, profile.ndist)
    for qi in range(len(queries)):  # every candidate the beam kept was one of the scored rows
        scored = profile.scored[qi, : profile.lengths[qi]]
        assert np.all(np.diff(scored) > 0)  # row order, no repeats
        assert np.isin(profile.cand[qi, : profile.counts[qi]], scored).all()
    profile.beam()
    profile.rerank(24)
    result = index.search(queries, k=10, ef=24, num_threads=1)
    np.testing.assert_array_equal(profile.out_ids, result.ids)
    stats = index.search_stats(queries, k=10, ef=24)
    assert profile.ndist.mean() == pytest.approx(stats["mean_distances"])


@pytest.mark.parametrize("mode", ["advised", "mapped"])
def test_ram_budget_child_measures_a_saved_index(tmp_path, monkeypatch, mode):
    import argparse

    import bench.measure.ram_budget as ram_budget

    data = low_rank_data(1530, 40, seed=3)
    train, queries = data[:1500], data[1500:]
    index = quiver.Index(40, "cosine", num_threads=1)
    index.add(train)
    index.save(tmp_path / "index")
    _, truth = quiver.exact_search(train, queries, k=10, metric="cosine")
    np.save(tmp_path / "test.npy", queries)
    np.save(tmp_path / "distances.npy", truth)
    paths = (tmp_path / "index", tmp_path / "test.npy", tmp_path / "distances.npy", tmp_path)
    monkeypatch.setattr(ram_budget, "_paths", lambda name: paths)
    args = argparse.Namespace(
        set="tiny",
        mode=mode,
        threads=1,
        repeats=2,
        single=5,
        ef=[(10, None), (60, 60)],
        cgroup=None,
        share=0.25,
    )
    rows = ram_budget.child(args)
    assert [(r["ef"], r["rerank"]) for r in rows] == [(10, 10), (60, 60)]
    assert all(r["reads_ahead"] == (mode == "advised") for r in rows)
    assert rows[1]["recall_at_10"] >= 0.95 and rows[1]["recall_at_10"] >= rows[0]["recall_at_10"]
    assert all(r["qps"] > 0 and r["single_p99_ms"] >= r["single_p50_ms"] > 0 for r in rows)


def _system(shards: int, recalls: dict[int, float], qps: dict[int, float], clients_qps: float):
    sweep = [{"ef": ef, "recall": recalls[ef], "batch_qps": qps[ef]} for ef in sorted(recalls)]
    return {
        "system": f"{shards} shards" if shards else "embedded",
        "shards": shards,
        "load_s": 1.0,
        "ef_sweep": sweep,
        "single_query": {"p50_ms": 1.0, "p99_ms": 2.0},
        "concurrent": {"clients": 16, "qps": clients_qps, "p50_ms": 1.0, "p99_ms": 2.0,
                       "failures": 0},
    }  # fmt: skip


def test_cluster_scaling_derives_the_ef_rule_and_the_acceptance_ratios():
    from bench.measure.cluster_scaling import acceptance, ef_rule, parse_args, summary

    embedded = _system(0, {48: 0.97, 64: 0.98}, {48: 1200.0, 64: 1000.0}, 800.0)
    two = _system(2, {48: 0.975, 64: 0.985}, {48: 900.0, 64: 750.0}, 300.0)
    four = _system(4, {48: 0.96, 64: 0.97}, {48: 700.0, 64: 600.0}, 200.0)
    systems = [embedded, two, four]
    rule = {r["shards"]: r for r in ef_rule(systems)}
    assert rule[2]["smallest_swept_ef"] == 64 and rule[2]["its_shard_ef"] == 54
    assert rule[2]["rule_shard_ef_at_default"] == 54  # ceil(64 / 2 ** 0.25)
    assert rule[4]["smallest_swept_ef"] is None  # never reaches the embedded recall at 64
    verdict = acceptance(systems)
    assert verdict["recall_met"] and verdict["batch_qps_ratio"] == 0.75 and verdict["batch_met"]
    assert verdict["concurrent_qps_ratio"] == 0.375 and not verdict["concurrent_met"]
    result = {
        "command": "c", "systems": systems, "ef_rule": ef_rule(systems), "acceptance": verdict,
        "data": {"dataset": "d", "train": 10, "dim": 4, "queries": 2},
        "machine": {"cpus": 2, "loadavg_1_5_15_start": [0, 0, 0]},
    }  # fmt: skip
    assert "16-client QPS ratio 0.375 (>= 0.5: NOT met)" in summary(result)
    with pytest.raises(SystemExit):
        parse_args(["--efs", "16,32"])  # the reference ef 64 must be swept
