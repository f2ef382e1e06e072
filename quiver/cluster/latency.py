"""A shard's recent read latencies, for the router's hedge delay (the p95 of the last reads)."""

from __future__ import annotations

import collections

import numpy as np


class LatencyWindow:
    """A shard's recent read latencies and their p95, recomputed every ``refresh`` samples
    (a percentile per read cost more driver CPU than the rest of the router's bookkeeping)."""

    def __init__(self, size: int = 200, refresh: int = 16) -> None:
        self._samples: collections.deque = collections.deque(maxlen=size)
        self._refresh = refresh
        self._fresh = 0
        self._p95: float | None = None

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._fresh += 1

    def p95(self, min_samples: int = 20) -> float | None:
        """The p95 of the window, None while it holds fewer than ``min_samples``."""
        if len(self._samples) < min_samples:
            return None
        if self._p95 is None or self._fresh >= self._refresh:
            self._p95, self._fresh = float(np.percentile(self._samples, 95)), 0
        return self._p95
