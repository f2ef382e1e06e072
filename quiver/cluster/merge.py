"""What a sharded search asks each shard, and how the shards' answers become one.

Rules (docs/SCALING.md):

* **k per shard = k + offset**: any shard may hold all of the global top k, so asking a shard
  for fewer costs recall. The offset is applied after the merge.
* **ef per shard** = ``max(k + offset, ceil(ef / S ** ef_exponent))`` with ``ef_exponent``
  0.25 by default: each shard's index is ``S`` times smaller, but on the 562k MiniLM set a
  shard needed more than ``ef / sqrt(S)`` (the rule seen on 30k points) to reach one index's
  recall at ef 64: interpolated between the swept points, ``ef / S ** 0.25`` for 2 and 4
  shards (``bench/measure/cluster_scaling.py``, docs/SCALING.md). ``ef`` is the request's
  (default ``max(64, k)``). ``ef_exponent=0`` gives every shard the full ef.
* **Rerank per shard** = ``max(k + offset, ceil(rerank / S))``, at most the shard's ef, with
  ``rerank`` the request's (default: its ef, ``max(64, k)`` by default): the rerank budget of
  one index split over the shards, since each shard holds about ``1 / S`` of the global top k.
  On the 562k MiniLM set, in-process shards at the default ef (``python -m
  bench.experiments.shard_bound``, docs/SCALING.md): 2 shards reranking 32 rows each kept the
  recall of a full 54-row rerank (0.9830) at 14 % more QPS, 4 shards reranking 16 each lost
  0.0003 (0.9873 against 0.9876) at 17 % more.
* **target_recall** (merged calibration): each shard still returns k + offset results, but
  picks its ef from its own calibration for the target at ``shard_recall_k`` results (its
  expected share of the global top k plus one standard deviation), not at k: the global top
  k are spread over the shards, and each shard only has to find its share of them. Passing
  the target unchanged (each shard reaching it on its own top k) overspent: measured with
  ``bench/measure/cluster_target_recall.py`` (docs/SCALING.md).
* **Merge** by exact score (the shards return exact float32 rerank scores, so the merged order
  is the exact order of what they returned); ties by id, for a deterministic answer. Hits
  without payload or vector of integer ids travel as arrays (:class:`CompactHits`: no
  per-hit objects to pickle) and merge vectorised (:func:`merge_compact`), with the same
  result as :func:`merge_hits`.
* Filters, score thresholds and payload selection pass through unchanged.
* **Partial results** (``allow_partial``): the merge of the shards that answered, with
  ``coverage = shards answered / shards`` on each hit list (:class:`Hits`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from quiver.db.request import SearchRequest
from quiver.params import DEFAULT_EF
from quiver.types import CompactHits, Point, ScoredPoint

DEFAULT_EF_EXPONENT = 0.25
#: Key of a shard's search options: the k its ``target_recall`` calibration is for.
RECALL_K = "recall_k"


def shard_ef(ef: int | None, k: int, shards: int, exponent: float = DEFAULT_EF_EXPONENT) -> int:
    """The ef each of ``shards`` shards searches with for a request of ``ef`` (None: the
    default) and ``k`` results."""
    base = max(DEFAULT_EF, k) if ef is None else ef
    return max(k, math.ceil(base / shards**exponent))


def shard_recall_k(k: int, shards: int) -> int:
    """The k each of ``shards`` shards calibrates a ``target_recall`` search for, when the
    cluster is asked for ``k`` results: how many of the global top k a shard holds, its
    expected share ``k / S`` plus one standard deviation of that count (binomial, each point
    on a shard with probability ``1 / S``), rounded up, at most ``k``. One shard: ``k``."""
    share = k / shards
    return min(k, max(1, math.ceil(share + math.sqrt(share * (1.0 - 1.0 / shards)))))


def shard_options(request: SearchRequest, shards: int, exponent: float) -> dict[str, Any]:
    """The ``SearchRequest`` keyword arguments every shard runs for ``request`` (queries
    excluded): k + offset results, no offset, the per-shard ef, the rest unchanged."""
    k = request.k + request.offset + (1 if request.ids is not None else 0)
    options: dict[str, Any] = {
        "k": k,
        "filter": request.filter,
        "score_threshold": request.score_threshold,
        "with_payload": request.with_payload,
        "with_vector": request.with_vector,
    }
    if request.target_recall is not None:  # each shard's calibration picks ef; rerank = ef
        options["target_recall"] = request.target_recall
        options[RECALL_K] = shard_recall_k(k, shards)
        if request.rerank is not None:
            options["rerank"] = max(k, request.rerank)
        return options
    ef = options["ef"] = shard_ef(request.ef, k, shards, exponent)
    options["rerank"] = shard_rerank(request.rerank, request.ef, k, shards, ef)
    return options


def shard_rerank(rerank: int | None, ef: int | None, k: int, shards: int, shard_ef: int) -> int:
    """The rerank depth of each of ``shards`` shards (ef ``shard_ef``) for a request of
    ``rerank`` and ``ef`` (None: the defaults) and ``k`` results per shard: the request's depth
    split over the shards, at least ``k``, at most ``shard_ef`` (see the module doc)."""
    total = rerank if rerank is not None else (max(DEFAULT_EF, k) if ef is None else ef)
    return min(shard_ef, max(k, math.ceil(total / shards)))


def resolve_target_recall(
    options: dict[str, Any], ef_for_recall: Callable[[float, int], int]
) -> dict[str, Any]:
    """A shard's search options (:func:`shard_options`) as the shard runs them: a
    ``target_recall`` becomes the ef that ``ef_for_recall(target, recall_k)`` (the shard's
    calibration) gives, at least k, with the rerank depth capped at it."""
    out = {key: value for key, value in options.items() if key != RECALL_K}
    target = out.get("target_recall")
    if target is None:
        return out
    recall_k = options.get(RECALL_K, out["k"])
    del out["target_recall"]
    out["ef"] = max(out["k"], int(ef_for_recall(target, recall_k)))
    if out.get("rerank") is not None:
        out["rerank"] = min(out["rerank"], out["ef"])
    return out


class Hits(list):
    """One query's merged hits (a list of :class:`ScoredPoint`, best first) and how many of
    the collection's shards answered: ``coverage`` is ``shards_answered / shards`` (1.0 unless
    the search allowed partial results and a whole shard was down)."""

    def __init__(self, hits: list[ScoredPoint], shards_answered: int, shards: int) -> None:
        super().__init__(hits)
        self.shards_answered = shards_answered
        self.shards = shards

    @property
    def coverage(self) -> float:
        return self.shards_answered / self.shards

    def __reduce__(self) -> tuple:  # pickled (Ray, the batcher) with its counts
        return (Hits, (list(self), self.shards_answered, self.shards))


def merge_hits(
    per_shard: list[list[ScoredPoint]],
    k: int,
    offset: int,
    higher_is_better: bool,
    exclude: Any = None,
    shards: int | None = None,
) -> Hits:
    """One query's hits from the shards that answered -> the global top ``k`` after
    ``offset``, best first; ``exclude``: an id left out (the query point of a search by id);
    ``shards``: how many shards the collection has (default: as many as answered)."""
    hits = [h for shard in per_shard for h in shard if exclude is None or h.id != exclude]
    sign = -1.0 if higher_is_better else 1.0
    hits.sort(key=lambda h: (sign * h.score, str(type(h.id)), h.id))
    total = len(per_shard) if shards is None else shards
    return Hits(hits[offset : offset + k], len(per_shard), total)


def merge_pages(pages: list[tuple[list[Point], Any]], limit: int) -> tuple[list[Point], Any]:
    """Scroll pages from every shard (each up to ``limit`` points in id order from the same
    offset, and that shard's next offset) -> the global page and the next offset.

    Every shard's page holds all of its points below its next offset, so the global page is
    the first ``limit`` of the union, and the next offset is the smallest id that was left
    out or that a shard would continue from.
    """
    points = sorted((p for page, _ in pages for p in page), key=lambda p: p.id)
    rest = [p.id for p in points[limit:]] + [n for _, n in pages if n is not None]
    return points[:limit], (min(rest) if rest else None)


def merge_compact(
    per_shard: list[CompactHits],
    k: int,
    offset: int,
    higher_is_better: bool,
    excludes: list[Any],
    shards: int,
) -> list[Hits]:
    """:func:`merge_hits` for every query of a batch at once, from the shards' compact
    answers: the same hits in the same order (best score first, ties by smaller id)."""
    n = len(per_shard[0].counts)
    width = max(1, max(int(part.counts.max(initial=0)) for part in per_shard))
    worst = np.inf  # sort key of a missing hit (keys are scores negated when higher is better)
    sign = -1.0 if higher_is_better else 1.0
    keys = np.full((n, width * len(per_shard)), worst)
    ids = np.zeros((n, width * len(per_shard)), dtype=np.uint64)
    for j, part in enumerate(per_shard):
        rows = np.repeat(np.arange(n), part.counts)
        starts = np.cumsum(part.counts) - part.counts
        cols = np.arange(len(part.ids)) - np.repeat(starts, part.counts) + j * width
        keys[rows, cols] = sign * part.scores
        ids[rows, cols] = part.ids
    if any(e is not None for e in excludes):  # the query point of a search by id
        has = np.array([e is not None for e in excludes])
        excluded = np.array([0 if e is None else e for e in excludes], dtype=np.uint64)
        keys[(ids == excluded[:, None]) & has[:, None]] = worst
    order = np.lexsort((ids, keys), axis=1)[:, offset : offset + k]
    top_keys = np.take_along_axis(keys, order, axis=1)
    top_ids = np.take_along_axis(ids, order, axis=1).tolist()
    top_scores = (sign * top_keys).tolist()
    found = np.isfinite(top_keys).sum(axis=1).tolist()
    answered = len(per_shard)
    return [
        Hits([ScoredPoint(i, s) for i, s in zip(ids[:m], scores, strict=False)], answered, shards)
        for ids, scores, m in zip(top_ids, top_scores, found, strict=True)
    ]


def expand_hits(part: CompactHits | list[list[ScoredPoint]]) -> list[list[ScoredPoint]]:
    """Hit lists of a shard's answer, compact or not."""
    if not isinstance(part, CompactHits):
        return part
    ids, scores = part.ids.tolist(), part.scores.tolist()
    ends = np.cumsum(part.counts).tolist()
    starts = [0, *ends[:-1]]
    return [
        [ScoredPoint(i, s) for i, s in zip(ids[a:b], scores[a:b], strict=True)]
        for a, b in zip(starts, ends, strict=True)
    ]
