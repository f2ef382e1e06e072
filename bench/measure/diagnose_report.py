"""Does :func:`quiver.diagnose` predict quiver's recall, and what does data-adaptive coding buy?

For each benchmark set and each coding option (``--centering``, e.g. ``none`` = plain codes as
before data-adaptive coding, ``auto`` = the new default): the diagnostic on the train vectors
(timed) predicts recall@10 at ef 64 and 128; an :class:`quiver.Index` built with its defaults
and that option (through the harness's quiver adapter) on the same vectors, searched with the
held-out test queries, gives the measured recall@10 (``bench.harness.runner.score``: distances
recomputed, ann-benchmarks tie rule) and batch QPS. The options' indexes are built one after
the other and timed in alternation (median of 5), so that QPS compares like with like on a
shared machine. Each index is also searched with ``target_recall`` 0.90 and 0.95 (ef picked
from its calibration). A final row times the diagnostic on a synthetic 1M x 384 array.

    python -m bench.measure.diagnose_report [--sets NAME ...] [--centering none auto] [--threads 2]

Writes ``bench/results/diagnose.jsonl`` (one row per set and option, appended as they finish)
and ``bench/results/diagnose.md`` (the tables, with the command that made them).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.paths import RESULTS_DIR

SETS = (
    "minilm-wordnet-50k-384-angular",
    "minilm-wordnet-100k-384-angular",
    "minilm-wordnet-181k-384-angular",
    "minilm-text-562k-384-angular",
    "glove6b-50-angular",
    "lowrank-100k-384-angular",
    "sift-images-128-euclidean",
    "random-sphere-100k-384-angular",
)
EFS = (64, 128)
TARGETS = (0.9, 0.95)
QPS_REPEATS = 5
OUT_DIR = RESULTS_DIR
SYNTHETIC_ROWS = 1_000_000
SYNTHETIC_DIM = 384

log = logging.getLogger(__name__)


def _metric(distance: str) -> str:
    return "cosine" if distance == "angular" else "l2"


def _diagnosis_fields(d: Any) -> dict[str, Any]:
    return {
        "diagnose_s": round(d.seconds, 2),
        "coding": d.centering,
        "verdict": d.verdict,
        **{f"predicted_ef{ef}": round(d.predicted_recall[ef], 4) for ef in EFS},
        **{f"code_ef{ef}": round(d.code_recall[ef], 4) for ef in EFS},
        "navigation_ef64": round(d.navigation[64], 4),
        "outlook_ef64": round(d.outlook_recall or 0.0, 4),
        "paper_overlap": round(d.paper_overlap or 0.0, 4),
        "sign_entropy": round(d.sign_entropy, 4),
        "mean_offset": round(d.mean_offset, 4),
        "effective_dim": round(d.effective_dim, 1),
        "coding_code_ef64": {m: round(v[64], 4) for m, v in d.coding_recall.items()},
        "causes": list(d.causes),
        "remedies": list(d.remedies),
    }


def measure_set(name: str, modes: list[str], threads: int) -> list[dict[str, Any]]:
    """Diagnose one set's train vectors and build, search and time one index per option."""
    from bench.harness.adapters.quiver import QuiverAdapter
    from bench.harness.runner import score
    from bench.harness.sets import load_dataset
    from quiver.quality import diagnose

    ds = load_dataset(name)
    metric = _metric(ds.distance)
    rows: dict[str, dict[str, Any]] = {}
    adapters = {}
    for mode in modes:
        d = diagnose(ds.train, metric, centering=mode, index_options={"num_threads": threads})
        row: dict[str, Any] = {
            "set": name,
            "n": int(ds.train.shape[0]),
            "dim": int(ds.train.shape[1]),
            "metric": metric,
            "centering": mode,
            "threads": threads,
            **_diagnosis_fields(d),
        }
        adapter = QuiverAdapter(ds.distance, threads, centering=mode)
        t0 = time.perf_counter()
        adapter.fit(ds.train)
        row["build_s"] = round(time.perf_counter() - t0, 1)
        index = adapter.index
        row["index_coding"] = index.stats()["centering"]
        row["index_verdict"] = (index.stats()["diagnosis"] or {}).get("verdict")
        rows[mode], adapters[mode] = row, adapter
    for ef in EFS:
        seconds: dict[str, list[float]] = {mode: [] for mode in modes}
        for mode in modes:
            adapters[mode].set_query_arguments(ef)
            ids = adapters[mode].batch_query(ds.test, 10)  # warm-up, and the recall
            rows[mode][f"measured_ef{ef}"] = round(score(ds, ds.test, ids, 10), 4)
        for _ in range(QPS_REPEATS):  # alternate the options: same machine state for both
            for mode in modes:
                t0 = time.perf_counter()
                adapters[mode].batch_query(ds.test, 10)
                seconds[mode].append(time.perf_counter() - t0)
        for mode in modes:
            rows[mode][f"qps_ef{ef}"] = round(len(ds.test) / float(np.median(seconds[mode])))
    for mode in modes:
        index = adapters[mode].index
        for target in TARGETS:
            ids = index.search(ds.test, k=10, target_recall=target).ids
            key = f"target{round(100 * target)}"
            rows[mode][f"{key}_ef"] = index.ef_for_recall(target)
            rows[mode][f"{key}_measured"] = round(score(ds, ds.test, ids, 10), 4)
        rows[mode]["calibration_s"] = round(index.stats()["calibration"]["seconds"], 2)
    return [rows[mode] for mode in modes]


