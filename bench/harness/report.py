"""Pareto plots and matched-recall tables from the runner's JSON result files.

For each thread count found in ``bench/results/<dataset>/``: ``pareto-batch-t<N>.png`` (recall
on x, batch QPS on a log y axis, each algorithm's Pareto frontier), ``pareto-single-t<N>.png``
(the same for one query per call), and one ``summary.md`` with QPS at recall 0.90 / 0.95 / 0.99
interpolated on each frontier and the ratios of a baseline (quiver) to every other algorithm.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bench.harness.adapters.base import require

log = logging.getLogger(__name__)

TARGET_RECALLS = (0.90, 0.95, 0.99)
LOWER_BOUND_MARK = "†"
#: marks a system measured in another run than the baseline (see :func:`run_key`)
OTHER_RUN_MARK = "‡"
_RECALL_TICKS = (0.1, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999)


class Point(NamedTuple):
    """One operating point: recall and queries per second."""

    recall: float
    qps: float


# ----------------------------------------------------------------------------- frontier math


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[Point]:
    """Points no other point beats on both recall and QPS, by ascending recall.

    Along the result recall rises and QPS falls strictly; of equal points one is kept.
    """
    best_qps = -math.inf
    frontier = []
    for recall, qps in sorted(points, key=lambda p: (-p[0], -p[1])):
        if qps > best_qps:
            frontier.append(Point(float(recall), float(qps)))
            best_qps = qps
    return frontier[::-1]


def qps_at_recall(frontier: Sequence[Point], target: float) -> float | None:
    """QPS at ``target`` recall on a frontier (ascending recall), or None if out of reach.

    Between the two bracketing points, recall is linear in log QPS. A target below the
    frontier's lowest recall gets that point's QPS: measured, and a lower bound.
    """
    if not frontier or target > frontier[-1].recall:
        return None
    if target <= frontier[0].recall:
        return frontier[0].qps
    for lo, hi in zip(frontier, frontier[1:], strict=False):
        if lo.recall < target <= hi.recall:
            t = (target - lo.recall) / (hi.recall - lo.recall)
            return math.exp((1 - t) * math.log(lo.qps) + t * math.log(hi.qps))
    return frontier[-1].qps  # not reached: recalls ascend strictly and the target is in range


# ----------------------------------------------------------------------------- loading


def load_rows(result_dir: Path) -> list[dict[str, Any]]:
    """Rows of every complete result file in ``result_dir`` (incomplete ones are skipped)."""
    rows = []
    for path in sorted(Path(result_dir).glob("*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        if not payload.get("complete"):
            log.warning("%s is incomplete (interrupted run?): skipped", path)
            continue
        rows.extend(payload["rows"])
    return rows


def _by_algorithm(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["algorithm"]].append(row)
    return dict(groups)


def frontier_of(rows: Sequence[dict[str, Any]], mode: str) -> list[Point]:
    """Frontier of one algorithm's rows in ``mode`` ``"batch"`` or ``"single"``."""
    recall_key = "recall" if mode == "batch" else "recall_single"
    return pareto_frontier([(r[recall_key], r[f"{mode}_qps"]) for r in rows])


def setting_label(row: dict[str, Any]) -> str:
    """The query setting a row was measured at (``"ef=40"`` in files older than labels)."""
    return row.get("setting") or f"ef={row['ef']}"


# ----------------------------------------------------------------------------- plot


def _plot_recall(recall: float, n_results: int) -> float:
    """Recall mapped into the open interval the logit axis can show (1.0 at the right edge)."""
    half = 0.5 / max(n_results, 1)
    return min(max(recall, half), 1.0 - half)


