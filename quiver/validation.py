"""Validation of user input at the public boundary: one place, clear messages, no mutation."""

from __future__ import annotations

from typing import Any

import numpy as np

from quiver.errors import DuplicateIdError, InvalidInputError

#: Largest accepted id: ids are non-negative int64 (-1 marks padding in results).
MAX_ID = np.iinfo(np.int64).max


def as_matrix(x: Any, dim: int | None, name: str = "vectors") -> np.ndarray:
    """Return ``x`` as a new C-contiguous float32 (n, dim) array, or raise InvalidInputError.

    Accepts one vector (1-D, promoted to (1, dim)) or a batch (2-D). Rejects other ranks, empty
    batches, a wrong dimension (unless ``dim`` is None) and non-finite values. The caller's
    array is never modified.
    """
    arr = np.asarray(x)
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

    ``existing``: ids already stored; any of them in ``ids`` raises :class:`DuplicateIdError`.
    """
    arr = np.asarray(ids)
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
