"""Point ids of a collection: unsigned 64-bit integers or strings, checked at the boundary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from quiver.errors import InvalidInputError
from quiver.validation import id_column

ID_TYPES = ("uint64", "string")
MAX_STRING_ID = 512


def check_id(id_type: str, value: Any, where: str = "id") -> int | str:
    """``value`` as an id of ``id_type``, or InvalidInputError naming ``where``."""
    if id_type == "uint64":
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InvalidInputError(
                f"{where} must be an unsigned integer (id_type uint64), got "
                f"{type(value).__name__} {value!r}"
            )
        if not 0 <= int(value) < 1 << 64:
            raise InvalidInputError(f"{where} must be in [0, 2**64), got {value}")
        return int(value)
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{where} must be a string (id_type string), got {type(value).__name__} {value!r}"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{where} is not valid Unicode text: {exc}") from exc
    if not 0 < len(value) <= MAX_STRING_ID:
        raise InvalidInputError(
            f"{where} must have 1 to {MAX_STRING_ID} characters, got {len(value)}"
        )
    return value


def check_ids(id_type: str, ids: Any, n: int | None = None) -> list[Any]:
    """A list of distinct ids of ``id_type`` (``n`` of them when given), or raise. ``ids``: a
    list, a numpy array, or a column (pyarrow, pandas, polars) of integers or strings."""
    column = id_column(ids)
    if column is not None:
        ids = column.to_pylist()
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray):
        raise InvalidInputError(f"ids must be a list, got {type(ids).__name__}")
    out = [check_id(id_type, v, f"ids[{i}]") for i, v in enumerate(ids)]
    if n is not None and len(out) != n:
        raise InvalidInputError(
            f"ids length mismatch: expected {n} (one per vector), got {len(out)}"
        )
    if len(set(out)) != len(out):
        seen: set[Any] = set()
        dup = next(v for v in out if v in seen or seen.add(v))
        raise InvalidInputError(
            f"ids must be distinct within a batch (no last-wins): {dup!r} repeats"
        )
    return out