def plot_pareto(
    rows: Sequence[dict[str, Any]], path: Path, mode: str = "batch", highlight: str = "quiver"
) -> Path:
    """Recall@k (x) against QPS (log y), one frontier line per algorithm; PNG at ``path``.

    The x axis is a logit scale so 0.9, 0.99 and 0.999 are evenly spaced; a recall of exactly
    1.0 is drawn at the right edge. Faint dots are measured points off the frontier; the
    ``highlight`` algorithm's frontier points are labelled with their ``ef``.
    """
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    require("matplotlib.ticker")

    first = rows[0]
    n_results = first["n_test"] * first["k"]
    recall_key = "recall" if mode == "batch" else "recall_single"
    groups = _by_algorithm(rows)
    names = sorted(groups, key=lambda a: (a != highlight, a))
    colors = plt.get_cmap("tab20").colors
    markers = "osD^vP*Xph<>"
    fig, ax = plt.subplots(figsize=(8.5, 5.8), dpi=120)
    for i, algorithm in enumerate(names):
        group = groups[algorithm]
        frontier = frontier_of(group, mode)
        xs = [_plot_recall(p.recall, n_results) for p in frontier]
        style: dict[str, Any] = {
            "color": colors[i % len(colors)],
            "marker": markers[i % len(markers)],
            "markersize": 4,
        }
        if algorithm == highlight:
            style.update(linewidth=2.6, zorder=4, color="black")
        elif len(frontier) == 1:
            style.update(marker="*", markersize=12, linestyle="none")
        ax.plot(xs, [p.qps for p in frontier], label=algorithm, **style)
        ax.scatter(
            [_plot_recall(r[recall_key], n_results) for r in group],
            [r[f"{mode}_qps"] for r in group],
            s=10, color=style["color"], alpha=0.3,
        )  # fmt: skip
        if algorithm == highlight:
            label_of = {(r[recall_key], r[f"{mode}_qps"]): setting_label(r) for r in group}
            for x, p in zip(xs, frontier, strict=True):
                ax.annotate(
                    label_of[(p.recall, p.qps)], (x, p.qps), textcoords="offset points",
                    xytext=(4, 4), fontsize=7,
                )  # fmt: skip
    ax.set_xscale("logit")
    lo, hi = ax.get_xlim()
    ticks = [t for t in _RECALL_TICKS if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yscale("log")
    ax.set_xlabel(f"recall@{first['k']} (logit scale; 1.0 drawn at the right edge)")
    label = "batch (all queries in one call)" if mode == "batch" else "one query per call"
    ax.set_ylabel(f"queries per second, {label}")
    ax.set_title(
        f"{first['dataset']}: {first['n_train']:,} x {first['dim']}, {first['distance']}, "
        f"{first['threads']} thread(s), {first['cpu']}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- tables


def _fmt_qps(frontier: Sequence[Point], target: float) -> str:
    qps = qps_at_recall(frontier, target)
    if qps is None:
        return "n/a"
    mark = LOWER_BOUND_MARK if target < frontier[0].recall else ""
    return f"{qps:,.0f}{mark}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "n/a"
    return f"{a / b:.2f}x"


def _mb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:,.1f}"


def run_key(row: dict[str, Any]) -> tuple[str, str]:
    """Which ``python -m bench run`` invocation measured ``row``: the command it ran and the
    UTC day it started (rows carry no run id). Timings only compare within one run: absolute
    QPS on a shared machine moves by up to 2.5x between days."""
    return row.get("command") or "", (row.get("started") or "")[:10]


def _started(group: Sequence[dict[str, Any]]) -> str:
    started = group[0].get("started")
    return started[:16].replace("T", " ") if started else "n/a"


def summary_markdown(rows: Sequence[dict[str, Any]], baseline: str = "quiver") -> str:
    """Markdown for one thread count: QPS at matched recall, then baseline/other ratios.

    Rows measured in another run than the baseline's are marked and left out of the
    "best other" row: a ratio to a system timed on another day says little."""
    groups = _by_algorithm(rows)
    first = rows[0]
    base_run = run_key(groups[baseline][0]) if baseline in groups else None
    other_run = {a: base_run is not None and run_key(g[0]) != base_run for a, g in groups.items()}
    dashes = "|---" * (2 * len(TARGET_RECALLS) + 7) + "|"
    lines = [
        f"### {first['threads']} thread(s)",
        "",
        f"Queries per second at matched recall@{first['k']}, build time and memory:",
        "",
        f"| algorithm | batch {' | batch '.join(f'{t:.2f}' for t in TARGET_RECALLS)} "
        f"| single {' | single '.join(f'{t:.2f}' for t in TARGET_RECALLS)} "
        "| max recall | build s | index MB (RSS growth) | build peak MB | structure MB "
        "| started (UTC) |",
        dashes,
    ]
    for algorithm in sorted(groups, key=lambda a: (a != baseline, a)):
        group = groups[algorithm]
        batch, single = frontier_of(group, "batch"), frontier_of(group, "single")
        row = group[0]
        mark = OTHER_RUN_MARK if other_run[algorithm] else ""
        lines.append(
            f"| {algorithm}{mark} | "
            + " | ".join(_fmt_qps(batch, t) for t in TARGET_RECALLS)
            + " | "
            + " | ".join(_fmt_qps(single, t) for t in TARGET_RECALLS)
            + f" | {max(r['recall'] for r in group):.4f} | {row['build_s']:.2f}"
            + f" | {_mb(row['index_bytes'])} | {_mb(row.get('peak_fit_bytes'))}"
            + f" | {_mb(row.get('memory_bytes'))} | {_started(group)} |"
        )
    if any(other_run.values()):
        lines += [
            "",
            f"{OTHER_RUN_MARK} measured in another run than {baseline}'s (its own command or "
            "day): shown for reference, left out of the best-other row below.",
        ]
    if baseline in groups:
        same_run = {a: g for a, g in groups.items() if not other_run[a]}
        lines += _ratio_table(groups, baseline, same_run)
        b = groups[baseline][0]
        if b.get("hot_bytes") is not None:
            lines += [
                "",
                f"{baseline}: hot set (codes + graph, what must stay in RAM) "
                f"{_mb(b['hot_bytes'])} MB; saved index on disk {_mb(b.get('disk_bytes'))} MB; "
                f"JIT warm-up {b['jit_s']:.1f} s (excluded from every timing).",
            ]
    return "\n".join(lines) + "\n"


def _ratio_table(
    groups: dict[str, list[dict[str, Any]]],
    baseline: str,
    same_run: dict[str, list[dict[str, Any]]],
) -> list[str]:
    base = groups[baseline]
    base_b, base_s = frontier_of(base, "batch"), frontier_of(base, "single")
    cols = [f"batch {t:.2f}" for t in TARGET_RECALLS] + [f"single {t:.2f}" for t in TARGET_RECALLS]
    lines = [
        "",
        f"{baseline} / other (QPS: above 1 = {baseline} faster; build time and memory: "
        f"below 1 = {baseline} smaller):",
        "",
        f"| vs | {' | '.join(cols)} | build time | index memory (RSS) |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for algorithm, group in sorted(groups.items()):
        if algorithm == baseline:
            continue
        other_b, other_s = frontier_of(group, "batch"), frontier_of(group, "single")
        cells = [
            _ratio(qps_at_recall(base_b, t), qps_at_recall(other_b, t)) for t in TARGET_RECALLS
        ] + [_ratio(qps_at_recall(base_s, t), qps_at_recall(other_s, t)) for t in TARGET_RECALLS]
        cells.append(_ratio(base[0]["build_s"], group[0]["build_s"]))
        cells.append(_ratio(base[0]["index_bytes"], group[0]["index_bytes"]))
        lines.append(f"| {algorithm} | {' | '.join(cells)} |")
    others = {a: g for a, g in same_run.items() if a != baseline}
    if others:
        best = [_best_cell(base_b, others, "batch", t) for t in TARGET_RECALLS]
        best += [_best_cell(base_s, others, "single", t) for t in TARGET_RECALLS]
        lines.append(f"| **best other** (same run) | {' | '.join(best)} | | |")
    return lines


def best_other(
    others: dict[str, list[dict[str, Any]]], mode: str, target: float
) -> tuple[str, float] | None:
    """The algorithm with the highest QPS at ``target`` recall in ``mode``, and that QPS."""
    reached = [
        (qps, algorithm)
        for algorithm, group in others.items()
        if (qps := qps_at_recall(frontier_of(group, mode), target)) is not None
    ]
    if not reached:
        return None
    qps, algorithm = max(reached)
    return algorithm, qps


def _best_cell(
    base: Sequence[Point], others: dict[str, list[dict[str, Any]]], mode: str, target: float
) -> str:
    best = best_other(others, mode, target)
    if best is None:
        return "n/a"
    return f"{_ratio(qps_at_recall(base, target), best[1])} ({best[0]})"


def _preamble(rows: Sequence[dict[str, Any]]) -> str:
    first = rows[0]
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items() if v)
    commands = sorted({r["command"] for r in rows if r.get("command")})
    return "\n".join(
        [
            f"# {first['dataset']}",
            "",
            f"{first['n_train']:,} vectors x {first['dim']}, {first['n_test']:,} queries, "
            f"{first['distance']}, k={first['k']}. CPU: {first['cpu']} "
            f"({first['cpu_count']} logical cores). {versions}. "
            f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d} by `python -m bench report`.",
            "",
            "Commands: " + "; ".join(f"`{c}`" for c in commands),
            "",
            "QPS is interpolated on each algorithm's Pareto frontier (recall linear in log QPS "
            "between the two bracketing measured points); n/a = the frontier never reaches "
            f"that recall; {LOWER_BOUND_MARK} = the frontier starts above it (QPS of its "
            "lowest-recall point, a lower bound). Batch = all queries in one call (median of 3); "
            "single = one call per query, on one thread. Index memory = growth of the process's "
            "resident set across the build (data loaded before; freed heap returned to the OS "
            "before both readings); build peak = highest RSS during the build above the start, "
            "temporaries included; structure = the size the library reports (serialised index "
            "or saved files; quiver: hot set + float vectors; DiskANN's disk index: the PQ "
            "codes it keeps in RAM, its file on disk apart). Best other = the fastest of the "
            "other algorithms at that recall, named, among those measured in the same run as "
            "quiver. Algorithms with two query knobs sweep their own grid of settings (each row "
            "records its setting and query arguments).",
            "",
        ]
    )


def write_report(result_dir: Path, baseline: str = "quiver") -> list[Path]:
    """Write plots for each thread count and ``summary.md`` into ``result_dir``."""
    rows = load_rows(result_dir)
    if not rows:
        raise FileNotFoundError(f"no complete result files in {result_dir}")
    by_threads: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_threads[row["threads"]].append(row)
    written = []
    sections = [_preamble(rows)]
    for threads, group in sorted(by_threads.items()):
        for mode in ("batch", "single"):
            written.append(
                plot_pareto(group, Path(result_dir) / f"pareto-{mode}-t{threads}.png", mode)
            )
        sections.append(summary_markdown(group, baseline))
    summary = Path(result_dir) / "summary.md"
    summary.write_text("\n".join(sections), encoding="utf-8")
    written.append(summary)
    return written
