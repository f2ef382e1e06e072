"""Filtered search at selectivities 50 % to 0.1 %: recall against exact filtered search, QPS.

MiniLM-WordNet-181k through the database API, with two kinds of payload: WordNet's own
metadata of each gloss (part of speech, lexicographer file), which is correlated with the
vectors, and a seeded random integer in [0, 1000) for range filters, which is not. For every
filter: its selectivity, recall@10 against exact search over the matching points, batch QPS
(1,000 queries in one call), and the ratio to unfiltered QPS measured just before it (same load);
also the median latency of single-query calls with and without the filter.

    python -m bench.measure.filtered_search            # writes bench/results/filtered-search.json
    python -m bench.measure.filtered_search --set minilm-wordnet-21k-384-angular --out F
                                                       # the bundled slice: no generated data
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FILTERS = {
    # name: (filter, kind)
    "pos = noun": ({"must": [{"key": "pos", "match": {"value": "noun"}}]}, "correlated"),
    "r < 500": ({"must": [{"key": "r", "range": {"lt": 500}}]}, "random"),
    "pos = verb": ({"must": [{"key": "pos", "match": {"value": "verb"}}]}, "correlated"),
    "lexfile = noun.artifact": (
        {"must": [{"key": "lexfile", "match": {"value": "noun.artifact"}}]},
        "correlated",
    ),
    "r < 100": ({"must": [{"key": "r", "range": {"lt": 100}}]}, "random"),
    "lexfile = noun.object": (
        {"must": [{"key": "lexfile", "match": {"value": "noun.object"}}]},
        "correlated",
    ),
    "r < 10": ({"must": [{"key": "r", "range": {"lt": 10}}]}, "random"),
    "lexfile = verb.weather": (
        {"must": [{"key": "lexfile", "match": {"value": "verb.weather"}}]},
        "correlated",
    ),
    "r < 1": ({"must": [{"key": "r", "range": {"lt": 1}}]}, "random"),
}


#: The committed 21k slice (no generated data needed): its metadata is bundled.
BUNDLED_SET = "minilm-wordnet-21k-384-angular"


def load(name: str):
    """Train/test vectors of the set and the WordNet metadata of each train row."""
    from bench.harness.datasets import get_dataset, split_indices, wordnet_glosses

    if name == BUNDLED_SET:
        import pyarrow.compute as pc

        from bench.harness.bundled import load_wordnet_slice

        data = load_wordnet_slice()
        meta = data.metadata.filter(pc.equal(data.metadata.column("split"), "train"))
        meta = meta.sort_by("row")
        pos = np.array(meta.column("pos").to_pylist(), dtype=object)
        return data, pos, np.array(meta.column("lexfile").to_pylist(), dtype=object)
    data = get_dataset(name)
    meta = wordnet_glosses()
    _, train_idx = split_indices(meta.num_rows)
    train_idx = train_idx[: data.train.shape[0]]
    pos = np.array(meta.column("pos").to_pylist(), dtype=object)[train_idx]
    lexfile = np.array(meta.column("lexfile").to_pylist(), dtype=object)[train_idx]
    return data, pos, lexfile


def _strategy(c, flt, ef: int) -> str | None:
    """The planner's strategy for the filter (None with a quiver that cannot say, so that
    this script also measures earlier versions for before/after comparisons)."""
    explain = getattr(c, "explain", None)
    return None if explain is None else explain(flt, k=10, ef=ef)["strategy"]


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="minilm-wordnet-181k-384-angular")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/results/filtered-search.json")
    args = ap.parse_args()

    import quiver
    from quiver import exact_search, recall_at_k

    data, pos, lexfile = load(args.set)
    x, q = data.train, data.test
    n = x.shape[0]
    r = np.random.default_rng(0).integers(0, 1000, size=n)
    payloads = [{"pos": pos[i], "lexfile": lexfile[i], "r": int(r[i])} for i in range(n)]
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        db = quiver.Database(tmp, num_threads=args.threads, checkpoint_bytes=1 << 40)
        c = db.create_collection("wordnet", x.shape[1])
        t0 = time.perf_counter()
        for s in range(0, n, 20_000):
            c.upsert(
                list(range(s, min(n, s + 20_000))), x[s : s + 20_000], payloads[s : s + 20_000]
            )
        load_s = time.perf_counter() - t0
        print(f"loaded {n} points in {load_s:.1f} s", flush=True)
        quiver.warmup()
        base_qps_all = []
        for name, (flt, kind) in FILTERS.items():
            c.count(flt)  # builds the payload column outside the timing
            match = np.flatnonzero([_matches(name, pos[i], lexfile[i], r[i]) for i in range(n)])
            _, gt = exact_search(x[match], q, 10, "cosine")
            # unfiltered QPS measured right before each filter: the ratio pairs timings taken
            # under the same machine load
            base_s, _ = timed(lambda: c.search_batch(q, k=10, ef=args.ef), args.repeats)
            base_qps = len(q) / base_s
            base_qps_all.append(base_qps)
            secs, hits = timed(
                lambda f=flt: c.search_batch(q, k=10, ef=args.ef, filter=f), args.repeats
            )
            single_base = single_latency(c, q, args.ef, None)
            single = single_latency(c, q, args.ef, flt)
            got = np.array([[1 - h.score for h in hs] + [np.inf] * (10 - len(hs)) for hs in hits])
            ok = all(h.id in set_of(match) for hs in hits[:50] for h in hs)
            row = {
                "filter": name,
                "kind": kind,
                "selectivity": round(len(match) / n, 5),
                "matches": int(len(match)),
                "recall_at_10": round(float(recall_at_k(got, gt, 10)), 4),
                "strategy": _strategy(c, flt, args.ef),
                "qps": round(len(q) / secs, 1),
                "unfiltered_qps": round(base_qps, 1),
                "qps_ratio_to_unfiltered": round(len(q) / secs / base_qps, 3),
                "single_query_p50_ms": single,
                "unfiltered_single_query_p50_ms": single_base,
                "results_satisfy_filter": ok,
            }
            rows_out.append(row)
            print(row, flush=True)
        db.close()
    result = {
        "command": "python -m bench.measure.filtered_search " + " ".join(sys.argv[1:]),
        "set": args.set,
        "threads": args.threads,
        "ef": args.ef,
        "unfiltered_qps_median": round(float(np.median(base_qps_all)), 1),
        "load_seconds": round(load_s, 1),
        "loadavg": os.getloadavg(),
        "rows": rows_out,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))


#: Single queries timed per filter (one call each, the HTTP server's case).
SINGLE_QUERIES = 200


def single_latency(c, q: np.ndarray, ef: int, flt) -> float:
    """Median milliseconds of one ``search`` call (the filter's selection is cached after
    the first call on a snapshot, as it would be for repeated requests)."""
    c.search(q[0], k=10, ef=ef, filter=flt)
    times = []
    for i in range(SINGLE_QUERIES):
        t0 = time.perf_counter()
        c.search(q[i], k=10, ef=ef, filter=flt)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1e3, 3)


_SETS: dict[int, set] = {}


def set_of(match: np.ndarray) -> set:
    key = id(match)
    if key not in _SETS:
        _SETS.clear()
        _SETS[key] = set(match.tolist())
    return _SETS[key]


def _matches(name: str, pos: str, lexfile: str, r: int) -> bool:
    """Reference evaluation of each named filter, independent of quiver.db.filters."""
    field, _, value = name.partition(" = ")
    if field == "pos":
        return pos == value
    if field == "lexfile":
        return lexfile == value
    return r < int(name.split("<")[1])


if __name__ == "__main__":
    main()
