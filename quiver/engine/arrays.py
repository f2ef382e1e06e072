"""The hot arrays of an index (codes, adjacency, degrees, labels, live flags) and their growth.

Row ``r`` of every array describes the same point. Capacity grows amortised (x1.5); rows past
``count`` are padding (codes 0, adjacency -1, labels -1, live 0).
"""

from __future__ import annotations

import numpy as np

from quiver.engine import bq


class HotArrays:
    """What the graph search keeps in RAM, plus the counters that go with it.

    Owned by the index's writer. Readers see the arrays through a published
    :class:`~quiver.engine.state.IndexState`; growth and compaction replace the arrays
    wholesale, so a published state's arrays stay valid.
    """

    def __init__(self, dim: int, max_degree: int) -> None:
        self.codes = np.zeros((0, 2 * bq.words_per_plane(dim)), dtype=np.uint64)
        self.adjacency = np.full((0, max_degree), -1, dtype=np.int32)
        self.degrees = np.zeros(0, dtype=np.int32)
        self.labels = np.full(0, -1, dtype=np.int64)
        self.live = np.zeros(0, dtype=np.uint8)
        self.count = 0  # rows in use (live and deleted)
        self.n_deleted = 0
        self.entry = -1  # entry row of every search, -1 when empty
        self.next_id = 0  # the label ``add(ids=None)`` assigns next

    @property
    def capacity(self) -> int:
        return self.codes.shape[0]

    @property
    def nbytes(self) -> int:
        return int(
            self.codes.nbytes
            + self.adjacency.nbytes
            + self.degrees.nbytes
            + self.labels.nbytes
            + self.live.nbytes
        )

    def reserve(self, needed: int) -> bool:
        """Grow (amortised x1.5) so that ``needed`` rows fit; return whether it grew."""
        cap = self.capacity
        if needed <= cap:
            return False
        new_cap = max(needed, int(cap * 1.5) + 16)

        def grown(a: np.ndarray, fill: int) -> np.ndarray:
            out = np.full((new_cap,) + a.shape[1:], fill, dtype=a.dtype)
            out[: self.count] = a[: self.count]
            return out

        self.codes = grown(self.codes, 0)
        self.adjacency = grown(self.adjacency, -1)
        self.degrees = grown(self.degrees, 0)
        self.labels = grown(self.labels, -1)
        self.live = grown(self.live, 0)
        return True

    def trimmed(self) -> dict[str, np.ndarray]:
        """The used rows of each array, by the name they are saved under."""
        n = self.count
        return {
            "codes": self.codes[:n],
            "adjacency": self.adjacency[:n],
            "degrees": self.degrees[:n],
            "labels": self.labels[:n],
            "live": self.live[:n],
        }
