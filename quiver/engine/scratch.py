"""Per-thread search scratch (visited stamps and epochs), pooled and borrowed as a scope."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from quiver.engine.candidates import new_scratch

Scratch = tuple[np.ndarray, np.ndarray]  # (stamps (threads, capacity) uint8, epochs (threads,))


class ScratchPool:
    """Scratch arrays sized to the index capacity, reused across searches.

    ``with pool.borrow(threads, capacity) as (stamps, epochs):`` hands out a set with at least
    ``threads`` rows and returns it on exit, unless the index has grown meanwhile (then the
    set is dropped: it is sized to the old capacity).
    """

    def __init__(self) -> None:
        self._free: list[Scratch] = []
        self._lock = threading.Lock()
        self._capacity = 0  # an empty index

    def resize(self, capacity: int) -> None:
        """Forget every pooled set: the index now has ``capacity`` rows."""
        with self._lock:
            self._free = []
            self._capacity = capacity

    @contextmanager
    def borrow(self, slots: int, capacity: int) -> Iterator[Scratch]:
        scratch = None
        with self._lock:
            for i, (stamps, _) in enumerate(self._free):
                if stamps.shape[0] >= slots and stamps.shape[1] == capacity:
                    scratch = self._free.pop(i)
                    break
        if scratch is None:
            scratch = new_scratch(slots, capacity)
        try:
            yield scratch
        finally:
            with self._lock:
                if capacity == self._capacity:
                    self._free.append(scratch)
