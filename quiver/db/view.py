"""The read snapshot of a collection: an index state plus the row-aligned data covering it."""

from __future__ import annotations

from typing import Any, NamedTuple

from quiver.db.payloads import FieldColumn
from quiver.engine.state import IndexState


class CollectionView(NamedTuple):
    """A consistent read snapshot: index state plus row-aligned data covering its rows.

    ``ids`` and ``payloads`` are appended to by the writer beyond ``state.count`` (readers
    only read rows the state covers); ``columns`` and ``row_of`` are shared and updated by the
    writer. A consolidation publishes new lists (the ``ids`` object identifies a numbering).
    """

    state: IndexState
    ids: list[Any]  # row -> user id
    payloads: list[str | None]  # row -> payload JSON text
    columns: dict[str, FieldColumn]  # payload field -> column (shared, grown by the writer)
    row_of: dict[Any, int]  # live id -> row (shared, updated by the writer)
