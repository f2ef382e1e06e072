"""Sign plane first: can the beam skip the second code plane of neighbours that cannot enter?

    python -m bench.experiments.sign_first_beam [SET] [INDEX_DIR] [--ef 28 48]
        [--margins 3 2.5 2] [--rounds 7] [--out FILE]

The beam is bound by the cache lines it loads per hop (bench/results/PERF.md, session 12):
each scored neighbour costs a 96-byte code row, two lines. Most neighbours scored while the
list is full do not enter it (80 % on the 181k set). This experiment times a copy of the
beam (one thread, ``time.thread_time``, the set's 1,000 queries, ``--rounds`` interleaved
rounds, minimum and median) on the saved default index (``bench.experiments.saved_index``)
in four forms:

* ``orig``: the codes as stored (96-byte rows), every neighbour's row prefetched and scored;
* ``padded``: the same walk on 128-byte rows (sign plane in the first line, the other plane
  in the second), both lines prefetched;
* ``sign<m>``: on the padded rows, a full list first loads only each neighbour's sign line
  and estimates its distance from the query's signs (a 1-bit x 1-bit estimate); a neighbour
  whose estimate, less ``m`` residual standard deviations, is still no better than the list's
  worst is skipped; the others' second lines are then loaded and scored exactly.

The estimate's linear fit (slope, intercept, residual spread) is made on the pairs the
unfiltered walk scores with a full list, over the first ``--fit-queries`` queries. Recall@10
is that of an exact rerank of each walk's final list. Only the graph mode (no filters, no
deletes). Prints (and with ``--out`` appends) one JSON line per ef.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's bench/ only

from bench.experiments.saved_index import saved_default_index  # noqa: E402
from bench.harness.sets import load_dataset  # noqa: E402
from quiver.engine.candidates import merge_candidates  # noqa: E402
from quiver.engine.kernels import (  # noqa: E402
    encode_query,
    popcount,
    prefetch,
    prefetch_row,
    query_code_distance,
)
from quiver.engine.search import query_signs  # noqa: E402

#: A padded row is 16 words (128 bytes): 2 words of padding and the sign plane in the first
#: cache line (words 2..7), the second plane in the second line (words 8..13). Seen from word
#: SHIFT it is a stored row (sign plane, then the second plane), so the engine's own distance
#: kernel scores it.
SHIFT = 2
SECOND_LINE = 8
RECORD = 5000  # pairs recorded per fitted query, at most


@njit(cache=False, inline="always")
def sign_estimate(signs, b, words):
    """``-sum_i sgn(x_i) sgn(v_i)`` up to constants: the sign plane alone."""
    acc = 0
    for w in range(words):
        acc += 2 * popcount(signs[w] & b[w]) - popcount(b[w])
    return -acc


@njit(cache=False)
def walk(codes, adjacency, degrees, words, shift, entry, planes, params, signs, ef, stamps, epoch,
         ids, dists, done, filtered, slope, intercept, margin, rec_s, rec_d):  # fmt: skip
    """One beam search (see the module doc); returns (list size, full distances, skipped,
    pairs recorded into ``rec_s``/``rec_d``)."""
    stamps[entry] = epoch
    count = 1
    ids[0] = entry
    dists[0] = query_code_distance(planes, params, codes[entry, shift:], words)
    done[0] = False
    fresh = np.empty(adjacency.shape[1], np.int32)
    kept = np.empty(adjacency.shape[1], np.int32)
    new_ids = np.empty(adjacency.shape[1], np.int32)
    new_dists = np.empty(adjacency.shape[1], np.float64)
    cur = 0
    n_full = 0
    n_skipped = 0
    n_rec = 0
    while cur < count:
        node = ids[cur]
        done[cur] = True
        n_fresh = 0
        for j in range(degrees[node]):
            nb = adjacency[node, j]
            if nb < 0:
                continue
            fresh[n_fresh] = nb
            n_fresh += stamps[nb] != epoch
            stamps[nb] = epoch
        full = count == ef
        n_kept = 0
        if filtered and full:
            for j in range(n_fresh):
                prefetch(codes, fresh[j], 0)  # the sign line only
            worst = dists[count - 1]
            for j in range(n_fresh):
                nb = fresh[j]
                estimate = sign_estimate(signs, codes[nb, shift:], words)
                if slope * estimate + intercept - margin >= worst:
                    n_skipped += 1
                else:
                    kept[n_kept] = nb
                    n_kept += 1
            for j in range(n_kept):
                prefetch(codes, kept[j], SECOND_LINE)  # then the second plane's line
        else:
            for j in range(n_fresh):
                prefetch_row(codes, fresh[j])
                kept[j] = fresh[j]
            n_kept = n_fresh
        n_new = 0
        for j in range(n_kept):
            nb = kept[j]
            d = query_code_distance(planes, params, codes[nb, shift:], words)
            if full and n_rec < rec_s.shape[0]:
                rec_s[n_rec] = sign_estimate(signs, codes[nb, shift:], words)
                rec_d[n_rec] = d
                n_rec += 1
            if not full or d < dists[count - 1]:
                new_ids[n_new] = nb
                new_dists[n_new] = d
                n_new += 1
        n_full += n_kept
        best_new = count
        if n_new > 0:
            count, best_new = merge_candidates(ids, dists, done, count, new_ids, new_dists, n_new)
        if best_new < cur:
            cur = best_new
        while cur < count and done[cur]:
            cur += 1
        if cur < count:
            prefetch_row(adjacency, ids[cur])
    return count, n_full, n_skipped, n_rec


@njit(cache=False)
def walk_all(codes, adjacency, degrees, words, shift, entry, planes, params, signs, ef, stamps,
             out, filtered, slope, intercept, margin):  # fmt: skip
    """Every query's walk; its final list into ``out``; returns (full distances, skipped)."""
    ids = np.empty(ef, np.int32)
    dists = np.empty(ef, np.float64)
    done = np.empty(ef, np.bool_)
    no_rec = np.empty(0, np.float64)
    total = 0
    skipped = 0
    for i in range(planes.shape[0]):
        epoch = np.uint8(i % 250 + 1)
        if epoch == 1:
            stamps[:] = 0
        count, n_full, n_skipped, _ = walk(
            codes, adjacency, degrees, words, shift, entry, planes[i], params[i], signs[i], ef,
            stamps, epoch, ids, dists, done, filtered, slope, intercept, margin, no_rec, no_rec,
        )  # fmt: skip
        out[i, :count] = ids[:count]
        out[i, count:] = -1
        total += n_full
        skipped += n_skipped
    return total, skipped


