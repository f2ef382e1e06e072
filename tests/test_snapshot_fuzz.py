"""Reduced snapshot-loader fuzz (bench/measure/fuzz_snapshots.py): mutated snapshots whose checksums
were recomputed are rejected with a quiver error or load and answer reads; none crashes the
process restoring them, none leaves a collection behind."""

from __future__ import annotations

from pathlib import Path

from bench.measure.fuzz_snapshots import MUTATIONS, run_fuzz


def test_mutated_snapshots_are_rejected_cleanly_or_load(tmp_path: Path) -> None:
    summary = run_fuzz(mutations=6 * len(MUTATIONS) + 6, seed=1, work=tmp_path)
    assert summary["problems"] == []  # no unclear error, crash or hang
    assert summary["left_behind"] == 0
    assert summary["outcomes"].get("rejected", 0) > summary["mutations"] // 2
    assert set(summary["outcomes"]) <= {"rejected", "rejected_on_read", "loaded"}
