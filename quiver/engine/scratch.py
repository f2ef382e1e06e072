"""Per-thread search scratch (visited stamps and epochs), pooled and borrowed as a scope."""

from __future__ import annotations

import threading

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

    def borrow(self, slots: int, capacity: int) -> _Loan:
        """A scratch set with at least ``slots`` rows for ``capacity`` rows, as a ``with``
        scope that hands it back (a small class, not ``contextmanager``: a single query pays
        for this scope, and the generator machinery cost ~1 us more)."""
        return _Loan(self, slots, capacity)

    def take(self, slots: int, capacity: int) -> Scratch:
        """A pooled set that fits, or a new one (hand it back with :meth:`give_back`)."""
        with self._lock:
            for i, (stamps, _) in enumerate(self._free):
                if stamps.shape[0] >= slots and stamps.shape[1] == capacity:
                    return self._free.pop(i)
        return new_scratch(slots, capacity)

    def give_back(self, scratch: Scratch, capacity: int) -> None:
        """Return a set to the pool, unless the index was resized since it was taken."""
        with self._lock:
            if capacity == self._capacity:
                self._free.append(scratch)


class _Loan:
    """The ``with`` scope of :meth:`ScratchPool.borrow`."""

    __slots__ = ("_pool", "_slots", "_capacity", "_scratch")

    def __init__(self, pool: ScratchPool, slots: int, capacity: int) -> None:
        self._pool, self._slots, self._capacity = pool, slots, capacity
        self._scratch: Scratch | None = None

    def __enter__(self) -> Scratch:
        self._scratch = self._pool.take(self._slots, self._capacity)
        return self._scratch

    def __exit__(self, *exc: object) -> None:
        if self._scratch is not None:
            self._pool.give_back(self._scratch, self._capacity)
            self._scratch = None
