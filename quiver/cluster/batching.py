"""Micro-batching: concurrent single-vector searches from many threads of one process become
one batch search (one call per shard), so the Ray hop is paid per batch, not per query.

The first search of a group waits up to ``window_s`` (or until ``max_batch`` searches with the
same options have joined), then runs the whole group as one :class:`SearchRequest` and hands
each thread its own hits. Only searches with identical options (k, ef, filter, ...) share a
batch. A lone search pays the window once; ``window_s=0`` turns batching off.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from quiver.types import ScoredPoint


class _Group:
    def __init__(self) -> None:
        self.vectors: list[np.ndarray] = []
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
        #: batches run and searches served (how well grouping works)
        self.batches = 0
        self.searches = 0

    def search(self, vector: np.ndarray, options: dict[str, Any]) -> list[ScoredPoint]:
        """The hits of one query vector (1-D) under ``options``, run in a shared batch."""
        key = json.dumps(options, sort_keys=True, default=str)
        with self._lock:
            group = self._open.get(key)
            leader = group is None
            if leader:
                group = self._open[key] = _Group()
            position = len(group.vectors)
            group.vectors.append(vector)
            if len(group.vectors) >= self.max_batch:
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
