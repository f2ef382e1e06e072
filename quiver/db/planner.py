"""The filtered-search planner: which rows a filter admits, and how to search them.

This module owns the strategy; the engine only executes the plan it returns:

* **Selectivity**: a filter's match mask over the view's rows (kept per filter and extended
  across writes, see :meth:`FilterPlanner.matches`), ANDed with the live flags.
* **Scan or walk**: at most :data:`SCAN_ROWS_PER_EF` matches per unit of ef, the matching
  rows' codes are scored directly (``search.scan_rows``: a 1-bit estimate over every match,
  the full query distance on a shortlist); above it the graph is walked, with the result
  list restricted to the matches.
* **ef growth**: a walk's list grows as ``ef * sqrt(FILTER_EF_SELECTIVITY / s)`` (at most
  4 ef), so that the matches met on the way still fill the result list.
* **Margins**: :data:`RESULT_MARGIN` spare results replace hits dropped on the way out (the
  query point itself, a point deleted or replaced by a concurrent write).
* **Fallback**: inside the kernel, a walk that met too few matches rescans every match
  (``search.SCAN_FALLBACK_COST``): exact in code space where the graph cannot help.
* **Caches**: selections (rows and gathered codes) per view, match masks per filter.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from quiver.db.filters import Filter, evaluate
from quiver.db.payloads import FieldColumn
from quiver.db.view import CollectionView
from quiver.engine.state import SearchPlan, Selection
from quiver.engine.vamana import VamanaIndex

#: Filtered search scans the matching rows' codes when there are at most this many matches
#: per unit of ef. The scan's cost grows with the matches, a graph search's with ef; the
#: break-even is measured in bench/results/PERF.md (filtered search, session 3).
SCAN_ROWS_PER_EF = 512
#: Filter selections (matching rows, and their codes for a scan) kept, each for one snapshot.
SELECTION_CACHE_SIZE = 8
#: Filters whose match masks (one byte per row) are kept and extended across writes.
MATCH_CACHE_SIZE = 32
#: Above the scan limit the graph search's list grows as ef * sqrt(FILTER_EF_SELECTIVITY / s)
#: (at most 4 ef), so that the matches met on the way still fill the result list.
FILTER_EF_SELECTIVITY = 0.25
#: Extra results asked of the index beyond k + offset.
RESULT_MARGIN = 8


class RecentFilters:
    """The most recently used entries of a per-filter cache, shared by threads.

    Keys hold parsed filters; a filter that cannot be hashed (an unhashable ``has_id``
    element, rejected later by the evaluation) is simply never cached.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        try:
            with self._lock:
                value = self._items.get(key)
                if value is not None:
                    self._items.move_to_end(key)
                return value
        except TypeError:
            return None

    def put(self, key: Any, value: Any) -> None:
        try:
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        except TypeError:
            pass


