"""What the route modules share: the error responses they declare, point conversion, ids
from URLs and vector stacking (so that no route module imports another)."""

from __future__ import annotations

from typing import Any

import numpy as np

from quiver import Collection, Point
from quiver.errors import InvalidInputError

from ..schemas import MAX_ID_CHARS, U64_MAX, ErrorBody, Record

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid input (dimension, NaN, id type, filter)"},
    404: {"model": ErrorBody, "description": "unknown collection or point"},
    413: {"model": ErrorBody, "description": "body or batch over the server's limits"},
}


def record(p: Point) -> Record:
    """A stored point as a response item."""
    return Record(id=p.id, payload=p.payload, vector=_as_list(p.vector))


def _as_list(v: Any) -> list[float] | None:
    if v is None:
        return None
    return v.tolist() if isinstance(v, np.ndarray) else list(v)


def stack_vectors(rows: list[list[float]], dim: int) -> np.ndarray:
    """Rows -> ``(n, d)`` float32. Ragged rows raise; the collection checks ``d`` itself."""
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise InvalidInputError(
            f"every vector must have the collection's dim {dim}, got lengths {sorted(lengths)[:5]}"
        )
    return np.array(rows, dtype=np.float32)


def parse_path_id(coll: Collection, raw: str) -> int | str:
    """A point id from the URL: an integer for ``uint64`` collections, the text otherwise."""
    if coll.id_type != "uint64":
        if len(raw) > MAX_ID_CHARS:
            raise InvalidInputError(f"ids are at most {MAX_ID_CHARS} characters, got {len(raw)}")
        return raw
    if not raw.isascii() or not raw.isdigit() or int(raw) > U64_MAX:
        raise InvalidInputError(f"collection {coll.name!r} has uint64 ids, got {raw[:80]!r}")
    return int(raw)
