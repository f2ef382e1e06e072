"""Where bench/ keeps its committed data and results, and the checkout that holds it.

Every sub-package takes these from here, so a script's location inside ``bench/`` never
decides where its data or its results go.
"""

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
#: The source checkout (child processes run here so that ``python -m bench...`` resolves).
REPO_ROOT = BENCH_DIR.parent
#: Committed data slices (``bench/data/``).
DATA_DIR = BENCH_DIR / "data"
#: Committed results, each written by the command recorded beside it (``bench/results/``).
RESULTS_DIR = BENCH_DIR / "results"
