"""The rows of a collection sorted by point id, for scroll pages in id order.

Rows never change once written (a row's id is fixed; upserts append rows), so an order of the
rows ``0..count`` by (id, row) stays valid for every later view of the same numbering: new rows
are merged in when a view has more, and a consolidation (a new numbering) starts a new order.
Which rows are live is the view's business; a page walks the order from the offset id's
position (found by binary search, so the offset need not exist any more) and keeps the rows the
view admits. Ids sort numerically (uint64) or lexicographically by code point (strings).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


def _keys(id_type: str, ids: list[Any]) -> np.ndarray:
    return np.array(ids, dtype=np.uint64 if id_type == "uint64" else object)


class IdOrder:
    """Rows sorted by id over one numbering (a view's ``ids`` list), grown lazily."""

    def __init__(self, id_type: str) -> None:
        self._id_type = id_type
        self._lock = threading.Lock()
        self._numbering: list[Any] | None = None
        self._keys = _keys(id_type, [])
        self._rows = np.zeros(0, dtype=np.int64)

    def _sorted(self, ids: list[Any], count: int) -> tuple[np.ndarray, np.ndarray]:
        """(sorted keys, their rows) covering rows ``0..count`` of the numbering ``ids``."""
        with self._lock:
            if self._numbering is not ids:
                self._numbering = ids
                self._keys, self._rows = _keys(self._id_type, []), np.zeros(0, dtype=np.int64)
            done = self._rows.shape[0]
            if done < count:
                new_keys = _keys(self._id_type, ids[done:count])
                order = np.argsort(new_keys, kind="stable")
                new_keys = new_keys[order]
                new_rows = order.astype(np.int64) + done
                at = np.searchsorted(self._keys, new_keys, side="right")
                self._keys = np.insert(self._keys, at, new_keys)
                self._rows = np.insert(self._rows, at, new_rows)
            return self._keys, self._rows

    def page(
        self, ids: list[Any], count: int, admit: np.ndarray, offset: Any, limit: int
    ) -> np.ndarray:
        """Up to ``limit`` admitted rows (``admit``: bool per row) in id order, starting at
        the first id >= ``offset`` (None: the smallest)."""
        keys, rows = self._sorted(ids, count)
        start = 0
        if offset is not None:
            probe = np.uint64(offset) if self._id_type == "uint64" else offset
            start = int(np.searchsorted(keys, probe, side="left"))
        out: list[np.ndarray] = []
        found = 0
        step = max(4 * limit, 1024)
        while start < rows.shape[0] and found < limit:
            chunk = rows[start : start + step]
            chunk = chunk[chunk < count]  # an older view of this numbering covers fewer rows
            chosen = chunk[admit[chunk]]
            out.append(chosen)
            found += chosen.shape[0]
            start += step
            step *= 2
        if not out:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(out)[:limit]
