"""Points from an Arrow IPC stream: the bulk upsert format that never goes through JSON.

The stream holds one table: an ``id`` column (unsigned/signed integers or strings), a
``vector`` column of ``FixedSizeList<float32>[dim]`` and any number of payload columns; each
payload column becomes a payload key, and a null leaves the key out of that point's payload
(a point whose payload columns are all null has no payload). The vectors are read without a
copy per row: the list's values are one float32 buffer. pyarrow is imported on first use:
it adds a third of a second to the server's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from quiver.errors import InvalidInputError

if TYPE_CHECKING:
    import pyarrow as pa

MEDIA_TYPE = "application/vnd.apache.arrow.stream"
ID_COLUMN = "id"
VECTOR_COLUMN = "vector"


def read_table(body: bytes) -> pa.Table:
    """The table in an Arrow IPC stream (400 if ``body`` is not one)."""
    import pyarrow as pa

    try:
        return pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInputError(
            f"the body is not a readable Arrow IPC stream ({MEDIA_TYPE}): {exc}"
        ) from None


def points_of(table: pa.Table, dim: int) -> tuple[list[Any], np.ndarray, list[Any] | None]:
    """``(ids, vectors (n, dim) float32, payloads or None)`` of a points table."""
    names = table.column_names
    missing = [c for c in (ID_COLUMN, VECTOR_COLUMN) if c not in names]
    if missing:
        raise InvalidInputError(
            f"the Arrow table needs the columns {ID_COLUMN!r} and {VECTOR_COLUMN!r}; "
            f"missing {missing}, got {names[:20]}"
        )
    if len(set(names)) != len(names):
        raise InvalidInputError(f"the Arrow table repeats column names: {names[:20]}")
    vectors = _vectors(table.column(VECTOR_COLUMN), dim)
    id_column = table.column(ID_COLUMN)
    if id_column.null_count:
        raise InvalidInputError(f"the {ID_COLUMN!r} column holds {id_column.null_count} nulls")
    ids = id_column.to_pylist()
    others = [c for c in names if c not in (ID_COLUMN, VECTOR_COLUMN)]
    payloads = None
    if others:
        rows = table.select(others).to_pylist()
        payloads = [{k: v for k, v in row.items() if v is not None} or None for row in rows]
    return ids, vectors, payloads


def _vectors(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    import pyarrow as pa

    t = column.type
    if not (pa.types.is_fixed_size_list(t) and pa.types.is_float32(t.value_type)):
        raise InvalidInputError(
            f"the {VECTOR_COLUMN!r} column must be FixedSizeList<float32>[{dim}], got {t}"
        )
    if t.list_size != dim:
        raise InvalidInputError(
            f"the {VECTOR_COLUMN!r} column holds vectors of dim {t.list_size}; "
            f"the collection's dim is {dim}"
        )
    if column.null_count:
        raise InvalidInputError(f"the {VECTOR_COLUMN!r} column holds {column.null_count} nulls")
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values = array.flatten()
    if values.null_count:
        raise InvalidInputError(f"the {VECTOR_COLUMN!r} column holds null numbers")
    x = values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    if not np.isfinite(x).all():
        raise InvalidInputError("vectors must be finite (no NaN or infinity)")
    return x
