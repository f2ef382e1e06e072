"""What the route modules share: the error responses they declare, point conversion, ids
from URLs and vector stacking (so that no route module imports another)."""

from __future__ import annotations

from typing import Any

import numpy as np

from quiver import Collection, Point
from quiver.errors import InvalidInputError

from ..schemas import MAX_ID_CHARS, U64_MAX, ErrorBody
from ..vectors import encode
from ..vectors import stack as stack_vectors

__all__ = ["ERRORS", "parse_path_id", "record", "stack_vectors", "vector_out"]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid input (dimension, NaN, id type, filter)"},
    404: {"model": ErrorBody, "description": "unknown collection or point"},
    413: {"model": ErrorBody, "description": "body or batch over the server's limits"},
}


def record(p: Point, encoding: str = "float") -> dict[str, Any]:
    """A stored point as a response item (:class:`~quiver.server.schemas.Record`)."""
    return {"id": p.id, "payload": p.payload, "vector": vector_out(p.vector, encoding)}


def vector_out(v: Any, encoding: str) -> Any:
    """A returned vector: JSON numbers (``"float"``) or a base64 string (``"base64"``)."""
    if v is None:
        return None
    if encoding == "base64":
        return encode(np.asarray(v, dtype=np.float32))
    return np.ascontiguousarray(v, dtype=np.float32)  # orjson writes float32 arrays directly


def parse_path_id(coll: Collection, raw: str) -> int | str:
    """A point id from the URL: an integer for ``uint64`` collections, the text otherwise."""
    if coll.id_type != "uint64":
        if len(raw) > MAX_ID_CHARS:
            raise InvalidInputError(f"ids are at most {MAX_ID_CHARS} characters, got {len(raw)}")
        return raw
    if not raw.isascii() or not raw.isdigit() or int(raw) > U64_MAX:
        raise InvalidInputError(f"collection {coll.name!r} has uint64 ids, got {raw[:80]!r}")
    return int(raw)
