"""The points of a collection in memory: the row-aligned data over one index, its published
view, and everything that reads it (point lookups, counts, scroll pages, searches).

Rows: every point version is one row of the index; an upsert of an existing id appends a new
row and tombstones the old one, a delete tombstones. Row-aligned lists hold each row's id and
payload. The writer (:class:`~quiver.db.collection.Collection`, under its write lock) applies
writes here after logging them; readers take no lock: they capture the published
:class:`~quiver.db.view.CollectionView` and read only the rows it covers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from quiver.db.filters import Filter
from quiver.db.id_order import IdOrder
from quiver.db.ids import check_id
from quiver.db.payloads import FieldColumn, decode_payload, encode_payload, field_value
from quiver.db.planner import FilterPlanner
from quiver.db.query import QueryExecutor, answers_compact, make_point
from quiver.db.request import SearchRequest
from quiver.db.view import CollectionView
from quiver.db.wal import OP_DELETE, OP_UPSERT
from quiver.engine.state import Consolidation
from quiver.errors import CorruptIndexError, InvalidInputError, PointNotFoundError
from quiver.index import Index
from quiver.params import SearchParams
from quiver.types import CompactHits, Point, ScoredPoint

logger = logging.getLogger(__name__)


class PointStore:
    """Row-aligned ids and payloads over ``index``, published as one view.

    ``write_lock`` is the owning collection's: payload columns are built under it (once, with
    no write in between). ``name`` only labels messages.
    """

    def __init__(
        self,
        name: str,
        index: Index,
        id_type: str,
        ids: list[Any],
        payloads: list[str | None],
        write_lock: threading.RLock,
    ) -> None:
        self._name = name
        self._index = index
        self._id_type = id_type
        self._write_lock = write_lock
        state = index.state()
        live = np.flatnonzero(state.live[: state.count])
        row_of = {ids[r]: int(r) for r in live}
        self.view = CollectionView(state, ids, payloads, {}, row_of)
        self._id_order = IdOrder(id_type)
        self._planner = FilterPlanner(index, self._column, self._row_of_filter_id)
        self._executor = QueryExecutor(index, self._planner, index.metric)
        self._searches = 0  # searches in flight: writes then link on one thread
        self._searches_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.view.row_of)

    def _missing(self, pid: Any) -> PointNotFoundError:
        return PointNotFoundError(f"no point with id {pid!r} in collection {self._name!r}")

    # ------------------------------------------------------------------ writes (writer only)
    def apply(self, op: int, header: dict[str, Any], vectors: np.ndarray | None) -> None:
        """Apply one logged write (replay and the live write path)."""
        if op == OP_UPSERT:
            self.apply_upsert(header["ids"], np.array(vectors), header["payloads"])
        elif op == OP_DELETE:
            self.apply_delete([i for i in header["ids"] if i in self.view.row_of])
        else:
            raise CorruptIndexError(f"collection {self._name!r}: unknown logged operation {op}")

    def apply_upsert(self, ids: list[Any], x: np.ndarray, texts: list[str | None]) -> None:
        view = self.view
        start = view.state.count
        old_rows = [view.row_of[i] for i in ids if i in view.row_of]
        if view.columns:
            parsed = [decode_payload(t) for t in texts]
            for key, column in view.columns.items():
                column.append([field_value(p, key) for p in parsed])
        view.ids.extend(ids)
        view.payloads.extend(texts)
        # with searches running, link on one thread so that reads keep the other cores
        self._index.add(x, num_threads=1 if self._searches else None)
        self.publish()
        for r, i in enumerate(ids):  # after the publish: a reader finding the row can see it
            view.row_of[i] = start + r
        if old_rows:
            self._index.delete_rows(np.array(old_rows, dtype=np.int64))
            self.publish()

    def apply_delete(self, ids: list[Any]) -> None:
        view = self.view
        rows = [view.row_of.pop(i) for i in ids]
        self._index.delete_rows(np.array(rows, dtype=np.int64))
        self.publish()

    def publish(self) -> None:
        """Make the index's current state visible to new readers."""
        self.view = self.view._replace(state=self._index.state())

    def renumber(self, result: Consolidation) -> None:
        """Follow a consolidation of the index: keep the rows it kept, in their new order."""
        view, keep = self.view, result.kept_rows
        ids = [view.ids[r] for r in keep]
        payloads = [view.payloads[r] for r in keep]
        columns = {k: c.take(keep) for k, c in view.columns.items()}
        row_of = {pid: r for r, pid in enumerate(ids)}
        self.view = CollectionView(self._index.state(), ids, payloads, columns, row_of)

    # ------------------------------------------------------------------ reads (no lock)
    def locate(self, pid: Any) -> tuple[CollectionView, int | None]:
        """The current view and the row of the live point ``pid`` in it (None if absent)."""
        view = self.view
        row = view.row_of.get(pid)
        if row is not None and row >= view.state.count:
            view = self.view  # the writer published this row just before recording it
            row = view.row_of.get(pid)
        return view, row

    def _row_of_filter_id(self, view: CollectionView, pid: Any) -> int | None:
        return view.row_of.get(check_id(self._id_type, pid, "has_id"))

    def _column(self, view: CollectionView, key: str) -> FieldColumn:
        column = view.columns.get(key)
        if column is not None:
            return column
        with self._write_lock:  # built once, with no write in between
            column = view.columns.get(key)
            if column is None:
                column = FieldColumn()
                column.append([field_value(decode_payload(t), key) for t in view.payloads])
                view.columns[key] = column
                logger.info("%s: built payload column %r", self._name, key)
        return column

    def build_column(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"payload key must be a non-empty string, got {key!r}")
        self._column(self.view, key)

    def matching_ids(self, flt: Filter | None) -> list[Any]:
        """Ids of the live points matching ``flt`` in the current view."""
        view = self.view
        return [view.ids[r] for r in np.flatnonzero(self._planner.mask(view, flt))]

    def rewritten(
        self, pids: list[Any], change: Callable[[dict[str, Any] | None], dict[str, Any] | None]
    ) -> tuple[list[Any], np.ndarray, list[str | None]]:
        """The live points among ``pids`` whose payload ``change`` alters: their ids, stored
        vectors and new payload texts (what an upsert rewriting them logs)."""
        view = self.view
        ids, rows, texts = [], [], []
        for pid in dict.fromkeys(pids):
            row = view.row_of.get(pid)
            if row is None:
                continue
            old = decode_payload(view.payloads[row])
            new = change(old)
            if new != old:
                ids.append(pid)
                rows.append(row)
                texts.append(encode_payload(new))
        return ids, self._index.vectors_of_rows(view.state, rows), texts

    def get(self, pid: Any, payload: Any, with_vector: bool) -> Point:
        view, row = self.locate(pid)
        if row is None:
            raise self._missing(pid)
        return make_point(self._index, view, row, payload, with_vector)

    def retrieve(self, pids: list[Any], payload: Any, with_vector: bool) -> list[Point]:
        out = []
        for pid in pids:
            view, row = self.locate(pid)
            if row is not None:
                out.append(make_point(self._index, view, row, payload, with_vector))
        return out

    def count(self, flt: Filter | None) -> int:
        view = self.view
        if flt is None:
            return len(view.row_of)
        return int(self._planner.mask(view, flt).sum())

    def scroll(
        self, limit: int, start: Any, flt: Filter | None, payload: Any, with_vector: bool
    ) -> tuple[list[Point], Any]:
        """A page of ``limit`` points in id order from the position of id ``start``."""
        view = self.view
        mask = self._planner.mask(view, flt)
        rows = self._id_order.page(view.ids, view.state.count, mask, start, limit + 1)
        points = [make_point(self._index, view, int(r), payload, with_vector) for r in rows[:limit]]
        next_offset = view.ids[int(rows[limit])] if rows.shape[0] > limit else None
        return points, next_offset

    # ------------------------------------------------------------------ search (no lock)
    def ef_for_recall(self, target_recall: float, k: int) -> int:
        """The index's calibrated ef for ``target_recall`` at ``k`` (see
        :meth:`quiver.Index.ef_for_recall`)."""
        return self._index.ef_for_recall(target_recall, k)

    def explain(
        self, flt: Filter | None, k: int, ef: int | None, rerank: int | None = None
    ) -> dict[str, Any]:
        k, ef, rerank = SearchParams(k, ef, rerank).resolve(self._index.ef_for_recall)
        view = self.view
        return self._planner.describe(view, self._planner.plan(view, flt, k, ef, rerank=rerank))

    def query(self, request: SearchRequest) -> list[list[ScoredPoint]]:
        """Run a validated request: one hit list per query vector or stored query id."""
        return self._run(request, self._executor.run)

    def query_compact(self, request: SearchRequest) -> CompactHits:
        """:meth:`query` as arrays; integer ids, no payloads or vectors (checked)."""
        if not answers_compact(self._id_type, request):
            raise InvalidInputError(
                "compact hits need integer ids and no payloads or vectors: got id_type "
                f"{self._id_type!r}, with_payload={request.with_payload!r}, "
                f"with_vector={request.with_vector!r}"
            )
        return self._run(request, self._executor.run_compact)

    def _run(self, request: SearchRequest, run: Callable[..., Any]) -> Any:
        """``run(view, queries, request, ef, rerank, excluded, current)`` on the request's
        queries."""
        view, excluded = self.view, None
        if request.ids is not None:
            pids = [check_id(self._id_type, i, "query_id") for i in request.ids]
            rows = []
            for pid in pids:
                view, row = self.locate(pid)
                if row is None:
                    raise self._missing(pid)
                rows.append(row)
            queries, excluded = self._index.vectors_of_rows(view.state, rows), pids
        else:
            queries = request.vectors
            if queries.shape[1] != self._index.dim:
                raise InvalidInputError(
                    f"vectors dimension mismatch: expected {self._index.dim}, "
                    f"got {queries.shape[1]}"
                )
            queries = queries.copy()  # normalised in place by the executor
        _, ef, rerank = request.params.resolve(self._index.ef_for_recall)
        with self._searches_lock:
            self._searches += 1
        try:
            return run(view, queries, request, ef, rerank, excluded, current=view is self.view)
        finally:
            with self._searches_lock:
                self._searches -= 1