def recall_at_10(lists: np.ndarray, train: np.ndarray, queries: np.ndarray, truth: np.ndarray):
    """Recall@10 of an exact (cosine) rerank of each query's final list."""
    hits = 0
    for i, rows in enumerate(lists):
        rows = rows[rows >= 0]
        best = rows[np.argsort(-(train[rows] @ queries[i]))[:10]]
        hits += len(set(best.tolist()) & set(truth[i, :10].tolist()))
    return hits / (10 * len(queries))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("set", nargs="?", default="minilm-wordnet-181k-384-angular")
    p.add_argument("index_dir", nargs="?", type=Path)
    p.add_argument("--ef", type=int, nargs="+", default=[28, 48])
    p.add_argument("--margins", type=float, nargs="+", default=[3.0, 2.5, 2.0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--fit-queries", type=int, default=300)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    ds = load_dataset(args.set)
    index = saved_default_index(args.set, ds, args.index_dir)
    state = index.state()
    codes = np.ascontiguousarray(state.codes)
    words = codes.shape[1] // 2
    if words != SECOND_LINE - SHIFT:
        p.error(f"the padded layout is for planes of {SECOND_LINE - SHIFT} words, got {words}")
    padded = np.zeros((codes.shape[0], 2 * SECOND_LINE), np.uint64)
    padded[:, SHIFT : SHIFT + 2 * words] = codes
    train = np.asarray(ds.train, dtype=np.float32)
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    queries = np.ascontiguousarray(ds.test, dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.asarray(ds.neighbors)
    planes = np.empty((len(queries), 4 * words), np.uint64)
    params = np.empty((len(queries), 3))
    signs = np.empty((len(queries), words), np.uint64)
    for i, x in enumerate(queries):
        encode_query(x, planes[i], params[i])
        query_signs(x, signs[i])
    stamps = np.zeros(codes.shape[0], np.uint8)
    graph = (state.adjacency, state.degrees, words)
    for ef in args.ef:
        pairs_s, pairs_d = [], []
        lists = np.empty(ef, np.int32), np.empty(ef, np.float64), np.empty(ef, np.bool_)
        for i in range(min(args.fit_queries, len(queries))):
            rec_s, rec_d = np.empty(RECORD), np.empty(RECORD)
            n = walk(padded, *graph[:2], words, SHIFT, state.entry, planes[i], params[i], signs[i],
                     ef, stamps, np.uint8(i % 250 + 1), *lists, False, 0.0, 0.0, 0.0,
                     rec_s, rec_d)[3]  # fmt: skip
            if i % 250 == 249:
                stamps[:] = 0
            pairs_s.append(rec_s[:n])
            pairs_d.append(rec_d[:n])
        stamps[:] = 0
        s, d = np.concatenate(pairs_s), np.concatenate(pairs_d)
        slope, intercept = np.polyfit(s, d, 1)
        spread = float((d - slope * s - intercept).std())
        forms = {"orig": (codes, 0, 0.0, False), "padded": (padded, SHIFT, 0.0, False)}
        for m in args.margins:
            forms[f"sign{m:g}"] = (padded, SHIFT, m * spread, True)
        row: dict[str, object] = {
            "set": args.set, "ef": ef, "rounds": args.rounds,
            "fit": {"pairs": len(s), "slope": round(float(slope), 5),
                    "intercept": round(float(intercept), 4), "residual_std": round(spread, 4),
                    "corr": round(float(np.corrcoef(s, d)[0, 1]), 4)},
            "forms": {},
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in forms}
        for r in range(args.rounds + 1):  # round 0: results and compilation, untimed
            for name, (array, shift, margin, filtered) in forms.items():
                out = np.empty((len(queries), ef), np.int32)
                t0 = time.thread_time()
                total, skipped = walk_all(
                    array, *graph[:2], words, shift, state.entry, planes, params, signs, ef,
                    stamps, out, filtered, float(slope), float(intercept), margin,
                )  # fmt: skip
                if r == 0:
                    row["forms"][name] = {
                        "recall": round(recall_at_10(out, train, queries, truth), 4),
                        "full_distances_per_query": round(total / len(queries), 1),
                        "skipped_per_query": round(skipped / len(queries), 1),
                    }
                else:
                    times[name].append((time.thread_time() - t0) / len(queries) * 1e6)
        for name, t in times.items():
            row["forms"][name]["us_min"] = round(min(t), 1)
            row["forms"][name]["us_median"] = round(float(np.median(t)), 1)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
