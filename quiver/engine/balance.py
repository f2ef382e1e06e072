"""Work balancing for the parallel kernels: each thread runs its own share of a job's blocks,
then takes the blocks other threads have not reached yet.

Numba's OpenMP layer schedules ``prange`` statically: every thread gets one fixed share, and a
parallel loop lasts as long as its slowest thread. On a machine shared with other work (a
server, a virtual machine) one core is often slowed down. So the parallel kernels give
``prange`` one iteration per thread and let each thread walk the blocks with
:func:`next_block`: its own share from the start, then every other share from its end, taking
each block not yet claimed. A claim is a plain store to a per-block byte (Numba has no atomics
on the CPU): two threads may run the same block at once. Only jobs where that merely repeats
work may use this, i.e. where a block's results depend on nothing another block writes and
both runs write the same values (a search of frozen data, for instance).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: ``next_block``'s starting position (and its "no block left").
NO_BLOCK = np.int64(-(1 << 62))


@njit(cache=True, nogil=True)
def next_block(claimed: np.ndarray, own: int, slots: int, turn: int, b: int) -> tuple:
    """The next block thread ``own`` (of ``slots``) should run, as ``(block, turn, b)``: pass
    ``turn`` and ``b`` back on the next call (start with ``0, NO_BLOCK``); ``block`` is
    ``NO_BLOCK`` when every block is claimed. ``claimed`` (uint8, one per block, zeros at the
    start) is shared by the threads; share ``s`` is blocks ``s * blocks // slots`` up to
    ``(s + 1) * blocks // slots``."""
    blocks = claimed.shape[0]
    while turn < slots:
        other = (own + turn) % slots
        first = other * blocks // slots
        last = (other + 1) * blocks // slots - 1
        if b == NO_BLOCK:  # entering this share: the own one from its start, others from the end
            b = first if turn == 0 else last
        if first <= b <= last and claimed[b] == 0:
            claimed[b] = 1
            return b, turn, (b + 1 if turn == 0 else b - 1)
        turn += 1
        b = NO_BLOCK
    return NO_BLOCK, turn, b
