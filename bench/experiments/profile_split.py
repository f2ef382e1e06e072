"""Where a query's time goes: the beam search (code distances, graph walk) vs the rerank.

    python -m bench.experiments.profile_split [--sets minilm-wordnet-181k-384-angular
        minilm-text-562k-384-angular] [--ef 32 64 128] [--repeats 7]

One thread throughout. Each set's index is built with default parameters (2 threads), saved
under ``<data dir>/profile-index/<set>`` (reused on the next run) and reopened with
``Index.open``, so the float vectors are memory-mapped as when serving; every pass below runs
once untimed first, so the float pages are warm. For each ef the same 1,000 queries go through
these passes, interleaved ``--repeats`` times. Each is timed by the calling thread's CPU time
(``time.thread_time``, which leaves out the time other jobs held the core) and by the wall
clock; the minimum CPU time is the figure used below, in microseconds per query:

- ``public_rerank_ef`` / ``public_rerank_k``: ``Index.search`` with ``rerank=ef`` (the default)
  and ``rerank=k``; their difference is the rerank of ``ef - k`` extra rows.
- ``beam``: the real ``quiver.engine.search.beam_search`` called from a jitted driver, with query
  encoding (``encode_query``) and the visited epoch, exactly as the search does before the
  rerank.
- ``rerank``: the real ``quiver.engine.rerank.rerank_top_k`` on the candidates the beam pass found
  (``ef`` rows), and ``rerank_k`` on the best ``k`` of them.
- ``encode``: ``encode_query`` alone.
- ``distances_row_order``: the code distances (``navigation_distance``) to exactly the rows the
  beam scored, read from its visited stamps, in row order, with no graph walk and no prefetch;
  ``distances_row_order_prefetched``: the same with each row prefetched 8 distances ahead;
  ``distances_resident``: the same number of distances over 256 codes that stay in L1
  (arithmetic only), and ``distances_resident_symmetric`` the same with the code-code distance
  that construction uses (the query's own 2-bit code).
- ``random_gather_asymmetric`` / ``random_gather_symmetric``: 2M distances to uniformly random
  rows of this set's codes, query distance and code-code distance, in ns per distance (the
  latter is what ``python -m bench.experiments.kernel_speed`` measures on 1M random codes).

Derived: navigation (code distances + adjacency, visited checks and candidate list) = ``beam -
encode``; the rerank's share of ``beam + rerank``. Writes one JSON row per (set, ef) to
``--out`` with the load average at the start and end of the row.

Every pass calls quiver's own kernels: this script carries no copy of a kernel, so it cannot
drift from what it profiles. The version that made the 2026-11-26 results also split the
navigation into code distances, adjacency + visited checks and candidate list with a
line-for-line mirror of the beam loop (``git show c1ffb74:bench/profile_split.py``); that mirror
was removed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import njit

import quiver
from bench.harness.datasets import data_dir
from bench.harness.sets import load_dataset
from quiver.engine import bq
from quiver.engine.candidates import new_scratch, next_epoch
from quiver.engine.kernels import (
    code_distance,
    encode_query,
    navigation_distance,
    prefetch_row,
)
from quiver.engine.rerank import rerank_top_k
from quiver.engine.search import beam_search
from quiver.metrics import parse_metric

log = logging.getLogger("bench.experiments.profile_split")

SETS = ["minilm-wordnet-181k-384-angular", "minilm-text-562k-384-angular"]
K = 10
PREFETCH_AHEAD = 8
RESIDENT_ROWS = 256
GATHERS = 2_000_000


# --------------------------------------------------------------------------- jitted passes


@njit(cache=True, nogil=True)
def _encode_all(queries, planes, params):
    """Quantise every query: ``planes`` (q, 4W) uint64, ``params`` (q, 3) float64."""
    for qi in range(queries.shape[0]):
        encode_query(queries[qi], planes[qi], params[qi])


@njit(cache=True, nogil=True)
def _encode_pass(queries, planes, params):
    """Time-only: quantise every query (the search's first step)."""
    _encode_all(queries, planes, params)


@njit(cache=True, nogil=True)
def _beam_pass(graph, queries, ef, stamps, epochs, cand, counts, ndist, nexp, scored):
    """Encode + ``beam_search`` per query; the candidates go to ``cand`` (q, ef).

    ``queries`` are the navigation queries (as the codes see them: centred and rotated when the
    index uses data-adaptive codes). ``scored`` (q, width) int32 receives, in row order, the
    rows each search scored: those its visited stamps mark (width 0: not recorded). No filter,
    no deleted rows: the plain graph mode.
    """
    codes, adjacency, degrees, dim, entry, limit = graph
    ids = np.empty(ef, dtype=np.int32)
    dists = np.empty(ef, dtype=np.float64)
    done = np.empty(ef, dtype=np.bool_)
    no_expanded = np.empty(0, dtype=np.int32)
    no_admit = np.empty(0, dtype=np.uint8)
    res_ids = np.empty(1, dtype=np.int32)
    res_dists = np.empty(1, dtype=np.float64)
    planes = np.empty(2 * codes.shape[1], dtype=np.uint64)
    params = np.empty(3, dtype=np.float64)
    for qi in range(queries.shape[0]):
        encode_query(queries[qi], planes, params)
        epoch = next_epoch(stamps, epochs, 0)
        count, n_exp, n_dist, _ = beam_search(
            codes, adjacency, degrees, dim, limit, (planes, params), entry, stamps[0], epoch,
            ids, dists, done, no_expanded, no_admit, res_ids, res_dists,
        )  # fmt: skip
        cand[qi, :count] = ids[:count]
        counts[qi] = count
        ndist[qi] = n_dist
        nexp[qi] = n_exp
        if scored.shape[1] > 0:
            m = 0
            for row in range(limit):
                if stamps[0, row] == epoch and m < scored.shape[1]:
                    scored[qi, m] = row
                    m += 1


@njit(cache=True, nogil=True)
def _rerank_pass(floats, queries, cand, counts, rerank, out_ids, out_dists):
    """``rerank_top_k`` of the best ``rerank`` candidates of each query."""
    metric, segments, segment_starts, labels = floats
    for qi in range(queries.shape[0]):
        rerank_top_k(
            queries[qi], cand[qi, : min(counts[qi], rerank)], metric, segments, segment_starts,
            labels, out_ids[qi], out_dists[qi],
        )  # fmt: skip


@njit(cache=True, nogil=True)
def _distances_listed(codes, dim, planes, params, rows, lengths, ahead):
    """Query distances to each query's listed ``rows``; each row prefetched ``ahead`` distances
    before it is read (0: no prefetch)."""
    words = codes.shape[1] // 2
    acc = 0.0
    for qi in range(rows.shape[0]):
        query = (planes[qi], params[qi])
        n = lengths[qi]
        for m in range(min(ahead, n)):
            prefetch_row(codes, rows[qi, m])
        for m in range(n):
            if ahead > 0 and m + ahead < n:
                prefetch_row(codes, rows[qi, m + ahead])
            acc += navigation_distance(query, codes[rows[qi, m]], words, dim)
    return acc


@njit(cache=True, nogil=True)
def _distances_resident(small, dim, planes, params, lengths):
    """As many query distances as the search computes, over ``small`` codes kept in L1."""
    words = small.shape[1] // 2
    mask = small.shape[0] - 1
    acc = 0.0
    for qi in range(planes.shape[0]):
        query = (planes[qi], params[qi])
        for m in range(lengths[qi]):
            acc += navigation_distance(query, small[(m + qi) & mask], words, dim)
    return acc


@njit(cache=True, nogil=True)
def _distances_resident_symmetric(small, dim, query_codes, lengths):
    """As :func:`_distances_resident` with the code-code distance (the construction's)."""
    words = small.shape[1] // 2
    mask = small.shape[0] - 1
    acc = 0
    for qi in range(query_codes.shape[0]):
        for m in range(lengths[qi]):
            acc += code_distance(query_codes[qi], small[(m + qi) & mask], words, dim)
    return acc


@njit(cache=True, nogil=True)
def _gather_asymmetric(codes, dim, planes, params, rows):
    """Query distances to ``codes[rows]`` (random rows), cycling through the queries."""
    words = codes.shape[1] // 2
    nq = planes.shape[0]
    acc = 0.0
    for i in range(rows.shape[0]):
        qi = i % nq
        acc += navigation_distance((planes[qi], params[qi]), codes[rows[i]], words, dim)
    return acc


@njit(cache=True, nogil=True)
def _gather_symmetric(codes, dim, query_codes, rows):
    """Code-code distances to ``codes[rows]`` (random rows), as ``kernel_speed`` does."""
    words = codes.shape[1] // 2
    nq = query_codes.shape[0]
    acc = 0
    for i in range(rows.shape[0]):
        acc += code_distance(query_codes[i % nq], codes[rows[i]], words, dim)
    return acc


# --------------------------------------------------------------------------- driver


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def open_index(name: str, train: np.ndarray, rebuild: bool) -> quiver.Index:
    """Build (2 threads, defaults) and save the set's index once; reopen it memory-mapped."""
    path = data_dir() / "profile-index" / name
    if rebuild or not (path / "manifest.json").is_file():
        index = quiver.Index(train.shape[1], "cosine", num_threads=2)
        t0 = time.perf_counter()
        index.add(train)
        log.info("%s: built in %.1f s", name, time.perf_counter() - t0)
        index.save(path)
        del index
    return quiver.Index.open(path, num_threads=1)


def kernel_args(index: quiver.Index, queries: np.ndarray) -> tuple[tuple, tuple, np.ndarray]:
    """What the search kernels take: ``(graph, floats)`` as ``quiver.engine.search`` groups them,
    and the navigation queries (``queries`` as the codes see them).

    Reads the index's current state and its private centring: a profile has to call the
    kernels directly. Deleted rows are not supported (the plain graph mode only).
    """
    state = index.state()
    if state.n_deleted:
        raise ValueError("profile an index without deleted rows")
    graph = (state.codes, state.adjacency, state.degrees, index.dim, state.entry, state.count)
    floats = (int(parse_metric(index.metric)), state.segments, state.segment_starts, state.labels)
    nav = queries
    if index.coding.center is not None:
        nav = index.navigation_queries(queries)
    return graph, floats, np.ascontiguousarray(nav, dtype=np.float32)


class Profile:
    """One set's passes at one ef, with the rows the beam scored, which they share."""

    def __init__(self, index: quiver.Index, queries: np.ndarray, ef: int) -> None:
        self.index, self.queries, self.ef = index, queries, ef
        self.graph, self.floats, self.nav = kernel_args(index, queries)
        codes = self.graph[0]
        nq = queries.shape[0]
        self.stamps, self.epochs = new_scratch(1, codes.shape[0])
        self.planes = np.empty((nq, 2 * codes.shape[1]), dtype=np.uint64)
        self.params = np.empty((nq, 3), dtype=np.float64)
        _encode_all(self.nav, self.planes, self.params)
        self.cand = np.full((nq, ef), -1, dtype=np.int32)
        self.counts = np.zeros(nq, dtype=np.int64)
        self.ndist = np.zeros(nq, dtype=np.int64)
        self.nexp = np.zeros(nq, dtype=np.int64)
        self.no_record = np.empty((nq, 0), dtype=np.int32)
        self.out_ids = np.empty((nq, K), dtype=np.int64)
        self.out_dists = np.empty((nq, K), dtype=np.float32)
        self._record()
        self.small = np.ascontiguousarray(codes[:RESIDENT_ROWS])
        rng = np.random.default_rng(0)
        self.rows = rng.integers(0, self.graph[5], GATHERS).astype(np.int32)  # stored rows
        self.query_codes = bq.encode(self.nav)

    def _record(self) -> None:
        """Run the beam twice: once to count each query's distances, once to collect the rows
        it scored. Raises unless the stamped rows are exactly as many as ``beam_search`` counts
        and both runs return the same candidates."""
        self.beam()
        want = self.cand.copy()
        self.scored = np.full((self.queries.shape[0], int(self.ndist.max())), -1, np.int32)
        self.beam(self.scored)
        self.lengths = (self.scored >= 0).sum(axis=1)
        if not np.array_equal(self.lengths, self.ndist):
            raise RuntimeError("the visited stamps disagree with beam_search's distance count")
        if not np.array_equal(self.cand, want):
            raise RuntimeError("a second beam pass returned other candidates")

    # passes: each processes every query once
    def beam(self, scored: np.ndarray | None = None) -> None:
        _beam_pass(
            self.graph, self.nav, self.ef, self.stamps, self.epochs, self.cand, self.counts,
            self.ndist, self.nexp, self.no_record if scored is None else scored,
        )  # fmt: skip

    def rerank(self, rows: int) -> None:
        _rerank_pass(
            self.floats, self.queries, self.cand, self.counts, rows, self.out_ids, self.out_dists
        )

    def scored_distances(self, ahead: int) -> float:
        """Code distances to the rows the beam scored, in row order (see the module doc)."""
        codes, dim = self.graph[0], self.graph[3]
        return _distances_listed(
            codes, dim, self.planes, self.params, self.scored, self.lengths, ahead
        )

    def passes(self) -> dict[str, Any]:
        """Name -> (callable, work units): us per query, or ns per distance for gathers."""
        codes, dim = self.graph[0], self.graph[3]
        nq = self.queries.shape[0]
        planes = np.empty_like(self.planes)
        params = np.empty_like(self.params)
        search = self.index.search
        q, ef, nav = self.queries, self.ef, self.nav
        return {
            "public_rerank_ef": (lambda: search(q, k=K, ef=ef, num_threads=1), nq),
            "public_rerank_k": (lambda: search(q, k=K, ef=ef, rerank=K, num_threads=1), nq),
            "beam": (self.beam, nq),
            "rerank": (lambda: self.rerank(ef), nq),
            "rerank_k": (lambda: self.rerank(K), nq),
            "encode": (lambda: _encode_pass(nav, planes, params), nq),
            "distances_row_order": (lambda: self.scored_distances(0), nq),
            "distances_row_order_prefetched": (
                lambda: self.scored_distances(PREFETCH_AHEAD),
                nq,
            ),
            "distances_resident": (
                lambda: _distances_resident(
                    self.small, dim, self.planes, self.params, self.lengths
                ),
                nq,
            ),
            "distances_resident_symmetric": (
                lambda: _distances_resident_symmetric(
                    self.small, dim, self.query_codes, self.lengths
                ),
                nq,
            ),
            "random_gather_asymmetric": (
                lambda: _gather_asymmetric(codes, dim, self.planes, self.params, self.rows),
                GATHERS,
            ),
            "random_gather_symmetric": (
                lambda: _gather_symmetric(codes, dim, self.query_codes, self.rows),
                GATHERS,
            ),
        }


def measure(profile: Profile, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per work unit of every pass, the passes interleaved ``repeats`` times.

    Returns ``cpu_min`` (the calling thread's CPU time, ``time.thread_time``: the time the
    thread was descheduled for other jobs does not count; what is left of their effect is the
    shared cache and memory bandwidth), ``wall_min`` and ``wall_median``. The split uses
    ``cpu_min``.
    """
    passes = profile.passes()
    for run, _ in passes.values():
        run()  # untimed: compile / load from cache, warm the pages
    wall: dict[str, list[float]] = {name: [] for name in passes}
    cpu: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(repeats):
        for name, (run, _) in passes.items():
            c0 = time.thread_time()
            t0 = time.perf_counter()
            run()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
    units = {name: n for name, (_, n) in passes.items()}
    return {
        "cpu_min": {k: min(v) / units[k] for k, v in cpu.items()},
        "wall_min": {k: min(v) / units[k] for k, v in wall.items()},
        "wall_median": {k: float(np.median(v)) / units[k] for k, v in wall.items()},
    }


def profile_row(name: str, index: quiver.Index, queries: np.ndarray, ef: int, repeats: int) -> dict:
    """One JSON row: every pass in us per query (gathers in ns per distance), and the split
    (from the minimum thread CPU time)."""
    load_start = load_average()
    profile = Profile(index, queries, ef)
    measured = measure(profile, repeats)
    us_all = {
        stat: {k: round(v * 1e6, 2) for k, v in per.items() if not k.startswith("random")}
        for stat, per in measured.items()
    }
    ns_all = {
        stat: {k: round(v * 1e9, 1) for k, v in per.items() if k.startswith("random")}
        for stat, per in measured.items()
    }
    us = us_all["cpu_min"]
    n_dist = float(profile.ndist.mean())
    navigation_us = us["beam"] - us["encode"]
    row = {
        "set": name,
        "n": len(index),
        "ef": ef,
        "threads": 1,
        "code_distances_per_query": round(n_dist, 1),
        "expansions_per_query": round(float(profile.nexp.mean()), 1),
        "repeats": repeats,
        "us_per_query": us_all,
        "ns_per_distance_random_gather": ns_all,
        "split_us": {
            "encode": us["encode"],
            "navigation": round(navigation_us, 2),
            "rerank": us["rerank"],
        },
        "ns_per_code_distance": {
            "navigation_per_distance": round(1e3 * navigation_us / n_dist, 1),
            "row_order_no_prefetch": round(1e3 * us["distances_row_order"] / n_dist, 1),
            "row_order_prefetched": round(1e3 * us["distances_row_order_prefetched"] / n_dist, 1),
            "cache_resident": round(1e3 * us["distances_resident"] / n_dist, 1),
            "cache_resident_symmetric": round(1e3 * us["distances_resident_symmetric"] / n_dist, 1),
        },
        "rerank_share_of_beam_plus_rerank": round(us["rerank"] / (us["beam"] + us["rerank"]), 3),
        "loadavg_start": load_start,
        "loadavg_end": load_average(),
        "command": "python -m bench.experiments.profile_split " + " ".join(sys.argv[1:]),
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=SETS)
    parser.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached indexes")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile-split.jsonl"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    quiver.warmup()
    rows = []
    for name in args.sets:
        data = load_dataset(name)
        index = open_index(name, data.train, args.rebuild)
        numba.set_num_threads(1)
        queries = data.test / np.linalg.norm(data.test, axis=1, keepdims=True)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        del data
        for ef in args.ef:
            row = profile_row(name, index, queries, ef, args.repeats)
            print(json.dumps(row), flush=True)
            rows.append(row)
        del index
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