class FilterPlanner:
    """Plans the searches of one collection.

    ``column(view, key)`` returns the payload column of a field (built on first use by the
    collection); ``row_of_id(view, id)`` the live row of a user id or None (for ``has_id``).
    """

    def __init__(
        self,
        index: VamanaIndex,
        column: Callable[[CollectionView, str], FieldColumn],
        row_of_id: Callable[[CollectionView, Any], int | None],
    ) -> None:
        self._index = index
        self._column = column
        self._row_of_id = row_of_id
        # (filter, scan) -> (view, its Selection)
        self._selections = RecentFilters(SELECTION_CACHE_SIZE)
        # filter -> (row numbering it was computed under, match mask of rows 0..m)
        self._matched = RecentFilters(MATCH_CACHE_SIZE)

    def plan(
        self,
        view: CollectionView,
        flt: Filter | None,
        k: int,
        ef: int,
        *,
        rerank: int | None = None,
        skip: int = 0,
        current: bool = True,
    ) -> SearchPlan:
        """How to find the best ``k`` after skipping ``skip`` results (an offset, the query
        point) in ``view`` with navigation list ``ef`` and ``rerank`` exact distances (None:
        ``ef``). ``current``: ``view`` is the collection's latest (only then are selections
        cached)."""
        state = view.state
        # spare results replace hits dropped on the way out: the query point itself, a point
        # deleted or replaced by a concurrent write after the search read its snapshot
        kk = k + skip + RESULT_MARGIN
        ef_nav, selection = max(ef, kk), None
        ef_res = max(ef if rerank is None else min(rerank, ef), kk)  # result list and rerank
        if flt is not None:
            selection = self.selection(view, flt, scan=False, current=current)
            n_match = selection.rows.shape[0]
            n_live = max(state.count - state.n_deleted, 1)
            if n_match <= SCAN_ROWS_PER_EF * ef:
                selection = self.selection(view, flt, scan=True, current=current)
            else:
                grow = math.sqrt(FILTER_EF_SELECTIVITY * n_live / max(n_match, 1))
                ef_nav = min(4 * ef_nav, math.ceil(ef_nav * max(1.0, grow)))
        return SearchPlan(kk, ef_nav, ef_res, selection, return_rows=True)

    @staticmethod
    def describe(view: CollectionView, plan: SearchPlan) -> dict[str, Any]:
        """A plan in words: ``strategy`` ("graph", "filtered-graph" or "scan"), the rows that
        may be returned (``matches``), the navigation list ``ef`` and the ``rerank`` depth."""
        selection = plan.selection
        if selection is None:
            state = view.state
            strategy, matches = "graph", state.count - state.n_deleted
        else:
            strategy = "scan" if selection.scan else "filtered-graph"
            matches = int(selection.rows.shape[0])
        return {"strategy": strategy, "matches": matches, "ef": plan.ef, "rerank": plan.rerank}

    def mask(self, view: CollectionView, flt: Filter | None) -> np.ndarray:
        """Live rows of ``view`` that match ``flt`` (bool, one per row)."""
        n = view.state.count
        live = view.state.live[:n].astype(bool)
        if flt is None:
            return live
        return live & self.matches(view, flt)

    def matches(self, view: CollectionView, flt: Filter) -> np.ndarray:
        """Rows of ``view`` (live or not) that match ``flt``, extended incrementally.

        A row's payload never changes once written (an upsert writes a new row and tombstones
        the old one) and liveness is applied apart, so the match mask of rows ``0..m`` stays
        true for every later view until a consolidation renumbers the rows (its new ``ids``
        list marks that): a filter reused under a stream of writes evaluates only the new rows.
        """
        n = view.state.count

        def rows_of_ids(ids: tuple[Any, ...]) -> np.ndarray:
            rows = [self._row_of_id(view, i) for i in ids]
            return np.array([r for r in rows if r is not None], dtype=np.int64)

        def column(key: str) -> FieldColumn:
            return self._column(view, key)

        known = self._matched.get(flt)
        if known is not None and known[0] is view.ids and known[1].shape[0] <= n:
            done = known[1].shape[0]
            mask = np.concatenate([known[1], evaluate(flt, n, column, rows_of_ids, done)])
        else:
            mask = evaluate(flt, n, column, rows_of_ids)
        self._matched.put(flt, (view.ids, mask))
        return mask

    def selection(
        self, view: CollectionView, flt: Filter, scan: bool, current: bool = True
    ) -> Selection:
        """The rows of ``view`` matching ``flt``, cached for the current view: a filter used
        again (one tenant, one language...) is evaluated over all points once per write, not
        once per query (at 180k points that evaluation costs 1-3 ms, a search 0.1-0.4 ms)."""
        known = self._selections.get((flt, scan))
        if known is not None and known[0] is view:
            return known[1]
        if scan:
            value = self._index.with_scan(view.state, self.selection(view, flt, False, current))
        else:
            # select() applies the live flags itself
            value = self._index.select(view.state, self.matches(view, flt).view(np.uint8))
        if current:  # never cache a snapshot that is already stale
            self._selections.put((flt, scan), (view, value))
        return value
