"""Reduced fault-injection run (bench/measure/fault_injection.py): I/O failures injected at random
points of upserts, deletes, checkpoints and consolidations; after each the directory, as a
crash would leave it, reopens with exactly the acknowledged writes."""

from __future__ import annotations

from pathlib import Path

from bench.measure.fault_injection import KINDS, run_rounds

MIN_INJECTED = 50


def test_injected_io_failures_never_lose_or_invent_acknowledged_writes(tmp_path: Path) -> None:
    summary = run_rounds(rounds=64, seed=7, work=tmp_path)  # asserts each round's reopen
    assert summary["injected"] >= MIN_INJECTED, summary
    assert set(summary["by_kind"]) == set(KINDS), summary