def time_diagnose(name: str, x: np.ndarray, metric: str, threads: int) -> dict[str, Any]:
    """Wall and CPU seconds of one :func:`quiver.diagnose` call on ``x`` (after warm-up)."""
    from quiver.quality import diagnose

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    d = diagnose(x, metric, index_options={"num_threads": threads})
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "set": name,
        "n": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "metric": metric,
        "threads": threads,
        "diagnose_s": round(wall, 2),
        "diagnose_cpu_s": round(cpu, 2),
        "verdict": d.verdict,
        "predicted_ef64": round(d.predicted_recall[64], 4),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def synthetic(seed: int = 0) -> np.ndarray:
    """The seeded Gaussian 1M x 384 array the diagnostic is timed on."""
    return np.random.default_rng(seed).standard_normal(
        (SYNTHETIC_ROWS, SYNTHETIC_DIM), dtype=np.float32
    )


SYNTHETIC_NAME = f"synthetic-gaussian-{SYNTHETIC_ROWS // 1000}k-{SYNTHETIC_DIM}"


def timing_rows(threads: int, repeats: int) -> list[dict[str, Any]]:
    """The diagnostic timed ``repeats`` times on the synthetic 1M array and the 562k set."""
    from bench.harness.sets import load_dataset

    rows = []
    x = synthetic()
    rows += [time_diagnose(SYNTHETIC_NAME, x, "cosine", threads) for _ in range(repeats)]
    del x
    text = load_dataset("minilm-text-562k-384-angular").train
    name = "minilm-text-562k-384-angular"
    rows += [time_diagnose(name, text, "cosine", threads) for _ in range(repeats)]
    return rows


