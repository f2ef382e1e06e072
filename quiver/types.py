"""Result types returned by the public API."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SearchResult(NamedTuple):
    """Top-k of each query: ``ids`` int64 (q, k), padded with -1, and ``distances`` float32
    (q, k), padded with inf, ascending (smaller = closer). Unpacks as ``ids, distances``."""

    ids: np.ndarray
    distances: np.ndarray
