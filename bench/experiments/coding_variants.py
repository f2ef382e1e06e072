"""Which training-free code transform ranks neighbours best? Code recall of coding variants.

For each set: 200 train rows as queries (own row excluded), their exact top-10 among all train
rows, and the recall of "top-ef by the search's asymmetric code distance, then exact rerank"
(code ranks counted on a rank sample, as :func:`quiver.diagnose` does) for codes of:

- ``none``: ``x`` (quiver's original coding; per-vector threshold mean |x|);
- ``mean``: ``x - mean``;
- ``median``: ``x - per-dimension median``;
- ``mean+dim-median``: ``x - mean`` with a per-dimension magnitude threshold (the median of
  ``|x_i - mean_i|`` over the data) instead of the per-vector mean |x|;
- ``mean-rotate``: ``(x - mean) @ R``, ``R`` a seeded random orthogonal matrix.

    python -m bench.experiments.coding_variants [--sets NAME ...]

Writes ``bench/results/coding-variants.jsonl`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import numpy as np

from bench.harness.sets import load_dataset
from bench.paths import RESULTS_DIR
from quiver.engine import bq
from quiver.metrics import parse_metric
from quiver.quality.evidence import (
    _query_code_distances,
    exact_neighbors,
    prepare_rows,
    rank_counts,
)

SETS = (
    "sift-images-128-euclidean",
    "glove6b-50-angular",
    "lowrank-100k-384-angular",
    "minilm-wordnet-181k-384-angular",
)
OUT = RESULTS_DIR / "coding-variants.jsonl"
EFS = (16, 64, 128)
QUERIES = 200
RANK_SAMPLE = 20_000

Encoder = Callable[[np.ndarray], np.ndarray]


def _per_dim_codes(x: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Codes with a per-dimension magnitude threshold (same bit layout as ``bq.encode``)."""
    words = bq.words_per_plane(x.shape[1])
    out = np.empty((x.shape[0], 2 * words), dtype=np.uint64)
    out[:, :words] = bq._pack_plane(x > 0, words)
    out[:, words:] = bq._pack_plane(np.abs(x) > threshold, words)
    return out


def variants(sample: np.ndarray) -> dict[str, tuple[Encoder, Encoder]]:
    """name -> (query transform, code encoder), fitted on ``sample``."""
    mean = sample.mean(axis=0)
    median = np.median(sample, axis=0)
    dim_thr = np.median(np.abs(sample - mean), axis=0)
    rot = bq.random_rotation(sample.shape[1], 0)
    return {
        "none": (lambda q: q, bq.encode),
        "mean": (lambda q: q - mean, lambda x: bq.encode(x, center=mean)),
        "median": (lambda q: q - median, lambda x: bq.encode(x, center=median)),
        "mean+dim-median": (lambda q: q - mean, lambda x: _per_dim_codes(x - mean, dim_thr)),
        "mean-rotate": (
            lambda q: bq.transform(q, mean, rot),
            lambda x: bq.encode(x, center=mean, rotation=rot),
        ),
    }


def _distances(queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
    out = np.empty((queries.shape[0], codes.shape[0]), dtype=np.float64)
    _query_code_distances(np.ascontiguousarray(queries, dtype=np.float32), codes, out)
    return out


def measure(name: str, seed: int = 0) -> dict[str, object]:
    ds = load_dataset(name)
    metric = parse_metric("cosine" if ds.distance == "angular" else "l2")
    x = prepare_rows(np.array(ds.train, dtype=np.float32), metric)
    n = x.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    q_rows = np.sort(perm[:QUERIES])
    q = x[q_rows]
    truth = exact_neighbors(x, q, q_rows, metric)
    ranked = x[np.sort(perm[QUERIES : QUERIES + RANK_SAMPLE])]
    thresholds = {ef: ef * ranked.shape[0] / (n - QUERIES) for ef in EFS}
    row: dict[str, object] = {"set": name, "n": n, "dim": x.shape[1]}
    for label, (shift, encode) in variants(ranked).items():
        qv = shift(q)
        near = np.stack([_distances(qv[i : i + 1], encode(x[truth[i]]))[0] for i in range(len(q))])
        counts = rank_counts(_distances(qv, encode(ranked)), near, int(max(thresholds.values())))
        row[label] = {str(ef): round(float((counts < t).mean()), 4) for ef, t in thresholds.items()}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    args = parser.parse_args(argv)
    command = "python -m bench.experiments.coding_variants " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    rows = []
    for name in args.sets:
        row = measure(name)
        row["command"] = command.strip()
        print(json.dumps(row), flush=True)
        rows.append(row)
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = list(variants(np.zeros((2, 2), dtype=np.float32)))
    lines = [
        "# Code recall@10 of training-free coding variants (top-64 by code, exact rerank), %",
        "",
        f"Command: `{command.strip()}`",
        "",
        "| set | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for r in rows:
        cells = [f"{100 * r[lab]['64']:.1f}" for lab in labels]  # type: ignore[index]
        lines.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
