"""Binary vectors: base64 of little-endian float32, one vector or a columnar block.

JSON numbers cost a parse per digit and a Python float each; base64 float32 is 4/3 bytes per
byte of data and decodes at memory speed. Every decoder checks what it got (valid base64, a
whole number of float32 vectors of the collection's dimension, finite values) and raises
:class:`~quiver.errors.InvalidInputError` (400) naming the expected and actual sizes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import numpy as np

from quiver.errors import InvalidInputError

FLOAT32_LE = np.dtype("<f4")


def decode_block(text: str, dim: int, what: str = "vectors") -> np.ndarray:
    """A base64 block of float32 vectors -> ``(n, dim)`` float32 (``n`` from its length)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"{what}: not valid base64 ({exc})") from None
    row_bytes = FLOAT32_LE.itemsize * dim
    if not raw or len(raw) % row_bytes:
        raise InvalidInputError(
            f"{what}: {len(raw)} bytes of float32 is not a whole number of vectors of the "
            f"collection's dim {dim} ({row_bytes} bytes each)"
        )
    x = np.frombuffer(raw, dtype=FLOAT32_LE).reshape(-1, dim)
    if not np.isfinite(x).all():
        raise InvalidInputError(f"{what}: vectors must be finite (no NaN or infinity)")
    return x.astype(np.float32, copy=False)


def decode_one(text: str, dim: int, what: str = "vector") -> np.ndarray:
    """One base64 float32 vector of dimension ``dim`` -> ``(dim,)`` float32."""
    x = decode_block(text, dim, what)
    if x.shape[0] != 1:
        raise InvalidInputError(
            f"{what}: expected one vector of dim {dim} ({4 * dim} bytes), got {4 * x.size} bytes"
        )
    return x[0]


def stack(rows: Sequence[list[float] | str], dim: int) -> np.ndarray:
    """Rows (JSON number lists or base64 strings) -> ``(n, d)`` float32. Ragged rows raise;
    the collection checks ``d`` of number lists itself."""
    if any(isinstance(r, str) for r in rows):
        return np.stack(
            [
                decode_one(r, dim, f"vector {i}") if isinstance(r, str) else _row(r, dim, i)
                for i, r in enumerate(rows)
            ]
        )
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise InvalidInputError(
            f"every vector must have the collection's dim {dim}, got lengths {sorted(lengths)[:5]}"
        )
    return np.array(rows, dtype=np.float32)


def _row(values: list[float], dim: int, i: int) -> np.ndarray:
    if len(values) != dim:
        raise InvalidInputError(f"vector {i}: expected dim {dim}, got {len(values)}")
    return np.asarray(values, dtype=np.float32)


def encode(vector: np.ndarray) -> str:
    """A vector (or a block of them) as base64 of little-endian float32."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype=FLOAT32_LE).tobytes()).decode()