def _timing_markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# `quiver.diagnose` wall time (default settings)",
        "",
        f"Command: `{command}`",
        "",
        "| data | n x dim | threads | wall s | CPU s | 1-min load average (2 cores) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['n']:,} x {r['dim']} | {r['threads']} | {r['diagnose_s']:.2f} | "
            f"{r['diagnose_cpu_s']:.2f} | {r['load_average_1min']} |"
        )
    return "\n".join(lines) + "\n"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    """The predicted-vs-measured tables (recall@10 in %) and the timing rows."""
    sets = [r for r in rows if "measured_ef64" in r]
    modes = list(dict.fromkeys(r["centering"] for r in sets))
    lines = [
        "# Will quiver work on my data? `quiver.diagnose` predicted vs measured recall@10",
        "",
        f"Command: `{command}`",
        "",
        "Predicted: `quiver.diagnose(train, metric, centering=...)` with its defaults "
        "(10k-row navigation sample, at most 200 query rows). Measured: `quiver.Index` with "
        "its defaults and the same `centering` built on the train vectors, searched with the "
        "set's 1000 held-out queries (k=10). Recall@10 in %; error = predicted - measured at "
        "ef=64. QPS: batch of 1000 queries, median of 5, the options timed in alternation.",
        "",
    ]
    for mode in modes:
        lines += [
            f"### centering = {mode}",
            "",
            "| set | n x dim | coding | verdict | predicted ef=64 | measured ef=64 | error | "
            "predicted ef=128 | measured ef=128 | code ef=64 | navigation ef=64 | "
            "QPS ef=64 | build s | diagnose s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in sets if r["centering"] == mode):
            err = 100 * (r["predicted_ef64"] - r["measured_ef64"])
            lines.append(
                f"| {r['set']} | {r['n']:,} x {r['dim']} | {r['index_coding']} | "
                f"{r['verdict']} | {_pct(r['predicted_ef64'])} | {_pct(r['measured_ef64'])} | "
                f"{err:+.1f} | {_pct(r['predicted_ef128'])} | {_pct(r['measured_ef128'])} | "
                f"{_pct(r['code_ef64'])} | {_pct(r['navigation_ef64'])} | "
                f"{r['qps_ef64']:,} | {r['build_s']:.1f} | {r['diagnose_s']:.1f} |"
            )
        lines.append("")
    if len(modes) > 1:
        lines += _comparison_table(sets, modes)
    lines += _target_table(sets)
    timing = [r for r in rows if "measured_ef64" not in r]
    if timing:
        lines += ["### Diagnostic time on synthetic data", ""]
        for r in timing:
            lines.append(
                f"- {r['set']} ({r['n']:,} x {r['dim']}, {r['threads']} threads): "
                f"{r['diagnose_s']:.1f} s wall, {r['diagnose_cpu_s']:.1f} s CPU (1-minute load "
                f"average {r['load_average_1min']} on the 2-core machine when it finished)"
            )
        lines.append("")
    first = [r for r in sets if r["causes"] and r["centering"] == modes[0]]
    if first:
        lines += [f"### What the diagnostic says (centering = {modes[0]})", ""]
        for r in first:
            lines.append(f"- **{r['set']}** ({r['verdict']}): " + "; ".join(r["causes"]))
            lines += [f"  - remedy: {x}" for x in r["remedies"]]
        lines.append("")
    return "\n".join(lines)


def _comparison_table(sets: list[dict[str, Any]], modes: list[str]) -> list[str]:
    by = {(r["set"], r["centering"]): r for r in sets}
    names = list(dict.fromkeys(r["set"] for r in sets))
    head = " | ".join(
        f"{m}: coding | {m}: recall ef=64 | {m}: recall ef=128 | {m}: QPS ef=64" for m in modes
    )
    lines = [
        "### Data-adaptive coding: measured recall@10 (%) and QPS per option",
        "",
        f"| set | {head} |",
        "|---|" + "---|---|---|---|" * len(modes),
    ]
    for name in names:
        cells = []
        for m in modes:
            r = by.get((name, m))
            cells.append(
                "| | |"
                if r is None
                else f"{r['index_coding']} | {_pct(r['measured_ef64'])} | "
                f"{_pct(r['measured_ef128'])} | {r['qps_ef64']:,}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _target_table(sets: list[dict[str, Any]]) -> list[str]:
    lines = [
        "### Target-recall search: ef from the index's calibration, recall@10 on held-out "
        "queries (%)",
        "",
        "| set | centering | target 90: ef | measured | target 95: ef | measured | calibration s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sets:
        lines.append(
            f"| {r['set']} | {r['centering']} ({r['index_coding']}) | {r['target90_ef']} | "
            f"{_pct(r['target90_measured'])} | {r['target95_ef']} | "
            f"{_pct(r['target95_measured'])} | {r['calibration_s']:.1f} |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--centering", nargs="+", default=["none", "auto"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-synthetic", action="store_true", help="skip the 1M timing row")
    parser.add_argument(
        "--timing-only",
        type=int,
        metavar="REPEATS",
        help="only time the diagnostic (1M synthetic and the 562k set, REPEATS times each) "
        "into diagnose-timing.jsonl / .md",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR / "diagnose.jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("quiver.index").setLevel(logging.WARNING)
    import numba

    import quiver

    numba.set_num_threads(args.threads)
    quiver.warmup()
    command = "python -m bench.measure.diagnose_report " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.timing_only:
        out = args.out.with_name("diagnose-timing.jsonl")
        timed = timing_rows(args.threads, args.timing_only)
        for row in timed:
            row["command"] = command.strip()
            print(json.dumps(row), flush=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in timed))
        out.with_suffix(".md").write_text(_timing_markdown(timed, command.strip()))
        return 0
    args.out.write_text("")
    rows = []

    def emit(row: dict[str, Any]) -> None:
        row["command"] = command.strip()
        rows.append(row)
        print(json.dumps(row), flush=True)
        with args.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    for name in args.sets:
        for row in measure_set(name, args.centering, args.threads):
            emit(row)
        gc.collect()
    if not args.no_synthetic:
        emit(time_diagnose(SYNTHETIC_NAME, synthetic(), "cosine", args.threads))
    args.out.with_suffix(".md").write_text(markdown(rows, command.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
