"""Micro-batching: concurrent single-vector searches from many threads of one process become
one batch search (one call per shard), so the Ray hop is paid per batch, not per query.

The first search of a group waits up to ``window_s`` (or until ``max_batch`` searches with the
same options have joined), then runs the whole group as one :class:`SearchRequest` and hands
each thread its own hits. Only searches with identical options (k, ef, filter, ...) share a
batch. A lone client does not wait: when no other thread was inside
:meth:`QueryBatcher.search` at any of the last ``RECENT_ENTRIES`` searches, a group closes at
once with its one search (the first search of all waits out the window). Closing any group as
soon as as many searches joined as there were threads searching at once recently was tried and
not kept: 16 clients in a closed loop ran 6-7 % slower, in smaller batches
(bench/results/PERF.md).
``window_s=0`` turns batching off.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from quiver.types import ScoredPoint

#: How many recent searches the expected group size looks back over (see the module doc).
RECENT_ENTRIES = 64


class _Group:
    def __init__(self) -> None:
        self.vectors: list[np.ndarray] = []
        self.expected = 1  # searches that close the group before the window ends
        self.results: list[list[ScoredPoint]] = []
        self.error: BaseException | None = None
        self.full = threading.Event()
        self.done = threading.Event()


class QueryBatcher:
    """Groups single searches (see the module doc). ``run(vectors, options)`` runs one batch
    (a (q, D) array and the request's options) and returns one hit list per row."""

    def __init__(
        self,
        run: Callable[[np.ndarray, dict[str, Any]], list[list[ScoredPoint]]],
        window_s: float = 0.001,
        max_batch: int = 64,
    ) -> None:
        self._run = run
        self.window_s = float(window_s)
        self.max_batch = int(max_batch)
        self._lock = threading.Lock()
        self._open: dict[str, _Group] = {}
        self._inside = 0  # threads inside search() now
        self._recent: deque[int] = deque(maxlen=RECENT_ENTRIES)  # _inside at recent entries
        #: batches run and searches served (how well grouping works)
        self.batches = 0
        self.searches = 0

    def search(self, vector: np.ndarray, options: dict[str, Any]) -> list[ScoredPoint]:
        """The hits of one query vector (1-D) under ``options``, run in a shared batch."""
        key = json.dumps(options, sort_keys=True, default=str)
        with self._lock:
            self._inside += 1
            expected = self.expected_group()
            self._recent.append(self._inside)
        try:
            return self._search(key, vector, options, expected)
        finally:
            with self._lock:
                self._inside -= 1

    def expected_group(self) -> int:
        """How many searches a new group waits for (at most the window): 1 when no other
        thread was inside :meth:`search` at any recent search (a lone client), else
        ``max_batch`` (and before any search: the first group waits out the window)."""
        return 1 if self._recent and max(self._recent) == 1 else self.max_batch

    def _search(
        self, key: str, vector: np.ndarray, options: dict[str, Any], expected: int
    ) -> list[ScoredPoint]:
        with self._lock:
            group = self._open.get(key)
            leader = group is None
            if leader:
                group = self._open[key] = _Group()
                group.expected = expected
            position = len(group.vectors)
            group.vectors.append(vector)
            if len(group.vectors) >= group.expected:
                group.full.set()
                del self._open[key]  # the next search starts a new group
        if leader:
            group.full.wait(self.window_s)
            with self._lock:
                if self._open.get(key) is group:
                    del self._open[key]
                self.batches += 1
                self.searches += len(group.vectors)
            try:
                group.results = self._run(np.stack(group.vectors), options)
            except BaseException as exc:  # every thread of the group gets the error
                group.error = exc
            finally:
                group.done.set()
        else:
            group.done.wait()
        if group.error is not None:
            raise group.error
        return group.results[position]
