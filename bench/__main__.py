"""Command line of the benchmark harness.

::

    python -m bench run minilm-wordnet-21k-384-angular --threads 2
    python -m bench run glove.hdf5 --algorithms quiver hnswlib-M32-efc128 --ef 20 40 80
    python -m bench report minilm-wordnet-21k-384-angular
    python -m bench list
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.harness.adapters import ALGORITHMS
from bench.harness.runner import DEFAULT_EFS, DEFAULT_OUT_DIR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "ANN benchmarks: quiver against hnswlib, FAISS (HNSW, HNSW-SQ8, IVF-RaBitQ), "
            "ScaNN, usearch and DiskANN; recall@k against QPS."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="measure algorithms on a data set (resumable)")
    run.add_argument("dataset", help="data set name (see `list`) or an ann-benchmarks .hdf5 path")
    run.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)),
        help="threads for every library (default: all cores this process may use)",
    )  # fmt: skip
    run.add_argument(
        "--algorithms", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS),
        metavar="NAME", help="default: all (see `list`)",
    )  # fmt: skip
    run.add_argument(
        "--ef", type=int, nargs="+", default=list(DEFAULT_EFS),
        help="ef sweep (algorithms with two query knobs, scann-* and faiss-ivf-*, sweep their "
        "own grid instead)",
    )  # fmt: skip
    run.add_argument("--k", type=int, default=10, help="neighbours per query (recall@k)")
    run.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    run.add_argument("--force", action="store_true", help="rerun complete result files")
    run.add_argument(
        "--single-queries", type=int, default=None,
        help="time single-query mode on the first N queries only (default: all)",
    )  # fmt: skip
    run.add_argument("--timeout", type=float, default=None, help="seconds per algorithm")

    report = sub.add_parser("report", help="Pareto plots and matched-recall tables")
    report.add_argument("datasets", nargs="+", help="data set names (result folders)")
    report.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    report.add_argument("--baseline", default="quiver", help="algorithm the ratios are of")

    sub.add_parser("list", help="known data sets and algorithms")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and dispatch."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.cmd == "run":
        from bench.harness.runner import run

        if args.threads < 1 or args.k < 1:
            raise SystemExit("--threads and --k must be >= 1")
        argv_used = sys.argv[1:] if argv is None else list(argv)
        failed = run(
            args.dataset,
            args.algorithms,
            args.threads,
            args.ef,
            args.k,
            args.out_dir,
            force=args.force,
            single_queries=args.single_queries,
            timeout=args.timeout,
            command=shlex.join(["python", "-m", "bench", *argv_used]),
        )
        if failed:
            print(f"failed: {' '.join(failed)}", file=sys.stderr)
            return 1
        print(f"results in {args.out_dir}")
    elif args.cmd == "report":
        from bench.harness.report import write_report

        for dataset in args.datasets:
            for path in write_report(args.out_dir / dataset, baseline=args.baseline):
                print(path)
    elif args.cmd == "list":
        from bench.harness.sets import dataset_names

        print("data sets:\n  " + "\n  ".join(dataset_names()))
        print("algorithms:\n  " + "\n  ".join(ALGORITHMS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
