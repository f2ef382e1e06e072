"""What a search reads and what it is told to do: the published snapshot, a filter's row
selection and the search plan the engine executes."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class IndexState(NamedTuple):
    """What a search reads, captured at once: a consistent snapshot of the index.

    The writer appends rows and re-prunes adjacency rows in place (readers bound their
    traversal by ``count``, so they never follow an edge to a row published later) and
    replaces the arrays wholesale when it grows or compacts them, then publishes a new state.
    A search holding an older state keeps reading that state's arrays, which stay valid.
    ``live`` is shared, so a delete is seen by searches at once.
    """

    codes: np.ndarray
    adjacency: np.ndarray
    degrees: np.ndarray
    labels: np.ndarray
    live: np.ndarray
    count: int
    n_deleted: int
    entry: int
    segments: Any  # numba typed List of read-only float32 views, or None when empty
    segment_starts: np.ndarray
    rows: np.ndarray  # arange(capacity) int64: "labels" that make a search return rows
    #: (view, first row) of the file segments whose rerank rows are read ahead (RAM-budget
    #: mode, see ``quiver.engine.readahead``); empty: the rerank faults rows in itself
    advised_views: tuple = ()


class Selection(NamedTuple):
    """The rows a filtered search may return, computed once per state and filter and reusable
    by every search of that state (see :meth:`VamanaIndex.select`)."""

    admit: np.ndarray  # uint8 per row of the state's arrays: 1 = may be returned
    rows: np.ndarray  # int32, ascending: the admitted rows
    row_codes: np.ndarray  # codes[rows] gathered for a scan, else empty
    scan: bool  # score the admitted rows' codes instead of walking the graph


class SearchPlan(NamedTuple):
    """How :meth:`VamanaIndex.execute` runs a search (already validated and resolved).

    ``k`` results per query; ``ef`` the navigation list size; ``rerank`` the result list
    (and float rerank) size, ``k <= rerank``; ``selection`` restricts the results (None: every
    live row); ``return_rows`` returns row numbers instead of labels.
    """

    k: int
    ef: int
    rerank: int
    selection: Selection | None = None
    return_rows: bool = False


class Consolidation(NamedTuple):
    """What :meth:`VamanaIndex.consolidate` did; ``kept_rows[i]`` is the old row of new row
    ``i``."""

    removed: int
    repaired: int
    seconds: float
    kept_rows: np.ndarray
