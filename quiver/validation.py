"""Validation of user input at the public boundary: one place, clear messages, no mutation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from quiver.errors import DuplicateIdError, InvalidInputError

#: Largest accepted id: ids are non-negative int64 (-1 marks padding in results).
MAX_ID = np.iinfo(np.int64).max
#: Data frame libraries whose ``Series`` are accepted as columns (recognised by type, never
#: imported here: neither is a dependency of quiver).
SERIES_LIBRARIES = ("pandas", "polars")


def as_arrow(x: Any, *, pandas_nulls: bool = False) -> pa.Array | None:
    """``x`` as one Arrow array when it is a column: a pyarrow ``Array`` or ``ChunkedArray``
    (a table's column), or a pandas or polars ``Series``; ``None`` for anything else.

    Chunks are combined (no copy for one chunk); polars hands over its Arrow buffers; a pandas
    Series is converted: None is null, and NaN too with ``pandas_nulls`` (pandas' missing
    value, as in an integer column with a gap), else NaN stays NaN for the finiteness check.
    """
    if isinstance(x, pa.ChunkedArray):
        return x.combine_chunks()
    if isinstance(x, pa.Array):
        return x
    library = type(x).__module__.partition(".")[0]
    if type(x).__name__ != "Series" or library not in SERIES_LIBRARIES:
        return None
    if library == "polars":
        return as_arrow(x.to_arrow())  # polars has no NaN-as-null convention
    try:
        return pa.array(x, from_pandas=pandas_nulls)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInputError(f"cannot read a pandas Series of dtype {x.dtype}: {exc}") from exc


def id_column(ids: Any) -> pa.Array | None:
    """``ids`` as an Arrow array when it is a column (see :func:`as_arrow`), else None; a
    null (a missing id) raises InvalidInputError naming its position."""
    column = as_arrow(ids, pandas_nulls=True)
    row = None if column is None else first_null(column)
    if row is not None:
        raise InvalidInputError(f"ids must not hold nulls: ids[{row}] is null")
    return column


def first_null(arr: pa.Array) -> int | None:
    """Index of the first null of ``arr``, or None."""
    import pyarrow.compute as pc  # on first use: `import quiver` stays light

    if arr.null_count == 0:
        return None
    return int(np.flatnonzero(pc.is_null(arr).to_numpy(zero_copy_only=False))[0])


def arrow_matrix(arr: pa.Array, name: str = "vectors") -> np.ndarray:
    """An Arrow column of vectors (fixed-size or variable lists of numbers) as an (n, dim)
    numpy array, a view of the Arrow buffers where the values are a primitive type without
    nulls (FixedSizeList<float32>: no copy); a column of numbers as one vector. A null
    vector, a null value or rows of different lengths raise InvalidInputError naming the row."""
    import pyarrow.compute as pc  # on first use: `import quiver` stays light

    kind = arr.type
    if not (
        pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)
    ):
        row = first_null(arr)
        if row is not None:
            raise InvalidInputError(f"{name} must not hold nulls: value {row} is null")
        return arr.to_numpy(zero_copy_only=False)
    row = first_null(arr)
    if row is not None:
        raise InvalidInputError(f"{name} must not hold nulls: row {row} is null")
    if pa.types.is_fixed_size_list(kind):
        width = kind.list_size
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if len(lengths) else 0
        uneven = np.flatnonzero(lengths != width)
        if uneven.size:
            row = int(uneven[0])
            raise InvalidInputError(
                f"{name} rows must have one length: row {row} has {int(lengths[row])} values, "
                f"row 0 has {width}"
            )
    values = arr.flatten()  # this array's slice of the values, no copy
    value = first_null(values)
    if value is not None:
        raise InvalidInputError(
            f"{name} must not hold nulls: row {value // max(width, 1)} holds a null value"
        )
    return values.to_numpy(zero_copy_only=False).reshape(len(arr), width)


def as_matrix(x: Any, dim: int | None, name: str = "vectors") -> np.ndarray:
    """Return ``x`` as a new C-contiguous float32 (n, dim) array, or raise InvalidInputError.

    Accepts one vector (1-D, promoted to (1, dim)) or a batch (2-D): a numpy array or anything
    ``np.asarray`` reads, or a column of vectors (a pyarrow FixedSizeList or list array, chunked
    or not, a pandas or polars Series of lists or arrays; see :func:`arrow_matrix`). Rejects
    other ranks, empty batches, a wrong dimension (unless ``dim`` is None), nulls and
    non-finite values. The caller's data is never modified.
    """
    column = as_arrow(x)
    arr = np.asarray(x) if column is None else arrow_matrix(column, name)
    if arr.dtype.kind not in "fiu":
        raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    elif arr.ndim != 2:
        raise InvalidInputError(
            f"{name} must be one vector (1-D) or a batch (2-D), got {arr.ndim}-D array of "
            f"shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise InvalidInputError(f"{name} is an empty batch: expected at least 1 row, got 0")
    if dim is not None and arr.shape[1] != dim:
        raise InvalidInputError(f"{name} dimension mismatch: expected {dim}, got {arr.shape[1]}")
    out = np.array(arr, dtype=np.float32, order="C", copy=True)
    finite = np.isfinite(out)
    if not finite.all():
        row = int(np.argwhere(~finite.all(axis=1))[0, 0])
        raise InvalidInputError(
            f"{name} must be finite: row {row} holds NaN or inf "
            f"({int((~finite).sum())} non-finite values in all)"
        )
    return out


def as_ids(ids: Any, n: int, existing: np.ndarray | None = None) -> np.ndarray:
    """Return ``ids`` as a new int64 (n,) array of distinct non-negative ids, or raise.

    ``ids``: anything ``np.asarray`` reads, or an integer column (pyarrow, pandas, polars).
    ``existing``: ids already stored; any of them in ``ids`` raises :class:`DuplicateIdError`.
    """
    column = id_column(ids)
    arr = np.asarray(ids) if column is None else column.to_numpy(zero_copy_only=False)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise InvalidInputError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise InvalidInputError(
            f"ids length mismatch: expected {n} (one per vector), got {arr.shape[0]}"
        )
    if arr.dtype.kind not in "iu":
        raise InvalidInputError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > MAX_ID:
        raise InvalidInputError(f"ids must be <= {MAX_ID}, got {int(arr.max())}")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise InvalidInputError(f"ids must be >= 0, got {int(out.min())}")
    uniq, counts = np.unique(out, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise DuplicateIdError(
            f"ids must be distinct within a batch: {dup.size} repeated, e.g. {int(dup[0])}"
        )
    if existing is not None:
        clash = np.isin(out, existing)
        if clash.any():
            raise DuplicateIdError(
                f"{int(clash.sum())} ids already exist, e.g. {int(out[clash][0])} "
                "(replacing belongs to the database layer)"
            )
    return out


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum``, or raise InvalidInputError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
